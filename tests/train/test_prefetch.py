import threading
import time

import pytest

from netgpt.train.prefetch import prefetch


def test_items_arrive_in_order_and_are_read_ahead():
    produced = []

    def slow_source():
        for i in range(5):
            produced.append(i)
            yield i

    stream = prefetch(slow_source(), depth=2)
    assert next(stream) == 0
    time.sleep(0.2)
    assert len(produced) >= 3, "the producer did not read ahead while the consumer was busy"
    assert list(stream) == [1, 2, 3, 4]


def test_a_source_error_is_raised_in_the_consumer():
    def failing():
        yield 1
        raise KeyError("sample 7 missing")

    stream = prefetch(failing())
    assert next(stream) == 1
    with pytest.raises(KeyError, match="sample 7"):
        next(stream)


def test_an_abandoned_stream_leaves_only_a_daemon_thread():
    stream = prefetch(iter(range(100)), depth=1)
    assert next(stream) == 0
    assert all(t.daemon for t in threading.enumerate() if t.name == "netgpt-prefetch")


def test_closing_the_stream_stops_its_thread_and_closes_the_source():
    # a stage cut short closes its stream so that the source (a Ray Data execution) ends with it
    source_closed = threading.Event()

    def endless():
        try:
            while True:
                yield 1
        finally:
            source_closed.set()

    stream = prefetch(endless(), depth=1)
    assert next(stream) == 1
    stream.close()
    assert source_closed.wait(timeout=5), "the source was left open"
    deadline = time.monotonic() + 5
    while any(t.name == "netgpt-prefetch" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [t for t in threading.enumerate() if t.name == "netgpt-prefetch"]

"""Read a batch stream ahead in a thread, so fetching and unpickling the next sampled subgraphs overlaps the
current step (torch releases the GIL in its kernels).

Ray Data prefetches blocks for `iter_batches(prefetch_batches=...)`, but the loader's row stream
(`iter_graph_batches`, docs/graph.md#streaming-batches-to-the-workers) hands over one unpickled batch at a
time, on the consumer's thread.

Close the stream when you stop reading it before its end (a stage cut by `max_steps` or early stopping):
its thread then stops and closes the source, which for a graph stream ends its Ray Data execution. Left
open, that execution kept sampling ahead until its buffer was full and kept its scheduling thread running in
the Train worker, beside the next stage's stream (docs/step-time.md).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")
_END = object()
_POLL_S = 0.2
"""How often a producer blocked on a full queue looks whether its consumer has closed the stream."""


def prefetch(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """Yield `items` in order while a daemon thread keeps up to `depth` ready; its errors raise here.

    Closing the returned generator (or dropping it) stops the thread and closes `items` when it can be."""
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item: object) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer(item):
                    return
            offer(_END)
        except BaseException as error:  # handed to the consumer, raised in its thread
            offer(error)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    threading.Thread(target=produce, name="netgpt-prefetch", daemon=True).start()
    try:
        while True:
            item = ready.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()

"""Read a batch stream ahead in a thread, so fetching and unpickling the next sampled subgraphs overlaps the
current step (torch releases the GIL in its kernels).

Ray Data prefetches blocks for `iter_batches(prefetch_batches=...)`, but the loader's row stream
(`iter_graph_batches`, docs/graph.md#streaming-batches-to-the-workers) hands over one unpickled batch at a
time, on the consumer's thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")
_END = object()


def prefetch(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """Yield `items` in order while a daemon thread keeps up to `depth` ready; its errors raise here."""
    ready: queue.Queue = queue.Queue(maxsize=depth)

    def produce() -> None:
        try:
            for item in items:
                ready.put(item)
        except BaseException as error:  # handed to the consumer, raised in its thread
            ready.put(error)
        ready.put(_END)

    threading.Thread(target=produce, name="netgpt-prefetch", daemon=True).start()
    while True:
        item = ready.get()
        if item is _END:
            return
        if isinstance(item, BaseException):
            raise item
        yield item

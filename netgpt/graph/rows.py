"""Feature rows of a batch's nodes, wherever they are owned: the sampler's own partition, another partition
(one batched request per owner and batch), or a bounded cache of rows fetched before.

A partition stores the feature rows of its own samples only (docs/store.md#what-a-partition-holds); a
batch's halo nodes owned by other partitions are named by (owner, row) in the partition's ownership book.
Rows come in three kinds, each addressed by its owner's row: a video node's content row (`video`), a
sample's attribute rows (`attribute`: title, description, times and counts together, one row each), a
comment's row (`comment`).

    gather = RowGather(partition, StoreRows(store_dir), cache_rows=20_000)
    features = gather({"video": (owners, rows), "attribute": (...), "comment": (...)})

Why a hand-written cache: the lookups are vectorised over a batch's rows (tens of thousands), which a
per-key Python LRU (`functools.lru_cache`, `OrderedDict`) would turn into as many Python operations.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from netgpt.graph.store import Partition, open_partition, read_meta
from netgpt.graph.types import NODE_TYPES, VIDEO

ATTRIBUTE_TYPES = tuple(n.name for n in NODE_TYPES if n.per_sample and n.name not in (VIDEO, "comment"))
FEATURES: dict[str, tuple[str, ...]] = {
    "video": ("video_x",),
    "attribute": tuple(f"x_{name}" for name in ATTRIBUTE_TYPES),
    "comment": ("comment_x",),
}
"""The feature arrays of each kind of row."""
KINDS = tuple(FEATURES)
_ROW_BITS = 40
"""A cache key is owner << _ROW_BITS | row: rows below 2**40 (a partition holds far fewer)."""


def cache_capacity_bytes(cache_rows: int, feature_dims: Mapping[str, int]) -> int:
    """The most memory a sampler's remote-row cache takes: `cache_rows` float32 rows of each kind."""
    width = sum(
        feature_dims[name.removeprefix("x_").removesuffix("_x")]
        for names in FEATURES.values()
        for name in names
    )
    return cache_rows * width * 4


def read_rows(partition: Partition, rows: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The feature arrays of the own rows `rows[kind]` of `partition`, for every kind in `rows`."""
    return {
        name: np.ascontiguousarray(partition.rows(name, np.asarray(rows[kind], dtype=np.int64)))
        for kind in rows
        for name in FEATURES[kind]
    }


class RowSource(Protocol):
    """Where rows owned by other partitions come from: `request` starts one batched read from `owner` (the
    rows of every kind it needs) and returns a handle, `resolve` waits for handles."""

    def request(self, owner: int, rows: dict[str, np.ndarray]) -> Any: ...

    def resolve(self, handles: list[Any]) -> list[dict[str, np.ndarray]]: ...


class StoreRows:
    """Rows read from the owners' partition files in this process (memory-mapped, opened on first use):
    for single-process sampling (tests, evaluation, benchmarks); training asks the owners' actors."""

    def __init__(self, store_dir: str | Path) -> None:
        self.store_dir = Path(store_dir)
        self._meta = read_meta(store_dir)
        self._partitions: dict[int, Partition] = {}

    def request(self, owner: int, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if owner not in self._partitions:
            self._partitions[owner] = open_partition(self.store_dir, owner, self._meta)
        return read_rows(self._partitions[owner], rows)

    def resolve(self, handles: list[Any]) -> list[dict[str, np.ndarray]]:
        return handles


class RowCache:
    """At most `capacity` rows of one kind, by key; when full, the least recently used rows make room."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._sorted_keys = np.zeros(0, dtype=np.int64)
        self._sorted_slots = np.zeros(0, dtype=np.int64)
        self._slot_key = np.full(capacity, -1, dtype=np.int64)
        self._last_used = np.full(capacity, -1, dtype=np.int64)
        self._values: dict[str, np.ndarray] = {}
        self._clock = 0

    @property
    def nbytes(self) -> int:
        return sum(v.nbytes for v in self._values.values())

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """The slot of every key, -1 where it is not cached; a found row counts as used now."""
        self._clock += 1
        if not len(self._sorted_keys) or not len(keys):
            return np.full(len(keys), -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self._sorted_keys, keys), len(self._sorted_keys) - 1)
        slots = np.where(self._sorted_keys[pos] == keys, self._sorted_slots[pos], -1)
        self._last_used[slots[slots >= 0]] = self._clock
        return slots

    def values(self, name: str, slots: np.ndarray) -> np.ndarray:
        return self._values[name][slots]

    def insert(self, keys: np.ndarray, rows: Mapping[str, np.ndarray]) -> None:
        """Keep the rows of (distinct, uncached) `keys`, evicting the least recently used where full."""
        if self.capacity == 0 or not len(keys):
            return
        if len(keys) > self.capacity:
            keys, rows = keys[-self.capacity :], {k: v[-self.capacity :] for k, v in rows.items()}
        for name, values in rows.items():
            if name not in self._values:
                self._values[name] = np.empty((self.capacity, *values.shape[1:]), dtype=values.dtype)
        victims = np.argpartition(self._last_used, len(keys) - 1)[: len(keys)]
        self._slot_key[victims] = keys
        self._last_used[victims] = self._clock
        for name, values in rows.items():
            self._values[name][victims] = values
        filled = np.flatnonzero(self._slot_key >= 0)
        order = np.argsort(self._slot_key[filled])
        self._sorted_keys, self._sorted_slots = self._slot_key[filled][order], filled[order]


class RowGather:
    """Gathers a batch's feature rows for the sampler of `partition`: own rows read directly, other owners'
    rows from the cache or from `source` (one request per owner and batch, sent before the own rows are read
    so that the owners work meanwhile). Counts what it fetched in `stats`."""

    def __init__(self, partition: Partition, source: RowSource | None, cache_rows: int) -> None:
        self.partition = partition
        self.source = source
        self.caches = {kind: RowCache(cache_rows) for kind in KINDS}
        self.stats = {"remote_rows": 0, "remote_bytes": 0, "requests": 0, "cache_hits": 0, "cache_lookups": 0}

    def cache_bytes(self) -> int:
        return sum(cache.nbytes for cache in self.caches.values())

    def __call__(self, wanted: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
        """`wanted[kind] = (owners, rows)`: the feature arrays of those rows, in that order."""
        part = self.partition
        out: dict[str, np.ndarray] = {}
        misses: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for kind in KINDS:
            owners, rows = wanted[kind]
            remote = np.flatnonzero(owners != part.index)
            if not len(remote):
                continue
            for name in FEATURES[kind]:
                out[name] = np.empty((len(owners), *part[name].shape[1:]), dtype=part[name].dtype)
            keys = (owners[remote].astype(np.int64) << _ROW_BITS) | rows[remote]
            slots = self.caches[kind].lookup(keys)
            hit = slots >= 0
            self.stats["cache_hits"] += int(hit.sum())
            self.stats["cache_lookups"] += len(keys)
            if hit.any():
                for name in FEATURES[kind]:
                    out[name][remote[hit]] = self.caches[kind].values(name, slots[hit])
            misses[kind] = (remote[~hit], keys[~hit])
        pending = self._request(misses, wanted)
        for kind in KINDS:
            owners, rows = wanted[kind]
            own = np.flatnonzero(owners == part.index)
            for name, values in read_rows(part, {kind: rows[own]}).items():
                if name in out:
                    out[name][own] = values
                else:  # every row of this kind is this partition's: the read is the output, not copied again
                    out[name] = values
        self._receive(pending, misses, wanted, out)
        return out

    def _request(
        self, misses: dict[str, tuple[np.ndarray, np.ndarray]], wanted: Mapping[str, tuple[np.ndarray, ...]]
    ) -> list[tuple[int, Any]]:
        owners = sorted({int(o) for kind, (at, _) in misses.items() for o in wanted[kind][0][at]})
        if owners and self.source is None:
            raise RuntimeError(
                f"{self.partition.folder}: the batch needs rows of partitions {owners}, and this sampler has "
                "no source of other partitions' rows"
            )
        pending = []
        for owner in owners:
            request = {}
            for kind, (at, _) in misses.items():
                request[kind] = wanted[kind][1][at[wanted[kind][0][at] == owner]]
            pending.append((owner, self.source.request(owner, request)))
            self.stats["requests"] += 1
        return pending

    def _receive(
        self,
        pending: list[tuple[int, Any]],
        misses: dict[str, tuple[np.ndarray, np.ndarray]],
        wanted: Mapping[str, tuple[np.ndarray, ...]],
        out: dict[str, np.ndarray],
    ) -> None:
        if not pending:
            return
        replies = self.source.resolve([handle for _, handle in pending])
        for (owner, _), reply in zip(pending, replies, strict=True):
            for kind, (at, keys) in misses.items():
                mine = wanted[kind][0][at] == owner
                for name in FEATURES[kind]:
                    out[name][at[mine]] = reply[name]
                    self.stats["remote_bytes"] += reply[name].nbytes
                self.stats["remote_rows"] += int(mine.sum())
                self.caches[kind].insert(keys[mine], {name: reply[name] for name in FEATURES[kind]})

"""Which seeds form which batch, at which global position, and the Ray Data task that has them sampled.

Kept apart from `netgpt.graph.loader` and free of torch and PyG: Ray Data runs `SampledBatches`' read tasks
(`sample_batches`) in task worker processes, which import this module (and what it imports) before their
first batch; torch would add seconds to each stream's first batch. The sampled batches arrive here already
pickled by their sampler actor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from netgpt.graph.store import BOOK_FILE, StoreError, read_meta


def split_seeds(store_dir: str, split: str) -> tuple[np.ndarray, ...]:
    """Sorted seed sample ids of `split`, one array per partition (cached until the store changes)."""
    path = Path(store_dir) / BOOK_FILE
    return _read_split_seeds(store_dir, split, path.stat().st_mtime_ns if path.exists() else 0)


@lru_cache(maxsize=16)
def _read_split_seeds(store_dir: str, split: str, _version: int) -> tuple[np.ndarray, ...]:
    meta = read_meta(store_dir)
    path = Path(store_dir) / BOOK_FILE
    try:
        book = pq.read_table(path, filters=pc.field("split") == split)
    except Exception as error:
        raise StoreError(f"{path}: damaged or missing partition book ({error})") from None
    sample_ids = book["sample_id"].to_numpy()
    partition = book["partition"].to_numpy()
    return tuple(np.sort(sample_ids[partition == p]) for p in range(len(meta["partitions"])))


def cut_batches(seeds_per_partition: Sequence[int], batch_size: int, multiple: int, what: str) -> np.ndarray:
    """Batches cut from each partition's seeds per epoch (at most `batch_size` seeds each); their sum is a
    multiple of `multiple`. `what` names the seeds in errors."""
    sizes = np.asarray(seeds_per_partition, dtype=np.int64)
    if sizes.sum() < multiple:
        raise ValueError(
            f"{what} has {int(sizes.sum())} seeds, fewer than the {multiple} batches of one step over all "
            "workers (each needs a batch)"
        )
    counts = -(-sizes // batch_size)
    for _ in range(int(-counts.sum() % multiple)):
        # One more (smaller) batch where batches are fullest; a loop over at most multiple - 1 steps.
        fullness = np.where(sizes > counts, sizes / np.maximum(counts, 1), -1.0)
        counts[int(np.argmax(fullness))] += 1
    return counts


@dataclass(frozen=True)
class StreamShape:
    """What a worker needs to count a stream's batches without reading the store, handed over by the driver:
    its split, batch size and the split's seeds in each partition."""

    split: str
    batch_size: int
    seeds_per_partition: tuple[int, ...]

    def batches_per_epoch(self, multiple: int) -> int:
        """Batches of one epoch over all ranks in the plan cut for `multiple` (as the stream cuts it)."""
        what = f"split {self.split!r}"
        return int(cut_batches(self.seeds_per_partition, self.batch_size, multiple, what).sum())


@dataclass(frozen=True)
class EpochPlan:
    """Which seeds form which batch, and which rank gets it, for every epoch of one stream."""

    store_dir: str
    split: str
    batch_size: int
    epochs: int
    shuffle: bool
    seed: int
    multiple: int = 1
    """The batch count per epoch is a multiple of this (a stage's micro-batches per step over all ranks);
    every world size that divides it consumes the plan in lock step."""

    def batches_per_partition(self) -> np.ndarray:
        """Batches cut from each partition's seeds per epoch; their sum is a multiple of `multiple`."""
        sizes = [len(s) for s in split_seeds(self.store_dir, self.split)]
        return cut_batches(sizes, self.batch_size, self.multiple, f"split {self.split!r} of {self.store_dir}")

    def batches_per_epoch(self) -> int:
        return int(self.batches_per_partition().sum())

    def batches_per_rank(self, world_size: int) -> int:
        """Batches each of `world_size` ranks receives per epoch; the world size must divide the count."""
        per_epoch = self.batches_per_epoch()
        if per_epoch % world_size:
            raise ValueError(
                f"split {self.split!r}: {per_epoch} batches per epoch (a multiple of {self.multiple}) cannot "
                f"be shared by {world_size} workers in lock step; use a worker count that divides "
                f"{self.multiple}"
            )
        return per_epoch // world_size

    def epoch(self, epoch: int) -> list[tuple[int, np.ndarray]]:
        """The epoch's batches in order: (partition, seed sample ids); the same for every world size."""
        rng = np.random.default_rng([self.seed, epoch])
        batches = []
        for partition, (seeds, count) in enumerate(
            zip(split_seeds(self.store_dir, self.split), self.batches_per_partition(), strict=True)
        ):
            ordered = rng.permutation(seeds) if self.shuffle else seeds
            if count:
                batches += [(partition, chunk) for chunk in np.array_split(ordered, count)]
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches


def rank_positions(start: int, rank: int, world_size: int, rows: np.ndarray) -> np.ndarray:
    """Global positions of rows `rows` of rank `rank`'s stream begun at global position `start`."""
    return start + rank + world_size * rows


@lru_cache(maxsize=4)
def _epoch_batches(plan: EpochPlan, epoch: int) -> list[tuple[int, np.ndarray]]:
    return plan.epoch(epoch)


def sample_batches(
    rows: dict[str, np.ndarray],
    plan: EpochPlan,
    actors: list[list[Any]],
    rank: int,
    world_size: int,
    start: int,
) -> dict[str, Any]:
    """Ray Data UDF: rows of one rank's stream -> batches sampled by the partitions' sampler actors."""
    per_epoch = plan.batches_per_epoch()
    positions = rank_positions(start, rank, world_size, rows["id"].astype(np.int64))
    epochs = positions // per_epoch
    refs = []
    for position, epoch in zip(positions.tolist(), epochs.tolist(), strict=True):
        j = position - epoch * per_epoch
        partition, seeds = _epoch_batches(plan, epoch)[j]
        replicas = actors[partition]
        refs.append(replicas[j % len(replicas)].sample.remote(seeds, (plan.seed, epoch, j)))
    return {"epoch": epochs, "position": positions, "batch": np.array(ray.get(refs), dtype=object)}


class SampledBatches(Datasource):
    """Ray Data source of one rank's stream: rows `0 .. rows - 1` (row `i` is global position `start + rank +
    i * world_size`) in blocks of `block_batches`, each block one read task that has its batches sampled.

    Why a source rather than `ray.data.range(...).map_batches(sample_batches)`: that is two operators, the
    range's read tasks (1 CPU) and the map's tasks (0 CPU), which Ray Data does not fuse (their resources
    differ), so every block cost two tasks, and on 2 cores Ray Data's per-task work (scheduling, worker
    round trips, metadata) took more CPU than the training it fed. Here each block is one 0-CPU task."""

    def __init__(
        self,
        plan: EpochPlan,
        actors: list[list[Any]],
        rank: int,
        world_size: int,
        start: int,
        rows: int,
        block_batches: int,
    ) -> None:
        super().__init__()
        self.plan, self.actors = plan, actors
        self.rank, self.world_size, self.start = rank, world_size, start
        self.rows, self.block_batches = rows, block_batches

    def num_blocks(self) -> int:
        return max(1, -(-self.rows // self.block_batches))

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def get_name(self) -> str:
        return "SampledBatches"

    def get_read_tasks(
        self, parallelism: int, per_task_row_limit: int | None = None, data_context: Any = None
    ) -> list[ReadTask]:
        """One task per block of `block_batches` rows, whatever `parallelism` Ray Data asks for."""
        tasks = []
        for first in range(0, self.rows, self.block_batches):
            last = min(first + self.block_batches, self.rows)
            read = partial(
                _read_block, first, last, self.plan, self.actors, self.rank, self.world_size, self.start
            )
            metadata = BlockMetadata(
                num_rows=last - first, size_bytes=None, exec_stats=None, input_files=None
            )
            tasks.append(ReadTask(read, metadata, per_task_row_limit=per_task_row_limit))
        return tasks


def _read_block(
    first: int,
    last: int,
    plan: EpochPlan,
    actors: list[list[Any]],
    rank: int,
    world_size: int,
    start: int,
) -> list[pa.Table]:
    """Rows `first .. last - 1` of a rank's stream as one block: epoch, position and the pickled batch."""
    sampled = sample_batches({"id": np.arange(first, last)}, plan, actors, rank, world_size, start)
    batches = pa.array(list(sampled["batch"]), type=pa.large_binary())
    return [pa.table({"epoch": sampled["epoch"], "position": sampled["position"], "batch": batches})]

"""Streaming sampled subgraphs to Ray Train workers (docs/graph.md#streaming-batches-to-the-workers).

Driver side, before `TorchTrainer`:

    streams = GraphStreams(cfg.graph, store_dir)            # one sampler actor per partition
    name = stream_name("train", stage_name)                    # `train_<stage>`: the one naming rule
    datasets = {name: streams.dataset("train", 16, epochs=3, shuffle=True, seed=0)}
    shapes = {name: streams.shape("train", 16)}               # lets workers count batches without the store
    trainer = TorchTrainer(..., datasets=datasets, dataset_config=streams.data_config(list(datasets)))

Worker side (`streams.starts` and the shapes travel to the workers in `train_loop_config`):

    shard = graph_dataset_shard(starts, name, start, multiple)   # every rank, same start and multiple
    for epoch, position, batch in iter_graph_batches(shard, start + rank, stride=world_size):
        ...
    shapes[name].batches_per_epoch(multiple)                  # for schedulers and progress bars

How a stream works. The seeds of a split are read from the store's partition book. Each epoch is planned
deterministically from `seed + epoch`: every partition's seeds are shuffled and cut into near-equal batches
(at most `batch_size` seeds, all of one partition, so one sampler actor serves the batch), and the batches of
all partitions are shuffled together. The plan does not depend on the world size: a few batches are cut
smaller so that the batch count per epoch is a multiple of `multiple` (a stage's micro-batches per optimizer
step over all ranks), and any world size that divides `multiple` consumes it in lock step, every seed exactly
once per epoch. Positions are global: position `g` is batch `g % per_epoch` of epoch `g // per_epoch`, and a
stream begun at `start` on `world_size` ranks gives rank `r` the positions `start + r, start + r + world_size,
...`. Each rank's stream is a Ray Data read (`SampledBatches`: each read task asks the partitions'
sampler actors for its block's batches), executed lazily with order preserved: training starts with the
first batch, and Ray Data's streaming executor bounds how many batches are in flight (backpressure), so no
epoch is ever materialised. Every batch is sampled with its own generator seeded by (seed, epoch, j): same
seed, same batches, whichever actor or rank produces them.

Resuming, also on another world size. A stream can begin at any global position that the world size divides
(a resumed run's checkpoint): its range covers the positions from there on only, so the batch at each
position is the one an uninterrupted run samples there, and the batches before it are never sampled or
shipped. Since the plan is the same for every world size dividing `multiple`, a run stopped at position `g`
on 2 ranks and resumed at `g` on 1 rank (or the reverse) sees every seed of the epoch exactly once.
How the start reaches the stream is described at `GraphDataConfig`.
"""

from __future__ import annotations

import pickle
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import ray
import ray.data
import ray.train
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from netgpt.config import GraphConfig
from netgpt.graph.plan import EpochPlan, SampledBatches, StreamShape, split_seeds
from netgpt.graph.rows import read_rows
from netgpt.graph.sampler import NeighborSampler
from netgpt.graph.store import StoreError, open_partition, read_meta

if TYPE_CHECKING:
    from torch_geometric.data import HeteroData

SAMPLER_RESTARTS = 3
"""Times Ray restarts a sampler actor that died (its partition is reopened from the store, so it serves the
same rows and batches), and retries the calls it was serving."""


def stream_name(split: str, stage: str) -> str:
    """The Train dataset name of `stage`'s stream of `split` (`train_<stage>`, `val_<stage>`,
    `test_<stage>`): the driver names the datasets and the workers ask for them with it."""
    return f"{split}_{stage}"


@ray.remote(concurrency_groups={"sample": 1, "rows": 2})
class SamplerActor:
    """Owns one partition (memory-mapped) and samples the batches of seeds it owns.

    It serves its own samples' feature rows to the other partitions' actors (`rows`) and asks them for
    theirs: one request per owner and batch (`ActorRows`). The two run in separate concurrency groups, so
    an actor waiting for rows in `sample` still answers the requests of others (two actors asking each other
    at once cannot deadlock), while its sampler state is used by one `sample` at a time.

    Neither this module nor the sampler imports torch or PyG at its top, and must not: Ray loads an actor's
    class, i.e. imports its module, in every process that receives a handle to the actor (the streams' read
    tasks, Ray Train's dataset manager), and each new process that imported them spent about 7 s of CPU on
    it (py-spy); on 2 cores a stage's first batch waited 18-36 s while four or five such processes started.
    The actor itself ships numpy arrays (`SampledSubgraph`), which the Train worker turns into a
    `HeteroData`, so it never loads them either."""

    def __init__(
        self, store_dir: str, index: int, cfg: GraphConfig, peers: str = "", replicas: int = 1
    ) -> None:
        meta = read_meta(store_dir)
        self.partition = open_partition(store_dir, index, meta)
        source = ActorRows(peers, replicas) if peers else None
        self.sampler = NeighborSampler(
            self.partition,
            cfg.fanouts,
            cfg.relation_fanouts,
            meta["num_hops"],
            rows=source,
            cache_rows=cfg.remote_cache_rows,
        )
        self.sampled = 0

    @ray.method(concurrency_group="sample")
    def sample(self, sample_ids: np.ndarray, rng_key: tuple[int, ...]) -> bytes:
        batch = self.sampler.sample_arrays(sample_ids, np.random.default_rng(list(rng_key)))
        self.sampled += 1
        return pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)

    @ray.method(concurrency_group="rows")
    def rows(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Feature rows of this partition's own samples and comments (`rows.read_rows`)."""
        return read_rows(self.partition, rows)

    @ray.method(concurrency_group="rows")
    def stats(self) -> dict[str, int]:
        """What the sampler fetched from other partitions, and the bytes its remote-row cache holds."""
        return {**self.sampler.gather.stats, "cache_bytes": self.sampler.gather.cache_bytes()}

    @ray.method(concurrency_group="rows")
    def memory(self) -> dict[str, int | None]:
        """Resident bytes of this actor's own partition files (None off Linux) and of its row cache."""
        return {
            "resident_bytes": self.partition.resident_bytes(),
            "cache_bytes": self.sampler.gather.cache_bytes(),
        }

    @ray.method(concurrency_group="rows")
    def batches_sampled(self) -> int:
        """Batches this actor has sampled since it started (what a resumed stream saves shows here)."""
        return self.sampled

    @ray.method(concurrency_group="rows")
    def node_id(self) -> str:
        """The Ray node this actor runs on."""
        return ray.get_runtime_context().get_node_id()


def sampler_name(peers: str, partition: int, replica: int) -> str:
    """The Ray name of the sampler actor of `partition` (replica `replica`) among the actors named `peers`."""
    return f"{peers}-p{partition}-r{replica}"


class ActorRows:
    """Rows of other partitions from their sampler actors, found by name (`sampler_name`) on first use, so
    an actor Ray restarts finds its peers again; a batch's request to an owner goes to one of its replicas
    in turn."""

    def __init__(self, peers: str, replicas: int) -> None:
        self.peers, self.replicas = peers, replicas
        self._handles: dict[tuple[int, int], Any] = {}
        self._turn = 0

    def request(self, owner: int, rows: dict[str, np.ndarray]) -> Any:
        self._turn += 1
        key = (owner, self._turn % self.replicas)
        if key not in self._handles:
            self._handles[key] = ray.get_actor(sampler_name(self.peers, *key))
        return self._handles[key].rows.remote(rows)

    def resolve(self, handles: list[Any]) -> list[dict[str, np.ndarray]]:
        return ray.get(handles)


def _rank_stream(
    plan: EpochPlan,
    actors: list[list[Any]],
    rank: int,
    world_size: int,
    buffer_mb: float,
    start: int,
    block_batches: int,
    consumer_node: str | None = None,
) -> ray.data.Dataset:
    """Rank `rank`'s stream from global position `start` on (row `i` is position `start + rank + i *
    world_size`), holding about `buffer_mb` of sampled batches ahead of its consumer (plus the blocks in
    flight: Ray Data's backpressure counts whole blocks).

    With `consumer_node` (the Ray node of the rank's Train worker) its read tasks run there when they can:
    each batch is put into the object store of the node that reads it, and never on a head started with
    no CPUs (Ray Data spreads read tasks over every node otherwise, as they reserve none).

    Each Ray Data block (one 0-CPU read task of `SampledBatches`, at most two at a time) carries
    `block_batches` batches, their sampling spread over the sampler actors: Ray Data's cost is per task (tens
    of milliseconds of CPU for scheduling, logging and memory accounting), which blocks of one or two batches
    of a few milliseconds' sampling made the largest cost of a CPU step."""
    total = plan.epochs * world_size * plan.batches_per_rank(world_size)
    if not 0 <= start <= total or start % world_size:
        raise ValueError(
            f"stream of split {plan.split!r} cannot start at position {start}: the {world_size} ranks share "
            f"{total} batches ({plan.epochs} epochs) and begin together at a multiple of {world_size}"
        )
    rows = (total - start) // world_size
    source = SampledBatches(plan, actors, rank, world_size, start, rows, block_batches)
    placement = {}
    if consumer_node is not None:
        placement["scheduling_strategy"] = NodeAffinitySchedulingStrategy(consumer_node, soft=True)
    stream = ray.data.read_datasource(
        source,
        num_cpus=0,
        concurrency=2,
        override_num_blocks=source.num_blocks(),
        ray_remote_args=placement,
    )
    stream.context.enable_progress_bars = False
    options = stream.context.execution_options
    options.preserve_order = True
    options.resource_limits = options.resource_limits.copy(object_store_memory=buffer_mb * 1e6)
    return stream


@dataclass
class GraphStreams:
    """Sampler actors (one per partition and replica) on the current Ray cluster, and streams over them."""

    graph_cfg: GraphConfig
    store_dir: str
    actors: list[list[Any]] = field(init=False)
    starts: Any = field(init=False)
    """The `StreamStarts` actor the workers publish their resume positions to (see `GraphDataConfig`)."""
    _plans: dict[str, EpochPlan] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.store_dir = str(self.store_dir)
        meta = read_meta(self.store_dir)
        if len(self.graph_cfg.fanouts) > meta["num_hops"]:
            raise StoreError(
                f"{self.store_dir}: built for {meta['num_hops']} hops, graph.fanouts asks for "
                f"{len(self.graph_cfg.fanouts)}; rebuild the store"
            )
        options = {
            "num_cpus": self.graph_cfg.sampler_num_cpus,
            "resources": dict(self.graph_cfg.sampler_resources),
            "max_restarts": SAMPLER_RESTARTS,
            "max_task_retries": SAMPLER_RESTARTS,
        }
        replicas = self.graph_cfg.samplers_per_partition
        self.peers = f"netgpt-sampler-{uuid.uuid4().hex[:8]}"
        self.actors = [
            [
                SamplerActor.options(name=sampler_name(self.peers, index, replica), **options).remote(
                    self.store_dir, index, self.graph_cfg, self.peers, replicas
                )
                for replica in range(replicas)
            ]
            for index in range(len(meta["partitions"]))
        ]
        # On the driver's node, as Ray Train keeps its controller: the resume position must outlive the
        # loss of any worker node.
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        self.starts = StreamStarts.options(scheduling_strategy=here).remote()

    def dataset(self, split: str, batch_size: int, epochs: int, shuffle: bool, seed: int) -> ray.data.Dataset:
        """The stream of `split` for one consumer; `data_config` re-cuts it per rank for Ray Train."""
        plan = EpochPlan(self.store_dir, split, batch_size, epochs, shuffle, seed)
        plan.batches_per_partition()
        stream = _rank_stream(
            plan,
            self.actors,
            0,
            1,
            self.graph_cfg.stream_buffer_mb,
            start=0,
            block_batches=self.graph_cfg.stream_block_batches,
        )
        name = f"netgpt-graph-{split}-{uuid.uuid4().hex[:8]}"
        stream.set_name(name)
        self._plans[name] = plan
        return stream

    def data_config(self, names: list[str]) -> GraphDataConfig:
        """The `dataset_config` for `TorchTrainer`: deterministic per-rank streams for these datasets."""
        return GraphDataConfig(
            dict(self._plans),
            self.actors,
            self.starts,
            names,
            self.graph_cfg.stream_buffer_mb,
            self.graph_cfg.stream_block_batches,
        )

    def num_batches_per_rank(
        self, split: str, batch_size: int, world_size: int, multiple: int | None = None
    ) -> int:
        return num_batches_per_rank(self.store_dir, split, batch_size, world_size, multiple)

    def shape(self, split: str, batch_size: int) -> StreamShape:
        """The shape of a stream of `split` in batches of `batch_size`, for workers to count its batches."""
        seeds = split_seeds(self.store_dir, split)
        return StreamShape(split, batch_size, tuple(len(s) for s in seeds))

    def sampler_nodes(self) -> list[str]:
        """The Ray node of every sampler actor (partition by partition), once they have started."""
        return ray.get([actor.node_id.remote() for replicas in self.actors for actor in replicas])

    def shutdown(self) -> None:
        for replicas in self.actors:
            for actor in replicas:
                ray.kill(actor)
        ray.kill(self.starts)


@ray.remote(num_cpus=0)
class StreamStarts:
    """Start position and plan multiple of each Train dataset's streams, published by rank 0 just before it
    asks for them."""

    def __init__(self) -> None:
        self.starts: dict[str, tuple[int, int]] = {}

    def publish(self, name: str, position: int, multiple: int = 1) -> None:
        self.starts[name] = (position, multiple)

    def start(self, name: str) -> tuple[int, int]:
        """(position, multiple); (0, 0) when none was published (the world size is then the multiple)."""
        return self.starts.get(name, (0, 0))


class GraphDataConfig(ray.train.DataConfig):
    """Gives rank `r` of `world_size` its own stream (global positions `start + r + k * world_size`),
    beginning at the global position the worker group resumes from, in the plan cut for the published
    multiple (which the world size must divide).

    Why a position published by the workers. Ray Train (V2, the default in Ray 2.60) calls `configure` once
    per worker group, i.e. at the first start and again after every failure restart, and lazily: inside the
    group's `DatasetManager` actor when rank 0 first calls `ray.train.get_dataset_shard(name)`, after the
    workers have restored `ray.train.get_checkpoint()`. Only the workers know which checkpoint that was (the
    run folder can hold a newer, fully copied one that Ray had not registered when a worker died), so rank 0
    publishes its resume position to `StreamStarts` right before that call (`graph_dataset_shard`), and
    `configure` cuts every rank's stream there. All ranks restore the same checkpoint, so one position keeps
    them in lock step; `iter_graph_batches` checks each rank's positions anyway. The position is global (not
    per rank), so the worker group that resumes may have another size than the one that saved it.
    """

    def __init__(
        self,
        plans: dict[str, EpochPlan],
        actors: list[list[Any]],
        starts: Any,
        names: list[str],
        buffer_mb: float,
        block_batches: int,
    ) -> None:
        super().__init__(datasets_to_split=list(names))
        self._plans = plans
        self._actors = actors
        self._starts = starts
        self._buffer_mb = buffer_mb
        self._block_batches = block_batches

    def configure(self, datasets, world_size, worker_handles, worker_node_ids, **kwargs):  # noqa: ANN001
        output: list[dict[str, Any]] = [{} for _ in range(world_size)]
        others = {}
        for name, dataset in datasets.items():
            plan = self._plans.get(dataset.name)
            if plan is None:
                others[name] = dataset
                continue
            start, multiple = ray.get(self._starts.start.remote(name))
            plan = replace(plan, multiple=multiple or world_size)
            for rank in range(world_size):
                stream = _rank_stream(
                    plan,
                    self._actors,
                    rank,
                    world_size,
                    self._buffer_mb,
                    start,
                    self._block_batches,
                    worker_node_ids[rank] if worker_node_ids else None,
                )
                output[rank][name] = stream.iterator()
        if others:
            rest = super().configure(others, world_size, worker_handles, worker_node_ids, **kwargs)
            for rank in range(world_size):
                output[rank].update(rest[rank])
        return output


def split_size(store_dir: str | Path, split: str) -> int:
    """Seed samples of `split` in the store."""
    return sum(len(seeds) for seeds in split_seeds(str(store_dir), split))


def num_batches_per_rank(
    store_dir: str | Path, split: str, batch_size: int, world_size: int, multiple: int | None = None
) -> int:
    """Batches each rank receives per epoch (the same on every rank) in the plan cut for `multiple`
    (default: the world size)."""
    plan = EpochPlan(str(store_dir), split, batch_size, 1, False, 0, multiple or world_size)
    return plan.batches_per_rank(world_size)


def graph_dataset_shard(starts: Any, name: str, start_position: int = 0, multiple: int | None = None) -> Any:
    """Worker side, every rank: this rank's stream of Train dataset `name`, beginning at global position
    `start_position` of the plan cut for `multiple` (default: the world size).

    Call it once per dataset and worker group, with the same arguments on every rank (`GraphDataConfig`)."""
    context = ray.train.get_context()
    if context.get_world_rank() == 0:
        ray.get(starts.publish.remote(name, start_position, multiple or context.get_world_size()))
    return ray.train.get_dataset_shard(name)


def iter_graph_batches(
    shard: Any, start_position: int = 0, stride: int = 1
) -> Iterator[tuple[int, int, HeteroData]]:
    """Yield `(epoch, position, batch)` of a rank's stream, whose global positions must run `start_position`,
    `start_position + stride`, ... (rank `r` of `w` in a stream begun at `g`: `g + r`, stride `w`).

    A row out of that order (a stream not cut at the resume position, or out of order) is an error rather than
    skipped: skipping would silently sample and ship every earlier batch again."""
    expected = start_position
    for row in shard.iter_rows():
        position = int(row["position"])
        if position != expected:
            raise RuntimeError(
                f"graph stream gave position {position} where {expected} was due (stream meant to start at "
                f"{start_position}; get the shard with graph_dataset_shard and the same start position)"
            )
        expected += stride
        yield int(row["epoch"]), position, pickle.loads(row["batch"]).to_hetero_data()

"""The Ray Data stream: every seed once per epoch across 2 consumers, deterministic, resumable without
sampling the batches before the resume position, also on another number of consumers."""

from __future__ import annotations

import os
import pickle
import threading
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
import ray
import torch

from netgpt.data.schema import SAMPLES_FILE
from netgpt.graph.build import build_graph
from netgpt.graph.loader import (
    GraphStreams,
    iter_graph_batches,
    num_batches_per_rank,
    split_size,
    stream_name,
)
from netgpt.graph.plan import EpochPlan, rank_positions, sample_batches
from netgpt.graph.sampler import NeighborSampler
from netgpt.graph.store import open_partition, read_meta
from netgpt.train.prefetch import prefetch


@pytest.fixture(scope="module")
def streams(tables_dir, tmp_path_factory, ray_cluster, graph_config):
    cfg = graph_config(num_partitions=2, fanouts=[2, 2], remote_cache_rows=0)  # every halo row fetched
    store = tmp_path_factory.mktemp("stream_store")
    build_graph(tables_dir, cfg, store)
    streams = GraphStreams(cfg, store)
    yield streams
    streams.shutdown()


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_two_consumers_see_every_seed_once_per_epoch_in_lock_step_and_resume_without_resampling(
    streams, tables_dir, ray_cluster
) -> None:
    samples = pq.read_table(tables_dir / SAMPLES_FILE).to_pandas()
    train = sorted(samples.loc[samples.split == "train", "sample_id"].tolist())
    dataset = streams.dataset("train", batch_size=8, epochs=2, shuffle=True, seed=3)
    iterators = streams.data_config(["train"]).configure({"train": dataset}, 2, None, None)

    def consume_stream(iterator, start_position: int = 0, stride: int = 2) -> list[tuple]:
        """A consumer in its own Ray worker process (defined here so Ray ships it by value)."""
        out = []
        for epoch, position, batch in iter_graph_batches(iterator, start_position, stride):
            seeds = batch["video"].sample_id[: batch["video"].batch_size].tolist()
            assert [f["sample_id"] for f in batch.seed_fields] == seeds
            nodes = {node_type: batch[node_type].n_id.tolist() for node_type in batch.node_types}
            out.append((epoch, position, seeds, nodes))
        return out

    consume = ray_cluster.remote(num_cpus=0)(consume_stream)
    ranks = ray_cluster.get([consume.remote(iterators[r]["train"], r) for r in range(2)])

    per_rank = num_batches_per_rank(streams.store_dir, "train", 8, 2)
    for rank, got in enumerate(ranks):
        assert [p for _, p, _, _ in got] == list(range(rank, 4 * per_rank, 2))  # global positions
        assert [e for e, _, _, _ in got] == [0] * per_rank + [1] * per_rank
        assert all(0 < len(seeds) <= 8 for _, _, seeds, _ in got)
    orders = []
    for epoch in (0, 1):
        seen = [s for got in ranks for e, _, seeds, _ in got if e == epoch for s in seeds]
        assert sorted(seen) == train
        orders.append([s for e, _, seeds, _ in ranks[0] if e == epoch for s in seeds])
    assert orders[0] != orders[1]

    # Resume in the last batch of epoch 0, as a restarted worker group does: rank 0 publishes the position
    # (graph_dataset_shard) before Ray Train calls configure; the stream begins there.
    start = 2 * (per_rank - 1)
    sampled = _batches_sampled(streams)
    ray_cluster.get(streams.starts.publish.remote("train", start, 2))
    again = streams.data_config(["train"]).configure({"train": dataset}, 2, None, None)
    resumed = ray_cluster.get(consume.remote(again[1]["train"], start_position=start + 1))
    assert resumed == ranks[1][per_rank - 1 :]
    assert _batches_sampled(streams) - sampled == len(resumed) == per_rank + 1
    with pytest.raises(
        ray_cluster.exceptions.RayTaskError, match=f"position {start + 1} where {start - 1} was due"
    ):
        ray_cluster.get(consume.remote(again[1]["train"], start_position=start - 1))


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_a_stream_resumed_on_another_world_size_sees_every_seed_once(
    streams, tables_dir, ray_cluster
) -> None:
    """2 ranks to the middle of epoch 0, then 1 rank to the end; and 1 rank to the middle, then 2 ranks."""
    samples = pq.read_table(tables_dir / SAMPLES_FILE).to_pandas()
    train = sorted(samples.loc[samples.split == "train", "sample_id"].tolist())
    dataset = streams.dataset("train", batch_size=8, epochs=1, shuffle=True, seed=5)
    per_epoch = 2 * num_batches_per_rank(streams.store_dir, "train", 8, 2, multiple=2)

    def take(iterator, start_position: int, stride: int, count: int) -> list[tuple[int, list[int]]]:
        got = []
        for _, position, batch in iter_graph_batches(iterator, start_position, stride):
            got.append((position, batch["video"].sample_id[: batch["video"].batch_size].tolist()))
            if len(got) == count:
                break
        return got

    consume = ray_cluster.remote(num_cpus=0)(take)
    middle = 2 * (per_epoch // 4)
    for first, second in ((2, 1), (1, 2)):
        ray_cluster.get(streams.starts.publish.remote("train", 0, 2))
        before = streams.data_config(["train"]).configure({"train": dataset}, first, None, None)
        head = [consume.remote(before[r]["train"], r, first, middle // first) for r in range(first)]
        ray_cluster.get(streams.starts.publish.remote("train", middle, 2))
        after = streams.data_config(["train"]).configure({"train": dataset}, second, None, None)
        rest = (per_epoch - middle) // second
        tail = [consume.remote(after[r]["train"], middle + r, second, rest) for r in range(second)]
        got = [item for part in ray_cluster.get(head + tail) for item in part]
        assert sorted(position for position, _ in got) == list(range(per_epoch)), (first, second)
        seen = [seed for _, seeds in got for seed in seeds]
        assert sorted(seen) == train, (first, second)  # every seed of the split, none twice


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_a_stream_yields_when_every_cpu_is_reserved(streams, ray_cluster) -> None:
    """The resource plan reserves no CPU for the streams' read tasks: they must run on a cluster whose
    every CPU is taken (by Train workers and sampler actors in a real run; here by one actor)."""

    @ray_cluster.remote(num_cpus=0)
    class Holder:
        def ready(self) -> bool:
            return True

    free = ray_cluster.available_resources().get("CPU", 0.0)
    holder = Holder.options(num_cpus=free).remote()
    try:
        ray_cluster.get(holder.ready.remote(), timeout=30)
        assert ray_cluster.available_resources().get("CPU", 0.0) == 0
        dataset = streams.dataset("train", batch_size=8, epochs=1, shuffle=False, seed=0)
        iterator = streams.data_config(["busy"]).configure({"busy": dataset}, 1, None, None)[0]["busy"]

        def first_batch(iterator) -> int:
            for _, _, batch in iter_graph_batches(iterator, 0, 1):
                return int(batch["video"].batch_size)
            return 0

        consume = ray_cluster.remote(num_cpus=0)(first_batch)
        assert ray_cluster.get(consume.remote(iterator), timeout=60) > 0
    finally:
        ray_cluster.kill(holder)


def test_a_start_past_the_end_of_the_stream_is_refused(streams, ray_cluster) -> None:
    dataset = streams.dataset("train", batch_size=8, epochs=1, shuffle=False, seed=0)
    late = 2 * num_batches_per_rank(streams.store_dir, "train", 8, 2) + 2
    ray_cluster.get(streams.starts.publish.remote("late", late, 2))
    with pytest.raises(ValueError, match=f"cannot start at position {late}: the 2 ranks share"):
        streams.data_config(["late"]).configure({"late": dataset}, 2, None, None)
    ray_cluster.get(streams.starts.publish.remote("late", 1, 2))
    with pytest.raises(ValueError, match="begin together at a multiple of 2"):
        streams.data_config(["late"]).configure({"late": dataset}, 2, None, None)
    ray_cluster.get(streams.starts.publish.remote("late", 0, 2))
    odd = 2 * num_batches_per_rank(streams.store_dir, "train", 8, 2) + 1  # cannot divide the epoch
    with pytest.raises(ValueError, match=f"cannot be shared by {odd} workers"):
        streams.data_config(["late"]).configure({"late": dataset}, odd, None, None)


def _batches_sampled(streams: GraphStreams) -> int:
    counts = [actor.batches_sampled.remote() for replicas in streams.actors for actor in replicas]
    return sum(ray.get(counts))


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_sampler_actors_fetch_halo_rows_from_their_owners_and_a_restarted_one_serves_the_same(
    streams, ray_cluster
) -> None:
    """Each actor asks the other for the rows it owns (no cache here); a killed actor that Ray restarts
    reopens its partition and serves the same rows, to the other's batches as to its own."""
    meta = read_meta(streams.store_dir)
    direct = [NeighborSampler(open_partition(streams.store_dir, p, meta), [2, 2], num_hops=2) for p in (0, 1)]
    seeds = [sampler.seed_sample_ids[:6] for sampler in direct]

    def through_actors() -> list:
        refs = [streams.actors[p][0].sample.remote(seeds[p], (11,)) for p in (0, 1)]
        return [pickle.loads(batch).to_hetero_data() for batch in ray_cluster.get(refs)]

    before = through_actors()
    stats = ray_cluster.get([streams.actors[p][0].stats.remote() for p in (0, 1)])
    assert all(s["remote_rows"] > 0 and s["requests"] > 0 and s["cache_bytes"] == 0 for s in stats), stats
    for p in (0, 1):
        _assert_same_batch(before[p], direct[p].sample(seeds[p], np.random.default_rng([11])))
    assert direct[0].gather.stats["remote_rows"] > 0  # the batch needs rows partition 1 owns
    _kill_and_wait_for_its_restart(ray_cluster, streams.actors[1][0])
    after = through_actors()
    assert ray_cluster.get(streams.actors[1][0].batches_sampled.remote()) == 1  # restarted: counts anew
    for p in (0, 1):
        _assert_same_batch(after[p], before[p])


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_a_read_task_puts_each_batch_at_its_position(streams, ray_cluster) -> None:
    """`sample_batches` (a read task's body) gives each of its rows the batch a sampler gives for that
    position's seeds and key (plan seed, epoch, batch), across an epoch's end and both partitions."""
    meta = read_meta(streams.store_dir)
    direct = [NeighborSampler(open_partition(streams.store_dir, p, meta), [2, 2], num_hops=2) for p in (0, 1)]
    plan = EpochPlan(streams.store_dir, "train", 4, 2, True, 7)
    per_epoch = plan.batches_per_epoch()
    rows = np.arange((per_epoch - 8) // 2, (per_epoch + 8) // 2)  # rank 1 of 2: around epoch 0's end
    got = sample_batches({"id": rows}, plan, streams.actors, 1, 2, 0)

    assert got["position"].tolist() == (1 + 2 * rows).tolist()
    assert set(got["epoch"].tolist()) == {0, 1}
    partitions = set()
    for position, epoch, batch in zip(got["position"], got["epoch"], got["batch"], strict=True):
        j = int(position) - int(epoch) * per_epoch
        partition, seeds = plan.epoch(int(epoch))[j]
        partitions.add(partition)
        expected = direct[partition].sample(seeds, np.random.default_rng([plan.seed, int(epoch), j]))
        _assert_same_batch(pickle.loads(batch).to_hetero_data(), expected)
    assert partitions == {0, 1}


def _kill_and_wait_for_its_restart(ray_cluster, actor, timeout_s: float = 60.0) -> None:
    """`ray.kill` only asks for the kill: until the old process is gone it may still answer calls (a
    count of 46 rather than 1, seen once in CI), so wait until another process answers."""
    old_pid = ray_cluster.get(actor.__ray_call__.remote(lambda _: os.getpid()))
    ray_cluster.kill(actor, no_restart=False)
    deadline = time.monotonic() + timeout_s
    while ray_cluster.get(actor.__ray_call__.remote(lambda _: os.getpid())) == old_pid:
        assert time.monotonic() < deadline, f"actor pid {old_pid} not restarted in {timeout_s} s"
        time.sleep(0.1)


def _assert_same_batch(one, other) -> None:
    for node_type in one.node_types:
        assert torch.equal(one[node_type].n_id, other[node_type].n_id), node_type
        assert torch.equal(one[node_type].x, other[node_type].x), node_type
    for edge_type in one.edge_types:
        assert torch.equal(one[edge_type].edge_index, other[edge_type].edge_index), edge_type


def test_the_plan_cuts_a_multiple_of_its_multiple_without_losing_a_seed(streams) -> None:
    for multiple in (1, 2, 3, 5, 6):
        plan = EpochPlan(streams.store_dir, "train", 8, 1, True, 0, multiple)
        batches = plan.epoch(0)
        assert len(batches) % multiple == 0
        for world_size in (w for w in range(1, multiple + 1) if multiple % w == 0):
            assert len(batches) == world_size * plan.batches_per_rank(world_size)
        seeds = np.concatenate([s for _, s in batches])
        assert len(np.unique(seeds)) == len(seeds)
        assert max(len(s) for _, s in batches) <= 8
        assert plan.epoch(0)[0][1].tolist() == batches[0][1].tolist()
        with pytest.raises(ValueError, match=f"cannot be shared by {len(batches) + 1} workers"):
            plan.batches_per_rank(len(batches) + 1)
    with pytest.raises(ValueError, match="fewer than the 10000 batches"):
        EpochPlan(streams.store_dir, "train", 8, 1, True, 0, 10_000).batches_per_epoch()


@pytest.mark.parametrize("multiple", [1, 2, 3, 8])
def test_a_stream_shape_counts_the_batches_its_stream_cuts_without_the_store(streams, multiple) -> None:
    """Workers count batches from the shape the driver hands them; it must agree with the stream's plan."""
    for split, batch_size in (("train", 8), ("train", 3), ("test", 5)):
        shape = streams.shape(split, batch_size)
        assert sum(shape.seeds_per_partition) == split_size(streams.store_dir, split) > 0
        plan = EpochPlan(streams.store_dir, split, batch_size, 1, False, 0, multiple)
        assert shape.batches_per_epoch(multiple) == plan.batches_per_epoch()
        assert shape.batches_per_epoch(multiple) % multiple == 0
    with pytest.raises(ValueError, match="split 'train' has .* fewer than the 10000 batches"):
        streams.shape("train", 8).batches_per_epoch(10_000)


def test_stream_names_follow_one_rule() -> None:
    assert [stream_name(split, "alignment") for split in ("train", "val", "test")] == [
        "train_alignment",
        "val_alignment",
        "test_alignment",
    ]


@pytest.mark.parametrize("first, second", [(2, 1), (1, 2), (4, 2), (2, 4)])
def test_positions_are_global_so_a_world_size_change_mid_epoch_sees_every_seed_once(
    streams, first, second
) -> None:
    """The position rule alone (no Ray): ranks of `first` consume global positions up to a step boundary
    in the middle of epoch 1, ranks of `second` the rest; every epoch holds every seed exactly once."""
    plan = EpochPlan(streams.store_dir, "train", 4, 2, True, 0, multiple=4)
    per_epoch = plan.batches_per_epoch()
    middle = per_epoch + 4 * (per_epoch // 8)
    consumed: list[int] = []
    for world, start, stop in ((first, 0, middle), (second, middle, 2 * per_epoch)):
        for rank in range(world):
            consumed += rank_positions(start, rank, world, np.arange((stop - start) // world)).tolist()
    assert sorted(consumed) == list(range(2 * per_epoch))
    split = np.sort(np.concatenate([s for _, s in plan.epoch(0)]))
    for epoch in (0, 1):
        seen = [s for g in consumed if g // per_epoch == epoch for s in plan.epoch(epoch)[g % per_epoch][1]]
        assert sorted(seen) == split.tolist()


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_the_stream_starts_before_the_epoch_is_sampled_and_runs_ahead_only_its_buffer(
    tables_dir, tmp_path_factory, ray_cluster, graph_config
) -> None:
    # blocks of 2 batches: how far a stream runs ahead is its buffer plus the blocks in flight (5 blocks of
    # 8 of these 0.04 MB batches already exceed a quarter of the run)
    cfg = graph_config(num_partitions=2, fanouts=[2, 2], stream_buffer_mb=0.5, stream_block_batches=2)
    store = tmp_path_factory.mktemp("buffer_store")
    build_graph(tables_dir, cfg, store)
    streams = GraphStreams(cfg, store)
    try:
        dataset = streams.dataset("train", batch_size=8, epochs=10, shuffle=True, seed=1)
        (shard,) = streams.data_config(["train"]).configure({"train": dataset}, 1, None, None)
        total = 10 * num_batches_per_rank(store, "train", 8, 1)  # one rank: its positions are the global ones
        batches = iter_graph_batches(shard["train"])
        _, _, first = next(batches)
        time.sleep(3)  # the executor runs ahead as far as the buffer lets it
        ahead = _batches_sampled(streams)
        batch_mb = len(pickle.dumps(first)) / 1e6
        print(f"sampled {ahead} of {total} batches ({batch_mb:.3f} MB each) while the first one was held")
        assert 1 <= ahead <= total // 4
        assert sum(1 for _ in batches) == total - 1
    finally:
        streams.shutdown()


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_a_closed_stream_stops_sampling(streams, ray_cluster) -> None:
    # a stage cut short closes its streams (netgpt/train/prefetch.py): their executions must end there
    running_before = set(_stream_threads())
    dataset = streams.dataset("train", batch_size=8, epochs=50, shuffle=True, seed=2)
    # a name of its own: the fixture's streams keep the start positions other tests published for theirs
    (shard,) = streams.data_config(["closing"]).configure({"closing": dataset}, 1, None, None)
    batches = prefetch(iter_graph_batches(shard["closing"]))
    next(batches)
    batches.close()
    time.sleep(1)  # what was in flight lands
    closed_at = _batches_sampled(streams)
    time.sleep(3)
    assert _batches_sampled(streams) == closed_at
    assert not set(_stream_threads()) - running_before  # this stream's threads all ended


def _stream_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(("StreamingExecutor", "netgpt-"))]


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_a_process_given_sampler_handles_imports_neither_torch_nor_pyg(streams, ray_cluster) -> None:
    # Ray imports an actor's module wherever a handle to it arrives: each read task's process, before its
    # first batch. torch and PyG cost seconds of CPU there (netgpt/graph/loader.py, SamplerActor).
    fresh = {"env_vars": {"NETGPT_TEST_FRESH_WORKER": str(time.time())}}  # a new process, not a pooled one

    @ray.remote(num_cpus=0, runtime_env=fresh)
    def modules_after_receiving(actors: list) -> tuple[int, bool, bool]:
        import sys

        return len(actors), "torch" in sys.modules, "torch_geometric" in sys.modules

    assert ray_cluster.get(modules_after_receiving.remote(streams.actors)) == (
        len(streams.actors),
        False,
        False,
    )

"""The Ray Data stream: every seed once per epoch across 2 consumers, deterministic, resumable without
sampling the batches before the resume position."""

from __future__ import annotations

import pickle
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
import ray

from netgpt.data.schema import SAMPLES_FILE
from netgpt.graph.build import build_graph
from netgpt.graph.loader import EpochPlan, GraphStreams, iter_graph_batches, num_batches_per_rank


@pytest.fixture(scope="module")
def streams(tables_dir, tmp_path_factory, ray_cluster, graph_config):
    cfg = graph_config(num_partitions=2, fanouts=[2, 2])
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

    def consume_stream(iterator, start_position: int = 0) -> list[tuple[int, int, list[int], dict]]:
        """A consumer in its own Ray worker process (defined here so Ray ships it by value)."""
        out = []
        for epoch, position, batch in iter_graph_batches(iterator, start_position):
            seeds = batch["video"].sample_id[: batch["video"].batch_size].tolist()
            assert [f["sample_id"] for f in batch.seed_fields] == seeds
            nodes = {node_type: batch[node_type].n_id.tolist() for node_type in batch.node_types}
            out.append((epoch, position, seeds, nodes))
        return out

    consume = ray_cluster.remote(num_cpus=0)(consume_stream)
    ranks = ray_cluster.get([consume.remote(iterators[r]["train"]) for r in range(2)])

    per_rank = num_batches_per_rank(streams.store_dir, "train", 8, 2)
    for got in ranks:
        assert [p for _, p, _, _ in got] == list(range(2 * per_rank))
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
    start = per_rank - 1
    sampled = _batches_sampled(streams)
    ray_cluster.get(streams.starts.publish.remote("train", start))
    again = streams.data_config(["train"]).configure({"train": dataset}, 2, None, None)
    resumed = ray_cluster.get(consume.remote(again[1]["train"], start_position=start))
    assert resumed == ranks[1][start:]
    assert _batches_sampled(streams) - sampled == len(resumed) == 2 * per_rank - start
    with pytest.raises(
        ray_cluster.exceptions.RayTaskError, match=f"position {start} where {start - 1} was due"
    ):
        ray_cluster.get(consume.remote(again[1]["train"], start_position=start - 1))


def test_a_start_past_the_end_of_the_stream_is_refused(streams, ray_cluster) -> None:
    dataset = streams.dataset("train", batch_size=8, epochs=1, shuffle=False, seed=0)
    late = num_batches_per_rank(streams.store_dir, "train", 8, 2) + 1
    ray_cluster.get(streams.starts.publish.remote("late", late))
    with pytest.raises(ValueError, match=f"cannot start at position {late}: each of the 2 ranks"):
        streams.data_config(["late"]).configure({"late": dataset}, 2, None, None)


def _batches_sampled(streams: GraphStreams) -> int:
    counts = [actor.batches_sampled.remote() for replicas in streams.actors for actor in replicas]
    return sum(ray.get(counts))


def test_the_plan_cuts_a_multiple_of_the_world_size_without_losing_a_seed(streams) -> None:
    for world_size in (1, 2, 3, 5):
        plan = EpochPlan(streams.store_dir, "train", 8, 1, True, 0)
        batches = plan.epoch(0, world_size)
        assert len(batches) % world_size == 0
        assert len(batches) == world_size * plan.batches_per_rank(world_size)
        seeds = np.concatenate([s for _, s in batches])
        assert len(np.unique(seeds)) == len(seeds)
        assert max(len(s) for _, s in batches) <= 8
        assert plan.epoch(0, world_size)[0][1].tolist() == batches[0][1].tolist()
    with pytest.raises(ValueError, match="fewer than the 10000 workers"):
        EpochPlan(streams.store_dir, "train", 8, 1, True, 0).batches_per_rank(10_000)


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_the_stream_starts_before_the_epoch_is_sampled_and_runs_ahead_only_its_buffer(
    tables_dir, tmp_path_factory, ray_cluster, graph_config
) -> None:
    cfg = graph_config(num_partitions=2, fanouts=[2, 2], stream_buffer_mb=0.5)
    store = tmp_path_factory.mktemp("buffer_store")
    build_graph(tables_dir, cfg, store)
    streams = GraphStreams(cfg, store)
    try:
        dataset = streams.dataset("train", batch_size=8, epochs=10, shuffle=True, seed=1)
        (shard,) = streams.data_config(["train"]).configure({"train": dataset}, 1, None, None)
        total = 10 * num_batches_per_rank(store, "train", 8, 1)
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

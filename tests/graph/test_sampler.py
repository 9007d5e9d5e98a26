"""The sampler against an independent, plain-Python k-hop expansion of the whole graph."""

from __future__ import annotations

import pickle
import subprocess
import sys
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from netgpt.data.schema import COMMENTS_FILE, SAMPLES_FILE
from netgpt.graph.build import build_graph
from netgpt.graph.features import write_content_file
from netgpt.graph.rows import RowCache
from netgpt.graph.sampler import NeighborSampler, choose_positions
from netgpt.graph.seeds import SEED_FIELDS
from netgpt.graph.store import StoreError, open_partition, read_meta
from netgpt.graph.topology import PAD
from netgpt.graph.types import EDGE_TYPES, NODE_TYPE_NAMES, NODE_TYPES, RELATIONS, VIDEO

ATTRIBUTE = {r.name: r.src for r in RELATIONS if r.src not in (VIDEO, "topic", "platform", "comment")}


class WholeGraph:
    """The propagation graph (docs/graph.md) straight from the tables, one Python object per node."""

    def __init__(self, tables: Path) -> None:
        self.rows = {r["sample_id"]: r for r in pq.read_table(tables / SAMPLES_FILE).to_pylist()}
        comment_owner = pq.read_table(tables / COMMENTS_FILE)["sample_id"].to_numpy()
        self.comments = defaultdict(list)
        for index, row in enumerate(np.argsort(comment_owner, kind="stable")):
            self.comments[int(comment_owner[row])].append(index)

    def in_edges(self, sid: int) -> list[tuple[str, tuple, tuple]]:
        """(relation, source node, target node) of every edge into video `sid`; nodes are (type, identity)."""
        me = self.rows[sid]
        target = (VIDEO, sid)
        out = [(name, (src, sid), target) for name, src in ATTRIBUTE.items()]
        out.append(("is_topic_of", ("topic", me["topic"]), target))
        out.append(("is_platform_of", ("platform", me["platform"]), target))
        out += [("is_comment_of", ("comment", c), target) for c in self.comments[sid]]
        out += [("is_history_of", (VIDEO, h), target) for h in me["history_ids"]]
        for name, key in (("has_same_topic_as", "topic"), ("has_same_author_as", "author_id")):
            out += [
                (name, (VIDEO, other), target)
                for other, row in self.rows.items()
                if row[key] == me[key]
                and row["crawl_date"] <= me["crawl_date"]
                and row["video_id"] != me["video_id"]
            ]
        return out

    def k_hop(self, seeds: list[int], hops: int) -> tuple[set, set]:
        nodes = {(VIDEO, s) for s in seeds}
        edges: set = set()
        frontier = set(seeds)
        for _ in range(hops):
            reached = set()
            for sid in frontier:
                for edge in self.in_edges(sid):
                    edges.add(edge)
                    if edge[1] not in nodes and edge[1][0] == VIDEO:
                        reached.add(edge[1][1])
                    nodes.add(edge[1])
            frontier = reached
        return nodes, edges


def batch_identities(batch, meta) -> tuple[set, set]:
    """The batch's nodes and edges in the whole graph's identities."""
    names = {"topic": meta["topic_names"], "platform": meta["platform_names"]}

    def identity(node_type: str, index: int) -> tuple:
        n_id = int(batch[node_type].n_id[index])
        return (node_type, names[node_type][n_id] if node_type in names else n_id)

    nodes = {identity(t, i) for t in NODE_TYPE_NAMES for i in range(batch[t].num_nodes)}
    edges = set()
    for src, rel, dst in EDGE_TYPES:
        for s, d in batch[src, rel, dst].edge_index.t().tolist():
            edges.add((rel, identity(src, s), identity(dst, d)))
    return nodes, edges


@pytest.fixture(scope="module")
def whole(tables_dir: Path) -> WholeGraph:
    return WholeGraph(tables_dir)


@pytest.fixture(scope="module")
def stores(tables_dir: Path, tmp_path_factory, ray_cluster, graph_config) -> dict[int, Path]:
    out = {}
    for k in (1, 2, 4):
        out[k] = tmp_path_factory.mktemp(f"store{k}")
        build_graph(tables_dir, graph_config(num_partitions=k), out[k])
    return out


@pytest.fixture(scope="module")
def topic_store(tables_dir: Path, tmp_path_factory, ray_cluster, graph_config) -> Path:
    out = tmp_path_factory.mktemp("store4-topic")
    build_graph(tables_dir, graph_config(num_partitions=4, partitioner="topic"), out)
    return out


@pytest.mark.parametrize(("k", "partitioner"), [(1, "metis"), (2, "metis"), (4, "metis"), (4, "topic")])
def test_full_fanout_equals_whole_graph_k_hop(
    request: pytest.FixtureRequest, stores, whole: WholeGraph, k: int, partitioner: str
) -> None:
    store = request.getfixturevalue("topic_store") if partitioner == "topic" else stores[k]
    meta = read_meta(store)
    assert meta["partitioner"] == (partitioner if k > 1 else "single")
    checked = fetched = 0
    for index in range(k):
        sampler = NeighborSampler(open_partition(store, index, meta), [-1, -1], num_hops=2)
        seeds = sampler.seed_sample_ids
        for chosen in (seeds[:1], seeds[::3][:6], seeds[::-5][:4]):
            batch = sampler.sample(chosen, np.random.default_rng(1))
            expected_nodes, expected_edges = whole.k_hop([int(s) for s in chosen], 2)
            nodes, edges = batch_identities(batch, meta)
            assert nodes == expected_nodes
            assert edges == expected_edges
            checked += 1
        fetched += sampler.gather.stats["remote_rows"]
    assert checked == 3 * k
    # With K > 1 the batches include rows their partition does not own, fetched from the owners.
    assert (fetched > 0) == (k > 1)


def test_batch_layout_matches_the_contract(stores) -> None:
    meta = read_meta(stores[2])
    sampler = NeighborSampler(open_partition(stores[2], 0, meta), [3, 2], num_hops=2)
    chosen = sampler.seed_sample_ids[[4, 0, 2]]
    batch = sampler.sample(chosen, np.random.default_rng(0))
    for node_type in NODE_TYPES:
        assert batch[node_type.name].x.dtype == torch.float32
        assert batch[node_type.name].x.shape[1] == meta["feature_dims"][node_type.name]
    for edge_type in EDGE_TYPES:
        index = batch[edge_type].edge_index
        assert index.dtype == torch.int64 and index.shape[0] == 2
        if index.numel():
            assert index[0].max() < batch[edge_type[0]].num_nodes
            assert index[1].max() < batch[edge_type[2]].num_nodes
    assert batch[VIDEO].batch_size == 3
    assert batch[VIDEO].sample_id[:3].tolist() == chosen.tolist()
    assert [f["sample_id"] for f in batch.seed_fields] == chosen.tolist()
    assert batch[VIDEO].y.tolist() == [float(f["level"]) for f in batch.seed_fields]
    assert tuple(batch.seed_fields[0]) == SEED_FIELDS
    assert set(SEED_FIELDS) == {
        "sample_id", "platform", "topic", "title", "description", "post_time", "crawl_date", "duration_s",
        "fans", "likes", "views", "shares", "collects", "comment_count", "level", "split",
    }  # fmt: skip
    assert len(batch.seed_fields[0]["post_time"]) == 19 and len(batch.seed_fields[0]["crawl_date"]) == 10
    fanout_of_hop0 = 3
    dst = batch[VIDEO, "has_same_topic_as", VIDEO].edge_index[1]
    assert torch.bincount(dst[dst < 3], minlength=3).max() <= fanout_of_hop0


@pytest.mark.parametrize("fanouts", [[-1, -1], [2, 3]])
def test_every_sampled_edge_is_causal(stores, whole: WholeGraph, fanouts: list[int]) -> None:
    meta = read_meta(stores[4])
    for index in range(4):
        sampler = NeighborSampler(open_partition(stores[4], index, meta), fanouts, num_hops=2)
        batch = sampler.sample(sampler.seed_sample_ids, np.random.default_rng(index))
        sids = batch[VIDEO].sample_id.tolist()
        for relation in ("is_history_of", "has_same_topic_as", "has_same_author_as"):
            for s, d in batch[VIDEO, relation, VIDEO].edge_index.t().tolist():
                src, dst = whole.rows[sids[s]], whole.rows[sids[d]]
                assert src["crawl_date"] <= dst["crawl_date"], (relation, sids[s], sids[d])
                assert s != d
                if relation != "is_history_of":
                    assert src["video_id"] != dst["video_id"]


def test_same_rng_seed_same_batch_and_fanouts_bound_the_draws(stores) -> None:
    meta = read_meta(stores[1])
    sampler = NeighborSampler(open_partition(stores[1], 0, meta), [2, 1], num_hops=2)
    seeds = sampler.seed_sample_ids[:10]
    first = sampler.sample(seeds, np.random.default_rng(7))
    second = sampler.sample(seeds, np.random.default_rng(7))
    other = sampler.sample(seeds, np.random.default_rng(8))
    for edge_type in EDGE_TYPES:
        assert torch.equal(first[edge_type].edge_index, second[edge_type].edge_index)
    assert torch.equal(first[VIDEO].sample_id, second[VIDEO].sample_id)
    assert not all(torch.equal(first[e].edge_index, other[e].edge_index) for e in EDGE_TYPES)


def test_choose_positions_is_uniform_distinct_and_skips_exclusions() -> None:
    rng = np.random.default_rng(0)
    rows = 4000
    start = np.arange(rows) * 100
    length = np.full(rows, 10)
    excl = np.full((rows, 3), PAD)
    excl[:, 0], excl[:, 1] = 2, 7
    row, flat = choose_positions(start, length, excl, 4, rng)
    position = flat - start[row]
    assert (np.bincount(row, minlength=rows) == 4).all()
    assert not np.isin(position, [2, 7]).any() and position.max() < 10
    assert all(len(set(position[row == r])) == 4 for r in range(50))
    frequency = np.bincount(position, minlength=10)[[0, 1, 3, 4, 5, 6, 8, 9]] / (rows * 4)
    assert np.allclose(frequency, 1 / 8, atol=0.01)
    row_all, flat_all = choose_positions(start[:3], np.array([0, 1, 5]), None, -1, rng)
    assert row_all.tolist() == [1, 2, 2, 2, 2, 2]
    assert (flat_all - start[row_all]).tolist() == [0, 0, 1, 2, 3, 4]


def test_a_seed_of_another_partition_is_an_error(stores) -> None:
    meta = read_meta(stores[2])
    first = NeighborSampler(open_partition(stores[2], 0, meta), [-1, -1], num_hops=2)
    second = NeighborSampler(open_partition(stores[2], 1, meta), [-1, -1], num_hops=2)
    with pytest.raises(KeyError, match="is not a seed of partition 0"):
        first.sample(second.seed_sample_ids[:1], np.random.default_rng(0))
    with pytest.raises(Exception, match="halo for 2 hops"):
        NeighborSampler(open_partition(stores[2], 0, meta), [-1, -1, -1], num_hops=2)


def test_seed_fields_of_another_shape_are_refused(stores, tmp_path) -> None:
    partition = open_partition(stores[2], 0)
    other = tmp_path / "seeds.parquet"
    pq.write_table(partition.read_seed_fields().drop_columns(["title"]), other)
    with pytest.raises(StoreError, match=r"seeds.parquet: columns .* expected the seed fields"):
        NeighborSampler(replace(partition, seeds_path=other), [-1, -1], num_hops=2)


@pytest.fixture(scope="module")
def content_stores(tables_dir: Path, tmp_path_factory, ray_cluster, graph_config) -> dict[int, Path]:
    """K = 1 and K = 4 stores with content vectors for every other video (the rest stay zeros)."""
    content = tmp_path_factory.mktemp("content")
    videos = sorted(set(pq.read_table(tables_dir / SAMPLES_FILE)["video_id"].to_pylist()))[::2]
    vectors = np.random.default_rng(3).normal(size=(len(videos), 3))
    content = write_content_file(content / "content.parquet", videos, vectors)
    out = {}
    for k in (1, 4):
        out[k] = tmp_path_factory.mktemp(f"content-store{k}")
        build_graph(tables_dir, graph_config(num_partitions=k, content_file=str(content)), out[k])
    return out


def test_every_node_has_the_same_features_in_a_partition_as_in_the_whole(content_stores) -> None:
    whole = NeighborSampler(open_partition(content_stores[1], 0), [-1, -1], num_hops=2)
    meta = read_meta(content_stores[4])
    compared = 0
    for index in range(4):
        sampler = NeighborSampler(open_partition(content_stores[4], index, meta), [-1, -1], num_hops=2)
        seeds = sampler.seed_sample_ids[::4][:5]
        ours = sampler.sample(seeds, np.random.default_rng(0))
        reference = whole.sample(seeds, np.random.default_rng(0))
        for node_type in NODE_TYPE_NAMES:
            expected = dict(zip(reference[node_type].n_id.tolist(), reference[node_type].x, strict=True))
            assert ours[node_type].num_nodes == len(expected)
            for n_id, x in zip(ours[node_type].n_id.tolist(), ours[node_type].x, strict=True):
                assert torch.equal(x, expected[n_id]), (node_type, n_id)
                compared += 1
    assert compared > 1000
    assert (whole.partition.rows("video_x", np.arange(whole.partition.num_owned)) != 0).any()


def _assert_same_batch(one, other) -> None:
    for node_type in NODE_TYPE_NAMES:
        assert torch.equal(one[node_type].n_id, other[node_type].n_id), node_type
        assert torch.equal(one[node_type].x, other[node_type].x), node_type
    for edge_type in EDGE_TYPES:
        assert torch.equal(one[edge_type].edge_index, other[edge_type].edge_index), edge_type
    assert one.seed_fields == other.seed_fields


def test_same_seeds_same_batch_whether_rows_are_local_fetched_or_cached(content_stores) -> None:
    whole = NeighborSampler(open_partition(content_stores[1], 0), [3, 2], num_hops=2)
    meta = read_meta(content_stores[4])
    for index in range(4):
        partition = open_partition(content_stores[4], index, meta)
        fetching = NeighborSampler(partition, [3, 2], num_hops=2, cache_rows=0)
        caching = NeighborSampler(partition, [3, 2], num_hops=2, cache_rows=10_000)
        seeds = fetching.seed_sample_ids[::2][:8]
        local = whole.sample(seeds, np.random.default_rng(5))
        fetched = fetching.sample(seeds, np.random.default_rng(5))
        first = caching.sample(seeds, np.random.default_rng(5))
        remote = caching.gather.stats["remote_rows"]
        cached = caching.sample(seeds, np.random.default_rng(5))
        assert remote > 0 and caching.gather.stats["remote_rows"] == remote  # the second time all cached
        assert caching.gather.stats["cache_hits"] == remote
        for batch in (fetched, first, cached):
            _assert_same_batch(batch, local)


def test_the_row_cache_keeps_at_most_its_capacity_and_evicts_the_least_recently_used() -> None:
    cache = RowCache(3)
    cache.insert(np.array([10, 11, 12]), {"x": np.array([[0.0], [1.0], [2.0]])})
    assert cache.lookup(np.array([12, 99, 10])).tolist()[1] == -1
    cache.insert(np.array([13]), {"x": np.array([[3.0]])})  # 11 was used least recently
    slots = cache.lookup(np.array([10, 11, 12, 13]))
    assert slots[1] == -1 and (slots[[0, 2, 3]] >= 0).all()
    assert cache.values("x", slots[[0, 2, 3]])[:, 0].tolist() == [0.0, 2.0, 3.0]
    assert cache.nbytes == 3 * 8
    assert (RowCache(0).lookup(np.array([1])) == -1).all()


def test_sampling_arrays_loads_neither_torch_nor_pyg_and_they_make_the_same_batch(stores) -> None:
    """What a sampler actor runs (`sample_arrays`, then pickling) in a fresh process: neither module loads,
    and the arrays turn into the batch `sample` gives."""
    probe = (
        "import pickle, sys, numpy as np\n"
        "from netgpt.graph.sampler import NeighborSampler\n"
        "from netgpt.graph.store import open_partition\n"
        f"sampler = NeighborSampler(open_partition({str(stores[2])!r}, 1), [3, 2], num_hops=2)\n"
        "arrays = sampler.sample_arrays(sampler.seed_sample_ids[:5], np.random.default_rng(3))\n"
        "loaded = [m for m in ('torch', 'torch_geometric') if m in sys.modules]\n"
        "sys.stdout.buffer.write(pickle.dumps((arrays, loaded)))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, check=True)
    arrays, loaded = pickle.loads(done.stdout)
    assert loaded == []
    sampler = NeighborSampler(open_partition(stores[2], 1), [3, 2], num_hops=2)
    expected = sampler.sample(sampler.seed_sample_ids[:5], np.random.default_rng(3))
    batch = arrays.to_hetero_data()
    assert batch.node_types == expected.node_types and batch.edge_types == expected.edge_types
    for store, want in zip(batch.stores, expected.stores, strict=True):
        assert list(store.keys()) == list(want.keys())
        for key, value in want.items():
            got = store[key]
            assert torch.equal(got, value) if torch.is_tensor(value) else got == value, key
    assert batch.seed_fields == expected.seed_fields

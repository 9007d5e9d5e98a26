"""The graph of new samples against a store: the same neighbourhood a stored sample gets, causal."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from netgpt.data.importer import import_new_samples
from netgpt.data.validate import DataError
from netgpt.graph.extend import NEW_SAMPLES_FILE, NewSamples
from netgpt.graph.features import make_text_encoder
from netgpt.graph.sampler import NeighborSampler
from netgpt.graph.store import StoreError, open_partition, read_meta
from netgpt.graph.types import EDGE_TYPES, NODE_TYPE_NAMES, VIDEO


def new_samples(world, tmp_path, records: dict | None = None, content: bool = True) -> NewSamples:
    """The held-out samples (or `records`) against the base store, with their content vectors' file
    (`netgpt predict --content`) unless `content` is False."""
    source = world.new_json
    if records is not None:
        source = tmp_path / "input.json"
        source.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    name, _ = import_new_samples(source, tmp_path / "input", world.config.data, progress=False)
    cfg = world.config
    return NewSamples(
        tmp_path / "input",
        name,
        cfg.data.tables_dir,
        cfg.graph.store_dir,
        cfg.graph,
        str(world.new_content) if content else "",
    )


def identities(batch, meta, sample_id_of: dict[int, int]) -> tuple[dict, set]:
    """The batch's nodes as {identity: feature bytes} and its edges as identities, in terms every store
    shares: videos and their attributes by (input) sample id, topics and platforms by name, comments by
    their video and feature row (comment row numbers differ between tables)."""
    names = {"topic": meta["topic_names"], "platform": meta["platform_names"]}
    ident = {}
    for node_type in NODE_TYPE_NAMES:
        for i, n_id in enumerate(batch[node_type].n_id.tolist()):
            if node_type in names:
                ident[node_type, i] = (node_type, names[node_type][n_id])
            elif node_type != "comment":
                ident[node_type, i] = (node_type, sample_id_of.get(n_id, n_id))
    x = {t: batch[t].x.numpy() for t in NODE_TYPE_NAMES}
    for comment, video in batch["comment", "is_comment_of", VIDEO].edge_index.t().tolist():
        ident["comment", comment] = ("comment", ident[VIDEO, video][1], x["comment"][comment].tobytes())
    assert len(ident) == sum(batch[t].num_nodes for t in NODE_TYPE_NAMES)
    nodes = {identity: x[t][i].tobytes() for (t, i), identity in ident.items()}
    edges = {
        (rel, ident[src, s], ident[dst, d])
        for src, rel, dst in EDGE_TYPES
        for s, d in batch[src, rel, dst].edge_index.t().tolist()
    }
    return nodes, edges


def test_held_out_samples_get_the_neighbourhood_the_whole_store_gives_them(held_out_world, tmp_path) -> None:
    world = held_out_world
    new = new_samples(world, tmp_path)
    ext = new.write_store(tmp_path / "ext", num_hops=2)
    ext_meta, whole_meta = read_meta(ext), read_meta(world.whole.graph.store_dir)
    ext_sampler = NeighborSampler(open_partition(ext, 0, ext_meta), [-1, -1], num_hops=2)
    whole = [
        NeighborSampler(open_partition(world.whole.graph.store_dir, p, whole_meta), [-1, -1], num_hops=2)
        for p in range(len(whole_meta["partitions"]))
    ]
    to_input = dict(zip(new.internal_ids.tolist(), new.input_ids.tolist(), strict=True))
    compared = 0
    for internal, input_id in to_input.items():
        owner = [s for s in whole if input_id in s.seed_sample_ids]
        if not owner:  # a final state: no seed of the whole store to compare with
            continue
        expected = identities(owner[0].sample([input_id], np.random.default_rng(0)), whole_meta, {})
        got = identities(ext_sampler.sample([internal], np.random.default_rng(0)), ext_meta, to_input)
        assert got[0].keys() == expected[0].keys()
        assert got[0] == expected[0]  # every feature row, bit for bit
        assert got[1] == expected[1]
        compared += 1
    assert compared >= 4  # three videos' held-out non-final states and the two-state video's first
    # the comparison covers content rows: the wholly held-out video's vector came from the new file only
    held_video = new.new["video_id"].to_pylist()[-1]
    rows = open_partition(ext, 0, ext_meta).rows("video_x", np.arange(len(new.internal_ids)))
    assert np.array_equal(rows[-1], world.content[held_video]) and rows[-1].any()
    info = ext_meta["partitions"][0]
    assert info["texts_reused_from_store"] > 0 and info["texts_encoded"] > 0  # store rows and fresh ones


def test_no_neighbour_was_crawled_after_the_sample(held_out_world, tmp_path) -> None:
    new = new_samples(held_out_world, tmp_path)
    ext = new.write_store(tmp_path / "ext", num_hops=2)
    sampler = NeighborSampler(open_partition(ext, 0), [-1, -1], num_hops=2)
    topology = new.topology
    day = dict(zip(topology.sample_id.tolist(), topology.day.tolist(), strict=True))
    later_in_topic = 0
    for internal in new.internal_ids.tolist():
        batch = sampler.sample([internal], np.random.default_rng(0))
        videos = batch[VIDEO].n_id.tolist()
        assert max(day[v] for v in videos) <= day[internal]
        row = np.searchsorted(topology.sample_id, internal)
        same_topic = topology.topic == topology.topic[row]
        stored = topology.sample_id <= new.base_max
        later_in_topic += int((stored & same_topic & (topology.day > day[internal])).sum())
    assert later_in_topic > 0  # the store does hold later samples of these topics, and none got in


def test_seeds_are_a_chunk_of_the_input_and_the_rest_stays_in_the_graph(held_out_world, tmp_path) -> None:
    new = new_samples(held_out_world, tmp_path)
    ext = new.write_store(tmp_path / "ext", num_hops=2, positions=np.array([1, 3]))
    sampler = NeighborSampler(open_partition(ext, 0), [-1, -1], num_hops=2)
    assert sampler.seed_sample_ids.tolist() == new.internal_ids[[1, 3]].tolist()
    flags = pq.read_table(ext / NEW_SAMPLES_FILE).to_pydict()
    assert flags["input_sample_id"] == new.input_ids[[1, 3]].tolist()
    # the held-out final state (position 1) lists its earlier state (position 0), a sample of the input
    batch = sampler.sample(new.internal_ids[[1]], np.random.default_rng(0))
    assert new.internal_ids[0] in batch[VIDEO].n_id.tolist()


@pytest.mark.parametrize(
    ("history", "rule"),
    [
        ([10**9], "earlier-state id 1000000000 is neither a sample of this file nor of the store"),
        ([0], "earlier-state id 0 is another video's sample"),
    ],
)
def test_an_earlier_state_must_exist_and_be_the_same_video(held_out_world, tmp_path, history, rule) -> None:
    records = dict(held_out_world.new)
    key = next(k for k, r in records.items() if not r["历史状态"])
    records[key] = {**records[key], "历史状态": history}
    if records[key]["url"] == held_out_world.records["0"]["url"]:
        pytest.skip("sample 0 is this video's")
    with pytest.raises(DataError) as caught:
        new_samples(held_out_world, tmp_path, records)
    assert caught.value.sample_id == int(key) and caught.value.field == "历史状态"
    assert str(caught.value).startswith(str(tmp_path / "input.json"))
    assert rule in str(caught.value)


def test_text_rows_reused_from_the_store_are_the_encoders_rows(held_out_world, tmp_path) -> None:
    new = new_samples(held_out_world, tmp_path)
    ext = new.write_store(tmp_path / "ext", num_hops=2)
    part = open_partition(ext, 0)
    inner = np.asarray(part["video_sample_id"][: part.num_inner])
    stored = pq.read_table(f"{held_out_world.config.data.tables_dir}/samples.parquet").to_pydict()
    text = {
        column: dict(zip(stored["sample_id"] + new.new["sample_id"].to_pylist(), values, strict=True))
        for column in ("title", "description")
        for values in [stored[column] + new.new[column].to_pylist()]
    }
    encoder = make_text_encoder(held_out_world.config.graph.text)
    for column in ("title", "description"):
        expected = encoder.encode([text[column][int(s)] for s in inner])
        assert np.array_equal(part.rows(f"x_{column}", np.arange(part.num_inner)), expected)
    topics = read_meta(ext)["topic_names"]
    assert np.array_equal(np.asarray(part["topic_x"]), encoder.encode(topics))


def test_new_videos_without_a_content_vector_are_counted_and_get_zeros(held_out_world, tmp_path) -> None:
    world = held_out_world
    given = new_samples(world, tmp_path / "with")
    new_videos = set(given.new["video_id"].to_pylist())
    stored_videos = set(pq.read_table(world.config.graph.content_file)["video_id"].to_pylist())
    without = new_samples(world, tmp_path / "without", content=False)
    assert without.content["videos"] == len(new_videos) == 4
    assert without.content["videos_without"] == len(new_videos - stored_videos) == 1  # the wholly held one
    assert given.content["videos_without"] == 0
    ext = without.write_store(tmp_path / "ext", num_hops=2)
    rows = open_partition(ext, 0).rows("video_x", np.arange(len(without.internal_ids)))
    held = [i for i, v in enumerate(without.new["video_id"].to_pylist()) if v not in stored_videos]
    assert held and not rows[held].any() and rows[[i for i in range(len(rows)) if i not in held]].all()


def test_content_vectors_for_a_store_built_without_them_are_refused(held_out_world, tmp_path) -> None:
    world = held_out_world
    name, _ = import_new_samples(world.new_json, tmp_path / "input", world.config.data, progress=False)
    cfg = world.config
    graph = dataclasses.replace(cfg.graph, content_file="")
    with pytest.raises(StoreError, match="built without content vectors"):
        NewSamples(
            tmp_path / "input", name, cfg.data.tables_dir, cfg.graph.store_dir, graph, str(world.new_content)
        )

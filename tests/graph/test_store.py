"""A store of another format version, or a damaged or missing partition file, is a clear error."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from netgpt.cli import main
from netgpt.config import load_config
from netgpt.data.schema import SAMPLES_FILE
from netgpt.graph.build import build_graph
from netgpt.graph.features import write_content_file
from netgpt.graph.store import BOOK_FILE, META_FILE, StoreError, open_partition, partition_dir, read_meta


@pytest.fixture()
def store(tables_dir, tmp_path, ray_cluster, graph_config):
    out = tmp_path / "store"
    build_graph(tables_dir, graph_config(num_partitions=2, partitioner="hash"), out)
    return out


def test_resolved_config_is_saved_in_the_store(tables_dir, tmp_path, ray_cluster) -> None:
    config = load_config("demo", ["graph.num_partitions=1", "graph.fanouts=[4,4]"])
    build_graph(tables_dir, config.graph, tmp_path / "store", config=config)
    assert load_config(tmp_path / "store" / "config.yaml").graph == config.graph
    with pytest.raises(ValueError, match="config.graph"):
        build_graph(tables_dir, config.graph, tmp_path / "other", config=load_config("demo"))


def test_meta_records_types_counts_dims_and_partitions(store) -> None:
    meta = read_meta(store)
    assert len(meta["node_types"]) == 15 and len(meta["edge_types"]) == 17
    assert meta["feature_dims"]["title"] == 16 and meta["feature_dims"]["comment"] == 20
    assert meta["feature_dims"]["video"] == 3 and meta["feature_dims"]["fans"] == 1
    assert len(meta["partitions"]) == 2 and meta["num_hops"] == 2
    assert sum(p["num_seeds"] for p in meta["partitions"]) == sum(
        n for p in meta["partitions"] for n in p["seeds_per_split"].values()
    )
    content = meta["build"]["content_vectors"]
    assert (
        content["files"] == [] and content["videos_without"] == content["videos"] == meta["build"]["videos"]
    )


def test_a_content_vector_reaches_its_videos_node_and_a_missing_one_is_counted(
    tables_dir, tmp_path, ray_cluster, graph_config, capsys
) -> None:
    video_of = dict(
        zip(
            *pq.read_table(tables_dir / SAMPLES_FILE, columns=["sample_id", "video_id"]).to_pydict().values(),
            strict=True,
        )
    )
    videos = sorted(set(video_of.values()))
    assert all("/" in v for v in videos)  # the ids `prepare` derives (host/last path segment)
    given = videos[::3]
    vectors = np.random.default_rng(5).normal(size=(len(given), 3)).astype(np.float32)
    expected = dict(zip(given, vectors, strict=True))
    content = write_content_file(
        tmp_path / "content.parquet", [*given, "example.com/unknown"], np.vstack([vectors, np.ones((1, 3))])
    )
    overrides = ["graph.num_partitions=2", "graph.text.dim=16", "graph.time_dim=4", "graph.content_dim=3"]
    argv = ["build-graph", "--content", str(content), *overrides]
    argv += [f"data.tables_dir={tables_dir}", f"graph.store_dir={tmp_path / 'store'}"]
    assert main(argv) == 0
    printed = capsys.readouterr()
    summary = json.loads(printed.out)["content_vectors"]
    assert summary == {
        "files": [str(content)],
        "videos": len(videos),
        "videos_with": len(given),
        "videos_without": len(videos) - len(given),
        "ids_naming_no_video": 1,
    }
    assert f"{len(videos) - len(given)} have none" in printed.err
    assert read_meta(tmp_path / "store")["build"]["content_vectors"] == summary
    checked = 0
    for index in range(2):
        part = open_partition(tmp_path / "store", index)
        rows = part.rows("video_x", np.arange(part.num_owned))
        for sample_id, x in zip(part["owned_sample_id"], rows, strict=True):
            want = expected.get(video_of[int(sample_id)], np.zeros(3, np.float32))
            assert np.array_equal(x, want)
            checked += int(video_of[int(sample_id)] in expected)
    assert checked > 20


def test_another_format_version_is_an_error(store) -> None:
    meta = json.loads((store / META_FILE).read_text())
    meta["format_version"] = 999
    (store / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(StoreError, match=r"meta.json: store format version 999, this code reads version"):
        read_meta(store)


def test_missing_partition_file_names_it(store) -> None:
    (partition_dir(store, 1) / "x_title.npy").unlink()
    open_partition(store, 0)
    with pytest.raises(StoreError, match=r"part-00001/x_title.npy: missing partition file"):
        open_partition(store, 1)


def test_truncated_partition_file_names_it(store) -> None:
    path = partition_dir(store, 0) / "comment_x.npy"
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(StoreError, match=r"part-00000/comment_x.npy: damaged partition file"):
        open_partition(store, 0)


def test_damaged_header_names_the_file(store) -> None:
    path = partition_dir(store, 0) / "history_idx.npy"
    data = bytearray(path.read_bytes())
    data[:6] = b"garbag"
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=r"part-00000/history_idx.npy: damaged partition file"):
        open_partition(store, 0)


def test_a_failed_build_leaves_the_old_store_in_place(store, tables_dir, graph_config) -> None:
    before = (store / META_FILE).read_text()
    broken = store.parent / "broken_tables"
    shutil.copytree(tables_dir, broken)
    (broken / "comments.parquet").write_bytes(b"not parquet")
    with pytest.raises(Exception, match="comments.parquet"):
        build_graph(broken, graph_config(num_partitions=2), store)
    assert (store / META_FILE).read_text() == before
    assert not [p for p in store.parent.iterdir() if p.name.startswith(".store.tmp")]


def test_per_video_features_are_stored_once_per_video_and_value(store, tables_dir) -> None:
    video_of = dict(
        zip(
            *pq.read_table(tables_dir / SAMPLES_FILE, columns=["sample_id", "video_id"]).to_pydict().values(),
            strict=True,
        )
    )
    for index in range(2):
        part = open_partition(store, index)
        owned = part["owned_sample_id"]
        own_videos = {video_of[int(s)] for s in owned}
        # The fixture's titles are per video, its descriptions differ in every state.
        assert len(part["x_title"]) == len(own_videos) < part.num_owned
        assert len(part["x_description"]) == part.num_owned
        assert len(part["video_x"]) == len(own_videos)
        titles = part.rows("x_title", np.arange(part.num_owned))
        for i, j in zip(range(part.num_owned - 1), range(1, part.num_owned), strict=True):
            same_video = video_of[int(owned[i])] == video_of[int(owned[j])]
            assert np.array_equal(titles[i], titles[j]) == same_video


def test_every_sample_is_owned_once_and_the_books_say_where(store, tables_dir) -> None:
    """A partition stores the feature rows of its own samples only; its halo's rows are named in its book."""
    all_ids = sorted(pq.read_table(tables_dir / SAMPLES_FILE)["sample_id"].to_pylist())
    book = pq.read_table(store / BOOK_FILE).to_pandas().set_index("sample_id")
    parts = [open_partition(store, index) for index in range(2)]
    owned = [part["owned_sample_id"].tolist() for part in parts]
    assert sorted(owned[0] + owned[1]) == all_ids
    for index, ids in enumerate(owned):
        assert (book.loc[ids, "partition"] == index).all()
        assert book.loc[ids, "row"].tolist() == list(range(len(ids)))
    halo_nodes = 0
    for part in parts:
        sample_ids = part["video_sample_id"]
        owner, row = part["video_owner"], part["video_row"]
        assert (owner[: part.num_seeds] == part.index).all()
        for sid, o, r in zip(sample_ids.tolist(), owner.tolist(), row.tolist(), strict=True):
            assert owned[o][r] == sid
        halo_nodes += int((owner != part.index).sum())
    assert halo_nodes > 0  # the hash partitioner cuts topics: halos reach the other partition


def test_resident_bytes_count_the_pages_of_this_partitions_files_only(store) -> None:
    part = open_partition(store, 0)
    open_partition(store, 1).arrays["video_sample_id"].sum()  # another partition's pages do not count
    for array in part.arrays.values():
        np.asarray(array).sum()  # touch every page of every file
    files = [path.stat().st_size for path in part.folder.glob("*.npy")]
    resident = part.resident_bytes()
    assert sum(files) <= resident <= sum(files) + 4096 * len(files)

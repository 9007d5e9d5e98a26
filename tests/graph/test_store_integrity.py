"""Store integrity: checksums recorded at build time, `meta.json`'s structure and the index arrays checked on
every open, full checksums under `netgpt check-store`; every damage is a StoreError naming the file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from netgpt.cli import main
from netgpt.digest import file_sha256
from netgpt.graph.build import build_graph
from netgpt.graph.sampler import NeighborSampler
from netgpt.graph.store import (
    BOOK_FILE,
    META_FILE,
    StoreError,
    open_partition,
    partition_dir,
    read_meta,
    verify_store,
)


@pytest.fixture(scope="module")
def built_store(tables_dir, tmp_path_factory, ray_cluster, graph_config):
    out = tmp_path_factory.mktemp("integrity") / "store"
    build_graph(tables_dir, graph_config(num_partitions=2, partitioner="hash"), out)
    return out


@pytest.fixture()
def store(built_store, tmp_path):
    """A fresh copy of the module's store, for one test to damage."""
    return shutil.copytree(built_store, tmp_path / "store")


def _edit_meta(store, edit) -> None:
    meta = json.loads((store / META_FILE).read_text())
    edit(meta)
    (store / META_FILE).write_text(json.dumps(meta))


def _overwrite_body(path, values: np.ndarray | None = None) -> None:
    """Replace an .npy file's data (after its header) with same-size bytes: the size and header stay."""
    array = np.load(path)
    header = path.stat().st_size - array.nbytes
    data = bytearray(path.read_bytes())
    if values is None:
        data[header:] = bytes(b ^ 0xFF for b in data[header:])
    else:
        data[header:] = np.broadcast_to(values, array.shape).astype(array.dtype).tobytes()
    path.write_bytes(bytes(data))


def test_every_file_has_its_sha256_in_meta_and_check_store_passes(store, capsys) -> None:
    meta = read_meta(store)
    assert set(meta["files"]) == {BOOK_FILE}
    assert meta["files"][BOOK_FILE]["sha256"] == file_sha256(store / BOOK_FILE)
    for index, info in enumerate(meta["partitions"]):
        for name, spec in info["files"].items():
            assert spec["sha256"] == file_sha256(partition_dir(store, index) / name)
    checked = verify_store(store)
    assert checked["files"] == 1 + sum(len(p["files"]) for p in meta["partitions"])
    assert main(["check-store", "--store", str(store)]) == 0
    assert "every sha256 matches" in capsys.readouterr().out


def test_same_size_garbage_in_a_feature_file_is_found_by_check_store(store, capsys) -> None:
    path = partition_dir(store, 1) / "x_title.npy"
    size = path.stat().st_size
    _overwrite_body(path)
    assert path.stat().st_size == size
    open_partition(store, 1)  # feature rows are not read on open: the checksum is what finds them
    with pytest.raises(StoreError, match=r"part-00001/x_title.npy: sha256 differs"):
        verify_store(store)
    assert main(["check-store", "--store", str(store)]) == 6  # a store error
    assert "part-00001/x_title.npy: sha256 differs" in capsys.readouterr().err


def test_check_store_finds_the_store_through_the_config(store, capsys) -> None:
    (store / BOOK_FILE).write_bytes(b"x" * (store / BOOK_FILE).stat().st_size)
    assert main(["check-store", f"graph.store_dir={store}"]) == 6
    assert f"{BOOK_FILE}: sha256 differs" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("array", "values", "message"),
    [
        ("history_idx", 10**9, r"history_idx.npy: garbled index array: values must lie in \[0, \d+\)"),
        ("x_title_row", -1, r"x_title_row.npy: garbled index array"),
        ("comment_ptr", 0, r"comment_ptr.npy: garbled index array: pointers must rise from 0"),
        ("inner_topic", 77, r"inner_topic.npy: garbled index array"),
        ("has_same_author_as_members", 10**6, r"has_same_author_as_members.npy: garbled index array"),
        ("has_same_topic_as_start", 10**6, r"has_same_topic_as_start.npy: garbled index array"),
        ("video_owner", 2, r"video_owner.npy: garbled index array: values must lie in \[0, 2\)"),
        (
            "video_row",
            10**6,
            r"video_row.npy: garbled index array: values must lie in \[0, its owner's count",
        ),
        ("comment_row", -1, r"comment_row.npy: garbled index array"),
        ("owned_comment_ptr", 0, r"owned_comment_ptr.npy: garbled index array: pointers must rise from 0"),
    ],
)
def test_garbled_index_arrays_name_the_file_on_open(store, array, values, message) -> None:
    if not (partition_dir(store, 0) / f"{array}.npy").exists():
        pytest.fail(f"the store has no {array}.npy: the test names an array the store does not write")
    _overwrite_body(partition_dir(store, 0) / f"{array}.npy", np.asarray(values))
    open_partition(store, 1)
    with pytest.raises(StoreError, match=f"part-00000/{message}"):
        open_partition(store, 0)


MALFORMED = [
    (lambda m: m.pop("partitions"), r"field partitions: expected the field to be present"),
    (lambda m: m.update(partitions={}), r"field partitions: expected an array, found \{\}"),
    (
        lambda m: m["partitions"][1].update(num_inner=-3),
        r"field partitions\[1\].num_inner: expected a non-neg",
    ),
    (
        lambda m: m["partitions"][0]["files"]["x_title.npy"].update(bytes="many"),
        r"field partitions\[0\].files\['x_title.npy'\].bytes: expected a non-negative integer, found 'many'",
    ),
    (
        lambda m: m["partitions"][0]["files"]["x_title.npy"].pop("shape"),
        r"field partitions\[0\].files\['x_title.npy'\].shape: expected the field to be present",
    ),
    (lambda m: m["feature_dims"].update(title=None), r"field feature_dims\['title'\]: expected a non-neg"),
    (
        lambda m: m["feature_dims"].pop("fans"),
        r"field feature_dims\['fans'\]: expected a width for every node",
    ),
    (
        lambda m: m["files"].update({"../../etc/passwd": {"bytes": 1, "sha256": ""}}),
        r"field files\['../../etc/passwd'\]: expected a file name inside the store's folder",
    ),
]


@pytest.mark.parametrize(("edit", "message"), MALFORMED)
def test_malformed_meta_is_a_store_error_naming_the_field(store, edit, message) -> None:
    _edit_meta(store, edit)
    with pytest.raises(StoreError, match=f"meta.json: damaged: {message}"):
        read_meta(store)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1, 2]", r"store format version None, this code reads version 4; rebuild the store"),
        ("[" * 100_000, r"damaged, not valid JSON .*; rebuild the store with `netgpt build-graph`"),
        ("{" * 100_000, r"damaged, not valid JSON"),
        ('{"format_version": 2}', r"store format version 2, this code reads version 4; rebuild the store"),
        ('{"format_version": 3}', r"store format version 3, this code reads version 4; rebuild the store"),
    ],
)
def test_meta_that_is_not_a_store_meta_is_a_store_error(store, text, message) -> None:
    (store / META_FILE).write_text(text)
    with pytest.raises(StoreError, match=f"meta.json: {message}"):
        read_meta(store)


def test_a_missing_or_resized_top_level_file_is_found_on_open(store) -> None:
    book = store / BOOK_FILE
    book.write_bytes(book.read_bytes() + b"\0")
    with pytest.raises(StoreError, match=f"{BOOK_FILE}: damaged store file: \\d+ bytes, meta.json records"):
        read_meta(store)
    book.unlink()
    with pytest.raises(StoreError, match=f"{BOOK_FILE}: missing store file"):
        read_meta(store)


def test_a_partition_missing_an_array_from_meta_is_a_store_error(store) -> None:
    _edit_meta(store, lambda m: m["partitions"][0]["files"].pop("history_idx.npy"))
    with pytest.raises(StoreError, match=r"part-00000/history_idx.npy: missing from meta.json's files"):
        open_partition(store, 0)


@pytest.mark.parametrize("where", ["run folder", "/"])
def test_a_store_is_never_written_over_a_run_folder_or_the_root(tmp_path, where) -> None:
    from netgpt.atomic import OutputError
    from netgpt.graph.store import write_store_atomically

    if where == "/":
        target = Path("/")
    else:
        target = tmp_path / "run"
        (target / "step-00000004-r0").mkdir(parents=True)
        (target / "checkpoint_manager_snapshot.json").write_text("{}")
    before = sorted(p.name for p in target.iterdir())
    with pytest.raises(OutputError, match="refusing to replace a folder that netgpt did not write"):
        write_store_atomically(target, lambda folder: pytest.fail("nothing may be built there"))
    assert sorted(p.name for p in target.iterdir()) == before


def test_a_missing_owner_file_is_an_error_naming_it_when_a_batch_needs_its_rows(store) -> None:
    """Partition 0 opens and samples from its own files; the owner's file is read when its rows are."""
    (partition_dir(store, 1) / "x_title.npy").unlink()
    sampler = NeighborSampler(open_partition(store, 0), [-1, -1], num_hops=2)
    with pytest.raises(StoreError, match=r"part-00001/x_title.npy: missing partition file"):
        sampler.sample(sampler.seed_sample_ids, np.random.default_rng(0))

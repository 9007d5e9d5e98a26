"""Outputs written under a temporary name and renamed into place, with the permissions any file gets; output
folders never put in place of a folder netgpt did not write."""

import json
import os

import pytest

from netgpt.atomic import (
    MARKER,
    OutputError,
    atomic_directory,
    atomic_path,
    move_files_into,
    replace_directory,
    write_text_atomic,
)


@pytest.fixture
def umask():
    """Run under a chosen umask (the process's is put back after)."""
    previous = os.umask(0o022)
    try:
        yield os.umask
    finally:
        os.umask(previous)


def _mode(path):
    return path.stat().st_mode & 0o777


def _write(folder, name="a.txt", text="new"):
    (folder / name).write_text(text)


def test_a_new_output_carries_the_marker_and_is_readable_by_others(tmp_path, umask):
    with atomic_directory(tmp_path / "out", "tables") as folder:
        _write(folder)
    out = tmp_path / "out"
    assert json.loads((out / MARKER).read_text()) == {"kind": "tables"}
    assert _mode(out) == 0o755
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize(("mask", "folder_mode", "file_mode"), [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600)])
def test_outputs_get_the_permissions_the_umask_gives(tmp_path, umask, mask, folder_mode, file_mode):
    """Not tempfile's 0700 / 0600, which would lock other users of a shared volume out; a user who asks for
    privacy with a umask gets it."""
    umask(mask)
    with atomic_directory(tmp_path / "out", "tables") as folder:
        _write(folder)
    with atomic_path(tmp_path / "table.parquet") as tmp:
        tmp.write_bytes(b"rows")
    write_text_atomic(tmp_path / "sub" / "config.yaml", "a: 1\n")
    assert _mode(tmp_path / "out") == folder_mode
    assert _mode(tmp_path / "table.parquet") == file_mode
    assert _mode(tmp_path / "sub" / "config.yaml") == file_mode
    assert (tmp_path / "sub" / "config.yaml").read_text() == "a: 1\n"


def test_a_file_written_atomically_replaces_the_old_one_only_when_complete(tmp_path):
    target = tmp_path / "report.json"
    write_text_atomic(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old"
    write_text_atomic(target, "new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


@pytest.mark.parametrize("old", [None, "folder", "file"])
def test_replace_directory_puts_a_finished_folder_in_place_of_whatever_was_there(tmp_path, old):
    target = tmp_path / "model"
    if old == "folder":
        target.mkdir()
        _write(target, "stale.txt")
    elif old == "file":
        target.write_text("stale")
    work = tmp_path / ".model.partial"
    work.mkdir()
    _write(work)
    replace_directory(work, target)
    assert sorted(p.name for p in target.iterdir()) == ["a.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_replace_directory_keeps_the_old_folder_when_the_rename_fails(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    _write(target, text="old")
    with pytest.raises(FileNotFoundError):
        replace_directory(tmp_path / "never-written", target)
    assert (target / "a.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_its_own_output_is_replaced_whole(tmp_path):
    for text in ("first", "second"):
        with atomic_directory(tmp_path / "out", "tables") as folder:
            _write(folder, f"{text}.txt", text)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [MARKER, "second.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("kind_there", [None, "graph store"])
def test_a_folder_netgpt_did_not_write_as_this_kind_is_refused_and_kept(tmp_path, kind_there):
    precious = tmp_path / "precious"
    precious.mkdir()
    _write(precious, "thesis.tex", "years of work")
    if kind_there:
        (precious / MARKER).write_text(json.dumps({"kind": kind_there}))
    with (
        pytest.raises(OutputError, match=r"precious: refusing to replace a folder that netgpt did not write"),
        atomic_directory(precious, "tables") as folder,
    ):
        _write(folder)
    assert (precious / "thesis.tex").read_text() == "years of work"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious"]


def test_the_working_directory_as_output_is_refused(tmp_path, monkeypatch):
    _write(tmp_path, "notes.txt")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OutputError, match="refusing to replace"), atomic_directory(".", "tables") as folder:
        _write(folder)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_an_empty_folder_or_a_recognised_older_output_is_replaced(tmp_path):
    (tmp_path / "empty").mkdir()
    older = tmp_path / "older"
    older.mkdir()
    _write(older, "samples.parquet")
    for target in ("empty", "older"):
        with atomic_directory(tmp_path / target, "tables", lambda f: f.name == "older") as folder:
            _write(folder)
        assert (tmp_path / target / MARKER).is_file()


def test_a_failure_leaves_the_old_output_and_no_temporary_folder(tmp_path):
    with atomic_directory(tmp_path / "out", "tables") as folder:
        _write(folder, text="old")
    with pytest.raises(RuntimeError), atomic_directory(tmp_path / "out", "tables") as folder:
        _write(folder, text="half")
        raise RuntimeError("disk full")
    assert (tmp_path / "out" / "a.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_file_in_place_of_the_folder_is_refused(tmp_path):
    (tmp_path / "out").write_text("x")
    with (
        pytest.raises(OutputError, match="a file of that name exists"),
        atomic_directory(tmp_path / "out", "tables"),
    ):
        pass


def test_move_files_into_merges_two_shards_by_renames(tmp_path):
    """Two ranks' shard folders into one checkpoint folder: every file lands in its place, the same inode
    (renamed, not copied), a file both wrote is replaced, and the shard folders are gone."""
    shards = [tmp_path / f"shard{rank}" for rank in (0, 1)]
    for rank, shard in enumerate(shards):
        (shard / "ds").mkdir(parents=True)
        (shard / "ds" / f"rank{rank}.pt").write_bytes(bytes([rank]) * 10)
        (shard / "manifest").mkdir()
        (shard / "manifest" / f"rank{rank}.json").write_text("{}")
        (shard / "ds" / "latest").write_text("ds")  # DeepSpeed's tag file, the same from every rank
    inode = (shards[1] / "ds" / "rank1.pt").stat().st_ino
    target = tmp_path / "step-1"
    for shard in shards:
        move_files_into(shard, target)
    files = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    assert files == ["ds/latest", "ds/rank0.pt", "ds/rank1.pt", "manifest/rank0.json", "manifest/rank1.json"]
    assert (target / "ds" / "rank1.pt").stat().st_ino == inode and (
        target / "ds" / "latest"
    ).read_text() == "ds"
    assert not any(shard.exists() for shard in shards)

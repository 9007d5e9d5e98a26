"""Output folders: written under a temporary name, renamed into place, never put in place of a folder netgpt
did not write."""

import json

import pytest

from netgpt.atomic import MARKER, OutputError, atomic_directory


def _write(folder, name="a.txt", text="new"):
    (folder / name).write_text(text)


def test_a_new_output_carries_the_marker_and_is_readable_by_others(tmp_path):
    with atomic_directory(tmp_path / "out", "tables") as folder:
        _write(folder)
    out = tmp_path / "out"
    assert json.loads((out / MARKER).read_text()) == {"kind": "tables"}
    assert (out.stat().st_mode & 0o777) == 0o755
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


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

"""The released JSON read from a zip archive as a stream, and the archives that cannot be read."""

import re
import zipfile

import pyarrow.parquet as pq
import pytest

from netgpt.atomic import MARKER
from netgpt.config import DataConfig
from netgpt.data.importer import import_json
from netgpt.data.schema import COMMENTS_FILE, SAMPLES_FILE
from netgpt.data.source import json_source
from netgpt.data.synthetic import write_synthetic
from netgpt.data.validate import DataError


def _zip(path, members: dict[str, bytes]):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_a_zip_imports_to_the_same_tables_as_its_json(tmp_path):
    json_path = write_synthetic(tmp_path / "xs.json", videos=40, seed=1)
    archive = _zip(tmp_path / "xs_video.zip", {"released/xs.json": json_path.read_bytes()})
    from_json = import_json(json_path, tmp_path / "a", DataConfig(), progress=False)
    from_zip = import_json(archive, tmp_path / "b", DataConfig(), progress=False)
    assert from_zip.input == f"{archive}/released/xs.json"
    assert from_zip.input_bytes == from_json.input_bytes == json_path.stat().st_size
    for table in (SAMPLES_FILE, COMMENTS_FILE):
        assert pq.read_table(tmp_path / "b" / table).equals(pq.read_table(tmp_path / "a" / table))
    extracted = {path.name for path in tmp_path.iterdir()} - {"xs.json", "xs_video.zip", "a", "b"}
    assert not extracted and {path.name for path in (tmp_path / "b").iterdir()} - {MARKER} == {
        SAMPLES_FILE,
        COMMENTS_FILE,
        "summary.json",
    }


def test_errors_inside_a_zip_name_the_member_and_the_byte(example_path, tmp_path):
    text = example_path.read_bytes()
    broken = text.index(b'"3"')
    archive = _zip(tmp_path / "broken.zip", {"xs.json": text[:broken] + b"!" + text[broken + 1 :]})
    with pytest.raises(
        DataError, match=rf"^{re.escape(str(archive))}/xs.json: invalid or truncated JSON at byte "
    ):
        import_json(archive, tmp_path / "tables", DataConfig(), progress=False)
    assert not (tmp_path / "tables").exists()


def test_one_part_of_a_split_archive_says_how_to_join_the_parts(example_path, tmp_path):
    """The last part of a split archive (`zip -s`) is a zip whose end record names disk 1, not 0."""
    archive = _zip(tmp_path / "released_dataset.zip", {"xs.json": example_path.read_bytes()})
    data = bytearray(archive.read_bytes())
    end = data.rfind(b"PK\x05\x06")
    data[end + 4 : end + 8] = (1).to_bytes(2, "little") * 2
    archive.write_bytes(bytes(data))
    with pytest.raises(
        DataError, match=r"split zip archive.*zip -s 0 released_dataset\.zip --out xs_video\.zip"
    ):
        json_source(archive)


@pytest.mark.parametrize(
    ("members", "found"),
    [({"readme.txt": b"x"}, "[]"), ({"a.json": b"{}", "b/c.json": b"{}"}, "['a.json', 'b/c.json']")],
)
def test_an_archive_without_exactly_one_json_file(tmp_path, members, found):
    archive = _zip(tmp_path / "x.zip", members)
    with pytest.raises(
        DataError, match=re.escape(f"expected exactly one .json file in the archive, found {found}")
    ):
        json_source(archive)


def test_a_missing_input_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.zip: no such XS-Video JSON file or zip archive"):
        json_source(tmp_path / "nope.zip")

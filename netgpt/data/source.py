"""Where the released JSON is read from: a JSON file, or the one JSON file inside a zip archive.

The release is distributed as a split zip (`released_dataset.zip` with `.z01`-`.z03`) of one 702 MB JSON
file. Joined into one archive (`zip -s 0 released_dataset.zip --out xs_video.zip`), it is read here as it is:
the JSON member is decompressed as a stream, so nothing is extracted to disk and memory does not follow the
file's size.
"""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from netgpt.data.validate import DataError

JOIN_HINT = "join the parts into one archive first: zip -s 0 {name} --out xs_video.zip"
_END_OF_CENTRAL_DIRECTORY = b"PK\x05\x06"
_END_RECORD_SEARCH = 65_536 + 22
"""The end record is 22 bytes plus a comment of at most 65,535 bytes, at the end of the archive."""


@dataclass(frozen=True)
class JsonSource:
    """One released JSON file, on disk or inside a zip archive."""

    path: Path
    """The file given: the JSON itself or the zip archive."""
    member: str | None
    """The JSON file's name inside the archive; None for a plain JSON file."""
    size: int
    """Bytes of JSON (uncompressed)."""

    @property
    def name(self) -> str:
        """How errors and the summary name it: `archive.zip/member.json` inside an archive."""
        return f"{self.path}/{self.member}" if self.member else str(self.path)

    @contextmanager
    def open(self) -> Iterator[IO[bytes]]:
        """The JSON's bytes, decompressed as they are read when inside an archive."""
        if self.member is None:
            with open(self.path, "rb") as file:
                yield file
            return
        with zipfile.ZipFile(self.path) as archive:
            try:
                member = archive.open(self.member)
            except (NotImplementedError, RuntimeError) as err:  # unsupported compression, encryption
                raise DataError(self.name, f"cannot read this archive member: {err}") from None
            with member:
                yield member


def _spans_several_disks(path: Path) -> bool:
    """Whether the zip archive is one part of a split archive.

    By hand because `zipfile` reads a split archive's last part without complaint and fails later at the
    first member ("Bad magic number"): the end record's disk number says it at once."""
    with open(path, "rb") as file:
        file.seek(0, 2)
        file.seek(max(0, file.tell() - _END_RECORD_SEARCH))
        tail = file.read()
    start = tail.rfind(_END_OF_CENTRAL_DIRECTORY)
    if start < 0 or start + 8 > len(tail):
        return False
    this_disk, directory_disk = struct.unpack("<HH", tail[start + 4 : start + 8])
    return this_disk != 0 or directory_disk != 0


def json_source(path: str | Path) -> JsonSource:
    """The JSON to import from `path`: the file itself, or the single `.json` file of a zip archive."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such XS-Video JSON file or zip archive")
    if not zipfile.is_zipfile(path):
        return JsonSource(path, None, path.stat().st_size)
    if _spans_several_disks(path):
        raise DataError(path, "this is one part of a split zip archive; " + JOIN_HINT.format(name=path.name))
    try:
        with zipfile.ZipFile(path) as archive:
            members = [
                info
                for info in archive.infolist()
                if not info.is_dir()
                and info.filename.lower().endswith(".json")
                and not info.filename.startswith("__MACOSX/")
            ]
    except zipfile.BadZipFile as err:
        raise DataError(path, f"not a readable zip archive: {err}") from None
    if len(members) != 1:
        found = [info.filename for info in members]
        raise DataError(path, f"expected exactly one .json file in the archive, found {found}")
    return JsonSource(path, members[0].filename, members[0].file_size)

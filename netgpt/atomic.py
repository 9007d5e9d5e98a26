"""Writing outputs so that nothing is lost: built under a temporary name beside the target, renamed into
place, and (for output folders) never put in place of a folder netgpt did not write. The one home of
write-to-a-temporary-name-then-rename in netgpt.

    with atomic_directory(out_dir, "tables") as folder:     # a fresh, empty temporary folder beside out_dir
        write_everything_into(folder)
    # out_dir now holds it (an older netgpt output there was replaced); a failure left out_dir as it was

    write_text_atomic(path, text)                            # a small text file
    with atomic_path(path) as tmp:                           # any writer that takes a path
        pyarrow.parquet.write_table(table, tmp)
    replace_directory(finished_folder, target)               # a folder built by other means
    move_files_into(shard_folder, checkpoint_folder)         # merge a folder into another by renames

Permissions: temporary files and folders are created as any file is (0666 / 0777 less the umask: 0644 /
0755 under the usual 022), never with `tempfile`'s 0600 / 0700, which would lock other users of a shared
volume out of the output once it is renamed into place.

Why the refusal: `prepare --out precious/` used to replace a folder of unrelated files, and a store pointed at
a run folder deleted its checkpoints. Every folder written by `atomic_directory` carries a marker file
(`MARKER`) naming what it holds; a folder is replaced only when it is empty, carries the marker, or (written
by a netgpt without the marker) holds nothing but what that kind of output holds (`recognised`).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

MARKER = ".netgpt-output"
"""The file in every output folder that says netgpt wrote it, and what it is (JSON: {"kind": ...})."""


class OutputError(FileExistsError):
    """An output path that holds something netgpt may not replace."""


def written_by_netgpt(folder: Path, kind: str, recognised: Callable[[Path], bool] | None = None) -> bool:
    """Whether `folder` is an output of `kind` that netgpt wrote (its marker, or its contents recognised)."""
    marker = folder / MARKER
    if marker.is_file():
        try:
            return json.loads(marker.read_text(encoding="utf-8")).get("kind") == kind
        except (OSError, ValueError, AttributeError):
            return False
    return recognised is not None and recognised(folder)


def check_replaceable(target: Path, kind: str, recognised: Callable[[Path], bool] | None = None) -> None:
    """Raise `OutputError` unless `target` is absent, an empty folder, or an output of `kind` netgpt wrote."""
    if not target.exists() and not target.is_symlink():
        return
    if not target.is_dir() or target.is_symlink():
        raise OutputError(f"{target}: expected a folder for the {kind}, and a file of that name exists")
    if any(target.iterdir()) and not written_by_netgpt(target, kind, recognised):
        raise OutputError(
            f"{target}: refusing to replace a folder that netgpt did not write as {kind} (it holds other "
            f"files and no {MARKER}); choose a new or empty folder"
        )


@contextmanager
def atomic_directory(
    target: str | os.PathLike[str], kind: str, recognised: Callable[[Path], bool] | None = None
) -> Iterator[Path]:
    """A fresh temporary folder beside `target`, renamed to `target` when the block succeeds.

    On failure the temporary folder is removed and `target` is left as it was. An existing `target` (which
    `check_replaceable` allows) is moved aside, replaced, then deleted: POSIX cannot rename a folder over a
    non-empty one."""
    target = Path(target).absolute()
    check_replaceable(target, kind, recognised)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = _temporary_name(target)
    work.mkdir()
    try:
        yield work
        (work / MARKER).write_text(json.dumps({"kind": kind}) + "\n", encoding="utf-8")
        replace_directory(work, target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def replace_directory(work: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Rename the finished folder `work` to `target`. Whatever is at `target` is moved aside first and deleted
    only once `work` is in place (POSIX cannot rename a folder over a non-empty one); if the rename fails, it
    is put back. Checks nothing about `target`: callers that must not replace a stranger's folder use
    `atomic_directory`."""
    work, target = Path(work), Path(target)
    previous = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
    had_previous = target.exists() or target.is_symlink()
    if had_previous:
        os.replace(target, previous)
    try:
        os.replace(work, target)
    except BaseException:
        if had_previous:
            os.replace(previous, target)
        raise
    if not had_previous:
        return
    if previous.is_dir() and not previous.is_symlink():
        shutil.rmtree(previous, ignore_errors=True)
    else:
        previous.unlink()


@contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside `target` (its folder created if needed) for the caller to write one file at;
    renamed to `target` when the block succeeds, deleted when it fails. The caller creates the file, so it
    gets the usual permissions (0666 less the umask)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_name(target)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(target: str | os.PathLike[str], text: str) -> Path:
    """Write `text` (UTF-8) to `target` through a temporary file, so a reader never sees half of it."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


def move_files_into(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Rename every file under `source` to the same place under `target` (folders made as needed, a file
    already there replaced), then remove `source`. On one file system no byte is copied: the ranks of a
    checkpoint each write their shard into a folder of their own beside it, then merge them this way."""
    source, target = Path(source), Path(target)
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        destination = target / path.relative_to(source)
        destination.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, destination)
    shutil.rmtree(source)


def _temporary_name(target: Path) -> Path:
    """A fresh hidden name beside `target`, unique per call (several processes may write the same target)."""
    return target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:12]}"

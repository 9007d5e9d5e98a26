"""Writing an output folder so that nothing is lost: built under a temporary name, renamed into place, and
never put in place of a folder netgpt did not write.

    with atomic_directory(out_dir, "tables") as folder:     # a fresh, empty temporary folder beside out_dir
        write_everything_into(folder)
    # out_dir now holds it (an older netgpt output there was replaced); a failure left out_dir as it was

Why the refusal: `prepare --out precious/` used to replace a folder of unrelated files, and a store pointed at
a run folder deleted its checkpoints. Every folder written here carries a marker file (`MARKER`) naming what
it holds; a folder is replaced only when it is empty, carries the marker, or (written by a netgpt without the
marker) holds nothing but what that kind of output holds (`recognised`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
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
    work = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    work.chmod(0o755)  # mkdtemp's 0700 would hide the output from other users of a shared volume
    try:
        yield work
        (work / MARKER).write_text(json.dumps({"kind": kind}) + "\n", encoding="utf-8")
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    previous = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
    had_previous = target.exists()
    if had_previous:
        os.replace(target, previous)
    try:
        os.replace(work, target)
    except BaseException:
        if had_previous:
            os.replace(previous, target)
        shutil.rmtree(work, ignore_errors=True)
        raise
    if had_previous:
        shutil.rmtree(previous, ignore_errors=True)

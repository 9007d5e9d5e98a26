"""Replacing a stage's best checkpoint `best/<stage>` so that a crash at any moment leaves a complete one.

The new best is written beside it as `.<stage>.partial` (every rank, then checked complete against the
ranks' manifests, `netgpt.train.manifest`), then swapped in by two renames:

    1. best/<stage>          -> best/.<stage>.old     (skipped the first time: there is none)
    2. best/.<stage>.partial -> best/<stage>
    3. delete best/.<stage>.old

Recovery rule (`find_best`, applied on disk by `recover_best` before a best is loaded or written):
- `best/<stage>` exists: it is the best (only a complete folder is ever renamed to that name; a crash before
  step 1 leaves the previous best there and a partial that is dropped);
- else `.<stage>.partial` is complete: the crash came between steps 1 and 2, it is the new best;
- else `.<stage>.old` exists: it is the best (the partial is missing or incomplete);
- else the stage has no best yet.
Every state between the steps therefore has exactly one complete best that the rule finds.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from netgpt.train.manifest import checkpoint_problems


def partial_of(final: Path) -> Path:
    return final.parent / f".{final.name}.partial"


def old_of(final: Path) -> Path:
    return final.parent / f".{final.name}.old"


def stage_of(folder: Path) -> str:
    """The stage a best folder belongs to: `finetune` for `finetune`, `.finetune.partial`, `.finetune.old`."""
    for suffix in (".partial", ".old"):
        if folder.name.startswith(".") and folder.name.endswith(suffix):
            return folder.name[1 : -len(suffix)]
    return folder.name


def find_best(final: Path) -> Path | None:
    """The complete best checkpoint that the recovery rule (module doc) names, or None."""
    if final.is_dir():
        return final
    partial = partial_of(final)
    if partial.is_dir() and not checkpoint_problems(partial, full=False):
        return partial
    old = old_of(final)
    return old if old.is_dir() else None


def recover_best(final: Path) -> Path | None:
    """Apply the recovery rule on disk: the complete best renamed to `final`, the leftovers deleted."""
    found = find_best(final)
    if found is not None and found != final:
        os.replace(found, final)
    if final.is_dir():
        for leftover in (partial_of(final), old_of(final)):
            shutil.rmtree(leftover, ignore_errors=True)
    return final if final.is_dir() else None


def publish_best(final: Path) -> None:
    """Swap the complete `.<stage>.partial` in as `final` (steps 1-3 of the module doc)."""
    partial = partial_of(final)
    problems = checkpoint_problems(partial, full=False)
    if problems:
        raise RuntimeError(f"{partial}: the new best checkpoint is incomplete, not published: {problems}")
    old = old_of(final)
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(partial, final)
    shutil.rmtree(old, ignore_errors=True)

"""Which checkpoint folder a CHECKPOINT argument means, and which run it belongs to.

A run folder (Ray Train's storage for one run) holds the registered checkpoints `step-*`, `best/<stage>`,
`config.yaml` and `tokenizer/`. The latest *complete* checkpoint is the one Ray Train's own registry names:
a folder whose ranks did not all report is never registered, and folder names alone cannot tell it apart.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from netgpt.convert.errors import ConvertError
from netgpt.train.best_swap import find_best, stage_of
from netgpt.train.checkpoint import DS_TAG, STATE_FILE

REGISTRY_FILE = "checkpoint_manager_snapshot.json"
"""Ray Train's registry of a run's reported checkpoints (written after every rank has reported)."""
BEST_DIR = "best"


@dataclass(frozen=True)
class CheckpointSource:
    folder: Path
    """The checkpoint folder: the DeepSpeed tag folder, `trainer_state.json`, `rng/`."""
    run_dir: Path
    """The run it belongs to (config.yaml, tokenizer/)."""
    kind: str
    """`checkpoint` (a registered step), `best` (best/<stage>) or how it was chosen from a run folder."""

    @property
    def best_stage(self) -> str | None:
        """The stage whose best checkpoint this is, None for a step checkpoint."""
        return stage_of(self.folder) if self.folder.parent.name == BEST_DIR else None


def is_checkpoint(folder: Path) -> bool:
    return (folder / STATE_FILE).is_file() or (folder / DS_TAG).is_dir()


def is_run(folder: Path) -> bool:
    return (folder / REGISTRY_FILE).is_file()


def resolve(path: str | os.PathLike[str]) -> CheckpointSource:
    """A checkpoint folder, a `best/<stage>` folder, or a run folder (its latest registered checkpoint)."""
    path = Path(path).resolve()
    if not path.exists():
        raise ConvertError(f"{path}: does not exist; expected a checkpoint, best/<stage> or run folder")
    if is_checkpoint(path):
        if path.parent.name == BEST_DIR:
            return CheckpointSource(path, path.parent.parent, "best")
        return CheckpointSource(path, path.parent, "checkpoint")
    if is_run(path):
        return CheckpointSource(latest_registered(path), path, "latest registered checkpoint of the run")
    raise ConvertError(
        f"{path}: not a checkpoint; expected a checkpoint folder (with {DS_TAG}/ and {STATE_FILE}), a "
        f"{BEST_DIR}/<stage> folder, or a run folder (with Ray Train's {REGISTRY_FILE})"
    )


def latest_registered(run_dir: Path) -> Path:
    """The checkpoint Ray Train would resume the run from: the latest one in its registry."""
    registry = run_dir / REGISTRY_FILE
    try:
        snapshot = json.loads(registry.read_text(encoding="utf-8"))
        latest = snapshot.get("latest_checkpoint_result")
        name = latest["checkpoint_dir_name"] if latest else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise ConvertError(f"{registry}: unreadable Ray Train registry ({error})") from None
    if not name:
        raise ConvertError(f"{registry}: the run has registered no checkpoint yet")
    folder = run_dir / name
    if not is_checkpoint(folder):
        raise ConvertError(f"{folder}: registered in {registry} but missing or not a checkpoint")
    return folder


def best_of_stage(run_dir: Path, stage: str) -> Path | None:
    """The stage's complete best checkpoint when the run wrote one: `run_dir/best/<stage>`, or after a crash
    while it was replaced, the folder the recovery rule of `netgpt.train.best_swap` names (read only)."""
    folder = find_best(run_dir / BEST_DIR / stage)
    return folder if folder is not None and is_checkpoint(folder) else None

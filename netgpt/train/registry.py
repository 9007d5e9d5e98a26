"""Which checkpoint a resume starts from: the newest complete one, told to Ray Train before the run starts.

How resume finds a checkpoint: Ray Train (2.60, Train v2) keeps the run's registry in
`RUN/checkpoint_manager_snapshot.json` (checkpoint folder names in registration order, the latest one, the
report count). Its controller reads that file when `trainer.fit` starts and hands the latest checkpoint to
every worker (`ray.train.get_checkpoint`). Left alone, a registry whose file is truncated stops the run
(Ray cannot parse it), one naming a deleted folder stops it too (Ray checks that each exists), and a
damaged newest folder fails every worker's load, again on every retry.

`prepare_resume` (the driver, once, before `fit`) checks the registered checkpoints newest first against
their ranks' manifests (`netgpt.train.manifest`: every file present, with its size and sha256) and
stops at the first complete one. When that is not the registry's latest, or the registry file cannot be
read (the `step-*` folders of the run are then the candidates, newest step first), it says which
checkpoints it skipped and why, moves each damaged folder to `RUN/damaged/` (kept for a look, and its name
freed for the checkpoints to come), keeps the old registry file as `checkpoint_manager_snapshot.json.before-
repair`, and rewrites the registry, with Ray's own model of the file, to name the complete checkpoint as
the latest. No complete checkpoint at all is an error, never a silent start from scratch.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ray.train.v2._internal.constants import CHECKPOINT_MANAGER_SNAPSHOT_FILENAME
from ray.train.v2._internal.execution.checkpoint.checkpoint_manager import (
    _CheckpointManagerState,
    _TrainingResultState,
)

from netgpt.atomic import write_text_atomic
from netgpt.train.checkpoint import EVALUATIONS
from netgpt.train.manifest import STATE_FILE, checkpoint_problems

REGISTRY_FILE = CHECKPOINT_MANAGER_SNAPSHOT_FILENAME
DAMAGED_DIR = "damaged"
BEFORE_REPAIR = f"{REGISTRY_FILE}.before-repair"
CHECKPOINT_NAME = re.compile(rf"step-(\d+)-r(\d+)(?:-({'|'.join(EVALUATIONS)}))?")
"""The folder names `checkpoint_name` gives (global step, restarts, the evaluation a drain interrupted)."""

logger = logging.getLogger(__name__)


class NoCompleteCheckpoint(RuntimeError):
    """A run whose registry names checkpoints, none of them complete."""


@dataclass
class ResumeChoice:
    checkpoint: str | None
    """The folder the run resumes from (None: a fresh run)."""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """Newer checkpoints passed over: (folder name, why)."""
    rewritten: bool = False
    """Whether the registry file was rewritten."""


def _say(message: str) -> None:
    logger.warning(message)
    print(f"netgpt train: {message}", file=sys.stderr)


def _parse(data: object) -> _CheckpointManagerState:
    """Ray's model of the registry from parsed JSON (pydantic 2's `model_validate`, or 1's `parse_obj`)."""
    parse = getattr(_CheckpointManagerState, "model_validate", None) or _CheckpointManagerState.parse_obj
    return parse(data)


def _scan(run_dir: Path) -> list[str]:
    """The run's checkpoint folders by name, oldest first (for a registry that cannot be read)."""
    found = []
    for child in run_dir.iterdir():
        match = CHECKPOINT_NAME.fullmatch(child.name)
        if match and child.is_dir():
            # at one step and restart the run writes them in the order of EVALUATIONS, the plain one last
            due = EVALUATIONS.index(match.group(3)) if match.group(3) else len(EVALUATIONS)
            found.append(((int(match.group(1)), int(match.group(2)), due), child.name))
    return [name for _, name in sorted(found)]


def _metrics_of(folder: Path) -> dict:
    """What `save_checkpoint` reported with the checkpoint (empty where its state cannot be read)."""
    try:
        state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
        return {"global_step": state["global_step"], "stage_index": state["stage_index"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def prepare_resume(
    run_dir: Path,
    problems: Callable[[Path], list[str]] = checkpoint_problems,
    say: Callable[[str], None] = _say,
) -> ResumeChoice:
    """Make Ray Train's registry of `run_dir` name its newest complete checkpoint (module doc)."""
    path = run_dir / REGISTRY_FILE
    if not path.is_file():
        return ResumeChoice(None)
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        snapshot = _parse(json.loads(text))
    except Exception as error:  # truncated or garbled: JSON and pydantic errors alike
        snapshot = None
        say(f"{path}: unreadable ({type(error).__name__}); looking for checkpoints in {run_dir} instead")
    if snapshot is not None:
        registered = [result.checkpoint_dir_name for result in snapshot.checkpoint_results]
        latest = snapshot.latest_checkpoint_result
        newest_first = list(reversed(registered))
        if latest is not None and latest.checkpoint_dir_name in newest_first:
            newest_first.remove(latest.checkpoint_dir_name)
            newest_first.insert(0, latest.checkpoint_dir_name)
    else:
        registered = _scan(run_dir)
        newest_first = list(reversed(registered))
    chosen, skipped = None, []
    for name in newest_first:
        found = problems(run_dir / name)
        if not found:
            chosen = name
            break
        why = "; ".join(found[:5]) + (f"; and {len(found) - 5} more" if len(found) > 5 else "")
        skipped.append((name, why))
        say(f"skipping checkpoint {run_dir / name}: {why}")
    if snapshot is not None and not skipped:
        return ResumeChoice(chosen)
    if chosen is None and newest_first:
        raise NoCompleteCheckpoint(
            f"{run_dir}: no registered checkpoint is complete ("
            + "; ".join(f"{name}: {why}" for name, why in skipped)
            + "); move the run folder aside or use a new train.run_name to start afresh"
        )
    bad = {name for name, _ in skipped}
    for name in bad:
        if (run_dir / name).exists():
            (run_dir / DAMAGED_DIR).mkdir(exist_ok=True)
            target = run_dir / DAMAGED_DIR / name
            shutil.rmtree(target, ignore_errors=True)
            os.replace(run_dir / name, target)
            say(f"moved the damaged checkpoint {name} to {target} (delete it once looked at)")
    kept = [name for name in registered if name not in bad and (run_dir / name).is_dir()]
    shutil.copyfile(path, run_dir / BEFORE_REPAIR)
    _write_registry(path, run_dir, snapshot, kept, chosen)
    if chosen is not None:
        say(f"resuming from {run_dir / chosen} (the newest complete checkpoint)")
    return ResumeChoice(chosen, skipped, rewritten=True)


def _write_registry(
    path: Path, run_dir: Path, snapshot: _CheckpointManagerState | None, kept: list[str], chosen: str | None
) -> None:
    """Ray's registry naming `kept` (registration order) with `chosen` as the latest, written atomically.
    Pending validations (netgpt reports none) are dropped."""
    if snapshot is not None:
        by_name = {r.checkpoint_dir_name: r for r in snapshot.checkpoint_results}
        index = dict(zip(by_name, snapshot.checkpoint_report_indices, strict=True))
        results = [by_name[name] for name in kept]
        indices = [index[name] for name in kept]
        report_index = snapshot.current_report_index
    else:
        results = [
            _TrainingResultState(checkpoint_dir_name=n, metrics=_metrics_of(run_dir / n)) for n in kept
        ]
        indices = list(range(len(kept)))
        report_index = len(kept)
    state = _CheckpointManagerState(
        checkpoint_results=results,
        checkpoint_report_indices=indices,
        latest_checkpoint_result=next((r for r in results if r.checkpoint_dir_name == chosen), None),
        pending_training_results=[],
        pending_validation_specs=[],
        current_report_index=report_index,
        validated_checkpoint_dir_names=[],
        timed_out_validation_checkpoint_dir_names=[],
        failed_validation_checkpoint_dir_names=[],
    )
    dump = getattr(state, "model_dump_json", None) or state.json  # pydantic 2, or 1 (Ray's compat layer)
    write_text_atomic(path, dump())

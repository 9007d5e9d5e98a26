"""Sharded checkpoints: every rank writes its DeepSpeed shard; Ray registers it once all have.

A checkpoint folder holds DeepSpeed's files under the tag `ds` (each rank's ZeRO partitions of weights and
optimizer state), `rng/rank{r}.pt` (each rank's RNG states) and `trainer_state.json` (the curriculum's
position).
Each rank writes into its own fresh temporary folder and hands it to `ray.train.report`, which copies the
files into one new folder of the run's storage and registers it only after every rank has reported: a crash
while writing leaves an unregistered folder and never touches the previous, complete checkpoint. Ray's
`CheckpointConfig(num_to_keep=K)` deletes the oldest only after a newer one is registered.

The best checkpoint of each stage is written straight into the run folder (`best/<stage>`), first under a
temporary name which rank 0 renames once every rank has finished, so that it too is never half-written. At
the end of a stage its best weights are restored (`restore_best`): the stage's test scores, the next stage and
the exported model all start from them, not from the last step.
On several nodes the run folder must be shared storage (`k8s/storage.yaml`: a ReadWriteMany claim).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import ray.train
import torch
import torch.distributed as dist

DS_TAG = "ds"
STATE_FILE = "trainer_state.json"
FINAL_METRICS = "final_metrics.json"


@dataclass
class TrainerState:
    """Where the curriculum stands; saved with every checkpoint, so resuming is the same path as starting."""

    stage_index: int = 0
    """Stage being run (len(stages) once all are done)."""
    stage_step: int = 0
    """Optimizer steps done in this stage."""
    position: int = 0
    """Micro-batches of this stage's train stream consumed by each rank (a resumed stream begins here)."""
    epoch: int = 0
    """Epoch of this stage that the next batch belongs to (`position` // batches per rank per epoch)."""
    validations: int = 0
    """Validations done in this stage (each consumed one epoch of the validation stream)."""
    global_step: int = 0
    """Optimizer steps over the whole run."""
    best_score: float | None = None
    """Best validation MAE of this stage so far."""
    best_step: int | None = None
    """`global_step` of the stage's best checkpoint (`best/<stage>`), None until one is written."""
    stale_validations: int = 0
    """Validations since the best one (early stopping with `patience`)."""
    restarts: int = 0
    """How many times the run resumed from a checkpoint (keeps checkpoint folder names unique)."""
    test_metrics: dict[str, float] = field(default_factory=dict)
    """Test-split scores of the finished stages (`test/<stage>/<source>/<metric>`), kept across restarts."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> TrainerState:
        return cls(**json.loads(text))


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _write_shard(engine, folder: Path, state: TrainerState, rank: int) -> None:
    engine.save_checkpoint(str(folder), tag=DS_TAG)
    (folder / "rng").mkdir(exist_ok=True)
    torch.save(_rng_state(), folder / "rng" / f"rank{rank}.pt")
    if rank == 0:
        (folder / STATE_FILE).write_text(state.to_json(), encoding="utf-8")


def save_checkpoint(engine, state: TrainerState, metrics: dict[str, float], rank: int) -> None:
    """Every rank: write this rank's shard, then report it to Ray Train (a barrier across ranks)."""
    folder = Path(tempfile.mkdtemp(prefix=f"netgpt-ckpt-rank{rank}-"))
    try:
        _write_shard(engine, folder, state, rank)
        name = f"step-{state.global_step:08d}-r{state.restarts}"
        ray.train.report(
            {**metrics, "global_step": state.global_step, "stage_index": state.stage_index},
            checkpoint=ray.train.Checkpoint.from_directory(str(folder)),
            checkpoint_dir_name=name,
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def load_checkpoint(engine, checkpoint: ray.train.Checkpoint, rank: int) -> TrainerState:
    """Every rank: restore weights, optimizer state and this rank's RNG; returns where to continue."""
    with checkpoint.as_directory() as folder:
        folder = Path(folder)
        load_path, _ = engine.load_checkpoint(
            str(folder), tag=DS_TAG, load_optimizer_states=True, load_lr_scheduler_states=False
        )
        if load_path is None:
            raise RuntimeError(f"DeepSpeed found no checkpoint under {folder} (tag {DS_TAG!r})")
        state = TrainerState.from_json((folder / STATE_FILE).read_text(encoding="utf-8"))
        rng_file = folder / "rng" / f"rank{rank}.pt"
        if rng_file.is_file():
            _set_rng_state(torch.load(rng_file, weights_only=False))
    state.restarts += 1
    return state


def best_checkpoint_dir(run_dir: Path, stage_name: str) -> Path:
    return run_dir / "best" / stage_name


def save_best(engine, run_dir: Path, stage_name: str, state: TrainerState, rank: int) -> Path:
    """Every rank: write the stage's best checkpoint to `run_dir/best/<stage>` atomically (see module doc)."""
    final = best_checkpoint_dir(run_dir, stage_name)
    best_root = final.parent
    partial = best_root / f".{stage_name}.partial"
    if rank == 0:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    dist.barrier()
    _write_shard(engine, partial, state, rank)
    dist.barrier()
    if rank == 0:
        old = best_root / f".{stage_name}.old"
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            os.replace(final, old)
        os.replace(partial, final)
        shutil.rmtree(old, ignore_errors=True)
    dist.barrier()
    return final


def restore_best(engine, run_dir: Path, stage_name: str) -> None:
    """Every rank: load the weights of the stage's best checkpoint (not its trainer state or RNG).

    DeepSpeed restores the fp32 master partitions with them (tested: a step at learning rate 0 afterwards
    keeps the best weights); the Adam moments are left out, since the next stage begins with fresh ones."""
    folder = best_checkpoint_dir(run_dir, stage_name)
    load_path, _ = engine.load_checkpoint(
        str(folder), tag=DS_TAG, load_optimizer_states=False, load_lr_scheduler_states=False
    )
    if load_path is None:
        raise RuntimeError(f"{folder}: stage {stage_name!r}'s best checkpoint is missing (tag {DS_TAG!r})")


def write_json_atomically(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=2, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)

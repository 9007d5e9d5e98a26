"""Sharded checkpoints: every rank writes its DeepSpeed shard; Ray registers it once all have.

A checkpoint folder holds DeepSpeed's files under the tag `ds` (each rank's ZeRO partitions of weights and
optimizer state), `rng/rank{r}.safetensors` (each rank's RNG states, no pickle: `rng_state.py`),
`trainer_state.json` (the curriculum's position, JSON) and `manifest/rank{r}.json` (the files each rank
wrote, with sizes and sha256: `manifest.py`, which tells a complete checkpoint from a damaged one).
Each rank writes into a fresh folder of its own in the run folder (`shard_folder`), renames its files into
the checkpoint's one new folder there, and reports that to `ray.train.report`, which registers it only after
every rank has reported (uploading nothing: the files are already in the run's storage). By default a rank
writes on a thread of its own while training goes on (`start_checkpoint`, `background_save.py`), and the
checkpoint is reported once every rank's write has ended (`writes_ended`, `finish_checkpoint`). A crash
while writing leaves an unregistered folder and never touches the previous, complete checkpoint. Ray's
`CheckpointConfig(num_to_keep=K)` deletes the oldest only after a newer one is registered.

The best checkpoint of each stage is written into the run folder (`best/<stage>`), first under a temporary
name which rank 0 swaps in once every rank has finished, by renames after which a crash at any point leaves
one complete best (`best_swap.py` states the recovery rule); by default in the background too
(`start_best`). At
the end of a stage its best weights are restored (`restore_best`): the stage's test scores, the next stage and
the exported model all start from them, not from the last step.
On several nodes the run folder must be shared storage (`k8s/base/storage.yaml`: a ReadWriteMany claim).

Resuming on another world size (`train.num_workers` changed: a node lost or gained). The trainer state keeps
positions in global batches and records the world size that wrote it, so the data streams resume exactly;
the ZeRO shards, cut for the old world size, are converted once by rank 0 with DeepSpeed's own
`ds_to_universal` into `run_dir/universal/<checkpoint>` (one parameter at a time), loaded by every rank as a
universal checkpoint (weights, fp32 master weights and Adam moments, re-cut for the new world size), then
deleted. Settings other than the operational ones (`MAY_CHANGE`) must be those the checkpoint recorded, or
the resume is refused with the changed keys named. See `docs/checkpoints.md`.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import shutil
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from netgpt.atomic import move_files_into, replace_directory, write_text_atomic
from netgpt.config import RETIRED_KEYS
from netgpt.train.best_swap import partial_of, publish_best, recover_best
from netgpt.train.manifest import STATE_FILE, write_manifest
from netgpt.train.moments import adam_moments_left_out, with_zero_moments
from netgpt.train.rng_state import load_rng_state, save_rng_state

if TYPE_CHECKING:  # both imported where used: the driver need not load DeepSpeed, nor a GPU check Ray
    import ray.train

    from netgpt.train.background_save import BackgroundWriter

DS_TAG = "ds"
FINAL_METRICS = "final_metrics.json"
UNIVERSAL_DIR = "universal"
CONVERSION_WAIT_S = 6 * 3600
"""How long ranks other than 0 wait for rank 0's universal conversion of a checkpoint."""

MAY_CHANGE = (
    "train.num_workers",
    "train.cpus_per_worker",
    "train.bind_cores",
    "train.worker_resources.",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    "train.async_checkpoints",
    "train.max_failures",
    "train.preemption_check_every",
    "train.log_every",
    "train.timeout_s",
    "train.storage_path",
    "train.run_name",
    "train.ds_config",
    "data.raw_path",
    "data.tables_dir",
    "data.synth_videos",
    "data.synth_seed",
    "data.strict_keys",
    "graph.store_dir",
    "graph.samplers_per_partition",
    "graph.sampler_num_cpus",
    "graph.sampler_resources.",
    "graph.stream_buffer_mb",
    "evaluate.",
)
"""Settings (keys, or prefixes ending in '.') a resume may change: the worker count, where things are, and
what only paces or places the run. Every other setting (model, graph features and sampling, data split,
the stages but for `STAGE_MAY_CHANGE`, seeds, precision, clipping) is part of the checkpoint's fingerprint."""

STAGE_MAY_CHANGE = ("lr",)
"""Settings of each stage a resume may change too: its peak learning rate, lowered to resume a run that
diverged (`LossNotFinite`) from its last checkpoint, as one rolls back a large run past a loss spike."""


def may_change(key: str) -> bool:
    """Whether a resume may change the flattened setting `key` (`train.stages[alignment].lr`)."""
    if any(key == rule or (rule.endswith(".") and key.startswith(rule)) for rule in MAY_CHANGE):
        return True
    stage_key = key.startswith("train.stages[") and "]." in key
    return stage_key and key.rsplit("].", 1)[1] in STAGE_MAY_CHANGE


class ResumeRefused(RuntimeError):
    """A checkpoint that this configuration or worker count cannot continue."""


EVALUATIONS = ("validation", "test")
"""The evaluations a drain can interrupt, in the order a stage runs them at the same step."""


@dataclass
class TrainerState:
    """Where the curriculum stands; saved with every checkpoint, so resuming is the same path as starting."""

    stage_index: int = 0
    """Stage being run (len(stages) once all are done)."""
    stage_step: int = 0
    """Optimizer steps done in this stage."""
    position: int = 0
    """Global batches of this stage's train stream consumed by all ranks together (the plan's entries, see
    `netgpt.graph.loader`): the same number on every world size; a resumed stream begins here."""
    epoch: int = 0
    """Epoch of this stage that the next batch belongs to (`position` // global batches per epoch)."""
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
    world_size: int = 0
    """Ranks of the worker group that wrote this state (0: a state written before it was recorded)."""
    batch_world_size: int = 0
    """The world size that defines every stage's global batch: the run's first. A step of a stage takes
    `grad_accum * batch_world_size` micro-batches over all ranks on any world size (which must divide it)."""
    micro_batch_size: int = 0
    """Seeds per micro-batch of the current stage."""
    grad_accum: int = 0
    """Micro-batches per rank per step of the current stage on `world_size` ranks."""
    fingerprint: str = ""
    """sha256 of `settings`."""
    settings: dict[str, Any] = field(default_factory=dict)
    """The settings that must not change across a resume (`resume_settings`), flattened: key -> value."""
    evaluation_due: str = ""
    """An evaluation of the stage that a node's drain interrupted (`EVALUATIONS`), run first on resume:
    "validation" (the step that ended an epoch or the stage is taken, its validation unfinished) or "test"
    (the stage's training ended and its best is in the weights, its test unfinished); "" in every other
    checkpoint."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def for_next_stage(self, test_metrics: dict[str, float]) -> TrainerState:
        """The state at the start of the next stage: the run's counters and records, the stage's reset."""
        return TrainerState(
            stage_index=self.stage_index + 1,
            global_step=self.global_step,
            restarts=self.restarts,
            test_metrics={**self.test_metrics, **test_metrics},
            world_size=self.world_size,
            batch_world_size=self.batch_world_size,
            fingerprint=self.fingerprint,
            settings=dict(self.settings),
        )

    @classmethod
    def from_json(cls, text: str) -> TrainerState:
        return cls(**json.loads(text))


def _flatten(node: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            _flatten(value, f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(node, list) and node and all(isinstance(v, dict) and "name" in v for v in node):
        for value in node:  # the stages, by name: train.stages[alignment].lr
            _flatten({k: v for k, v in value.items() if k != "name"}, f"{prefix}[{value['name']}]", out)
        out[f"{prefix}.names"] = [value["name"] for value in node]
    else:
        out[prefix] = node


def resume_settings(config, split_sizes: dict[str, int] | None = None) -> dict[str, Any]:
    """The settings a resume must keep (every config key `may_change` refuses), flattened, plus the seed
    counts of the store's splits (a store rebuilt from other data changes them)."""
    from omegaconf import OmegaConf

    flat: dict[str, Any] = {}
    _flatten(OmegaConf.to_container(OmegaConf.structured(config)), "", flat)
    kept = {key: value for key, value in flat.items() if not may_change(key)}
    for split, count in (split_sizes or {}).items():
        kept[f"store.{split}_seeds"] = count
    return json.loads(json.dumps(kept, sort_keys=True))


def fingerprint(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode("utf-8")).hexdigest()


def settings_changes(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """`key old -> new` for every setting that differs (`<unset>` where one side lacks it)."""
    changes = []
    for key in sorted(set(recorded) | set(current)):
        old, new = recorded.get(key, "<unset>"), current.get(key, "<unset>")
        if old != new:
            changes.append(f"{key} {old} -> {new}")
    return changes


def check_resume(state: TrainerState, settings: dict[str, Any], stages, world_size: int) -> None:
    """Refuse a checkpoint whose fingerprinted settings changed, or whose remaining stages' global batches
    the new world size cannot share; both with what to do about it."""
    # keys a later netgpt retired, or let a resume change, are not changes: a checkpoint that recorded them
    # still resumes
    recorded = {
        key: value for key, value in state.settings.items() if key not in RETIRED_KEYS and not may_change(key)
    }
    if state.fingerprint and fingerprint(settings) not in (state.fingerprint, fingerprint(recorded)):
        changes = settings_changes(recorded, settings)
        raise ResumeRefused(
            "cannot resume: settings changed since the checkpoint was written: "
            + "; ".join(changes or ["(fingerprint differs)"])
            + ". Only the worker count and operational settings may change on a resume "
            "(netgpt.train.checkpoint.MAY_CHANGE), and each stage's lr; use a new train.run_name to train "
            "with other settings"
        )
    for stage in stages[state.stage_index :]:
        per_step = stage.grad_accum * state.batch_world_size
        if per_step % world_size:
            raise ResumeRefused(
                f"cannot resume on {world_size} workers: a step of stage {stage.name!r} takes "
                f"{per_step} micro-batches over all workers (grad_accum {stage.grad_accum} x the run's first "
                f"{state.batch_world_size} workers), which {world_size} workers cannot share equally; resume "
                f"on a worker count that divides {per_step}"
            )


def _write_shard(engine, folder: Path, state: TrainerState, rank: int, moments: bool = True) -> None:
    """This rank's part of a checkpoint into its own fresh `folder`, ending with its manifest; without
    AdamW's moments unless `moments` (a best checkpoint: `netgpt/train/moments.py`)."""
    _save_engine(engine, folder, moments)
    _write_rank_state(folder, state, rank)
    write_manifest(folder, rank)


def _save_engine(engine, folder: Path, moments: bool) -> None:
    """DeepSpeed's files of this rank into `folder`; without AdamW's moments unless `moments`."""
    with contextlib.nullcontext() if moments else adam_moments_left_out(engine):
        engine.save_checkpoint(str(folder), tag=DS_TAG)


def _write_rank_state(folder: Path, state: TrainerState, rank: int) -> None:
    """This rank's RNG states, and on rank 0 the trainer state, into its shard `folder`."""
    save_rng_state(folder, rank)
    if rank == 0:
        (folder / STATE_FILE).write_text(state.to_json(), encoding="utf-8")


SHARD_PREFIX = ".shard-"
"""Folders `run_dir/.shard-<checkpoint>.rank<r>`: where a rank writes its shard before renaming its files
into the checkpoint's folder (what a crash leaves of them is removed by `remove_stale_shards`)."""


def shard_folder(run_dir: Path, name: str, rank: int) -> Path:
    """Where rank `rank` writes its shard of the checkpoint `name` first: in the run folder, on the file
    system the checkpoint is kept on, so that its files are then renamed into place, never copied."""
    return run_dir / f"{SHARD_PREFIX}{name}.rank{rank}"


def _fresh_shard_folder(run_dir: Path, name: str, rank: int) -> Path:
    own = shard_folder(run_dir, name, rank)
    shutil.rmtree(own, ignore_errors=True)
    own.mkdir(parents=True)
    return own


def _write_shard_into(
    engine, target: Path, state: TrainerState, rank: int, run_dir: Path, name: str, moments: bool = True
) -> None:
    """This rank's shard of the checkpoint `name`, written into its own fresh `shard_folder` and renamed
    into `target` (which other ranks' shards share); the shard folder is gone afterwards, also after an
    error."""
    own = _fresh_shard_folder(run_dir, name, rank)
    try:
        _write_shard(engine, own, state, rank, moments)
        move_files_into(own, target)
    finally:
        shutil.rmtree(own, ignore_errors=True)


def remove_stale_shards(run_dir: Path) -> None:
    """Rank 0, before any rank saves: the shard folders an interrupted save left in `run_dir`."""
    for folder in run_dir.glob(f"{SHARD_PREFIX}*"):
        shutil.rmtree(folder, ignore_errors=True)


def save_checkpoint(engine, state: TrainerState, metrics: dict[str, float], rank: int, run_dir: Path) -> None:
    """Every rank: write this rank's shard, rename its files into the checkpoint's folder in `run_dir`, then
    report it to Ray Train (a barrier across ranks), which registers it once every rank has.

    The files are already where Ray keeps checkpoints (`run_dir` is the run's Ray storage folder), so the
    report uploads nothing (`NO_UPLOAD`): no local copy to write first and copy after, which for a 7B
    model was (12 + 2) bytes a parameter through each node's local disk. A crash before every rank has
    reported leaves an unregistered folder, as an interrupted upload did, and the previous checkpoint
    untouched."""
    name = checkpoint_name(state)
    _write_shard_into(engine, run_dir / name, state, rank, run_dir, name)
    _report(run_dir, name, _reported_metrics(metrics, state))


def checkpoint_name(state: TrainerState) -> str:
    """The folder name of the checkpoint of `state` (step, restarts, and the evaluation due in one written
    during an evaluation, which the checkpoint after that evaluation shares its step with: unique within a
    run)."""
    due = f"-{state.evaluation_due}" if state.evaluation_due else ""
    return f"step-{state.global_step:08d}-r{state.restarts}{due}"


def _reported_metrics(metrics: dict[str, float], state: TrainerState) -> dict[str, float]:
    return {**metrics, "global_step": state.global_step, "stage_index": state.stage_index}


def _report(run_dir: Path, name: str, metrics: dict[str, float]) -> None:
    import ray.train

    ray.train.report(
        metrics,
        checkpoint=ray.train.Checkpoint.from_directory(str(run_dir / name)),
        checkpoint_dir_name=name,
        checkpoint_upload_mode=ray.train.CheckpointUploadMode.NO_UPLOAD,
    )


class CheckpointNotWritten(RuntimeError):
    """A rank's shard of a checkpoint written in the background could not be written; the run's previous
    checkpoint is untouched, and Ray Train restarts the run from it (`train.max_failures`)."""


@dataclass
class PendingCheckpoint:
    """A checkpoint, or a stage's best, whose shard this rank's `BackgroundWriter` is writing
    (`start_checkpoint`, `start_best`)."""

    name: str
    shard: Path
    """This rank's shard folder (`shard_folder`)."""
    target: Path
    """The folder the shard's files are renamed into once every rank has written: the checkpoint's own, or
    a best's `.<stage>.partial`."""
    step: int
    """The global step it holds."""
    written: futures.Future[None]
    publish: Callable[[], None]
    """Every rank, once the files are in `target`: what makes it count (the report to Ray; rank 0 swapping
    a best in)."""
    best: bool = False
    started: float = field(default_factory=time.perf_counter)
    """`time.perf_counter()` when the save began (its host copy taken), for the write's duration."""


def start_checkpoint(
    engine,
    state: TrainerState,
    metrics: dict[str, float],
    rank: int,
    run_dir: Path,
    writer: BackgroundWriter,
) -> PendingCheckpoint:
    """Every rank: take a host copy of this rank's shard and hand it to `writer`; training goes on while it
    writes (`netgpt/train/background_save.py`). Registered by `finish_checkpoint` once every rank's write
    has ended (`writes_ended`)."""
    name = checkpoint_name(state)
    report = functools.partial(_report, run_dir, name, _reported_metrics(metrics, state))
    return _start_writing(engine, state, rank, run_dir, name, run_dir / name, writer, report)


def start_best(
    engine, run_dir: Path, stage_name: str, state: TrainerState, rank: int, writer: BackgroundWriter
) -> PendingCheckpoint:
    """Every rank: `save_best` with the write on `writer`'s thread, as `start_checkpoint`; rank 0 swaps the
    new best in once every rank's write has ended (`finish_checkpoint`), the previous best in place until
    then."""
    final = best_checkpoint_dir(run_dir, stage_name)
    _prepare_partial_best(final, rank)
    publish = functools.partial(_publish_best, final, rank)
    name = f"best-{stage_name}"
    return _start_writing(engine, state, rank, run_dir, name, partial_of(final), writer, publish, best=True)


def _start_writing(
    engine,
    state: TrainerState,
    rank: int,
    run_dir: Path,
    name: str,
    target: Path,
    writer: BackgroundWriter,
    publish: Callable[[], None],
    best: bool = False,
) -> PendingCheckpoint:
    """This rank's shard of `name` copied to host memory (without AdamW's moments for a `best`) and handed
    to `writer`; nothing is left of it if the copy fails."""
    from netgpt.train.background_save import snapshots_of

    started = time.perf_counter()
    own = _fresh_shard_folder(run_dir, name, rank)
    try:
        with snapshots_of(engine) as snapshot:
            _save_engine(engine, own, moments=not best)
        _write_rank_state(own, state, rank)
    except BaseException:
        shutil.rmtree(own, ignore_errors=True)
        raise
    written = writer.write(snapshot, own, rank)
    return PendingCheckpoint(name, own, target, state.global_step, written, publish, best, started)


def writes_ended(pending: PendingCheckpoint, device: torch.device, wait: bool = False) -> int | None:
    """Every rank (a collective): None while some rank is still writing its shard of `pending`, else how
    many ranks' writes failed. With `wait`, this rank's write is waited for first, so the answer is never
    None. The ranks' answers are all-reduced, so every rank takes the same branch after it."""
    if wait:
        futures.wait([pending.written])
    done = pending.written.done()
    flags = torch.tensor([0 if done else 1, 1 if done and pending.written.exception() else 0], device=device)
    dist.all_reduce(flags)
    writing, failed = (int(flag) for flag in flags.tolist())
    return None if writing else failed


def finish_checkpoint(pending: PendingCheckpoint, failed_ranks: int) -> None:
    """Every rank, once every rank's write of `pending` has ended (`writes_ended`): rename this rank's files
    into its target folder and publish it, as `save_checkpoint` and `save_best` do; or, where
    `failed_ranks` ranks could not write theirs, remove the shard and raise `CheckpointNotWritten` on every
    rank."""
    try:
        if failed_ranks:
            error = pending.written.exception()
            what = f"{type(error).__name__}: {error}" if error else f"{failed_ranks} other rank(s) failed"
            raise CheckpointNotWritten(
                f"checkpoint {pending.name} could not be written ({what}); the checkpoints and bests written "
                "before it are untouched"
            ) from error
        move_files_into(pending.shard, pending.target)
    finally:
        shutil.rmtree(pending.shard, ignore_errors=True)
    pending.publish()


def load_checkpoint(
    engine,
    checkpoint: ray.train.Checkpoint,
    rank: int,
    world_size: int | None = None,
    run_dir: Path | None = None,
    check=None,
) -> TrainerState:
    """Every rank: restore weights, optimizer state and this rank's RNG; returns where to continue.

    `check(state)` runs before anything is loaded (a refusal costs no load). A checkpoint of another world
    size is converted to a universal checkpoint in `run_dir/universal/` first (see the module doc); its
    state's `world_size` stays the old one, for the caller to report."""
    world_size = world_size or dist.get_world_size()
    with checkpoint.as_directory() as folder:
        folder = Path(folder)
        state = TrainerState.from_json((folder / STATE_FILE).read_text(encoding="utf-8"))
        if check is not None:
            check(state)
        if state.world_size in (0, world_size):
            load_path, _ = engine.load_checkpoint(
                str(folder), tag=DS_TAG, load_optimizer_states=True, load_lr_scheduler_states=False
            )
            if load_path is None:
                raise RuntimeError(f"DeepSpeed found no checkpoint under {folder} (tag {DS_TAG!r})")
        else:
            if run_dir is None:
                raise ValueError("a checkpoint of another world size needs run_dir for its conversion")
            _load_resharded(engine, folder, state, checkpoint_name(state), Path(run_dir), rank)
        if rank < (state.world_size or world_size):  # a rank the old world had: its RNG file must be there
            load_rng_state(folder, rank)
    state.restarts += 1
    return state


def universal_checkpoint(source: Path, target: Path) -> None:
    """DeepSpeed's `ds_to_universal` from the ZeRO folder `source` (`<checkpoint>/ds`) into `target`: per
    parameter, its fp32 weights and Adam moments whole (`target/zero/<name>/{fp32,exp_avg,exp_avg_sq}.pt`),
    plus the model-state files. In one process: it reads one rank's optimizer file at a time and merges one
    parameter at a time. ZeRO-1/2 files are converted only with the conversion's info that Megatron-style
    clients save (tensor-parallel layouts); `inject_missing_state` lets DeepSpeed add its plain default,
    right for a model without tensor parallelism (ZeRO-3 files never need it)."""
    from deepspeed.checkpoint import ds_to_universal

    args = argparse.Namespace(
        input_folder=str(source),
        output_folder=str(target),
        num_extract_workers=1,
        num_merge_workers=1,
        keep_temp_folder=False,
        strict=True,
        inject_missing_state=True,
    )
    ds_to_universal.main(args)


def _load_resharded(
    engine,
    folder: Path,
    state: TrainerState,
    key: str,
    run_dir: Path,
    rank: int,
    best: bool = False,
) -> None:
    """Every rank: rank 0 converts the checkpoint (once: a complete conversion of the same `key`, a name
    unique within the run, is reused), the others wait for it; all load it as a universal checkpoint, then
    rank 0 deletes the conversion. A `best` one gets zeros for the moments it left out first."""
    name = f"{key}-w{state.world_size}"
    root = run_dir / UNIVERSAL_DIR
    final = root / name
    if rank == 0 and not final.is_dir():
        partial = root / f".{name}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        scratch = partial / "with-moments"
        source = with_zero_moments(folder / DS_TAG, scratch) if best else folder / DS_TAG
        universal_checkpoint(source, partial / DS_TAG)
        shutil.rmtree(scratch, ignore_errors=True)
        replace_directory(partial, final)
    deadline = time.monotonic() + CONVERSION_WAIT_S
    while not final.is_dir():  # only ranks other than 0 wait here (shared storage, see module doc)
        if time.monotonic() > deadline:
            raise TimeoutError(f"{final}: rank 0's universal conversion did not appear")
        time.sleep(1.0)
    load_universal(engine, final)
    dist.barrier()
    if rank == 0:
        shutil.rmtree(final, ignore_errors=True)


def load_universal(engine, folder: Path) -> None:
    """Load the universal checkpoint `folder/ds` into `engine` (any world size): weights, fp32 master
    weights and Adam moments.

    DeepSpeed reads `checkpoint.load_universal` from the engine's config at load time; it is switched on
    for this load only, since the same engine later loads ordinary checkpoints (`restore_best`). The
    universal load copies the first parameter group's settings onto every group, names included: the
    names (which `set_stage_hparams` reads) are put back; learning rates and weight decay are set per step.
    It also gives every group's Adam state one and the same `step` tensor (DeepSpeed 0.19.8,
    `load_hp_checkpoint_state_from_checkpoint_dir_stage3`), which torch's AdamW then increments once per
    group and step (seen: 5 groups, step 5 after one step), so the bias correction goes wrong: each group
    gets its own copy. (All groups step together under ZeRO-3, so the one recorded step is every group's.)"""
    names = [group.get("name") for group in engine.optimizer.param_groups]
    engine._config.load_universal_checkpoint = True
    try:
        load_path, _ = engine.load_checkpoint(
            str(folder), tag=DS_TAG, load_optimizer_states=True, load_lr_scheduler_states=False
        )
    finally:
        engine._config.load_universal_checkpoint = False
    if load_path is None:
        raise RuntimeError(f"DeepSpeed found no universal checkpoint under {folder} (tag {DS_TAG!r})")
    for group, name in zip(engine.optimizer.param_groups, names, strict=True):
        group["name"] = name
    for state in engine.optimizer.optimizer.state.values():
        if torch.is_tensor(state.get("step")):
            state["step"] = state["step"].clone()


def best_checkpoint_dir(run_dir: Path, stage_name: str) -> Path:
    return run_dir / "best" / stage_name


def save_best(engine, run_dir: Path, stage_name: str, state: TrainerState, rank: int) -> Path:
    """Every rank: write the stage's best checkpoint to `run_dir/best/<stage>`, crash-safe (`best_swap.py`),
    without AdamW's moments (`moments.py`: only its weights are ever restored).

    Each rank writes its shard into a fresh folder of its own in the run folder (as for `save_checkpoint`),
    then renames its files into the shared `.<stage>.partial`; rank 0 swaps that in once every rank has."""
    final = best_checkpoint_dir(run_dir, stage_name)
    _prepare_partial_best(final, rank)
    _write_shard_into(
        engine, partial_of(final), state, rank, Path(run_dir), f"best-{stage_name}", moments=False
    )
    _publish_best(final, rank)
    return final


def _prepare_partial_best(final: Path, rank: int) -> None:
    """Every rank: an empty `.<stage>.partial` beside the stage's best `final`, made by rank 0 once what an
    earlier crash left is settled (`recover_best`)."""
    if rank == 0:
        recover_best(final)
        partial = partial_of(final)
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    dist.barrier()


def _publish_best(final: Path, rank: int) -> None:
    """Every rank, its files in `.<stage>.partial`: rank 0 swaps the new best in once every rank's are."""
    dist.barrier()
    if rank == 0:
        publish_best(final)
    dist.barrier()


def restore_best(engine, run_dir: Path, stage_name: str, rank: int = 0) -> None:
    """Every rank: load the weights of the stage's best checkpoint (not its trainer state or RNG).

    DeepSpeed restores the fp32 master partitions with them (tested: a step at learning rate 0 afterwards
    keeps the best weights); a best holds no Adam moments (`save_best`), and the next stage begins with
    fresh ones. A best checkpoint written by another world size (before a resume on another worker count)
    goes through the universal conversion like a resume, with zeros for the moments it lacks
    (`moments.with_zero_moments`; the next stage resets them anyway)."""
    folder = best_checkpoint_dir(run_dir, stage_name)
    if rank == 0:
        recover_best(folder)  # a crash while a best was replaced: the complete one, renamed into place
    dist.barrier()
    state_file = folder / STATE_FILE
    if state_file.is_file():
        state = TrainerState.from_json(state_file.read_text(encoding="utf-8"))
        if state.world_size not in (0, dist.get_world_size()):
            key = f"best-{stage_name}-{checkpoint_name(state)}"
            _load_resharded(engine, folder, state, key, Path(run_dir), rank, best=True)
            return
    load_path, _ = engine.load_checkpoint(
        str(folder), tag=DS_TAG, load_optimizer_states=False, load_lr_scheduler_states=False
    )
    if load_path is None:
        raise RuntimeError(f"{folder}: stage {stage_name!r}'s best checkpoint is missing (tag {DS_TAG!r})")


def write_json_atomically(path: Path, payload: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(payload, indent=2, ensure_ascii=False))

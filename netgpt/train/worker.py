"""The function every Ray Train worker runs: build NetGPT on a DeepSpeed engine and walk the curriculum.

    train_loop_per_worker(loop_config)     # called by TorchTrainer on each rank

Reading order: `train_loop_per_worker` (setup, resume, stages) → `Curriculum.run_stage` (train, test,
checkpoint) → `Curriculum.train_stage` (windows of micro-batches, one optimizer step each with
`netgpt.train.step.train_step`; `validate_and_keep_best` after each epoch) → `checkpoint_if_preempted` and
`checkpoint_if_preempted_during` (a node's drain, after a step or during an evaluation).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist

from netgpt.config import NetGPTConfig, StageConfig
from netgpt.evaluate.rate import rate_batch
from netgpt.evaluate.scoring import as_rows, score_rows
from netgpt.graph.loader import graph_dataset_shard, iter_graph_batches, stream_name
from netgpt.graph.plan import StreamShape
from netgpt.metrics import Metrics
from netgpt.train.background_save import BackgroundWriter
from netgpt.train.checkpoint import (
    FINAL_METRICS,
    PendingCheckpoint,
    TrainerState,
    check_resume,
    fingerprint,
    finish_checkpoint,
    load_checkpoint,
    remove_stale_shards,
    restore_best,
    resume_settings,
    save_best,
    save_checkpoint,
    start_best,
    start_checkpoint,
    write_json_atomically,
    writes_ended,
)
from netgpt.train.cores import bind_worker, binds
from netgpt.train.engine import avoid_jit_builds, build_engine, param_count
from netgpt.train.monitor import FlopCounter, StepMeter, TensorBoardLog
from netgpt.train.prefetch import prefetch
from netgpt.train.profile import StepProfile
from netgpt.train.stages import (
    freeze_for_stage,
    lr_factor,
    reset_optimizer_state,
    set_stage_hparams,
)
from netgpt.train.step import LossNotFinite, train_step

CHECKPOINT_TAGS = "checkpoint/"
BEST_TAGS = "checkpoint/best_"
"""TensorBoard's tags for a checkpoint's and a best's stall and write (`checkpoint/stall_s`,
`checkpoint/best_write_s`): `Curriculum.write_checkpoint`."""
PROGRESS_POST_S = 0.5
"""The least time between two progress posts of a stage (`Curriculum._post_step`)."""


@dataclass
class StageStreams:
    train: Any
    val: Any
    train_batches: int
    """Global batches (all ranks) per epoch of the train stream; likewise `val_batches`."""
    val_batches: int
    train_start: int
    """Global position the train stream begins at: the resumed state's, so earlier batches are never
    sampled; this rank's first batch is `train_start + rank`."""
    val_start: int


class Curriculum:
    """The per-worker trainer: engine, state and logs; resuming is the same code path as starting."""

    def __init__(self, loop_config: dict[str, Any]):
        from transformers import AutoTokenizer

        self.config: NetGPTConfig = loop_config["config"]
        self.run_dir = Path(loop_config["run_dir"])
        self.feature_dims: dict[str, int] = loop_config["feature_dims"]
        self.progress = loop_config.get("progress")
        self._last_post = float("-inf")
        self.stream_starts = loop_config["stream_starts"]
        self.stream_shapes: dict[str, StreamShape] = loop_config["stream_shapes"]
        """Each stream's shape by name (`stream_name`), from the driver: batch counts without the store."""
        self.split_sizes: dict[str, int] = loop_config["split_sizes"]
        self.evaluate_test: bool = loop_config.get("evaluate_test", True)
        context = ray.train.get_context()
        self.rank = context.get_world_rank()
        self.world = context.get_world_size()
        train = self.config.train
        self.cores = (
            bind_worker(
                context.get_local_rank(),
                context.get_local_world_size(),
                ray.train.torch.get_device().index if train.use_gpu else None,
            )
            if binds(train.bind_cores, train.use_gpu)
            else []
        )
        """The cores this worker's threads are bound to (`train.bind_cores`); empty: not bound."""
        self.tokenizer = AutoTokenizer.from_pretrained(loop_config["tokenizer_dir"])
        self.engine, self.ds_config = build_engine(
            self.config, self.feature_dims, self.tokenizer, self.world, loop_config["ds_template"]
        )
        self.model = self.engine.module
        self.device = self.engine.device
        self.prompt_builders = {
            with_graph: self.model.prompt_builder(with_graph) for with_graph in (True, False)
        }
        """Prompts with graph tokens, and without (stages with `graph_tokens: false`, the LLM alone)."""
        self.flops = FlopCounter.of(self.model)
        self.log = TensorBoardLog(self.run_dir / "tensorboard" if self.rank == 0 else None)
        self.param_shares = self._param_shares()
        self.totals = StepMeter()
        """This process's steps except each stage's first, for the run's steady-state summary figures."""
        self.startup = StepMeter()
        """Each stage's first step: its stream's start-up (actors, pipeline) and ZeRO-3's first trace."""
        self.state = TrainerState()
        self.profile = StepProfile.from_env()
        """Per-phase step timers, on only for `tools/bench/train_step.py` (`netgpt.train.profile`)."""
        self.profile.attach(self.model)
        self.stage_profiles: dict[str, float] = {}
        self.writer = BackgroundWriter() if self.config.train.async_checkpoints else None
        self.pending: PendingCheckpoint | None = None
        """The checkpoint or best `writer` is writing; put in place once every rank has written it."""
        self.preemption: ray.train.PreemptionInfo | None = None
        """The node drain last answered with a checkpoint (`drain_notice`)."""
        self.noticed_at = 0.0
        """`time.monotonic()` when `drain_notice` last returned a drain."""
        if self.progress is not None:
            self.progress.worker.remote(self.rank, os.getpid(), ray.get_runtime_context().get_node_id())

    def _param_shares(self) -> dict[str, float]:
        """Each rank's share of the parameters it holds (about 1/world under ZeRO-3), for logs and tests."""
        held = sum(
            p.ds_tensor.numel() if hasattr(p, "ds_tensor") else p.numel() for p in self.model.parameters()
        )
        shares = torch.zeros(
            self.world, device=self.device
        )  # on the engine's device: NCCL has no CPU tensors
        shares[self.rank] = held / max(1, param_count(self.model))
        dist.all_reduce(shares)
        return {f"zero/param_share_rank{r}": float(share) for r, share in enumerate(shares)}

    def run_figures(self) -> dict[str, float]:
        """Steady-state step time, throughput and data-wait share of this process's steps (none if it ran
        none, e.g. a resubmitted finished run), and the stage start-ups apart."""
        if not self.totals.steps and not self.startup.steps:
            return {}
        figures = {f"run/{k.split('/')[-1]}": v for k, v in self.totals.rates(self.world).items()}
        figures["run/first_steps_s"] = self.startup.busy_s
        figures["run/first_steps_wait_s"] = self.startup.wait_s
        figures["run/cores_bound"] = len(self.cores)
        figures.update(self.stage_profiles)
        return figures

    # ---------------------------------------------------------------- resume
    def resume(self) -> None:
        """Continue from Ray's checkpoint if there is one (on any world size), else start the run's state.

        The settings of `resume_settings` are recorded in the state and must match on a resume; the run's
        first world size fixes every stage's global batch (`TrainerState.batch_world_size`)."""
        settings = resume_settings(self.config, self.split_sizes)
        stages = self.config.train.stages
        if self.rank == 0:  # no rank saves before rank 0 has taken its first step
            remove_stale_shards(self.run_dir)
        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            self.state = TrainerState(
                world_size=self.world,
                batch_world_size=self.world,
                fingerprint=fingerprint(settings),
                settings=settings,
            )
            return
        state = load_checkpoint(
            self.engine,
            checkpoint,
            self.rank,
            self.world,
            self.run_dir,
            check=lambda state: check_resume(self._legacy(state), settings, stages, self.world),
        )
        if state.world_size != self.world:
            self._post(
                "summary",
                f"resumed at step {state.global_step} on {self.world} workers from a checkpoint of "
                f"{state.world_size}: ZeRO shards re-cut through a universal checkpoint (weights, fp32 "
                "master weights and Adam moments kept), streams resumed at the same global position",
            )
        if state.evaluation_due:
            self._post(
                "summary",
                f"resumed at step {state.global_step} from {Path(checkpoint.path).name}: its "
                f"{state.evaluation_due}, which a node's drain interrupted, runs first",
            )
        if not state.fingerprint:
            state.fingerprint, state.settings = fingerprint(settings), settings
        state.world_size = self.world
        self.state = state
        self.log.resume_at(self.state.global_step + 1)
        if self.progress is not None and self.rank == 0:
            self.progress.resumed.remote(self.state.global_step)

    def _legacy(self, state: TrainerState) -> TrainerState:
        """A state written before world sizes were recorded: its world was this one, its position per rank."""
        if not state.world_size:
            state.world_size = state.batch_world_size = self.world
            state.position *= self.world
        return state

    def _record_seeds(self, stage: StageConfig, epoch: int, window: list) -> None:
        """Post this rank's seeds of the step to a progress actor made with `record_seeds=True` (tests)."""
        if self.progress is None:
            return
        if not hasattr(self, "_records_seeds"):
            self._records_seeds = bool(ray.get(self.progress.records_seeds.remote()))
        if self._records_seeds:
            ids = [int(i) for b in window for i in b["video"].sample_id[: b["video"].batch_size]]
            self.progress.seeds.remote(stage.name, self.state.global_step, epoch, self.rank, ids)

    def per_step(self, stage: StageConfig) -> int:
        """Micro-batches of one optimizer step of `stage` over all ranks (the same on every world size)."""
        return stage.grad_accum * self.state.batch_world_size

    def _post(self, method: str, *args: Any) -> None:
        if self.progress is not None and self.rank == 0:
            getattr(self.progress, method).remote(*args)

    def _post_step(self, stage: StageConfig, index: int, total: int, loss: float) -> None:
        """The stage's progress after a step, at most every `PROGRESS_POST_S` and after its last step: the
        driver reads it once a second, and on a CPU a step can take a fraction of that, each post an actor
        call on rank 0 that the other ranks wait for at the next collective."""
        now = time.monotonic()
        if now - self._last_post >= PROGRESS_POST_S or self.state.stage_step == total:
            self._last_post = now
            self._post("stage_update", stage.name, index, self.state.stage_step, total, loss)

    def end_diverged(self, diverged: LossNotFinite) -> None:
        """End this rank's part of a diverged run without an error. Every rank raised `diverged` at the same
        step (the finite flag is all-reduced), and an error would have Ray Train retry the run from its last
        checkpoint `train.max_failures` times, to diverge again at the same step; rank 0 records it on the
        progress actor instead, which the driver reads once the run has ended and raises."""
        self.settle_checkpoint(wait=True)  # the last checkpoint before the divergence is one to resume from
        if self.progress is None:
            raise diverged
        if self.rank == 0:
            ray.get(self.progress.record_divergence.remote(str(diverged)))
        self.log.close()
        dist.barrier()  # rank 0's record is in before any rank ends the run
        dist.destroy_process_group()

    # ---------------------------------------------------------------- stages
    def streams(self, stage: StageConfig) -> StageStreams:
        """The stage's streams, begun where the state stands (every rank holds the same state), in plans cut
        for the stage's global step (`per_step`), which any world size dividing it shares in lock step."""
        train, val = stream_name("train", stage.name), stream_name("val", stage.name)
        multiple = self.per_step(stage)
        val_batches = self.stream_shapes[val].batches_per_epoch(multiple)
        train_start, val_start = self.state.position, self.state.validations * val_batches
        return StageStreams(
            train=graph_dataset_shard(self.stream_starts, train, train_start, multiple),
            val=graph_dataset_shard(self.stream_starts, val, val_start, multiple),
            train_batches=self.stream_shapes[train].batches_per_epoch(multiple),
            val_batches=val_batches,
            train_start=train_start,
            val_start=val_start,
        )

    def run_stage(self, index: int, stage: StageConfig) -> None:
        """Train the stage (unless a drain interrupted its test: its training is done, its best in the
        weights), test it, and checkpoint the state the next stage begins from."""
        if self.state.evaluation_due != "test":
            self.train_stage(index, stage)
        self.state.evaluation_due = ""
        tested = self.test(stage) if self.evaluate_test else {}
        self.state = self.state.for_next_stage(tested)
        self.checkpoint(self.state, {"stage_end": float(index)})

    def train_stage(self, index: int, stage: StageConfig) -> None:
        """The stage's optimizer steps, validating after each epoch (first the validation a drain interrupted,
        on a resume), until its last step or early stopping; then the stage's best back in the weights."""
        state = self.state
        active = freeze_for_stage(self.model, stage)
        if state.stage_step == 0:
            reset_optimizer_state(self.engine.optimizer.optimizer)
        streams = self.streams(stage)
        if streams.train_batches == 0:
            raise RuntimeError(
                f"stage {stage.name!r}: the train split gives no batch per rank "
                f"(micro_batch_size {stage.micro_batch_size}, {self.world} workers): use fewer workers or "
                "smaller batches"
            )
        accum = self.per_step(stage) // self.world
        state.world_size, state.micro_batch_size, state.grad_accum = self.world, stage.micro_batch_size, accum
        steps_per_epoch = math.ceil(streams.train_batches / (accum * self.world))
        total = steps_per_epoch * stage.epochs
        if stage.max_steps:
            total = min(total, stage.max_steps)
        first, stride = self.rank, self.world
        batches = prefetch(iter_graph_batches(streams.train, streams.train_start + first, stride))
        val_batches = iter_graph_batches(streams.val, streams.val_start + first, stride)
        validates = self.config.train.val_every_epoch and streams.val_batches
        meter = StepMeter()
        self._post("stage_update", stage.name, index, state.stage_step, total, None)
        if state.evaluation_due == "validation":
            state.evaluation_due = ""
            if validates and self.validate_and_keep_best(
                stage, val_batches, streams.val_batches // self.world
            ):
                total = state.stage_step
        first_step = True
        while state.stage_step < total:
            step_started = time.perf_counter()
            self.profile.begin_step()
            step = StepMeter(steps=1)
            window, last_position = self._next_window(batches, streams.train_batches, accum, step)
            factor = lr_factor(state.stage_step, total, stage.warmup_steps, stage.min_lr_ratio)
            lr = set_stage_hparams(self.engine.optimizer, stage, active, factor)
            terms = train_step(
                self.engine,
                window,
                stage,
                self.prompt_builders[stage.graph_tokens],
                step,
                self.flops,
                self.profile,
            )
            step.busy_s = time.perf_counter() - step_started
            self._profile_step(stage, step, first_step)
            meter.absorb(step)
            (self.startup if first_step else self.totals).absorb(step)
            first_step = False
            state.stage_step += 1
            state.global_step += 1
            self._record_seeds(stage, last_position // streams.train_batches, window)
            state.position = last_position - self.rank + self.world
            state.epoch = state.position // streams.train_batches
            self._post_step(stage, index, total, terms["loss"])
            self.settle_checkpoint()
            if state.global_step % self.config.train.log_every == 0 or state.stage_step == total:
                grad_norm = self.engine.get_global_grad_norm()
                scalars = {f"train/{k}": v for k, v in terms.items()}
                scalars.update({"train/lr": lr, "train/grad_norm": float(grad_norm or 0.0)})
                scalars.update(meter.rates(self.world))
                self.log.scalars(scalars, state.global_step)
                meter = StepMeter()
            epoch_end = state.position % streams.train_batches == 0
            stage_end = state.stage_step == total
            if (epoch_end or stage_end) and validates:
                stop = self.validate_and_keep_best(stage, val_batches, streams.val_batches // self.world)
                if stop:
                    stage_end = True
                    total = state.stage_step
            if stage_end:
                break
            if state.global_step % self.config.train.checkpoint_every == 0:
                self.checkpoint(state, {"train_loss": terms["loss"]})
            self.checkpoint_if_preempted(state, terms["loss"])
        # A stage cut short (max_steps, early stopping) leaves its streams unread: end their Ray Data
        # executions, or they keep sampling ahead beside the next stage's (netgpt/train/prefetch.py).
        batches.close()
        val_batches.close()
        self._profile_stage(stage)
        if state.best_step is not None and state.best_step != state.global_step:
            self.settle_checkpoint(wait=True)  # a best still being written must be in place to be read
            restore_best(self.engine, self.run_dir, stage.name, self.rank)

    def checkpoint(self, state: TrainerState, metrics: dict[str, float]) -> None:
        """Checkpoint `state`; `write_checkpoint` says how."""
        self.write_checkpoint(
            functools.partial(save_checkpoint, self.engine, state, metrics, self.rank, self.run_dir),
            functools.partial(start_checkpoint, self.engine, state, metrics, self.rank, self.run_dir),
            CHECKPOINT_TAGS,
            state.global_step,
        )

    def checkpoint_if_preempted(self, state: TrainerState, loss: float) -> None:
        """After a step, at a new drain (`drain_notice`), checkpoint this step unless it was just
        checkpointed (`answer_drain`). Training goes on meanwhile: the drain may be called off, and Ray
        Train ends the worker group at the deadline."""
        preemption = self.drain_notice(state.global_step)
        if preemption is None:
            return
        if state.global_step % self.config.train.checkpoint_every:
            self.checkpoint(state, {"train_loss": loss, "preemption": 1.0})
        self.answer_drain(preemption, "this step")

    def checkpoint_if_preempted_during(self, evaluation: str, batch: int) -> None:
        """Before an evaluation's batch, at a new drain (`drain_notice`), checkpoint the state with
        `evaluation` due, which a resumed run runs first (`run_stage`). An evaluation on a large split (a
        validation that generates answers) can outlast a drain's notice; the steps before it are not lost
        with it."""
        preemption = self.drain_notice(batch)
        if preemption is not None:
            due = dataclasses.replace(self.state, evaluation_due=evaluation)
            self.checkpoint(due, {"preemption": 1.0})
            self.answer_drain(preemption, f"during the {evaluation}")

    def drain_notice(self, count: int) -> ray.train.PreemptionInfo | None:
        """At every `train.preemption_check_every`-th `count` (global steps; an evaluation's batches from
        its first), ask whether a node of the run is being drained (`ask_preemption`); the answer when it
        names a drain not answered yet, else None (also when not asked; 0: never)."""
        every = self.config.train.preemption_check_every
        if not every or count % every:
            return None
        preemption = self.ask_preemption()
        if preemption is None or preemption == self.preemption:
            return None
        self.preemption, self.noticed_at = preemption, time.monotonic()
        return preemption

    def ask_preemption(self) -> ray.train.PreemptionInfo | None:
        """Ray Train's word on a drain of one of the run's nodes: a collective of Ray Train's (every rank
        asks at the same points of the run), the one part of a drain's handling that needs a Ray Train
        worker."""
        return ray.train.get_preemption_info()

    def answer_drain(self, preemption: ray.train.PreemptionInfo, when: str) -> None:
        """Wait until the checkpoint answering `preemption` is registered, so that Ray Train's restart on
        other nodes resumes from it, and say so in the run's summary, with how long that took after the
        notice and what was left of the deadline: the margin a node's notice (`k8s/`: the preStop hook's
        deadline) leaves this run's checkpoints."""
        self.settle_checkpoint(wait=True)
        took = time.monotonic() - self.noticed_at
        left = (
            ""
            if preemption.deadline_ms is None
            else f", {preemption.deadline_ms / 1000 - time.time():.0f} s before the deadline"
        )
        self._post(
            "summary",
            f"step {self.state.global_step}: node(s) {', '.join(preemption.preempted_node_ids)} being "
            f"drained (ranks {preemption.preempted_ranks}): checkpointed {when}, registered {took:.1f} s "
            f"after the notice{left}",
        )

    def keep_best(self, stage: StageConfig, state: TrainerState) -> None:
        """Write `state` as `stage`'s best (`best/<stage>`, replacing the one there); `write_checkpoint` says
        how."""
        args = (self.engine, self.run_dir, stage.name, state, self.rank)
        self.write_checkpoint(
            functools.partial(save_best, *args),
            functools.partial(start_best, *args),
            BEST_TAGS,
            state.global_step,
        )

    def write_checkpoint(
        self,
        in_place: Callable[[], Any],
        in_background: Callable[[BackgroundWriter], PendingCheckpoint],
        tags: str,
        step: int,
    ) -> None:
        """Write a checkpoint or a best: in the background (`train.async_checkpoints`) once the previous one
        is in place, else written and put in place before training goes on. TensorBoard gets how long
        training stopped for it (`<tags>stall_s`) and, once in place, how long it took to write
        (`<tags>write_s`)."""
        started = time.perf_counter()
        if self.writer is None:
            in_place()
            took = time.perf_counter() - started
            self.log.scalars({f"{tags}stall_s": took, f"{tags}write_s": took}, step)
            return
        self.settle_checkpoint(wait=True)
        self.pending = in_background(self.writer)
        self.log.scalars({f"{tags}stall_s": time.perf_counter() - started}, step)

    def settle_checkpoint(self, wait: bool = False) -> None:
        """Put the checkpoint or best being written in place (registered with Ray; swapped in) once every
        rank has written its shard (a tiny all-reduce after each step while one is written); with `wait`,
        wait for it. A failed write raises `CheckpointNotWritten` on every rank, and Ray Train restarts from
        the previous checkpoint."""
        if self.pending is None:
            return
        failed = writes_ended(self.pending, self.device, wait)
        if failed is None:
            return
        pending, self.pending = self.pending, None
        finish_checkpoint(pending, failed)
        tags = BEST_TAGS if pending.best else CHECKPOINT_TAGS
        self.log.scalars({f"{tags}write_s": time.perf_counter() - pending.started}, pending.step)

    def _profile_step(self, stage: StageConfig, step: StepMeter, first_step: bool) -> None:
        """Close the step in the profile (when on); the stage's first step is kept apart, as in `startup`."""
        if not self.profile.enabled:
            return
        self.profile.end_step(step.wait_s, step.busy_s)
        if first_step:
            prefix = f"profile/{stage.name}/"
            self.stage_profiles[f"{prefix}first_step_s"] = step.busy_s
            self.stage_profiles[f"{prefix}first_step_wait_s"] = step.wait_s
            self.profile.reset()

    def _profile_stage(self, stage: StageConfig) -> None:
        """The stage's figures from its steps after the first (when the profile is on and there were any)."""
        if self.profile.enabled and self.profile.steps:
            prefix = f"profile/{stage.name}/"
            self.stage_profiles.update({prefix + k: v for k, v in self.profile.figures().items()})

    def _next_window(self, batches, per_epoch: int, accum: int, meter: StepMeter):
        """The micro-batches of one optimizer step: `accum` of them, fewer at the end of an epoch (`per_epoch`
        global batches, of which this rank's last is among the final `world`)."""
        window = []
        while True:
            started = time.perf_counter()
            _epoch, position, batch = next(batches)
            meter.wait_s += time.perf_counter() - started
            window.append(batch)
            in_epoch = position % per_epoch
            if len(window) == accum or in_epoch >= per_epoch - self.world:
                return window, position

    # ---------------------------------------------------------------- validation
    @torch.no_grad()
    def evaluate(
        self, stage: StageConfig, batches, count: int, evaluation: str
    ) -> tuple[dict[str, Metrics], list[dict]]:
        """Rate `count` batches with every prediction the stage makes, gather the rows of all ranks, score
        them; returns the metrics and a few example rows. `evaluation` ("validation", "test") is what a
        checkpoint answering a drain meanwhile has due (`checkpoint_if_preempted_during`).

        All ranks rate the same number of batches and generate in step (`synced_gpus`), so ZeRO-3's
        collective gathers stay in step."""
        self.engine.eval()
        made = stage.predictions()
        builder = self.prompt_builders[stage.graph_tokens]
        rows: list[dict] = []
        for index in range(count):
            self.checkpoint_if_preempted_during(evaluation, index)
            _epoch, _position, batch = next(batches)
            rated = rate_batch(self.engine, batch, builder, self.device, made, synced_gpus=self.world > 1)
            for row, fields in zip(as_rows(rated), batch.seed_fields, strict=True):
                rows.append({**row, "title": fields["title"][:40]})
        gathered: list[list[dict]] = [[] for _ in range(self.world)]
        dist.all_gather_object(gathered, rows)
        rows = sorted((row for part in gathered for row in part), key=lambda row: row["sample_id"])
        return score_rows(rows, made), rows[:8]

    def validate_and_keep_best(self, stage: StageConfig, batches, count: int) -> bool:
        """Validate, log, keep the stage's best checkpoint; True when patience says stop."""
        state = self.state
        results, examples = self.evaluate(stage, batches, count, "validation")
        state.validations += 1
        primary = stage.primary_prediction()
        score = results[primary].mae if primary in results else float("nan")
        self.log.validation(stage.name, results, examples, state.global_step)
        line = f"[{stage.name}] step {state.global_step} validation: " + "  ".join(
            f"{source} ACC {m.acc:.3f} MAE {m.mae:.3f} MSE {m.mse:.3f}" for source, m in results.items()
        )
        self._post("summary", line)
        if np.isfinite(score) and (state.best_score is None or score < state.best_score):
            state.best_score, state.best_step = score, state.global_step
            state.stale_validations = 0
            self.keep_best(stage, state)
        else:
            state.stale_validations += 1
        return bool(stage.patience) and state.stale_validations >= stage.patience

    # ---------------------------------------------------------------- end of run
    def test(self, stage: StageConfig) -> dict[str, float]:
        """Score the model at the end of `stage` on the test split, with every source the stage trains.

        Each stage's scores are the baselines (docs/evaluate.md#the-baselines) in turn: the RGCN alone after
        graph pretraining, the aligned LLM's answers, then NetGPT after joint fine-tuning."""
        multiple = self.per_step(stage)
        name = stream_name("test", stage.name)
        shard = graph_dataset_shard(self.stream_starts, name, 0, multiple)
        count = self.stream_shapes[name].batches_per_epoch(multiple) // self.world
        results, _ = self.evaluate(stage, iter_graph_batches(shard, self.rank, self.world), count, "test")
        scalars: dict[str, float] = {}
        for source, metrics in results.items():
            scalars.update(metrics.scalars(prefix=f"test/{stage.name}/{source}/"))
        self.log.scalars(scalars, self.state.global_step)
        return scalars


def train_loop_per_worker(loop_config: dict[str, Any]) -> None:
    """Ray Train's per-worker entry: resume if a checkpoint exists, run the remaining stages and tests.

    The HF-format model is written after training by the entry points (`netgpt.convert.export_run`)."""
    avoid_jit_builds()
    trainer = Curriculum(loop_config)
    trainer.resume()
    stages = trainer.config.train.stages
    try:
        for index in range(trainer.state.stage_index, len(stages)):
            trainer.run_stage(index, stages[index])
    except LossNotFinite as diverged:
        trainer.end_diverged(diverged)
        return
    trainer.settle_checkpoint(wait=True)  # the export reads the last checkpoint: it must be registered
    last = f"test/{stages[-1].name}/"
    tested = trainer.state.test_metrics
    final_model = {f"test/{k[len(last) :]}": v for k, v in tested.items() if k.startswith(last)}
    trainer.log.close()
    final = {
        **tested,
        **final_model,
        **trainer.param_shares,
        **trainer.run_figures(),
        "global_step": trainer.state.global_step,
    }
    if trainer.rank == 0:
        write_json_atomically(trainer.run_dir / FINAL_METRICS, final)
    dist.barrier()
    dist.destroy_process_group()

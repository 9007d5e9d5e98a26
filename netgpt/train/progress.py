"""Progress from the workers to the driver: rank 0 posts to a small Ray actor, the driver polls it and draws
one tqdm bar per stage (with its ETA) and prints a one-line summary per validation. Without a terminal (the
log of `ray job submit`, followed with `ray job logs -f`), a bar's carriage returns would pile up into one
unreadable line, so the driver prints a plain progress line every `LINE_EVERY_S` seconds instead.

Ray Train's own `report` is a barrier across ranks; a fire-and-forget actor call costs the hot loop nothing.
The actor also records the workers' process ids and nodes, and the run's restarts (the worker-kill and
multi-node tests read them),
and, when made with `record_seeds=True`, the seeds every rank trained on at every step (tests check with them
that a resumed run, also on another worker count, sees every seed of an epoch once and in the same steps).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import ray
from tqdm import tqdm

LINE_EVERY_S = 30.0
"""Seconds between progress lines when there is no terminal."""


class LineProgress:
    """A stage's progress as plain lines (`stage 2 alignment: step 120/500, loss 3.2104, 1.9 steps/s, ETA
    3m36s`) at most every `every_s` seconds, and at the stage's last step."""

    def __init__(self, every_s: float = LINE_EVERY_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.every_s, self.clock = every_s, clock
        self.stage_key: tuple | None = None
        self.started = self.last_printed = 0.0
        self.first_step = 0
        self.last_step_printed = -1

    def update(self, stage: dict[str, Any]) -> str | None:
        """The line to print for this snapshot of the stage, or None when it is not yet time."""
        now = self.clock()
        key = (stage["name"], stage["total"])
        if key != self.stage_key:
            self.stage_key, self.started, self.first_step = key, now, stage["step"]
            self.last_step_printed = -1
            self.last_printed = now - self.every_s  # a new stage prints its first line at once
        done = stage["step"] >= stage["total"]
        if stage["step"] == self.last_step_printed or (now - self.last_printed < self.every_s and not done):
            return None
        self.last_printed, self.last_step_printed = now, stage["step"]
        line = f"stage {stage['index'] + 1} {stage['name']}: step {stage['step']}/{stage['total']}"
        if stage["loss"] is not None:
            line += f", loss {stage['loss']:.4f}"
        steps, elapsed = stage["step"] - self.first_step, now - self.started
        if steps > 0 and elapsed > 0:
            rate = steps / elapsed
            line += f", {rate:.2f} steps/s, ETA {_duration((stage['total'] - stage['step']) / rate)}"
        return line


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


@ray.remote(num_cpus=0)
class ProgressActor:
    def __init__(self, record_seeds: bool = False) -> None:
        self.stage: dict[str, Any] = {}
        self.summaries: list[str] = []
        self.pids: dict[int, int] = {}
        self.workers: list[dict[str, Any]] = []
        self.resumed_from: list[int] = []
        self.record_seeds = record_seeds
        self.seen: list[dict[str, Any]] = []
        self.diverged: str | None = None

    def records_seeds(self) -> bool:
        return self.record_seeds

    def seeds(self, stage: str, global_step: int, epoch: int, rank: int, sample_ids: list[int]) -> None:
        """The seeds rank `rank` trained on in optimizer step `global_step` (epoch `epoch` of `stage`)."""
        self.seen.append(
            {"stage": stage, "global_step": global_step, "epoch": epoch, "rank": rank, "seeds": sample_ids}
        )

    def stage_update(self, name: str, index: int, step: int, total: int, loss: float | None) -> None:
        self.stage = {"name": name, "index": index, "step": step, "total": total, "loss": loss}

    def summary(self, line: str) -> None:
        self.summaries.append(line)

    def worker(self, rank: int, pid: int, node_id: str) -> None:
        """A Train worker (re)started: its rank, process id and Ray node id."""
        self.pids[rank] = pid
        self.workers.append({"rank": rank, "pid": pid, "node_id": node_id})

    def resumed(self, global_step: int) -> None:
        self.resumed_from.append(global_step)

    def record_divergence(self, message: str) -> None:
        """Training diverged (`LossNotFinite`'s message): the workers ended the run, the driver raises."""
        self.diverged = message

    def snapshot(self) -> dict[str, Any]:
        return {
            "stage": dict(self.stage),
            "summaries": list(self.summaries),
            "pids": dict(self.pids),
            "workers": list(self.workers),
            "resumed_from": list(self.resumed_from),
            "seen": list(self.seen),
            "diverged": self.diverged,
        }


def run_with_progress(
    fit: Callable[[], Any], actor, poll_s: float = 1.0, show: bool = True, interactive: bool | None = None
) -> Any:
    """Run `fit` in a thread; meanwhile show the progress the workers post to `actor`: a bar on a terminal,
    plain lines otherwise (`interactive=None`: whether stderr is a terminal)."""
    interactive = sys.stderr.isatty() if interactive is None else interactive
    lines = None if interactive else LineProgress()
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = fit()
        except BaseException as error:  # re-raised in the caller's thread below
            outcome["error"] = error

    thread = threading.Thread(target=target, name="netgpt-fit", daemon=True)
    thread.start()
    bar: tqdm | None = None
    bar_stage = None
    printed = 0
    while True:
        thread.join(timeout=poll_s)
        try:
            snap = ray.get(actor.snapshot.remote(), timeout=10)
        except Exception:  # the actor is best effort: a lost poll only delays the bar
            snap = None
        if snap is None or not show:
            if not thread.is_alive():
                break
            continue
        stage = snap["stage"]
        if lines is not None:
            line = lines.update(stage) if stage else None
            for text in [*snap["summaries"][printed:], *([line] if line else [])]:
                print(text, flush=True)
            printed = len(snap["summaries"])
            if not thread.is_alive():
                break
            continue
        if stage and (stage["name"], stage["total"]) != bar_stage:
            if bar is not None:
                bar.close()
            bar_stage = (stage["name"], stage["total"])
            bar = tqdm(total=stage["total"], desc=f"stage {stage['index'] + 1} {stage['name']}", unit="step")
        if bar is not None and stage:
            bar.n = stage["step"]
            if stage["loss"] is not None:
                bar.set_postfix(loss=f"{stage['loss']:.4f}", refresh=False)
            bar.refresh()
        for line in snap["summaries"][printed:]:
            (bar.write if bar is not None else print)(line)
        printed = len(snap["summaries"])
        if not thread.is_alive():
            break
    if bar is not None:
        bar.close()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]

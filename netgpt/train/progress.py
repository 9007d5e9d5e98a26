"""Progress from the workers to the driver: rank 0 posts to a small Ray actor, the driver polls it and draws
one tqdm bar per stage (with its ETA) and prints a one-line summary per validation.

Ray Train's own `report` is a barrier across ranks; a fire-and-forget actor call costs the hot loop nothing.
The actor also records the workers' process ids and the run's restarts (the worker-kill test reads them),
and, when made with `record_seeds=True`, the seeds every rank trained on at every step (tests check with them
that a resumed run, also on another worker count, sees every seed of an epoch once and in the same steps).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import ray
from tqdm import tqdm


@ray.remote(num_cpus=0)
class ProgressActor:
    def __init__(self, record_seeds: bool = False) -> None:
        self.stage: dict[str, Any] = {}
        self.summaries: list[str] = []
        self.pids: dict[int, int] = {}
        self.resumed_from: list[int] = []
        self.record_seeds = record_seeds
        self.seen: list[dict[str, Any]] = []

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

    def worker(self, rank: int, pid: int) -> None:
        self.pids[rank] = pid

    def resumed(self, global_step: int) -> None:
        self.resumed_from.append(global_step)

    def snapshot(self) -> dict[str, Any]:
        return {
            "stage": dict(self.stage),
            "summaries": list(self.summaries),
            "pids": dict(self.pids),
            "resumed_from": list(self.resumed_from),
            "seen": list(self.seen),
        }


def run_with_progress(fit: Callable[[], Any], actor, poll_s: float = 1.0, show: bool = True) -> Any:
    """Run `fit` in a thread; meanwhile draw the progress the workers post to `actor`."""
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

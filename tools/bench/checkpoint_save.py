"""Benchmark: how long a checkpoint stops training, written in the background against written in place.

Prints ONE JSON line: the stall of a checkpoint written before training goes on (`save_checkpoint`'s write:
DeepSpeed's files, RNG, state and manifest into the shard folder, renamed into the checkpoint's folder), the
stall of one written in the background (`start_checkpoint`: DeepSpeed's save into host copies,
`netgpt/train/background_save.py`), their ratio, and what the background write costs the steps that run
beside it: the median step with no write, the mean step while the write goes on (polled after each step as
the trainer does), how many steps that took, and the seconds until every file was written. What the
background write costs training, `cost_s_background`: its stall plus what the write slowed the steps beside
it (their time less as many steps with no write); `cost_ratio` sets that against the stall in place. Then
a stage's best (`save_best`, without AdamW's moments) both ways: `best_stall_s_in_place` and
`best_stall_s_background` (`start_best`), `best_gb`. On a CPU machine the thread's write takes cores from
the step; on a GPU node the step leaves the host's cores mostly idle. `tools/bench/gpu.py` measures the
same on a GPU (`checkpoint_costs`).

    python tools/bench/checkpoint_save.py [--layers 30] [--videos 120]     # about two minutes on 2 cores

One process (a one-process gloo group, no Ray), the fine-tuning stage (every parameter trained, so the
optimizer files hold every parameter), with the tiny Qwen2-style LLM at SmolLM2-135M's shapes (hidden 576,
9 heads, 3 key/value heads, MLP 1536), `--layers` of them; its vocabulary is the demo tokenizer's, so about
110 M parameters in all at 30 layers. Written under a temporary folder on the disk of the current directory
(`--dir`), deleted at the end. Ray's registration (`finish_checkpoint`) is not timed: it is the same for both.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from results import emit, keep_stdout_for_results  # noqa: E402  (this folder: DeepSpeed logs to stdout)

IDLE_STEPS = 8
"""Steps timed without a write (after 2 not timed)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=30, help="decoder layers of the LLM (SmolLM2-135M: 30)")
    parser.add_argument("--videos", type=int, default=120, help="synthetic videos of the data set")
    parser.add_argument(
        "--dir", default=".", help="where to write the checkpoints (a temporary folder in it)"
    )
    args = parser.parse_args()
    keep_stdout_for_results()
    import torch
    import torch.distributed as dist
    from gpu import init_process_group  # this folder

    init_process_group(torch.device("cpu"), gpu_backend="nccl")  # gloo on CPU: the backend is not used
    try:
        with tempfile.TemporaryDirectory(prefix="netgpt-checkpoint-save-", dir=args.dir) as tmp:
            emit(_run(Path(tmp), args))
    finally:
        dist.destroy_process_group()


def _run(folder: Path, args: argparse.Namespace) -> dict:
    import torch
    from in_process import build  # this folder

    from netgpt.train.engine import param_count

    smollm2_shapes = [
        "model.tiny_llm.hidden_size=576",
        "model.tiny_llm.num_heads=9",
        "model.tiny_llm.num_kv_heads=3",
        "model.tiny_llm.intermediate_size=1536",
        f"model.tiny_llm.num_layers={args.layers}",
    ]
    run = build(folder, args.videos, smollm2_shapes)
    engine, stage = run.engine, run.config.train.stages[-1]
    step = run.stepper(stage, run.batches(stage.micro_batch_size, count=4))
    for _ in range(2):
        step()
    idle = statistics.median(step() for _ in range(IDLE_STEPS))
    return {
        "bench": "checkpoint_save",
        "params": param_count(engine.module),
        **checkpoint_costs(engine, folder / "run", step, idle, torch.device("cpu")),
        "cpus": os.cpu_count(),
    }


def checkpoint_costs(engine, run_dir: Path, step: Callable[[], float], idle_step_s: float, device) -> dict:
    """One checkpoint of `engine` written in place, then one in the background with `step` run beside the
    write until it has ended (as the trainer polls); the figures of the module doc. `tools/bench/gpu.py` uses
    it too. Each checkpoint is deleted once measured (disk)."""
    import shutil

    from netgpt.train import checkpoint
    from netgpt.train.background_save import BackgroundWriter
    from netgpt.train.checkpoint import TrainerState, start_checkpoint, writes_ended

    state = TrainerState(global_step=1, world_size=1)
    started = time.perf_counter()
    checkpoint._write_shard_into(engine, run_dir / "in-place", state, 0, run_dir, "in-place")
    in_place = time.perf_counter() - started
    size = _bytes_under(run_dir / "in-place")
    shutil.rmtree(run_dir / "in-place")

    state.global_step = 2
    started = time.perf_counter()
    writer = BackgroundWriter()
    pending = start_checkpoint(engine, state, {}, 0, run_dir, writer)
    background = time.perf_counter() - started
    beside = []
    while writes_ended(pending, device) is None:
        beside.append(step())
    written_s = time.perf_counter() - started
    shutil.rmtree(pending.shard)
    slowed = sum(beside) - len(beside) * idle_step_s  # what the write took from the steps beside it
    return {
        **_costs_of_a_best(engine, run_dir, state, writer, device),
        "checkpoint_gb": round(size / 1e9, 3),
        "stall_s_in_place": round(in_place, 3),
        "stall_s_background": round(background, 3),
        "stall_ratio": round(background / in_place, 3),
        "step_s_no_write": round(idle_step_s, 4),
        "step_s_beside_write": round(statistics.mean(beside), 4) if beside else None,
        "steps_beside_write": len(beside),
        "background_write_s": round(written_s, 3),
        "cost_s_background": round(background + slowed, 3),
        "cost_ratio": round((background + slowed) / in_place, 3),
    }


def _costs_of_a_best(engine, run_dir: Path, state, writer, device) -> dict:
    """A stage's best written in place, then in the background (waited for: its stall is the figure)."""
    import shutil

    from netgpt.train.checkpoint import save_best, start_best, writes_ended

    started = time.perf_counter()
    best = save_best(engine, run_dir, "bench", state, 0)
    in_place = time.perf_counter() - started
    size = _bytes_under(best)
    shutil.rmtree(best)
    started = time.perf_counter()
    pending = start_best(engine, run_dir, "bench", state, 0, writer)
    background = time.perf_counter() - started
    writes_ended(pending, device, wait=True)
    shutil.rmtree(pending.shard)
    shutil.rmtree(best.parent)
    return {
        "best_gb": round(size / 1e9, 3),
        "best_stall_s_in_place": round(in_place, 3),
        "best_stall_s_background": round(background, 3),
    }


def _bytes_under(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


if __name__ == "__main__":
    main()

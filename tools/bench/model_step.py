"""Benchmark: a step's fixed cost against its arithmetic, in one process without Ray.

Prints ONE JSON line per stage of the demo curriculum (graph_pretrain, alignment, finetune), then one
summary line. Each stage's optimizer step (`netgpt.train.step.train_step`: forward, backward, DeepSpeed's
ZeRO-3 step on a one-process gloo group) is timed on sampled batches of the demo's store at two sizes: the
micro-batch one of the demo's 2 workers takes, and twice that, the micro-batch one process takes for the same
global batch (what `tools/bench/train_step.py` compares). `arithmetic_share` is the part of the larger step
that the extra seeds cost, 1 - step(1x) / step(2x): how much two workers could split. A share near 0 means
the step is fixed cost (module calls, ZeRO-3's hooks, autograd, the optimizer's Python) that each worker
pays whole, and no number of workers makes such a step shorter.

`--two-ranks` also times the smaller step on 2 gloo ranks, 2 processes each bound to a core of its own (as
`train.bind_cores` binds the Train workers): `step_s_2ranks`, and `ratio_2ranks_over_2x` against the larger
step in one process. That is `tools/bench/train_step.py`'s comparison without Ray, the streams and their
processes: what ZeRO-3 on 2 ranks costs beside one process, whatever else shares the cores.

    python tools/bench/model_step.py [--steps 60] [--videos 300] [--two-ranks] [KEY=VALUE ...]
    # 26 s on 2 cores, 42 s with --two-ranks (2026-12-06)

No Ray, no streams: the same model, batches and step as a Train worker's, one thread (a demo worker's one
CPU). The median over the steps after the first 3 is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # results.py, gpu.py, in_process.py beside it

from results import emit, keep_stdout_for_results  # noqa: E402  (this folder: DeepSpeed logs to stdout)

WARMUP_STEPS = 3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="timed steps per stage and size")
    parser.add_argument("--videos", type=int, default=300, help="synthetic videos (the demo has 300)")
    parser.add_argument(
        "--two-ranks", action="store_true", help="also time the smaller step on 2 ranks, a core each"
    )
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. model.tiny_llm.hidden_size=256")
    args = parser.parse_args()
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    keep_stdout_for_results()
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    from gpu import init_process_group  # this folder; imports torch, so after the thread setting

    init_process_group(torch.device("cpu"), gpu_backend="nccl")  # gloo on CPU: the backend is not used
    try:
        with tempfile.TemporaryDirectory(prefix="netgpt-model-step-") as tmp:
            lines = _run(Path(tmp), args)
    finally:
        dist.destroy_process_group()
    for line in lines:
        emit(line)
    emit(_summary(lines, args))


def _summary(lines: list[dict], args: argparse.Namespace) -> dict:
    """The summary line: each size's steps added up over the stages (and their ratio with `--two-ranks`)."""
    sizes = ["step_s_1x", "step_s_2x"] + (["step_s_2ranks"] if args.two_ranks else [])
    totals = {size: round(sum(line[size] for line in lines), 6) for size in sizes}
    if args.two_ranks:
        totals["ratio_2ranks_over_2x"] = round(totals["step_s_2ranks"] / totals["step_s_2x"], 3)
    return {
        "bench": "model_step",
        "summary": True,
        "steps": args.steps,
        "videos": args.videos,
        "two_ranks": args.two_ranks,
        "overrides": args.overrides,
        **totals,
    }


def _run(folder: Path, args: argparse.Namespace) -> list[dict]:
    from in_process import build  # this folder

    run = build(folder, args.videos, args.overrides)
    config = run.config
    lines = []
    for stage in config.train.stages:
        per_worker = stage.micro_batch_size
        one, two = (
            _median_step(run, stage, run.batches(seeds), args.steps) for seeds in (per_worker, 2 * per_worker)
        )
        lines.append(
            {
                "bench": "model_step",
                "stage": stage.name,
                "grad_accum": stage.grad_accum,
                "seeds_1x": per_worker,
                "seeds_2x": 2 * per_worker,
                # to the microsecond, so the share can be recomputed from them: rounded to 0.1 ms, steps of
                # about 0.025 s moved it by up to 0.004
                "step_s_1x": round(one, 6),
                "step_s_2x": round(two, 6),
                "arithmetic_share": round(1 - one / two, 3),
            }
        )
    if args.two_ranks:
        on_ranks = _two_rank_steps(folder, args)
        for line in lines:
            line["step_s_2ranks"] = round(on_ranks[line["stage"]], 6)
            line["ratio_2ranks_over_2x"] = round(on_ranks[line["stage"]] / line["step_s_2x"], 3)
    return lines


def _two_rank_steps(folder: Path, args: argparse.Namespace) -> dict[str, float]:
    """Each stage's median step at a demo worker's micro-batch on 2 gloo ranks (2 processes, a core each,
    on `folder`'s data), as rank 0 timed it."""
    import torch.multiprocessing as mp
    from gpu import free_port  # this folder

    result = folder / "two_ranks.json"
    mp.start_processes(
        _rank_steps,
        args=(folder, free_port(), args.overrides, args.steps, result),
        nprocs=2,
        start_method="spawn",
    )
    return json.loads(result.read_text())


def _rank_steps(rank: int, folder: Path, port: int, overrides: list[str], steps: int, result: Path) -> None:
    """One of `_two_rank_steps`'s ranks."""
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    from gpu import init_process_group  # this folder
    from in_process import attach, demo_config  # this folder

    from netgpt.train.cores import bind_worker

    init_process_group(torch.device("cpu"), gpu_backend="nccl", rank=rank, world_size=2, port=port)
    try:
        bind_worker(rank, 2)
        run = attach(demo_config(folder, overrides, world_size=2), folder, world_size=2)
        medians = {
            stage.name: _median_step(run, stage, run.batches(stage.micro_batch_size), steps)
            for stage in run.config.train.stages
        }
    finally:
        dist.destroy_process_group()
    if rank == 0:
        result.write_text(json.dumps(medians))


def _median_step(run, stage, batches: list, steps: int) -> float:
    """The median seconds of `stage`'s step over `batches` in turn, after `WARMUP_STEPS` untimed ones."""
    step = run.stepper(stage, batches)
    times = [step() for _ in range(WARMUP_STEPS + steps)]
    return statistics.median(times[WARMUP_STEPS:])


if __name__ == "__main__":
    main()

"""Benchmark: what asking Ray Train about a node drain costs a step (`train.preemption_check_every`).

Prints ONE JSON line: the mean seconds of `ray.train.get_preemption_info()` (Ray Train's collective, a round
trip through its controller, which the trainer makes every `train.preemption_check_every` optimizer steps)
across `--workers` Ray Train workers on a local Ray, against a gloo all-reduce of two numbers between the same
workers (the baseline: the cheapest collective a step already makes), and their ratio.

    python tools/bench/preemption_check.py [--workers 2] [--calls 300]     # about 20 s on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from results import emit, keep_stdout_for_results  # noqa: E402  (this folder)

WARMUP = 10


def _timed_calls(config: dict) -> None:
    """Every worker: time `calls` of each; rank 0 writes the means as JSON to `config["out"]`."""
    import ray.train
    import torch
    import torch.distributed as dist

    calls = config["calls"]
    for _ in range(WARMUP):
        ray.train.get_preemption_info()
    started = time.perf_counter()
    for _ in range(calls):
        ray.train.get_preemption_info()
    ask_s = (time.perf_counter() - started) / calls
    flags = torch.zeros(2)
    for _ in range(WARMUP):
        dist.all_reduce(flags)
    started = time.perf_counter()
    for _ in range(calls):
        dist.all_reduce(flags)
    all_reduce_s = (time.perf_counter() - started) / calls
    if ray.train.get_context().get_world_rank() == 0:
        Path(config["out"]).write_text(json.dumps({"ask_s": ask_s, "all_reduce_s": all_reduce_s}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="Ray Train workers (1 CPU each)")
    parser.add_argument("--calls", type=int, default=300, help="calls timed of each")
    args = parser.parse_args()
    keep_stdout_for_results()
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    ray.init(num_cpus=max(2, args.workers), include_dashboard=False, log_to_driver=False)
    with tempfile.TemporaryDirectory(prefix="netgpt-preemption-check-") as tmp:
        try:
            TorchTrainer(
                _timed_calls,
                train_loop_config={"calls": args.calls, "out": f"{tmp}/means.json"},
                scaling_config=ScalingConfig(num_workers=args.workers),
                run_config=RunConfig(storage_path=tmp, name="preemption_check"),
            ).fit()
        finally:
            ray.shutdown()
        means = json.loads(Path(tmp, "means.json").read_text())
    ask_s, all_reduce_s = means["ask_s"], means["all_reduce_s"]
    emit(
        {
            "bench": "preemption_check",
            "workers": args.workers,
            "calls": args.calls,
            "get_preemption_info_ms": round(ask_s * 1e3, 3),
            "gloo_all_reduce_ms": round(all_reduce_s * 1e3, 3),
            "ratio": round(ask_s / all_reduce_s, 2),
            "cpus": os.cpu_count(),
        }
    )


if __name__ == "__main__":
    main()

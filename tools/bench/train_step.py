"""Benchmark: optimizer step time of 2-worker DeepSpeed ZeRO-3 against 1 process at the same global batch.

Prints ONE JSON line: both step times (the 1-process run is the baseline measured in the same run), their
ratio (goal <= 1.3), samples/s of each, and the share of step time spent waiting for data (goal < 2 %) in
the 2-worker run and, when a demo run exists under runs/demo, in the demo.

    python tools/bench/train_step.py [--steps 12] [--global-batch 16] [--videos 200]

Step time and data wait are steady-state figures: each stage's first step (the stream's start-up and
ZeRO-3's first trace) is left out and reported apart (`first_step_s_*`).

Both runs train one LLM stage (graph encoder + projector + tiny LLM, answer cross-entropy) of the demo model
on the same synthetic data, through the real path: Ray Train workers, the streaming graph loader, DeepSpeed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from netgpt.config import StageConfig, load_config  # noqa: E402


def _config(folder: Path, workers: int, global_batch: int, steps: int, name: str):
    config = load_config(
        "demo",
        [
            f"data.tables_dir={folder / 'tables'}",
            f"graph.store_dir={folder / 'graph'}",
            f"train.storage_path={folder / 'runs'}",
            f"train.run_name={name}",
            f"train.num_workers={workers}",
            "train.val_every_epoch=false",
            f"train.checkpoint_every={10 * steps}",
            "train.log_every=1000000",
        ],
    )
    config.train.stages = [
        StageConfig(
            name="align",
            trainable=["projector", "llm"],
            losses={"answer_ce": 1.0},
            epochs=20,
            max_steps=steps,
            lr=1e-3,
            micro_batch_size=global_batch // workers,
        )
    ]
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--global-batch", type=int, default=16)
    parser.add_argument("--videos", type=int, default=200)
    args = parser.parse_args()

    import ray

    ray.init(address="local", num_cpus=8, include_dashboard=False, log_to_driver=False)
    with tempfile.TemporaryDirectory(prefix="netgpt-bench-") as tmp:
        results = _run(Path(tmp), args)
    ray.shutdown()
    _report(results, args)


def _run(folder: Path, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Data, graph store, then the 1-process and the 2-worker run, in `folder`."""
    from netgpt.data.prepare import prepare
    from netgpt.data.synthetic import write_synthetic
    from netgpt.graph.build import build_graph
    from netgpt.train.run import train

    base = _config(folder, 1, args.global_batch, args.steps, "one")
    raw = write_synthetic(folder / "raw.json", videos=args.videos, seed=0)
    prepare(raw, folder / "tables", base.data)
    build_graph(folder / "tables", base.graph, folder / "graph")

    results = {}
    for workers, name in ((1, "one"), (2, "two")):
        started = time.perf_counter()
        config = _config(folder, workers, args.global_batch, args.steps, name)
        metrics = train(config, show_progress=False, evaluate_test=False).metrics
        results[name] = {**metrics, "wall_s": time.perf_counter() - started}
    return results


def _report(results: dict[str, dict[str, float]], args: argparse.Namespace) -> None:
    demo_metrics = REPO / "runs" / "demo" / "ray" / "netgpt" / "final_metrics.json"
    demo_wait = None
    if demo_metrics.is_file():
        demo_wait = json.loads(demo_metrics.read_text())["run/data_wait_share"]
    one, two = results["one"], results["two"]
    print(
        json.dumps(
            {
                "bench": "train_step",
                "global_batch": args.global_batch,
                "steps": args.steps,
                "step_s_1proc": round(one["run/step_s"], 4),
                "step_s_2workers_zero3": round(two["run/step_s"], 4),
                "ratio_2workers_over_1proc": round(two["run/step_s"] / one["run/step_s"], 3),
                "samples_per_s_1proc": round(one["run/samples_per_s"], 2),
                "samples_per_s_2workers": round(two["run/samples_per_s"], 2),
                "data_wait_share_1proc": round(one["run/data_wait_share"], 4),
                "data_wait_share_2workers": round(two["run/data_wait_share"], 4),
                "data_wait_share_demo": None if demo_wait is None else round(demo_wait, 4),
                "first_step_s_1proc": round(one["run/first_steps_s"], 2),
                "first_step_s_2workers": round(two["run/first_steps_s"], 2),
                "goals": {"ratio": 1.3, "data_wait_share": 0.02},
                "wall_s": {k: round(v["wall_s"], 1) for k, v in results.items()},
            }
        )
    )


if __name__ == "__main__":
    main()

"""Benchmark: where each stage's optimizer step goes; 2-worker ZeRO-3 against 1 process at one global batch.

Prints ONE JSON line per stage of the demo curriculum (graph_pretrain, alignment, finetune), then one summary
line. A stage's line has the 2-worker run's mean seconds per step in each phase (`netgpt.train.profile`):
`data_wait` (sampling and transfer not hidden by the prefetch), `encoder_forward`, `llm_forward`,
`other_forward`, `backward`, `optimizer`, `idle` (the rest), plus `collectives_s` (time inside
`torch.distributed` calls, overlapping the phases), `collectives` (calls per step, by kind in
`collectives_by_kind`) and `collective_mb` (megabytes they carry a step, by kind in `collective_mb_by_kind`;
the 1-process run's in `collective_mb_1proc`); its first step (the stream's start-up and ZeRO-3's first
trace) apart; the median and the slowest step (one stall, such as a Ray worker process starting on a busy
machine, moves a mean of a dozen steps far); and the 1-process run's step time at the same global batch with
the ratio of means (goal <= 1.0) and of medians.

    python tools/bench/train_step.py [--steps 12] [--videos 300] [KEY=VALUE ...]   # 57 s on 2 cores

Both runs go through the real path: a local Ray, Ray Train workers, the streaming graph loader, DeepSpeed
ZeRO-3 on gloo; the demo's model and curriculum on synthetic data, each stage cut to `--steps` steps and
its stream to the whole epochs those steps need, validation and test left out. The profile is on
(`NETGPT_STEP_PROFILE=1` in the workers' environment) in both runs; it adds no device sync on CPU, only
clock reads and counters. The 1-process run's phases are in `phases_1proc`. `cores_2workers` and
`cores_1proc` say which processes used the machine's cores while the stage's steps ran (`process_cpu.py`:
the Train workers, the sampler actors, the read tasks, Ray's daemons and other actors, this driver, the
rest), with their `total`: on 2 cores what the data path and Ray take is what two workers lose.
`worker_cpu_s_per_step_2workers` is the CPU a step costs one of the two workers (the 1-process run's in
`worker_cpu_s_per_step_1proc`), and `ratio_with_a_core_each` that over the 1-process step: the ratio two
workers would reach with a whole core each and no wait for each other, the data path and Ray free.
`cpu_s_per_step_2workers` is the CPU a 2-worker step costs the whole machine, every process counted (the
1-process run's in `cpu_s_per_step_1proc`), and `ratio_floor_on_these_cores` that spread over the
machine's cores (`machine_cores`) with none idle, over the 1-process step: the least ratio any scheduling
of that work could reach here (also in the summary, the stages weighted by their steps). What the ratio
is above its floor is scheduling (a worker waiting for the other, a core idle); the floor itself moves only
with the CPU a step costs.
The summary's `cores_bound_per_worker_2workers` says how many cores each of the two workers was bound to
(`train.bind_cores`; `train.bind_cores=false` as an override compares without).

The ratio moves by up to ±0.07 from run to run on 2 cores, and the machine's pace from hour to hour.
`--rounds N` runs the pair N times, alternated, on the same data (1 process, 2 workers, 1 process, ...):
every round prints its lines (`"round"`), then one line has each round's ratio with their mean, least and
greatest, overall and by stage, and the same of each round's floor.

    python tools/bench/train_step.py --steps 200 --rounds 3    # about two minutes a round on 2 cores
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # process_cpu.py and results.py, beside this file

from process_cpu import ProcessCpu  # noqa: E402
from results import emit, keep_stdout_for_results  # noqa: E402

from netgpt.config import load_config  # noqa: E402
from netgpt.train.profile import ENV  # noqa: E402

PHASES = (
    "data_wait",
    "encoder_forward",
    "llm_forward",
    "other_forward",
    "backward",
    "optimizer",
    "idle",
    "collectives",
)
GOALS = {"step_s_graph_pretrain": 0.3, "first_step_wait_s": 5.0, "ratio_2workers_over_1proc": 1.0}


def _config(folder: Path, workers: int, steps: int, name: str, overrides: list[str]):
    """The demo curriculum on `workers` workers at the demo's global batch, each stage cut to `steps`."""
    config = load_config(
        "demo",
        [
            *overrides,
            f"data.tables_dir={folder / 'tables'}",
            f"graph.store_dir={folder / 'graph'}",
            f"train.storage_path={folder / 'runs'}",
            f"train.run_name={name}",
            f"train.num_workers={workers}",
            "train.val_every_epoch=false",
            f"train.checkpoint_every={10 * steps * 3}",
            "train.log_every=1000000",
        ],
    )
    demo_workers = load_config("demo").train.num_workers
    for stage in config.train.stages:
        stage.max_steps = steps
        stage.micro_batch_size = stage.micro_batch_size * demo_workers // workers
    return config


def _fit_epochs(config, steps: int) -> None:
    """Each stage's stream as long as its `steps` need (whole epochs), as in a run its epochs end: a stream
    samples ahead of its consumer within its buffer, so one of 50 epochs under 12 steps (this bench's
    earlier setting) kept the sampler actors busy through every step with batches nobody read."""
    from netgpt.graph.loader import num_batches_per_rank

    workers = config.train.num_workers
    for stage in config.train.stages:
        per_step = stage.grad_accum * workers
        per_epoch = workers * num_batches_per_rank(
            config.graph.store_dir, "train", stage.micro_batch_size, workers, per_step
        )
        stage.epochs = -(-steps * per_step // per_epoch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps per stage (first one apart)")
    parser.add_argument("--videos", type=int, default=300, help="synthetic videos (the demo has 300)")
    parser.add_argument("--rounds", type=int, default=1, help="pairs of runs, alternated (default 1)")
    parser.add_argument(
        "overrides", nargs="*", help="config overrides for both runs, e.g. graph.fanouts=[5,5]"
    )
    args = parser.parse_args()
    if args.steps < 3:
        parser.error("--steps must be at least 3 (each stage's first step is reported apart)")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    keep_stdout_for_results()  # `prepare`'s summary table and Ray print to stdout too

    import ray

    ray.init(
        address="local",
        num_cpus=8,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {ENV: "1"}},
    )
    with tempfile.TemporaryDirectory(prefix="netgpt-bench-") as tmp:
        rounds = _run(Path(tmp), args)
    ray.shutdown()
    for number, results in enumerate(rounds, 1):
        _report(results, args, number)
    if len(rounds) > 1:
        emit(_rounds_line(rounds))


def _run(folder: Path, args: argparse.Namespace) -> list[dict[str, dict[str, float]]]:
    """Data, graph store, then each round's 1-process and 2-worker run, in `folder` (a run folder each)."""
    from netgpt.data.prepare import prepare
    from netgpt.data.synthetic import write_synthetic
    from netgpt.graph.build import build_graph
    from netgpt.train.run import train

    base = _config(folder, 1, args.steps, "one", args.overrides)
    raw = write_synthetic(folder / "raw.json", videos=args.videos, seed=0)
    prepare(raw, folder / "tables", base.data)
    build_graph(folder / "tables", base.graph, folder / "graph")

    rounds = []
    for number in range(1, args.rounds + 1):
        results = {}
        for workers, name in ((1, "one"), (2, "two")):
            started = time.perf_counter()
            config = _config(folder, workers, args.steps, f"{name}{number}", args.overrides)
            _fit_epochs(config, args.steps)
            with ProcessCpu() as cpu:
                metrics = train(config, show_progress=False, evaluate_test=False).metrics
            wall_s = time.perf_counter() - started
            results[name] = {**metrics, **_stage_cores(cpu, metrics), "wall_s": wall_s}
        rounds.append(results)
    return rounds


def _stage_cores(cpu: ProcessCpu, metrics: dict[str, float]) -> dict[str, dict[str, float]]:
    """`cores/<stage>`: the cores each kind of process used while the stage's profiled steps ran."""
    cores = {}
    for stage in load_config("demo").train.stages:
        prefix = f"profile/{stage.name}/"
        if f"{prefix}window_start_unix" in metrics:
            window = metrics[f"{prefix}window_start_unix"], metrics[f"{prefix}window_end_unix"]
            cores[f"cores/{stage.name}"] = cpu.cores(*window)
    return cores


def _stage_line(stage: str, one: dict[str, float], two: dict[str, float]) -> dict:
    prefix = f"profile/{stage}/"
    step_two, step_one = two[f"{prefix}step_s"], one[f"{prefix}step_s"]
    line = {
        "bench": "train_step",
        "stage": stage,
        "steps_profiled": int(two[f"{prefix}steps"]),
        "step_s_2workers_zero3": round(step_two, 4),
        "step_s_1proc": round(step_one, 4),
        "ratio_2workers_over_1proc": round(_ratio(one, two, f"{prefix}step_s"), 3),
        # a mean hides whether every step is slow or one stalled (a Ray worker process starting on 2 cores)
        "step_median_s_2workers": round(two[f"{prefix}step_median_s"], 4),
        "step_median_s_1proc": round(one[f"{prefix}step_median_s"], 4),
        "ratio_of_medians": round(_ratio(one, two, f"{prefix}step_median_s"), 3),
        "step_max_s_2workers": round(two[f"{prefix}step_max_s"], 4),
    }
    line.update({f"{phase}_s": round(two.get(f"{prefix}{phase}_s", 0.0), 4) for phase in PHASES})
    line["phases_1proc"] = {phase: round(one.get(f"{prefix}{phase}_s", 0.0), 4) for phase in PHASES}
    line["collectives"] = round(two.get(f"{prefix}collectives", 0.0), 1)
    line["collectives_by_kind"] = _by_kind(two, f"{prefix}collectives/", 1)
    line["collective_mb"] = round(two.get(f"{prefix}collective_mb", 0.0), 3)
    line["collective_mb_by_kind"] = _by_kind(two, f"{prefix}collective_mb/", 3)
    line["collective_mb_1proc"] = round(one.get(f"{prefix}collective_mb", 0.0), 3)
    line["first_step_s_2workers"] = round(two[f"{prefix}first_step_s"], 2)
    line["first_step_wait_s_2workers"] = round(two[f"{prefix}first_step_wait_s"], 2)
    line["first_step_s_1proc"] = round(one[f"{prefix}first_step_s"], 2)
    line["torch_threads"] = int(two.get(f"{prefix}torch_threads", 0))
    line["cores_2workers"] = two.get(f"cores/{stage}", {})
    line["cores_1proc"] = one.get(f"cores/{stage}", {})
    if line["cores_2workers"] and line["cores_1proc"]:
        # CPU seconds a step costs one worker (cores used x seconds per step): with a core each and no
        # wait for the other, two workers' step could take no less, whatever the data path and Ray cost
        worker_cpu_two = line["cores_2workers"]["train_workers"] * step_two / 2
        line["worker_cpu_s_per_step_2workers"] = round(worker_cpu_two, 4)
        line["worker_cpu_s_per_step_1proc"] = round(line["cores_1proc"]["train_workers"] * step_one, 4)
        line["ratio_with_a_core_each"] = round(worker_cpu_two / step_one, 3)
        # CPU seconds a step costs the whole machine, every process counted
        line["cpu_s_per_step_2workers"] = round(line["cores_2workers"]["total"] * step_two, 4)
        line["cpu_s_per_step_1proc"] = round(line["cores_1proc"]["total"] * step_one, 4)
        line["ratio_floor_on_these_cores"] = round(_floor(one, two, [stage]), 3)
    return line


def _floor(one: dict[str, float], two: dict[str, float], stages: list[str]) -> float | None:
    """The least ratio two workers could reach on this machine's cores with the CPU their steps cost: that
    CPU (every process's) spread over every core without a moment idle, against the 1-process step, over
    `stages` weighted by their steps as the summary's ratio of means is; None where a stage's cores were not
    measured. Above 1, no scheduling of the same work beats one process; only a step that costs less CPU
    can."""
    cpu_two = step_one = 0.0
    for stage in stages:
        prefix, cores = f"profile/{stage}/", two.get(f"cores/{stage}")
        if not cores or not one.get(f"cores/{stage}"):
            return None
        steps = two[f"{prefix}steps"]
        cpu_two += cores["total"] * two[f"{prefix}step_s"] * steps
        step_one += one[f"{prefix}step_s"] * steps
    return cpu_two / ((os.cpu_count() or 1) * step_one)


def _ratio(one: dict[str, float], two: dict[str, float], key: str) -> float:
    """The 2-worker run's figure `key` over the 1-process run's: the step-time ratios of each round's lines
    and of the rounds' line alike."""
    return two[key] / one[key]


def _by_kind(metrics: dict[str, float], prefix: str, digits: int) -> dict[str, float]:
    """The figures under `prefix` (one per collective kind), keyed by the kind."""
    return {
        key[len(prefix) :]: round(value, digits) for key, value in metrics.items() if key.startswith(prefix)
    }


def _report(results: dict[str, dict[str, float]], args: argparse.Namespace, number: int = 1) -> None:
    """One round's lines: a line per stage, then its summary."""
    one, two = results["one"], results["two"]
    stages = [stage.name for stage in load_config("demo").train.stages]
    for stage in stages:
        emit({**_stage_line(stage, one, two), "round": number})
    floor = _floor(one, two, stages)
    emit(
        {
            "bench": "train_step",
            "summary": True,
            "round": number,
            "steps_per_stage": args.steps,
            "videos": args.videos,
            "overrides": args.overrides,
            "step_s_1proc": round(one["run/step_s"], 4),
            "step_s_2workers_zero3": round(two["run/step_s"], 4),
            "ratio_2workers_over_1proc": round(_ratio(one, two, "run/step_s"), 3),
            "ratio_floor_on_these_cores": None if floor is None else round(floor, 3),
            "machine_cores": os.cpu_count(),
            "data_wait_share_2workers": round(two["run/data_wait_share"], 4),
            "first_steps_s_2workers": round(two["run/first_steps_s"], 2),
            "cores_bound_per_worker_2workers": int(two.get("run/cores_bound", 0)),
            "goals": GOALS,
            "wall_s": {k: round(v["wall_s"], 1) for k, v in results.items()},
            "load_avg_1m": round(os.getloadavg()[0], 2),
        }
    )


def _spread(ratios: list[float]) -> dict:
    """The ratios of the rounds in their order, and their mean, least and greatest."""
    return {
        "each": [round(r, 3) for r in ratios],
        "mean": round(statistics.mean(ratios), 3),
        "least": round(min(ratios), 3),
        "greatest": round(max(ratios), 3),
    }


def _rounds_line(rounds: list[dict[str, dict[str, float]]]) -> dict:
    """Each round's ratio of means (2 workers over 1 process), overall and by stage, and their spread."""
    stages = [stage.name for stage in load_config("demo").train.stages]
    by_stage = {
        stage: _spread([_ratio(r["one"], r["two"], f"profile/{stage}/step_s") for r in rounds])
        for stage in stages
    }
    overall = [_ratio(r["one"], r["two"], "run/step_s") for r in rounds]
    line = {
        "bench": "train_step",
        "rounds": len(rounds),
        "ratio_2workers_over_1proc": _spread(overall),
        "by_stage": by_stage,
    }
    floors = [_floor(r["one"], r["two"], stages) for r in rounds]
    if None not in floors:
        line["ratio_floor_on_these_cores"] = _spread(floors)
    return line


if __name__ == "__main__":
    main()

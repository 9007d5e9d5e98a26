"""tools/bench/train_step.py's figures from its two runs' metrics, without running them (two Ray runs take
minutes): the metrics come from real `StepProfile`s named as the Train workers name them, so a figure the
profile renames or drops breaks here, and each ratio is checked against the numbers it is made of."""

from __future__ import annotations

import json
import os
from argparse import Namespace

import pytest

from netgpt.config import load_config
from netgpt.train.profile import StepProfile


@pytest.fixture(scope="module")
def bench(load_bench):
    """The bench as a module (it puts its own folder on `sys.path` for process_cpu and results)."""
    return load_bench("train_step.py")


def _run_metrics(step_s: float, backward_s: float, all_reduces: int, workers_cores: float) -> dict:
    """A run's metrics as `train()` returns them: each stage's profile under `profile/<stage>/`, the first
    step apart, and the cores of each kind of process (what `_stage_cores` adds)."""
    metrics = {"run/step_s": step_s, "run/data_wait_share": 0.01, "run/first_steps_s": 3.0}
    for stage in load_config("demo").train.stages:
        profile = StepProfile()
        for stall in (0.0, 0.0, 2 * step_s):  # the third step stalls: the mean moves, the median not
            profile.begin_step()
            profile.seconds["forward"] += step_s / 4
            profile.seconds["backward"] += backward_s
            profile.collectives["all_reduce"] += all_reduces
            profile.collectives["all_gather_into_tensor"] += 1
            profile.collective_bytes["all_reduce"] += 4_000 * all_reduces
            profile.collective_bytes["all_gather_into_tensor"] += 2_000_000
            profile.end_step(wait_s=0.0, step_s=step_s + stall)
        prefix = f"profile/{stage.name}/"
        metrics.update({prefix + key: value for key, value in profile.figures().items()})
        metrics[f"{prefix}first_step_s"], metrics[f"{prefix}first_step_wait_s"] = 4.0, 1.5
        metrics[f"cores/{stage.name}"] = {
            "train_workers": workers_cores,
            "ray_daemons": 0.1,
            "total": workers_cores + 0.1,
            "idle": 0.2,
        }
    return metrics


def test_a_stage_line_compares_the_two_runs_from_their_profiles(bench) -> None:
    one = _run_metrics(step_s=0.04, backward_s=0.01, all_reduces=4, workers_cores=0.9)
    two = _run_metrics(step_s=0.06, backward_s=0.02, all_reduces=6, workers_cores=1.5)
    line = bench._stage_line("alignment", one, two)
    assert (line["bench"], line["stage"], line["steps_profiled"]) == ("train_step", "alignment", 3)
    mean_two, mean_one = 0.06 * 5 / 3, 0.04 * 5 / 3  # two steps of s and one of 3 s
    assert line["step_s_2workers_zero3"] == pytest.approx(mean_two, abs=1e-4)
    assert line["step_s_1proc"] == pytest.approx(mean_one, abs=1e-4)
    assert line["ratio_2workers_over_1proc"] == pytest.approx(1.5, abs=1e-3)
    assert (line["step_median_s_2workers"], line["step_median_s_1proc"]) == (0.06, 0.04)
    assert line["step_max_s_2workers"] == pytest.approx(0.18)
    assert line["ratio_of_medians"] == pytest.approx(1.5, abs=1e-3)
    assert line["backward_s"] == 0.02 and line["phases_1proc"]["backward"] == 0.01
    assert set(line["phases_1proc"]) == set(bench.PHASES)
    assert line["collectives"] == 7 and line["collectives_by_kind"] == {
        "all_reduce": 6,
        "all_gather_into_tensor": 1,
    }
    # megabytes a step: 4 kB an all-reduce and a 2 MB gather; the 1-process run's apart
    assert line["collective_mb"] == 2.024 and line["collective_mb_by_kind"] == {
        "all_reduce": 0.024,
        "all_gather_into_tensor": 2.0,
    }
    assert line["collective_mb_1proc"] == 2.016
    assert (line["first_step_s_2workers"], line["first_step_wait_s_2workers"]) == (4.0, 1.5)
    assert line["cores_2workers"]["train_workers"] == 1.5 and line["cores_1proc"]["train_workers"] == 0.9
    # a worker's CPU a step: its share of the workers' cores over the step
    assert line["worker_cpu_s_per_step_2workers"] == pytest.approx(1.5 * mean_two / 2, abs=1e-4)
    assert line["worker_cpu_s_per_step_1proc"] == pytest.approx(0.9 * mean_one, abs=1e-4)
    assert line["ratio_with_a_core_each"] == pytest.approx(1.5 * mean_two / 2 / mean_one, abs=1e-3)
    # the machine's CPU a step, every process counted, and the 2-worker step's on every core over the other's
    assert line["cpu_s_per_step_2workers"] == pytest.approx(1.6 * mean_two, abs=1e-4)
    assert line["cpu_s_per_step_1proc"] == pytest.approx(1.0 * mean_one, abs=1e-4)
    floor = 1.6 * mean_two / (os.cpu_count() * mean_one)
    assert line["ratio_floor_on_these_cores"] == pytest.approx(floor, abs=1e-3)


def test_a_stage_without_the_cores_has_no_cpu_figures(bench) -> None:
    one = _run_metrics(step_s=0.04, backward_s=0.01, all_reduces=4, workers_cores=0.9)
    two = _run_metrics(step_s=0.06, backward_s=0.02, all_reduces=6, workers_cores=1.5)
    del two["cores/finetune"]
    line = bench._stage_line("finetune", one, two)
    assert line["cores_2workers"] == {} and "ratio_with_a_core_each" not in line
    assert "ratio_floor_on_these_cores" not in line
    assert bench._floor(one, two, ["alignment", "finetune"]) is None


def test_the_report_is_a_line_per_demo_stage_then_the_summary(bench, capsys) -> None:
    results = {
        "one": {**_run_metrics(0.04, 0.01, 4, 0.9), "wall_s": 50.0},
        "two": {**_run_metrics(0.05, 0.02, 6, 1.5), "run/cores_bound": 1.0, "wall_s": 60.0},
    }
    bench._report(results, Namespace(steps=200, videos=300, overrides=["graph.fanouts=[5,5]"]))
    *stages, summary = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["stage"] for line in stages] == [stage.name for stage in load_config("demo").train.stages]
    assert summary["summary"] is True and summary["ratio_2workers_over_1proc"] == 1.25
    assert (summary["steps_per_stage"], summary["videos"]) == (200, 300)
    assert summary["overrides"] == ["graph.fanouts=[5,5]"]
    assert summary["wall_s"] == {"one": 50.0, "two": 60.0} and summary["goals"] == bench.GOALS
    assert summary["cores_bound_per_worker_2workers"] == 1
    # every stage at 0.05 s on 1.6 cores against 0.04 s: the stages' steps weigh alike
    assert summary["machine_cores"] == os.cpu_count()
    assert summary["ratio_floor_on_these_cores"] == pytest.approx(
        1.6 * 0.05 / (os.cpu_count() * 0.04), abs=1e-3
    )


def _round(step_one: float, step_two: float) -> dict[str, dict]:
    """One round's two runs, 1 process and 2 workers, at these seconds a step."""
    one = {**_run_metrics(step_one, 0.01, 4, 0.9), "wall_s": 50.0}
    two = {**_run_metrics(step_two, 0.02, 6, 1.5), "wall_s": 60.0}
    return {"one": one, "two": two}


def test_each_round_is_reported_then_their_spread(bench, capsys) -> None:
    rounds = [_round(0.04, 0.05), _round(0.05, 0.045)]
    for number, results in enumerate(rounds, 1):
        bench._report(results, Namespace(steps=200, videos=300, overrides=[]), number)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    stages = [stage.name for stage in load_config("demo").train.stages]
    assert [line["round"] for line in lines] == [1] * (len(stages) + 1) + [2] * (len(stages) + 1)
    assert [line["ratio_2workers_over_1proc"] for line in lines if line.get("summary")] == [1.25, 0.9]

    spread = bench._rounds_line(rounds)
    assert spread["rounds"] == 2
    overall = spread["ratio_2workers_over_1proc"]
    assert overall == {"each": [1.25, 0.9], "mean": 1.075, "least": 0.9, "greatest": 1.25}
    # a stage's ratio is of its mean steps (each run's third step stalls at three times the others)
    assert list(spread["by_stage"]) == stages
    assert all(spread["by_stage"][stage]["each"] == [1.25, 0.9] for stage in stages)
    floors = [1.6 * 0.05 / (os.cpu_count() * 0.04), 1.6 * 0.045 / (os.cpu_count() * 0.05)]
    assert spread["ratio_floor_on_these_cores"]["each"] == pytest.approx(floors, abs=1e-3)

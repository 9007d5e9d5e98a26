"""tools/bench/model_step.py at its smallest (60 videos, 1 timed step), so the bench docs/step-time.md quotes
cannot rot: stdout is its JSON lines only, one per stage of the demo curriculum with both sizes timed in one
process and the smaller on 2 ranks, and a summary that adds them up."""

from __future__ import annotations

from argparse import Namespace

import pytest

from netgpt.config import load_config


@pytest.mark.timeout(300)
def test_each_stage_is_timed_at_a_workers_micro_batch_and_at_twice_it(run_bench):
    *stages, summary = run_bench("model_step.py", "--steps", "1", "--videos", "60", "--two-ranks")
    demo = load_config("demo").train.stages
    assert [line["stage"] for line in stages] == [stage.name for stage in demo]
    for line, stage in zip(stages, demo, strict=True):
        assert line["bench"] == "model_step" and line["grad_accum"] == stage.grad_accum
        assert (line["seeds_1x"], line["seeds_2x"]) == (stage.micro_batch_size, 2 * stage.micro_batch_size)
        assert 0 < line["step_s_1x"] < 10 and 0 < line["step_s_2x"] < 10, line
        assert line["arithmetic_share"] == pytest.approx(1 - line["step_s_1x"] / line["step_s_2x"], abs=2e-3)
        assert 0 < line["step_s_2ranks"] < 10, line
        assert line["ratio_2ranks_over_2x"] == pytest.approx(
            line["step_s_2ranks"] / line["step_s_2x"], abs=2e-3
        )
    assert summary["summary"] is True and (summary["steps"], summary["videos"]) == (1, 60)
    assert summary["two_ranks"] is True
    for size in ("step_s_1x", "step_s_2x", "step_s_2ranks"):
        assert summary[size] == pytest.approx(sum(line[size] for line in stages), abs=1e-3)
    assert summary["ratio_2ranks_over_2x"] == pytest.approx(
        summary["step_s_2ranks"] / summary["step_s_2x"], abs=2e-3
    )


def test_without_two_ranks_the_summary_adds_up_the_one_process_sizes_only(load_bench):
    bench = load_bench("model_step.py")
    lines = [{"step_s_1x": 0.02, "step_s_2x": 0.025}, {"step_s_1x": 0.05, "step_s_2x": 0.06}]
    args = Namespace(steps=60, videos=300, overrides=[], two_ranks=False)
    summary = bench._summary(lines, args)
    assert summary["two_ranks"] is False
    assert (summary["step_s_1x"], summary["step_s_2x"]) == (0.07, 0.085)
    assert "step_s_2ranks" not in summary and "ratio_2ranks_over_2x" not in summary

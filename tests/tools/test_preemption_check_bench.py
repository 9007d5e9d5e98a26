"""tools/bench/preemption_check.py with few calls, so the figure `train.preemption_check_every`'s docs quote
cannot rot: stdout is one JSON line with both means measured on 2 Ray Train workers and their ratio."""

from __future__ import annotations

import pytest


@pytest.mark.timeout(240)
def test_asking_about_a_drain_is_timed_against_an_all_reduce(run_bench):
    [line] = run_bench("preemption_check.py", "--workers", "2", "--calls", "20")
    assert (line["bench"], line["workers"], line["calls"]) == ("preemption_check", 2, 20)
    ask, all_reduce = line["get_preemption_info_ms"], line["gloo_all_reduce_ms"]
    assert ask > 0 and all_reduce > 0
    assert line["ratio"] == pytest.approx(ask / all_reduce, rel=0.02)

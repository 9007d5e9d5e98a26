"""tools/bench/preemption_check.py with few calls, so the figure `train.preemption_check_every`'s docs quote
cannot rot: stdout is one JSON line with both means measured on 2 Ray Train workers and their ratio."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tools" / "bench" / "preemption_check.py"


@pytest.mark.timeout(240)
def test_asking_about_a_drain_is_timed_against_an_all_reduce():
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--workers", "2", "--calls", "20"],
        capture_output=True,
        text=True,
        timeout=200,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    [line] = [json.loads(text) for text in done.stdout.splitlines()]  # stdout is the JSON line only
    assert (line["bench"], line["workers"], line["calls"]) == ("preemption_check", 2, 20)
    ask, all_reduce = line["get_preemption_info_ms"], line["gloo_all_reduce_ms"]
    assert ask > 0 and all_reduce > 0
    assert line["ratio"] == pytest.approx(ask / all_reduce, rel=0.02)

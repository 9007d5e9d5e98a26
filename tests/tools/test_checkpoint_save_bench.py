"""tools/bench/checkpoint_save.py at its smallest (1 decoder layer, 40 videos), so the bench that
docs/checkpoints.md quotes cannot rot: stdout is one JSON line whose figures agree with one another, and the
checkpoints it writes are gone when it ends."""

from __future__ import annotations

import pytest


@pytest.mark.timeout(240)
def test_both_writes_are_measured_and_their_files_removed(run_bench, tmp_path):
    [line] = run_bench("checkpoint_save.py", "--layers", "1", "--videos", "40", "--dir", str(tmp_path))
    assert line["bench"] == "checkpoint_save" and line["params"] > 0
    assert 0 < line["best_gb"] < line["checkpoint_gb"]  # a best leaves AdamW's moments out
    in_place, background = line["stall_s_in_place"], line["stall_s_background"]
    assert in_place > 0 and background > 0
    assert line["stall_ratio"] == pytest.approx(background / in_place, abs=0.01)
    assert line["background_write_s"] >= background and line["steps_beside_write"] >= 0
    assert line["cost_ratio"] == pytest.approx(line["cost_s_background"] / in_place, abs=0.01)
    assert line["best_stall_s_in_place"] > 0 and line["best_stall_s_background"] > 0
    assert list(tmp_path.iterdir()) == []

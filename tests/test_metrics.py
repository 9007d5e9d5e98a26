import numpy as np
import pytest

from netgpt.metrics import compute_metrics, format_table


def test_perfect_predictions_score_full_marks():
    m = compute_metrics([0, 3, 9], [0.2, 2.6, 9.4])
    assert m.acc == 1.0 and m.within_one == 1.0 and m.macro_f1 == 1.0
    assert m.mae == pytest.approx((0.2 + 0.4 + 0.4) / 3)
    assert m.mse == pytest.approx((0.04 + 0.16 + 0.16) / 3)


def test_rounding_clips_to_the_level_range_but_errors_use_unrounded_values():
    m = compute_metrics([9, 0], [11.0, -2.0])
    assert m.acc == 1.0
    assert m.mae == pytest.approx(2.0)
    assert m.confusion[9, 9] == 1 and m.confusion[0, 0] == 1


def test_unparsable_answers_are_counted_and_scored_as_worst():
    m = compute_metrics([2, 7, 4], [2.0, None, float("nan")])
    assert m.unparsable == 2
    assert m.acc == pytest.approx(1 / 3)
    assert m.mae == pytest.approx((0 + 7 + 5) / 3)
    assert m.confusion.sum() == 1


def test_macro_f1_and_within_one():
    m = compute_metrics([1, 1, 2, 2], [1, 2, 2, 4])
    assert m.within_one == pytest.approx(3 / 4)
    f1_level1 = 2 * 1 / (1 + 2)
    f1_level2 = 2 * 1 / (2 + 2)
    f1_level4 = 0.0
    assert m.macro_f1 == pytest.approx((f1_level1 + f1_level2 + f1_level4) / 3)


def test_per_platform_breakdown_and_table():
    m = compute_metrics([1, 2, 3], [1, 0, 3], ["抖音", "快手", "抖音"])
    assert m.by_platform["抖音"].acc == 1.0 and m.by_platform["快手"].acc == 0.0
    scalars = m.scalars("val/")
    assert scalars["val/快手/mae"] == 2.0
    assert "graph" in format_table({"graph": m})
    assert np.isnan(compute_metrics([], []).acc)


def test_bad_input_names_the_problem():
    with pytest.raises(ValueError, match="equal lengths"):
        compute_metrics([1], [1.0, 2.0])
    with pytest.raises(ValueError, match="levels 0-9"):
        compute_metrics([10], [1.0])


def test_halves_round_to_the_even_level():
    """ACC's rounding rule (docs/evaluate.md): numpy's round half to even, after clipping to 0-9."""
    m = compute_metrics([2, 4, 0, 8], [2.5, 3.5, 0.5, 8.5])
    assert m.acc == 1.0
    assert compute_metrics([3], [2.5]).acc == 0.0 and compute_metrics([9], [9.5]).acc == 1.0

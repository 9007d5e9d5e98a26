"""The metrics (docs/evaluate.md), shared by training (validation, test) and evaluation.

Predictions are continuous levels (a regression head's 9·sigmoid, or a number parsed from a generated answer);
`None` is an unparsable answer. ACC rounds the clipped prediction (halves to the even level: 2.5 -> 2,
3.5 -> 4); MSE and MAE use the unrounded value.
Unparsable answers are counted and scored as wrong with the worst error they could have (the level farthest
from the truth), so that a model cannot improve its MAE by refusing to answer.

    m = compute_metrics([3, 1], [2.6, None], ["抖音", "快手"])
    m.acc, m.mae, m.unparsable, m.by_platform["抖音"].acc
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from netgpt.data.schema import MAX_LEVEL, NUM_LEVELS


@dataclass
class Metrics:
    """Scores of one set of predictions (see the module docstring for the rules)."""

    count: int
    acc: float
    mse: float
    mae: float
    macro_f1: float
    within_one: float
    unparsable: int
    confusion: np.ndarray
    """`confusion[true, predicted]` counts over levels 0-9 (unparsable answers are left out of it)."""
    by_platform: dict[str, Metrics] = field(default_factory=dict)

    def scalars(self, prefix: str = "") -> dict[str, float]:
        """Flat `{name: value}` of the headline figures (and per platform), for logs and TensorBoard."""
        out = {
            f"{prefix}acc": self.acc,
            f"{prefix}mse": self.mse,
            f"{prefix}mae": self.mae,
            f"{prefix}macro_f1": self.macro_f1,
            f"{prefix}within_one": self.within_one,
            f"{prefix}unparsable": float(self.unparsable),
            f"{prefix}count": float(self.count),
        }
        for platform, sub in self.by_platform.items():
            out.update(
                {f"{prefix}{platform}/{k}": v for k, v in sub.scalars().items() if k in ("acc", "mae")}
            )
        return out


def _macro_f1(confusion: np.ndarray) -> float:
    """F1 averaged over the levels that occur in the truth or in the predictions."""
    true_pos = np.diag(confusion).astype(float)
    predicted = confusion.sum(axis=0).astype(float)
    actual = confusion.sum(axis=1).astype(float)
    present = (predicted + actual) > 0
    if not present.any():
        return 0.0
    denominator = predicted + actual
    f1 = np.divide(2 * true_pos, denominator, out=np.zeros_like(true_pos), where=denominator > 0)
    return float(f1[present].mean())


def _score(truth: np.ndarray, pred: np.ndarray, parsed: np.ndarray) -> Metrics:
    count = len(truth)
    if count == 0:
        nan = float("nan")
        return Metrics(0, nan, nan, nan, nan, nan, 0, np.zeros((NUM_LEVELS, NUM_LEVELS), dtype=np.int64))
    worst = np.where(truth >= NUM_LEVELS / 2, 0.0, float(MAX_LEVEL))
    value = np.where(parsed, pred, worst)
    rounded = np.rint(np.clip(value, 0, MAX_LEVEL)).astype(np.int64)
    correct = (rounded == truth) & parsed
    error = value - truth
    confusion = np.zeros((NUM_LEVELS, NUM_LEVELS), dtype=np.int64)
    np.add.at(confusion, (truth[parsed], rounded[parsed]), 1)
    return Metrics(
        count=count,
        acc=float(correct.mean()),
        mse=float(np.mean(error**2)),
        mae=float(np.mean(np.abs(error))),
        macro_f1=_macro_f1(confusion),
        within_one=float(((np.abs(rounded - truth) <= 1) & parsed).mean()),
        unparsable=int((~parsed).sum()),
        confusion=confusion,
    )


def compute_metrics(
    truth: Sequence[int], predictions: Sequence[float | None], platforms: Sequence[str] | None = None
) -> Metrics:
    """Score continuous level predictions against integer levels, overall and per platform."""
    if len(truth) != len(predictions) or (platforms is not None and len(platforms) != len(truth)):
        raise ValueError(
            f"compute_metrics: expected equal lengths, got truth {len(truth)}, predictions {len(predictions)}"
            + (f", platforms {len(platforms)}" if platforms is not None else "")
        )
    truth_arr = np.asarray(truth, dtype=np.int64)
    if truth_arr.size and (truth_arr.min() < 0 or truth_arr.max() > MAX_LEVEL):
        raise ValueError(
            f"compute_metrics: expected levels 0-{MAX_LEVEL}, got {sorted(set(truth_arr.tolist()))}"
        )
    parsed = np.array([p is not None and np.isfinite(p) for p in predictions], dtype=bool)
    pred = np.array(
        [float(p) if ok else 0.0 for p, ok in zip(predictions, parsed, strict=True)], dtype=np.float64
    )
    metrics = _score(truth_arr, pred, parsed)
    if platforms is not None:
        names = np.asarray(platforms, dtype=object)
        for platform in sorted(set(platforms)):
            mask = names == platform
            metrics.by_platform[platform] = _score(truth_arr[mask], pred[mask], parsed[mask])
    return metrics


def format_table(rows: dict[str, Metrics]) -> str:
    """A plain-text table, one row per named prediction source (e.g. `graph`, `answer`, `regression`)."""
    header = f"{'model':<14}{'n':>6}{'ACC':>8}{'MSE':>8}{'MAE':>8}{'F1':>8}{'±1':>8}{'unpars.':>9}"
    lines = [header, "-" * len(header)]
    for name, m in rows.items():
        lines.append(
            f"{name:<14}{m.count:>6}{m.acc:>8.3f}{m.mse:>8.3f}{m.mae:>8.3f}"
            f"{m.macro_f1:>8.3f}{m.within_one:>8.3f}{m.unparsable:>9}"
        )
    return "\n".join(lines)

"""Score rated rows (`rate_batch`'s, one dict per sample) with the metrics, one entry per prediction."""

from __future__ import annotations

from collections.abc import Sequence

from netgpt.metrics import Metrics, compute_metrics


def as_rows(rated: dict[str, list]) -> list[dict]:
    """`rate_batch`'s columns as one dict per seed."""
    return [dict(zip(rated, values, strict=True)) for values in zip(*rated.values(), strict=True)]


def score_rows(rows: Sequence[dict], predictions: Sequence[str]) -> dict[str, Metrics]:
    """Metrics of each prediction in `predictions` over `rows` (each with `level` and `platform`)."""
    levels = [row["level"] for row in rows]
    platforms = [row["platform"] for row in rows]
    return {name: compute_metrics(levels, [row[name] for row in rows], platforms) for name in predictions}

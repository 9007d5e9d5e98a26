"""Baselines that need no model: the majority level of the train split, scored on another split."""

from __future__ import annotations

import os

import numpy as np
import pyarrow.compute as pc

from netgpt.data.schema import NUM_LEVELS
from netgpt.data.tables import read_samples
from netgpt.metrics import Metrics, compute_metrics


def majority_level(tables_dir: str | os.PathLike[str]) -> int:
    """The commonest level among the train split's samples (the lowest such level on a tie)."""
    levels = _split(tables_dir, "train")["level"].to_numpy()
    if levels.size == 0:
        raise ValueError(f"{tables_dir}: the train split is empty; no majority level to predict")
    return int(np.bincount(levels, minlength=NUM_LEVELS).argmax())


def majority_baseline(tables_dir: str | os.PathLike[str], split: str = "test") -> Metrics:
    """Predict the train split's majority level for every sample of `split`, scored like any model."""
    level = majority_level(tables_dir)
    rows = _split(tables_dir, split)
    return compute_metrics(
        rows["level"].to_pylist(), [float(level)] * rows.num_rows, rows["platform"].to_pylist()
    )


def _split(tables_dir: str | os.PathLike[str], split: str):
    samples = read_samples(tables_dir, ["level", "platform", "split"])
    return samples.filter(pc.equal(samples["split"], split))

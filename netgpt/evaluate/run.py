"""`netgpt evaluate`: score model folders on a split of the graph store, beside the majority level.

    report = evaluate_models(load_config("demo"), ["runs/demo/ray/netgpt/model"])
    print(report.markdown())

Ray Data batch inference: the split's sampled batches stream from the store's sampler actors (the same
stream training reads, one epoch, unshuffled) into `evaluate.replicas` Ray Data actors (one GPU each with
`evaluate.use_gpu`), each holding a group of `evaluate.models_per_replica` models and rating every batch
with each of them, and the rated rows come back to the driver, which scores them (`netgpt.metrics`: ACC
rounds the clipped prediction half to even, MSE and MAE use it unrounded, an unparsable answer counts as the
worst error). Each folder is scored on the predictions it was trained for and with the prompts it was
trained on (graph tokens or not), as its `netgpt_config.json` records.
"""

from __future__ import annotations

import json
import math
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from netgpt.atomic import write_text_atomic
from netgpt.config import PREDICTIONS, NetGPTConfig
from netgpt.evaluate.baselines import majority_baseline
from netgpt.evaluate.rate import rate_batch
from netgpt.evaluate.scoring import score_rows
from netgpt.metrics import Metrics
from netgpt.model.netgpt import NetGPT, read_training_record

LABELS = {"graph": "graph head", "answer": "generated answer", "regression": "regression head"}
COLUMNS = ("acc", "mse", "mae", "macro_f1", "within_one", "unparsable", "count")


SEED_COLUMNS = ("sample_id", "platform", "level")
"""The columns of `rate_batch` that describe the seed, the same whichever model rates it."""


@dataclass
class _Folder:
    """A model folder to score: its label in the table and what its training record says."""

    label: str
    folder: str
    """As given (reported in the table and the JSON report)."""
    resolved: str
    """Absolute (what the actors load: their working folder is not the driver's)."""
    predictions: list[str]
    graph_tokens: bool


class _Rater:
    """A Ray Data actor: one copy of each model of a group, rating pickled sampled batches
    (`SampledSubgraph`) with every one of them; model `i`'s predictions come back as columns `i/<name>`."""

    def __init__(self, folders: list[_Folder], use_gpu: bool) -> None:
        import torch

        self.device = torch.device("cuda" if use_gpu else "cpu")
        self.models = []
        for entry in folders:
            model = NetGPT.from_pretrained(entry.resolved).to(self.device)
            self.models.append((model, model.prompt_builder(entry.graph_tokens), entry.predictions))

    def __call__(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        columns: dict[str, list] = {}
        for blob in rows["batch"]:
            batch = pickle.loads(blob).to_hetero_data()
            for index, (model, builder, predictions) in enumerate(self.models):
                rated = rate_batch(model, batch, builder, self.device, predictions)
                for name, values in rated.items():
                    if name not in SEED_COLUMNS:
                        columns.setdefault(f"{index}/{name}", []).extend(values)
                    elif index == 0:
                        columns.setdefault(name, []).extend(values)
        for name, values in columns.items():  # None (unparsable) travels as NaN: the metrics count it so
            if name.endswith("/answer"):
                columns[name] = [math.nan if value is None else value for value in values]
        return {name: np.asarray(values) for name, values in columns.items()}


@dataclass
class ModelScores:
    label: str
    folder: str
    predictions: dict[str, Metrics]
    graph_tokens: bool


@dataclass
class EvaluationReport:
    split: str
    majority: Metrics
    models: list[ModelScores] = field(default_factory=list)

    def rows(self) -> list[tuple[str, str, Metrics]]:
        rows = [("majority level", "train split's", self.majority)]
        for model in self.models:
            rows += [(model.label, LABELS[p], metrics) for p, metrics in model.predictions.items()]
        return rows

    def markdown(self) -> str:
        lines = [
            f"| model | prediction | {' | '.join(COLUMNS)} |",
            "|---|---|" + "---:|" * len(COLUMNS),
        ]
        for model, prediction, metrics in self.rows():
            cells = " | ".join(_cell(getattr(metrics, name)) for name in COLUMNS)
            lines.append(f"| {model} | {prediction} | {cells} |")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        def metrics_json(metrics: Metrics) -> dict[str, Any]:
            return {
                **{name: getattr(metrics, name) for name in COLUMNS},
                "confusion": metrics.confusion.tolist(),
                "by_platform": {p: metrics_json(m) for p, m in metrics.by_platform.items()},
            }

        return {
            "split": self.split,
            "majority": metrics_json(self.majority),
            "models": [
                {
                    "label": model.label,
                    "folder": model.folder,
                    "graph_tokens": model.graph_tokens,
                    "predictions": {p: metrics_json(m) for p, m in model.predictions.items()},
                }
                for model in self.models
            ],
        }


def evaluate_models(
    config: NetGPTConfig,
    model_dirs: list[str | os.PathLike[str]],
    show_progress: bool = True,
    labels: list[str] | None = None,
) -> EvaluationReport:
    """Score each model folder on `config.evaluate.split` of `config.graph.store_dir`, on the current Ray
    cluster (start one first), beside the majority level of the train split. `labels` name the folders in
    the table (default: their paths, marked when their prompts hold no graph tokens)."""
    if labels is not None and len(labels) != len(model_dirs):
        raise ValueError(f"labels: expected one per model folder ({len(model_dirs)}), got {len(labels)}")
    from netgpt.graph.loader import GraphStreams

    cfg = config.evaluate
    report = EvaluationReport(cfg.split, majority_baseline(config.data.tables_dir, cfg.split))
    folders = [
        _folder(path, None if labels is None else labels[index]) for index, path in enumerate(model_dirs)
    ]
    group_size = cfg.models_per_replica or max(len(folders), 1)
    streams = GraphStreams(config.graph, config.graph.store_dir)
    try:
        for start in range(0, len(folders), group_size):
            group = folders[start : start + group_size]
            rows = _rate_split(streams, config, group, show_progress)
            for index, entry in enumerate(group):
                own = [
                    {
                        **{name: row[name] for name in SEED_COLUMNS},
                        **{p: row[f"{index}/{p}"] for p in entry.predictions},
                    }
                    for row in rows
                ]
                report.models.append(
                    ModelScores(
                        entry.label, entry.folder, score_rows(own, entry.predictions), entry.graph_tokens
                    )
                )
    finally:
        streams.shutdown()
    return report


def _folder(path: str | os.PathLike[str], label: str | None) -> _Folder:
    """What scoring the folder `path` needs from its training record; the label defaults to the path,
    marked when its prompts hold no graph tokens."""
    record = read_training_record(path)
    if label is None:
        label = str(path) + ("" if record["graph_tokens"] else " (no graph tokens)")
    predictions = [p for p in PREDICTIONS if p in record["predictions"]]
    return _Folder(label, str(path), str(Path(path).resolve()), predictions, record["graph_tokens"])


def _rate_split(streams, config: NetGPTConfig, group: list[_Folder], show_progress: bool) -> list[dict]:
    """Every sample of the split, rated by every model of `group` in one pass: one row per sample."""
    from ray.data import ActorPoolStrategy

    from netgpt.graph.loader import split_size

    cfg = config.evaluate
    total = split_size(config.graph.store_dir, cfg.split)
    rated = streams.dataset(cfg.split, cfg.batch_size, 1, shuffle=False, seed=0).map_batches(
        _Rater,
        fn_constructor_kwargs={"folders": group, "use_gpu": cfg.use_gpu},
        batch_size=1,
        compute=ActorPoolStrategy(size=cfg.replicas),
        num_cpus=cfg.cpus_per_replica,
        num_gpus=1 if cfg.use_gpu else 0,
        batch_format="numpy",
    )
    names = ", ".join(entry.folder for entry in group)
    rows = []
    with tqdm(total=total, desc=f"rating {cfg.split} with {names}", disable=not show_progress) as bar:
        for row in rated.iter_rows():
            rows.append({name: _plain(value) for name, value in row.items()})
            bar.update(1)
    if len(rows) != total:
        raise RuntimeError(f"{names}: rated {len(rows)} of the {total} samples of split {cfg.split!r}")
    return rows


def _cell(value: float | int) -> str:
    return str(value) if isinstance(value, int) else f"{value:.3f}"


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def write_report(report: EvaluationReport, path: str | os.PathLike[str]) -> Path:
    """The report as JSON at `path` (a temporary name, then renamed)."""
    return write_text_atomic(path, json.dumps(report.to_json(), indent=2, ensure_ascii=False))

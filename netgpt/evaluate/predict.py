"""`netgpt predict`: rate new videos (samples that are not in the training data) with a trained NetGPT.

    summary = predict("runs/demo/model", "new.json", "ratings.parquet", config)

1. The input (released XS-Video JSON, or a zip holding it; the level `影响力等级` optional) is validated by
   the importer exactly as `prepare` validates (`import_new_samples`); a sample that breaks a rule stops the
   run with a `DataError` before anything is written.
2. Their graph is built against the store (`graph.store_dir`, built from `data.tables_dir`) by
   `netgpt.graph.extend`: the same neighbours and features a stored sample gets in training, causal (never a
   later crawl), in chunks of `chunk_size` new samples so that memory follows the chunk.
3. Each batch of `batch_size` new samples is sampled with the config's fan-outs (seeded by `train.seed` and
   the batch's position in the input: same input, same ratings) and rated by `rate_batch`.
4. One row per input sample goes to a parquet file, written to a temporary name and renamed (`OUTPUT_SCHEMA`).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from netgpt.atomic import atomic_path
from netgpt.config import NetGPTConfig
from netgpt.data.importer import import_new_samples
from netgpt.evaluate.rate import rate_batch, to_level
from netgpt.graph.extend import NewSamples, store_graph_config
from netgpt.graph.sampler import NeighborSampler
from netgpt.graph.store import open_partition, read_meta
from netgpt.metrics import compute_metrics
from netgpt.model.netgpt import NetGPT, read_training_record

CHUNK_SIZE = 4096
"""New samples per extension store (their halo is what one chunk holds in memory)."""

OUTPUT_SCHEMA = pa.schema(
    [
        pa.field("sample_id", pa.int64(), nullable=False),
        pa.field("video_id", pa.string(), nullable=False),
        pa.field("url", pa.string(), nullable=False),
        pa.field("platform", pa.string(), nullable=False),
        pa.field("crawl_date", pa.date32(), nullable=False),
        pa.field("prompt_score", pa.float32(), nullable=False),
        pa.field("prompt_level", pa.int8(), nullable=False),
        pa.field("graph_score", pa.float32(), nullable=False),
        pa.field("graph_level", pa.int8(), nullable=False),
        pa.field("answer_level", pa.int8(), nullable=True),
        pa.field("true_level", pa.int8(), nullable=True),
        pa.field("unknown_topic", pa.bool_(), nullable=False),
        pa.field("unknown_author", pa.bool_(), nullable=False),
    ]
)
"""One row per input sample, in input order:
- `sample_id`: the input's sample id (as in the input, even where it collides with a stored sample's id);
- `video_id` (host/last path segment of the URL, as `prepare` derives it), `url`, `platform`, `crawl_date`;
- `prompt_score` / `prompt_level`: the regression head on the last prompt token, raw and as a level
  round(clip(score, 0, 9)); `graph_score` / `graph_level`: the same for the graph head;
- `answer_level`: the greedy generated answer as a level (null when it holds no number);
- `true_level`: the input's level, null where the input has none;
- `unknown_topic` / `unknown_author`: no stored sample has this topic / author (the sample is still rated,
  from its own features and the neighbours it does have)."""


def predict(
    model_dir: str | os.PathLike[str],
    input_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    config: NetGPTConfig,
    batch_size: int = 16,
    chunk_size: int = CHUNK_SIZE,
    device: str | None = None,
    progress: bool = True,
    content_file: str = "",
) -> dict[str, Any]:
    """Rate every sample of `input_path` with the NetGPT folder `model_dir`; write `out_path` (parquet).

    The store is `config.graph.store_dir` (its graph settings come from its saved `config.yaml`), its tables
    `config.data.tables_dir`, the fan-outs `config.graph.fanouts` / `relation_fanouts`. `content_file`: the
    new videos' content vectors, in the format of `graph.content_file` (docs/data.md), read besides the
    store's. Returns the summary (counts, among them the new videos without a content vector; and, over the
    samples whose level the input gives, the metrics of each prediction). Raises `DataError` on a bad input
    before writing anything."""
    if batch_size < 1 or chunk_size < 1:
        raise ValueError(f"batch_size and chunk_size: expected integers >= 1, got {batch_size}, {chunk_size}")
    out_path = Path(out_path)
    store_dir = Path(config.graph.store_dir)
    meta = read_meta(store_dir)
    fanouts, num_hops = list(config.graph.fanouts), len(config.graph.fanouts)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=out_path.parent, prefix=f".{out_path.name}.work-"))
    try:
        input_name, _ = import_new_samples(input_path, work / "input", config.data, progress=progress)
        new = NewSamples(
            work / "input",
            input_name,
            config.data.tables_dir,
            store_dir,
            store_graph_config(store_dir, config.graph),
            content_file,
        )
        # the input is checked (cheap) before the model is loaded (slow for a large LLM)
        model = _load_model(model_dir, meta["feature_dims"], store_dir, num_hops)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        model.to(device)
        record = read_training_record(model_dir)
        builder = model.prompt_builder(record["graph_tokens"])
        predictions = record["predictions"]
        count = len(new.internal_ids)
        rated: dict[str, list] = {}
        with tqdm(
            total=math.ceil(count / batch_size), desc="rating", unit="batch", disable=not progress
        ) as bar:
            for chunk_start in range(0, count, chunk_size):
                positions = np.arange(chunk_start, min(count, chunk_start + chunk_size))
                ext = new.write_store(work / "extension", num_hops, positions)
                sampler = NeighborSampler(
                    open_partition(ext, 0), fanouts, config.graph.relation_fanouts, num_hops
                )
                for start in range(0, len(positions), batch_size):
                    chosen = positions[start : start + batch_size]
                    rng = np.random.default_rng([config.train.seed, int(chosen[0])])
                    batch = sampler.sample(new.internal_ids[chosen], rng)
                    for key, values in rate_batch(model, batch, builder, device, predictions).items():
                        rated.setdefault(key, []).extend(values)
                    bar.update(1)
        table = _output_table(new, rated)
        with atomic_path(out_path) as tmp:
            pq.write_table(table, tmp)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = _summary(table, out_path, predictions)
    summary["videos_without_content_vector"] = new.content["videos_without"]
    return summary


def _load_model(
    model_dir: str | os.PathLike[str], store_dims: dict[str, int], store_dir: Path, num_hops: int
) -> NetGPT:
    """The NetGPT folder, checked against the store's feature widths and the number of sampled hops."""
    model = NetGPT.from_pretrained(model_dir)
    if model.feature_dims != store_dims:
        raise ValueError(
            f"{model_dir}: the model reads feature widths {model.feature_dims}, the store {store_dir} has "
            f"{store_dims}; rate with the store the model was trained on"
        )
    if model.config.num_layers != num_hops:
        raise ValueError(
            f"{model_dir}: the model has {model.config.num_layers} message-passing layers, graph.fanouts "
            f"samples {num_hops} hops; give the fan-outs it was trained with"
        )
    return model


def _output_table(new: NewSamples, rated: dict[str, list]) -> pa.Table:
    if rated.get("sample_id", []) != new.internal_ids.tolist():
        raise RuntimeError("rated samples are not the new samples in input order")
    columns = new.new.select(["video_id", "url", "platform", "crawl_date", "level"])
    unrated = [None] * len(new.input_ids)  # a prediction the model was not trained for is left null
    scores = {name: rated.get(name, unrated) for name in ("graph", "regression", "answer")}
    return pa.Table.from_pydict(
        {
            "sample_id": new.input_ids,
            "video_id": columns["video_id"],
            "url": columns["url"],
            "platform": columns["platform"],
            "crawl_date": columns["crawl_date"],
            "prompt_score": scores["regression"],
            "prompt_level": [to_level(s) for s in scores["regression"]],
            "graph_score": scores["graph"],
            "graph_level": [to_level(s) for s in scores["graph"]],
            "answer_level": [to_level(s) for s in scores["answer"]],
            "true_level": columns["level"],
            "unknown_topic": new.unknown_topic,
            "unknown_author": new.unknown_author,
        },
        schema=OUTPUT_SCHEMA,
    )


def _summary(table: pa.Table, out_path: Path, predictions: list[str]) -> dict[str, Any]:
    """Counts, and the metrics of each prediction made over the samples with a level (none without)."""
    unknown_topic = table["unknown_topic"].to_numpy(zero_copy_only=False)
    unknown_author = table["unknown_author"].to_numpy(zero_copy_only=False)
    summary: dict[str, Any] = {
        "out": str(out_path),
        "samples": table.num_rows,
        "unknown_topic": int(unknown_topic.sum()),
        "unknown_author": int(unknown_author.sum()),
        "unknown_topic_and_author": int((unknown_topic & unknown_author).sum()),
        "unparsable_answers": table["answer_level"].null_count,
        "labelled": table.num_rows - table["true_level"].null_count,
    }
    labelled = table.filter(table["true_level"].is_valid())
    if labelled.num_rows:
        truth = labelled["true_level"].to_pylist()
        for name, column, prediction in (
            ("prompt", "prompt_score", "regression"),
            ("graph", "graph_score", "graph"),
            ("answer", "answer_level", "answer"),
        ):
            if prediction not in predictions:
                continue
            metrics = compute_metrics(truth, labelled[column].to_pylist())
            summary[f"{name}_acc"] = round(metrics.acc, 4)
            summary[f"{name}_mae"] = round(metrics.mae, 4)
    return summary

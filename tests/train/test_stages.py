"""Stage mechanics on a real DeepSpeed ZeRO-3 engine in one process: groups, freezing, schedule, config."""

import json

import pytest
import torch

from netgpt.config import ConfigError, StageConfig
from netgpt.graph.types import feature_dims
from netgpt.train.ds_config import build_ds_config, read_ds_config
from netgpt.train.engine import avoid_jit_builds, build_engine
from netgpt.train.monitor import StepMeter
from netgpt.train.stages import (
    freeze_for_stage,
    lr_factor,
    reset_optimizer_state,
    set_stage_hparams,
)
from netgpt.train.step import LossNotFinite, encode_prompts, train_step

FEATURE_DIMS = feature_dims(text_dim=6, time_dim=4, content_dim=5)


def test_warmup_then_cosine_to_the_floor():
    factors = [lr_factor(s, 10, 2, 0.1) for s in range(10)]
    assert factors[0] == pytest.approx(0.5) and factors[1] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[1:], factors[2:], strict=False))
    assert lr_factor(10, 10, 2, 0.1) == pytest.approx(0.1)


def test_active_parts_are_trainable_and_reached_by_a_loss(tiny_config):
    graph, alignment, finetune = tiny_config.train.stages
    assert graph.active_parts() == ["encoder", "graph_head"]
    assert alignment.active_parts() == ["projector", "llm"]
    assert finetune.active_parts() == ["encoder", "projector", "llm", "graph_head", "prompt_head"]
    finetune.losses = {"answer_ce": 1.0, "prompt_regression": 1.0}  # the graph head trainable, unreached
    assert finetune.active_parts() == ["encoder", "projector", "llm", "prompt_head"]
    finetune.graph_tokens = False  # the LLM-alone baseline: its losses do not reach the graph path
    assert finetune.active_parts() == ["llm", "prompt_head"]


def test_ds_config_auto_values_come_from_the_train_config(tiny_config, tmp_path):
    cfg = build_ds_config(tiny_config.train, world_size=2, llm_hidden_size=32)
    first = tiny_config.train.stages[0]
    assert cfg["train_batch_size"] == first.micro_batch_size * first.grad_accum * 2
    assert cfg["optimizer"]["params"]["lr"] == first.lr
    assert cfg["bf16"]["enabled"] is False
    assert "auto" not in json.dumps(cfg)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"zero_optimization": {"stage": 3, "sub_group_size": "auto"}}))
    tiny_config.train.ds_config = str(bad)
    with pytest.raises(ConfigError, match="sub_group_size"):
        build_ds_config(tiny_config.train, world_size=1, llm_hidden_size=32)


def test_ds_config_read_once_is_filled_from_its_content(tiny_config, tmp_path, monkeypatch):
    """The driver reads the JSON (relative to its cwd); the workers fill what it sent and need no file."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.json").write_text(
        json.dumps({"zero_optimization": {"stage": 2}, "gradient_clipping": "auto"})
    )
    tiny_config.train.ds_config = "mine.json"
    template = read_ds_config(tiny_config.train.ds_config)
    tiny_config.train.ds_config = "gone.json"  # where a worker's cwd has no such file
    cfg = build_ds_config(tiny_config.train, world_size=2, llm_hidden_size=32, template=template)
    assert cfg["zero_optimization"]["stage"] == 2 and cfg["gradient_clipping"] == tiny_config.train.grad_clip
    assert template["gradient_clipping"] == "auto"  # filled on a copy
    with pytest.raises(ConfigError, match="gone.json.*not found"):
        read_ds_config(tiny_config.train.ds_config)


def _snapshot(model, part):
    return [getattr(p, "ds_tensor", p).detach().clone() for p in model.get_submodule(part).parameters()]


def _changed(before, after):
    return any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))


@pytest.mark.parametrize("zero", [3, 2])
def test_stages_freeze_parts_on_one_engine(zero, tiny_config, tokenizer, process_group, batch_maker):
    avoid_jit_builds()
    tiny_config.train.ds_config = f"ds_configs/zero{zero}.json"
    engine, ds_config = build_engine(tiny_config, FEATURE_DIMS, tokenizer, world_size=1)
    assert ds_config["zero_optimization"]["stage"] == zero
    model = engine.module
    names = [g["name"] for g in engine.optimizer.param_groups]
    assert names == ["encoder", "projector", "llm", "graph_head", "prompt_head"]
    builder = model.prompt_builder()
    parts = ["encoder", "projector", "llm", "graph_head", "prompt_head"]
    for index, stage in enumerate(tiny_config.train.stages):
        stage = StageConfig(**{**stage.__dict__, "lr": 1e-2})
        active = freeze_for_stage(model, stage)
        reset_optimizer_state(engine.optimizer.optimizer)
        before = {part: _snapshot(model, part) for part in parts}
        set_stage_hparams(engine.optimizer, stage, active, 1.0)
        window = [batch_maker(2, seed=index), batch_maker(3, seed=index + 10)]
        terms = train_step(engine, window, stage, builder, StepMeter())
        assert set(stage.losses) <= set(terms) and all(
            torch.isfinite(torch.tensor(v)) for v in terms.values()
        )
        for part in parts:
            assert _changed(before[part], _snapshot(model, part)) == (part in active), (stage.name, part)


def test_non_finite_loss_stops_before_the_optimizer_step(tiny_config, tokenizer, process_group, batch_maker):
    avoid_jit_builds()
    engine, _ = build_engine(tiny_config, FEATURE_DIMS, tokenizer, world_size=1)
    stage = tiny_config.train.stages[0]
    active = freeze_for_stage(engine.module, stage)
    set_stage_hparams(engine.optimizer, stage, active, 1.0)
    batch = batch_maker(2, seed=1)
    batch["video"].y = torch.full_like(batch["video"].y, float("nan"))
    before = _snapshot(engine.module, "encoder")
    with pytest.raises(LossNotFinite, match="graph_pretrain"):
        train_step(engine, [batch], stage, engine.module.prompt_builder(), StepMeter())
    assert not _changed(before, _snapshot(engine.module, "encoder"))


def test_bf16_engine_trains_float32_batches(tiny_config, tokenizer, process_group, batch_maker):
    avoid_jit_builds()
    tiny_config.train.bf16 = "true"
    engine, ds_config = build_engine(tiny_config, FEATURE_DIMS, tokenizer, world_size=1)
    assert ds_config["bf16"]["enabled"] is True
    assert engine.module.llm.get_input_embeddings().weight.dtype == torch.bfloat16
    # bf16 weights, gradients accumulated in fp32 over a window's micro-batches (`data_types`)
    assert engine.optimizer.gradient_accumulation_dtype == torch.float32
    for stage in tiny_config.train.stages:
        set_stage_hparams(engine.optimizer, stage, freeze_for_stage(engine.module, stage), 1.0)
        builder = engine.module.prompt_builder()
        terms = train_step(engine, [batch_maker(2, seed=3)], stage, builder, StepMeter())
        assert all(torch.isfinite(torch.tensor(v)) for v in terms.values()), stage.name
        # no autocast, as on a GPU (DeepSpeed's bf16 mode turns an outer one off): the model's own casts
        # keep every loss term in float32
        assert not torch.is_autocast_enabled("cpu")
        batch = batch_maker(2, seed=4)
        prompts = encode_prompts(builder, batch, True, engine.device) if stage.uses_llm else None
        with torch.no_grad():
            out = engine(batch, prompts, dict(stage.losses), stage.graph_tokens)
        assert out.loss.dtype == torch.float32, stage.name
        assert all(term.dtype == torch.float32 for term in out.losses.values()), stage.name

"""ZeRO-3's optimizer step leaves out the groups a stage freezes: AdamW runs on the trained groups only, the
trained parts come out exactly as from DeepSpeed's own step over every group (with the same gradient norm,
which leaves out the frozen groups' zeros), the frozen parts do not move,
and every group's AdamW step count stays the same (DeepSpeed's universal checkpoint keeps one for all)."""

from __future__ import annotations

import pytest
import torch

from netgpt.graph.types import feature_dims
from netgpt.train.engine import avoid_jit_builds, build_engine
from netgpt.train.frozen_steps import PER_SUB_GROUP, skip_frozen_sub_groups
from netgpt.train.monitor import StepMeter
from netgpt.train.stages import freeze_for_stage, set_stage_hparams
from netgpt.train.step import train_step

FEATURE_DIMS = feature_dims(text_dim=6, time_dim=4, content_dim=5)
STEPS = 3


def _train(engine, config, batch_maker, stage_index: int) -> tuple[list[list[str]], list[float]]:
    """`STEPS` steps of stage `stage_index`; per step, the groups AdamW stepped (their names), and the
    global gradient norm."""
    adamw = engine.optimizer.optimizer
    stepped: list[list[str]] = []
    norms: list[float] = []
    original = adamw.step

    def recording_step(*args, **kwargs):
        stepped[-1] += [group["name"] for group in adamw.param_groups if group["params"]]
        return original(*args, **kwargs)

    adamw.step = recording_step
    stage = config.train.stages[stage_index]
    active = freeze_for_stage(engine.module, stage)
    builder = engine.module.prompt_builder()
    for step in range(STEPS):
        stepped.append([])
        set_stage_hparams(engine.optimizer, stage, active, factor=1.0)
        train_step(engine, [batch_maker(2, seed=step)], stage, builder, StepMeter())
        norms.append(float(engine.get_global_grad_norm()))
    adamw.step = original
    return stepped, norms


def _partitions(engine) -> dict[str, torch.Tensor]:
    return {name: p.ds_tensor.detach().clone() for name, p in engine.module.named_parameters()}


@pytest.mark.parametrize("stage_index", [0, 1])
def test_a_step_leaves_out_frozen_groups_and_trains_as_a_full_step(
    stage_index, process_group, make_tiny_config, tokenizer, batch_maker
):
    avoid_jit_builds()
    config = make_tiny_config()
    stage = config.train.stages[stage_index]
    active = set(stage.active_parts())
    engines = [build_engine(config, FEATURE_DIMS, tokenizer, world_size=1)[0] for _ in range(2)]
    full = engines[1].optimizer
    for name in (*PER_SUB_GROUP, "step", "get_grad_norm_direct"):
        delattr(full, name)  # DeepSpeed's own step over every group again
    before = _partitions(engines[0])

    stepped, norms = _train(engines[0], config, batch_maker, stage_index)
    stepped_full, norms_full = _train(engines[1], config, batch_maker, stage_index)

    groups = [group["name"] for group in full.param_groups]
    assert stepped_full == [groups] * STEPS
    # the frozen groups' zero gradients left out of the norm: the same norm (and so the same clipping)
    assert norms == norms_full and all(norm > 0 for norm in norms)
    frozen = next(g for g in engines[0].optimizer.fp16_groups if not any(p.requires_grad for p in g))
    ones = [torch.ones_like(p.ds_tensor) for p in frozen]
    assert float(engines[0].optimizer.get_grad_norm_direct(ones, frozen)) == 0.0  # not computed
    assert float(full.get_grad_norm_direct(ones, frozen)) > 0
    # the first step creates every group's AdamW state (checkpoints expect it); later ones skip the frozen
    assert stepped[0] == groups and stepped[1:] == [[g for g in groups if g in active]] * (STEPS - 1)
    after, after_full = _partitions(engines[0]), _partitions(engines[1])
    moved = {name.split(".")[0] for name in before if not torch.equal(before[name], after[name])}
    assert moved == active
    for name in before:
        torch.testing.assert_close(after[name], after_full[name], rtol=0, atol=0, msg=name)
    steps = {float(state["step"]) for state in engines[0].optimizer.optimizer.state.values()}
    assert steps == {float(STEPS)}


def test_an_optimizer_other_than_plain_zero3_is_left_as_deepspeed_has_it(
    process_group, make_tiny_config, tokenizer
):
    avoid_jit_builds()
    config = make_tiny_config()
    config.train.ds_config = "ds_configs/zero2.json"
    engine, ds_config = build_engine(config, FEATURE_DIMS, tokenizer, world_size=1)
    assert ds_config["zero_optimization"]["stage"] == 2
    assert not skip_frozen_sub_groups(engine.optimizer)
    assert not any(
        name in vars(engine.optimizer) for name in (*PER_SUB_GROUP, "step", "get_grad_norm_direct")
    )

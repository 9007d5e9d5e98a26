"""Stages as data: which parts of NetGPT train, at which learning rate, on which losses.

One DeepSpeed engine serves the whole curriculum, so stage N starts from stage N-1's weights without a
reload. Its optimizer has one parameter group per part (encoder, projector, llm, graph_head, prompt_head);
a stage freezes a part by `requires_grad=False` (no backward through it; ZeRO-3 hands the optimizer zeros for
it) and by a learning rate of 0 in its group (AdamW then leaves it exactly as it is, weight decay included);
under ZeRO-3 its group is left out of the optimizer step altogether (`netgpt.train.frozen_steps`).
A part trains in a stage only when the stage lists it AND one of the stage's losses reaches it
(`StageConfig.active_parts`, from the loss-term table `netgpt.config.LOSS_TERMS`).
"""

from __future__ import annotations

import math

import torch

from netgpt.config import TRAINABLE_PARTS, StageConfig
from netgpt.train.frozen_steps import FROZEN


def parameter_groups(model: torch.nn.Module) -> list[dict]:
    """One optimizer group per part, named, in `TRAINABLE_PARTS` order; every parameter in exactly one."""
    groups = []
    seen: set[int] = set()
    for part in TRAINABLE_PARTS:
        params = [p for p in model.get_submodule(part).parameters() if id(p) not in seen]
        seen.update(id(p) for p in params)
        groups.append({"name": part, "params": params})
    stray = [name for name, p in model.named_parameters() if id(p) not in seen]
    if stray:
        raise ValueError(f"parameters outside the parts {list(TRAINABLE_PARTS)}: {stray[:5]}")
    return [g for g in groups if g["params"]]


def freeze_for_stage(model: torch.nn.Module, stage: StageConfig) -> list[str]:
    """Set `requires_grad` per part for `stage`; returns the active parts."""
    active = stage.active_parts()
    for part in TRAINABLE_PARTS:
        for param in model.get_submodule(part).parameters():
            param.requires_grad_(part in active)
    return active


def lr_factor(step: int, total_steps: int, warmup_steps: int, min_lr_ratio: float) -> float:
    """Linear warm-up to 1 over `warmup_steps`, then cosine from 1 down to `min_lr_ratio` at `total_steps`."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_stage_hparams(
    optimizer: torch.optim.Optimizer, stage: StageConfig, active: list[str], factor: float
) -> float:
    """Learning rate and weight decay of each part's group for this step, and whether the group is frozen
    (which ZeRO-3's step then leaves out, `netgpt.train.frozen_steps`); returns the active rate."""
    lr = stage.lr * factor
    for group in optimizer.param_groups:
        on = group["name"] in active
        group["lr"] = lr if on else 0.0
        group["weight_decay"] = stage.weight_decay if on else 0.0
        group[FROZEN] = not on
    return lr


def reset_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """Start a stage with fresh AdamW moments, as a separately launched stage would."""
    for state in optimizer.state.values():
        for key, value in state.items():
            if torch.is_tensor(value):
                value.zero_()
            elif key == "step":
                state[key] = 0

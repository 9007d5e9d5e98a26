"""Optimizer steps that leave out the parts a stage does not train.

A stage freezes the parts it does not train (`netgpt.train.stages`: no gradient, a learning rate of 0), but
DeepSpeed's ZeRO-3 optimizer still prepares, clips and steps every sub-group of every parameter group at each
step. For graph pretraining with a 135M-parameter LLM on CPU that is an AdamW step over 135M parameters to
train an encoder of 44k: 97 % of the step's time in py-spy (`small` preset, one worker). DeepSpeed has
no option to leave a group out, so the per-sub-group calls of `DeepSpeedZeroOptimizer_Stage3.step` are
wrapped here to do nothing for a sub-group whose parameter group is marked frozen (`FROZEN`).

What a skipped step leaves: the frozen parameters and their fp32 master copy exactly as they were (as the
learning rate of 0 did), and their AdamW moments undecayed (they are zeroed at the next stage's start,
`reset_optimizer_state`). What it keeps: every group's AdamW `step` counts on together, since DeepSpeed's
universal checkpoint records one step for all groups (the first group's), so a resumed run's bias correction
is the uninterrupted run's. A group with no AdamW state yet (never stepped) is stepped in full once, so that
its moments exist: DeepSpeed's checkpoints expect them for every group.

Only the plain ZeRO-3 path is wrapped (no optimizer offload or NVMe swap, whose sub-group calls move state
between devices); elsewhere the optimizer steps every group as DeepSpeed does."""

from __future__ import annotations

import functools
from typing import Any

import torch

FROZEN = "frozen"
"""Key of a parameter group (set per step by `set_stage_hparams`): True when the stage does not train it."""

PER_SUB_GROUP = (
    "_prepare_sub_group",
    "unscale_and_clip_grads",
    "_optimizer_step",
    "_reassign_or_swap_out_partitioned_parameters",
    "_release_sub_group",
)
"""The calls `DeepSpeedZeroOptimizer_Stage3.step` makes for each sub-group (DeepSpeed 0.19), first argument
the sub-group's index."""

_NEEDED = (
    *PER_SUB_GROUP,
    "step",
    "get_grad_norm_direct",
    "device",
    "fp16_groups",
    "fp32_partitioned_groups_flat",
    "sub_group_to_group_id",
)


def skip_frozen_sub_groups(zero_optimizer: Any) -> bool:
    """Wrap `zero_optimizer` (the engine's `optimizer`) so that its steps leave out frozen groups; returns
    whether it did (False: not a plain ZeRO-3 optimizer of the expected layout, left as it is)."""
    if not all(hasattr(zero_optimizer, name) for name in _NEEDED):
        return False
    if any(getattr(zero_optimizer, name, False) for name in ("offload_optimizer", "swap_optimizer")):
        return False
    adamw = zero_optimizer.optimizer
    skipped: set[int] = set()

    def frozen_with_state(sub_group: int) -> bool:
        group = adamw.param_groups[zero_optimizer.sub_group_to_group_id[sub_group]]
        return bool(group.get(FROZEN)) and bool(
            adamw.state.get(zero_optimizer.fp32_partitioned_groups_flat[sub_group])
        )

    def count_step(sub_group: int) -> None:
        # every group's step counts together (see the module's docstring)
        adamw.state[zero_optimizer.fp32_partitioned_groups_flat[sub_group]]["step"] += 1

    def skipping(call, on_skip=None):
        @functools.wraps(call)
        def wrapped(sub_group: int, *args, **kwargs):
            if sub_group not in skipped:
                return call(sub_group, *args, **kwargs)
            if on_skip is not None:
                on_skip(sub_group)
            return None

        return wrapped

    step = zero_optimizer.step

    @functools.wraps(step)
    def step_leaving_out_frozen(*args, **kwargs):
        # decided once a step, so that every call of a sub-group agrees (a full step creates missing state)
        skipped.update(i for i in range(len(zero_optimizer.fp16_groups)) if frozen_with_state(i))
        try:
            return step(*args, **kwargs)
        finally:
            skipped.clear()

    from deepspeed.runtime.zero.utils import get_norm_dtype  # the dtype DeepSpeed's norms come in

    grad_norm = zero_optimizer.get_grad_norm_direct

    @functools.wraps(grad_norm)
    def grad_norm_leaving_out_frozen(gradients, params, *args, **kwargs):
        if any(param.requires_grad for param in params):
            return grad_norm(gradients, params, *args, **kwargs)
        return torch.zeros((), dtype=get_norm_dtype(), device=zero_optimizer.device)

    for name in PER_SUB_GROUP:
        on_skip = count_step if name == "_optimizer_step" else None
        setattr(zero_optimizer, name, skipping(getattr(zero_optimizer, name), on_skip))
    zero_optimizer.step = step_leaving_out_frozen
    zero_optimizer.get_grad_norm_direct = grad_norm_leaving_out_frozen
    return True

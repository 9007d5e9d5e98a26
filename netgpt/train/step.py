"""One optimizer step over a window of micro-batches on a DeepSpeed engine (the hot loop's body)."""

from __future__ import annotations

import torch
import torch.distributed as dist

from netgpt.config import StageConfig
from netgpt.train.monitor import FlopCounter, StepMeter
from netgpt.train.profile import OFF


class LossNotFinite(FloatingPointError):
    """A non-finite loss on some rank, every rank stopped before the optimizer step: training diverged."""


def encode_prompts(prompt_builder, batch, with_answer: bool, device: torch.device):
    return prompt_builder.encode(batch.seed_fields, with_answer=with_answer).to(device)


def train_step(
    engine,
    window: list,
    stage: StageConfig,
    prompt_builder,
    meter: StepMeter,
    flops: FlopCounter | None = None,
    profile=OFF,
) -> dict[str, float]:
    """Forward/backward each micro-batch of `window`, then one optimizer step; returns mean loss terms.

    Each micro-batch's loss (a mean over its seeds) is weighted by its share of all the step's seeds across
    ranks, times the world size because DeepSpeed averages gradients over ranks: the gradient is that of the
    mean loss over every seed of the step, also for a short last window or a ragged batch. DeepSpeed's own
    1/accumulation scaling is off and the accumulation boundary is set per window, so a stage's windows may
    differ in length (the end of an epoch) and stages may differ in accumulation. A non-finite loss on any
    rank stops all ranks before the optimizer step, with the stage's name. `meter` gets the step's seeds,
    tokens and model FLOPs (counted by `flops`; none without it). `profile` (`netgpt.train.profile`) times
    the forward, backward and optimizer phases when the step-time bench turns it on.

    No `torch.autocast` around the forward: with bf16 weights DeepSpeed's bf16 mode runs the model in bf16,
    and `engine.forward` switches an outer CUDA autocast off (its config has no `torch_autocast` section,
    which would keep float32 weights). The model casts at its own edges instead: float32 features to its
    layers' dtype, its losses in float32 (`tests/train/test_stages.py` runs a bf16 engine so on CPU).
    """
    engine.train()
    world = dist.get_world_size()
    sizes = [int(batch["video"].batch_size) for batch in window]
    # small collectives on the engine's device: an NCCL group has no CPU tensors
    total_seeds = torch.tensor(float(sum(sizes)), device=engine.device)
    dist.all_reduce(total_seeds)
    sums: dict[str, float] = {}
    finite = True
    flops = flops or FlopCounter()
    for i, batch in enumerate(window):
        batch = batch.to(engine.device)
        prompts = encode_prompts(prompt_builder, batch, True, engine.device) if stage.uses_llm else None
        engine.set_gradient_accumulation_boundary(i == len(window) - 1)
        with profile.phase("forward"):
            out = engine(batch, prompts, dict(stage.losses), stage.graph_tokens)
        finite &= bool(torch.isfinite(out.loss).item())
        with profile.phase("backward"):
            engine.backward(out.loss * (sizes[i] * world / total_seeds.item()), scale_wrt_gas=False)
        for name, value in {"loss": out.loss, **out.losses}.items():
            sums[name] = sums.get(name, 0.0) + float(value.detach()) * sizes[i]
        nodes = sum(int(batch[t].num_nodes or 0) for t in batch.node_types)
        meter.samples += sizes[i]
        flops.count(meter, prompts.attention_mask if prompts is not None else None, nodes)
    flag = torch.tensor(0.0 if finite else 1.0, device=engine.device)
    dist.all_reduce(flag)
    if flag.item() > 0:
        raise LossNotFinite(
            f"non-finite loss in stage {stage.name!r}; resume with a lower train.stages[{stage.name}].lr "
            "(from the run's last checkpoint) or check the data"
        )
    _drop_leaf_grads_on_cpu(engine)
    with profile.phase("optimizer"):
        engine.step()
    return {name: value / sum(sizes) for name, value in sums.items()}


def _drop_leaf_grads_on_cpu(engine) -> None:
    """ZeRO-3 leaves (HGT's layers) keep their `.grad` after its hooks have reduced it into the optimizer's
    partitions, and DeepSpeed's `zero_grad` then calls `record_stream` on it, which CUDA tensors have and CPU
    tensors do not: on the CPU accelerator the step would fail. The gradient is already where the optimizer
    reads it (tested: the leaves still train), so the leftover is dropped."""
    if engine.device.type != "cpu" or engine.zero_optimization_stage() != 3:
        return
    from deepspeed.utils import get_z3_leaf_modules

    for module in get_z3_leaf_modules(engine.module):
        for param in module.parameters():
            param.grad = None

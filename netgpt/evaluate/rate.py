"""Rate one sampled batch with a NetGPT model: the three predictions of every seed, as plain lists.

    model = NetGPT.from_pretrained(folder).to(device)
    rated = rate_batch(model, batch, model.prompt_builder(), device)
    rated["prompt_pred"][i], rated["answer"][i]      # seed i of the batch

Used by `netgpt predict` (new samples) and meant for `netgpt evaluate` (the store's splits): both sample a
batch with `NeighborSampler`, call this, and only differ in where the seeds come from.
"""

from __future__ import annotations

import math

import torch
from torch_geometric.data import HeteroData

from netgpt.graph.types import VIDEO
from netgpt.model.netgpt import NetGPT
from netgpt.model.prompt import PromptBuilder

RATED_KEYS = ("sample_id", "platform", "level", "graph_pred", "prompt_pred", "answer")
"""The keys of `rate_batch`'s result, in order."""


@torch.no_grad()
def rate_batch(
    model: NetGPT,
    batch: HeteroData,
    prompt_builder: PromptBuilder,
    device: torch.device | str,
    *,
    synced_gpus: bool = False,
) -> dict[str, list]:
    """The predictions of every seed of `batch` (seeds in batch order), the model put in eval mode.

    Returns lists of length `batch[VIDEO].batch_size` under `RATED_KEYS`:
    - `sample_id` (int) and `platform` (str): from the batch's `seed_fields`;
    - `level` (int or None): the seed's true level when the batch carries one (None when absent: a new
      sample without label; never a placeholder value);
    - `graph_pred` (float): the graph head on the seed embedding (the stage-1 prediction);
    - `prompt_pred` (float): the regression head on the last prompt token's hidden state;
    - `answer` (float or None): the greedy generated answer parsed as a number, None when it holds none.
    Scores are raw (not rounded or clipped). `model` must already be on `device`; prompts are encoded
    without answers (`prompt_builder.encode(batch.seed_fields, with_answer=False)`). Under ZeRO-3 pass
    `synced_gpus=True` (and call it on every rank), so that generation keeps every rank stepping.
    """
    model.eval()
    batch = batch.to(device)
    fields = batch.seed_fields
    prompts = prompt_builder.encode(fields, with_answer=False)
    out = model(batch, prompts, {})
    answers = model.generate_levels(batch, prompts, synced_gpus=synced_gpus)
    num_seeds = int(batch[VIDEO].batch_size)
    if not len(fields) == num_seeds == out.graph_pred.numel() == len(answers):
        raise ValueError(
            f"batch of {num_seeds} seeds holds {len(fields)} seed_fields rows and gave "
            f"{out.graph_pred.numel()} predictions and {len(answers)} answers"
        )
    return {
        "sample_id": [int(f["sample_id"]) for f in fields],
        "platform": [str(f["platform"]) for f in fields],
        "level": [_level_or_none(f.get("level")) for f in fields],
        "graph_pred": out.graph_pred.float().cpu().tolist(),
        "prompt_pred": out.prompt_pred.float().cpu().tolist(),
        "answer": list(answers),
    }


def _level_or_none(value: object) -> int | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return int(value)


def to_level(score: float | None) -> int | None:
    """A score as a level 0-9: round(clip(score, 0, 9)); None stays None (an unparsable answer)."""
    if score is None or math.isnan(score):
        return None
    return int(round(min(max(score, 0.0), 9.0)))

"""Rate one sampled batch with a NetGPT: each seed's predictions from the graph head, the regression head on
the last prompt token, and the generated answer parsed as a number.

    rows = rate_batch(model, batch, model.prompt_builder(), torch.device("cpu"))
    rows["sample_id"], rows["regression"], rows["answer"]      # one value per seed; answer None: unparsable

Training's validation and test, `netgpt evaluate` (a split of the store) and `netgpt predict` (new videos)
all rate through here, so a prediction means the same thing wherever it is scored.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch_geometric.data import HeteroData

from netgpt.config import PREDICTIONS
from netgpt.data.schema import MAX_LEVEL, NUM_LEVELS
from netgpt.graph.seeds import SeedFields
from netgpt.model.netgpt import NetGPT
from netgpt.model.prompt import PromptBuilder


@torch.no_grad()
def rate_batch(
    model: NetGPT,
    batch: HeteroData,
    prompt_builder: PromptBuilder,
    device: torch.device | str,
    predictions: Sequence[str] = PREDICTIONS,
    synced_gpus: bool = False,
) -> dict[str, list]:
    """Per seed of `batch`: `sample_id`, `platform`, `level` (None when the seed has none) and each of
    `predictions` (`graph`, `regression`, `answer`). The answer is generated constrained to the ten
    levels' answers, so it is always a level; an unparsable one (None) would still be counted, not hidden.

    The prompts hold graph tokens when `prompt_builder` makes them (`model.prompt_builder(graph_tokens=False)`
    rates the LLM alone). `model` is a NetGPT or, in training, the DeepSpeed engine holding one (its forward
    runs as in training); it must be in eval mode on `device`. bf16 weights run under autocast; through an
    engine's forward DeepSpeed's bf16 mode turns it off (as in training, `netgpt.train.step`), its
    `generate_levels` keeps it.
    `synced_gpus=True` when ZeRO-3 ranks generate together (each rank steps until all are done)."""
    device = torch.device(device)
    unknown = [name for name in predictions if name not in PREDICTIONS]
    if unknown:
        raise ValueError(f"predictions: unknown {unknown}; expected among {list(PREDICTIONS)}")
    batch = batch.to(device)
    fields: list[SeedFields] = batch.seed_fields
    rows: dict[str, list] = {
        "sample_id": [int(f["sample_id"]) for f in fields],
        "platform": [f["platform"] for f in fields],
        "level": [None if f.get("level") is None else int(f["level"]) for f in fields],
    }
    with_graph = prompt_builder.num_graph_tokens > 0
    uses_llm = "regression" in predictions or "answer" in predictions
    prompts = prompt_builder.encode(fields, with_answer=False).to(device) if uses_llm else None
    autocast = torch.autocast(
        device.type, dtype=torch.bfloat16, enabled=next(model.parameters()).dtype == torch.bfloat16
    )
    with autocast:
        out = model(batch, prompts, {}, graph_tokens=with_graph)
        if "graph" in predictions:
            rows["graph"] = out.graph_pred.float().cpu().tolist()
        if "regression" in predictions:
            rows["regression"] = out.prompt_pred.float().cpu().tolist()
        if "answer" in predictions:
            rows["answer"] = model.generate_levels(
                batch,
                prompts,
                synced_gpus=synced_gpus,
                graph_tokens=with_graph,
                answers=[prompt_builder.answer_ids(level) for level in range(NUM_LEVELS)],
            )
    return rows


def to_level(score: float | None) -> int | None:
    """A score as a level 0-9: round(clip(score, 0, 9)), halves to even as ACC rounds them; None (an
    unparsable answer, or NaN) stays None."""
    if score is None or math.isnan(score):
        return None
    return round(min(max(score, 0.0), float(MAX_LEVEL)))

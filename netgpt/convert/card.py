"""The model card (`README.md`) of a converted folder: what it is, where it came from, how it scored.

The checkpoint's `trainer_state.json` says where in the curriculum it was taken and carries the scores known
for it (the stage's best validation MAE, the test metrics of the stages finished before it), so a folder
found later still says which model it holds.
"""

from __future__ import annotations

from pathlib import Path

from netgpt.config import StageConfig
from netgpt.convert.errors import ConvertError
from netgpt.convert.locate import CheckpointSource
from netgpt.model.netgpt import LLM_DIR, NetGPT, training_record
from netgpt.train.checkpoint import STATE_FILE, TrainerState


def read_state(checkpoint: Path) -> TrainerState:
    path = checkpoint / STATE_FILE
    if not path.is_file():
        raise ConvertError(f"{path}: missing; expected the trainer state rank 0 writes with every checkpoint")
    try:
        return TrainerState.from_json(path.read_text(encoding="utf-8"))
    except (ValueError, TypeError) as error:
        raise ConvertError(f"{path}: not a trainer state ({error})") from None


def stage_name(source: CheckpointSource, state: TrainerState, stages: list[str]) -> str:
    if source.best_stage:
        return source.best_stage
    if state.stage_index < len(stages):
        return stages[state.stage_index]
    return "(all stages done)"


def trained_record(source: CheckpointSource, state: TrainerState, stages: list[StageConfig]) -> dict | None:
    """The `training_record` of the checkpoint's weights: the stage that last trained them (a best/<stage>
    checkpoint's stage; a mid-stage checkpoint's stage; a stage-end checkpoint's finished stage), None for
    weights no stage has trained yet."""
    by_name = {stage.name: stage for stage in stages}
    if source.best_stage in by_name:
        stage = by_name[source.best_stage]
    elif state.stage_step > 0 and state.stage_index < len(stages):
        stage = stages[state.stage_index]
    elif 0 < state.stage_index <= len(stages):
        stage = stages[state.stage_index - 1]
    else:
        return None
    return training_record(stage.name, stage.predictions(), stage.graph_tokens)


def model_card(
    source: CheckpointSource, state: TrainerState, skeleton: NetGPT, stages: list[str], dtype: str
) -> str:
    cfg = skeleton.config
    llm_cfg = skeleton.llm.config.get_text_config()
    stage = stage_name(source, state, stages)
    parts = {
        name: sum(p.numel() for p in skeleton.get_submodule(name).parameters())
        for name in ("encoder", "projector", "llm", "graph_head", "prompt_head")
    }
    lines = [
        "# NetGPT",
        "",
        "A graph encoder joined to a causal LLM that rates how far a short video will spread (levels 0-9).",
        "Converted by `netgpt convert` from a DeepSpeed ZeRO checkpoint.",
        "",
        "## Checkpoint",
        "",
        f"- source: `{source.folder}` ({source.kind})",
        f"- stage: {stage} (stage_index {state.stage_index} in: {', '.join(stages)})",
        f"- steps: {state.stage_step} in the stage, {state.global_step} in the run",
        f"- weights: {dtype}, {sum(parts.values()):,} parameters "
        + "("
        + ", ".join(f"{name} {count:,}" for name, count in parts.items())
        + ")",
        "",
        "## Config",
        "",
        f"- encoder: {cfg.encoder}, hidden {cfg.hidden_size}, {cfg.num_layers} layers, "
        f"{cfg.num_graph_tokens} graph token(s), projector {cfg.projector_layers} layers",
        f"- LLM: {type(skeleton.llm).__name__} "
        + (f"from `{cfg.llm_path}`" if cfg.llm_path else "built from config (tiny_llm)")
        + f", hidden {llm_cfg.hidden_size}, {llm_cfg.num_hidden_layers} layers, "
        f"vocabulary {llm_cfg.vocab_size}",
        f"- prompts: language {cfg.prompt_language}, at most {cfg.max_prompt_tokens} tokens; "
        f"regression loss {cfg.regression_loss}",
        f"- feature dims: {dict(sorted(skeleton.feature_dims.items()))}",
        "",
        "## Metrics",
        "",
    ]
    if state.best_score is not None:
        what = (
            "this checkpoint's"
            if source.best_stage
            else "the stage's best so far (not necessarily this checkpoint's)"
        )
        lines.append(f"- validation MAE, {what}: {state.best_score:.4f}")
    else:
        lines.append("- validation: none recorded in this stage yet")
    if state.test_metrics:
        lines += ["", "| test metric | value |", "| --- | --- |"]
        lines += [f"| {name} | {value:.4f} |" for name, value in sorted(state.test_metrics.items())]
    else:
        lines.append("- test: no stage scored on the test split before this checkpoint")
    lines += [
        "",
        "## Use",
        "",
        "```python",
        "from netgpt.model.netgpt import NetGPT",
        "model = NetGPT.from_pretrained(folder)            # the whole model",
        "from transformers import AutoModelForCausalLM",
        f'llm = AutoModelForCausalLM.from_pretrained(folder / "{LLM_DIR}")   # the LLM alone',
        "```",
        "",
    ]
    return "\n".join(lines)

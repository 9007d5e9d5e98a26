"""DeepSpeed JSON (`ds_configs/` ships in the package) with its "auto" values filled from the training config.

Batch sizes, learning rate, weight decay and clipping are said once, in `TrainConfig`/`StageConfig`; the JSON
says only what is DeepSpeed's own business (ZeRO stage, offload, buckets). The values filled here are those of
the first stage: the trainer sets each stage's learning rate, weight decay and accumulation boundary itself
(one engine serves all stages, see `netgpt.train.stages`).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from netgpt.config import ConfigError, TrainConfig

MIN_BUCKET = 5_000_000
"""Elements: the smallest ZeRO communication bucket (20 MB in float32)."""


def use_bf16(train: TrainConfig) -> bool:
    """bf16 on GPU when `train.bf16` is `auto`; fp32 on CPU (CPU bf16 matmuls are slow and lossy)."""
    return train.use_gpu if train.bf16 == "auto" else train.bf16 == "true"


PACKAGE_DIR = Path(__file__).resolve().parents[1]
"""The installed `netgpt` folder: `ds_configs/zero3.json` names the JSON shipped in it, wherever it runs."""


def _resolve(path: str | Path) -> Path:
    path = Path(path)
    if path.is_file():
        return path
    shipped = PACKAGE_DIR / path
    if not path.is_absolute() and shipped.is_file():
        return shipped
    raise ConfigError(f"config key 'train.ds_config': DeepSpeed JSON {str(path)!r} not found")


def read_ds_config(path: str | Path) -> dict[str, Any]:
    """The DeepSpeed JSON at `path` (relative to the cwd, else to the installed package, which holds
    `ds_configs/`), "auto" values unfilled.

    The driver reads it and hands the content to the Train workers: on other nodes, a relative path (or a
    file only the driver has) would not be there."""
    resolved = _resolve(path)
    try:
        return json.loads(resolved.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ConfigError(f"{resolved}: not valid JSON ({error})") from None


def build_ds_config(
    train: TrainConfig, world_size: int, llm_hidden_size: int, template: dict[str, Any] | None = None
) -> dict[str, Any]:
    """`template` (default: `train.ds_config` read here) with every "auto" replaced by its value; an unknown
    "auto" is an error."""
    path = train.ds_config
    config = copy.deepcopy(template) if template is not None else read_ds_config(path)
    first = train.stages[0]
    hidden = llm_hidden_size
    values: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": first.micro_batch_size,
        "gradient_accumulation_steps": first.grad_accum,
        "train_batch_size": first.micro_batch_size * first.grad_accum * world_size,
        "gradient_clipping": train.grad_clip,
        "bf16.enabled": use_bf16(train),
        "optimizer.params.lr": first.lr,
        "optimizer.params.weight_decay": first.weight_decay,
        # the sizes Hugging Face's Trainer derives from the hidden size for ZeRO-3, with a floor: for small
        # models hidden² buckets mean hundreds of tiny collectives a step, whose latency then dominates
        "zero_optimization.reduce_bucket_size": max(hidden * hidden, MIN_BUCKET),
        "zero_optimization.allgather_bucket_size": max(hidden * hidden, MIN_BUCKET),
        "zero_optimization.stage3_prefetch_bucket_size": max(int(0.9 * hidden * hidden), MIN_BUCKET),
        # Nothing kept whole on every rank (Hugging Face's 10 × hidden keeps biases and norms): DeepSpeed
        # gathers kept parameters after every optimizer step with one collective each (dozens a step, most of
        # a small model's step on gloo), while partitioned ones travel with their module's coalesced fetch.
        "zero_optimization.stage3_param_persistence_threshold": 0,
    }

    def fill(node: dict[str, Any], prefix: str) -> None:
        for key, value in node.items():
            dotted = f"{prefix}{key}"
            if isinstance(value, dict):
                fill(value, f"{dotted}.")
            elif value == "auto":
                if dotted not in values:
                    raise ConfigError(f'{path}: no value to fill for "auto" at {dotted!r}')
                node[key] = values[dotted]

    fill(config, "")
    config.setdefault("bf16", {})["enabled"] = use_bf16(train)
    return config


def zero_stage(ds_config: dict[str, Any]) -> int:
    return int(ds_config.get("zero_optimization", {}).get("stage", 0))


_FP32_NAMES = ("fp32", "float32", "float", "torch.float32")
"""The names DeepSpeed's `DtypeEnum` takes for fp32 (read here without importing DeepSpeed)."""


def accumulates_grads_in_fp32(ds_config: dict[str, Any]) -> bool:
    """Whether DeepSpeed accumulates the gradients in fp32 (`data_types.grad_accum_dtype`); without the key
    it accumulates them in the weights' dtype."""
    return str(ds_config.get("data_types", {}).get("grad_accum_dtype", "")).lower() in _FP32_NAMES

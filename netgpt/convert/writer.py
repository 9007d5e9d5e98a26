"""Write the NetGPT folder (`NetGPT.save_pretrained`'s format) from lazily consolidated tensors.

The LLM's tensors go to safetensors shards planned by huggingface_hub's `split_torch_state_dict_into_shards`
(the planner `PreTrainedModel.save_pretrained` itself uses) from shapes alone, then each shard is built,
written and dropped before the next: memory holds one output shard, not the model. Configs, generation
config and tokenizer come from the meta-device skeleton, exactly as `save_pretrained` would write them.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from huggingface_hub import split_torch_state_dict_into_shards
from safetensors.torch import save_file
from transformers import PreTrainedModel
from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME

from netgpt.convert.shards import Consolidated
from netgpt.convert.skeleton import saved_llm_names
from netgpt.model.netgpt import CONFIG_FILE, LLM_DIR, PART_FILES, NetGPT

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
DEFAULT_MAX_SHARD_SIZE = "500MB"
"""Largest LLM shard (a larger tensor gets a shard of its own): conversion holds one shard in memory, so
memory grows with it (transformers' own default is 50GB)."""
SAFETENSORS_METADATA = {"format": "pt"}


def write_folder(
    folder: Path,
    skeleton: NetGPT,
    weights: Consolidated,
    dtype: torch.dtype,
    max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE,
    training: dict | None = None,
) -> None:
    """Everything `NetGPT.from_pretrained(folder)` reads, into the existing empty `folder`; `training`: the
    weights' `training_record` (what `netgpt evaluate` and `predict` rate them on)."""
    llm_dir = folder / LLM_DIR
    llm_dir.mkdir()
    write_llm(llm_dir, skeleton.llm, weights, f"{LLM_DIR}.", dtype, max_shard_size)
    skeleton.tokenizer.save_pretrained(llm_dir)
    state = skeleton.state_dict()
    for part, file in PART_FILES.items():
        prefix = f"{part}."
        part_state = {
            name[len(prefix) :]: weights.tensor(name, dtype) for name in state if name.startswith(prefix)
        }
        save_file(part_state, folder / file, metadata=SAFETENSORS_METADATA)
        del part_state
    (folder / CONFIG_FILE).write_text(
        json.dumps(skeleton.folder_config(training), indent=2, ensure_ascii=False), encoding="utf-8"
    )


def write_llm(
    folder: Path,
    llm: PreTrainedModel,
    weights: Consolidated,
    prefix: str,
    dtype: torch.dtype,
    max_shard_size: int | str,
) -> dict[str, list[str]]:
    """The LLM's HF folder: weights (`model.safetensors`, or shards plus their index), config.json and
    generation_config.json. Returns each weights file's tensor names."""
    meta_state = llm.state_dict()
    shapes = {
        name: torch.empty(
            meta_state[name].shape,
            dtype=dtype if meta_state[name].is_floating_point() else meta_state[name].dtype,
            device="meta",
        )
        for name in saved_llm_names(llm)
    }
    pattern = SAFE_WEIGHTS_NAME.replace(".safetensors", "{suffix}.safetensors")
    plan = split_torch_state_dict_into_shards(shapes, filename_pattern=pattern, max_shard_size=max_shard_size)
    for file, names in plan.filename_to_tensors.items():
        shard = {name: weights.tensor(prefix + name, dtype) for name in names}
        save_file(shard, folder / file, metadata=SAFETENSORS_METADATA)
        del shard
    if plan.is_sharded:
        index = {
            "metadata": {"total_parameters": llm.num_parameters(), **plan.metadata},
            "weight_map": plan.tensor_to_filename,
        }
        (folder / SAFE_WEIGHTS_INDEX_NAME).write_text(
            json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
    # what save_pretrained records of the model it saves
    llm.config.dtype = str(dtype).removeprefix("torch.")
    llm.config.architectures = [type(llm).__name__]
    llm.config.save_pretrained(folder)
    if llm.can_generate():
        llm.generation_config.save_pretrained(folder)
    return dict(plan.filename_to_tensors)

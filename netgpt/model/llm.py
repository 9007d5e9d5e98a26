"""The causal LLM: any `AutoModelForCausalLM` from `model.llm_path` (an HF folder, a GGUF file, or a GGUF in
a pip package; see `netgpt.model.pretrained`), or a tiny Qwen2 built from config."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
    Qwen2Config,
)
from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

from netgpt.config import ModelConfig, TinyLLMConfig
from netgpt.model.pretrained import llm_folder
from netgpt.model.tokenizer import add_graph_tokens


def load_tokenizer(model_cfg: ModelConfig) -> PreTrainedTokenizerBase:
    """The tokenizer of `model_cfg.llm_path` with the graph tokens (a tiny LLM's is `train_tokenizer`'s)."""
    return add_graph_tokens(load_saved_tokenizer(llm_folder(model_cfg)))


def load_saved_tokenizer(folder: str | Path) -> PreTrainedTokenizerBase:
    """The tokenizer of an HF folder, exactly as its `tokenizer.json` says.

    `AutoTokenizer` would pick the class of the folder's model type (e.g. Qwen2Tokenizer for our tiny Qwen2),
    which rebuilds its own pre-tokenizer and so tokenizes a runtime-trained BPE differently after a reload."""
    if (Path(folder) / "tokenizer.json").is_file():
        return PreTrainedTokenizerFast.from_pretrained(folder)
    return AutoTokenizer.from_pretrained(folder)


def build_llm(model_cfg: ModelConfig, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
    """Load `model_cfg.llm_path` (never the hub), or build `model_cfg.tiny_llm` sized to the tokenizer.

    Call it under `HfDeepSpeedConfig` to build the LLM straight into ZeRO-3 shards. Embeddings are resized
    when the tokenizer has tokens the LLM lacks (the graph tokens)."""
    if model_cfg.llm_path:
        llm = AutoModelForCausalLM.from_pretrained(llm_folder(model_cfg), local_files_only=True)
    else:
        llm = AutoModelForCausalLM.from_config(tiny_llm_config(model_cfg.tiny_llm, tokenizer, model_cfg))
    grow_vocabulary(llm, len(tokenizer))
    return llm


def grow_vocabulary(llm: PreTrainedModel, num_tokens: int) -> None:
    """Give `llm` rows for `num_tokens` tokens when it has fewer (its input embeddings and an untied output
    head), each new row the mean of the old ones. Works on ZeRO-3 shards and on meta-device skeletons.

    Written here, not left to `resize_token_embeddings`' default mean resizing: that draws the new rows from
    a normal around the same mean with 1e-9 times the old rows' covariance, a vocabulary x hidden x hidden
    product (twice where the head is tied) for noise of that size. With Gemma 3's 262k tokens it took about
    7 s on 2 CPU cores, at every build of the model: each worker, each evaluation actor."""
    old = llm.get_input_embeddings().num_embeddings
    if old >= num_tokens:
        return
    llm.resize_token_embeddings(num_tokens, mean_resizing=False)
    embeddings, head = llm.get_input_embeddings(), llm.get_output_embeddings()
    grown = [embeddings.weight]
    if head is not None and head.weight is not embeddings.weight:
        grown += [head.weight] + ([head.bias] if getattr(head, "bias", None) is not None else [])
    with _gathered(grown), torch.no_grad():
        for param in grown:
            param[old:] = param[:old].float().mean(dim=0).to(param.dtype)


def _gathered(params: list[torch.nn.Parameter]) -> contextlib.AbstractContextManager:
    """Whole parameters within the block (ZeRO-3 partitions them: rank 0's changes are kept)."""
    if not is_deepspeed_zero3_enabled():
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(params, modifier_rank=0)


def tiny_llm_config(
    tiny: TinyLLMConfig, tokenizer: PreTrainedTokenizerBase, model_cfg: ModelConfig
) -> Qwen2Config:
    return Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=tiny.hidden_size,
        intermediate_size=tiny.intermediate_size,
        num_hidden_layers=tiny.num_layers,
        num_attention_heads=tiny.num_heads,
        num_key_value_heads=tiny.num_kv_heads or tiny.num_heads,
        max_position_embeddings=model_cfg.max_prompt_tokens + 16,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )

"""The causal LLM: any `AutoModelForCausalLM` from `model.llm_path` (an HF folder, a GGUF file, or a GGUF in
a pip package; see `netgpt.model.pretrained`), or a tiny Qwen2 built from config."""

from __future__ import annotations

from pathlib import Path

from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

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
    if llm.get_input_embeddings().num_embeddings < len(tokenizer):
        llm.resize_token_embeddings(len(tokenizer))
    return llm


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

"""The causal LLM: any `AutoModelForCausalLM` from a local folder (HF or GGUF), or a tiny Qwen2 (config)."""

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
from netgpt.model.tokenizer import add_graph_tokens


def load_tokenizer(model_cfg: ModelConfig) -> PreTrainedTokenizerBase:
    """The tokenizer of `model_cfg.llm_path` with the graph tokens (a tiny LLM's is `train_tokenizer`'s)."""
    folder = _llm_folder(model_cfg)
    if model_cfg.gguf_file:
        return add_graph_tokens(AutoTokenizer.from_pretrained(folder, gguf_file=model_cfg.gguf_file))
    return add_graph_tokens(load_saved_tokenizer(folder))


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
        kwargs = {"gguf_file": model_cfg.gguf_file} if model_cfg.gguf_file else {}
        llm = AutoModelForCausalLM.from_pretrained(_llm_folder(model_cfg), local_files_only=True, **kwargs)
        if getattr(llm, "hf_quantizer", None) is not None:
            # A GGUF file is dequantized on load; the model must not claim a quantization it no longer has.
            llm.hf_quantizer = None
            llm.config.quantization_config = None
            llm.is_quantized = False
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


def _llm_folder(model_cfg: ModelConfig) -> Path:
    folder = Path(model_cfg.llm_path)
    if not folder.is_dir():
        raise FileNotFoundError(f"model.llm_path: expected a local folder holding the LLM, got {folder}")
    if model_cfg.gguf_file and not (folder / model_cfg.gguf_file).is_file():
        raise FileNotFoundError(f"model.gguf_file: {folder / model_cfg.gguf_file} does not exist")
    return folder

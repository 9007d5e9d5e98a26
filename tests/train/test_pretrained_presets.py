"""The `small` (SmolLM2-135M, English prompts) and `small_zh` (Gemma 3 270M, Chinese prompts) presets: each
LLM ships as a GGUF in a pip package, is converted once into a cached HF folder, loads with its own
tokenizer, and trains one step of the last stage (every part, answer CE + regression) under DeepSpeed
ZeRO-3, one process. The whole curriculum on data is the quality benchmark's job; this is the fast check."""

from __future__ import annotations

import math

import pytest
import torch

from netgpt.config import load_config
from netgpt.graph.types import feature_dims
from netgpt.model.llm import load_tokenizer
from netgpt.model.pretrained import SOURCE_FILE, llm_folder
from netgpt.train.engine import avoid_jit_builds, build_engine
from netgpt.train.monitor import StepMeter
from netgpt.train.stages import freeze_for_stage, set_stage_hparams
from netgpt.train.step import train_step

FEATURE_DIMS = feature_dims(text_dim=6, time_dim=4, content_dim=5)


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("preset", "language", "model_type", "hidden"),
    [("small", "en", "llama", 576), ("small_zh", "zh", "gemma3_text", 640)],
)
def test_pretrained_preset_loads_and_trains_one_step(
    preset, language, model_type, hidden, llm_cache, process_group, batch_maker
):
    config = load_config(
        preset,
        ["train.num_workers=1", "model.hidden_size=16", f"model.llm_cache_dir={llm_cache}"],
    )
    assert config.model.prompt_language == language
    tokenizer = load_tokenizer(config.model)  # converts the GGUF into the cache (or finds it there)
    folder = llm_folder(config.model)
    assert folder.parent == llm_cache and (folder / SOURCE_FILE).is_file()
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    text = "这条视频发布两周后的传播影响力等级"
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text

    avoid_jit_builds()
    engine, _ = build_engine(config, FEATURE_DIMS, tokenizer, world_size=1)
    llm = engine.module.llm
    assert llm.config.model_type == model_type and llm.config.hidden_size == hidden
    stage = config.train.stages[-1]
    assert set(stage.active_parts()) == {"encoder", "projector", "llm", "graph_head", "prompt_head"}
    set_stage_hparams(engine.optimizer, stage, freeze_for_stage(engine.module, stage), factor=1.0)
    builder = engine.module.prompt_builder()
    assert builder.language == language
    batch = batch_maker(2, seed=1)
    ids = builder.encode(batch.seed_fields, with_answer=True)
    real = ids.input_ids[0][ids.attention_mask[0].bool()]
    assert ("视频" in tokenizer.decode(real)) == (language == "zh")
    if tokenizer.bos_token_id is not None and tokenizer("a")["input_ids"][0] == tokenizer.bos_token_id:
        assert int(real[0]) == tokenizer.bos_token_id  # Gemma reads text poorly without its <bos>

    embedding = llm.get_input_embeddings().weight
    before = embedding.ds_tensor.detach().clone()
    losses = train_step(engine, [batch], stage, builder, StepMeter())
    assert all(math.isfinite(value) for value in losses.values())
    # a pretrained LM reads the prompt better than chance over its vocabulary (weights loaded wrongly, e.g.
    # unpermuted attention, land far above it)
    assert losses["answer_ce"] < math.log(len(tokenizer))
    assert not torch.equal(before, embedding.ds_tensor.detach())

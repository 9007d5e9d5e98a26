"""A tiny NetGPT saved as a model folder, for the store of `held_out_world` (tests/conftest.py)."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from netgpt.config import ModelConfig, TinyLLMConfig
from netgpt.graph.store import read_meta
from netgpt.model.netgpt import NetGPT
from netgpt.model.prompt import TEMPLATES
from netgpt.model.tokenizer import train_tokenizer


@pytest.fixture(scope="session")
def model_dir(held_out_world):
    """An untrained tiny NetGPT (2 encoder layers, a 1-layer Qwen2), its tokenizer trained on the tables."""
    config = held_out_world.config
    table = pq.read_table(
        f"{config.data.tables_dir}/samples.parquet", columns=["title", "description", "topic"]
    )
    texts = [*TEMPLATES.values()] * 5 + [text for column in table.columns for text in column.to_pylist()]
    model_cfg = ModelConfig(
        hidden_size=16,
        num_layers=2,
        projector_layers=1,
        max_prompt_tokens=600,
        tiny_llm=TinyLLMConfig(
            hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, vocab_size=600
        ),
    )
    tokenizer = train_tokenizer(texts, vocab_size=model_cfg.tiny_llm.vocab_size)
    model = NetGPT.build(model_cfg, read_meta(config.graph.store_dir)["feature_dims"], tokenizer)
    return model.save_pretrained(held_out_world.root / "model")

"""Hand-made sampled batches that follow docs/graph.md#a-sampled-batch, a tokenizer trained at test time,
a tiny config."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import HeteroData

from netgpt.config import ModelConfig, TinyLLMConfig
from netgpt.graph.seeds import SeedFields
from netgpt.graph.types import EDGE_TYPES, NODE_TYPE_NAMES, VIDEO, feature_dims
from netgpt.model.prompt import TEMPLATES
from netgpt.model.tokenizer import train_tokenizer

FEATURE_DIMS = feature_dims(text_dim=6, time_dim=4, content_dim=5)


def seed_fields(sample_id: int, level: int, **changes) -> SeedFields:
    fields: SeedFields = {
        "sample_id": sample_id,
        "platform": "抖音",
        "topic": "冬至吃饺子",
        "title": "Dumplings for the winter solstice #food",
        "description": "We made dumplings with the whole family.",
        "post_time": "2024-12-21 08:30:00",
        "crawl_date": "2024-12-23",
        "duration_s": 42.6,
        "fans": 1200,
        "likes": 35,
        "views": 0,
        "shares": 4,
        "collects": 7,
        "comment_count": 12,
        "level": level,
        "split": "train",
    }
    fields.update(changes)
    return fields


def make_batch(
    num_seeds: int = 2,
    num_videos: int = 4,
    seed: int = 0,
    empty_types: tuple[str, ...] = (),
    empty_relations: tuple[str, ...] = (),
) -> HeteroData:
    """A small sampled batch: `num_videos` video nodes (seeds first), one attribute node of each per-sample
    type per video, two comments per seed, a history chain and same-topic edges, every type present."""
    generator = torch.Generator().manual_seed(seed)
    batch = HeteroData()
    counts = {nt: num_videos for nt in NODE_TYPE_NAMES}
    counts.update(topic=1, platform=1, comment=2 * num_seeds)
    for nt in empty_types:
        counts[nt] = 0
    for nt in NODE_TYPE_NAMES:
        batch[nt].x = torch.randn(counts[nt], FEATURE_DIMS[nt], generator=generator)
    for src, rel, dst in EDGE_TYPES:
        if src == VIDEO:
            pairs = {
                "is_history_of": [(v + 1, v) for v in range(num_videos - 1)],
                "has_same_topic_as": [(v, s) for s in range(num_seeds) for v in range(num_seeds, num_videos)],
                "has_same_author_as": [],
            }[rel]
        elif src == "comment":
            pairs = [(c, c // 2) for c in range(counts["comment"])]
        elif counts[src] == 1:
            pairs = [(0, v) for v in range(num_videos)]
        else:
            pairs = [(v, v) for v in range(counts[src])]
        if rel in empty_relations or counts[src] == 0:
            pairs = []
        batch[src, rel, dst].edge_index = (
            torch.tensor(pairs, dtype=torch.long).reshape(-1, 2).t().contiguous()
        )
    batch[VIDEO].batch_size = num_seeds
    levels = [(3 + 4 * i) % 10 for i in range(num_seeds)]
    batch[VIDEO].y = torch.tensor(levels, dtype=torch.float32)
    batch[VIDEO].sample_id = torch.arange(100, 100 + num_videos, dtype=torch.long)
    batch.seed_fields = [seed_fields(100 + i, levels[i]) for i in range(num_seeds)]
    return batch


@pytest.fixture(name="make_batch")
def make_batch_fixture():
    """The batch factory (a fixture, so test modules never import this conftest by name)."""
    return make_batch


@pytest.fixture(name="feature_dims")
def feature_dims_fixture() -> dict[str, int]:
    return dict(FEATURE_DIMS)


@pytest.fixture(scope="session")
def tokenizer():
    texts = [
        *TEMPLATES.values(),
        "Douyin not shown 0 1 2 3 4 5 6 7 8 9 未显示",
        "Dumplings for the winter solstice #food We made dumplings with the whole family. 冬至吃饺子",
    ] * 20
    return train_tokenizer(texts, vocab_size=600)


@pytest.fixture
def model_cfg() -> ModelConfig:
    return ModelConfig(
        hidden_size=16,
        num_layers=2,
        projector_layers=2,
        max_prompt_tokens=400,
        tiny_llm=TinyLLMConfig(
            hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, vocab_size=600
        ),
    )

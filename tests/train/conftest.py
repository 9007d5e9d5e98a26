"""Contract-shaped sampled batches (contracts §1) and a tiny config for single-process engine tests."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
from torch_geometric.data import HeteroData

from netgpt.config import load_config
from netgpt.graph.types import EDGE_TYPES, NODE_TYPE_NAMES, VIDEO, feature_dims
from netgpt.model.tokenizer import train_tokenizer

FEATURE_DIMS = feature_dims(text_dim=6, time_dim=4, content_dim=5)
PLATFORMS = ("抖音", "快手")


def make_batch(num_seeds: int = 2, seed: int = 0) -> HeteroData:
    """`num_seeds` seeds plus as many earlier video states; one node of every attribute type per video."""
    generator = torch.Generator().manual_seed(seed)
    videos = 2 * num_seeds
    batch = HeteroData()
    counts = {nt: videos for nt in NODE_TYPE_NAMES} | {"topic": 1, "platform": 1}
    for nt in NODE_TYPE_NAMES:
        batch[nt].x = torch.randn(counts[nt], FEATURE_DIMS[nt], generator=generator)
    for src, rel, dst in EDGE_TYPES:
        if src == VIDEO:
            pairs = [(num_seeds + s, s) for s in range(num_seeds)]
        elif counts[src] == 1:
            pairs = [(0, v) for v in range(videos)]
        else:
            pairs = [(v, v) for v in range(videos)]
        batch[src, rel, dst].edge_index = torch.tensor(pairs, dtype=torch.long).t().contiguous()
    levels = torch.randint(0, 10, (num_seeds,), generator=generator)
    batch[VIDEO].batch_size = num_seeds
    batch[VIDEO].y = levels.float()
    batch[VIDEO].sample_id = torch.arange(seed * 100, seed * 100 + videos)
    batch.seed_fields = [
        {
            "sample_id": seed * 100 + i,
            "platform": PLATFORMS[i % 2],
            "topic": "winter food",
            "title": f"video {seed}-{i} dumplings #food",
            "description": "made at home",
            "post_time": "2024-12-01 08:30:00",
            "crawl_date": "2024-12-03",
            "duration_s": 30.0,
            "fans": 100 * i,
            "likes": 10,
            "views": 0,
            "shares": 1,
            "collects": 2,
            "comment_count": 3,
            "level": int(levels[i]),
            "split": "train",
        }
        for i in range(num_seeds)
    ]
    return batch


@pytest.fixture(scope="session")
def batch_maker():
    return make_batch


@pytest.fixture(scope="session")
def tokenizer():
    texts = [f"video {i} dumplings #food made at home winter" for i in range(50)]
    return train_tokenizer(texts, vocab_size=300)


def _tiny_config():
    return load_config(
        "demo",
        [
            "model.hidden_size=16",
            "model.max_prompt_tokens=512",
            "model.tiny_llm.hidden_size=32",
            "model.tiny_llm.num_layers=1",
            "model.tiny_llm.intermediate_size=64",
            "train.num_workers=1",
        ],
    )


@pytest.fixture(scope="session")
def make_tiny_config():
    """`make_tiny_config()`: a fresh tiny one-worker config per call (tests change theirs)."""
    return _tiny_config


@pytest.fixture()
def tiny_config(make_tiny_config):
    return make_tiny_config()


@pytest.fixture(scope="module")
def process_group():
    """A one-process gloo group, as Ray Train would set up (world size 1)."""
    if not dist.is_initialized():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        os.environ.update(
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            RANK="0",
            WORLD_SIZE="1",
            LOCAL_RANK="0",
            LOCAL_WORLD_SIZE="1",
        )
        dist.init_process_group("gloo", rank=0, world_size=1)
    yield

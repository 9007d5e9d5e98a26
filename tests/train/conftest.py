"""Contract-shaped sampled batches (docs/graph.md#a-sampled-batch) and a tiny config for single-process
engine tests."""

from __future__ import annotations

import os
import socket

import pytest
import torch.distributed as dist
from torch_geometric.data import HeteroData

from netgpt.config import load_config
from netgpt.graph.example_batch import example_batch
from netgpt.graph.types import feature_dims
from netgpt.model.tokenizer import train_tokenizer
from netgpt.train.engine import avoid_jit_builds, build_engine

FEATURE_DIMS = feature_dims(text_dim=6, time_dim=4, content_dim=5)


def make_batch(num_seeds: int = 2, seed: int = 0) -> HeteroData:
    """`example_batch` with every field a prompt reads."""
    batch = example_batch(num_seeds, FEATURE_DIMS, seed)
    batch.seed_fields = [
        {
            **fields,
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
            "split": "train",
        }
        for i, fields in enumerate(batch.seed_fields)
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
def engine(process_group, make_tiny_config, tokenizer):
    """A one-process ZeRO-3 engine on the tiny config, and the config; one per test module."""
    avoid_jit_builds()
    config = make_tiny_config()
    engine, _ = build_engine(config, FEATURE_DIMS, tokenizer, world_size=1)
    return engine, config


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


def write_fake_checkpoint(folder, global_step: int, world_size: int = 2):
    """A checkpoint folder laid out as `checkpoint._write_shard` writes it on `world_size` ranks (each rank
    into a folder of its own, merged by renames as `save_checkpoint` merges them), with small stand-in
    DeepSpeed files: for the tests of what decides whether a checkpoint is complete, without DeepSpeed."""
    import json
    import tempfile
    from pathlib import Path

    from netgpt.atomic import move_files_into
    from netgpt.train.checkpoint import DS_TAG, STATE_FILE, TrainerState
    from netgpt.train.manifest import write_manifest
    from netgpt.train.rng_state import save_rng_state

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    for rank in range(world_size):
        own = Path(tempfile.mkdtemp(dir=folder.parent))  # renamed into folder: one file system
        (own / DS_TAG).mkdir()
        (own / DS_TAG / f"zero_pp_rank_{rank}_mp_rank_00_model_states.pt").write_bytes(bytes([rank]) * 64)
        (own / DS_TAG / f"zero_pp_rank_{rank}_mp_rank_00_optim_states.pt").write_bytes(bytes([rank]) * 256)
        (own / "latest").write_text(DS_TAG)
        save_rng_state(own, rank)
        if rank == 0:
            state = TrainerState(global_step=global_step, stage_index=0, world_size=world_size)
            (own / STATE_FILE).write_text(state.to_json())
        write_manifest(own, rank)
        move_files_into(own, folder)
    assert json.loads((folder / STATE_FILE).read_text())["global_step"] == global_step
    return folder


@pytest.fixture(scope="session")
def fake_checkpoint():
    """`fake_checkpoint(folder, global_step, world_size=2)`: see `write_fake_checkpoint`."""
    return write_fake_checkpoint

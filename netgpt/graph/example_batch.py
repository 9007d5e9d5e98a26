"""A sampled batch of the loader's shape built from nothing (random features, a fixed small topology): for
benchmarks (`tools/bench/gpu.py`) and the engine tests, where a store and a sampler would only add time."""

from __future__ import annotations

import torch
from torch_geometric.data import HeteroData

from netgpt.graph.types import EDGE_TYPES, NODE_TYPE_NAMES, VIDEO

PLATFORMS = ("抖音", "快手")


def example_batch(num_seeds: int, feature_dims: dict[str, int], seed: int = 0) -> HeteroData:
    """`num_seeds` seeds plus as many earlier video states, one node of every attribute type per video (one
    topic, one platform), every relation present; seed fields carry `sample_id`, `platform` and `level`."""
    generator = torch.Generator().manual_seed(seed)
    videos = 2 * num_seeds
    batch = HeteroData()
    counts = {nt: videos for nt in NODE_TYPE_NAMES} | {"topic": 1, "platform": 1}
    for nt in NODE_TYPE_NAMES:
        batch[nt].x = torch.randn(counts[nt], feature_dims[nt], generator=generator)
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
        {"sample_id": seed * 100 + i, "platform": PLATFORMS[i % 2], "level": int(levels[i])}
        for i in range(num_seeds)
    ]
    return batch

"""`rate_batch` on a batch sampled from a real store with a tiny saved NetGPT."""

from __future__ import annotations

import math

import numpy as np
import pytest

from netgpt.evaluate.rate import rate_batch, to_level
from netgpt.graph.sampler import NeighborSampler
from netgpt.graph.store import open_partition
from netgpt.model.netgpt import NetGPT


@pytest.fixture(scope="module")
def model(model_dir):
    return NetGPT.from_pretrained(model_dir)


@pytest.fixture(scope="module")
def sampler(held_out_world):
    return NeighborSampler(open_partition(held_out_world.config.graph.store_dir, 0), [3, 3], num_hops=2)


def test_one_entry_per_seed_in_batch_order(model, sampler) -> None:
    seeds = sampler.seed_sample_ids[[4, 0, 2]]
    batch = sampler.sample(seeds, np.random.default_rng(0))
    rated = rate_batch(model, batch, model.prompt_builder(), "cpu")
    assert tuple(rated) == ("sample_id", "platform", "level", "graph", "regression", "answer")
    assert all(len(values) == 3 for values in rated.values())
    assert rated["sample_id"] == seeds.tolist()
    assert rated["platform"] == [f["platform"] for f in batch.seed_fields]
    assert rated["level"] == [f["level"] for f in batch.seed_fields]
    assert all(isinstance(v, float) and math.isfinite(v) for v in rated["graph"] + rated["regression"])
    assert all(a is None or isinstance(a, float) for a in rated["answer"])
    again = rate_batch(model, sampler.sample(seeds, np.random.default_rng(0)), model.prompt_builder(), "cpu")
    assert again == rated  # eval mode, greedy: the same batch rates the same


def test_an_absent_level_stays_none(model, sampler) -> None:
    batch = sampler.sample(sampler.seed_sample_ids[:2], np.random.default_rng(0))
    batch.seed_fields[1]["level"] = None
    batch["video"].y[1] = float("nan")
    rated = rate_batch(model, batch, model.prompt_builder(), "cpu")
    assert rated["level"][0] is not None and rated["level"][1] is None


def test_to_level_rounds_and_clips() -> None:
    assert [to_level(s) for s in (-3.2, 0.49, 4.5, 5.51, 12.0, None)] == [0, 0, 4, 6, 9, None]

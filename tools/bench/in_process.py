"""What the one-process benches share (`model_step.py`, `checkpoint_save.py`): the demo's data, graph store,
tokenizer and ZeRO-3 engine built in a folder, and batches sampled beforehand; no Ray, no streams.

The caller has set up a one-process group (`gpu.init_process_group`) before `build`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class InProcessRun:
    config: Any
    engine: Any
    sampler: Any
    """A `NeighborSampler` over the store's first partition."""
    seed_ids: Any
    """Its train seeds."""

    def batches(self, seeds: int, count: int = 8) -> list:
        """`count` micro-batches of `seeds` train seeds each, sampled beforehand (the same every call)."""
        import numpy as np

        rng = np.random.default_rng(0)
        return [
            self.sampler.sample(rng.choice(self.seed_ids, seeds, replace=False), rng) for _ in range(count)
        ]


def build(folder: Path, videos: int, overrides: list[str]) -> InProcessRun:
    """The demo config on one worker with `overrides`, its synthetic data of `videos` videos imported and
    built into a store under `folder`, its tokenizer trained, and the engine built as a Train worker does."""
    from netgpt.config import load_config
    from netgpt.data.prepare import prepare
    from netgpt.data.synthetic import write_synthetic
    from netgpt.graph.build import build_graph
    from netgpt.graph.plan import split_seeds
    from netgpt.graph.sampler import NeighborSampler
    from netgpt.graph.store import open_partition, read_meta
    from netgpt.model.llm import load_saved_tokenizer
    from netgpt.train.engine import avoid_jit_builds, build_engine
    from netgpt.train.run import prepare_tokenizer

    config = load_config(
        "demo",
        [
            f"data.tables_dir={folder / 'tables'}",
            f"data.synth_videos={videos}",
            f"graph.store_dir={folder / 'graph'}",
            "train.num_workers=1",
            *overrides,
        ],
    )
    raw = write_synthetic(folder / "raw.json", videos=videos, seed=config.data.synth_seed)
    prepare(raw, config.data.tables_dir, config.data, progress=False)  # stdout holds the JSON lines only
    store = config.graph.store_dir
    build_graph(config.data.tables_dir, config.graph, store)
    meta = read_meta(store)
    sampler = NeighborSampler(open_partition(store, 0, meta), config.graph.fanouts, {}, meta["num_hops"])
    tokenizer = load_saved_tokenizer(prepare_tokenizer(config, folder / "run"))
    avoid_jit_builds()
    engine, _ = build_engine(config, meta["feature_dims"], tokenizer, 1)
    return InProcessRun(config, engine, sampler, split_seeds(str(store), "train")[0])

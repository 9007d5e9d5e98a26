"""What the one-process benches share (`model_step.py`, `checkpoint_save.py`): the demo's data, graph store,
tokenizer and ZeRO-3 engine built in a folder, and batches sampled beforehand; no Ray, no streams.

The caller has set up its process group (`gpu.init_process_group`) before `build` or `attach`.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
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

    def stepper(self, stage, batches: list) -> Callable[[], float]:
        """A function that runs `stage`'s next optimizer step (`netgpt.train.step.train_step`) over `batches`
        in turn, `grad_accum` of them a step, and returns its seconds; the stage's trained parts and learning
        rates are set first."""
        from netgpt.train.monitor import StepMeter
        from netgpt.train.stages import freeze_for_stage, set_stage_hparams
        from netgpt.train.step import train_step

        engine = self.engine
        set_stage_hparams(engine.optimizer, stage, freeze_for_stage(engine.module, stage), factor=1.0)
        prompts = engine.module.prompt_builder(stage.graph_tokens)
        steps = itertools.count()

        def step() -> float:
            index = next(steps)
            window = [batches[(index * stage.grad_accum + i) % len(batches)] for i in range(stage.grad_accum)]
            started = time.perf_counter()
            train_step(engine, window, stage, prompts, StepMeter())
            return time.perf_counter() - started

        return step


def build(folder: Path, videos: int, overrides: list[str]) -> InProcessRun:
    """The demo config on one worker with `overrides`, its synthetic data of `videos` videos imported and
    built into a store under `folder`, its tokenizer trained, and the engine built as a Train worker does."""
    return attach(prepare_folder(folder, videos, overrides), folder, world_size=1)


def demo_config(folder: Path, overrides: list[str], videos: int | None = None, world_size: int = 1):
    """The demo config with its tables and store under `folder`, on `world_size` workers, with `overrides`."""
    from netgpt.config import load_config

    synth = [f"data.synth_videos={videos}"] if videos is not None else []
    return load_config(
        "demo",
        [
            f"data.tables_dir={folder / 'tables'}",
            *synth,
            f"graph.store_dir={folder / 'graph'}",
            f"train.num_workers={world_size}",
            *overrides,
        ],
    )


def prepare_folder(folder: Path, videos: int, overrides: list[str]):
    """`demo_config`'s synthetic data of `videos` videos imported and built into a store under `folder`, and
    its tokenizer trained: what every process that `attach`es to `folder` reads. Returns the config."""
    from netgpt.data.prepare import prepare
    from netgpt.data.synthetic import write_synthetic
    from netgpt.graph.build import build_graph
    from netgpt.train.run import prepare_tokenizer

    config = demo_config(folder, overrides, videos)
    raw = write_synthetic(folder / "raw.json", videos=videos, seed=config.data.synth_seed)
    prepare(raw, config.data.tables_dir, config.data, progress=False)  # stdout holds the JSON lines only
    build_graph(config.data.tables_dir, config.graph, config.graph.store_dir)
    prepare_tokenizer(config, folder / "run")
    return config


def attach(config, folder: Path, world_size: int) -> InProcessRun:
    """A run on `prepare_folder`'s data: the store's first partition sampled, and the engine built as a
    Train worker does on this process's group of `world_size` ranks."""
    from netgpt.graph.plan import split_seeds
    from netgpt.graph.sampler import NeighborSampler
    from netgpt.graph.store import open_partition, read_meta
    from netgpt.model.llm import load_saved_tokenizer
    from netgpt.train.engine import avoid_jit_builds, build_engine
    from netgpt.train.run import prepare_tokenizer

    store = config.graph.store_dir
    meta = read_meta(store)
    sampler = NeighborSampler(open_partition(store, 0, meta), config.graph.fanouts, {}, meta["num_hops"])
    tokenizer = load_saved_tokenizer(prepare_tokenizer(config, folder / "run"))  # the one already written
    avoid_jit_builds()
    engine, _ = build_engine(config, meta["feature_dims"], tokenizer, world_size)
    return InProcessRun(config, engine, sampler, split_seeds(str(store), "train")[0])

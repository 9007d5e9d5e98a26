"""Shared fixtures of the multi-process tests: a small synthetic data set and graph store, an in-process Ray
cluster, and a tiny config (tiny LLM, 2 workers, ZeRO-3, three short stages)."""

from __future__ import annotations

from pathlib import Path

import pytest

from netgpt.config import NetGPTConfig, load_config

HERE = Path(__file__).parent

FIXTURE_BUDGET_S = {"ray_cluster": 30, "data_dir": 120, "baseline": 420}
"""The most each session fixture takes to set up on 2 cores, with the fixtures it needs (`baseline`: the data,
then a whole uninterrupted run)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test's `timeout` marker states what its own work needs; the setup of the session fixtures it uses
    is added here. pytest-timeout counts fixture setup, and a test selected alone (`pytest -k`) builds those
    fixtures itself, where after another test it finds them built: both must pass."""
    for item in items:
        marker = item.get_closest_marker("timeout")
        budgets = [FIXTURE_BUDGET_S[name] for name in item.fixturenames if name in FIXTURE_BUDGET_S]
        if marker is None or not marker.args or not budgets or HERE not in item.path.parents:
            continue
        item.add_marker(pytest.mark.timeout(marker.args[0] + max(budgets)), append=False)


TINY = [
    "data.synth_videos=120",
    "graph.fanouts=[5,5]",
    "graph.text.dim=16",
    "graph.content_dim=4",
    "model.hidden_size=16",
    "model.max_prompt_tokens=512",
    "model.tiny_llm.hidden_size=32",
    "model.tiny_llm.num_layers=1",
    "model.tiny_llm.num_heads=2",
    "model.tiny_llm.intermediate_size=64",
    "model.tiny_llm.vocab_size=400",
    "train.num_workers=2",
    "train.checkpoint_every=2",
    "train.keep_checkpoints=2",
    "train.log_every=1",
    "train.timeout_s=120",
    "train.stages.0.max_steps=4",
    "train.stages.0.micro_batch_size=8",
    "train.stages.0.lr=1e-2",
    "train.stages.0.patience=0",
    "train.stages.1.max_steps=3",
    "train.stages.1.micro_batch_size=4",
    "train.stages.1.grad_accum=2",
    "train.stages.1.warmup_steps=1",
    "train.stages.1.lr=1e-3",
    "train.stages.2.max_steps=3",
    "train.stages.2.micro_batch_size=4",
    "train.stages.2.grad_accum=1",
    "train.stages.2.warmup_steps=1",
    "train.stages.2.lr=1e-3",
]


def tiny_config(data_dir: Path, run_root: Path, run_name: str, extra: list[str] = ()) -> NetGPTConfig:
    return load_config(
        "demo",
        [
            *TINY,
            f"data.tables_dir={data_dir / 'tables'}",
            f"graph.store_dir={data_dir / 'graph'}",
            f"train.storage_path={run_root}",
            f"train.run_name={run_name}",
            *extra,
        ],
    )


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory, ray_cluster) -> Path:
    """Synthetic data → tables → graph store (120 videos, 2 partitions), built once per session."""
    from netgpt.data.prepare import prepare
    from netgpt.data.synthetic import write_synthetic
    from netgpt.graph.build import build_graph

    folder = tmp_path_factory.mktemp("data")
    config = tiny_config(folder, folder / "runs", "unused")
    raw = write_synthetic(folder / "raw.json", videos=config.data.synth_videos, seed=0)
    prepare(raw, folder / "tables", config.data)
    build_graph(folder / "tables", config.graph, folder / "graph")
    return folder


@pytest.fixture(scope="session")
def make_config():
    """`make_config(data_dir, run_root, run_name, extra=[])`: the tiny config with its paths."""
    return tiny_config


@pytest.fixture(scope="session")
def baseline(data_dir, tmp_path_factory):
    """One uninterrupted run of the tiny config on 2 workers, exported (shared by the tests of several
    modules); its progress snapshot records the seeds of every step of every rank (`seen`). It keeps 4
    checkpoints, the oldest of them in the middle of the second stage (step 6 of 10), which tests copy to
    resume from."""
    from netgpt.convert import export_run
    from netgpt.train.progress import ProgressActor
    from netgpt.train.run import train

    config = tiny_config(data_dir, tmp_path_factory.mktemp("runs"), "baseline", ["train.keep_checkpoints=4"])
    result = train(config, show_progress=False, progress=ProgressActor.remote(record_seeds=True))
    export_run(result.run_dir)
    return config, result

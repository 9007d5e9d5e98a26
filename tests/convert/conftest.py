"""One real run folder for the conversion tests, made once per session (about 30 s on 2 cores).

Two Ray Train workers build the tiny NetGPT on DeepSpeed ZeRO-3 exactly as the trainer does (`build_engine`),
take an optimizer step, save a checkpoint through the trainer's own `save_checkpoint` (so Ray Train registers
it), write the stage's best checkpoint through `save_best`, take another step and save a second checkpoint.
The run folder then has what a real run leaves: `config.yaml`, `tokenizer/`, Ray Train's registry, two
registered checkpoints and `best/<stage>`; the graph store is a `meta.json` with the feature dims.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from netgpt.config import load_config, save_config

FINAL_STAGE = "finetune"
TEST_METRICS = {"test/finetune/regression/mae": 1.25, "test/finetune/regression/acc": 0.5}
BEST_SCORE = 0.875


@dataclass
class Zero3Run:
    run_dir: Path
    mid: Path
    """The first registered checkpoint (after one step)."""
    latest: Path
    """The second, latest registered checkpoint (after two steps)."""
    best: Path
    """`best/finetune`, written between the two."""


def _train_conftest():
    """tests/train/conftest.py, for its contract-shaped batches (loaded by path: no test package)."""
    path = Path(__file__).resolve().parents[1] / "train" / "conftest.py"
    spec = importlib.util.spec_from_file_location("netgpt_tests_train_conftest", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _loop(loop_config: dict) -> None:
    """Each Ray Train worker: ZeRO-3 engine, step, checkpoint, best, step, checkpoint."""
    from pathlib import Path

    import ray.train
    import torch.distributed as dist
    from transformers import AutoTokenizer

    import netgpt
    from netgpt.train.checkpoint import TrainerState, save_best, save_checkpoint
    from netgpt.train.engine import avoid_jit_builds, build_engine
    from netgpt.train.monitor import StepMeter
    from netgpt.train.step import train_step

    assert str(Path(netgpt.__file__).resolve()).startswith(loop_config["source_root"]), netgpt.__file__
    avoid_jit_builds()
    config = loop_config["config"]
    rank = ray.train.get_context().get_world_rank()
    run_dir = Path(loop_config["run_dir"])
    tokenizer = AutoTokenizer.from_pretrained(loop_config["tokenizer_dir"])
    engine, _ = build_engine(config, loop_config["feature_dims"], tokenizer, world_size=2)
    stage = config.train.stages[-1]
    prompts = engine.module.prompt_builder()
    batches = loop_config["batches"][rank]
    train_step(engine, [batches[0]], stage, prompts, StepMeter())
    save_checkpoint(engine, TrainerState(stage_index=2, stage_step=1, global_step=1), {}, rank, run_dir)
    best_state = TrainerState(
        stage_index=2, stage_step=1, global_step=1, best_score=loop_config["best_score"]
    )
    best_state.test_metrics = dict(loop_config["test_metrics"])
    save_best(engine, run_dir, stage.name, best_state, rank)
    train_step(engine, [batches[1]], stage, prompts, StepMeter())
    save_checkpoint(engine, TrainerState(stage_index=2, stage_step=2, global_step=2), {}, rank, run_dir)
    dist.barrier()
    dist.destroy_process_group()


def make_zero3_run(root: Path, run_name: str = "run") -> Zero3Run:
    """Write a two-worker ZeRO-3 run under `root` (needs a Ray cluster); see the module docstring."""
    import ray
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from netgpt.graph.store import FORMAT_VERSION, META_FILE
    from netgpt.model.tokenizer import train_tokenizer

    train = _train_conftest()
    run_dir = root / run_name
    store = root / "graph"
    store.mkdir(parents=True)
    meta = {  # every field `read_meta` checks, no partitions: convert reads only the feature dims
        "format_version": FORMAT_VERSION,
        "node_types": [],
        "edge_types": [],
        "num_hops": 1,
        "feature_dims": train.FEATURE_DIMS,
        "counts": {"nodes": {}, "edges": {}},
        "topic_names": [],
        "platform_names": [],
        "text_encoder": {},
        "files": {},
        "partitions": [],
        "build": {"seconds": 0, "content_vectors": {}, "videos": 0},
    }
    (store / META_FILE).write_text(json.dumps(meta), encoding="utf-8")
    config = load_config(
        "demo",
        [
            "model.hidden_size=16",
            "model.max_prompt_tokens=512",
            "model.tiny_llm.hidden_size=32",
            "model.tiny_llm.num_layers=1",
            "model.tiny_llm.num_heads=2",
            "model.tiny_llm.intermediate_size=64",
            "model.tiny_llm.vocab_size=300",
            "train.num_workers=2",
            "train.timeout_s=120",
            f"train.storage_path={root}",
            f"train.run_name={run_name}",
            f"graph.store_dir={store}",
        ],
    )
    run_dir.mkdir(parents=True)
    save_config(config, run_dir)
    texts = [f"video {i} dumplings #food made at home winter" for i in range(50)]
    tokenizer_dir = run_dir / "tokenizer"
    train_tokenizer(texts, vocab_size=300).save_pretrained(tokenizer_dir)
    # ray.cloudpickle sends this module's loop by value: the workers cannot import a conftest by name.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    trainer = TorchTrainer(
        _loop,
        train_loop_config={
            "config": config,
            "run_dir": str(run_dir),
            "tokenizer_dir": str(tokenizer_dir),
            "feature_dims": train.FEATURE_DIMS,
            "batches": [[train.make_batch(2, seed=2 * r + s) for s in range(2)] for r in range(2)],
            "best_score": BEST_SCORE,
            "test_metrics": TEST_METRICS,
            "source_root": str(Path(__file__).resolve().parents[2]),
        },
        torch_config=TorchConfig(timeout_s=120),
        scaling_config=ScalingConfig(num_workers=2, use_gpu=False, resources_per_worker={"CPU": 1}),
        run_config=RunConfig(
            name=run_name, storage_path=str(root), checkpoint_config=CheckpointConfig(num_to_keep=None)
        ),
    )
    result = trainer.fit()
    if result.error is not None:
        raise result.error
    steps = sorted(run_dir.glob("step-*"))
    assert [p.name for p in steps] == ["step-00000001-r0", "step-00000002-r0"], steps
    return Zero3Run(run_dir=run_dir, mid=steps[0], latest=steps[1], best=run_dir / "best" / FINAL_STAGE)


@pytest.fixture(scope="session")
def zero3_run(tmp_path_factory, ray_cluster) -> Zero3Run:
    """The session's run folder (read-only for tests: copy it with `copy_run` to change it)."""
    return make_zero3_run(tmp_path_factory.mktemp("convert"))


@pytest.fixture()
def copy_run(zero3_run, tmp_path):
    """`copy_run()`: a private copy of the run folder (same layout), for tests that damage or extend it."""

    def copy() -> Zero3Run:
        target = tmp_path / "copy" / zero3_run.run_dir.name
        shutil.copytree(zero3_run.run_dir, target, symlinks=True)
        return Zero3Run(
            run_dir=target,
            mid=target / zero3_run.mid.name,
            latest=target / zero3_run.latest.name,
            best=target / "best" / FINAL_STAGE,
        )

    return copy


@pytest.fixture(scope="session")
def run_facts() -> dict:
    """What the session's run recorded in its best checkpoint, and a maker of contract-shaped batches."""
    return {
        "final_stage": FINAL_STAGE,
        "best_score": BEST_SCORE,
        "test_metrics": TEST_METRICS,
        "make_batch": _train_conftest().make_batch,
    }

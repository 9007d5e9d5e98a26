"""The driver: one `TorchTrainer` over the loader's streams, with progress shown while it runs.

    result = train(load_config("demo", ["train.num_workers=2"]))
    result.metrics["test/regression/acc"]
    export_run(result.run_dir)      # netgpt.convert: the HF-format NetGPT folder result.run_dir / "model"

`ray_jobs/train.py` (on a cluster, via `ray job submit`) and `netgpt train` (local Ray) both call `train`.
Re-running with the same `train.storage_path` and `train.run_name` resumes from the latest complete
checkpoint (a damaged newer one is skipped with a message: `netgpt.train.registry`).
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import ray
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from netgpt.atomic import replace_directory
from netgpt.config import NetGPTConfig, save_config
from netgpt.data.tables import read_samples
from netgpt.graph.loader import GraphStreams, split_size, stream_name
from netgpt.graph.store import read_meta, verify_store
from netgpt.model.pretrained import PACKAGE_PREFIX
from netgpt.train.checkpoint import FINAL_METRICS
from netgpt.train.ds_config import read_ds_config
from netgpt.train.plan import ensure_resources
from netgpt.train.progress import ProgressActor, run_with_progress
from netgpt.train.registry import prepare_resume
from netgpt.train.step import LossNotFinite
from netgpt.train.worker import train_loop_per_worker

TOKENIZER_TEXT_COLUMNS = ("title", "description", "topic")


@dataclass
class TrainResult:
    run_dir: Path
    """The run's folder: checkpoints, `tensorboard/`, `best/`, config, `model/` after export_run."""
    metrics: dict[str, float]
    """`final_metrics.json` of rank 0: test metrics (when scored), ZeRO parameter shares, global step."""
    progress: dict[str, Any]
    """The progress actor's last snapshot: validation summaries, worker pids and nodes, resumes."""
    sampler_nodes: list[str]
    """The Ray node of each sampler actor (`graph.sampler_resources` places them)."""


def run_dir_of(config: NetGPTConfig) -> Path:
    return Path(config.train.storage_path).resolve() / config.train.run_name


def prepare_tokenizer(config: NetGPTConfig, run_dir: Path) -> Path:
    """The run's tokenizer folder: the LLM's own, or (tiny LLM) a BPE trained on the train split's text.

    Written once per run; a resumed run reuses it, so the vocabulary never changes under a checkpoint."""
    from netgpt.model.llm import load_tokenizer
    from netgpt.model.prompt import template_words
    from netgpt.model.tokenizer import train_tokenizer

    folder = run_dir / "tokenizer"
    if (folder / "tokenizer_config.json").is_file():
        return folder
    if config.model.llm_path:
        tokenizer = load_tokenizer(config.model)
    else:
        table = read_samples(
            config.data.tables_dir, [*TOKENIZER_TEXT_COLUMNS, "split"], filters=pc.field("split") == "train"
        )
        # the template's words as often as prompts hold them, so the BPE merges them too
        words = template_words(config.model.prompt_language)
        texts = itertools.chain(
            (text for column in TOKENIZER_TEXT_COLUMNS for text in table[column].to_pylist()),
            itertools.chain.from_iterable(itertools.repeat(words, table.num_rows)),
        )
        tokenizer = train_tokenizer(texts, config.model.tiny_llm.vocab_size)
    partial = run_dir / ".tokenizer.partial"
    tokenizer.save_pretrained(partial)
    replace_directory(partial, folder)
    return folder


def with_absolute_paths(config: NetGPTConfig) -> NetGPTConfig:
    """A copy whose data, store and LLM paths are absolute: workers and actors do not share the driver's cwd
    (the DeepSpeed JSON travels to them as content, `read_ds_config`). A `package:` LLM is no path: kept."""
    config = copy.deepcopy(config)
    if config.model.llm_path and not config.model.llm_path.startswith(PACKAGE_PREFIX):
        config.model.llm_path = str(Path(config.model.llm_path).resolve())
    config.data.tables_dir = str(Path(config.data.tables_dir).resolve())
    config.graph.store_dir = str(Path(config.graph.store_dir).resolve())
    config.train.storage_path = str(Path(config.train.storage_path).resolve())
    return config


def build_trainer(
    config: NetGPTConfig, progress=None, evaluate_test: bool = True
) -> tuple[TorchTrainer, GraphStreams]:
    """The run's `TorchTrainer`: scaling, storage, retention, failures, one stream per stage and split."""
    config = with_absolute_paths(config)
    train_cfg = config.train
    run_dir = run_dir_of(config)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(config, run_dir)
    store_dir = config.graph.store_dir
    verify_store(store_dir)  # once per run, on the driver: every file's sha256 (the workers check sizes)
    feature_dims = read_meta(store_dir)["feature_dims"]
    prepare_resume(run_dir)  # the newest complete checkpoint, named in Ray's registry before `fit` reads it
    tokenizer_dir = prepare_tokenizer(config, run_dir)
    streams = GraphStreams(config.graph, store_dir)
    datasets, shapes = {}, {}
    for index, stage in enumerate(train_cfg.stages):
        seed = train_cfg.seed + 1000 * index
        splits = [("train", stage.epochs, True, seed), ("val", stage.epochs, False, seed)]
        if evaluate_test:
            splits.append(("test", 1, False, train_cfg.seed))
        for split, epochs, shuffle, split_seed in splits:
            name = stream_name(split, stage.name)
            datasets[name] = streams.dataset(split, stage.micro_batch_size, epochs, shuffle, split_seed)
            shapes[name] = streams.shape(split, stage.micro_batch_size)
    resources = {"CPU": train_cfg.cpus_per_worker, **train_cfg.worker_resources}
    if train_cfg.use_gpu:
        resources["GPU"] = 1
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "config": config,
            "run_dir": str(run_dir),
            "feature_dims": feature_dims,
            "tokenizer_dir": str(tokenizer_dir),
            "ds_template": read_ds_config(train_cfg.ds_config),
            "progress": progress,
            "evaluate_test": evaluate_test,
            "stream_starts": streams.starts,
            "stream_shapes": shapes,
            "split_sizes": {split: split_size(store_dir, split) for split in ("train", "val", "test")},
        },
        # gloo beside NCCL on GPUs: object collectives (validation rows) and any CPU tensor have a backend
        torch_config=TorchConfig(
            backend="cpu:gloo,cuda:nccl" if train_cfg.use_gpu else "gloo", timeout_s=train_cfg.timeout_s
        ),
        scaling_config=ScalingConfig(
            num_workers=train_cfg.num_workers, use_gpu=train_cfg.use_gpu, resources_per_worker=resources
        ),
        run_config=RunConfig(
            name=train_cfg.run_name,
            storage_path=str(run_dir.parent),
            checkpoint_config=CheckpointConfig(num_to_keep=train_cfg.keep_checkpoints),
            failure_config=FailureConfig(max_failures=train_cfg.max_failures),
        ),
        datasets=datasets,
        dataset_config=streams.data_config(list(datasets)),
    )
    return trainer, streams


def local_ray_resources(config: NetGPTConfig) -> dict[str, Any]:
    """`ray.init` arguments: join a running cluster (RAY_ADDRESS, or inside `ray job submit`), else start one.

    A local cluster gets enough logical CPUs for the Train workers, the sampler actors and Ray Data's tasks
    even on a 2-core machine (logical CPUs are slots, not cores: they oversubscribe, they do not deadlock)."""
    if os.environ.get("RAY_ADDRESS"):
        return {}
    train_cfg, graph_cfg = config.train, config.graph
    slots = (
        train_cfg.num_workers * train_cfg.cpus_per_worker
        + graph_cfg.num_partitions * graph_cfg.samplers_per_partition
        + 4
    )
    return {"num_cpus": max(slots, os.cpu_count() or 1), "include_dashboard": False, "log_to_driver": False}


def train(
    config: NetGPTConfig, show_progress: bool = True, evaluate_test: bool = True, progress=None
) -> TrainResult:
    """Run (or resume) the whole curriculum on the current Ray cluster (a local one if none is running).

    `progress`: a `ProgressActor` to post to (made when None); a caller may watch it during the run."""
    if not ray.is_initialized():
        ray.init(**local_ray_resources(config))
    plan = ensure_resources(config)  # fails now, naming what is missing, instead of actors waiting forever
    disk = plan.disk_note()
    if disk is not None:  # a warning, not a refusal: the plan's disk figure is an upper bound
        print(f"netgpt train: warning: {disk}", file=sys.stderr)
    if progress is None:  # on the driver's node: it outlives the loss of any worker node
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        progress = ProgressActor.options(scheduling_strategy=here).remote()
    trainer, streams = build_trainer(config, progress, evaluate_test)
    try:
        result = run_with_progress(trainer.fit, progress, show=show_progress)
        sampler_nodes = streams.sampler_nodes()
    finally:
        streams.shutdown()
    if result.error is not None:
        raise result.error
    snapshot = ray.get(progress.snapshot.remote())
    if snapshot["diverged"] is not None:  # the workers ended the run on it (`Curriculum.end_diverged`)
        raise LossNotFinite(snapshot["diverged"])
    run_dir = run_dir_of(config)
    metrics = json.loads((run_dir / FINAL_METRICS).read_text(encoding="utf-8"))
    return TrainResult(run_dir=run_dir, metrics=metrics, progress=snapshot, sampler_nodes=sampler_nodes)

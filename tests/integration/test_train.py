"""The whole curriculum on Ray Train + DeepSpeed ZeRO-3 with 2 CPU workers: three stages, checkpoints,
TensorBoard, the HF export (netgpt.convert, as the entry points call it), a worker killed mid-stage (resume
to the same weights, streams begun at the checkpoint's position), a run that diverges."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import ray
import torch
from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from netgpt.convert import export_run
from netgpt.convert.export import export_source
from netgpt.model.netgpt import NetGPT
from netgpt.train.manifest import checkpoint_problems
from netgpt.train.progress import ProgressActor
from netgpt.train.run import train
from netgpt.train.step import LossNotFinite

pytestmark = pytest.mark.integration


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    tensors = {}
    for file in sorted(model_dir.rglob("*.safetensors")):
        for name, value in load_file(file).items():
            tensors[f"{file.relative_to(model_dir)}:{name}"] = value
    return tensors


@pytest.mark.timeout(120)
def test_three_stages_on_two_zero3_workers(baseline):
    config, result = baseline
    metrics = result.metrics
    total_steps = sum(stage.max_steps for stage in config.train.stages)
    assert metrics["global_step"] == total_steps
    for rank in range(2):
        assert 0.4 < metrics[f"zero/param_share_rank{rank}"] < 0.6, metrics
    # both workers on this machine's local Ray, bound to half its cores each (train.bind_cores: auto, CPU)
    assert metrics["run/cores_bound"] == len(os.sched_getaffinity(0)) // 2
    for source in ("graph", "answer", "regression"):
        assert 0.0 <= metrics[f"test/{source}/acc"] <= 1.0
        assert metrics[f"test/{source}/count"] > 0
    for stage, sources in (("graph_pretrain", ["graph"]), ("alignment", ["graph", "answer"])):
        for source in sources:
            assert metrics[f"test/{stage}/{source}/count"] == metrics["test/graph/count"]
    assert "test/graph_pretrain/answer/acc" not in metrics
    for stage in config.train.stages:
        assert (result.run_dir / "best" / stage.name / "trainer_state.json").is_file(), stage.name
        assert checkpoint_problems(result.run_dir / "best" / stage.name) == [], stage.name
    assert sorted(p.name for p in (result.run_dir / "best").iterdir()) == sorted(
        s.name for s in config.train.stages
    )
    assert not list(result.run_dir.glob(".shard-*")), "every rank's shard folder renamed into place"
    # every registered checkpoint is complete by its ranks' manifests, and its RNG files are not pickles
    registry = json.loads((result.run_dir / "checkpoint_manager_snapshot.json").read_text())
    for entry in registry["checkpoint_results"]:
        folder = result.run_dir / entry["checkpoint_dir_name"]
        assert checkpoint_problems(folder) == [], folder
        assert sorted(p.name for p in (folder / "rng").iterdir()) == [
            "rank0.safetensors",
            "rank1.safetensors",
        ]
    model = NetGPT.from_pretrained(result.run_dir / "model")
    exported = model.state_dict()
    # the export is the best checkpoint of the last stage, as DeepSpeed itself consolidates it
    source = result.run_dir / "best" / config.train.stages[-1].name
    assert export_source(result.run_dir) == source
    consolidated = get_fp32_state_dict_from_zero_checkpoint(str(source), tag="ds")
    assert set(consolidated) <= set(exported) and len(consolidated) > 0.9 * len(exported)
    for name, value in consolidated.items():
        torch.testing.assert_close(exported[name], value.float(), msg=name)
    assert len(result.progress["summaries"]) >= len(config.train.stages)


@pytest.mark.timeout(120)
def test_tensorboard_events_read_back(baseline):
    config, result = baseline
    events = EventAccumulator(str(result.run_dir / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    for tag in (
        "train/loss",
        "train/graph_regression",
        "train/answer_ce",
        "train/prompt_regression",
        "train/lr",
        "train/grad_norm",
        "perf/samples_per_s",
        "perf/tokens_per_s",
        "perf/data_wait_share",
        "perf/memory_gb",
        "val/graph_pretrain/graph/mae",
        "val/alignment/answer/acc",
        "val/finetune/regression/mse",
        "test/finetune/regression/acc",
        "test/graph_pretrain/graph/acc",
    ):
        assert tag in scalars, (tag, sorted(scalars))
    losses = events.Scalars("train/loss")
    assert [e.step for e in losses] == list(range(1, metrics_steps(config) + 1))
    assert all(e.value == e.value for e in losses)
    # each checkpoint's stall and, once every rank has written it in the background, its write (steps: the
    # checkpoints', every 2 and at each stage's end)
    stalls, writes = events.Scalars("checkpoint/stall_s"), events.Scalars("checkpoint/write_s")
    steps = [e.step for e in stalls]
    assert steps == [e.step for e in writes] == [2, 4, 6, 7, 8, 10], steps
    # (a stall may be the longer: it includes any wait for the previous write, the write starts after it)
    assert all(e.value > 0 for e in (*stalls, *writes))
    # each best's too, written in the background as well: every stage's best is among them
    best_stalls, best_writes = (
        events.Scalars("checkpoint/best_stall_s"),
        events.Scalars("checkpoint/best_write_s"),
    )
    best_steps = [e.step for e in best_stalls]
    assert best_steps == [e.step for e in best_writes] and all(
        e.value > 0 for e in (*best_stalls, *best_writes)
    )
    for stage in config.train.stages:
        state = json.loads((result.run_dir / "best" / stage.name / "trainer_state.json").read_text())
        assert state["global_step"] in best_steps, (stage.name, best_steps)
    assert "val/finetune/regression/confusion" in events.Tags()["images"]
    assert any(tag.startswith("val/finetune/predictions") for tag in events.Tags()["tensors"])


def metrics_steps(config) -> int:
    return sum(stage.max_steps for stage in config.train.stages)


def _latest_registered_state(run_dir: Path) -> dict | None:
    """The trainer state of the checkpoint Ray Train would resume from now (its own registry's latest)."""
    try:
        snapshot = json.loads((run_dir / "checkpoint_manager_snapshot.json").read_text())
        name = snapshot["latest_checkpoint_result"]["checkpoint_dir_name"]
        return json.loads((run_dir / name / "trainer_state.json").read_text())
    except (OSError, ValueError, KeyError, TypeError):  # not written yet, or caught mid-write
        return None


@pytest.mark.timeout(480)
def test_worker_killed_mid_run_resumes_to_the_same_weights(data_dir, baseline, tmp_path_factory, make_config):
    _, base = baseline
    config = make_config(data_dir, tmp_path_factory.mktemp("runs"), "killed")
    progress = ProgressActor.remote()
    outcome = {}
    runner = threading.Thread(
        target=lambda: outcome.update(result=train(config, show_progress=False, progress=progress)),
        daemon=True,
    )
    runner.start()
    killed = resume_state = None
    deadline = time.monotonic() + 300
    while runner.is_alive() and killed is None and time.monotonic() < deadline:
        # Kill once the checkpoint to resume from is in the middle of a later stage: the resumed streams must
        # then begin at its position (iter_graph_batches raises on any other first position).
        state = _latest_registered_state(Path(config.train.storage_path) / "killed")
        pids = ray.get(progress.snapshot.remote())["pids"]
        if state and state["stage_index"] >= 1 and state["position"] > 0 and 1 in pids:
            killed, resume_state = pids[1], state
            os.kill(killed, signal.SIGKILL)
            # what a save the kill interrupted would leave (the restarted group takes seconds to start)
            stale = Path(config.train.storage_path) / "killed" / ".shard-step-00009999-r0.rank1"
            (stale / "ds").mkdir(parents=True, exist_ok=True)
        time.sleep(0.05)
    runner.join(timeout=360)
    assert killed is not None, "the run ended before a worker could be killed mid-stage"
    result = outcome["result"]
    export_run(result.run_dir)
    # A newer checkpoint may register between the read and the kill: resuming from it is right too.
    (resumed_from,) = result.progress["resumed_from"]
    assert resumed_from >= resume_state["global_step"], resume_state
    assert result.progress["pids"][1] != killed
    assert not list(result.run_dir.glob(".shard-*")), "the resumed rank 0 removes stale shard folders"
    assert result.metrics["global_step"] == metrics_steps(config)
    # the steps the killed workers logged after the checkpoint are logged again by the resumed run, and
    # TensorBoard keeps each step once
    events = EventAccumulator(str(result.run_dir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, metrics_steps(config) + 1))
    expected, got = _weights(base.run_dir / "model"), _weights(result.run_dir / "model")
    assert expected.keys() == got.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=1e-6, msg=name)


@pytest.mark.timeout(120)
def test_a_diverged_run_ends_at_its_first_non_finite_loss_without_a_retry(
    data_dir, tmp_path_factory, make_config
):
    """A retry from the last checkpoint would diverge again at the same step: the run ends on the first one
    (within the first steps: the first update throws the weights far), with the error the CLI gives exit
    status 11, though `train.max_failures` allows retries."""
    config = make_config(data_dir, tmp_path_factory.mktemp("runs"), "diverged", ["train.stages.0.lr=1e30"])
    assert config.train.max_failures > 0
    progress = ProgressActor.remote()
    expected = (
        r"non-finite loss in stage 'graph_pretrain'; resume with a lower train\.stages\[graph_pretrain\]\.lr"
    )
    with pytest.raises(LossNotFinite, match=expected):
        train(config, show_progress=False, evaluate_test=False, progress=progress)
    snapshot = ray.get(progress.snapshot.remote())
    assert sorted(worker["rank"] for worker in snapshot["workers"]) == [0, 1]  # each rank started once
    assert snapshot["resumed_from"] == [] and snapshot["stage"]["step"] < config.train.stages[0].max_steps

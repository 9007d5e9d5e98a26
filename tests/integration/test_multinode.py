"""The curriculum on a Ray cluster of several nodes on one machine (`ray.cluster_utils.Cluster`): a head with
no CPUs, one node for the Train workers and one for the sampler actors (custom resources place them there),
the driver a process of its own. The Train node is drained as a spot instance's reclaim is (`ray drain-node`,
reason preemption): the workers checkpoint at once, mid-curriculum, during an evaluation. Then it is removed
and another added: Ray Train restarts the worker group there, which resumes from that checkpoint with the
interrupted evaluation first, and the sampler actors on the other node serve it on. The driver's cwd and the
nodes' cwd are empty folders: nothing may need them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import pytest

from netgpt.config import to_yaml
from netgpt.convert.errors import ConvertError
from netgpt.convert.locate import latest_registered
from netgpt.graph.plan import EpochPlan
from netgpt.train.checkpoint import STATE_FILE, TrainerState, checkpoint_name
from netgpt.train.drain import drain

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("multinode_driver.py")
TRAIN_RESOURCE, SAMPLER_RESOURCE = "netgpt_train", "netgpt_sampler"
PLACEMENT = [
    f"train.worker_resources.{TRAIN_RESOURCE}=1",
    f"graph.sampler_resources.{SAMPLER_RESOURCE}=1",
    # each node's object store is 150 MiB (Cluster's default); the plan asks 2 ranks × this
    "graph.stream_buffer_mb=50",
]


@pytest.fixture()
def cluster(tmp_path, monkeypatch):
    """A head with no CPUs (as on KubeRay), started from an empty cwd that every node's processes inherit."""
    from ray.cluster_utils import Cluster

    node_cwd = tmp_path / "node_cwd"
    node_cwd.mkdir()
    monkeypatch.chdir(node_cwd)
    # every node keeps idle workers, as the KubeRay manifests set it (docs/cluster.md): its nodes have no
    # free CPU, and without it each stream of the run started its read tasks in new processes
    monkeypatch.setenv("RAY_num_workers_soft_limit", "8")
    # Ray Train looks for drained nodes every 5 s by default; the tiny run's stage has a few seconds
    monkeypatch.setenv("RAY_TRAIN_PREEMPTION_POLL_INTERVAL_S", "0.2")
    temp_dir = tempfile.mkdtemp(prefix="ngt-mn-", dir="/tmp")  # short: Ray's socket paths have a length limit
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 0,
            "include_dashboard": False,
            "temp_dir": temp_dir,
        },
    )
    try:
        yield cluster
    finally:
        cluster.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _add_train_node(cluster):
    """Room for the 2 Train workers (1 CPU each) and nothing else."""
    return cluster.add_node(num_cpus=2, resources={TRAIN_RESOURCE: 2})


def _registered_state(run_dir: Path) -> dict | None:
    try:
        return json.loads((latest_registered(run_dir) / STATE_FILE).read_text(encoding="utf-8"))
    except (ConvertError, OSError, ValueError):  # nothing registered yet, or caught mid-write
        return None


def _registered_metrics(run_dir: Path) -> dict[str, dict]:
    """Each registered checkpoint's reported metrics, by folder name, from Ray Train's registry."""
    try:
        registry = json.loads((run_dir / "checkpoint_manager_snapshot.json").read_text(encoding="utf-8"))
        return {entry["checkpoint_dir_name"]: entry["metrics"] for entry in registry["checkpoint_results"]}
    except (OSError, ValueError, KeyError, TypeError):  # not written yet, or caught mid-write
        return {}


def _planned_seeds(config, index: int, steps: int) -> list[int]:
    """The seeds of the first `steps` optimizer steps of stage `index` in the loader's plan (the same on
    every world size): what an uninterrupted run trains on."""
    stage, workers = config.train.stages[index], config.train.num_workers
    multiple = stage.grad_accum * workers
    plan = EpochPlan(
        config.graph.store_dir,
        "train",
        stage.micro_batch_size,
        stage.epochs,
        True,
        config.train.seed + 1000 * index,
        multiple,
    )
    assert steps * multiple <= plan.batches_per_epoch(), "the check assumes the stage stays in its 1st epoch"
    return sorted(int(s) for _, seeds in plan.epoch(0)[: steps * multiple] for s in seeds)


@pytest.mark.timeout(600)
def test_curriculum_across_nodes_survives_losing_the_train_node(cluster, data_dir, make_config, tmp_path):
    train_node = _add_train_node(cluster)
    # the sampler actors (0.5 CPU each) and one spare; the streams' read tasks take no CPU
    sampler_node = cluster.add_node(num_cpus=2, resources={SAMPLER_RESOURCE: 2})

    driver_cwd = tmp_path / "driver_cwd"
    driver_cwd.mkdir()
    # the DeepSpeed JSON named relative to the driver's cwd, which no worker shares
    shutil.copy(REPO / "netgpt" / "ds_configs" / "zero3.json", driver_cwd / "ds.json")
    runs = tmp_path / "runs"
    # Checkpoints only at stage ends and the one the drain asks for. Ray Train is asked about drains only
    # before an evaluation's first batch (the tiny run has 10 steps): the drain, during stage 2's steps, is
    # answered in its validation or test, and the resumed run begins with that evaluation. When it is asked
    # after a step is `tests/train/test_worker.py`'s (a drain's timing against the steps is not ours here).
    settings = ["train.ds_config=ds.json", "train.checkpoint_every=100", "train.preemption_check_every=1000"]
    config = make_config(data_dir, runs, "multinode", [*PLACEMENT, *settings])
    preset = tmp_path / "multinode.yaml"
    preset.write_text(to_yaml(config), encoding="utf-8")
    outcome_file, log_file = tmp_path / "outcome.json", tmp_path / "driver.log"
    env = {**os.environ, "RAY_ADDRESS": cluster.address}

    started = time.monotonic()
    with open(log_file, "wb") as log:
        driver = subprocess.Popen(
            [sys.executable, str(DRIVER), str(preset), str(outcome_file)],
            cwd=driver_cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            drained_at = removed = None
            deadline = time.monotonic() + 480  # 200 s alone on 2 cores, 240+ s inside the full suite
            while driver.poll() is None and removed is None and time.monotonic() < deadline:
                state = _registered_state(runs / "multinode")
                if drained_at is None and state and state["stage_index"] >= 1:
                    # what a spot instance's reclaim does to a Ray node (Ray's autoscaler v2 asks the same)
                    drain(cluster.address, train_node.node_id, 120, "spot instance reclaimed (test)")
                    drained_at = state
                if (
                    drained_at is not None
                    and state
                    and _registered_metrics(runs / "multinode")
                    .get(checkpoint_name(TrainerState(**state)), {})
                    .get("preemption")
                ):
                    cluster.remove_node(train_node)
                    removed = state
                    replacement = _add_train_node(cluster)
                time.sleep(0.05)
            driver.wait(timeout=max(1.0, deadline - time.monotonic()))
        finally:
            if driver.poll() is None:
                driver.kill()
                driver.wait()
    took = time.monotonic() - started
    log_tail = log_file.read_text(encoding="utf-8", errors="replace")[-6000:]
    assert drained_at is not None, "the run ended before the Train node could be drained\n" + log_tail
    assert removed is not None, "no checkpoint answered the drain before the run ended\n" + log_tail
    assert driver.returncode == 0, log_tail
    print(
        f"multi-node run: Train node drained after step {drained_at['global_step']}, checkpointed at step "
        f"{removed['global_step']} ({removed['evaluation_due'] or 'after the step'}), removed: {took:.0f} s"
    )
    # the checkpoint the drain asked for was written mid-stage, after the drain, at a step no other would be
    assert removed["position"] > 0 and removed["global_step"] > drained_at["global_step"], (
        drained_at,
        removed,
    )
    assert removed["evaluation_due"] in ("validation", "test"), removed

    outcome = json.loads(outcome_file.read_text(encoding="utf-8"))
    progress, total = outcome["progress"], sum(stage.max_steps for stage in config.train.stages)
    assert outcome["metrics"]["global_step"] == total

    # Placement: the driver on the head, the sampler actors on their node throughout, the Train workers
    # first on the removed node, then (restarted by Ray Train) on its replacement; never together.
    assert outcome["driver_node"] == cluster.head_node.node_id
    assert outcome["sampler_nodes"] == [sampler_node.node_id] * 2
    first, second = progress["workers"][:2], progress["workers"][2:]
    assert sorted(w["rank"] for w in first) == sorted(w["rank"] for w in second) == [0, 1], progress[
        "workers"
    ]
    assert {w["node_id"] for w in first} == {train_node.node_id}
    assert {w["node_id"] for w in second} == {replacement.node_id}

    # Resumed once, from the checkpoint the drain asked for (or a newer one registered meanwhile).
    (resumed_from,) = progress["resumed_from"]
    assert removed["global_step"] <= resumed_from < total
    assert any("being drained" in line for line in progress["summaries"]), progress["summaries"]
    # The resumed run began with the evaluation the drain interrupted: a validation at the checkpoint's step
    # right after the resume; an interrupted test is run without validating again.
    summaries, due = progress["summaries"], removed["evaluation_due"]
    resumed = [i for i, line in enumerate(summaries) if line.startswith("resumed at step")]
    assert len(resumed) == 1 and f"its {due}, which a node's drain interrupted" in summaries[resumed[0]], (
        summaries
    )
    stage = config.train.stages[removed["stage_index"]].name
    validated = f"[{stage}] step {removed['global_step']} validation:"
    assert any(line.startswith(validated) for line in summaries[resumed[0] :]) == (due == "validation"), (
        summaries
    )

    # Every step trained on the seeds the loader's plan gives it, a step done again after the resume on the
    # same seeds as before: each stage saw its plan's first batches, every seed once in the epoch.
    attempts: dict[tuple[str, int, int], list[list[int]]] = defaultdict(list)
    for entry in progress["seen"]:
        attempts[entry["stage"], entry["global_step"], entry["rank"]].append(sorted(entry["seeds"]))
    for key, seeds in attempts.items():
        assert all(s == seeds[0] for s in seeds), key
    for index, stage in enumerate(config.train.stages):
        seen = sorted(s for (name, _, _), seeds in attempts.items() if name == stage.name for s in seeds[-1])
        assert len(seen) == len(set(seen)), stage.name
        assert seen == _planned_seeds(config, index, stage.max_steps), stage.name

    # Nothing was written to (or needed from) the driver's cwd or the nodes' cwd.
    assert sorted(p.name for p in driver_cwd.iterdir()) == ["ds.json"]
    assert list(Path.cwd().iterdir()) == []

"""The worker Pods' preStop hook on a real Ray cluster of two nodes (`ray.cluster_utils.Cluster`, the
dashboard on for Ray's state API): it marks a node as preempted with its deadline, as Ray Train's preemption
watcher reads it, and waits while a Ray Train worker is on the node, no longer."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import ray

from netgpt.train import drain

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cluster():
    """A head (its dashboard serves Ray's state API), shared by the module's tests."""
    from ray.cluster_utils import Cluster

    temp_dir = tempfile.mkdtemp(prefix="ngt-dr-", dir="/tmp")  # short: Ray's socket paths have a length limit
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 0, "include_dashboard": True, "temp_dir": temp_dir},
    )
    try:
        ray.init(address=cluster.address)
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


@ray.remote(num_cpus=0, resources={"gpu_node": 1})
class RayTrainWorker:  # the name Ray's state API reports for Ray Train's workers
    def ready(self) -> bool:
        return True


@pytest.mark.timeout(180)
def test_a_drained_node_is_marked_preempted_and_the_hook_waits_for_its_train_workers_only(cluster):
    node = cluster.add_node(num_cpus=1, resources={"gpu_node": 1})
    worker = RayTrainWorker.remote()
    assert ray.get(worker.ready.remote())
    assert drain.train_workers_on(node.node_id) == 1

    drain.drain(cluster.address, node.node_id, 60, "test")
    deadline_ms = ray._private.state.state.get_draining_nodes()[node.node_id]
    assert 55_000 < deadline_ms - time.time() * 1000 <= 60_000

    started = time.monotonic()
    assert drain.wait_while_training(node.node_id, until=time.time() + 2) == 1
    assert time.monotonic() - started >= 2
    ray.kill(worker)
    started = time.monotonic()
    assert drain.wait_while_training(node.node_id, until=time.time() + 60) == 0
    assert time.monotonic() - started < 15


@pytest.mark.timeout(180)
def test_the_hook_drains_the_node_it_runs_on_and_returns_at_once_without_train_workers(cluster):
    env = {**os.environ, "RAY_ADDRESS": cluster.address}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "netgpt.train.drain", "--deadline-s", "90"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"node {cluster.head_node.node_id} drained; 0 Ray Train worker(s)" in done.stdout
    assert time.monotonic() - started < 60


@pytest.mark.timeout(180)
def test_the_hook_ends_soon_when_the_head_is_already_gone():
    """Deleting the whole cluster may end the head first: the hook must not hold its Pod to the end of the
    grace period. (A cluster address where no GCS answers, as after the head has gone.)"""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        gone = f"127.0.0.1:{probe.getsockname()[1]}"
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "netgpt.train.drain", "--deadline-s", "90"],
        env={**os.environ, "RAY_ADDRESS": gone},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0 and "drained" not in done.stdout
    assert time.monotonic() - started < 45

"""A Ray node drains itself before its Kubernetes Pod ends: the worker Pods' preStop hook.

Kubernetes ends a Pod with a signal and a grace period (a spot node reclaimed, `kubectl drain`, a
scale-down), and Ray learns of it only when the node is gone: the run resumes from its last periodic
checkpoint. Run first, this tells Ray the node is going, as Ray's autoscaler does before it removes one
(`ray drain-node`, reason preemption, with a deadline). Ray Train's preemption watcher then tells the run's
workers, which checkpoint at once (`Curriculum.checkpoint_if_preempted`, or `..._during` an evaluation,
which the resumed run then runs first). The hook waits while Ray Train
workers run on the node, at most until the deadline, when Ray Train ends them and restarts the run on other
nodes from that checkpoint; on a node with none (a cluster deleted between runs) it returns at once.

    python -m netgpt.train.drain [--deadline-s 100]      # in a Ray worker Pod (k8s/base/raycluster.yaml)

The Pod's `terminationGracePeriodSeconds` must be longer than the deadline, or Kubernetes ends the Pod
before the checkpoint is written.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

TRAIN_WORKER_CLASS = "RayTrainWorker"
"""The class name of Ray Train's worker actors (one per rank)."""
POLL_S = 1.0
GCS_WAIT_S = 5
"""How long the hook's Ray connection waits for an unreachable GCS before it gives up. When the whole
cluster is deleted the head may be gone first, and Ray's default (60 s, then more tries) kept the hook
running past 200 s; with this it ends in about 15 s, and the Pod with it."""


def drain(address: str, node_id: str, deadline_s: int, reason: str) -> None:
    """Mark the Ray node `node_id` of the cluster at `address` as preempted in `deadline_s` seconds, with
    Ray's own command for draining a node by hand."""
    ray_command = shutil.which("ray", path=str(Path(sys.executable).parent)) or "ray"
    subprocess.run(
        [
            *(ray_command, "drain-node", "--address", address, "--node-id", node_id),
            *("--reason", "DRAIN_NODE_REASON_PREEMPTION", "--reason-message", reason),
            *("--deadline-remaining-seconds", str(deadline_s)),
        ],
        check=True,
        timeout=60,
    )


def train_workers_on(node_id: str) -> int:
    """How many of Ray Train's worker actors are alive on `node_id` (Ray's state API, through the
    dashboard)."""
    from ray.util.state import list_actors

    filters = [("node_id", "=", node_id), ("state", "=", "ALIVE"), ("class_name", "=", TRAIN_WORKER_CLASS)]
    return len(list_actors(filters=filters, limit=1000))


def wait_while_training(node_id: str, until: float) -> int:
    """Wait while Ray Train workers are alive on `node_id`, until the time `until` at most; returns how many
    are left."""
    while (left := train_workers_on(node_id)) and time.time() < until:
        time.sleep(POLL_S)
    return left


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--deadline-s",
        type=int,
        default=100,
        help="seconds until the node goes (shorter than the Pod's grace)",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("RAY_gcs_rpc_server_reconnect_timeout_s", str(GCS_WAIT_S))  # read as Ray starts
    import ray

    ray.init(address="auto", logging_level=logging.WARNING, log_to_driver=False)
    context = ray.get_runtime_context()
    node_id = context.get_node_id()
    until = time.time() + args.deadline_s
    drain(context.gcs_address, node_id, args.deadline_s, "its Kubernetes Pod is ending (preStop hook)")
    left = wait_while_training(node_id, until)
    print(f"netgpt.train.drain: node {node_id} drained; {left} Ray Train worker(s) still on it", flush=True)


if __name__ == "__main__":
    main()

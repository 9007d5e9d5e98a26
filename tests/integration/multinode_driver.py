"""The driver process of `test_multinode.py` (the test's own process may be attached to another Ray cluster).

    RAY_ADDRESS=<cluster> python multinode_driver.py CONFIG.yaml OUTCOME.json

Joins the cluster at RAY_ADDRESS, trains CONFIG.yaml with a progress actor that records every step's seeds,
and writes what the test checks to OUTCOME.json. It is started in a cwd of its own and uses no path relative
to this file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from netgpt.config import load_config
from netgpt.train.progress import ProgressActor
from netgpt.train.run import train


def main(preset: str, outcome: str) -> None:
    ray.init(log_to_driver=False)
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    progress = ProgressActor.options(scheduling_strategy=here).remote(record_seeds=True)
    result = train(load_config(preset), show_progress=False, progress=progress)
    record = {
        "driver_node": ray.get_runtime_context().get_node_id(),
        "run_dir": str(result.run_dir),
        "metrics": result.metrics,
        "progress": result.progress,
        "sampler_nodes": result.sampler_nodes,
    }
    Path(outcome).write_text(json.dumps(record), encoding="utf-8")


if __name__ == "__main__":
    main(*sys.argv[1:])

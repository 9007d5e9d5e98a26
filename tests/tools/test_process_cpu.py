"""tools/bench/process_cpu.py: roles from Ray's process titles, and the cores a busy process used."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

UNNAMED = "python /x/ray/_private/workers/default_worker.py"  # a Ray worker before Ray titles it


@pytest.fixture
def process_cpu(load_bench):
    return load_bench("process_cpu.py")


@pytest.mark.parametrize(
    "titles, role",
    [
        (["ray::RayTrainWorker"], "train_workers"),
        (["ray::IDLE", "ray::SamplerActor.sample", "ray::SamplerActor"], "sampler_actors"),
        (["ray::IDLE", "ray::ReadSampledBatches", "ray::IDLE"], "read_tasks"),
        (["/x/ray/core/src/ray/raylet/raylet --node"], "ray_daemons"),
        ([UNNAMED, "ray::ProgressActor"], "other_ray_actors"),
        ([UNNAMED, "ray::IDLE", "ray::RayTrainWorker"], "train_workers"),
        # a pooled worker that became one of Ray's own actors is not a read task
        ([UNNAMED, "ray::IDLE", "ray::TrainController"], "other_ray_actors"),
        ([UNNAMED, "ray::IDLE"], "pooled_worker"),
        # the raylet's arguments name the worker script it starts
        ([f"/x/ray/core/src/ray/raylet/raylet --python_worker_command={UNNAMED}"], "ray_daemons"),
        (["/x/ray/core/src/ray/gcs/gcs_server --log_dir=/tmp"], "ray_daemons"),
        (["bash"], "other"),
    ],
)
def test_a_process_keeps_the_first_role_in_order_any_of_its_titles_gave(process_cpu, titles, role):
    found = None
    for title in titles:
        found = process_cpu.role_of(title, found)
    assert found == role


def test_a_process_spinning_through_the_window_counts_about_one_core_in_its_role(process_cpu):
    spin = "import time\nend = time.time() + 3\nwhile time.time() < end: pass"
    with process_cpu.ProcessCpu(period_s=0.2) as cpu:
        # the argument after the code puts the title of a Train worker in the child's command line
        child = subprocess.Popen([sys.executable, "-c", spin, "ray::RayTrainWorker"])
        time.sleep(0.6)
        start = time.time()
        time.sleep(1.6)
        end = time.time()
        child.wait(timeout=30)
    cores = cpu.cores(start, end)
    assert 1.2 <= cores["window_s"] <= 2.0
    assert 0.2 <= cores["train_workers"] <= 1.05, cores  # one thread; less on a machine busy elsewhere
    assert cores["total"] >= cores["train_workers"] + cores["driver"] - 2e-3  # each rounded to 3 places
    assert cores["idle"] == pytest.approx(max(0.0, os.cpu_count() - cores["total"]), abs=2e-3)

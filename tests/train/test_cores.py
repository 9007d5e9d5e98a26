import json
import logging
import os
import re
import subprocess
import sys

import pytest
import torch

from netgpt.train.cores import bind_worker, binds, cores_for, gpu_cores


@pytest.mark.parametrize(
    ("allowed", "local_world_size", "expected"),
    [
        (list(range(8)), 2, [[0, 1, 2, 3], [4, 5, 6, 7]]),
        (list(range(8)), 3, [[0, 1], [2, 3], [4, 5]]),
        ([12, 3, 9, 5], 2, [[3, 5], [9, 12]]),
        ([0, 1], 2, [[0], [1]]),
        ([0, 1], 3, [[], [], []]),
    ],
)
def test_each_local_worker_gets_an_even_share_of_the_allowed_cores(allowed, local_world_size, expected):
    assert [cores_for(rank, local_world_size, allowed) for rank in range(local_world_size)] == expected


@pytest.mark.parametrize(
    ("setting", "use_gpu", "expected"),
    [("auto", False, True), ("auto", True, False), ("true", True, True), ("false", False, False)],
)
def test_auto_binds_cpu_workers_only(setting, use_gpu, expected):
    assert binds(setting, use_gpu) is expected


BIND_AND_REPORT = """
import json, os, threading
from netgpt.train.cores import bind_worker
stop = threading.Event()
earlier = threading.Thread(target=stop.wait)
earlier.start()
cores = bind_worker(1, 2)
later = threading.Thread(target=stop.wait)
later.start()
threads = {tid: sorted(os.sched_getaffinity(int(tid))) for tid in os.listdir("/proc/self/task")}
stop.set()
print(json.dumps({"cores": cores, "threads": threads}))
"""


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 cores to bind a second worker")
def test_every_thread_of_the_worker_is_bound_also_those_started_after():
    # in a process of its own: binding this one would bind the rest of the test session
    done = subprocess.run(
        [sys.executable, "-c", BIND_AND_REPORT], capture_output=True, text=True, timeout=60, check=True
    )
    report = json.loads(done.stdout.splitlines()[-1])
    allowed = sorted(os.sched_getaffinity(0))
    share = len(allowed) // 2
    assert report["cores"] == allowed[share : 2 * share]
    assert len(report["threads"]) >= 3  # the main thread, one started before and one after
    assert all(cores == report["cores"] for cores in report["threads"].values()), report


def test_nothing_is_bound_without_a_core_for_each_local_worker():
    allowed = os.sched_getaffinity(0)
    assert bind_worker(0, len(allowed) + 1) == []
    assert os.sched_getaffinity(0) == allowed


def test_nothing_is_bound_where_the_os_cannot_bind_threads(monkeypatch):
    monkeypatch.delattr(os, "sched_setaffinity")  # as on macOS
    assert bind_worker(0, 1) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the GPU path where torch cannot see a GPU")
def test_a_gpu_worker_whose_numa_node_cannot_be_told_stays_unbound_and_says_why(caplog):
    allowed = os.sched_getaffinity(0)
    with caplog.at_level(logging.WARNING, logger="netgpt.train.cores"):
        assert bind_worker(0, 1, gpu_index=0) == []
    assert os.sched_getaffinity(0) == allowed
    assert "cuda:0's threads left unbound" in caplog.text


def test_a_torch_without_numa_binding_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.numa.binding", None)  # as a torch that predates the module
    with pytest.raises(RuntimeError, match=re.escape(f"torch {torch.__version__} has no torch.numa.binding")):
        gpu_cores(0)

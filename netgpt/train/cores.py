"""Each Train worker on cores of its own: the node's allowed cores cut evenly among its local workers.

Two ZeRO-3 workers run in lockstep, and every collective wakes several threads of each (the main thread,
gloo's run loop and TCP loop), all of which the kernel may place on any core, beside the other worker's
threads. On a CPU node that costs time spent runnable but not running: with 2 workers on 2 cores each
worker's main thread waited in the run queue 0.23 s for every second it ran (one process: 0.07;
`/proc/<pid>/task/<tid>/schedstat`), and a step waits for the slower of the two. Bound to a core each,
a worker's threads take turns on that core and no longer wander onto the other's: 0.19, and the 2-worker
median step of alignment and fine-tuning 7 % and 10 % shorter (docs/step-time.md has the figures).

DeepSpeed does the same for CPU training with its launcher's `--bind_cores_to_rank` (numactl around each
rank's process, its host's cores cut evenly among the local ranks). Ray Train starts the workers itself, so
no launcher flag applies: each worker binds its own threads here, once, at its start. Linux binds threads,
not processes (a thread's affinity is inherited by the threads it starts later), so every thread the
process has by then is bound: those Ray and the process group have started. Nothing is bound on a node
with fewer allowed cores than local workers, nor where the OS has no `sched_setaffinity` (macOS).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def cores_for(local_rank: int, local_world_size: int, allowed: list[int]) -> list[int]:
    """The cores of local worker `local_rank` of `local_world_size`: its even share of `allowed`, in order
    (what an uneven cut leaves over is bound to no worker); empty when there is not a core each."""
    share = len(allowed) // local_world_size
    ordered = sorted(allowed)
    return ordered[local_rank * share : (local_rank + 1) * share]


def bind_worker(local_rank: int, local_world_size: int) -> list[int]:
    """Bind every thread of this process to its share of the cores it may use; returns the cores bound
    to (empty: left as it was, see the module's docstring)."""
    if not hasattr(os, "sched_setaffinity"):
        return []
    cores = cores_for(local_rank, local_world_size, list(os.sched_getaffinity(0)))
    if not cores:
        return []
    for thread in Path("/proc/self/task").iterdir():
        with contextlib.suppress(ProcessLookupError):  # a thread that ended since the listing
            os.sched_setaffinity(int(thread.name), cores)
    return cores


def binds(setting: str, use_gpu: bool) -> bool:
    """Whether workers bind their cores under `train.bind_cores` = `setting`: `auto` binds CPU workers only
    (a GPU worker's cores are best chosen by its GPU's NUMA node, which the even cut does not know)."""
    return setting == "true" or (setting == "auto" and not use_gpu)

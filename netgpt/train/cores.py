"""Each Train worker on cores of its own: the node's allowed cores cut evenly among its local workers, or
on a GPU node the cores of its GPU's NUMA node.

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

A GPU worker's cores are best those of its GPU's NUMA node: its host-to-device copies and, with the
optimizer offloaded (`ds_configs/zero3_offload.json`), its CPU Adam and the moments it reads then stay in
that node's memory. An even cut by local rank ignores which GPU a rank drives, so on a GPU worker the cut
is torch's own (`torchrun --numa-binding=exclusive`, `torch.numa.binding` in recent torch): the
allowed cores of the GPU's NUMA node, whole physical cores shared out among the node's visible GPUs. Ray
Train shows every worker of a node all that node's workers' GPUs, so each worker sees its neighbours'.
Where that cannot be told (a torch without that module, no NUMA facts in sysfs, no allowed core on the
node), the worker says why and stays unbound.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)


def cores_for(local_rank: int, local_world_size: int, allowed: list[int]) -> list[int]:
    """The cores of local worker `local_rank` of `local_world_size`: its even share of `allowed`, in order
    (what an uneven cut leaves over is bound to no worker); empty when there is not a core each."""
    share = len(allowed) // local_world_size
    ordered = sorted(allowed)
    return ordered[local_rank * share : (local_rank + 1) * share]


def bind_worker(local_rank: int, local_world_size: int, gpu_index: int | None = None) -> list[int]:
    """Bind every thread of this process to its share of the cores it may use: the even cut of a CPU
    worker, or (`gpu_index`: the worker's CUDA device) `gpu_cores`; returns the cores bound to (empty: left
    as it was, see the module's docstring)."""
    if not hasattr(os, "sched_setaffinity"):
        return []
    if gpu_index is None:
        cores = cores_for(local_rank, local_world_size, list(os.sched_getaffinity(0)))
    else:
        try:
            cores = gpu_cores(gpu_index)
        except Exception as error:  # noqa: BLE001  (binding is an optimisation: any failure leaves it unbound)
            logger.warning("cuda:%d's threads left unbound: %s: %s", gpu_index, type(error).__name__, error)
            return []
    if not cores:
        return []
    for thread in Path("/proc/self/task").iterdir():
        with contextlib.suppress(ProcessLookupError):  # a thread that ended since the listing
            os.sched_setaffinity(int(thread.name), cores)
    return cores


def gpu_cores(gpu_index: int) -> list[int]:
    """The cores `torchrun --numa-binding=exclusive` gives the process of CUDA device `gpu_index`: its share
    of the allowed cores of the device's NUMA node (module docstring). Raises where torch cannot tell."""
    try:
        from torch.numa.binding import AffinityMode, NumaOptions, _get_logical_cpus_to_bind_to
    except ImportError as error:
        import torch

        raise RuntimeError(
            f"torch {torch.__version__} has no torch.numa.binding, or not its exclusive cut"
        ) from error
    # torchrun's own cut, a private function of its module: torch exposes it only around a launcher's
    # subprocess (`--numa-binding`), and Ray Train, not a launcher, starts the workers
    exclusive = NumaOptions(affinity_mode=AffinityMode.EXCLUSIVE)
    return sorted(_get_logical_cpus_to_bind_to(gpu_index=gpu_index, numa_options=exclusive))


def binds(setting: str, use_gpu: bool) -> bool:
    """Whether workers bind their cores under `train.bind_cores` = `setting`: `auto` binds CPU workers only
    (GPU workers by their GPU's NUMA node with `true`, opt-in as torchrun's `--numa-binding` is)."""
    return setting == "true" or (setting == "auto" and not use_gpu)

"""Which processes of the machine used its cores over a time window, by role.

`tools/bench/train_step.py` runs a `ProcessCpu` beside each training run and asks it, per stage, for the
cores each role used while the stage's steps ran: what a Train worker got of its core, and what the data
path (sampler actors, read tasks) and Ray's own processes took from the same 2 cores.

    with ProcessCpu() as cpu:
        ...                                  # the run
    cpu.cores(start_unix, end_unix)          # {"train_workers": 1.31, "sampler_actors": 0.13, ...}

CPU times come from psutil (Ray's own dependency). A process's role comes from the title Ray gives it
(`ray::Class`, or `ray::Class.method` while it runs a task), which changes as a pooled worker takes on
tasks, so a process keeps the first role in `ROLES` order that any of its titles had. A pooled worker waiting
for work is titled `ray::IDLE` whatever it ran before or runs next (a read task, or one of Ray's own actors),
so that title gives no role of its own: a process only ever idle is a `pooled_worker`.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from pathlib import Path

import psutil

ROLES = (
    ("train_workers", ("ray::RayTrainWorker",)),
    ("sampler_actors", ("ray::SamplerActor",)),
    ("read_tasks", ("ray::ReadSampledBatches",)),  # Ray Data's read tasks, run in pooled workers
    ("ray_daemons", ("ray::DashboardAgent", "ray::RuntimeEnvAgent", "/ray/")),
    ("other_ray_actors", ("ray::",)),  # the Train controller, the progress actor, Ray Data's coordinators
)
"""Roles in order of precedence, each with the title fragments that give it; `driver` is this process,
`pooled_worker` a Ray worker process that ran nothing yet, and `other` everything else on the machine."""

DAEMON_PROGRAMS = ("raylet", "gcs_server")
"""Ray's daemons that are programs of their own: told by the program, as the raylet's arguments name Ray's
worker script (`UNNAMED_WORKER`)."""

PERIOD_S = 0.5
MAX_SNAPSHOTS = 7200
"""An hour of snapshots at `PERIOD_S`: the oldest are dropped beyond it, so a long run cannot grow them."""


UNNAMED_WORKER = "workers/default_worker.py"
IDLE_WORKER = "ray::IDLE"
"""A Ray worker process's command line before Ray titles it, and its title while it waits: no role."""


def role_of(title: str, previous: str | None = None) -> str:
    """The role a process title gives, or `previous` when that comes first in `ROLES` order."""
    if Path(title.split(" ", 1)[0]).name in DAEMON_PROGRAMS:
        return "ray_daemons"
    if UNNAMED_WORKER in title or title.startswith(IDLE_WORKER):
        return previous or "pooled_worker"
    order = [name for name, _ in ROLES]
    for name, fragments in ROLES:
        if any(fragment in title for fragment in fragments):
            if previous in order and order.index(previous) < order.index(name):
                return previous
            return name
    return previous or "other"


class ProcessCpu:
    """Snapshots of every process's CPU seconds (user + system) every `period_s`, in a daemon thread."""

    def __init__(self, period_s: float = PERIOD_S) -> None:
        self.period_s = period_s
        self.snapshots: deque[tuple[float, dict[int, float]]] = deque(maxlen=MAX_SNAPSHOTS)
        self.roles: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="process-cpu", daemon=True)

    def __enter__(self) -> ProcessCpu:
        self._snapshot()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self._snapshot()

    def _loop(self) -> None:
        while not self._stop.wait(self.period_s):
            self._snapshot()

    def _snapshot(self) -> None:
        cpu = {}
        for process in psutil.process_iter(["cmdline", "cpu_times"]):
            times, cmdline = process.info["cpu_times"], process.info["cmdline"]
            if times is None:  # ended, or not ours to read
                continue
            cpu[process.pid] = times.user + times.system
            if process.pid == os.getpid():
                self.roles[process.pid] = "driver"
            else:
                self.roles[process.pid] = role_of(" ".join(cmdline or ()), self.roles.get(process.pid))
        self.snapshots.append((time.time(), cpu))

    def cores(self, start_unix: float, end_unix: float) -> dict[str, float]:
        """Cores each role used on average between the snapshots nearest `start_unix` and `end_unix` (a
        process that ended between them is left out; one that started counts from zero), their `total`,
        and the machine's cores that none used (`idle`)."""
        first = min(self.snapshots, key=lambda snapshot: abs(snapshot[0] - start_unix))
        last = min(self.snapshots, key=lambda snapshot: abs(snapshot[0] - end_unix))
        wall = last[0] - first[0]
        if wall <= 0:
            return {}
        used: dict[str, float] = {}
        for pid, seconds in last[1].items():
            role = self.roles.get(pid, "other")
            used[role] = used.get(role, 0.0) + seconds - first[1].get(pid, 0.0)
        by_role = {role: round(seconds / wall, 3) for role, seconds in sorted(used.items())}
        total = sum(used.values()) / wall
        idle = max(0.0, (os.cpu_count() or 1) - total)  # no process ready to run on it
        return {**by_role, "total": round(total, 3), "idle": round(idle, 3), "window_s": round(wall, 1)}

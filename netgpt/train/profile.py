"""Where a training step's time goes, for `tools/bench/train_step.py`: off unless `NETGPT_STEP_PROFILE=1`.

    profile = StepProfile.from_env()                  # a `StepProfile`, or `OFF` (every call a no-op)
    profile.attach(engine.module)                      # encoder / LLM forward timers, collective counters
    with profile.phase("backward"): ...                # inside `train_step`
    profile.begin_step(); ...; profile.end_step(wait_s, step_s)   # per optimizer step; `figures()`: means

Phases: `data_wait` (the step's `next()` on the stream: sampling and transfer not hidden by the prefetch),
`encoder_forward`, `llm_forward`, `other_forward` (projector, heads, losses), `backward`, `optimizer`, and
`idle` (the rest of the step: the loss all-reduce, bookkeeping). `collectives_s` is the time spent inside
`torch.distributed` calls (ZeRO-3's parameter gathers, gradient reduce-scatters, the step's all-reduces),
including waits on their handles; it overlaps the phases it happens in. `collectives` counts the calls and
`collective_mb` the megabytes they carry (`payload_bytes`).

Off, nothing is hooked or wrapped and `phase` returns a shared null context: no timer and no device sync
runs in a normal run. On a GPU the profile synchronises the device at each phase's end (only then).
"""

from __future__ import annotations

import contextlib
import functools
import os
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.distributed as dist

ENV = "NETGPT_STEP_PROFILE"

COLLECTIVES = (
    "all_reduce",
    "all_reduce_coalesced",
    "all_gather",
    "all_gather_into_tensor",
    "all_gather_base",
    "all_gather_object",
    "all_gather_coalesced",
    "reduce_scatter",
    "reduce_scatter_tensor",
    "broadcast",
    "barrier",
    "reduce",
    "all_to_all_single",
)
"""The collectives counted, by name, in `torch.distributed` and on DeepSpeed's comm backend."""


def _deepspeed_backend() -> Any:
    """DeepSpeed's comm backend object once `deepspeed.init_distributed` has made one, else None."""
    try:
        from deepspeed.comm import comm
    except ImportError:
        return None
    return getattr(comm, "cdb", None)


_NULL = contextlib.nullcontext()


def payload_bytes(args: tuple, kwargs: dict[str, Any]) -> int:
    """The bytes a collective carries: its largest tensor argument (the gathered output of an all-gather,
    the input a reduce-scatter splits, the tensor an all-reduce reduces), a list of tensors counted whole."""
    sizes = [0]
    for value in (*args, *kwargs.values()):
        tensors = value if isinstance(value, (list, tuple)) else [value]
        sizes.append(sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor)))
    return max(sizes)


class _Off:
    """The profile of a normal run: no hooks, no timers."""

    enabled = False

    def attach(self, model: torch.nn.Module) -> None:
        pass

    def phase(self, name: str) -> contextlib.AbstractContextManager:
        return _NULL

    def begin_step(self) -> None:
        pass

    def end_step(self, wait_s: float, step_s: float) -> None:
        pass


OFF = _Off()


class _TimedWork:
    """An async collective's handle whose `wait` counts as collective time."""

    def __init__(self, work: Any, profile: StepProfile) -> None:
        self._work, self._profile = work, profile

    def wait(self, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return self._work.wait(*args, **kwargs)
        finally:
            self._profile.seconds["collectives"] += time.perf_counter() - started

    def __getattr__(self, name: str) -> Any:
        return getattr(self._work, name)


class StepProfile:
    """Per-phase seconds and collective counts of the optimizer steps since the last `reset`."""

    enabled = True

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.collectives: dict[str, int] = defaultdict(int)
        self.collective_bytes: dict[str, int] = defaultdict(int)
        self.steps = 0
        self.step_times: list[float] = []
        """Each step's seconds (one float a step): the median and the slowest, which a mean hides."""
        self.window_unix: list[float] = []
        """Wall-clock times (`time.time()`, one clock for every process of a machine) of the first step's
        start and the last step's end: the bench reads the machine's CPU use over them."""
        self._depth = 0
        self.active = False
        """Timers and counters run only inside a step (`begin_step` .. `end_step`), not in validation."""
        self._sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)

    @classmethod
    def from_env(cls) -> StepProfile | _Off:
        return cls() if os.environ.get(ENV, "") not in ("", "0") else OFF

    def reset(self) -> None:
        self.seconds.clear()
        self.collectives.clear()
        self.collective_bytes.clear()
        self.steps = 0
        self.step_times.clear()
        self.window_unix.clear()

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.seconds[name] += time.perf_counter() - started

    def attach(self, model: torch.nn.Module) -> None:
        """Time the forward of `model.encoder` and `model.llm`; count and time collectives: those of
        `torch.distributed` (the trainer's own) and of DeepSpeed's comm backend (which keeps torch functions
        it picked at start-up: wrapping `torch.distributed` alone misses ZeRO's gathers)."""
        for part in ("encoder", "llm"):
            module = getattr(model, part, None)
            if module is not None:
                self._time_forward(module, f"{part}_forward")
        owners: list[Any] = [dist]
        backend = _deepspeed_backend()
        if backend is not None:
            owners.append(backend)
        for owner in owners:
            for name in COLLECTIVES:
                original = getattr(owner, name, None)
                if original is not None and not getattr(original, "_netgpt_counted", False):
                    setattr(owner, name, self._counted(name, original))

    def _time_forward(self, module: torch.nn.Module, name: str) -> None:
        starts: list[float] = []

        def before(*_: Any) -> None:
            starts.append(time.perf_counter())

        def after(*_: Any) -> None:
            if starts and self.active:
                self._sync()
                self.seconds[name] += time.perf_counter() - starts.pop()
            elif starts:
                starts.pop()

        module.register_forward_pre_hook(before)
        module.register_forward_hook(after)

    def _counted(self, name: str, original: Callable) -> Callable:
        """`original`, counted and timed as one collective of kind `name` when called inside a step and not
        from inside another counted call (DeepSpeed's backend calls `torch.distributed`'s)."""

        @functools.wraps(original)
        def call(*args: Any, **kwargs: Any) -> Any:
            if not self.active or self._depth:
                return original(*args, **kwargs)
            started = time.perf_counter()
            self._depth += 1
            try:
                result = original(*args, **kwargs)
            finally:
                self._depth -= 1
                self.seconds["collectives"] += time.perf_counter() - started
                self.collectives[name] += 1
                self.collective_bytes[name] += payload_bytes(args, kwargs)
            return _TimedWork(result, self) if kwargs.get("async_op") and result is not None else result

        call._netgpt_counted = True  # type: ignore[attr-defined]
        return call

    def begin_step(self) -> None:
        self.active = True
        if not self.window_unix:
            self.window_unix.append(time.time())

    def end_step(self, wait_s: float, step_s: float) -> None:
        """Close one optimizer step of `step_s` seconds, `wait_s` of them waiting for data."""
        self.active = False
        self.steps += 1
        self.seconds["data_wait"] += wait_s
        self.seconds["step"] += step_s
        self.step_times.append(step_s)
        self.window_unix[1:] = [time.time()]

    def figures(self) -> dict[str, float]:
        """Mean seconds per step of each phase, `idle` (the step's rest), collective calls and megabytes per
        step; the median and the slowest step; when the steps ran (`window_start_unix`, `window_end_unix`)."""
        steps = max(self.steps, 1)
        mean = {name: value / steps for name, value in self.seconds.items()}
        forward = mean.pop("forward", 0.0)
        parts = mean.get("encoder_forward", 0.0) + mean.get("llm_forward", 0.0)
        mean["other_forward"] = max(0.0, forward - parts)
        phases = ("data_wait", "backward", "optimizer")
        mean["idle"] = max(0.0, mean.get("step", 0.0) - forward - sum(mean.get(p, 0.0) for p in phases))
        figures = {f"{name}_s": value for name, value in mean.items()}
        figures["collectives"] = sum(self.collectives.values()) / steps
        figures.update({f"collectives/{name}": count / steps for name, count in self.collectives.items()})
        figures["collective_mb"] = sum(self.collective_bytes.values()) / steps / 1e6
        figures.update(
            {f"collective_mb/{name}": size / steps / 1e6 for name, size in self.collective_bytes.items()}
        )
        if self.step_times:
            figures["step_median_s"] = statistics.median(self.step_times)
            figures["step_max_s"] = max(self.step_times)
        if len(self.window_unix) == 2:
            figures["window_start_unix"], figures["window_end_unix"] = self.window_unix
        figures["steps"] = float(self.steps)
        figures["torch_threads"] = float(torch.get_num_threads())
        return figures

"""The step-time bench's per-phase profile: off by default (nothing wrapped), on it times a real step."""

import time

import pytest
import torch
import torch.distributed as dist

from netgpt.train.monitor import StepMeter
from netgpt.train.profile import COLLECTIVES, ENV, OFF, StepProfile, payload_bytes
from netgpt.train.stages import freeze_for_stage, set_stage_hparams
from netgpt.train.step import train_step


def test_off_unless_the_environment_asks(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    assert StepProfile.from_env() is OFF
    monkeypatch.setenv(ENV, "0")
    assert StepProfile.from_env() is OFF
    monkeypatch.setenv(ENV, "1")
    assert isinstance(StepProfile.from_env(), StepProfile)


def test_off_times_nothing_and_wraps_nothing():
    before = {name: getattr(dist, name, None) for name in COLLECTIVES}
    OFF.attach(object())
    with OFF.phase("backward") as inside:
        assert inside is None
    assert {name: getattr(dist, name, None) for name in COLLECTIVES} == before


def test_figures_are_means_per_step_with_idle_the_rest():
    profile = StepProfile()
    for _ in range(2):
        profile.begin_step()
        profile.seconds["forward"] += 0.3
        profile.seconds["encoder_forward"] += 0.1
        profile.seconds["backward"] += 0.2
        profile.seconds["optimizer"] += 0.1
        profile.collectives["all_reduce"] += 3
        profile.collective_bytes["all_reduce"] += 3_000_000
        profile.end_step(wait_s=0.05, step_s=1.0)
    figures = profile.figures()
    assert figures["step_s"] == pytest.approx(1.0)
    assert figures["encoder_forward_s"] == pytest.approx(0.1)
    assert figures["other_forward_s"] == pytest.approx(0.2)
    assert figures["idle_s"] == pytest.approx(1.0 - 0.3 - 0.2 - 0.1 - 0.05)
    assert figures["collectives"] == 3 and figures["collectives/all_reduce"] == 3
    assert figures["collective_mb"] == pytest.approx(3.0) and figures["collective_mb/all_reduce"] == 3.0
    assert figures["steps"] == 2


def test_a_collective_carries_its_largest_tensor_or_list_of_tensors():
    gathered, shard = torch.zeros(1000), torch.zeros(500)  # an all-gather's output and its input
    assert payload_bytes((gathered, shard), {}) == 4000
    assert payload_bytes((), {"output_tensor": shard, "input_tensor": gathered, "async_op": True}) == 4000
    assert payload_bytes(([torch.zeros(300, dtype=torch.float64)] * 2, shard), {}) == 4800
    assert payload_bytes(([None],), {"group": None}) == 0


def test_the_median_and_the_slowest_step_show_a_stall_the_mean_spreads():
    profile = StepProfile()
    for step_s in (0.1, 0.1, 3.0, 0.1, 0.1):
        profile.begin_step()
        profile.end_step(wait_s=0.0, step_s=step_s)
    figures = profile.figures()
    assert figures["step_s"] == pytest.approx(0.68)
    assert figures["step_median_s"] == pytest.approx(0.1) and figures["step_max_s"] == pytest.approx(3.0)
    profile.reset()
    assert "step_median_s" not in profile.figures()


def test_the_window_spans_the_steps_since_the_reset_in_wall_clock_time():
    profile = StepProfile()
    profile.begin_step()
    profile.end_step(wait_s=0.0, step_s=0.0)
    profile.reset()  # a stage's first step is kept apart
    assert "window_start_unix" not in profile.figures()
    before = time.time()
    for _ in range(3):
        profile.begin_step()
        time.sleep(0.01)
        profile.end_step(wait_s=0.0, step_s=0.01)
    after = time.time()
    figures = profile.figures()
    assert before <= figures["window_start_unix"] < figures["window_end_unix"] <= after
    assert figures["window_end_unix"] - figures["window_start_unix"] >= 0.03


def test_a_profiled_step_times_its_phases_and_counts_its_collectives(engine, batch_maker, monkeypatch):
    engine, config = engine
    from deepspeed.comm import comm

    for owner in (dist, comm.cdb):  # restored after the test: attach wraps them process-wide
        for name in COLLECTIVES:
            if hasattr(owner, name):
                monkeypatch.setattr(owner, name, getattr(owner, name))
    profile = StepProfile()
    profile.attach(engine.module)
    stage = config.train.stages[-1]  # fine-tuning: encoder and LLM both run
    set_stage_hparams(engine.optimizer, stage, freeze_for_stage(engine.module, stage), factor=1.0)
    profile.begin_step()
    train_step(
        engine, [batch_maker(2, seed=1)], stage, engine.module.prompt_builder(), StepMeter(), None, profile
    )
    profile.end_step(wait_s=0.0, step_s=60.0)
    figures = profile.figures()
    for phase in ("encoder_forward", "llm_forward", "backward", "optimizer"):
        assert figures[f"{phase}_s"] > 0, phase
    # the step's seed count and finiteness flag, at least; ZeRO-3 adds its own
    assert figures["collectives/all_reduce"] >= 2
    assert figures["collective_mb"] > 0
    calls = figures["collectives"]
    dist.all_reduce(torch.zeros(1))  # outside a step: not counted
    assert profile.figures()["collectives"] == calls
    profile.begin_step()
    dist.all_reduce(torch.zeros(250_000))  # 1 MB, counted
    profile.end_step(wait_s=0.0, step_s=1.0)
    both_steps = profile.figures()
    assert both_steps["collective_mb"] * 2 == pytest.approx(figures["collective_mb"] + 1.0)

"""A best checkpoint without AdamW's moments, on a real ZeRO-3 engine (one process): what its optimizer file
holds and how much smaller it is, the live state put back, and the zeros DeepSpeed's universal conversion
gets in their place. `test_checkpoint.py` restores such a best, on the same and on another world size."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
import torch

from netgpt.train import checkpoint, moments
from netgpt.train.checkpoint import DS_TAG, TrainerState, save_best
from netgpt.train.moments import MOMENTS, OPTIMIZER_FILE_SUFFIX, adam_moments_left_out, with_zero_moments
from netgpt.train.monitor import StepMeter
from netgpt.train.stages import set_stage_hparams
from netgpt.train.step import train_step


def _optimizer_file(ds_folder):
    (path,) = [p for p in ds_folder.iterdir() if p.name.endswith(OPTIMIZER_FILE_SUFFIX)]
    return path


def _zero_state(path):
    return torch.load(path, map_location="cpu", weights_only=False)["optimizer_state_dict"]


@pytest.fixture(scope="module")
def trained(engine, batch_maker):
    """The engine after a step of graph pretraining, so that the trained groups have moments."""
    engine, config = engine
    stage = config.train.stages[0]
    set_stage_hparams(engine.optimizer, stage, stage.active_parts(), factor=1.0)
    train_step(engine, [batch_maker(2, seed=21)], stage, engine.module.prompt_builder(), StepMeter())
    return engine, stage


def test_a_best_keeps_the_masters_and_steps_and_leaves_out_the_moments(trained, tmp_path) -> None:
    engine, stage = trained
    live = engine.optimizer.optimizer.state
    moments_before = {id(p): {k: s[k].clone() for k in MOMENTS} for p, s in live.items() if "exp_avg" in s}
    assert moments_before
    best = save_best(engine, tmp_path, stage.name, TrainerState(global_step=1, best_step=1), rank=0)
    full = tmp_path / "full"
    checkpoint._write_shard(engine, full, TrainerState(global_step=1), rank=0)

    saved, whole = _zero_state(_optimizer_file(best / DS_TAG)), _zero_state(_optimizer_file(full / DS_TAG))
    groups = saved["optimizer_state_dict"]["state"]
    assert groups and all(set(state) == {"step"} for state in groups.values()), groups
    assert {i: s["step"] for i, s in groups.items()} == {
        i: s["step"] for i, s in whole["optimizer_state_dict"]["state"].items()
    }
    for ours, theirs in zip(saved["fp32_flat_groups"], whole["fp32_flat_groups"], strict=True):
        assert torch.equal(ours, theirs)
    # the masters are 4 of the 12 bytes a parameter that a full optimizer file holds
    masters = sum(t.numel() * 4 for t in saved["fp32_flat_groups"])
    best_bytes, full_bytes = (
        _optimizer_file(best / DS_TAG).stat().st_size,
        _optimizer_file(full / DS_TAG).stat().st_size,
    )
    assert best_bytes < masters + 200_000 and full_bytes > 3 * masters - 200_000, (best_bytes, full_bytes)
    # the engine's own moments are untouched: training goes on from them
    assert engine.optimizer.optimizer.state is live
    for param, state in live.items():
        if id(param) in moments_before:
            assert all(torch.equal(state[k], moments_before[id(param)][k]) for k in MOMENTS)


def test_the_live_state_comes_back_after_an_error_and_other_optimizers_keep_theirs(trained) -> None:
    engine, _ = trained
    live = engine.optimizer.optimizer.state
    with pytest.raises(RuntimeError, match="disk full"), adam_moments_left_out(engine) as left_out:
        assert left_out and engine.optimizer.optimizer.state is not live
        raise RuntimeError("disk full")
    assert engine.optimizer.optimizer.state is live
    swapping = SimpleNamespace(
        zero_optimization_stage=lambda: 3,
        optimizer=SimpleNamespace(optimizer=engine.optimizer.optimizer, swap_optimizer=True),
    )
    zero2 = SimpleNamespace(zero_optimization_stage=lambda: 2, optimizer=engine.optimizer)
    for other in (swapping, zero2):
        with adam_moments_left_out(other) as left_out:
            assert not left_out and engine.optimizer.optimizer.state is live


def test_the_universal_conversion_gets_zero_moments_for_a_best_and_a_full_checkpoint_as_it_is(
    trained, tmp_path
) -> None:
    engine, stage = trained
    best = save_best(engine, tmp_path, stage.name, TrainerState(global_step=1, best_step=1), rank=0)
    given = with_zero_moments(best / DS_TAG, tmp_path / "scratch")
    assert given == tmp_path / "scratch"
    assert sorted(p.name for p in given.iterdir()) == sorted(p.name for p in (best / DS_TAG).iterdir())
    path = _optimizer_file(given)
    zero, kept = _zero_state(path), _zero_state(_optimizer_file(best / DS_TAG))
    groups = zero["optimizer_state_dict"]["state"]
    assert len(groups) == len(zero["fp32_flat_groups"])
    for index, master in enumerate(zero["fp32_flat_groups"]):
        assert torch.equal(master, kept["fp32_flat_groups"][index])
        for moment in MOMENTS:
            assert groups[index][moment].shape == master.shape and not groups[index][moment].any()
        assert groups[index]["step"] == kept["optimizer_state_dict"]["state"][index]["step"]
    for other in (p for p in given.iterdir() if p != path):  # linked, not rewritten
        assert os.path.samefile(other, best / DS_TAG / other.name)

    full = tmp_path / "full"
    checkpoint._write_shard(engine, full, TrainerState(global_step=1), rank=0)
    assert with_zero_moments(full / DS_TAG, tmp_path / "unused") == full / DS_TAG
    assert not (tmp_path / "unused").exists()


def test_where_links_fail_the_files_are_copied_and_a_folder_without_optimizer_files_is_named(
    trained, tmp_path, monkeypatch
) -> None:
    engine, stage = trained
    best = save_best(engine, tmp_path, stage.name, TrainerState(global_step=1, best_step=1), rank=0)

    def no_links(*_):
        raise OSError("links not supported here")

    monkeypatch.setattr(moments.os, "link", no_links)
    given = with_zero_moments(best / DS_TAG, tmp_path / "scratch")
    assert sorted(p.name for p in given.iterdir()) == sorted(p.name for p in (best / DS_TAG).iterdir())
    for other in (p for p in given.iterdir() if not p.name.endswith(OPTIMIZER_FILE_SUFFIX)):
        original = best / DS_TAG / other.name
        assert not os.path.samefile(other, original) and other.read_bytes() == original.read_bytes()
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty: no ZeRO optimizer files \(\*optim_states.pt\)"):
        with_zero_moments(tmp_path / "empty", tmp_path / "scratch2")

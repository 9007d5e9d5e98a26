"""The DeepSpeed shard set is checked against the world size the checkpoint records, before consolidating."""

from __future__ import annotations

import shutil

import pytest
import torch

from netgpt.convert import ConvertError, convert
from netgpt.convert.shards import inspect

pytestmark = pytest.mark.timeout(300)


def test_the_recorded_world_size_is_read(zero3_run):
    zero = inspect(zero3_run.mid, "ds")
    assert (zero.world_size, zero.zero_stage, zero.tag_dir) == (2, 3, zero3_run.mid / "ds")


def _nothing_written(tmp_path):
    return sorted(p.name for p in tmp_path.iterdir()) == ["copy"]


def test_a_missing_shard(copy_run, tmp_path):
    run = copy_run()
    (run.latest / "ds" / "zero_pp_rank_1_mp_rank_00_optim_states.pt").unlink()
    with pytest.raises(
        ConvertError, match=r"optimizer shards of ranks \[0\], expected ranks 0..1 .*missing \[1\]"
    ):
        convert(run.latest, tmp_path / "out")
    assert _nothing_written(tmp_path)


def test_shards_of_another_world_size(copy_run, tmp_path):
    run = copy_run()
    ds = run.latest / "ds"
    for kind in ("model", "optim"):
        shutil.copy(
            ds / f"zero_pp_rank_1_mp_rank_00_{kind}_states.pt",
            ds / f"zero_pp_rank_2_mp_rank_00_{kind}_states.pt",
        )
    with pytest.raises(ConvertError, match=r"world size 2\); from another world size: \[2\]"):
        convert(run.latest, tmp_path / "out")
    assert _nothing_written(tmp_path)


def test_a_tag_that_does_not_exist(copy_run, zero3_run, tmp_path):
    with pytest.raises(ConvertError, match=r"no DeepSpeed tag folder 'global_step9'"):
        convert(zero3_run.mid, tmp_path / "out", tag="global_step9")
    run = copy_run()
    shutil.rmtree(run.mid / "ds")
    with pytest.raises(ConvertError, match=rf"{run.mid / 'ds'}: no DeepSpeed tag folder 'ds'"):
        convert(run.mid, tmp_path / "out")
    assert _nothing_written(tmp_path)


def test_damaged_model_states(copy_run, tmp_path):
    run = copy_run()
    (run.mid / "ds" / "zero_pp_rank_0_mp_rank_00_model_states.pt").write_bytes(b"not a pickle")
    with pytest.raises(ConvertError, match="unreadable DeepSpeed model states"):
        convert(run.mid, tmp_path / "out")
    assert _nothing_written(tmp_path)


def test_model_states_are_read_without_running_pickled_code(tmp_path, code_running_pickle):
    ds = tmp_path / "ckpt" / "ds"
    ds.mkdir(parents=True)
    marker = tmp_path / "ran"
    hostile = {"dp_world_size": 1, "hook": code_running_pickle(marker)}
    torch.save(hostile, ds / "zero_pp_rank_0_mp_rank_00_model_states.pt")
    with pytest.raises(ConvertError, match="unreadable DeepSpeed model states"):
        inspect(tmp_path / "ckpt", "ds")
    assert not marker.exists()


def test_deepspeeds_own_classes_are_allowed(tmp_path):
    from deepspeed.runtime.fp16.loss_scaler import LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum

    ds = tmp_path / "ckpt" / "ds"
    ds.mkdir(parents=True)
    header = {"dp_world_size": 1, "scaler": LossScaler(1.0), "stage": ZeroStageEnum.weights}
    for kind in ("model", "optim"):
        torch.save(header, ds / f"zero_pp_rank_0_mp_rank_00_{kind}_states.pt")
    assert inspect(tmp_path / "ckpt", "ds").world_size == 1

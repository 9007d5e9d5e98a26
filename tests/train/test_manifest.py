"""A checkpoint is complete when every rank's manifest is there and every file it lists matches."""

from __future__ import annotations

import shutil

from netgpt.train.manifest import checkpoint_problems, manifest_file


def test_a_complete_checkpoint_has_no_problems(fake_checkpoint, tmp_path):
    folder = fake_checkpoint(tmp_path / "step", 4)
    assert checkpoint_problems(folder) == []


def test_a_missing_rng_file_is_named(fake_checkpoint, tmp_path):
    folder = fake_checkpoint(tmp_path / "step", 4)
    (folder / "rng" / "rank1.safetensors").unlink()
    assert checkpoint_problems(folder) == [f"{folder / 'rng' / 'rank1.safetensors'}: missing"]


def test_same_size_garbage_is_found_only_by_the_full_check(fake_checkpoint, tmp_path):
    folder = fake_checkpoint(tmp_path / "step", 4)
    shard = folder / "ds" / "zero_pp_rank_1_mp_rank_00_optim_states.pt"
    shard.write_bytes(b"x" * shard.stat().st_size)
    assert checkpoint_problems(folder, full=False) == []
    assert checkpoint_problems(folder) == [f"{shard}: contents differ from what rank 1 wrote (sha256)"]


def test_a_truncated_file_and_a_rank_that_did_not_finish(fake_checkpoint, tmp_path):
    folder = fake_checkpoint(tmp_path / "step", 4)
    shard = folder / "ds" / "zero_pp_rank_0_mp_rank_00_model_states.pt"
    shard.write_bytes(shard.read_bytes()[:10])
    manifest_file(folder, 1).unlink()
    assert checkpoint_problems(folder, full=False) == [
        f"{shard}: 10 bytes, rank 0 wrote 64",
        f"{manifest_file(folder, 1)}: missing (rank 1 of 2 did not finish writing)",
    ]


def test_a_missing_or_unreadable_state(fake_checkpoint, tmp_path):
    folder = fake_checkpoint(tmp_path / "step", 4)
    (folder / "trainer_state.json").write_text('{"global_step": 4, "world_')
    assert checkpoint_problems(folder)[0].startswith(f"{folder / 'trainer_state.json'}: unreadable")
    (folder / "trainer_state.json").unlink()
    assert checkpoint_problems(folder) == [f"{folder / 'trainer_state.json'}: missing"]
    assert checkpoint_problems(tmp_path / "nowhere") == [f"{tmp_path / 'nowhere'}: missing"]


def test_a_checkpoint_from_before_manifests_is_checked_for_its_state_and_ds_folder(fake_checkpoint, tmp_path):
    folder = fake_checkpoint(tmp_path / "step", 4)
    shutil.rmtree(folder / "manifest")
    assert checkpoint_problems(folder) == []
    shutil.rmtree(folder / "ds")
    assert checkpoint_problems(folder) == [f"{folder / 'ds'}: missing"]

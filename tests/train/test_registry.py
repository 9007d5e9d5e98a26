"""Resume falls back to the newest complete checkpoint, and Ray Train's own registry code agrees."""

from __future__ import annotations

import json

import pytest
from ray.train import CheckpointConfig
from ray.train.v2._internal.execution.checkpoint.checkpoint_manager import (
    CheckpointManager,
    _CheckpointManagerState,
    _TrainingResultState,
)
from ray.train.v2._internal.execution.storage import StorageContext

from netgpt.train.registry import (
    BEFORE_REPAIR,
    DAMAGED_DIR,
    REGISTRY_FILE,
    NoCompleteCheckpoint,
    prepare_resume,
)

NAMES = ["step-00000004-r0", "step-00000008-r0", "step-00000012-r1"]


@pytest.fixture()
def run_dir(tmp_path, fake_checkpoint):
    """A run of three registered checkpoints, registry written with Ray's own model of the file."""
    run = tmp_path / "run"
    for name in NAMES:
        fake_checkpoint(run / name, int(name.split("-")[1]))
    results = [_TrainingResultState(checkpoint_dir_name=n, metrics={"global_step": 1}) for n in NAMES]
    snapshot = _CheckpointManagerState(
        checkpoint_results=results,
        checkpoint_report_indices=[3, 7, 9],
        latest_checkpoint_result=results[-1],
        pending_training_results=[],
        pending_validation_specs=[],
        current_report_index=10,
        validated_checkpoint_dir_names=[],
        timed_out_validation_checkpoint_dir_names=[],
        failed_validation_checkpoint_dir_names=[],
    )
    (run / REGISTRY_FILE).write_text(snapshot.model_dump_json())
    return run


def ray_latest(run_dir) -> str:
    """The checkpoint Ray Train's controller would hand the workers, read by Ray's own code."""
    storage = StorageContext(storage_path=str(run_dir.parent), experiment_dir_name=run_dir.name)
    manager = CheckpointManager(CheckpointConfig(num_to_keep=3), storage)
    return manager.latest_checkpoint_result.checkpoint.path.rsplit("/", 1)[-1]


def test_an_intact_registry_is_left_as_it_is(run_dir):
    before = (run_dir / REGISTRY_FILE).read_bytes()
    choice = prepare_resume(run_dir, say=pytest.fail)
    assert (choice.checkpoint, choice.rewritten) == (NAMES[-1], False)
    assert (run_dir / REGISTRY_FILE).read_bytes() == before and ray_latest(run_dir) == NAMES[-1]


def test_a_damaged_newest_checkpoint_is_skipped_naming_why(run_dir):
    (run_dir / NAMES[-1] / "rng" / "rank1.safetensors").unlink()
    said = []
    choice = prepare_resume(run_dir, say=said.append)
    assert choice.checkpoint == NAMES[1]
    assert choice.skipped == [(NAMES[-1], f"{run_dir / NAMES[-1] / 'rng' / 'rank1.safetensors'}: missing")]
    assert any(
        f"skipping checkpoint {run_dir / NAMES[-1]}: " in line and "rank1.safetensors" in line
        for line in said
    )
    assert any(f"resuming from {run_dir / NAMES[1]}" in line for line in said)
    assert ray_latest(run_dir) == NAMES[1]
    assert (run_dir / DAMAGED_DIR / NAMES[-1]).is_dir() and not (run_dir / NAMES[-1]).exists()
    registry = json.loads((run_dir / REGISTRY_FILE).read_text())
    assert [r["checkpoint_dir_name"] for r in registry["checkpoint_results"]] == NAMES[:2]
    assert registry["checkpoint_report_indices"] == [3, 7] and registry["current_report_index"] == 10
    assert (run_dir / BEFORE_REPAIR).is_file()


def test_same_size_garbage_and_a_missing_folder_are_both_skipped(run_dir):
    shard = run_dir / NAMES[1] / "ds" / "zero_pp_rank_0_mp_rank_00_optim_states.pt"
    shard.write_bytes(b"\7" * shard.stat().st_size)
    for path in sorted((run_dir / NAMES[-1]).rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (run_dir / NAMES[-1]).rmdir()
    choice = prepare_resume(run_dir, say=lambda line: None)
    assert choice.checkpoint == NAMES[0]
    assert [name for name, _ in choice.skipped] == [NAMES[2], NAMES[1]]
    assert choice.skipped[0][1] == f"{run_dir / NAMES[2]}: missing"
    assert "contents differ from what rank 0 wrote (sha256)" in choice.skipped[1][1]
    assert ray_latest(run_dir) == NAMES[0]


def test_a_truncated_registry_falls_back_to_the_checkpoint_folders(run_dir):
    registry = run_dir / REGISTRY_FILE
    registry.write_bytes(registry.read_bytes()[:57])
    (run_dir / NAMES[-1] / "manifest" / "rank0.json").unlink()
    said = []
    choice = prepare_resume(run_dir, say=said.append)
    assert choice.checkpoint == NAMES[1] and choice.rewritten
    assert said[0].startswith(f"{registry}: unreadable (JSONDecodeError)")
    assert ray_latest(run_dir) == NAMES[1]
    rewritten = json.loads(registry.read_text())
    assert [r["checkpoint_dir_name"] for r in rewritten["checkpoint_results"]] == NAMES[:2]
    assert rewritten["checkpoint_results"][1]["metrics"] == {"global_step": 8, "stage_index": 0}


def test_at_one_step_the_folders_are_taken_in_the_order_they_were_written(run_dir, fake_checkpoint):
    """A drain during step 12's validation, another during its test, then the stage's end: written in that
    order, at one step and restart; with the registry unreadable, the last written is the newest, and the
    next newest complete one is the test's."""
    written = [f"step-00000012-r1-{due}" for due in ("validation", "test")] + ["step-00000012-r1"]
    for name in written[:2]:  # the plain one is in the run already (NAMES)
        fake_checkpoint(run_dir / name, 12)
    (run_dir / REGISTRY_FILE).write_text("{")
    choice = prepare_resume(run_dir, say=lambda line: None)
    assert choice.checkpoint == written[-1]
    rewritten = json.loads((run_dir / REGISTRY_FILE).read_text())
    assert [r["checkpoint_dir_name"] for r in rewritten["checkpoint_results"]] == NAMES[:2] + written
    (run_dir / written[-1] / "manifest" / "rank0.json").unlink()
    assert prepare_resume(run_dir, say=lambda line: None).checkpoint == written[1]


def test_no_complete_checkpoint_is_an_error_not_a_fresh_start(run_dir):
    for name in NAMES:
        (run_dir / name / "trainer_state.json").unlink()
    with pytest.raises(
        NoCompleteCheckpoint, match=r"no registered checkpoint is complete .*new train.run_name"
    ):
        prepare_resume(run_dir, say=lambda line: None)


def test_a_fresh_run_has_nothing_to_resume(tmp_path):
    assert prepare_resume(tmp_path, say=pytest.fail).checkpoint is None

"""Checkpoint shards on a real ZeRO-3 engine (one process): state round trip, resume (also through
DeepSpeed's universal checkpoint, the path of a resume on another world size), a crash while writing the best
checkpoint that leaves the previous one intact, and the refusal of a resume whose settings changed."""

import json

import pytest
import ray.train
import torch

from netgpt.config import RETIRED_KEYS
from netgpt.graph.types import feature_dims
from netgpt.train import checkpoint
from netgpt.train.checkpoint import (
    ResumeRefused,
    TrainerState,
    check_resume,
    fingerprint,
    load_checkpoint,
    restore_best,
    resume_settings,
    save_best,
)
from netgpt.train.engine import avoid_jit_builds, build_engine
from netgpt.train.manifest import checkpoint_problems
from netgpt.train.monitor import StepMeter
from netgpt.train.rng_state import RngStateError
from netgpt.train.stages import set_stage_hparams
from netgpt.train.step import train_step

FEATURE_DIMS = feature_dims(text_dim=6, time_dim=4, content_dim=5)


def _weights(engine):
    return [p.ds_tensor.detach().clone() for p in engine.module.parameters()]


def test_trainer_state_round_trip():
    state = TrainerState(stage_index=2, stage_step=5, position=11, global_step=40, best_score=0.5)
    assert TrainerState.from_json(state.to_json()) == state


def _moments(engine):
    """The AdamW moments of every parameter group (ZeRO keeps them on its flat fp32 partitions)."""
    states = engine.optimizer.optimizer.state.values()
    return [state[key].clone() for state in states for key in ("exp_avg", "exp_avg_sq") if key in state]


def test_load_restores_weights_optimizer_rng_and_state(engine, batch_maker, tmp_path):
    engine, config = engine
    stage = config.train.stages[0]
    train_step(engine, [batch_maker(2, seed=4)], stage, engine.module.prompt_builder(), StepMeter())
    state = TrainerState(stage_index=0, stage_step=3, position=6, global_step=3)
    checkpoint._write_shard(engine, tmp_path, state, rank=0)
    saved, moments, expected_draw = _weights(engine), _moments(engine), torch.rand(3)
    assert moments and any(m.abs().sum() > 0 for m in moments)
    train_step(engine, [batch_maker(2, seed=5)], stage, engine.module.prompt_builder(), StepMeter())
    assert any(not torch.equal(a, b) for a, b in zip(saved, _weights(engine), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(moments, _moments(engine), strict=True))

    restored = load_checkpoint(engine, ray.train.Checkpoint.from_directory(str(tmp_path)), rank=0)
    assert all(torch.equal(a, b) for a, b in zip(saved, _weights(engine), strict=True))
    # the Adam moments too: a resumed step must be the step an uninterrupted run takes
    assert all(torch.equal(a, b) for a, b in zip(moments, _moments(engine), strict=True))
    assert torch.equal(torch.rand(3), expected_draw)
    assert (restored.stage_step, restored.position, restored.global_step) == (3, 6, 3)
    assert restored.restarts == 1
    # nothing of ours is a pickle: RNG as safetensors, state and manifest as JSON, all in the manifest
    assert sorted(p.name for p in (tmp_path / "rng").iterdir()) == ["rank0.safetensors"]
    assert checkpoint_problems(tmp_path) == []


def test_a_missing_rng_file_is_an_error_not_a_silent_skip(engine, tmp_path):
    engine, _ = engine
    checkpoint._write_shard(engine, tmp_path, TrainerState(global_step=3, world_size=1), rank=0)
    (tmp_path / "rng" / "rank0.safetensors").unlink()
    with pytest.raises(RngStateError, match=r"rng/rank0.safetensors: missing"):
        load_checkpoint(engine, ray.train.Checkpoint.from_directory(str(tmp_path)), rank=0)


def test_a_crash_while_writing_the_best_checkpoint_keeps_the_previous_one(engine, tmp_path, monkeypatch):
    engine, _ = engine
    first = save_best(engine, tmp_path, "graph_pretrain", TrainerState(global_step=4), rank=0)
    before = {p.relative_to(first): p.read_bytes() for p in first.rglob("*") if p.is_file()}

    def disk_full(folder, tag):
        (tmp_path / "best" / ".graph_pretrain.partial" / "half-written").write_bytes(b"\0" * 10)
        raise OSError("No space left on device")

    monkeypatch.setattr(engine, "save_checkpoint", disk_full)
    with pytest.raises(OSError, match="No space"):
        save_best(engine, tmp_path, "graph_pretrain", TrainerState(global_step=8), rank=0)
    after = {p.relative_to(first): p.read_bytes() for p in first.rglob("*") if p.is_file()}
    assert after == before
    assert json.loads((first / "trainer_state.json").read_text())["global_step"] == 4


def test_restore_best_brings_back_the_best_weights_and_their_master_copy(engine, batch_maker, tmp_path):
    engine, config = engine
    stage = config.train.stages[0]
    save_best(engine, tmp_path, stage.name, TrainerState(global_step=4, best_step=4), rank=0)
    best = _weights(engine)
    train_step(engine, [batch_maker(2, seed=7)], stage, engine.module.prompt_builder(), StepMeter())
    assert any(not torch.equal(a, b) for a, b in zip(best, _weights(engine), strict=True))

    restore_best(engine, tmp_path, stage.name)
    assert all(torch.equal(a, b) for a, b in zip(best, _weights(engine), strict=True))
    # the next step starts from them: at learning rate 0 it leaves the best weights as they are
    set_stage_hparams(engine.optimizer, stage, active=[], factor=1.0)
    train_step(engine, [batch_maker(2, seed=8)], stage, engine.module.prompt_builder(), StepMeter())
    assert all(torch.equal(a, b) for a, b in zip(best, _weights(engine), strict=True))


def _group_steps(engine):
    return [float(state["step"]) for state in engine.optimizer.optimizer.state.values() if "step" in state]


def test_a_checkpoint_of_another_world_size_loads_through_a_universal_checkpoint(
    engine, batch_maker, tmp_path
):
    """The re-cut path on one process: the state says 2 workers wrote it, so it is converted with DeepSpeed's
    ds_to_universal and loaded as a universal checkpoint; weights, Adam moments, steps, group names and the
    state come back, and the conversion is removed afterwards."""
    engine, config = engine
    stage = config.train.stages[0]
    set_stage_hparams(engine.optimizer, stage, stage.active_parts(), factor=1.0)  # a test before set lr 0
    train_step(engine, [batch_maker(2, seed=11)], stage, engine.module.prompt_builder(), StepMeter())
    folder = tmp_path / "step"
    folder.mkdir()
    state = TrainerState(stage_step=2, position=8, global_step=2, world_size=2, batch_world_size=2)
    checkpoint._write_shard(engine, folder, state, rank=0)
    saved, moments, steps = _weights(engine), _moments(engine), _group_steps(engine)
    names = [group["name"] for group in engine.optimizer.param_groups]
    assert moments and any(m.abs().sum() > 0 for m in moments)
    train_step(engine, [batch_maker(2, seed=12)], stage, engine.module.prompt_builder(), StepMeter())
    assert any(not torch.equal(a, b) for a, b in zip(saved, _weights(engine), strict=True))

    run_dir = tmp_path / "run"
    restored = load_checkpoint(
        engine, ray.train.Checkpoint.from_directory(str(folder)), rank=0, world_size=1, run_dir=run_dir
    )
    assert all(torch.equal(a, b) for a, b in zip(saved, _weights(engine), strict=True))
    assert all(torch.equal(a, b) for a, b in zip(moments, _moments(engine), strict=True))
    assert _group_steps(engine) == steps
    # one step tensor per group (DeepSpeed's universal load shares one, which AdamW then bumps per group)
    states = engine.optimizer.optimizer.state.values()
    step_tensors = [state["step"] for state in states if torch.is_tensor(state.get("step"))]
    assert len({id(t) for t in step_tensors}) == len(step_tensors)
    assert [group["name"] for group in engine.optimizer.param_groups] == names
    assert (restored.world_size, restored.position, restored.restarts) == (2, 8, 1)
    assert not any((run_dir / checkpoint.UNIVERSAL_DIR).iterdir())
    # and the engine still loads ordinary checkpoints afterwards (the universal switch is off again)
    assert not engine.load_universal_checkpoint()
    train_step(engine, [batch_maker(2, seed=12)], stage, engine.module.prompt_builder(), StepMeter())
    assert _group_steps(engine) == [step + 1 for step in steps]


def test_a_resume_with_changed_settings_is_refused_naming_them(make_tiny_config):
    config = make_tiny_config()
    settings = resume_settings(config, {"train": 100})
    state = TrainerState(batch_world_size=2, fingerprint=fingerprint(settings), settings=settings)
    moved = make_tiny_config()
    moved.train.num_workers, moved.train.checkpoint_every, moved.graph.store_dir = 1, 7, "/elsewhere"
    moved.train.bind_cores = "false"
    moved.train.worker_resources, moved.graph.sampler_resources = {"gpu_node": 1.0}, {"cpu_node": 0.5}
    moved.train.stages[1].lr = 1e-4  # lowered to resume a run that diverged
    check_resume(state, resume_settings(moved, {"train": 100}), moved.train.stages, world_size=1)

    changed = make_tiny_config()
    changed.model.hidden_size = 64
    changed.train.stages[1].min_lr_ratio = 0.5
    with pytest.raises(ResumeRefused) as refused:
        check_resume(state, resume_settings(changed, {"train": 99}), changed.train.stages, world_size=2)
    message = str(refused.value)
    assert "model.hidden_size 16 -> 64" in message
    assert f"train.stages[{changed.train.stages[1].name}].min_lr_ratio 0.1 -> 0.5" in message
    assert "store.train_seeds 100 -> 99" in message
    assert "train.num_workers" not in message and "checkpoint_every" not in message


def test_a_checkpoint_that_recorded_retired_keys_still_resumes(make_tiny_config):
    config = make_tiny_config()
    settings = resume_settings(config, {"train": 100})
    assert not set(RETIRED_KEYS) & set(settings)
    recorded = {**settings, "graph.batch_size": 512, "graph.seed": 0}  # as a run of an older netgpt saved
    state = TrainerState(batch_world_size=1, fingerprint=fingerprint(recorded), settings=recorded)
    check_resume(state, settings, config.train.stages, world_size=1)
    changed = {**settings, "model.hidden_size": 64}
    with pytest.raises(ResumeRefused, match=r"model\.hidden_size 16 -> 64") as refused:
        check_resume(state, changed, config.train.stages, world_size=1)
    assert "graph.batch_size" not in str(refused.value)


def test_a_checkpoint_that_fingerprinted_a_stage_lr_resumes_with_a_lower_one(make_tiny_config):
    """Checkpoints written before a resume could change a stage's lr recorded it among their settings."""
    config = make_tiny_config()
    settings = resume_settings(config)
    assert not any(key.endswith("].lr") for key in settings)
    recorded = {**settings, **{f"train.stages[{stage.name}].lr": stage.lr for stage in config.train.stages}}
    state = TrainerState(batch_world_size=1, fingerprint=fingerprint(recorded), settings=recorded)
    config.train.stages[0].lr /= 10
    check_resume(state, resume_settings(config), config.train.stages, world_size=1)


def test_a_worker_count_that_cannot_share_a_stage_step_is_refused(make_tiny_config):
    config = make_tiny_config()
    settings = resume_settings(config)
    state = TrainerState(batch_world_size=2, fingerprint=fingerprint(settings), settings=settings)
    check_resume(state, settings, config.train.stages, world_size=1)
    with pytest.raises(ResumeRefused, match="cannot resume on 3 workers: a step of stage 'graph_pretrain'"):
        check_resume(state, settings, config.train.stages, world_size=3)


def test_the_next_stage_keeps_the_run_records():
    state = TrainerState(
        stage_index=1,
        stage_step=4,
        position=40,
        global_step=9,
        restarts=1,
        world_size=1,
        batch_world_size=2,
        grad_accum=4,
        fingerprint="f",
        settings={"a": 1},
        test_metrics={"x": 1.0},
    )
    nxt = state.for_next_stage({"y": 2.0})
    assert (nxt.stage_index, nxt.stage_step, nxt.position, nxt.global_step, nxt.restarts) == (2, 0, 0, 9, 1)
    assert (nxt.world_size, nxt.batch_world_size, nxt.fingerprint, nxt.settings) == (1, 2, "f", {"a": 1})
    assert nxt.test_metrics == {"x": 1.0, "y": 2.0}


def test_a_best_checkpoint_of_another_world_size_is_restored_through_a_universal_checkpoint(
    engine, batch_maker, tmp_path
):
    engine, config = engine
    stage = config.train.stages[0]
    set_stage_hparams(engine.optimizer, stage, stage.active_parts(), factor=1.0)
    folder = save_best(
        engine, tmp_path, stage.name, TrainerState(global_step=4, best_step=4, world_size=1), rank=0
    )
    # as if 2 workers had written it (one process cannot write the shards of two)
    recorded = TrainerState(global_step=4, best_step=4, world_size=2)
    (folder / checkpoint.STATE_FILE).write_text(recorded.to_json(), encoding="utf-8")
    best = _weights(engine)
    train_step(engine, [batch_maker(2, seed=9)], stage, engine.module.prompt_builder(), StepMeter())
    assert any(not torch.equal(a, b) for a, b in zip(best, _weights(engine), strict=True))

    restore_best(engine, tmp_path, stage.name, rank=0)
    assert all(torch.equal(a, b) for a, b in zip(best, _weights(engine), strict=True))
    assert not any((tmp_path / checkpoint.UNIVERSAL_DIR).iterdir())
    set_stage_hparams(engine.optimizer, stage, active=[], factor=1.0)
    train_step(engine, [batch_maker(2, seed=10)], stage, engine.module.prompt_builder(), StepMeter())
    assert all(torch.equal(a, b) for a, b in zip(best, _weights(engine), strict=True))


def test_zero2_checkpoints_of_another_world_size_load_through_a_universal_checkpoint(
    process_group, make_tiny_config, tokenizer, batch_maker, tmp_path
):
    """Both re-cut paths under ZeRO-2, the paper's GPU preset (`xs_video_paper`): a resume brings back the
    weights and Adam moments, and a best (whose ZeRO-2 files keep their moments) its weights. DeepSpeed
    converts ZeRO-1/2 files only when allowed to add its default conversion info, and their optimizer
    files are laid out otherwise than ZeRO-3's."""
    avoid_jit_builds()
    config = make_tiny_config()
    config.train.ds_config = "ds_configs/zero2.json"
    engine, ds_config = build_engine(config, FEATURE_DIMS, tokenizer, world_size=1)
    assert ds_config["zero_optimization"]["stage"] == 2
    stage = config.train.stages[0]
    set_stage_hparams(engine.optimizer, stage, stage.active_parts(), factor=1.0)
    train_step(engine, [batch_maker(2, seed=11)], stage, engine.module.prompt_builder(), StepMeter())
    folder = tmp_path / "step"
    folder.mkdir()
    state = TrainerState(stage_step=2, position=8, global_step=2, world_size=2, batch_world_size=2)
    checkpoint._write_shard(engine, folder, state, rank=0)
    best = save_best(engine, tmp_path, stage.name, TrainerState(global_step=2, best_step=2), rank=0)
    recorded = TrainerState(global_step=2, best_step=2, world_size=2)  # as if 2 workers had written it
    (best / checkpoint.STATE_FILE).write_text(recorded.to_json(), encoding="utf-8")

    def weights():
        return [p.detach().clone() for p in engine.module.parameters()]

    saved, moments = weights(), _moments(engine)
    assert moments and any(m.abs().sum() > 0 for m in moments)
    train_step(engine, [batch_maker(2, seed=12)], stage, engine.module.prompt_builder(), StepMeter())
    assert any(not torch.equal(a, b) for a, b in zip(saved, weights(), strict=True))
    run_dir = tmp_path / "run"
    restored = load_checkpoint(
        engine, ray.train.Checkpoint.from_directory(str(folder)), rank=0, world_size=1, run_dir=run_dir
    )
    assert restored.world_size == 2
    assert all(torch.equal(a, b) for a, b in zip(saved, weights(), strict=True))
    assert all(torch.equal(a, b) for a, b in zip(moments, _moments(engine), strict=True))

    train_step(engine, [batch_maker(2, seed=12)], stage, engine.module.prompt_builder(), StepMeter())
    assert any(not torch.equal(a, b) for a, b in zip(saved, weights(), strict=True))
    restore_best(engine, tmp_path, stage.name, rank=0)
    assert all(torch.equal(a, b) for a, b in zip(saved, weights(), strict=True))
    assert not any((tmp_path / checkpoint.UNIVERSAL_DIR).iterdir())


@pytest.mark.parametrize("best", [False, True], ids=["checkpoint", "best"])
@pytest.mark.parametrize("stage_index", [0, 2])
def test_a_checkpoint_is_no_larger_than_the_plan_counts_one(engine, batch_maker, tmp_path, stage_index, best):
    """`ResourcePlan.checkpoint_bytes`, (12 + b) bytes per parameter and 1 MiB a rank, bounds a real
    checkpoint's files whichever parts are frozen (graph pretraining freezes the LLM, whose parameters then
    go into the model states; fine-tuning trains everything); once every part has taken a step (AdamW makes
    its moments at the first), the optimizer states alone are 12 bytes a parameter. A stage's best
    (`best_checkpoint_bytes`) has no moments: 4 bytes a parameter of master weights."""
    from netgpt.train.plan import BEST_OPTIMIZER_BYTES, CHECKPOINT_RANK_BYTES, OPTIMIZER_BYTES
    from netgpt.train.stages import freeze_for_stage

    engine, config = engine
    per_param = BEST_OPTIMIZER_BYTES if best else OPTIMIZER_BYTES
    before = [p.requires_grad for p in engine.module.parameters()]
    finetune = config.train.stages[2]
    set_stage_hparams(engine.optimizer, finetune, freeze_for_stage(engine.module, finetune), factor=0.0)
    train_step(engine, [batch_maker(2, seed=3)], finetune, engine.module.prompt_builder(), StepMeter())
    freeze_for_stage(engine.module, config.train.stages[stage_index])
    state = TrainerState(global_step=1, world_size=1)
    try:
        if best:
            folder = save_best(engine, tmp_path, config.train.stages[stage_index].name, state, rank=0)
        else:
            folder = tmp_path
            checkpoint._write_shard(engine, folder, state, rank=0)
    finally:
        for param, requires_grad in zip(engine.module.parameters(), before, strict=True):
            param.requires_grad_(requires_grad)
    files = {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*") if p.is_file()}
    params = sum(p.ds_numel for p in engine.module.parameters())
    optimizer = sum(size for name, size in files.items() if "optim_states" in name)
    assert per_param * params <= optimizer <= per_param * params * 1.05 + 100_000, files
    tensors = (per_param + (2 if engine.bfloat16_enabled() else 4)) * params
    assert sum(files.values()) <= tensors + CHECKPOINT_RANK_BYTES, (files, params)  # one rank

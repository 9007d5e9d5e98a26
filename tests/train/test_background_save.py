"""Checkpoints written on a thread while training goes on, on a real ZeRO-3 engine (one process): the files
hold the state at the save, not at the write; the ranks agree when a write has ended; a failed write is an
error naming the checkpoint, and leaves nothing in place of a checkpoint."""

import json
import shutil
import subprocess
import sys
import threading
from collections import OrderedDict, defaultdict, namedtuple
from concurrent.futures import Future

import pytest
import ray.train
import torch
from deepspeed.runtime.checkpoint_engine import TorchCheckpointEngine

from netgpt.train import checkpoint
from netgpt.train.background_save import BackgroundWriter, host_copy, snapshots_of
from netgpt.train.checkpoint import (
    DS_TAG,
    CheckpointNotWritten,
    PendingCheckpoint,
    TrainerState,
    finish_checkpoint,
    load_checkpoint,
    restore_best,
    save_best,
    start_best,
    start_checkpoint,
    writes_ended,
)
from netgpt.train.manifest import checkpoint_problems
from netgpt.train.monitor import StepMeter
from netgpt.train.stages import set_stage_hparams
from netgpt.train.step import train_step

Pair = namedtuple("Pair", "left right")


def _weights(engine):
    return [p.ds_tensor.detach().clone() for p in engine.module.parameters()]


def _assert_same(a, b, where="state"):
    """Two loaded states equal: the same containers, keys and values, tensors bit for bit."""
    assert type(a) is type(b), where
    if torch.is_tensor(a):
        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for key in a:
            _assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{where}[{index}]")
    elif type(a).__eq__ is object.__eq__ and hasattr(a, "__dict__"):  # e.g. DeepSpeed's loss scaler
        _assert_same(vars(a), vars(b), f"{where} attributes")
    else:
        assert a == b, where


def test_host_copy_keeps_container_types_and_nothing_shared():
    nested = [1.0]
    groups = defaultdict(list, {"a": [torch.ones(2)]})
    state = OrderedDict(
        groups=groups, pair=Pair(torch.zeros(1), nested), shape=torch.Size([2, 3]), scale={"cur": nested}
    )
    copied = host_copy(state)
    state["groups"]["a"][0].add_(5)
    state["pair"].left.add_(1)
    nested.append(2.0)
    assert type(copied) is OrderedDict and type(copied["groups"]) is defaultdict
    assert copied["groups"].default_factory is list and type(copied["pair"]) is Pair
    assert torch.equal(copied["groups"]["a"][0], torch.ones(2))
    assert torch.equal(copied["pair"].left, torch.zeros(1))
    assert copied["pair"].right == [1.0] and copied["scale"]["cur"] == [1.0]
    assert type(copied["shape"]) is torch.Size and copied["shape"] == (2, 3)


def _step(engine, config, batch_maker, seed):
    stage = config.train.stages[0]
    set_stage_hparams(engine.optimizer, stage, stage.active_parts(), factor=1.0)
    train_step(engine, [batch_maker(2, seed=seed)], stage, engine.module.prompt_builder(), StepMeter())


def test_a_background_checkpoint_holds_the_state_of_its_save_not_of_its_write(engine, batch_maker, tmp_path):
    """The copy is written after the next optimizer step has changed the live weights and moments: its files
    load to what a direct save at the same point wrote, and the engine restores from them."""
    engine, config = engine
    _step(engine, config, batch_maker, seed=21)
    state = TrainerState(stage_step=1, position=2, global_step=1, world_size=1)
    direct, background = tmp_path / "direct", tmp_path / "background"
    direct.mkdir()
    background.mkdir()
    checkpoint._write_shard(engine, direct, state, rank=0)
    saved = _weights(engine)
    own = engine.checkpoint_engine
    with snapshots_of(engine) as snapshot:
        engine.save_checkpoint(str(background), tag=DS_TAG)
    assert engine.checkpoint_engine is own
    checkpoint._write_rank_state(background, state, rank=0)

    _step(engine, config, batch_maker, seed=22)  # the live state moves on before anything is written
    assert any(not torch.equal(a, b) for a, b in zip(saved, _weights(engine), strict=True))
    BackgroundWriter().write(snapshot, background, rank=0).result()
    assert snapshot.files == []  # each copy let go once written

    written = sorted(p.relative_to(background) for p in (background / DS_TAG).rglob("*.pt"))
    assert written and written == sorted(p.relative_to(direct) for p in (direct / DS_TAG).rglob("*.pt"))
    for name in written:
        loaded = (torch.load(folder / name, weights_only=False) for folder in (direct, background))
        _assert_same(*loaded, where=str(name))
    assert checkpoint_problems(background) == []

    load_checkpoint(engine, ray.train.Checkpoint.from_directory(str(background)), rank=0)
    assert all(torch.equal(a, b) for a, b in zip(saved, _weights(engine), strict=True))


def _pending(name, shard, written):
    """A checkpoint `name` being written into `shard` by `written`, which nothing publishes."""
    return PendingCheckpoint(name, shard, shard.parent / name, step=0, written=written, publish=lambda: None)


class _GatedWriter(TorchCheckpointEngine):
    """Storage that takes a write only once `gate` opens (a slow shared volume)."""

    def __init__(self):
        super().__init__()
        self.gate = threading.Event()

    def save(self, state_dict, path):
        assert self.gate.wait(timeout=60)
        torch.save(state_dict, path)


def test_the_ranks_agree_a_write_has_ended_only_once_it_has(engine, tmp_path):
    engine, _ = engine
    state = TrainerState(global_step=5, world_size=1)
    pending = start_checkpoint(engine, state, {}, rank=0, run_dir=tmp_path, writer=BackgroundWriter())
    assert pending.name == "step-00000005-r0" and pending.shard.parent == tmp_path
    assert writes_ended(pending, torch.device("cpu"), wait=True) == 0
    assert checkpoint_problems(pending.shard) == []

    with snapshots_of(engine) as snapshot:
        engine.save_checkpoint(str(tmp_path / "gated"), tag=DS_TAG)
    snapshot.writer = gated = _GatedWriter()
    slow = _pending("slow", tmp_path / "gated", BackgroundWriter().write(snapshot, tmp_path / "gated", 0))
    assert writes_ended(slow, torch.device("cpu")) is None
    assert writes_ended(slow, torch.device("cpu")) is None
    gated.gate.set()
    assert writes_ended(slow, torch.device("cpu"), wait=True) == 0


def test_a_best_written_in_the_background_replaces_the_previous_one_once_every_rank_has_written(
    engine, batch_maker, tmp_path, monkeypatch
):
    """While the new best is written the previous one stays `best/<stage>` (a crash then keeps it); once
    written it is swapped in, holding the weights of its save, not of the steps after, without AdamW's
    moments: the files `save_best` writes at the same point."""
    engine, config = engine
    stage = config.train.stages[0].name
    _step(engine, config, batch_maker, seed=31)
    previous = save_best(engine, tmp_path, stage, TrainerState(global_step=1, best_step=1), rank=0)
    _step(engine, config, batch_maker, seed=32)
    state = TrainerState(global_step=2, best_step=2, world_size=1)
    direct = save_best(engine, tmp_path / "direct", stage, state, rank=0)
    saved = _weights(engine)
    monkeypatch.setattr(engine, "checkpoint_engine", gated := _GatedWriter())
    pending = start_best(engine, tmp_path, stage, state, rank=0, writer=BackgroundWriter())

    _step(engine, config, batch_maker, seed=33)  # the live state moves on while the write is held back
    assert writes_ended(pending, torch.device("cpu")) is None
    assert json.loads((previous / "trainer_state.json").read_text())["global_step"] == 1
    gated.gate.set()
    assert writes_ended(pending, torch.device("cpu"), wait=True) == 0
    finish_checkpoint(pending, failed_ranks=0)

    assert json.loads((previous / "trainer_state.json").read_text())["global_step"] == 2
    assert sorted(p.name for p in previous.parent.iterdir()) == [stage]  # no partial, no old one
    assert not pending.shard.exists() and checkpoint_problems(previous, full=False) == []
    written = sorted(p.relative_to(previous) for p in (previous / DS_TAG).rglob("*.pt"))
    assert written == sorted(p.relative_to(direct) for p in (direct / DS_TAG).rglob("*.pt"))
    for name in written:
        loaded = (torch.load(folder / name, weights_only=False) for folder in (direct, previous))
        _assert_same(*loaded, where=str(name))
    restore_best(engine, tmp_path, stage)
    assert all(torch.equal(a, b) for a, b in zip(saved, _weights(engine), strict=True))


def test_a_failed_write_names_the_checkpoint_and_leaves_no_checkpoint_behind(engine, tmp_path):
    """The storage lost the shard's folder before the copy was written (a volume gone, a folder removed by
    hand): every rank learns it, the error names the checkpoint and the cause, the shard folder is removed,
    no checkpoint folder appears, and the run's previous checkpoint is left as it was."""
    engine, _ = engine
    previous = tmp_path / "step-00000002-r0"
    previous.mkdir()
    (previous / "kept").write_text("complete")
    pending = start_checkpoint(
        engine,
        TrainerState(global_step=4, world_size=1),
        {},
        rank=0,
        run_dir=tmp_path,
        writer=BackgroundWriter(),
    )
    pending.written.result()
    with snapshots_of(engine) as snapshot:
        engine.save_checkpoint(str(pending.shard), tag=DS_TAG)
    shutil.rmtree(pending.shard / DS_TAG)
    failing = _pending(pending.name, pending.shard, BackgroundWriter().write(snapshot, pending.shard, 0))

    assert writes_ended(failing, torch.device("cpu"), wait=True) == 1
    with pytest.raises(CheckpointNotWritten, match=r"checkpoint step-00000004-r0 could not be written \(\w+"):
        finish_checkpoint(failing, failed_ranks=1)
    assert not pending.shard.exists() and not (tmp_path / pending.name).exists()
    assert (previous / "kept").read_text() == "complete"


def test_a_failure_on_another_rank_is_an_error_here_too(tmp_path):
    shard = tmp_path / ".shard-step-00000006-r0.rank1"
    shard.mkdir()
    done = Future()
    done.set_result(None)  # this rank wrote its shard
    with pytest.raises(CheckpointNotWritten, match=r"step-00000006-r0 could not be written \(1 other rank"):
        finish_checkpoint(_pending("step-00000006-r0", shard, done), failed_ranks=1)
    assert not shard.exists() and not (tmp_path / "step-00000006-r0").exists()


def test_an_error_while_copying_leaves_no_shard_and_the_engine_as_it_was(engine, tmp_path, monkeypatch):
    engine, _ = engine
    own = engine.checkpoint_engine

    def disk_full(folder, tag):
        (tmp_path / ".shard-step-00000007-r0.rank0" / "half-copied").write_bytes(b"\0")
        raise OSError("No space left on device")

    monkeypatch.setattr(engine, "save_checkpoint", disk_full)
    with pytest.raises(OSError, match="No space"):
        start_checkpoint(
            engine, TrainerState(global_step=7), {}, rank=0, run_dir=tmp_path, writer=BackgroundWriter()
        )
    assert list(tmp_path.iterdir()) == [] and engine.checkpoint_engine is own


def test_checkpoints_need_no_ray_until_they_are_reported():
    """The GPU check (tools/bench/gpu.py) writes checkpoints both ways where Ray is not installed."""
    code = (
        "import sys; sys.modules['ray'] = None; import netgpt.train.checkpoint, netgpt.train.background_save"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]

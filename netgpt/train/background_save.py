"""Checkpoints written on a thread of their own while training goes on (`train.async_checkpoints`).

A save that writes before training goes on stops every rank until its shard is on the run's storage: for a
7B model on 4 ranks about 27 GB a rank, which shared storage takes minutes to take in. Here DeepSpeed's
`save_checkpoint` runs as usual, but through `SnapshotEngine`, a DeepSpeed checkpoint engine whose `save`
keeps a host-memory copy of each state dict instead of writing it (tensors copied to the host, other objects
deep-copied: DeepSpeed hands it the live optimizer state, which the next step changes). `BackgroundWriter`'s
one thread then writes the copies with the engine's own writer (`torch.save`, which lets go of the GIL while
it writes a tensor's bytes: beside a 1 GiB save the training thread's Python ran at 97-100 % of its pace),
then the rank's manifest.
The trainer registers the checkpoint with Ray once every rank's thread has finished
(`netgpt.train.checkpoint.finish_checkpoint`); until then a resume takes the previous one.

Why not DeepSpeed's own: its `DecoupledCheckpointEngine` (0.19) hands the write to a process but waits for
it at the next optimizer step, so hides one forward and backward at most, and its writer needs DeepSpeed's
async-I/O op built.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from deepspeed.runtime.checkpoint_engine import TorchCheckpointEngine

from netgpt.train.manifest import write_manifest


def host_copy(item: Any) -> Any:
    """`item` with every tensor copied to host memory and every other object copied too: a state that later
    steps cannot change. Containers keep their types (an `OrderedDict`, a `torch.Size` stay what they are).

    Not DeepSpeed's `clone_tensors_for_torch_save`: it leaves objects other than tensors and containers
    shared with the live state (the loss scaler), turns a namedtuple into a tuple, and fails on a
    `defaultdict` (it rebuilds one without its factory)."""
    if torch.is_tensor(item):
        return item.detach().to("cpu", copy=True)
    if isinstance(item, dict):
        copied = copy.copy(item)
        for key, value in item.items():
            copied[key] = host_copy(value)
        return copied
    if isinstance(item, (list, tuple)):
        values = [host_copy(value) for value in item]
        return type(item)(*values) if hasattr(item, "_fields") else type(item)(values)  # a namedtuple
    return copy.deepcopy(item)


class SnapshotEngine(TorchCheckpointEngine):
    """A DeepSpeed checkpoint engine that keeps `(path, host copy)` of each state dict DeepSpeed saves
    (`files`), to be written later with `writer`, the engine it stands in for."""

    def __init__(self, writer: TorchCheckpointEngine):
        super().__init__()
        self.writer = writer
        self.files: list[tuple[str, Any]] = []

    def save(self, state_dict: Any, path: str) -> None:
        self.files.append((path, host_copy(state_dict)))

    def preserves_storage_sharing(self) -> bool:
        # DeepSpeed clones a state on its device first for an engine that keeps shared storages; the host
        # copy above already gives each tensor storage of its own, so that clone would only cost memory
        return False


@contextlib.contextmanager
def snapshots_of(engine) -> Iterator[SnapshotEngine]:
    """Inside the block, the DeepSpeed `engine`'s saves are host copies, kept on the engine yielded; its own
    checkpoint engine is back afterwards, also after an error."""
    own = engine.checkpoint_engine
    snapshot = SnapshotEngine(own)
    engine.checkpoint_engine = snapshot
    try:
        yield snapshot
    finally:
        engine.checkpoint_engine = own


class BackgroundWriter:
    """One thread that writes snapshots into their shard folders, in the order they were given."""

    def __init__(self) -> None:
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netgpt-checkpoint")

    def write(self, snapshot: SnapshotEngine, shard: Path, rank: int) -> Future[None]:
        """Write `snapshot`'s files, then the manifest of `shard` (this rank's shard folder, whose other
        files are already in it); the future holds the error if one failed."""
        return self._thread.submit(_write_out, snapshot, shard, rank)


def _write_out(snapshot: SnapshotEngine, shard: Path, rank: int) -> None:
    while snapshot.files:  # each copy is let go once written: host memory falls as the write goes on
        path, state = snapshot.files.pop(0)
        snapshot.writer.save(state, path)
        del state
    write_manifest(shard, rank)

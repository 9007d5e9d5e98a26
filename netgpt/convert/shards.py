"""The DeepSpeed ZeRO files of a checkpoint: checked for completeness, then consolidated lazily.

DeepSpeed's `zero_to_fp32` would notice a missing optimizer shard only after loading the others, and not at
all a model-states file left over from another world size; checking the file set against the data-parallel
world size that rank 0's model-states file records makes such a checkpoint a one-line error up front.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from netgpt.convert.errors import ConvertError

MODEL_STATES = re.compile(r"zero_pp_rank_(\d+)_mp_rank_(\d+)_model_states\.pt")
OPTIM_STATES = re.compile(r"(?:bf16_)?zero_pp_rank_(\d+)_mp_rank_(\d+)_optim_states\.pt")
MADV_DONTNEED = 4
"""Linux's madvise advice: drop the range's resident pages (a private file mapping refaults from the file)."""


@dataclass(frozen=True)
class ZeroFiles:
    tag_dir: Path
    world_size: int
    """Data-parallel world size the checkpoint was written with (one model and one optimizer shard each)."""
    zero_stage: int


def inspect(checkpoint: Path, tag: str) -> ZeroFiles:
    """Check that `checkpoint/tag` holds exactly one model-states and one optimizer shard per rank."""
    tag_dir = checkpoint / tag
    if not tag_dir.is_dir():
        raise ConvertError(f"{tag_dir}: no DeepSpeed tag folder {tag!r} in the checkpoint {checkpoint}")
    names = [p.name for p in tag_dir.iterdir()]
    model_ranks = _ranks(MODEL_STATES, names)
    optim_ranks = _ranks(OPTIM_STATES, names)
    first = tag_dir / "zero_pp_rank_0_mp_rank_00_model_states.pt"
    if not first.is_file():
        raise ConvertError(f"{first}: missing; expected DeepSpeed ZeRO model states of rank 0 in {tag_dir}")
    try:
        # mmap: the model-states file of ZeRO-3 holds only placeholders and shapes, never read in full.
        # weights_only: torch's restricted unpickler, so a hostile file cannot run code; it builds tensors,
        # containers and the classes allowed here, nothing else (`deepspeed_safe_globals`).
        with torch.serialization.safe_globals(deepspeed_safe_globals()):
            header = torch.load(first, map_location="cpu", mmap=True, weights_only=True)
        world = int(header["dp_world_size"])
        mp_world = int(header.get("mp_world_size", 1))
        stage = int(header.get("ds_config", {}).get("zero_optimization", {}).get("stage", 3))
    except Exception as error:  # unpicklable, truncated, or not DeepSpeed's
        raise ConvertError(f"{first}: unreadable DeepSpeed model states ({type(error).__name__})") from None
    expected = {(rank, mp) for rank in range(world) for mp in range(mp_world)}
    for kind, found in (("model-states", model_ranks), ("optimizer", optim_ranks)):
        if found != expected:
            missing = sorted(r for r, _ in expected - found)
            extra = sorted(r for r, _ in found - expected)
            raise ConvertError(
                f"{tag_dir}: {kind} shards of ranks {sorted(r for r, _ in found)}, "
                f"expected ranks 0..{world - 1} "
                f"(the checkpoint records data-parallel world size {world})"
                + (f"; missing {missing}" if missing else "")
                + (f"; from another world size: {extra}" if extra else "")
            )
    if mp_world != 1:
        raise ConvertError(f"{first}: model-parallel world size {mp_world}; only 1 is supported")
    return ZeroFiles(tag_dir=tag_dir, world_size=world, zero_stage=stage)


def deepspeed_safe_globals() -> list[Any]:
    """The classes (beyond tensors and plain containers) that DeepSpeed 0.19.8 pickles into its ZeRO-3
    checkpoint files, and nothing more: the loss scaler and the ZeRO stage enum, found in the optimizer
    shards by `torch.serialization.get_unsafe_globals_in_checkpoint` (the model-states file read here
    needed none in the checkpoints of this project's runs; they are allowed for it too, since DeepSpeed may
    put its client state there)."""
    from deepspeed.runtime.fp16.loss_scaler import LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum

    return [LossScaler, ZeroStageEnum]


def _ranks(pattern: re.Pattern[str], names: list[str]) -> set[tuple[int, int]]:
    return {(int(m.group(1)), int(m.group(2))) for name in names if (m := pattern.fullmatch(name))}


@dataclass
class Consolidated:
    """DeepSpeed's consolidated fp32 state dict in lazy mode, and the shard files it maps."""

    tensors: Mapping[str, Any]
    """name -> object whose `.contiguous()` builds that one tensor (tied names share one object)."""
    files: list[Path]
    """The optimizer shards that DeepSpeed memory-maps (the fp32 master weights)."""

    def tensor(self, name: str, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The tensor `name`, built now (cast to `dtype` when floating); the shard pages it read are released,
        so what stays in memory is the tensor alone."""
        tensor = materialise(self.tensors[name], dtype)
        self.release()
        return tensor

    def release(self) -> None:
        """Drop this process's resident pages of the memory-mapped shards (Linux; elsewhere a no-op).

        DeepSpeed maps each optimizer shard privately (`torch.load(mmap=True)`) and only reads it; the pages
        a consolidated tensor touched stay counted in the process's memory until the mapping goes, i.e. the
        whole model by the end. `madvise(MADV_DONTNEED)` on a private, never-written file mapping drops
        them; a later read faults them back in from the file (the page cache, usually)."""
        if not sys.platform.startswith("linux"):
            return
        names = {os.path.realpath(file) for file in self.files}
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        with open("/proc/self/maps", encoding="utf-8") as maps:
            for line in maps:
                fields = line.split(maxsplit=5)
                if len(fields) == 6 and fields[5].rstrip("\n") in names:
                    start, end = (int(address, 16) for address in fields[0].split("-"))
                    libc.madvise(start, end - start, MADV_DONTNEED)


def lazy_state_dict(checkpoint: Path, tag: str) -> Consolidated:
    """DeepSpeed's `get_fp32_state_dict_from_zero_checkpoint` in lazy mode: no tensor is built yet.

    DeepSpeed prints its progress on stdout; it goes to stderr here, so a command's stdout stays its own."""
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    try:
        with contextlib.redirect_stdout(sys.stderr):
            tensors = get_fp32_state_dict_from_zero_checkpoint(str(checkpoint), tag=tag, lazy_mode=True)
    except (ValueError, FileNotFoundError, KeyError) as error:
        raise ConvertError(f"{checkpoint / tag}: DeepSpeed cannot consolidate it ({error})") from None
    files = sorted(p for p in (checkpoint / tag).iterdir() if OPTIM_STATES.fullmatch(p.name))
    return Consolidated(tensors=tensors, files=files)


def materialise(lazy: Any, dtype: torch.dtype | None = None) -> torch.Tensor:
    """One tensor of `lazy_state_dict`, cast to `dtype` when floating (buffers keep integer dtypes)."""
    tensor = lazy.contiguous()
    if dtype is not None and tensor.is_floating_point() and tensor.dtype != dtype:
        tensor = tensor.to(dtype)
    return tensor

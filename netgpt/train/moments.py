"""A stage's best checkpoint without AdamW's moments (ZeRO-3): a third of a full checkpoint's optimizer files.

A best checkpoint is only ever restored for its weights (`restore_best`): the stage's test, the next stage
and the export start from them, and the next stage starts with fresh moments. DeepSpeed's ZeRO-3 files keep
the fp32 master weights and the moments in one optimizer file per rank (12 bytes a parameter), and
`save_checkpoint` has no option to leave the moments out, so `adam_moments_left_out` hides them from it for
the length of the save: the file keeps the masters (4 bytes a parameter) and each group's `step`, and
DeepSpeed's own load, with `load_optimizer_states=False`, reads the masters and not the moments. For Qwen2-7B
that is about 61 GB (8 bytes a parameter) less written at every better validation, and less kept.

A best written by another world size goes through DeepSpeed's universal conversion (`ds_to_universal`),
which reads both moments of every sub-group: `with_zero_moments` gives it a copy of the optimizer files with
zeros in their place (the weights come back exact; the moments are the next stage's fresh ones anyway).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

MOMENTS = ("exp_avg", "exp_avg_sq")
"""AdamW's per-parameter moments, as torch's AdamW and DeepSpeed's CPU Adam name them."""
OPTIMIZER_FILE_SUFFIX = "optim_states.pt"
"""How DeepSpeed names a rank's ZeRO optimizer file (`bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt`)."""


@contextlib.contextmanager
def adam_moments_left_out(engine: Any) -> Iterator[bool]:
    """Within the block, the AdamW state that `engine`'s ZeRO-3 optimizer saves holds each parameter
    group's `step` and no moments; yields whether they were left out. The live state is put back when the
    block ends, also after an error. Other ZeRO stages keep theirs (their files are laid out otherwise, and
    `with_zero_moments` reads ZeRO-3's), as does an optimizer that swaps its state to NVMe (not all of it
    is in memory to leave out)."""
    zero_optimizer = engine.optimizer
    adamw = getattr(zero_optimizer, "optimizer", None)
    if (
        engine.zero_optimization_stage() != 3
        or adamw is None
        or getattr(zero_optimizer, "swap_optimizer", False)
    ):
        yield False
        return
    live = adamw.state
    adamw.state = defaultdict(
        dict, {param: {k: v for k, v in state.items() if k not in MOMENTS} for param, state in live.items()}
    )
    try:
        yield True
    finally:
        adamw.state = live


def with_zero_moments(ds_folder: Path, scratch: Path) -> Path:
    """`ds_folder` (a checkpoint's ZeRO files) when its optimizer files hold the moments (every rank saves
    alike: the first tells; ZeRO-1 and ZeRO-2 files always do, `adam_moments_left_out` leaving theirs in);
    else a copy in `scratch` whose optimizer files have zeros for them (one file at a time, its masters read
    from the map), the other files hard-linked (copied where the file system cannot link)."""
    files = sorted(p for p in ds_folder.iterdir() if p.is_file())
    optimizer_files = [p for p in files if p.name.endswith(OPTIMIZER_FILE_SUFFIX)]
    if not optimizer_files:
        raise FileNotFoundError(f"{ds_folder}: no ZeRO optimizer files (*{OPTIMIZER_FILE_SUFFIX})")
    if _has_moments(_load(optimizer_files[0])):
        return ds_folder
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    for path in files:
        target = scratch / path.name
        if not path.name.endswith(OPTIMIZER_FILE_SUFFIX):
            _link_or_copy(path, target)
            continue
        saved = _load(path)
        zero = saved["optimizer_state_dict"]
        groups = zero["optimizer_state_dict"]["state"]
        for index, master in enumerate(zero["fp32_flat_groups"]):
            state = groups.setdefault(index, {})
            for moment in MOMENTS:
                state.setdefault(moment, torch.zeros_like(master))
        torch.save(saved, target)
        del saved, zero, groups
    return scratch


def _load(path: Path) -> dict:
    """A ZeRO file with its tensors memory-mapped: looking for the moments reads no tensor's bytes.
    weights_only=False: DeepSpeed's own files, which its loader reads the same way (they pickle its loss
    scaler)."""
    return torch.load(path, map_location="cpu", weights_only=False, mmap=True)


def _has_moments(saved: dict) -> bool:
    zero = saved["optimizer_state_dict"]
    if "fp32_flat_groups" not in zero:  # not ZeRO-3's layout: ZeRO-1/2 keep the moments in every file
        return True
    groups = zero["optimizer_state_dict"]["state"]
    return all(
        all(moment in groups.get(index, {}) for moment in MOMENTS)
        for index in range(len(zero["fp32_flat_groups"]))
    )


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)

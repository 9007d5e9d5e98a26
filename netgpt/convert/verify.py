"""Read the written folder back and compare it with the consolidated weights, one tensor at a time.

A conversion is published only after every tensor on disk equals (bit for bit, after the cast to the output
dtype) what DeepSpeed consolidates, and every expected tensor is on disk. Each file is opened with
safetensors' lazy reader and each tensor is compared and dropped before the next, so the check needs no
more memory than the conversion itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import safe_open
from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME

from netgpt.convert.errors import VerificationError
from netgpt.convert.shards import Consolidated
from netgpt.convert.skeleton import saved_llm_names
from netgpt.model.netgpt import LLM_DIR, PART_FILES, NetGPT


def weight_files(folder: Path) -> list[Path]:
    """The LLM folder's safetensors files: the index's shards, or the single file."""
    index = folder / SAFE_WEIGHTS_INDEX_NAME
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        return [folder / name for name in sorted(set(weight_map.values()))]
    return [folder / SAFE_WEIGHTS_NAME]


def written_tensors(folder: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """(full NetGPT name, tensor) for every tensor of a NetGPT folder, read one at a time."""
    sources = [(file, f"{LLM_DIR}.") for file in weight_files(folder / LLM_DIR)]
    sources += [(folder / file, f"{part}.") for part, file in PART_FILES.items()]
    for file, prefix in sources:
        if not file.is_file():
            raise VerificationError(f"{file}: not written")
        with safe_open(str(file), framework="pt") as reader:
            for key in reader.keys():  # noqa: SIM118 (safe_open is not a mapping)
                yield prefix + key, reader.get_tensor(key)


def verify_folder(folder: Path, skeleton: NetGPT, weights: Consolidated, dtype: torch.dtype) -> int:
    """Check the folder against the consolidated `tensors`; returns how many tensors were compared."""
    expected = {f"{LLM_DIR}.{name}" for name in saved_llm_names(skeleton.llm)}
    expected |= {name for name in skeleton.state_dict() if not name.startswith(f"{LLM_DIR}.")}
    seen: set[str] = set()
    for name, saved in written_tensors(folder):
        if name not in expected or name in seen:
            raise VerificationError(f"{folder}: unexpected or repeated tensor {name}")
        seen.add(name)
        want = weights.tensor(name, dtype)
        if saved.dtype != want.dtype or saved.shape != want.shape or not torch.equal(saved, want):
            raise VerificationError(
                f"{folder}: {name} reads back as {saved.dtype} {tuple(saved.shape)}, not the consolidated "
                f"{want.dtype} {tuple(want.shape)} values"
            )
        del saved, want
    if seen != expected:
        raise VerificationError(f"{folder}: tensors not written: {sorted(expected - seen)[:5]}")
    return len(seen)

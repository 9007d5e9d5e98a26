"""Each rank's RNG states in a checkpoint, without pickle: `rng/rank<r>.safetensors`.

The tensors are the states themselves (torch's and CUDA's byte states, Python's and NumPy's Mersenne Twister
keys as int64); the few scalars beside them (versions, positions, cached Gaussians) are JSON in the file's
metadata. Loading one runs no code from the file, whatever it holds.

Checkpoints written before this format hold `rng/rank<r>.pt`, a pickle. They are still read, with torch's
restricted unpickler (`weights_only=True`) allowing exactly the NumPy classes that `np.random.get_state()`
pickles to (its key array), so a hostile file cannot run code either; the next checkpoint is written in
the new format.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

RNG_DIR = "rng"


class RngStateError(RuntimeError):
    """A rank's RNG file that is missing or cannot be read."""


def rng_file(folder: Path, rank: int) -> Path:
    return folder / RNG_DIR / f"rank{rank}.safetensors"


def legacy_rng_file(folder: Path, rank: int) -> Path:
    return folder / RNG_DIR / f"rank{rank}.pt"


def save_rng_state(folder: Path, rank: int) -> Path:
    """Write this process's Python, NumPy, torch (and CUDA) RNG states for `rank` under `folder`."""
    python_version, python_key, gauss_next = random.getstate()
    kind, numpy_key, position, has_gauss, cached_gaussian = np.random.get_state()
    tensors = {
        "python": torch.tensor(python_key, dtype=torch.int64),
        "numpy": torch.from_numpy(numpy_key.astype(np.int64)),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        tensors["cuda"] = torch.cuda.get_rng_state()
    metadata = {
        "python": json.dumps({"version": python_version, "gauss_next": gauss_next}),
        "numpy": json.dumps(
            {"kind": kind, "pos": position, "has_gauss": has_gauss, "cached_gaussian": cached_gaussian}
        ),
    }
    path = rng_file(folder, rank)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata)
    return path


def load_rng_state(folder: Path, rank: int) -> None:
    """Restore `rank`'s RNG states from the checkpoint `folder`; `RngStateError` naming the file if it is
    missing or unreadable."""
    path = rng_file(folder, rank)
    if path.is_file():
        _set(*_read(path))
        return
    legacy = legacy_rng_file(folder, rank)
    if legacy.is_file():
        _set_legacy(_read_legacy(legacy))
        return
    raise RngStateError(
        f"{path}: missing; the checkpoint {folder} is incomplete (rank {rank} wrote its RNG states there)"
    )


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    try:
        with safe_open(str(path), framework="pt") as stream:
            tensors = {name: stream.get_tensor(name) for name in stream.keys()}  # noqa: SIM118
            metadata = {name: json.loads(text) for name, text in (stream.metadata() or {}).items()}
        python, numpy = metadata["python"], metadata["numpy"]
        python_state = (
            int(python["version"]),
            tuple(int(v) for v in tensors["python"].tolist()),
            python["gauss_next"],
        )
        numpy_state = (
            str(numpy["kind"]),
            tensors["numpy"].numpy().astype(np.uint32),
            int(numpy["pos"]),
            int(numpy["has_gauss"]),
            float(numpy["cached_gaussian"]),
        )
        return {"torch": tensors["torch"], "cuda": tensors.get("cuda")}, {
            "python": python_state,
            "numpy": numpy_state,
        }
    except Exception as error:  # safetensors, JSON and key errors alike: the file is not what we wrote
        raise RngStateError(f"{path}: damaged RNG state file ({type(error).__name__}: {error})") from None


def _set(tensors: dict[str, Any], states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(tensors["torch"])
    if tensors.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["cuda"])


def _legacy_safe_globals() -> list[Any]:
    """What `np.random.get_state()`'s key array pickles to, and nothing else: the array, its dtype and
    NumPy's array rebuilder (listed by `torch.serialization.get_unsafe_globals_in_checkpoint` on an old RNG
    file), and the uint32 dtype's class (which the load then asked for)."""
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # NumPy 1.x
        from numpy.core.multiarray import _reconstruct

    return [np.ndarray, np.dtype, _reconstruct, np.dtypes.UInt32DType]


def _read_legacy(path: Path) -> dict[str, Any]:
    try:
        with torch.serialization.safe_globals(_legacy_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise RngStateError(
            f"{path}: unreadable RNG state file of an older netgpt ({type(error).__name__}: {error})"
        ) from None


def _set_legacy(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])

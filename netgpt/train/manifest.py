"""Each rank's list of the files it wrote into a checkpoint (`manifest/rank<r>.json`: path, bytes, sha256),
and the check of a checkpoint folder against them.

Ray Train registers a checkpoint once every rank has reported, but the folder can still be damaged later
(a disk error, a file deleted by hand, a copy cut short); a resume must not trust the registry's newest
entry blindly (`netgpt.train.registry`). A checkpoint is complete when `trainer_state.json` reads, every
rank of the world size it records left its manifest, and every listed file has its recorded size (and,
checked in full, its sha256, `netgpt.digest`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from netgpt.digest import file_sha256

MANIFEST_DIR = "manifest"
STATE_FILE = "trainer_state.json"


def manifest_file(folder: Path, rank: int) -> Path:
    return folder / MANIFEST_DIR / f"rank{rank}.json"


def write_manifest(folder: Path, rank: int) -> None:
    """Record every file under `folder` (this rank's own shard folder) in `manifest/rank<rank>.json`."""
    files = {
        path.relative_to(folder).as_posix(): {"bytes": path.stat().st_size, "sha256": file_sha256(path)}
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.relative_to(folder).parts[0] != MANIFEST_DIR
    }
    target = manifest_file(folder, rank)
    target.parent.mkdir(exist_ok=True)
    target.write_text(json.dumps({"rank": rank, "files": files}, indent=1), encoding="utf-8")


def _recorded_world_size(folder: Path) -> tuple[int, list[str]]:
    path = folder / STATE_FILE
    if not path.is_file():
        return 0, [f"{path}: missing"]
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        return int(state["world_size"]), []
    except (ValueError, KeyError, TypeError, RecursionError) as error:
        return 0, [f"{path}: unreadable ({type(error).__name__}: {error})"]


def checkpoint_problems(folder: Path, full: bool = True) -> list[str]:
    """What is wrong with the checkpoint `folder` (empty when complete): missing or unreadable state,
    missing manifests, missing or resized files, and with `full` files whose sha256 differs.

    A checkpoint written before manifests existed (no `manifest/`) is checked for its state file and
    DeepSpeed folder only."""
    if not folder.is_dir():
        return [f"{folder}: missing"]
    world, problems = _recorded_world_size(folder)
    if problems:
        return problems
    if not (folder / MANIFEST_DIR).is_dir():
        return [] if (folder / "ds").is_dir() else [f"{folder / 'ds'}: missing"]
    for rank in range(max(world, 1)):
        path = manifest_file(folder, rank)
        if not path.is_file():
            problems.append(f"{path}: missing (rank {rank} of {world} did not finish writing)")
            continue
        try:
            files: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))["files"]
            listed = [(name, int(spec["bytes"]), str(spec["sha256"])) for name, spec in files.items()]
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as error:
            problems.append(f"{path}: unreadable ({type(error).__name__})")
            continue
        for name, size, digest in listed:
            file = folder / name
            if Path(name).is_absolute() or ".." in Path(name).parts:
                problems.append(f"{path}: lists {name!r}, a path outside the checkpoint")
            elif not file.is_file():
                problems.append(f"{file}: missing")
            elif file.stat().st_size != size:
                problems.append(f"{file}: {file.stat().st_size} bytes, rank {rank} wrote {size}")
            elif full and file_sha256(file) != digest:
                problems.append(f"{file}: contents differ from what rank {rank} wrote (sha256)")
    return problems

"""The partitioned graph store on disk: `meta.json` plus one folder of memory-mappable arrays per partition.

    store/
      meta.json              format version, node/edge types, counts, feature dims, partition book summary
      partition_book.parquet sample_id, partition, row, split of every sample (the owner of each node)
      part-00000/            *.npy arrays (np.load(mmap_mode="r")), seeds.parquet (the seeds' prompt fields)

A partition *owns* its samples: it alone stores their feature rows (`owned_sample_id` and the feature arrays,
row `r` = its `r`-th own sample in sample id order, comments in `owned_comment_ptr` order). For sampling it
keeps the structure of its seeds' L-hop halo in a local index space: video node `i` is a local index, the
partition's own seeds first (sorted by sample id), then the rest of the halo whose in-edges L-hop sampling
may need ("inner" nodes, `num_inner` in all), then the outermost halo; `video_owner[i]` and `video_row[i]`
say which partition owns node `i` and its row there, `comment_row` the same for each inner comment (its owner
is its node's). A feature that many rows share a value of (per-video values, comments re-shown by a later
crawl) is stored as its distinct rows plus `<name>_row`, the row of each own sample: read features with
`Partition.rows`.

Integrity, in three depths, each a `StoreError` naming the file and what was expected:
- every open (`read_meta`): `meta.json`'s structure (`meta_check.py`) and the size of every top-level file;
- every partition opened (`open_partition`): each file's size, shape and dtype as `meta.json` records them,
  and every index array within the bounds of what it indexes (`index_check.py`), a few reads of the
  integer arrays;
- `verify_store` (`netgpt check-store`, and the driver once before a training run): the sha256 of every
  file (`netgpt.digest`), recorded in `meta.json` when the store was built, which also catches same-size
  garbage inside a feature file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from netgpt.atomic import MARKER, atomic_directory, write_text_atomic
from netgpt.config import CONFIG_FILE
from netgpt.digest import file_sha256
from netgpt.graph.index_check import IndexArrayError, check_index_arrays
from netgpt.graph.meta_check import MetaStructureError, check_meta

FORMAT_VERSION = 4
"""4: a partition stores feature rows of its own samples only, plus its halo's ownership book
(`video_owner`, `video_row`, `comment_row`); 3: `meta.json` records each file's sha256."""
META_FILE = "meta.json"
BOOK_FILE = "partition_book.parquet"
SEEDS_FILE = "seeds.parquet"


class StoreError(RuntimeError):
    """A store that cannot be used: missing, damaged, or written by another format version."""


REBUILD = "rebuild the store with `netgpt build-graph`"


def partition_dir(store_dir: str | Path, index: int) -> Path:
    return Path(store_dir) / f"part-{index:05d}"


def read_meta(store_dir: str | Path) -> dict[str, Any]:
    """The store's `meta.json`, checked for this code's format version, its structure, and the sizes of the
    top-level files it records (cheap: one `stat` each)."""
    path = Path(store_dir) / META_FILE
    if not path.is_file():
        raise StoreError(f"{path}: missing; build the store with `netgpt build-graph`")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        raise StoreError(f"{path}: damaged, not valid JSON ({error}); {REBUILD}") from None
    version = meta.get("format_version") if isinstance(meta, dict) else None
    if version != FORMAT_VERSION:
        raise StoreError(
            f"{path}: store format version {version!r}, this code reads version {FORMAT_VERSION}; {REBUILD}"
        )
    try:
        check_meta(meta)
    except MetaStructureError as error:
        raise StoreError(f"{path}: damaged: {error}; {REBUILD}") from None
    for name, spec in meta["files"].items():
        _check_size(Path(store_dir) / name, spec["bytes"])
    return meta


def _check_size(path: Path, recorded: int) -> None:
    if not path.is_file():
        raise StoreError(f"{path}: missing store file; {REBUILD}")
    size = path.stat().st_size
    if size != recorded:
        raise StoreError(f"{path}: damaged store file: {size} bytes, meta.json records {recorded}")


def save_arrays(folder: Path, arrays: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """Write each array as `<name>.npy`; return what `meta.json` records of each (shape, dtype, bytes)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, array in arrays.items():
        path = folder / f"{name}.npy"
        np.save(path, np.ascontiguousarray(array))
        files[f"{name}.npy"] = {
            "shape": list(array.shape),
            "dtype": array.dtype.str,
            **file_record(path),
        }
    files[SEEDS_FILE] = file_record(folder / SEEDS_FILE)
    return files


def file_record(path: Path) -> dict[str, Any]:
    """What `meta.json` records of every file: its size and sha256."""
    return {"bytes": path.stat().st_size, "sha256": file_sha256(path)}


STORE_KIND = "graph store"


def looks_like_store(folder: Path) -> bool:
    """A store an older netgpt wrote (before the output marker): `meta.json`, the book, config, partitions."""
    names = {path.name for path in folder.iterdir()}
    known = {META_FILE, BOOK_FILE, CONFIG_FILE}
    return META_FILE in names and all(name in known or name.startswith("part-") for name in names)


def write_store_atomically(store_dir: str | Path, fill: Any) -> None:
    """Build a store in a temporary sibling folder with `fill(tmp_dir)`, then swap it into place
    (`netgpt.atomic`): a failed build leaves whatever was at `store_dir` untouched, and a folder that is not a
    store netgpt wrote is never replaced."""
    with atomic_directory(store_dir, STORE_KIND, looks_like_store) as folder:
        fill(folder)


def write_meta(folder: Path, meta: dict[str, Any]) -> None:
    """Write `meta.json`, recording every top-level file already in `folder` under `files` (so it is
    written last, after the book and the config)."""
    meta = {
        **meta,
        "files": {
            child.name: file_record(child)
            for child in sorted(folder.iterdir())
            if child.is_file() and child.name not in (META_FILE, MARKER) and not child.name.startswith(".")
        },
    }
    write_text_atomic(folder / META_FILE, json.dumps(meta, indent=1, ensure_ascii=False))


@dataclass
class Partition:
    """One partition's arrays, memory-mapped (read-only), plus its seeds' prompt fields."""

    index: int
    folder: Path
    arrays: dict[str, np.ndarray]
    seeds_path: Path
    num_inner: int
    num_seeds: int
    num_owned: int

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.arrays:
            raise StoreError(f"{self.folder / (name + '.npy')}: missing from meta.json's files; {REBUILD}")
        return self.arrays[name]

    def rows(self, name: str, owned: np.ndarray) -> np.ndarray:
        """Feature rows of own samples (or own comments) `owned`, through `<name>_row` where the store
        deduplicated them."""
        index = self.arrays.get(f"{name}_row")
        return self[name][owned if index is None else index[owned]]

    def resident_bytes(self) -> int | None:
        """Bytes of this partition's files that are resident in this process's memory maps (Linux's
        /proc/self/smaps); None where the kernel does not say."""
        smaps = Path("/proc/self/smaps")
        if not smaps.is_file():
            return None
        folder, total, inside = str(self.folder.resolve()) + "/", 0, False
        for line in smaps.read_text(encoding="utf-8", errors="replace").splitlines():
            fields = line.split()
            if fields and "-" in fields[0] and len(fields) >= 5 and not fields[0].endswith(":"):
                inside = len(fields) >= 6 and fields[5].startswith(folder)
            elif inside and fields and fields[0] == "Rss:":
                total += int(fields[1]) * 1024
        return total

    def read_seed_fields(self) -> Any:
        """The seeds' prompt fields as a pyarrow table, row `i` = local seed `i`."""
        try:
            return pq.read_table(self.seeds_path)
        except Exception as error:
            raise StoreError(f"{self.seeds_path}: damaged, cannot read ({error})") from None


def open_partition(store_dir: str | Path, index: int, meta: dict[str, Any] | None = None) -> Partition:
    """Memory-map partition `index`, checking every file against what `meta.json` recorded."""
    meta = meta if meta is not None else read_meta(store_dir)
    parts = meta["partitions"]
    if not 0 <= index < len(parts):
        raise StoreError(f"{Path(store_dir) / META_FILE}: no partition {index} (the store has {len(parts)})")
    info = parts[index]
    folder = partition_dir(store_dir, index)
    arrays = {}
    for name, spec in info["files"].items():
        path = folder / name
        if not path.is_file():
            raise StoreError(f"{path}: missing partition file; {REBUILD}")
        size = path.stat().st_size
        if size != spec["bytes"]:
            raise StoreError(
                f"{path}: damaged partition file: {size} bytes, meta.json records {spec['bytes']}"
            )
        if not name.endswith(".npy"):
            continue
        try:
            array = np.load(path, mmap_mode="r")
        except Exception as error:
            raise StoreError(f"{path}: damaged partition file, cannot map it ({error})") from None
        if list(array.shape) != spec["shape"] or array.dtype.str != spec["dtype"]:
            raise StoreError(
                f"{path}: damaged partition file: shape {list(array.shape)} dtype {array.dtype.str}, "
                f"meta.json records shape {spec['shape']} dtype {spec['dtype']}"
            )
        arrays[name[: -len(".npy")]] = array
    try:
        check_index_arrays(
            arrays,
            index,
            info,
            [p["num_owned"] for p in parts],
            [p["num_owned_comments"] for p in parts],
        )
    except IndexArrayError as error:
        raise StoreError(f"{folder / (error.name + '.npy')}: {error}; {REBUILD}") from None
    return Partition(
        index=index,
        folder=folder,
        arrays=arrays,
        seeds_path=folder / SEEDS_FILE,
        num_inner=info["num_inner"],
        num_seeds=info["num_seeds"],
        num_owned=info["num_owned"],
    )


def verify_store(store_dir: str | Path) -> dict[str, int]:
    """Check every file of the store against the sha256 `meta.json` recorded (reads all of it); raise
    `StoreError` naming each file that differs. Returns the files and bytes checked."""
    store_dir = Path(store_dir)
    meta = read_meta(store_dir)
    recorded = {store_dir / name: spec for name, spec in meta["files"].items()}
    for index, info in enumerate(meta["partitions"]):
        folder = partition_dir(store_dir, index)
        recorded.update({folder / name: spec for name, spec in info["files"].items()})
    damaged = []
    for path, spec in recorded.items():
        if not path.is_file():
            damaged.append(f"{path}: missing")
        elif path.stat().st_size != spec["bytes"]:
            damaged.append(f"{path}: {path.stat().st_size} bytes, meta.json records {spec['bytes']}")
        elif file_sha256(path) != spec["sha256"]:
            damaged.append(f"{path}: sha256 differs from the one meta.json records (contents damaged)")
    if damaged:
        raise StoreError(f"{store_dir}: damaged store files ({REBUILD}): " + "; ".join(damaged))
    return {"files": len(recorded), "bytes": sum(spec["bytes"] for spec in recorded.values())}

"""The partitioned graph store on disk: `meta.json` plus one folder of memory-mappable arrays per partition.

    store/
      meta.json              format version, node/edge types, counts, feature dims, partition book summary
      partition_book.parquet sample_id, partition, split of every sample (the seed stream reads it)
      part-00000/            *.npy arrays (np.load(mmap_mode="r")), seeds.parquet (the seeds' prompt fields)

Inside a partition, video node `i` is a local index: the partition's own seeds first (sorted by sample id),
then the rest of the halo whose in-edges L-hop sampling may need ("inner" nodes, `num_inner` in all), then
the outermost halo (features only). Per-sample attribute arrays have one row per inner node. A feature
that many nodes share a value of (per-video values, comments re-shown by a later crawl) is stored as its
distinct rows plus `<name>_row`, the row of each node: read features with `Partition.rows`. Every file's
shape, dtype and size are recorded in `meta.json` and checked when a partition is opened, so a damaged or
missing file is an error naming it, not a wrong sample.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from netgpt.atomic import atomic_directory, write_text_atomic
from netgpt.config import CONFIG_FILE

FORMAT_VERSION = 2
META_FILE = "meta.json"
BOOK_FILE = "partition_book.parquet"
SEEDS_FILE = "seeds.parquet"


class StoreError(RuntimeError):
    """A store that cannot be used: missing, damaged, or written by another format version."""


def partition_dir(store_dir: str | Path, index: int) -> Path:
    return Path(store_dir) / f"part-{index:05d}"


def read_meta(store_dir: str | Path) -> dict[str, Any]:
    """The store's `meta.json`, checked for this code's format version."""
    path = Path(store_dir) / META_FILE
    if not path.is_file():
        raise StoreError(f"{path}: missing; build the store with `netgpt build-graph`")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise StoreError(f"{path}: damaged, not valid JSON ({error})") from None
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise StoreError(
            f"{path}: store format version {version!r}, this code reads version {FORMAT_VERSION}; "
            "rebuild the store with `netgpt build-graph`"
        )
    return meta


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
            "bytes": path.stat().st_size,
        }
    files[SEEDS_FILE] = {"bytes": (folder / SEEDS_FILE).stat().st_size}
    return files


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

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    def rows(self, name: str, nodes: np.ndarray) -> np.ndarray:
        """Feature rows of `nodes` (local indices), through `<name>_row` where the store deduplicated them."""
        index = self.arrays.get(f"{name}_row")
        return self.arrays[name][nodes if index is None else index[nodes]]

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
            raise StoreError(f"{path}: missing partition file; rebuild the store with `netgpt build-graph`")
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
    return Partition(
        index=index,
        folder=folder,
        arrays=arrays,
        seeds_path=folder / SEEDS_FILE,
        num_inner=int(info["num_inner"]),
        num_seeds=int(info["num_seeds"]),
    )

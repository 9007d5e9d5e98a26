"""Checks of a partition's index arrays, run when a partition is opened: every stored index must point inside
the array it indexes, so that garbled values (a file of the right size and header, wrong contents) are an
error naming the file, not an IndexError inside the sampler or a batch of wrong neighbours.

The checks read the integer arrays once (min, max, lengths, monotone pointers); the float feature rows are
not read. Contents that stay in bounds but are wrong are found by the checksums (`netgpt check-store`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from netgpt.graph.topology import PAD
from netgpt.graph.types import NODE_TYPES, RELATIONS, VIDEO


class IndexArrayError(ValueError):
    """`name`: the array (file `<name>.npy`) whose values or length break the store's layout."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


def _need(arrays: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    if name not in arrays:
        raise IndexArrayError(name, "missing from meta.json's files: the store was written incompletely")
    return arrays[name]


def _length(arrays: Mapping[str, np.ndarray], name: str, expected: int) -> np.ndarray:
    array = _need(arrays, name)
    if len(array) != expected:
        raise IndexArrayError(name, f"garbled index array: {len(array)} rows, the partition needs {expected}")
    return array


def _within(
    arrays: Mapping[str, np.ndarray], name: str, upper: int | np.ndarray, values: np.ndarray | None = None
) -> None:
    """Every value of `values` (default: the whole array `name`) lies in [0, upper) (`upper` may be one
    bound per value)."""
    values = np.asarray(_need(arrays, name) if values is None else values)
    if values.size and (values.min() < 0 or (values >= upper).any()):
        shown = upper if np.ndim(upper) == 0 else f"its owner's count ({int(np.max(upper))} at most)"
        raise IndexArrayError(
            name,
            f"garbled index array: values must lie in [0, {shown}), found {values.min()}..{values.max()}",
        )


def _pointers(arrays: Mapping[str, np.ndarray], name: str, rows: int, end: int) -> np.ndarray:
    """A CSR pointer array: rows + 1 entries, from 0, never decreasing, ending at `end`."""
    ptr = np.asarray(_length(arrays, name, rows + 1))
    if ptr[0] != 0 or ptr[-1] != end or (np.diff(ptr) < 0).any():
        raise IndexArrayError(
            name, f"garbled index array: pointers must rise from 0 to {end}, found {ptr[0]}..{ptr[-1]}"
        )
    return ptr


def check_index_arrays(
    arrays: Mapping[str, np.ndarray],
    index: int,
    info: Mapping[str, Any],
    owned_per_partition: Sequence[int],
    owned_comments_per_partition: Sequence[int],
) -> None:
    """Raise `IndexArrayError` naming the first index array of partition `index` (its `meta.json` entry
    `info`) that points outside its target; the ownership book is checked against every partition's own
    sample and comment counts."""
    num_seeds, num_inner = info["num_seeds"], info["num_inner"]
    num_video = len(_need(arrays, "video_sample_id"))
    if not num_seeds <= num_inner <= num_video:
        raise IndexArrayError(
            "video_sample_id",
            f"{num_video} video nodes, meta.json records {num_seeds} seeds and {num_inner} inner nodes "
            "(needs seeds <= inner <= video nodes)",
        )
    num_owned = len(_length(arrays, "owned_sample_id", info["num_owned"]))
    num_owned_comments = info["num_owned_comments"]
    _pointers(arrays, "owned_comment_ptr", num_owned, num_owned_comments)
    owner = np.asarray(_length(arrays, "video_owner", num_video))
    _within(arrays, "video_owner", len(owned_per_partition))
    row = np.asarray(_length(arrays, "video_row", num_video))
    _within(arrays, "video_row", np.asarray(owned_per_partition)[owner] if len(owner) else 1, row)
    if num_seeds and (owner[:num_seeds] != index).any():
        raise IndexArrayError("video_owner", f"garbled ownership book: a seed not owned by partition {index}")
    num_comments = len(_need(arrays, "comment_id"))
    _pointers(arrays, "comment_ptr", num_inner, num_comments)
    comment_owner = np.repeat(owner[:num_inner], np.diff(np.asarray(arrays["comment_ptr"])))
    upper = np.asarray(owned_comments_per_partition)[comment_owner] if num_comments else 1
    _within(arrays, "comment_row", upper, np.asarray(_length(arrays, "comment_row", num_comments)))
    _pointers(arrays, "history_ptr", num_inner, len(_need(arrays, "history_idx")))
    _within(arrays, "history_idx", num_video)
    rows = {"video_x": num_owned, "comment_x": num_owned_comments}
    for node_type in NODE_TYPES:
        if node_type.name == VIDEO or node_type.name == "comment":
            continue
        if node_type.per_sample:
            rows[f"x_{node_type.name}"] = num_owned
        else:
            features = _need(arrays, f"{node_type.name}_x")
            _within(
                arrays,
                f"inner_{node_type.name}",
                len(features),
                _length(arrays, f"inner_{node_type.name}", num_inner),
            )
    for name, count in rows.items():
        features = _need(arrays, name)
        if f"{name}_row" in arrays:
            _within(arrays, f"{name}_row", len(features), _length(arrays, f"{name}_row", count))
        elif len(features) != count:
            _length(arrays, name, count)
    for relation in RELATIONS:
        if not relation.is_group:
            continue
        name = relation.name
        members = len(_need(arrays, f"{name}_members"))
        _within(arrays, f"{name}_members", num_video)
        start = np.asarray(_length(arrays, f"{name}_start", num_inner))
        length = np.asarray(_length(arrays, f"{name}_length", num_inner))
        _within(arrays, f"{name}_length", members + 1)
        _within(arrays, f"{name}_start", members + 1)
        if num_inner and (start + length).max() > members:
            raise IndexArrayError(
                f"{name}_start", f"garbled index array: a group reaches past its {members} members"
            )
        excl = np.asarray(_length(arrays, f"{name}_excl", num_inner))
        real = excl != PAD
        if real.any() and ((excl < 0) | (real & (excl >= length[:, None]))).any():
            raise IndexArrayError(
                f"{name}_excl", "garbled index array: excluded positions must lie inside their group's prefix"
            )


def index_error_path(folder: Path, error: IndexArrayError) -> Path:
    return folder / f"{error.name}.npy"

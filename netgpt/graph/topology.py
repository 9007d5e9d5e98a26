"""The video-level structure of the whole propagation graph, as integer arrays (no features).

Sample `i` is row `i` of the samples table sorted by `sample_id`; every per-sample node type (video,
title, fans, ...) has node `i` for it. The structure is small (a few int arrays per sample), so one process
holds it at full scale; features are computed per partition (see `build.py`).

Group relations (same topic, same author) are kept as groups, never as edge lists: at full scale they would be
~1.7 billion edges (docs/graph.md#groups). A group's members are sorted by (crawl day, sample id); the
in-neighbours of sample `s` are the group's prefix of samples crawled on or before `s`'s day (causality:
nothing from a later crawl), *minus the states of `s`'s own video* (`s` itself and its earlier states: the
explicit `is_history_of` relation already carries those, so the group relations carry only cross-video
signal).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from netgpt.data.schema import COMMENTS_FILE, SAMPLES_FILE
from netgpt.data.tables import read_comments, read_samples
from netgpt.graph.types import RELATIONS

PAD = np.iinfo(np.int64).max
"""Padding of the per-sample exclusion rows (sorts after every real position)."""

TOPOLOGY_COLUMNS = ["sample_id", "video_id", "topic", "author_id", "platform", "crawl_date", "split"]


class GraphInputError(ValueError):
    """The tables break a rule the graph relies on (names the file, sample and field)."""


@dataclass
class Group:
    """One key-defined relation stored as time-ordered groups.

    `members[gptr[g]:gptr[g+1]]` are the samples of group `g` sorted by (day, sample id). For sample `s`:
    its group is `gid[s]`, its candidate in-neighbours are the first `length[s]` members of that group
    (the causal prefix), except the positions in `excl[s]` (relative to the group start, sorted, PAD-padded).
    """

    members: np.ndarray
    gptr: np.ndarray
    gid: np.ndarray
    length: np.ndarray
    excl: np.ndarray

    @property
    def start(self) -> np.ndarray:
        return self.gptr[self.gid]

    def num_edges(self) -> int:
        excluded = (self.excl != PAD).sum(axis=1)
        return int((self.length - excluded).sum())


@dataclass
class Topology:
    sample_id: np.ndarray
    day: np.ndarray
    video: np.ndarray
    video_ids: np.ndarray
    topic: np.ndarray
    topic_names: list[str]
    platform: np.ndarray
    platform_names: list[str]
    split: np.ndarray
    history_ptr: np.ndarray
    history_idx: np.ndarray
    comment_ptr: np.ndarray
    groups: dict[str, Group]

    @property
    def num_samples(self) -> int:
        return len(self.sample_id)

    def expand(self, mask: np.ndarray) -> np.ndarray:
        """`mask` plus every in-neighbour (history and group prefixes) of the samples it marks."""
        out = mask.copy()
        frontier = np.flatnonzero(mask)
        out[self.history_idx[_ranges(self.history_ptr[frontier], self.history_ptr[frontier + 1])]] = True
        for group in self.groups.values():
            reach = np.zeros(len(group.gptr) - 1, dtype=np.int64)
            np.maximum.at(reach, group.gid[frontier], group.length[frontier])
            covered = np.zeros(len(group.members) + 1, dtype=np.int64)
            np.add.at(covered, group.gptr[:-1], 1)
            np.add.at(covered, group.gptr[:-1] + reach, -1)
            out[group.members[np.cumsum(covered[:-1]) > 0]] = True
        return out

    def hops(self, seeds: np.ndarray, num_hops: int) -> list[np.ndarray]:
        """Masks of the samples within 0, 1, ..., num_hops hops (against the edges) of `seeds`."""
        mask = np.zeros(self.num_samples, dtype=bool)
        mask[seeds] = True
        levels = [mask]
        for _ in range(num_hops):
            levels.append(self.expand(levels[-1]))
        return levels


def _ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Concatenation of arange(start, end) for every pair, vectorised."""
    counts = ends - starts
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.repeat(starts - np.cumsum(counts) + counts, counts)
    return offsets + np.arange(total)


def _factorize(values: pa.ChunkedArray) -> tuple[np.ndarray, list[str]]:
    encoded = pc.dictionary_encode(values).combine_chunks()
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64), encoded.dictionary.to_pylist()


def read_topology(tables_dir: str | Path) -> Topology:
    """Read the samples and comments tables into the graph's video-level structure, checking its rules."""
    table = read_samples(tables_dir, [*TOPOLOGY_COLUMNS, "history_ids"])
    comment_sid = read_comments(tables_dir, ["sample_id"])["sample_id"].to_numpy()
    return make_topology(
        table, comment_sid, str(Path(tables_dir) / SAMPLES_FILE), str(Path(tables_dir) / COMMENTS_FILE)
    )


def make_topology(
    table: pa.Table,
    comment_sid: np.ndarray,
    samples_path: str = SAMPLES_FILE,
    comments_path: str = COMMENTS_FILE,
) -> Topology:
    """The structure of samples `table` (`TOPOLOGY_COLUMNS` and `history_ids`, any row order) whose comments
    belong to `comment_sid` (one sample id per comment row); the paths name the tables in errors."""
    table = table.sort_by("sample_id")
    sample_id = table["sample_id"].to_numpy()
    if len(sample_id) and (np.diff(sample_id) == 0).any():
        dup = sample_id[1:][np.diff(sample_id) == 0][0]
        raise GraphInputError(f"{samples_path}: sample_id {dup} appears more than once")
    day = table["crawl_date"].cast(pa.int32()).to_numpy().astype(np.int64)
    video, video_ids = _factorize(table["video_id"])
    topic, topic_names = _factorize(table["topic"])
    platform, platform_names = _factorize(table["platform"])

    history_lists = table["history_ids"].combine_chunks()
    history_ptr = history_lists.offsets.to_numpy().astype(np.int64)
    history_ptr = history_ptr - history_ptr[0]
    history_sid = history_lists.flatten().to_numpy().astype(np.int64)
    history_idx, found = _positions(sample_id, history_sid)
    owner = np.repeat(np.arange(len(sample_id)), np.diff(history_ptr))
    if not found.all():
        bad = np.flatnonzero(~found)[0]
        raise GraphInputError(
            f"{samples_path}: sample_id {sample_id[owner[bad]]}, field history_ids: "
            f"history sample {history_sid[bad]} is not in the table"
        )
    later = (day[history_idx] > day[owner]) | (video[history_idx] != video[owner])
    if later.any():
        bad = np.flatnonzero(later)[0]
        raise GraphInputError(
            f"{samples_path}: sample_id {sample_id[owner[bad]]}, field history_ids: history sample "
            f"{history_sid[bad]} must be an earlier (or same-day) state of the same video"
        )

    comment_owner, known = _positions(sample_id, comment_sid)
    if not known.all():
        bad = np.flatnonzero(~known)[0]
        raise GraphInputError(
            f"{comments_path}: row {bad}, field sample_id: {comment_sid[bad]} is not a sample"
        )
    comment_ptr = np.zeros(len(sample_id) + 1, dtype=np.int64)
    np.cumsum(np.bincount(comment_owner, minlength=len(sample_id)), out=comment_ptr[1:])

    groups = {
        r.name: _group(_factorize(table[r.group_key])[0], day, sample_id, video)
        for r in RELATIONS
        if r.is_group
    }
    return Topology(
        sample_id=sample_id,
        day=day,
        video=video,
        video_ids=np.array(video_ids, dtype=object),
        topic=topic,
        topic_names=topic_names,
        platform=platform,
        platform_names=platform_names,
        split=table["split"].to_numpy(zero_copy_only=False),
        history_ptr=history_ptr,
        history_idx=history_idx,
        comment_ptr=comment_ptr,
        groups=groups,
    )


def _group(key: np.ndarray, day: np.ndarray, sample_id: np.ndarray, video: np.ndarray) -> Group:
    n = len(key)
    members = np.lexsort((sample_id, day, key))
    num_groups = int(key.max()) + 1 if n else 0
    gptr = np.zeros(num_groups + 1, dtype=np.int64)
    np.cumsum(np.bincount(key, minlength=num_groups), out=gptr[1:])
    position = np.empty(n, dtype=np.int64)
    position[members] = np.arange(n)
    order_key = key[members] * (int(day.max()) + 2 if n else 1) + day[members]
    own_key = key * (int(day.max()) + 2 if n else 1) + day
    length = np.searchsorted(order_key, own_key, side="right") - gptr[key]

    by_video = np.argsort(video, kind="stable")
    vptr = np.zeros(int(video.max()) + 2 if n else 1, dtype=np.int64)
    np.cumsum(np.bincount(video, minlength=len(vptr) - 1), out=vptr[1:])
    max_states = int(np.diff(vptr).max()) if n else 0
    excl = np.full((n, max(max_states, 1)), PAD, dtype=np.int64)
    first = vptr[video]
    count = vptr[video + 1] - first
    for slot in range(max_states):
        has = slot < count
        other = np.where(has, by_video[np.minimum(first + slot, n - 1)], 0)
        relative = position[other] - gptr[key]
        inside = has & (key[other] == key) & (relative < length)
        excl[inside, slot] = relative[inside]
    excl.sort(axis=1)
    return Group(members=members.astype(np.int64), gptr=gptr, gid=key, length=length, excl=excl)


def _positions(sorted_ids: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of each of `ids` in the sorted array `sorted_ids`, and whether it is there at all."""
    index = np.searchsorted(sorted_ids, ids)
    found = index < len(sorted_ids)
    found[found] = sorted_ids[index[found]] == ids[found]
    return index, found

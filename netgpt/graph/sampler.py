"""Neighbourhood sampling on one partition: seeds -> an L-hop heterogeneous subgraph (`SampledSubgraph`:
numpy arrays, which `to_hetero_data` turns into the PyG `HeteroData` the model reads).

Semantics follow PyG's `NeighborLoader` (disjoint=False): hop `h` expands the video nodes first reached at
hop `h` (the seeds at hop 0), drawing for every relation at most `fanout[h]` distinct in-neighbours, without
replacement; a neighbour already in the batch keeps its index. With every fan-out -1 the result is exactly
the L-hop in-neighbourhood of the seeds. Group relations draw from the causal prefix of the group minus the
sample's own video states (see `topology.py`).

Why our own sampler: PyG's samplers need pyg-lib or torch-sparse (not installable here), and neither knows
group relations. Every step is a numpy operation over all rows of a hop; loops run over relations, hops and
fan-out slots only, never over nodes.

Sampling reads only the partition's structure; the batch's feature rows are then gathered by `rows.py`: the
partition's own rows directly, other partitions' rows from their owners (`rows`: the owners' actors in
training, their files in one process by default) through a cache of `cache_rows` rows per kind. Where a row
came from never changes the batch.

    sampler = NeighborSampler(open_partition(store_dir, 0), fanouts=[50, 51])
    batch = sampler.sample(seed_sample_ids, np.random.default_rng(0))          # HeteroData
    arrays = sampler.sample_arrays(seed_sample_ids, np.random.default_rng(0))  # the same, as numpy

This module imports neither torch nor PyG at its top (`netgpt/graph/subgraph.py` says why).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from netgpt.graph.rows import RowGather, RowSource, StoreRows
from netgpt.graph.seeds import SEED_FIELDS, SeedFields
from netgpt.graph.store import Partition, StoreError
from netgpt.graph.subgraph import SampledSubgraph
from netgpt.graph.topology import PAD, _ranges
from netgpt.graph.types import NODE_TYPES, RELATIONS, VIDEO, Relation

if TYPE_CHECKING:
    from torch_geometric.data import HeteroData

_NODE_TYPE = {n.name: n for n in NODE_TYPES}


def _kind(relation: Relation) -> str:
    """How a relation's in-neighbours are stored: attribute (1:1), shared node, list (CSR) or group."""
    if relation.is_group:
        return "group"
    if relation.src == VIDEO:
        return "history"
    source = _NODE_TYPE[relation.src]
    if not source.per_sample:
        return "shared"
    return "comment" if source.feature == "text+time" else "attribute"


def choose_positions(
    start: np.ndarray, length: np.ndarray, excl: np.ndarray | None, fanout: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """For every row `i`, up to `fanout` distinct positions of `[0, length[i])` not in `excl[i]`.

    Returns `(row, start[row] + position)` sorted by row then position. `fanout == -1` takes them all.
    Rows with more candidates than `fanout` use Floyd's algorithm, vectorised over rows (a loop over the
    fan-out slots only); excluded positions are skipped by shifting draws over the sorted exclusions.
    """
    excluded = (excl != PAD).sum(axis=1) if excl is not None else 0
    available = length - excluded
    take_all = np.ones(len(length), dtype=bool) if fanout < 0 else available <= fanout
    all_rows = np.flatnonzero(take_all)
    counts = available[all_rows]
    rows = [np.repeat(all_rows, counts)]
    positions = [_ranges(np.zeros_like(counts), counts)]
    drawn_rows = np.flatnonzero(~take_all)
    if len(drawn_rows):
        rows.append(np.repeat(drawn_rows, fanout))
        positions.append(_floyd(available[drawn_rows], fanout, rng).reshape(-1))
    row = np.concatenate(rows)
    position = np.concatenate(positions)
    if excl is not None:
        for slot in range(excl.shape[1]):
            position = position + (position >= excl[row, slot])
    order = np.lexsort((position, row))
    row, position = row[order], position[order]
    return row, start[row] + position


def _floyd(n: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """[len(n), k] distinct uniform draws from [0, n_i) per row (requires n_i > k)."""
    out = np.empty((len(n), k), dtype=np.int64)
    for i in range(k):
        upper = n - k + i
        draw = np.minimum((rng.random(len(n)) * (upper + 1)).astype(np.int64), upper)
        taken = (out[:, :i] == draw[:, None]).any(axis=1)
        out[:, i] = np.where(taken, upper, draw)
    return out


class _Slots:
    """Batch indices of the nodes of one type: first-seen order, reset after every batch."""

    def __init__(self, size: int) -> None:
        self.slot = np.full(size, -1, dtype=np.int64)
        self.nodes: list[np.ndarray] = []
        self.count = 0

    def add(self, ids: np.ndarray) -> np.ndarray:
        fresh = ids[self.slot[ids] < 0]
        if len(fresh):
            unique, first = np.unique(fresh, return_index=True)
            unique = unique[np.argsort(first)]
            self.slot[unique] = self.count + np.arange(len(unique))
            self.count += len(unique)
            self.nodes.append(unique)
        return self.slot[ids]

    def take(self) -> np.ndarray:
        nodes = np.concatenate(self.nodes) if self.nodes else np.zeros(0, dtype=np.int64)
        self.slot[nodes] = -1
        self.nodes, self.count = [], 0
        return nodes


class NeighborSampler:
    """Samples L-hop subgraphs around seeds owned by one partition."""

    def __init__(
        self,
        partition: Partition,
        fanouts: Sequence[int],
        relation_fanouts: Mapping[str, Sequence[int]] | None = None,
        num_hops: int | None = None,
        rows: RowSource | None = None,
        cache_rows: int = 0,
    ) -> None:
        if num_hops is not None and len(fanouts) > num_hops:
            raise StoreError(
                f"{partition.folder}: the store holds the halo for {num_hops} hops, the sampler asks for "
                f"{len(fanouts)} (graph.fanouts={list(fanouts)}); rebuild the store"
            )
        self.partition = partition
        self.gather = RowGather(
            partition, rows if rows is not None else StoreRows(partition.folder.parent), cache_rows
        )
        self.fanouts = {r.name: list((relation_fanouts or {}).get(r.name, fanouts)) for r in RELATIONS}
        self.num_hops = len(fanouts)
        self._seed_fields = partition.read_seed_fields()
        if tuple(self._seed_fields.column_names) != SEED_FIELDS:
            raise StoreError(
                f"{partition.seeds_path}: columns {self._seed_fields.column_names}, expected the seed fields "
                f"{list(SEED_FIELDS)}; rebuild the store with `netgpt build-graph`"
            )
        self._levels = self._seed_fields["level"].to_numpy().astype(np.float32)
        self._seed_ids = np.asarray(partition["video_sample_id"][: partition.num_seeds])
        self._seed_order = np.argsort(self._seed_ids)
        self._videos = _Slots(len(partition["video_sample_id"]))
        self._shared = {
            n.name: _Slots(partition[f"{n.name}_x"].shape[0]) for n in NODE_TYPES if not n.per_sample
        }

    @property
    def seed_sample_ids(self) -> np.ndarray:
        return self._seed_ids

    def local_seeds(self, sample_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Local indices of seed samples; an id this partition does not own is an error."""
        wanted = np.asarray(sample_ids, dtype=np.int64)
        pos = np.minimum(
            np.searchsorted(self._seed_ids, wanted, sorter=self._seed_order), len(self._seed_ids) - 1
        )
        local = self._seed_order[pos] if len(self._seed_ids) else np.zeros(0, dtype=np.int64)
        if len(wanted) and (len(self._seed_ids) == 0 or (self._seed_ids[local] != wanted).any()):
            bad = wanted[np.isin(wanted, self._seed_ids, invert=True)][0]
            raise KeyError(
                f"sample_id {bad} is not a seed of partition {self.partition.index} ({self.partition.folder})"
            )
        return local

    def sample(self, sample_ids: Sequence[int] | np.ndarray, rng: np.random.Generator) -> HeteroData:
        """The sampled subgraph (docs/graph.md#a-sampled-batch), seeds (in the given order) first among video
        nodes."""
        return self.sample_arrays(sample_ids, rng).to_hetero_data()

    def sample_arrays(
        self, sample_ids: Sequence[int] | np.ndarray, rng: np.random.Generator
    ) -> SampledSubgraph:
        """`sample`'s subgraph as numpy arrays: what a sampler actor ships (it never loads torch)."""
        seeds = self.local_seeds(sample_ids)
        if len(np.unique(seeds)) != len(seeds):
            raise ValueError("seed sample ids of one batch must be distinct")
        try:
            return self._sample(seeds, rng)
        finally:
            self._videos.take()
            for slots in self._shared.values():
                slots.take()

    def _sample(self, seeds: np.ndarray, rng: np.random.Generator) -> SampledSubgraph:
        part = self.partition
        self._videos.add(seeds)
        edges: dict[tuple[str, str, str], list[tuple[np.ndarray, np.ndarray]]] = {
            r.edge_type: [] for r in RELATIONS
        }
        expanded: list[np.ndarray] = []
        comments: list[np.ndarray] = []
        comment_nodes: list[np.ndarray] = []
        num_comments = num_attributes = 0
        frontier = seeds
        for hop in range(self.num_hops):
            if len(frontier) and frontier.max() >= part.num_inner:
                raise StoreError(f"{part.folder}: hop {hop} left the partition's halo; the store is damaged")
            seen_before = self._videos.count
            dst = self._videos.slot[frontier]
            expanded.append(frontier)
            for relation in RELATIONS:
                kind = _kind(relation)
                fanout = self.fanouts[relation.name][hop]
                if kind == "attribute":
                    src, target = num_attributes + np.arange(len(frontier)), dst
                elif kind == "shared":
                    src, target = self._shared[relation.src].add(part[f"inner_{relation.src}"][frontier]), dst
                elif kind == "comment":
                    ptr = part["comment_ptr"]
                    row, flat = choose_positions(
                        ptr[frontier], ptr[frontier + 1] - ptr[frontier], None, fanout, rng
                    )
                    src, target = num_comments + np.arange(len(flat)), dst[row]
                    comments.append(flat)
                    comment_nodes.append(frontier[row])
                    num_comments += len(flat)
                elif kind == "history":
                    ptr = part["history_ptr"]
                    row, flat = choose_positions(
                        ptr[frontier], ptr[frontier + 1] - ptr[frontier], None, fanout, rng
                    )
                    src, target = self._videos.add(np.asarray(part["history_idx"][flat])), dst[row]
                else:
                    name = relation.name
                    row, flat = choose_positions(
                        np.asarray(part[f"{name}_start"][frontier]),
                        np.asarray(part[f"{name}_length"][frontier]),
                        np.asarray(part[f"{name}_excl"][frontier]),
                        fanout,
                        rng,
                    )
                    src, target = self._videos.add(np.asarray(part[f"{name}_members"][flat])), dst[row]
                edges[relation.edge_type].append((src, target))
            num_attributes += len(frontier)
            frontier = (
                np.concatenate(self._videos.nodes)[seen_before:]
                if self._videos.count > seen_before
                else frontier[:0]
            )
        return self._assemble(
            seeds, edges, np.concatenate(expanded), _concat(comments), _concat(comment_nodes)
        )

    def _assemble(
        self,
        seeds: np.ndarray,
        edges: dict[tuple[str, str, str], list[tuple[np.ndarray, np.ndarray]]],
        attributes: np.ndarray,
        comments: np.ndarray,
        comment_nodes: np.ndarray,
    ) -> SampledSubgraph:
        part = self.partition
        videos = self._videos.take()
        sample_ids = np.asarray(part["video_sample_id"][videos])
        owner, row = part["video_owner"], part["video_row"]
        features = self.gather(
            {
                "video": (np.asarray(owner[videos]), np.asarray(row[videos])),
                "attribute": (np.asarray(owner[attributes]), np.asarray(row[attributes])),
                "comment": (np.asarray(owner[comment_nodes]), np.asarray(part["comment_row"][comments])),
            }
        )
        xs, n_ids = {}, {}
        for node_type in NODE_TYPES:
            name = node_type.name
            if name == VIDEO:
                x, n_id = features["video_x"], sample_ids
            elif name == "comment":
                x, n_id = features["comment_x"], part["comment_id"][comments]
            elif not node_type.per_sample:
                ids = self._shared[name].take()
                x, n_id = part[f"{name}_x"][ids], ids
            else:
                x, n_id = features[f"x_{name}"], part["video_sample_id"][attributes]
            xs[name] = np.ascontiguousarray(x, dtype=np.float32)
            n_ids[name] = np.asarray(n_id, dtype=np.int64)
        seed_fields: list[SeedFields] = self._seed_fields.take(seeds).to_pylist()
        return SampledSubgraph(
            x=xs,
            n_id=n_ids,
            edge_index={
                edge_type: np.stack([_concat([p[0] for p in pieces]), _concat([p[1] for p in pieces])])
                for edge_type, pieces in edges.items()
            },
            num_seeds=len(seeds),
            y=self._levels[seeds],
            sample_id=sample_ids,
            seed_fields=seed_fields,
        )


def _concat(pieces: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(pieces).astype(np.int64) if pieces else np.zeros(0, dtype=np.int64)

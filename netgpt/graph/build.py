"""Build the partitioned graph store from the parquet tables (docs/graph.md, docs/store.md).

The driver reads only the video-level structure (`topology.py`: a few int arrays per sample), assigns
partitions and plans each partition's local index space (its seeds plus the structure of their L-hop halo)
and its ownership book (where each halo node's feature rows live). Features are computed and written by one
Ray task per partition for the samples it owns only, each task reading just those rows of the tables, so no
process ever holds every feature of the full graph and no feature row is written twice.

    summary = build_graph(tables_dir, graph_cfg, store_dir)
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from netgpt.config import GraphConfig, NetGPTConfig, save_config
from netgpt.data.schema import COMMENTS_FILE, SECONDS_PER_DAY
from netgpt.data.tables import read_comments, read_samples
from netgpt.graph.features import (
    TextEncoder,
    encode_time,
    load_content,
    log1p_scalar,
    make_text_encoder,
    scan_content,
    text_dim,
)
from netgpt.graph.partition import assign_partitions
from netgpt.graph.seeds import SEED_FIELDS, TIME_LAYOUTS
from netgpt.graph.store import (
    BOOK_FILE,
    FORMAT_VERSION,
    SEEDS_FILE,
    partition_dir,
    save_arrays,
    write_meta,
    write_store_atomically,
)
from netgpt.graph.topology import Topology, _ranges, read_topology
from netgpt.graph.types import EDGE_TYPES, NODE_TYPE_NAMES, NODE_TYPES, RELATIONS, VIDEO, feature_dims

ATTRIBUTE_TYPES = tuple(n for n in NODE_TYPES if n.per_sample and n.feature in ("text", "time", "scalar"))
"""Node types with exactly one node per sample, pointing to that sample's video."""

_PLAN_ONLY = ("order", "owned", "sample_ids")
"""Plan entries the partition task uses but does not store as arrays of their own."""


def build_graph(
    tables_dir: str | Path, graph_cfg: GraphConfig, store_dir: str | Path, config: NetGPTConfig | None = None
) -> dict[str, Any]:
    """Build the store at `store_dir` (replacing any store there only once the new one is complete).

    With `config` (whose `graph` section must be `graph_cfg`), the resolved config is saved in the store."""
    if config is not None and config.graph != graph_cfg:
        raise ValueError(
            "build_graph: `config.graph` and `graph_cfg` differ; pass the config's own graph section"
        )
    import ray

    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS", "local"), log_to_driver=False)
    started = time.perf_counter()
    topology = read_topology(tables_dir)
    num_hops = len(graph_cfg.fanouts)
    part = assign_partitions(topology, graph_cfg.num_partitions, graph_cfg.partitioner)
    dims = feature_dims(text_dim(graph_cfg.text), graph_cfg.time_dim, graph_cfg.content_dim)
    files = content_files(graph_cfg)
    content = content_counts(files, content_ids(files, graph_cfg.content_dim), topology.video_ids)
    owners = ownership(topology, part, graph_cfg.num_partitions)
    plans = [plan_partition(topology, part, p, num_hops, owners) for p in range(graph_cfg.num_partitions)]
    write_remote = ray.remote(num_cpus=1)(write_partition)

    def fill(folder: Path) -> None:
        book = pa.table(
            {
                "sample_id": topology.sample_id,
                "partition": part,
                "row": owners.row,
                "split": topology.split.astype(str),
            }
        )
        pq.write_table(book, folder / BOOK_FILE)
        shared = {"topic_names": topology.topic_names, "platform_names": topology.platform_names}
        refs = [
            write_remote.remote(str(tables_dir), graph_cfg, str(partition_dir(folder, p)), plan, shared)
            for p, plan in enumerate(plans)
        ]
        infos = ray.get(refs)
        for p, info in enumerate(infos):
            splits, counts = np.unique(
                topology.split[plans[p]["order"][: plans[p]["num_seeds"]]], return_counts=True
            )
            info["seeds_per_split"] = {str(s): int(c) for s, c in zip(splits, counts, strict=True)}
        if config is not None:
            save_config(config, folder)
        write_meta(folder, store_meta(topology, graph_cfg, dims, num_hops, infos, content, started))

    write_store_atomically(store_dir, fill)
    return _summary(store_dir)


def _summary(store_dir: str | Path) -> dict[str, Any]:
    from netgpt.graph.store import read_meta

    meta = read_meta(store_dir)
    return {
        "store_dir": str(store_dir),
        "build_seconds": meta["build"]["seconds"],
        "samples": meta["counts"]["nodes"][VIDEO],
        "partitions": [
            {k: info[k] for k in ("num_seeds", "num_inner", "num_video", "bytes", "seeds_per_split")}
            for info in meta["partitions"]
        ],
        "content_vectors": meta["build"]["content_vectors"],
        "group_relation_edges_not_materialised": {
            r.name: meta["counts"]["edges"]["__".join(r.edge_type)] for r in RELATIONS if r.is_group
        },
    }


def store_meta(
    topology: Topology,
    cfg: GraphConfig,
    dims: dict[str, int],
    num_hops: int,
    infos: list[dict[str, Any]],
    content: dict[str, Any],
    started: float,
) -> dict[str, Any]:
    n = topology.num_samples
    nodes = {t.name: n for t in NODE_TYPES if t.per_sample}
    nodes.update(topic=len(topology.topic_names), platform=len(topology.platform_names))
    nodes["comment"] = int(topology.comment_ptr[-1])
    edges = {}
    for relation in RELATIONS:
        if relation.is_group:
            count = topology.groups[relation.name].num_edges()
        elif relation.src == VIDEO:
            count = len(topology.history_idx)
        else:
            count = nodes["comment"] if relation.src == "comment" else n
        edges["__".join(relation.edge_type)] = int(count)
    return {
        "format_version": FORMAT_VERSION,
        "node_types": list(NODE_TYPE_NAMES),
        "edge_types": [list(e) for e in EDGE_TYPES],
        "num_hops": num_hops,
        "feature_dims": dims,
        "counts": {"nodes": nodes, "edges": edges},
        "topic_names": topology.topic_names,
        "platform_names": topology.platform_names,
        "partitioner": cfg.partitioner if cfg.num_partitions > 1 else "single",
        "text_encoder": {"kind": cfg.text.kind, "dim": dims["title"], "path": cfg.text.path},
        "partitions": infos,
        "build": {
            "seconds": round(time.perf_counter() - started, 3),
            "content_vectors": content,
            "videos": len(topology.video_ids),
        },
    }


def content_files(cfg: GraphConfig, extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The content files a build reads: `graph.content_file` (when set), then `extra`."""
    return tuple(f for f in (cfg.content_file, *extra) if f)


def content_ids(files: tuple[str, ...], dim: int) -> set[str]:
    """The video ids of the content `files`, each file checked whole (`features.scan_content`)."""
    return set().union(*(scan_content(path, dim) for path in files))


def content_counts(files: tuple[str, ...], given: set[str], video_ids: np.ndarray) -> dict[str, Any]:
    """Over the distinct `video_ids`: the videos with a vector in `given` (the ids of `files`) and without
    one, and the files' ids that name none of them (a video id spelled otherwise than the tables'
    `video_id` shows up there, rather than as silent zeros)."""
    videos = set(video_ids.tolist())
    return {
        "files": list(files),
        "videos": len(videos),
        "videos_with": len(videos & given),
        "videos_without": len(videos - given),
        "ids_naming_no_video": len(given - videos),
    }


@dataclass(frozen=True)
class Ownership:
    """Where every sample's feature rows live: its partition, its row among that partition's own samples, and
    where its comments start among that partition's own comments (all int64 [num_samples])."""

    partition: np.ndarray
    row: np.ndarray
    comment_start: np.ndarray


def ownership(topology: Topology, part: np.ndarray, num_partitions: int) -> Ownership:
    """Each partition owns its samples (sorted by sample id) and their comments (in sample order)."""
    row = np.zeros(topology.num_samples, dtype=np.int64)
    comment_start = np.zeros(topology.num_samples, dtype=np.int64)
    counts = np.diff(topology.comment_ptr)
    for index in range(num_partitions):
        owned = np.flatnonzero(part == index)
        row[owned] = np.arange(len(owned))
        comment_start[owned] = np.cumsum(counts[owned]) - counts[owned]
    return Ownership(partition=part.astype(np.int64), row=row, comment_start=comment_start)


def plan_partition(
    topology: Topology, part: np.ndarray, index: int, num_hops: int, owners: Ownership | None = None
) -> dict[str, Any]:
    """The local index space of one partition, its structure arrays and its ownership book (ints only).

    With `owners`, the partition owns (stores the feature rows of) its samples `part == index` and its halo
    nodes' rows are at their owners; without, it owns every node it holds (a one-partition store)."""
    seeds = np.flatnonzero((part == index) & (topology.split != "final"))
    levels = topology.hops(seeds, num_hops)
    inner_mask, all_mask = levels[num_hops - 1], levels[num_hops]
    order = np.concatenate(
        [seeds, np.flatnonzero(inner_mask & ~levels[0]), np.flatnonzero(all_mask & ~inner_mask)]
    )
    num_inner = int(inner_mask.sum())
    to_local = np.full(topology.num_samples, -1, dtype=np.int64)
    to_local[order] = np.arange(len(order))
    inner = order[:num_inner]

    def local(global_idx: np.ndarray) -> np.ndarray:
        mapped = to_local[global_idx]
        assert (mapped >= 0).all(), "halo closure misses an in-neighbour"
        return mapped

    comment_counts = np.diff(topology.comment_ptr)
    comment_rows = _ranges(topology.comment_ptr[inner], topology.comment_ptr[inner + 1])
    comment_node = np.repeat(inner, comment_counts[inner])
    if owners is None:
        owned = order
        video_owner = np.full(len(order), index, dtype=np.int32)
        video_row = np.arange(len(order), dtype=np.int64)
        comment_start = np.zeros(topology.num_samples, dtype=np.int64)
        comment_start[order] = np.cumsum(comment_counts[order]) - comment_counts[order]
    else:
        owned = np.flatnonzero(part == index)
        video_owner = owners.partition[order].astype(np.int32)
        video_row = owners.row[order]
        comment_start = owners.comment_start
    hist_counts = topology.history_ptr[inner + 1] - topology.history_ptr[inner]
    plan: dict[str, Any] = {
        "order": order,
        "owned": owned,
        "sample_ids": topology.sample_id[order],
        "num_seeds": len(seeds),
        "num_inner": num_inner,
        "owned_sample_id": topology.sample_id[owned],
        "owned_comment_ptr": np.concatenate([[0], np.cumsum(comment_counts[owned])]).astype(np.int64),
        "video_owner": video_owner,
        "video_row": video_row,
        "history_ptr": np.concatenate([[0], np.cumsum(hist_counts)]).astype(np.int64),
        "history_idx": local(
            topology.history_idx[_ranges(topology.history_ptr[inner], topology.history_ptr[inner + 1])]
        ),
        "comment_ptr": np.concatenate([[0], np.cumsum(comment_counts[inner])]).astype(np.int64),
        "comment_id": comment_rows,
        "comment_row": comment_start[comment_node] + comment_rows - topology.comment_ptr[comment_node],
        "inner_topic": topology.topic[inner],
        "inner_platform": topology.platform[inner],
    }
    for name, group in topology.groups.items():
        touched, compact = np.unique(group.gid[inner], return_inverse=True)
        reach = np.zeros(len(touched), dtype=np.int64)
        np.maximum.at(reach, compact, group.length[inner])
        local_gptr = np.concatenate([[0], np.cumsum(reach)]).astype(np.int64)
        plan[f"{name}_members"] = local(
            group.members[_ranges(group.gptr[touched], group.gptr[touched] + reach)]
        )
        plan[f"{name}_start"] = local_gptr[compact]
        plan[f"{name}_length"] = group.length[inner]
        plan[f"{name}_excl"] = group.excl[inner]
    return plan


def write_partition(
    tables_dir: str,
    cfg: GraphConfig,
    folder: str,
    plan: dict[str, Any],
    shared: dict[str, list[str]],
    encoder: TextEncoder | None = None,
    extra_content: tuple[str, ...] = (),
    labels_optional: bool = False,
) -> dict[str, Any]:
    """Ray task: compute and write one partition's features and structure; returns its meta entry.

    `encoder` replaces the configured text encoder (`netgpt.graph.extend` passes one that reuses the rows a
    store already holds); `extra_content` are content files read after `graph.content_file` (the new
    videos' vectors `netgpt predict` is given); `labels_optional`: the tables hold new samples whose level
    may be null (`netgpt.data.tables.read_samples`)."""
    started = time.perf_counter()
    out = Path(folder)
    out.mkdir(parents=True)
    num_inner, num_seeds = plan["num_inner"], plan["num_seeds"]
    wanted = plan["owned_sample_id"]
    table = read_samples(tables_dir, filters=_sample_ids_in(wanted), labels_optional=labels_optional)
    table = table.sort_by("sample_id")
    table = table.take(pa.array(np.searchsorted(table["sample_id"].to_numpy(), wanted)))
    encoder = encoder if encoder is not None else make_text_encoder(cfg.text)

    arrays: dict[str, np.ndarray] = {}
    video_code = _codes(table["video_id"])
    first, arrays["video_x_row"] = _distinct_rows(video_code)
    arrays["video_x"] = load_content(
        content_files(cfg, extra_content),
        table["video_id"].take(pa.array(first)).to_pylist(),
        cfg.content_dim,
    )
    for node_type in ATTRIBUTE_TYPES:
        column = table[node_type.column]
        name = f"x_{node_type.name}"
        if node_type.per_video:
            first, arrays[f"{name}_row"] = _distinct_rows(video_code, _codes(column))
            column = column.take(pa.array(first))
        arrays[name] = _encode(node_type.feature, column, encoder, cfg)
    arrays["topic_x"] = encoder.encode(shared["topic_names"])
    arrays["platform_x"] = encoder.encode(shared["platform_names"])

    comments = read_comments(tables_dir, ["sample_id", "text", "time"], filters=_sample_ids_in(wanted))
    owner_row = np.argsort(wanted)[np.searchsorted(np.sort(wanted), comments["sample_id"].to_numpy())]
    by_owner = np.argsort(owner_row, kind="stable")
    comments = comments.take(pa.array(by_owner))
    if len(comments) != plan["owned_comment_ptr"][-1]:
        raise RuntimeError(f"{tables_dir}/{COMMENTS_FILE}: changed while the graph was built")
    # A later crawl re-shows earlier comments of its video: one row per distinct (video, text, time).
    first, arrays["comment_x_row"] = _distinct_rows(
        video_code[owner_row[by_owner]], _codes(comments["text"]), _codes(comments["time"])
    )
    distinct = comments.take(pa.array(first))
    times = distinct["time"]
    arrays["comment_x"] = np.concatenate(
        [
            encoder.encode(distinct["text"].to_pylist()),
            encode_time(_seconds(times.fill_null(0)), cfg.time_dim, valid=times.is_valid().to_numpy()),
        ],
        axis=1,
    )
    arrays["video_sample_id"] = plan["sample_ids"]
    arrays.update({k: v for k, v in plan.items() if k not in _PLAN_ONLY and isinstance(v, np.ndarray)})

    seeds = table.take(pa.array(plan["video_row"][:num_seeds])).select(list(SEED_FIELDS))
    for column, layout in TIME_LAYOUTS.items():
        text = pa.array([value.strftime(layout) for value in seeds[column].to_pylist()], pa.string())
        seeds = seeds.set_column(seeds.schema.get_field_index(column), column, text)
    pq.write_table(seeds, out / SEEDS_FILE)
    files = save_arrays(out, arrays)
    return {
        "folder": out.name,
        "num_seeds": int(num_seeds),
        "num_inner": int(num_inner),
        "num_video": len(plan["order"]),
        "num_comments": len(plan["comment_id"]),
        "num_owned": len(wanted),
        "num_owned_comments": int(plan["owned_comment_ptr"][-1]),
        "bytes": int(sum(f["bytes"] for f in files.values())),
        "seconds": round(time.perf_counter() - started, 3),
        "files": files,
    }


def _sample_ids_in(sample_ids: np.ndarray) -> pc.Expression:
    """The row filter that keeps the given samples (parquet reads only the row groups that may hold them)."""
    return pc.field("sample_id").isin(pa.array(sample_ids))


def _codes(column: pa.ChunkedArray) -> np.ndarray:
    """An integer code per row, equal exactly where the values are equal (nulls get a code of their own)."""
    encoded = pc.dictionary_encode(column.combine_chunks(), null_encoding="encode")
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)


def _distinct_rows(*codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For rows keyed by the columns `codes`: the first row of each distinct key, and each row's key index."""
    _, first, row = np.unique(np.stack(codes, axis=1), axis=0, return_index=True, return_inverse=True)
    return first, row.reshape(-1).astype(np.int32)


def _encode(feature: str, column: pa.ChunkedArray, encoder: TextEncoder, cfg: GraphConfig) -> np.ndarray:
    """The feature rows of one attribute column (`text`, `time` or `scalar`, see `NodeType.feature`)."""
    if feature == "text":
        return encoder.encode(column.to_pylist())
    if feature == "time":
        return encode_time(_seconds(column), cfg.time_dim)
    return log1p_scalar(column.to_numpy())


def _seconds(column: pa.ChunkedArray) -> np.ndarray:
    """Unix seconds of a timestamp or date32 column."""
    if pa.types.is_date32(column.type):
        return column.cast(pa.int32()).to_numpy().astype(np.int64) * SECONDS_PER_DAY
    return column.cast(pa.timestamp("s")).cast(pa.int64()).to_numpy()

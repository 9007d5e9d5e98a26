"""Sampler benchmark: our vectorised sampler vs the best baseline available here, on the same graph.

Prints ONE JSON line: seeds/s and sampled edges/s of our sampler on one partition (the K=1 store, i.e. the
whole graph, so both samplers see the same graph) and of the baseline, their ratio, the memory of the
largest partition for K = 1, 2, 4 against the whole graph, and the build time at the benchmark's scale.
Memory is given as built (the bench's small feature widths) and recomputed from the stored row counts at the
paper's widths (768-d text, 3,584-d content), where per-video features dominate: once as stored (one row
per distinct per-video value) and once as if every node kept its own row.

Baseline: PyG's `NeighborLoader` when `torch_sparse` imports from `--deps` (install the prebuilt wheels there,
never into the project venv: `pip install --no-deps --target .bench-deps torch_sparse-*.whl
torch_scatter-*.whl scipy`, wheels built for the installed torch); it runs in a subprocess with that folder on
PYTHONPATH, on a `HeteroData` with the same features and the group relations materialised as edges. Otherwise
a plain per-seed Python sampler.

    python tools/bench/loader.py --videos 11800          # ~38k samples: 1/10 of XS-Video
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--videos", type=int, default=11_800, help="synthetic videos (11,800 = ~38k samples, 1/10 scale)"
    )
    parser.add_argument("--work", default=str(ROOT / "runs/bench"), help="folder for tables and stores")
    parser.add_argument("--deps", default=str(ROOT / ".bench-deps"), help="folder holding torch_sparse")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--fanouts", type=int, nargs="+", default=[50, 51])
    parser.add_argument("--batches", type=int, default=8, help="timed batches per sampler")
    parser.add_argument("--baseline-worker", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()


def _config(num_partitions: int, fanouts: list[int]):
    from netgpt.config import GraphConfig, TextEncoderConfig

    return GraphConfig(
        num_partitions=num_partitions,
        text=TextEncoderConfig(dim=64),
        time_dim=8,
        content_dim=16,
        fanouts=fanouts,
    )


def _tables(work: Path, videos: int) -> Path:
    from netgpt.config import DataConfig
    from netgpt.data.prepare import prepare
    from netgpt.data.synthetic import write_synthetic

    tables = work / f"tables-{videos}"
    if not (tables / "samples.parquet").is_file():
        raw = write_synthetic(work / f"synthetic-{videos}.json", videos=videos, seed=0)
        prepare(raw, tables, DataConfig(), progress=False)
    return tables


def _seed_batches(store: Path, batch_size: int, count: int) -> list[np.ndarray]:
    from netgpt.graph.plan import EpochPlan

    plan = EpochPlan(str(store), "train", batch_size, 1, True, 0)
    return [seeds for _, seeds in plan.epoch(0)[: count + 1]]


def _edges(batch) -> int:
    return sum(int(batch[e].edge_index.shape[1]) for e in batch.edge_types)


def _time_ours(store: Path, fanouts: list[int], batches: list[np.ndarray]) -> dict[str, float]:
    from netgpt.graph.sampler import NeighborSampler
    from netgpt.graph.store import open_partition, read_meta

    sampler = NeighborSampler(open_partition(store, 0, read_meta(store)), fanouts)
    sampler.sample(batches[0], np.random.default_rng(0))
    seeds = edges = 0
    started = time.perf_counter()
    for i, chosen in enumerate(batches[1:]):
        batch = sampler.sample(chosen, np.random.default_rng(i))
        seeds += len(chosen)
        edges += _edges(batch)
    seconds = time.perf_counter() - started
    return {"seeds_per_s": seeds / seconds, "edges_per_s": edges / seconds, "edges_per_seed": edges / seeds}


PAPER_WIDTHS = {"text_dim": 768, "time_dim": 16, "content_dim": 3584}
"""The paper's feature widths (docs/graph.md#node-types: a 768-d sentence encoder, 3,584-d video content
vectors)."""


def _feature_type(file_name: str) -> str | None:
    """The node type whose features a partition file holds (`x_<type>.npy`, `<type>_x.npy`), else None."""
    stem = file_name.removesuffix(".npy")
    if stem.endswith("_row"):
        return None
    if stem.startswith("x_"):
        return stem[2:]
    return stem.removesuffix("_x") if stem.endswith("_x") else None


def _partition_bytes(info: dict, dims: dict[str, int], deduplicated: bool) -> int:
    """A partition's bytes if its features had the widths `dims`; without `deduplicated`, as if it kept one
    feature row per node (no `_row` indices). Structure arrays count as written."""
    files = info["files"]
    total = 0
    for name, spec in files.items():
        node_type = _feature_type(name)
        if node_type is None:
            total += 0 if name.endswith("_row.npy") and not deduplicated else spec["bytes"]
            continue
        index = files.get(name.replace(".npy", "_row.npy"))
        rows = spec["shape"][0] if deduplicated or index is None else index["shape"][0]
        total += rows * dims[node_type] * 4
    return total


def _memory(stores: dict[int, Path]) -> dict[str, dict[str, float]]:
    """Largest partition against the whole graph, as built and at the paper's widths (with and without
    storing per-video values and re-shown comments once)."""
    from netgpt.graph.store import read_meta
    from netgpt.graph.types import feature_dims

    built = {k: read_meta(store)["partitions"] for k, store in stores.items()}
    paper = feature_dims(PAPER_WIDTHS["text_dim"], PAPER_WIDTHS["time_dim"], PAPER_WIDTHS["content_dim"])
    largest = {
        "as_built": {k: max(p["bytes"] for p in parts) for k, parts in built.items()},
        "paper_widths": {
            k: max(_partition_bytes(p, paper, True) for p in parts) for k, parts in built.items()
        },
        "paper_widths_one_row_per_node": {
            k: max(_partition_bytes(p, paper, False) for p in parts) for k, parts in built.items()
        },
    }
    return {
        "largest_partition_vs_whole": {
            name: {f"k{k}": round(b / by_k[1], 3) for k, b in by_k.items()} for name, by_k in largest.items()
        },
        "whole_graph_mb": {name: round(by_k[1] / 1e6, 1) for name, by_k in largest.items()},
        "largest_k4_partition_mb": {name: round(by_k[4] / 1e6, 1) for name, by_k in largest.items()},
    }


def _whole_graph(tables: Path, dims: dict[str, int]):
    """The whole graph as a PyG HeteroData, group relations materialised as edges (what PyG needs)."""
    import torch
    from torch_geometric.data import HeteroData

    from netgpt.graph.topology import PAD, _ranges, read_topology
    from netgpt.graph.types import NODE_TYPES, RELATIONS, VIDEO

    topo = read_topology(tables)
    n = topo.num_samples
    sizes = {t.name: n for t in NODE_TYPES if t.per_sample}
    sizes.update(
        topic=len(topo.topic_names), platform=len(topo.platform_names), comment=int(topo.comment_ptr[-1])
    )
    rng = np.random.default_rng(0)
    data = HeteroData()
    for name, size in sizes.items():
        data[name].x = torch.from_numpy(rng.standard_normal((size, dims[name]), dtype=np.float32))
    owner_of_comment = np.repeat(np.arange(n), np.diff(topo.comment_ptr))
    owner_of_history = np.repeat(np.arange(n), np.diff(topo.history_ptr))
    for relation in RELATIONS:
        if relation.is_group:
            group = topo.groups[relation.name]
            start = group.start
            flat = _ranges(start, start + group.length)
            dst = np.repeat(np.arange(n), group.length)
            position = flat - start[dst]
            keep = ~(group.excl[dst] == position[:, None]).any(axis=1)
            src, dst = group.members[flat][keep], dst[keep]
            assert (group.excl[group.excl != PAD] >= 0).all()
        elif relation.src == VIDEO:
            src, dst = topo.history_idx, owner_of_history
        elif relation.src == "comment":
            src, dst = np.arange(sizes["comment"]), owner_of_comment
        elif relation.src in ("topic", "platform"):
            src, dst = getattr(topo, relation.src), np.arange(n)
        else:
            src, dst = np.arange(n), np.arange(n)
        data[relation.edge_type].edge_index = torch.from_numpy(np.stack([src, dst]).astype(np.int64))
    return data


def _baseline_worker(args: argparse.Namespace) -> None:
    """Subprocess: PyG's NeighborLoader with torch_sparse from the bench-only folder."""
    import torch
    from torch_geometric.loader import NeighborLoader

    spec = json.loads(sys.stdin.read())
    torch.set_num_threads(2)
    data = _whole_graph(Path(spec["tables"]), spec["dims"])
    batches = [np.asarray(b) for b in spec["batches"]]
    index = torch.from_numpy(np.concatenate(batches[1:]))
    loader = NeighborLoader(
        data,
        num_neighbors={e: spec["fanouts"] for e in data.edge_types},
        input_nodes=("video", index),
        batch_size=spec["batch_size"],
        shuffle=False,
    )
    next(
        iter(
            NeighborLoader(
                data,
                num_neighbors={e: spec["fanouts"] for e in data.edge_types},
                input_nodes=("video", torch.from_numpy(batches[0])),
                batch_size=spec["batch_size"],
            )
        )
    )
    seeds = edges = 0
    started = time.perf_counter()
    for batch in loader:
        seeds += int(batch["video"].batch_size)
        edges += _edges(batch)
    seconds = time.perf_counter() - started
    materialised = sum(int(data[e].edge_index.shape[1]) for e in data.edge_types)
    print(
        json.dumps(
            {
                "name": "pyg_neighbor_loader",
                "seeds_per_s": seeds / seconds,
                "edges_per_s": edges / seconds,
                "edges_per_seed": edges / seeds,
                "materialised_edges": materialised,
            }
        )
    )


def _per_seed_baseline(tables: Path, fanouts: list[int], batches: list[np.ndarray]) -> dict[str, float]:
    """What a user would write without a vectorised sampler: per seed, per hop, per relation, in Python."""
    import random

    from netgpt.graph.topology import PAD, read_topology

    topo = read_topology(tables)
    index_of = {int(s): i for i, s in enumerate(topo.sample_id)}
    rand = random.Random(0)

    def in_neighbours(v: int) -> list[list[int]]:
        lists = [topo.history_idx[topo.history_ptr[v] : topo.history_ptr[v + 1]].tolist()]
        for group in topo.groups.values():
            start = group.gptr[group.gid[v]]
            excluded = {int(e) for e in group.excl[v] if e != PAD}
            lists.append([int(group.members[start + p]) for p in range(group.length[v]) if p not in excluded])
        lists.append(list(range(topo.comment_ptr[v], topo.comment_ptr[v + 1])))
        return lists

    seeds = edges = 0
    started = time.perf_counter()
    for chosen in batches[1:]:
        for sid in chosen.tolist():
            frontier, seen = [index_of[sid]], {index_of[sid]}
            for fanout in fanouts:
                nxt = []
                for v in frontier:
                    edges += 13
                    for candidates in in_neighbours(v):
                        picked = candidates if len(candidates) <= fanout else rand.sample(candidates, fanout)
                        edges += len(picked)
                        nxt += [u for u in picked if u not in seen]
                    seen.update(nxt)
                frontier = nxt
            seeds += 1
    seconds = time.perf_counter() - started
    return {"name": "per_seed_python", "seeds_per_s": seeds / seconds, "edges_per_s": edges / seconds}


def _baseline(args, tables: Path, dims: dict[str, int], batches: list[np.ndarray]) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([args.deps, str(ROOT)]))
    probe = subprocess.run([sys.executable, "-c", "import torch_sparse"], env=env, capture_output=True)
    if probe.returncode != 0:
        return _per_seed_baseline(tables, args.fanouts, batches)
    spec = {
        "tables": str(tables),
        "dims": dims,
        "fanouts": args.fanouts,
        "batch_size": args.batch_size,
        "batches": [b.tolist() for b in batches],
    }
    run = subprocess.run(
        [sys.executable, __file__, "--baseline-worker"],
        env=env,
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(run.stdout.strip().splitlines()[-1])


def main() -> None:
    args = _arguments()
    if args.baseline_worker:
        _baseline_worker(args)
        return
    import ray

    from netgpt.graph.build import build_graph
    from netgpt.graph.store import read_meta

    work = Path(args.work)
    tables = _tables(work, args.videos)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    stores, build_seconds = {}, {}
    for k in (1, 2, 4):
        stores[k] = work / f"store-{args.videos}-k{k}"
        started = time.perf_counter()
        build_graph(tables, _config(k, args.fanouts), stores[k])
        build_seconds[k] = round(time.perf_counter() - started, 2)
    ray.shutdown()
    meta = read_meta(stores[1])
    batches = _seed_batches(stores[1], args.batch_size, args.batches)
    ours = _time_ours(stores[1], args.fanouts, batches)
    baseline = _baseline(args, tables, meta["feature_dims"], batches)
    print(
        json.dumps(
            {
                "bench": "loader",
                "samples": meta["counts"]["nodes"]["video"],
                "comments": meta["counts"]["nodes"]["comment"],
                "group_edges_not_materialised": sum(
                    v for k, v in meta["counts"]["edges"].items() if "same" in k
                ),
                "fanouts": args.fanouts,
                "batch_size": args.batch_size,
                "ours": {k: round(v, 1) for k, v in ours.items()},
                "baseline": {k: (round(v, 1) if isinstance(v, float) else v) for k, v in baseline.items()},
                "seeds_per_s_ratio": round(ours["seeds_per_s"] / baseline["seeds_per_s"], 2),
                "memory": _memory(stores),
                "build_seconds": build_seconds,
            }
        )
    )


if __name__ == "__main__":
    main()

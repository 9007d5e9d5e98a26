"""Loader benchmark: a partitioned store whose sampler memory falls as 1/K, its balance, and its throughput.

Prints ONE JSON line, at the benchmark's scale (default 11,800 synthetic videos, about 38k samples: 1/10 of
XS-Video), with the stores built at the demo preset's feature widths (`--widths demo`, the default) or at the
paper's (`--widths paper`: 768-d text, 16-d time, 3,584-d content; four stores of about 0.5 GB each at 1/10
scale); the other widths' figures are recomputed from the stored row counts:

- `seed_balance`: the largest partition's share of the seeds times K (1.0 is perfect), K = 2, 4, 8, on the
  synthetic set and on a copy whose topic labels give one topic 90 % of the videos;
- `memory`: the largest sampler's memory against the whole store (the K=1 store's files), K = 1, 2, 4, 8:
  its own partition's files (features and structure: everything it may map) plus its remote-row cache at
  capacity (`graph.remote_cache_rows` rows of each kind), at the demo's and the paper's widths; and, at the
  widths built, as measured in each actor after its timed batches (resident pages of its mapped files, from
  /proc/self/smaps, plus the cache's arrays), against the whole store and against the K=1 actor;
- `throughput`: seeds per second of one sampler actor through Ray (remote fetches included). Paired: the
  K=1 actor and each K=4 actor on the same batches, alternating, best of 3, cache off (a lower bound), and
  their ratio; per K (1, 2, 4, 8): every actor in turn on batches of its own seeds with the default cache
  (the others idle but serving rows); bytes fetched from other partitions per seed and the cache's hit rate;
- `baseline`: our sampler in one process on the K=1 store against PyG's `NeighborLoader` on the same graph
  and the same timed batches (`--batches`, after one to warm up) when `torch_sparse` imports from `--deps`
  (install it there, never into the project venv; no wheel exists for torch 2.13 on CPU, so build it from
  PyPI's sources against the installed torch, ~12 minutes on 2 cores: `MAX_JOBS=2 pip install
  --no-build-isolation --no-deps --target .bench-deps torch_scatter torch_sparse scipy`; it runs in a
  subprocess on a `HeteroData` with the same features and the group relations materialised as edges), else
  a plain per-seed Python sampler on one batch (`baseline.name` says which).

    python tools/bench/loader.py                    # ~38k samples: 1/10 of XS-Video, demo widths
    python tools/bench/loader.py --widths paper     # the same, stores at the paper's widths
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # results.py, beside this file

from results import emit, keep_stdout_for_results  # noqa: E402


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--videos", type=int, default=11_800, help="synthetic videos (11,800 = ~38k samples, 1/10 scale)"
    )
    parser.add_argument("--work", default=str(ROOT / "runs/bench"), help="folder for tables and stores")
    parser.add_argument("--deps", default=str(ROOT / ".bench-deps"), help="folder holding torch_sparse")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--fanouts", type=int, nargs="+", default=[50, 51])
    parser.add_argument("--batches", type=int, default=4, help="timed batches per sampler actor")
    parser.add_argument("--cache-rows", type=int, help="graph.remote_cache_rows (default: the config's)")
    parser.add_argument(
        "--widths", choices=("demo", "paper"), default="demo", help="feature widths the stores are built at"
    )
    parser.add_argument("--baseline-worker", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args()


def _config(num_partitions: int, fanouts: list[int], cache_rows: int, widths: str):
    """The demo preset's graph section cut into `num_partitions`, at its own feature widths or the paper's."""
    from netgpt.config import load_config

    demo = load_config("demo").graph
    if widths == "paper":
        demo = replace(
            demo,
            text=replace(demo.text, dim=PAPER_WIDTHS["text_dim"]),
            time_dim=PAPER_WIDTHS["time_dim"],
            content_dim=PAPER_WIDTHS["content_dim"],
        )
    return replace(
        demo,
        num_partitions=num_partitions,
        fanouts=fanouts,
        remote_cache_rows=cache_rows,
        sampler_num_cpus=0.25,
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


def _one_topic_tables(work: Path, tables: Path, share: float) -> Path:
    """A copy of `tables` whose topic labels give one topic `share` of the videos (all states of a video
    together), the rest as they were; the generator itself is left as it is."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from netgpt.data.schema import COMMENTS_FILE, SAMPLES_FILE

    out = work / f"{tables.name}-topic{round(share * 100)}"
    if not (out / SAMPLES_FILE).is_file():
        out.mkdir(parents=True, exist_ok=True)
        samples = pq.read_table(tables / SAMPLES_FILE)
        videos = sorted(set(samples["video_id"].to_pylist()))
        chosen = np.random.default_rng(0).random(len(videos)) < share
        big = {v for v, c in zip(videos, chosen, strict=True) if c}
        first = samples["topic"][0].as_py()
        topic = [
            first if v in big else t
            for v, t in zip(samples["video_id"].to_pylist(), samples["topic"].to_pylist(), strict=True)
        ]
        samples = samples.set_column(
            samples.schema.get_field_index("topic"), "topic", pa.array(topic, pa.string())
        )
        pq.write_table(samples, out / SAMPLES_FILE)
        (out / COMMENTS_FILE).write_bytes((tables / COMMENTS_FILE).read_bytes())
    return out


def _seed_balance(tables: Path, partitioner: str) -> dict[str, float]:
    """Largest partition's share of the seeds times K, K = 2, 4, 8 (1.0: every partition the same)."""
    from netgpt.graph.partition import assign_partitions
    from netgpt.graph.topology import read_topology

    topology = read_topology(tables)
    seeds = topology.split != "final"
    shares = {}
    for k in (2, 4, 8):
        part = assign_partitions(topology, k, partitioner)
        shares[f"k{k}"] = round(float(np.bincount(part[seeds], minlength=k).max() / seeds.sum() * k), 3)
    shares["largest_topic_share"] = round(float(np.bincount(topology.topic[seeds]).max() / seeds.sum()), 3)
    return shares


def _seed_batches(store: Path, batch_size: int, count: int) -> list[np.ndarray]:
    from netgpt.graph.plan import EpochPlan

    plan = EpochPlan(str(store), "train", batch_size, 1, True, 0)
    return [seeds for _, seeds in plan.epoch(0)[: count + 1]]


def _partition_batches(store: Path, batch_size: int, count: int) -> dict[int, list[np.ndarray]]:
    """Per partition: `count + 1` batches of its own training seeds (the first one warms up)."""
    from netgpt.graph.plan import EpochPlan

    plan = EpochPlan(str(store), "train", batch_size, 1, True, 0)
    out: dict[int, list[np.ndarray]] = {}
    for partition, seeds in plan.epoch(0):
        if len(out.setdefault(partition, [])) <= count:
            out[partition].append(seeds)
    return out


def _paired_throughput(stores: dict[int, Path], cfgs: dict, batches: dict[int, list[np.ndarray]]) -> dict:
    """Seeds per second of one sampler actor, K=1 against K=4, on the same batches (each K=4 partition's
    batches, which the K=1 actor samples too), alternating batch by batch so both see the same load from the
    rest of the machine; each batch's time is its best of `ROUNDS`. The cache is off (every halo row is
    fetched from its owner), so the ratio is a lower bound."""
    import ray

    from netgpt.graph.loader import GraphStreams

    streams = {k: GraphStreams(replace(cfgs[k], remote_cache_rows=0), str(stores[k])) for k in (1, 4)}
    try:
        for group in streams.values():
            ray.get([replicas[0].batches_sampled.remote() for replicas in group.actors])
        best: dict[int, dict[tuple[int, int], float]] = {1: {}, 4: {}}
        for _ in range(ROUNDS):
            for partition, chosen in sorted(batches.items()):
                for j, seeds in enumerate(chosen):
                    for k, actor in ((1, streams[1].actors[0][0]), (4, streams[4].actors[partition][0])):
                        started = time.perf_counter()
                        ray.get(actor.sample.remote(seeds, (0, 0, j)))
                        seconds = time.perf_counter() - started
                        best[k][partition, j] = min(best[k].get((partition, j), seconds), seconds)
    finally:
        for group in streams.values():
            group.shutdown()
    seeds = sum(len(s) for chosen in batches.values() for s in chosen)
    rate = {k: seeds / sum(times.values()) for k, times in best.items()}
    return {"k1": round(rate[1], 1), "k4": round(rate[4], 1), "k4_vs_k1": round(rate[4] / rate[1], 2)}


ROUNDS = 3
"""Each paired batch is timed this many times, its best time kept (the machine may be shared)."""


def _actors(store: Path, cfg, batches: dict[int, list[np.ndarray]]) -> dict:
    """Every sampler actor of `store` in turn samples its batches (the others idle, serving rows): seeds per
    second per actor, what was fetched remotely, and each actor's memory afterwards."""
    import ray

    from netgpt.graph.loader import GraphStreams

    streams = GraphStreams(cfg, str(store))
    try:
        ray.get([replicas[0].batches_sampled.remote() for replicas in streams.actors])  # all started
        rates, seeds_total = [], 0
        for partition, chosen in sorted(batches.items()):
            actor = streams.actors[partition][0]
            ray.get(actor.sample.remote(chosen[0], (0, 0, 0)))
            started = time.perf_counter()
            ray.get([actor.sample.remote(seeds, (0, 0, j + 1)) for j, seeds in enumerate(chosen[1:])])
            seeds = sum(len(s) for s in chosen[1:])
            rates.append(seeds / (time.perf_counter() - started))
            seeds_total += sum(len(s) for s in chosen)
        stats = ray.get([replicas[0].stats.remote() for replicas in streams.actors])
        memory = ray.get([replicas[0].memory.remote() for replicas in streams.actors])
    finally:
        streams.shutdown()
    lookups = sum(s["cache_lookups"] for s in stats)
    return {
        "seeds_per_s_per_actor": float(np.mean(rates)),
        "slowest_actor_seeds_per_s": float(np.min(rates)),
        "remote_bytes_per_seed": sum(s["remote_bytes"] for s in stats) / seeds_total,
        "remote_requests": sum(s["requests"] for s in stats),
        "cache_hit_rate": sum(s["cache_hits"] for s in stats) / lookups if lookups else None,
        "largest_resident_bytes": max(m["resident_bytes"] + m["cache_bytes"] for m in memory),
    }


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


def _partition_bytes(info: dict, dims: dict[str, int]) -> int:
    """A partition's bytes if its features had the widths `dims` (structure arrays count as written)."""
    total = 0
    for name, spec in info["files"].items():
        node_type = _feature_type(name)
        total += spec["bytes"] if node_type is None else spec["shape"][0] * dims[node_type] * 4
    return total


def _memory(
    stores: dict[int, Path], cache_rows: int, measured: dict[int, int], widths: str
) -> dict[str, dict]:
    """The largest sampler (own partition's files + cache at capacity) against the whole store, at the
    demo's and the paper's widths, and as measured in the actors at the widths built."""
    from netgpt.graph.features import text_dim
    from netgpt.graph.rows import cache_capacity_bytes
    from netgpt.graph.store import read_meta
    from netgpt.graph.types import feature_dims

    built = {k: read_meta(store) for k, store in stores.items()}
    out: dict[str, dict] = {}
    for name in ("demo", "paper"):
        cfg = _config(1, [1], cache_rows, name)
        dims = feature_dims(text_dim(cfg.text), cfg.time_dim, cfg.content_dim)
        whole = sum(_partition_bytes(p, dims) for p in built[1]["partitions"])
        cache = cache_capacity_bytes(cache_rows, dims)
        largest = {
            k: max(_partition_bytes(p, dims) for p in meta["partitions"]) + (cache if k > 1 else 0)
            for k, meta in built.items()
        }
        out[f"{name}_widths"] = {
            "largest_sampler_vs_whole": {f"k{k}": round(b / whole, 3) for k, b in largest.items()},
            "whole_store_mb": round(whole / 1e6, 1),
            "cache_at_capacity_mb": round(cache / 1e6, 1),
        }
    whole = sum(p["bytes"] for p in built[1]["partitions"])
    out[f"{widths}_widths"] |= {
        "measured_resident_vs_whole": {f"k{k}": round(b / whole, 3) for k, b in measured.items()},
        "measured_resident_vs_k1": {f"k{k}": round(b / measured[1], 3) for k, b in measured.items()},
        "measured_resident_mb": {f"k{k}": round(b / 1e6, 1) for k, b in measured.items()},
    }
    return out


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
        """Video in-neighbours of `v`, per video-to-video relation."""
        lists = [topo.history_idx[topo.history_ptr[v] : topo.history_ptr[v + 1]].tolist()]
        for group in topo.groups.values():
            start = group.gptr[group.gid[v]]
            excluded = {int(e) for e in group.excl[v] if e != PAD}
            lists.append([int(group.members[start + p]) for p in range(group.length[v]) if p not in excluded])
        return lists

    seeds = edges = 0
    started = time.perf_counter()
    for chosen in batches[1:]:
        for sid in chosen.tolist():
            frontier, seen = [index_of[sid]], {index_of[sid]}
            for fanout in fanouts:
                nxt = []
                for v in frontier:
                    comments = list(range(topo.comment_ptr[v], topo.comment_ptr[v + 1]))
                    edges += 13 + min(len(comments), fanout)
                    if len(comments) > fanout:
                        rand.sample(comments, fanout)
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
    if probe.returncode != 0:  # one timed batch: a Python loop per seed is slow
        return _per_seed_baseline(tables, args.fanouts, batches[:2])
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
        _baseline_worker(args)  # reports to its parent on stdout
        return
    keep_stdout_for_results()  # `prepare` prints its summary table to stdout
    import ray

    from netgpt.config import GraphConfig
    from netgpt.graph.build import build_graph
    from netgpt.graph.store import read_meta

    args.cache_rows = GraphConfig().remote_cache_rows if args.cache_rows is None else args.cache_rows
    work = Path(args.work)
    tables = _tables(work, args.videos)
    balance = {
        "synthetic": _seed_balance(tables, "topic"),
        "one_topic_90pct": _seed_balance(_one_topic_tables(work, tables, 0.9), "topic"),
    }
    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    stores, build_seconds, actors = {}, {}, {}
    try:
        for k in (1, 2, 4, 8):
            cfg = _config(k, args.fanouts, args.cache_rows, args.widths)
            stores[k] = work / f"store-{args.videos}-{args.widths}-k{k}"
            started = time.perf_counter()
            build_graph(tables, cfg, stores[k])
            build_seconds[k] = round(time.perf_counter() - started, 2)
            batches = _partition_batches(stores[k], args.batch_size, args.batches)
            actors[k] = _actors(stores[k], cfg, batches)
        cfgs = {k: _config(k, args.fanouts, args.cache_rows, args.widths) for k in (1, 4)}
        paired = _paired_throughput(stores, cfgs, _partition_batches(stores[4], args.batch_size, 1))
    finally:
        ray.shutdown()
    meta = read_meta(stores[1])
    batches = _seed_batches(stores[1], args.batch_size, args.batches)
    ours = _time_ours(stores[1], args.fanouts, batches)
    baseline = _baseline(args, tables, meta["feature_dims"], batches)  # PyG times the batches ours did
    per_actor = {f"k{k}": round(a["seeds_per_s_per_actor"], 1) for k, a in actors.items()}
    emit(
        {
            "bench": "loader",
            "samples": meta["counts"]["nodes"]["video"],
            "comments": meta["counts"]["nodes"]["comment"],
            "fanouts": args.fanouts,
            "batch_size": args.batch_size,
            "remote_cache_rows": args.cache_rows,
            "widths": args.widths,
            "seed_balance": balance,
            "memory": _memory(
                stores,
                args.cache_rows,
                {k: a["largest_resident_bytes"] for k, a in actors.items()},
                args.widths,
            ),
            "throughput": {
                "paired_same_batches_no_cache": paired,
                "seeds_per_s_per_actor": per_actor,
                "slowest_actor_seeds_per_s": {
                    f"k{k}": round(a["slowest_actor_seeds_per_s"], 1) for k, a in actors.items()
                },
                "own_seeds_k4_vs_k1": round(
                    actors[4]["seeds_per_s_per_actor"] / actors[1]["seeds_per_s_per_actor"], 2
                ),
                "remote_bytes_per_seed": {
                    f"k{k}": round(a["remote_bytes_per_seed"]) for k, a in actors.items()
                },
                "cache_hit_rate": {
                    f"k{k}": (round(a["cache_hit_rate"], 3) if a["cache_hit_rate"] is not None else None)
                    for k, a in actors.items()
                },
            },
            "ours_in_process_k1": {k: round(v, 1) for k, v in ours.items()},
            "baseline": {k: (round(v, 1) if isinstance(v, float) else v) for k, v in baseline.items()},
            "seeds_per_s_ratio_vs_baseline": round(ours["seeds_per_s"] / baseline["seeds_per_s"], 2),
            "build_seconds": build_seconds,
        }
    )


if __name__ == "__main__":
    main()

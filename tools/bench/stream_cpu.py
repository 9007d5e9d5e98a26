"""What a batch of the training stream costs the machine in CPU, against sampling it in one process.

On 2 cores the Train workers share the machine with the data path: the sampler actors, the streams' read
tasks, Ray's raylet and the worker's own side of the stream: what a batch costs there is CPU the two
workers do not get (`docs/step-time.md`). For each micro-batch size (`--seeds`; the demo's workers use 16
in graph pretraining and 2 in the LLM stages), this bench streams the demo's train split to this process as
a Train worker reads it (`iter_graph_batches`: every batch unpickled and built into a `HeteroData`), after
one stream that starts Ray Data's actors and the read tasks' processes, and reads every process's CPU
seconds (psutil) before and after each stream:

- `stream_cpu_ms_per_batch`: the machine's CPU for each further batch of the stream: the CPU of a stream of
  `--batches` batches less that of one of a quarter of them, per batch between them, so that what a stream
  costs once (its start, Ray starting read-task processes) drops out; by role in `by_role_ms_per_batch`
  (`tools/bench/process_cpu.py`'s roles; the consumer is `driver`);
- `startup_cpu_s`: the rest of the short stream's CPU, what a stream costs before its batches;
- the baseline, `in_process_cpu_ms_per_batch`: the same batches' work without Ray, in this process: sampled
  by a `NeighborSampler` on the store (`sample_arrays`), pickled and unpickled, built into a `HeteroData`;
- `ray_overhead_ms_per_batch`: the difference, what streaming through Ray adds to each batch.

Each figure is the median of `--repeats` streams (the same sizes, another shuffle each).

    python tools/bench/stream_cpu.py                          # ~2 min on 2 cores
    python tools/bench/stream_cpu.py graph.stream_block_batches=32
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # this folder

from results import emit, keep_stdout_for_results  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[16, 2], help="seeds per batch (default 16 2)"
    )
    parser.add_argument("--batches", type=int, default=2000, help="batches of the long stream (default 2000)")
    parser.add_argument("--repeats", type=int, default=3, help="streams of each length (default 3)")
    parser.add_argument("--videos", type=int, default=300, help="synthetic videos (the demo's 300)")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. graph.stream_block_batches=32")
    args = parser.parse_args()
    if args.batches < 8 or args.repeats < 1:
        parser.error("--batches must be at least 8 and --repeats at least 1")
    keep_stdout_for_results()
    import ray
    from in_process import prepare_folder  # this folder

    from netgpt.graph.loader import GraphStreams

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config = prepare_folder(folder, args.videos, args.overrides)
        ray.shutdown()  # the import's own local Ray; the bench's has the demo's 2 CPUs
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        streams = GraphStreams(config.graph, config.graph.store_dir)
        try:
            for seeds in args.seeds:
                emit(_measure(streams, config, seeds, args))
        finally:
            streams.shutdown()
            ray.shutdown()


def _measure(streams, config, seeds: int, args: argparse.Namespace) -> dict:
    short, long = max(1, args.batches // 4), args.batches
    # a stream first in which Ray Data's actors and the read tasks' processes start
    _stream_cpu(streams, seeds, short, seed=args.repeats)
    short_runs, long_runs = [], []
    for repeat in range(args.repeats):
        short_runs.append(_stream_cpu(streams, seeds, short, seed=repeat))
        long_runs.append(_stream_cpu(streams, seeds, long, seed=repeat))
    figures = per_batch(short_runs, long_runs)
    in_process_ms = 1000 * _in_process_cpu(config, seeds, min(args.batches, 400))
    return {
        "bench": "stream_cpu",
        "seeds": seeds,
        "block_batches": config.graph.stream_block_batches,
        "batches": [short_runs[0]["batches"], long_runs[0]["batches"]],  # whole epochs: at least those asked
        "repeats": args.repeats,
        **figures,
        "in_process_cpu_ms_per_batch": round(in_process_ms, 3),
        "ray_overhead_ms_per_batch": round(figures["stream_cpu_ms_per_batch"] - in_process_ms, 3),
    }


def per_batch(short_runs: list[dict[str, float]], long_runs: list[dict[str, float]]) -> dict:
    """The CPU of each further batch, from pairs of a short and a long stream (CPU seconds by role and
    `batches`, as `_stream_cpu` gives them): per pair, the long stream's CPU less the short one's, over the
    batches between them; the median over the pairs, in total and by role, and each pair's total; and
    `startup_cpu_s`, what a short stream cost beyond its batches at that rate (median)."""
    marginal, startup = [], []
    for short, long in zip(short_runs, long_runs, strict=True):
        roles = (set(short) | set(long)) - {"batches"}
        between = long["batches"] - short["batches"]
        if between <= 0:
            raise ValueError(
                f"a long stream of {long['batches']} batches after a short one of {short['batches']}"
            )
        rates = {role: (long.get(role, 0.0) - short.get(role, 0.0)) / between for role in roles}
        marginal.append(rates)
        startup.append(sum(short.get(role, 0.0) for role in roles) - sum(rates.values()) * short["batches"])
    totals = [sum(rates.values()) for rates in marginal]
    roles = sorted({role for rates in marginal for role in rates})
    return {
        "stream_cpu_ms_per_batch": round(1000 * statistics.median(totals), 3),
        "stream_cpu_ms_per_batch_each": [round(1000 * total, 3) for total in totals],
        "by_role_ms_per_batch": {
            role: round(1000 * statistics.median(rates.get(role, 0.0) for rates in marginal), 3)
            for role in roles
        },
        "startup_cpu_s": round(statistics.median(startup), 2),
    }


def _stream_cpu(streams, seeds: int, count: int, seed: int) -> dict[str, float]:
    """CPU seconds by role of streaming `count` batches of `seeds` seeds (whole epochs: at least `count`)
    to this process as a Train worker reads them; `batches`: how many there were."""
    from process_cpu import ProcessCpu  # this folder

    from netgpt.graph.loader import iter_graph_batches
    from netgpt.graph.plan import EpochPlan

    per_epoch = EpochPlan(streams.store_dir, "train", seeds, 1, True, seed).batches_per_epoch()
    epochs = -(-count // per_epoch)
    time.sleep(1.0)  # the previous stream's processes settle
    with ProcessCpu() as cpu:  # snapshots on entry, on exit and between (for the processes' titles)
        started = time.time()
        dataset = streams.dataset("train", seeds, epochs=epochs, shuffle=True, seed=seed)
        batches = sum(1 for _ in iter_graph_batches(dataset, 0, 1))
        ended = time.time()
    cores = cpu.cores(started, ended)
    window = cores.pop("window_s")
    for key in ("total", "idle"):
        cores.pop(key)
    return {**{role: used * window for role, used in cores.items()}, "batches": batches}


def _in_process_cpu(config, seeds: int, count: int) -> float:
    """CPU seconds per batch of sampling `count` batches of `seeds` seeds on the store's first partition in
    this process (other partitions' rows read from the store), pickling, unpickling and building each."""
    import pickle

    import numpy as np

    from netgpt.graph.plan import split_seeds
    from netgpt.graph.rows import StoreRows
    from netgpt.graph.sampler import NeighborSampler
    from netgpt.graph.store import open_partition, read_meta

    store = config.graph.store_dir
    meta = read_meta(store)
    sampler = NeighborSampler(
        open_partition(store, 0, meta),
        config.graph.fanouts,
        dict(config.graph.relation_fanouts),
        meta["num_hops"],
        rows=StoreRows(store),
        cache_rows=config.graph.remote_cache_rows,
    )
    seed_ids = split_seeds(str(store), "train")[0]
    rng = np.random.default_rng(0)
    chosen = [rng.choice(seed_ids, seeds, replace=False) for _ in range(count + 20)]
    for ids in chosen[:20]:  # warm: the cache and the pages of the partition
        pickle.loads(pickle.dumps(sampler.sample_arrays(ids, rng))).to_hetero_data()
    started = time.thread_time()  # this thread's: Ray's threads in this process tick beside it
    for j, ids in enumerate(chosen[20:]):
        batch = sampler.sample_arrays(ids, np.random.default_rng([0, j]))
        pickle.loads(pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)).to_hetero_data()
    return (time.thread_time() - started) / count


if __name__ == "__main__":
    main()

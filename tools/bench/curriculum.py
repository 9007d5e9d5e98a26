"""Benchmark: the demo's curriculum in one process, the graph encoder alone against NetGPT on the test split.

Prints ONE JSON line: ACC and MAE on the test split of the graph encoder alone (stage 1's graph head, scored
when stage 1 ends) and of NetGPT after the last stage (its regression head and its generated answer).

    python tools/bench/curriculum.py [--seed 0] [--videos 200] [KEY=VALUE ...]   # about 2 minutes on 2 cores
    python tools/bench/curriculum.py train.stages.0.epochs=6 train.stages.0.micro_batch_size=8

No Ray, no DeepSpeed: the demo preset's model, sampler, prompts and stages (`freeze_for_stage`, one AdamW
group per part, `lr_factor`'s schedule, gradient clipping) and its rating (`rate_batch`, answers constrained
to the levels), each step over the global batch the demo's 2 workers share, on one graph partition and one
thread. `tests/test_demo.py` runs it at the defaults and checks the demo's claim; the README quotes it with
stage 1 trained longer (the second command). How 2 ZeRO-3 workers match one process is tested apart
(tests/integration, tests/train).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # results.py, beside this file

from results import emit, keep_stdout_for_results  # noqa: E402

DEMO_WORKERS = 2
"""The demo's workers: a step here takes the global batch they share."""


def run_curriculum(folder: Path, seed: int, videos: int, overrides: list[str]) -> dict:
    """Data, store and the curriculum in `folder`; the scores of the graph encoder alone and of NetGPT."""
    import numpy as np
    import torch

    from netgpt.config import load_config
    from netgpt.data.prepare import prepare
    from netgpt.data.synthetic import write_synthetic
    from netgpt.graph.build import build_graph
    from netgpt.graph.plan import EpochPlan
    from netgpt.graph.sampler import NeighborSampler
    from netgpt.graph.store import open_partition, read_meta
    from netgpt.model.llm import load_saved_tokenizer
    from netgpt.model.netgpt import NetGPT
    from netgpt.train.run import prepare_tokenizer
    from netgpt.train.stages import freeze_for_stage, lr_factor, parameter_groups, set_stage_hparams

    config = load_config(
        "demo",
        [
            f"data.synth_videos={videos}",
            f"data.tables_dir={folder / 'tables'}",
            f"graph.store_dir={folder / 'graph'}",
            "graph.num_partitions=1",
            f"train.seed={seed}",
            *overrides,
        ],
    )
    raw = write_synthetic(folder / "raw.json", videos=videos, seed=seed)
    prepare(raw, folder / "tables", config.data, progress=False)
    build_graph(folder / "tables", config.graph, folder / "graph", config=config)
    store = str(folder / "graph")
    meta = read_meta(store)
    sampler = NeighborSampler(
        open_partition(store, 0, meta), config.graph.fanouts, config.graph.relation_fanouts, meta["num_hops"]
    )

    def batches(split: str, size: int, epoch: int, shuffle: bool):
        plan = EpochPlan(store, split, size, 1, shuffle, seed)
        for j, (_, seeds) in enumerate(plan.epoch(epoch)):
            yield sampler.sample(seeds, np.random.default_rng([seed, epoch, j]))

    torch.manual_seed(seed)
    tokenizer = load_saved_tokenizer(prepare_tokenizer(config, folder / "run"))
    model = NetGPT.build(config.model, meta["feature_dims"], tokenizer)
    optimizer = torch.optim.AdamW(parameter_groups(model), lr=0.0)
    test = list(batches("test", 64, 0, shuffle=False))
    scores = {}
    for stage in config.train.stages:
        active = freeze_for_stage(model, stage)
        optimizer.state.clear()  # fresh moments per stage, as the trainer's stages start
        size = stage.micro_batch_size * DEMO_WORKERS
        total = stage.epochs * EpochPlan(store, "train", size, 1, True, seed).batches_per_epoch()
        step = 0
        builder = model.prompt_builder(stage.graph_tokens)
        model.train()
        for epoch in range(stage.epochs):
            for batch in batches("train", size, epoch, shuffle=True):
                set_stage_hparams(
                    optimizer, stage, active, lr_factor(step, total, stage.warmup_steps, stage.min_lr_ratio)
                )
                prompts = builder.encode(batch.seed_fields, True) if stage.uses_llm else None
                out = model(batch, prompts, dict(stage.losses), stage.graph_tokens)
                optimizer.zero_grad()
                out.loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.train.grad_clip)
                optimizer.step()
                step += 1
        if not scores:
            scores["graph_encoder_alone"] = _scores(test, model, ["graph"])["graph"]
    netgpt = _scores(test, model, ["regression", "answer"])
    return {**scores, **{f"netgpt_{name}": metrics for name, metrics in netgpt.items()}}


def _scores(batches: list, model, predictions: list[str]) -> dict:
    from netgpt.evaluate.rate import rate_batch
    from netgpt.evaluate.scoring import as_rows, score_rows

    model.eval()
    builder = model.prompt_builder()
    rated = (rate_batch(model, batch, builder, "cpu", predictions) for batch in batches)
    return score_rows([row for columns in rated for row in as_rows(columns)], predictions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="seed of the data set and of training")
    parser.add_argument("--videos", type=int, default=200, help="synthetic videos")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. train.stages.0.epochs=6")
    args = parser.parse_args()
    keep_stdout_for_results()  # `prepare` prints its summary table to stdout
    import torch

    torch.set_num_threads(1)  # as each of the demo's workers has one core
    with tempfile.TemporaryDirectory(prefix="netgpt-curriculum-") as tmp:
        scores = run_curriculum(Path(tmp), args.seed, args.videos, args.overrides)
    line = {"bench": "curriculum", "seed": args.seed, "videos": args.videos, "overrides": args.overrides}
    for name, metrics in scores.items():
        line[name] = {"acc": round(metrics.acc, 3), "mae": round(metrics.mae, 3), "count": metrics.count}
    emit(line)


if __name__ == "__main__":
    main()

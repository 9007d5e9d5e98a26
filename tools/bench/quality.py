"""Quality benchmark: the demo's four models trained on one synthetic data set, scored on its test split.

Prints ONE JSON line: for each row of `netgpt evaluate`'s table (the majority level; the graph encoder
alone; the LLM alone, without graph tokens; NetGPT's graph head, generated answer and regression head) its
ACC, MAE, MSE, macro-F1, within-one, unparsable count and sample count; the accuracies an oracle reaches on
the same data (`netgpt.data.synthetic.oracle`: knowing every latent term but the noise, and also the likes
seen so far: about the most any model can reach); the data size, the seed, the wall time and each phase's
seconds; each stage's epochs and step cap (`max_steps` 0: none). The majority level and the graph encoder
alone are the baselines, measured in the same run.

    python tools/bench/quality.py                        # 3,000 videos, seed 0, demo models, both text kinds
    python tools/bench/quality.py --llm small            # SmolLM2-135M through the three stages
    python tools/bench/quality.py --llm small_zh --llm-steps 20 --text-kinds hashed
    python tools/bench/quality.py --quick                # the smoke setting the test runs (tests/tools)

It runs `netgpt demo`'s own pipeline (`netgpt.demo`: generate, import, build the store, train NetGPT and the
LLM alone, convert, `evaluate_models`) with the preset `--llm` names (`demo`: the tiny random LLM with a BPE
trained on the data; `small`, `small_zh`: the pretrained presets) and the data set of `--videos` and
`--seed`. The graph encoder's text features are compared: one store per kind of `--text-kinds` (`hashed`
character n-grams, `use` the multilingual Universal Sentence Encoder), with NetGPT trained on each; the rows
carry their kind (`text`). The LLM alone reads no graph, so it trains once, on the first kind's store, and
its row's `text` is null. Everything is written under `--work` (kept) or a temporary folder (deleted).
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # results.py, also when a test loads this file

from results import emit, keep_stdout_for_results  # noqa: E402

LLM_PRESETS = ("demo", "small", "small_zh")
TEXT_KINDS = ("hashed", "use")
FIGURES = ("acc", "mae", "mse", "macro_f1", "within_one", "unparsable", "count")
DEFAULT_LLM_STEPS = 500
"""The demo preset's LLM stages are epochs at 2 seeds a worker, sized for its 300 videos: at 3,000 they would
be about 7,000 steps a run. 500 a stage is about what the demo's own 408 and 306 are."""
QUICK_VIDEOS = 40
QUICK_STEPS = 2
QUICK_OVERRIDES = (
    "train.num_workers=1",
    "model.hidden_size=16",
    "model.tiny_llm.hidden_size=32",
    "model.tiny_llm.num_layers=1",
    "model.tiny_llm.num_heads=2",
    "model.tiny_llm.intermediate_size=64",
    "model.tiny_llm.vocab_size=400",
)
"""`--quick`, the smoke test's setting: a data set this small, every stage cut to this many steps, one
worker and tiny shapes (the pipeline is what it checks, not the figures)."""


def _arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--videos", type=int, default=None, help="synthetic videos (default 3000; --quick 40)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the data set and of training")
    parser.add_argument("--llm", choices=LLM_PRESETS, default="demo", help="the preset whose LLM trains")
    parser.add_argument(
        "--text-kinds",
        default=",".join(TEXT_KINDS),
        help="graph.text.kind of each store, comma-separated (default: hashed,use)",
    )
    parser.add_argument(
        "--llm-steps",
        type=int,
        default=DEFAULT_LLM_STEPS,
        help=f"cap each LLM stage at this many steps (default {DEFAULT_LLM_STEPS}; 0: the preset's epochs)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke setting: {QUICK_VIDEOS} videos, {QUICK_STEPS} steps a stage",
    )
    parser.add_argument("--work", default=None, help="folder for the outputs, kept (default: a temp folder)")
    parser.add_argument("overrides", nargs="*", help="config overrides key=value, applied last")
    args = parser.parse_args(argv)
    kinds = [kind.strip() for kind in args.text_kinds.split(",") if kind.strip()]
    if not kinds or any(kind not in TEXT_KINDS for kind in kinds) or len(set(kinds)) != len(kinds):
        parser.error(
            f"--text-kinds: expected distinct kinds among {list(TEXT_KINDS)}, got {args.text_kinds!r}"
        )
    args.text_kinds = kinds
    if args.videos is None:
        args.videos = QUICK_VIDEOS if args.quick else 3000
    if args.videos < 1:
        parser.error(f"--videos: expected an integer >= 1, got {args.videos}")
    if args.llm_steps < 0:
        parser.error(f"--llm-steps: expected an integer >= 0, got {args.llm_steps}")
    if args.work is not None and Path(args.work).exists() and any(Path(args.work).iterdir()):
        parser.error(f"--work {args.work}: expected an empty or new folder (a run there would resume)")
    return args


def bench_config(args: argparse.Namespace, work: Path, kind: str):
    """The `--llm` preset on the benchmark's data, with the store of text kind `kind`, under `work`."""
    from netgpt.config import load_config

    config = load_config(
        args.llm,
        [
            f"data.tables_dir={work / 'tables'}",
            f"data.synth_videos={args.videos}",
            f"data.synth_seed={args.seed}",
            f"graph.store_dir={work / f'graph_{kind}'}",
            f"graph.text.kind={kind}",
            f"train.storage_path={work / 'ray'}",
            f"train.run_name=netgpt_{kind}",
            f"train.seed={args.seed}",
            *(QUICK_OVERRIDES if args.quick else ()),
            *args.overrides,
        ],
    )
    for stage in config.train.stages:
        if args.quick:
            stage.epochs, stage.max_steps, stage.warmup_steps = 1, QUICK_STEPS, 0
        elif args.llm_steps and stage.uses_llm:
            stage.max_steps = min(stage.max_steps or args.llm_steps, args.llm_steps)
    return config


def _finite(value: float | int) -> float | int | None:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _rows(report, text_of: dict[str, str | None]) -> list[dict]:
    """The report's rows as JSON objects; `text_of` maps a model's label to the text kind of its store."""
    return [
        {
            "model": model,
            "prediction": prediction,
            "text": text_of.get(model),
            **{name: _finite(getattr(metrics, name)) for name in FIGURES},
        }
        for model, prediction, metrics in report.rows()
    ]


def run(args: argparse.Namespace, work: Path) -> dict:
    import ray

    from netgpt.data.synthetic import oracle
    from netgpt.demo import train_demo_models, write_demo_tables
    from netgpt.evaluate.run import evaluate_models
    from netgpt.graph.build import build_graph
    from netgpt.train.run import local_ray_resources

    started = time.perf_counter()
    phases: dict[str, float] = {}

    def lap(name: str, since: float) -> float:
        now = time.perf_counter()
        phases[name] = round(now - since, 1)
        return now

    configs = {kind: bench_config(args, work, kind) for kind in args.text_kinds}
    first = configs[args.text_kinds[0]]
    if not ray.is_initialized():
        ray.init(**local_ray_resources(first))
    clock = time.perf_counter()
    tables_dir = write_demo_tables(first)
    clock = lap("data", clock)
    rows: list[dict] = []
    for index, (kind, config) in enumerate(configs.items()):
        build_graph(tables_dir, config.graph, config.graph.store_dir, config=config)
        clock = lap(f"store_{kind}", clock)
        models = train_demo_models(config, llm_alone=index == 0)
        clock = lap(f"train_{kind}", clock)
        report = evaluate_models(config, list(models.values()), labels=list(models))
        clock = lap(f"evaluate_{kind}", clock)
        text_of = {label: None if label == "LLM alone" else kind for label in models}
        kind_rows = _rows(report, text_of)
        rows += kind_rows if index == 0 else [row for row in kind_rows if row["model"] != "majority level"]
    ray.shutdown()
    admitted = oracle(args.videos, args.seed)
    lap("oracle", clock)
    return {
        "bench": "quality",
        "llm": args.llm,
        "llm_path": first.model.llm_path or "tiny LLM built from config",
        "videos": args.videos,
        "seed": args.seed,
        "quick": args.quick,
        "text_kinds": args.text_kinds,
        "workers": first.train.num_workers,
        "stages": {s.name: {"epochs": s.epochs, "max_steps": s.max_steps} for s in first.train.stages},
        "split": first.evaluate.split,
        "rows": rows,
        "oracle": {
            "latent": round(admitted.latent, 4),
            "latent_and_likes": round(admitted.latent_and_likes, 4),
            "samples": admitted.samples,
            "levels": list(admitted.levels),
        },
        "wall_s": round(time.perf_counter() - started, 1),
        "phases_s": phases,
    }


def main(argv: list[str] | None = None) -> None:
    args = _arguments(argv)
    keep_stdout_for_results()
    if args.work is not None:
        work = Path(args.work).resolve()
        work.mkdir(parents=True, exist_ok=True)
        line = run(args, work)
    else:
        with tempfile.TemporaryDirectory(prefix="netgpt-quality-") as folder:
            line = run(args, Path(folder))
    emit(line)


if __name__ == "__main__":
    main()

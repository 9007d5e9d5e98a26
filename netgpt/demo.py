"""`netgpt demo`: the embedded default, end to end on one machine, CPU, no network.

synthetic XS-Video-like data → validated tables → partitioned graph store → the three stages on 2 Ray Train
workers (DeepSpeed ZeRO-3, tiny LLM from config, tokenizer trained on the data) → the LLM-alone baseline (the
same LLM stages without graph tokens) → the test split's table: the majority level, the graph encoder alone,
the LLM alone and NetGPT; and HF-format NetGPT folders under the runs' storage
(`netgpt.convert.export_run`: the best checkpoint of the last stage).
"""

from __future__ import annotations

import time
from pathlib import Path

from netgpt.config import NetGPTConfig, llm_alone_variant
from netgpt.metrics import NUM_LEVELS

PREDICTIONS = {"graph": "graph head", "answer": "generated answer", "regression": "regression head"}
COLUMNS = ("acc", "mse", "mae", "macro_f1", "within_one", "unparsable", "count")


def baseline_rows(
    majority: dict[str, float], netgpt: dict[str, float], llm_alone: dict[str, float], config: NetGPTConfig
) -> list[tuple[str, str, dict[str, float]]]:
    """(model, prediction, {metric: value}) rows of the baselines and NetGPT on the test split.

    `netgpt` and `llm_alone` are the runs' `test/<stage>/<prediction>/<metric>` scores: the graph encoder
    alone is NetGPT's first stage that trains the graph head, the LLM alone and NetGPT their last stage."""
    stages = config.train.stages
    graph_stage = next(stage.name for stage in stages if "graph_regression" in stage.losses)
    alone_stage = llm_alone_variant(config).train.stages[-1].name
    rows = [("majority level", "train split's", majority)]
    sources = [
        ("graph encoder alone", graph_stage, netgpt, ["graph"]),
        ("LLM alone", alone_stage, llm_alone, ["answer", "regression"]),
        ("NetGPT", stages[-1].name, netgpt, ["answer", "regression", "graph"]),
    ]
    for model, stage, scores, predictions in sources:
        for prediction in predictions:
            prefix = f"test/{stage}/{prediction}/"
            if f"{prefix}acc" in scores:
                rows.append(
                    (model, PREDICTIONS[prediction], {name: scores[prefix + name] for name in COLUMNS})
                )
    return rows


def metrics_table(rows: list[tuple[str, str, dict[str, float]]]) -> str:
    header = f"{'model':<22}{'prediction':<18}" + "".join(f"{name:>11}" for name in COLUMNS)
    lines = [f"test split (levels 0-{NUM_LEVELS - 1})", header, "-" * len(header)]
    for model, prediction, scores in rows:
        lines.append(f"{model:<22}{prediction:<18}" + "".join(f"{scores[name]:>11.3f}" for name in COLUMNS))
    return "\n".join(lines)


def run_demo(config: NetGPTConfig) -> list[tuple[str, str, dict[str, float]]]:
    """Generate, import, build the graph, train NetGPT and the LLM alone, print the test table; return it."""
    import ray

    from netgpt.convert import export_run
    from netgpt.data.prepare import prepare
    from netgpt.data.synthetic import write_synthetic
    from netgpt.evaluate.baselines import majority_baseline
    from netgpt.graph.build import build_graph
    from netgpt.train.run import local_ray_resources, train

    started = time.perf_counter()
    if not ray.is_initialized():
        ray.init(**local_ray_resources(config))
    tables_dir = Path(config.data.tables_dir)
    raw = write_synthetic(
        tables_dir.parent / "xs_video_synthetic.json",
        videos=config.data.synth_videos,
        seed=config.data.synth_seed,
    )
    prepare(raw, tables_dir, config.data)
    build_graph(tables_dir, config.graph, config.graph.store_dir, config=config)
    result = train(config)
    alone = train(llm_alone_variant(config))
    model = export_run(result.run_dir)
    export_run(alone.run_dir)
    majority = majority_baseline(tables_dir, "test").scalars()
    rows = baseline_rows(majority, result.metrics, alone.metrics, config)
    print(metrics_table(rows))
    print(
        f"model: {model}  "
        f"TensorBoard: tensorboard --logdir {result.run_dir.parent}  "
        f"({time.perf_counter() - started:.0f} s)"
    )
    return rows

"""`netgpt demo`: the embedded default, end to end on one machine, CPU, no network.

synthetic XS-Video-like data → validated tables → partitioned graph store → the three stages on 2 Ray Train
workers (DeepSpeed ZeRO-3, tiny LLM from config, tokenizer trained on the data) → the LLM-alone baseline (the
same LLM stages without graph tokens) → HF-format folders of each (`netgpt.convert`: the best checkpoint of a
stage) → `netgpt evaluate`'s table of the test split: the majority level, the graph encoder alone, the LLM
alone and NetGPT.
"""

from __future__ import annotations

import time
from pathlib import Path

from netgpt.config import NetGPTConfig, llm_alone_variant

GRAPH_ENCODER_DIR = "graph_encoder"
"""The graph encoder alone, converted from its stage's best checkpoint into the run folder."""


def write_demo_tables(config: NetGPTConfig) -> Path:
    """Generate the synthetic data set of `config.data` (`synth_videos`, `synth_seed`) beside its tables
    folder and import it into `config.data.tables_dir`; returns the tables folder."""
    from netgpt.data.prepare import prepare
    from netgpt.data.synthetic import write_synthetic

    tables_dir = Path(config.data.tables_dir)
    raw = write_synthetic(
        tables_dir.parent / "xs_video_synthetic.json",
        videos=config.data.synth_videos,
        seed=config.data.synth_seed,
    )
    prepare(raw, tables_dir, config.data)
    return tables_dir


def train_demo_models(config: NetGPTConfig, llm_alone: bool = True) -> dict[str, Path]:
    """Train NetGPT (and, with `llm_alone`, the LLM alone) on the graph store of `config`; returns the
    model folders by their label in the table: the graph encoder alone (converted from its stage's best
    checkpoint), the LLM alone, NetGPT."""
    from netgpt.convert import convert, export_run
    from netgpt.train.run import train

    # the table is netgpt evaluate's, so the runs skip scoring the test split themselves
    netgpt = train(config, evaluate_test=False)
    alone = train(llm_alone_variant(config), evaluate_test=False) if llm_alone else None
    graph_stage = next(stage.name for stage in config.train.stages if "graph_regression" in stage.losses)
    models = {
        "graph encoder alone": convert(
            netgpt.run_dir / "best" / graph_stage, netgpt.run_dir / GRAPH_ENCODER_DIR, overwrite=True
        )
    }
    if alone is not None:
        models["LLM alone"] = export_run(alone.run_dir)
    models["NetGPT"] = export_run(netgpt.run_dir)
    return models


def run_demo(config: NetGPTConfig):
    """Generate, import, build the graph, train NetGPT and the LLM alone, evaluate both and the graph encoder
    alone on the test split, print the table; returns the `EvaluationReport`."""
    import ray

    from netgpt.evaluate.run import evaluate_models
    from netgpt.graph.build import build_graph
    from netgpt.train.run import local_ray_resources, run_dir_of

    started = time.perf_counter()
    if not ray.is_initialized():
        ray.init(**local_ray_resources(config))
    tables_dir = write_demo_tables(config)
    build_graph(tables_dir, config.graph, config.graph.store_dir, config=config)
    models = train_demo_models(config)
    report = evaluate_models(config, list(models.values()), labels=list(models))
    print(report.markdown())
    print(
        f"model: {models['NetGPT']}  "
        f"TensorBoard: tensorboard --logdir {run_dir_of(config).parent}  "
        f"({time.perf_counter() - started:.0f} s)"
    )
    return report

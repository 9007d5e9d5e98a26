"""`netgpt demo`: the embedded default, end to end on one machine, CPU, no network.

synthetic XS-Video-like data → validated tables → partitioned graph store → the three stages on 2 Ray Train
workers (DeepSpeed ZeRO-3, tiny LLM from config, tokenizer trained on the data) → a metrics table of the
test split, and an HF-format NetGPT folder under the run's storage (`netgpt.convert.export_run`: the best
checkpoint of the last stage).
"""

from __future__ import annotations

import time
from pathlib import Path

from netgpt.config import NetGPTConfig
from netgpt.metrics import NUM_LEVELS

SOURCES = {"graph": "graph head", "answer": "generated answer", "regression": "regression head"}
COLUMNS = ("acc", "mse", "mae", "macro_f1", "within_one", "unparsable", "count")


def metrics_table(metrics: dict[str, float], stages: list[str]) -> str:
    """The `test/<stage>/<source>/<metric>` scores of each stage's model (SPEC §6's baselines in turn: the
    RGCN alone after graph pretraining, the aligned LLM, NetGPT after fine-tuning), as a table."""
    header = f"{'after stage':<16}{'prediction':<18}" + "".join(f"{name:>11}" for name in COLUMNS)
    lines = [f"test split (levels 0-{NUM_LEVELS - 1})", header, "-" * len(header)]
    for stage in stages:
        for source, label in SOURCES.items():
            prefix = f"test/{stage}/{source}/"
            if f"{prefix}acc" in metrics:
                cells = "".join(f"{metrics[prefix + name]:>11.3f}" for name in COLUMNS)
                lines.append(f"{stage:<16}{label:<18}{cells}")
    return "\n".join(lines)


def run_demo(config: NetGPTConfig) -> dict[str, float]:
    """Generate, import, build the graph, train the three stages, print the test metrics; returns them."""
    import ray

    from netgpt.convert import export_run
    from netgpt.data.prepare import prepare
    from netgpt.data.synthetic import write_synthetic
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
    model = export_run(result.run_dir)
    print(metrics_table(result.metrics, [stage.name for stage in config.train.stages]))
    print(
        f"model: {model}  "
        f"TensorBoard: tensorboard --logdir {result.run_dir / 'tensorboard'}  "
        f"({time.perf_counter() - started:.0f} s)"
    )
    return result.metrics

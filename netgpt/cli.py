"""`netgpt <command>`: parse the command line, then hand over to one function of the package."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _add_config_args(parser: argparse.ArgumentParser, default: str = "demo") -> None:
    parser.add_argument("--config", default=default, help="preset name (demo, xs_video) or a YAML path")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. graph.num_partitions=4")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="netgpt", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser(
        "demo", help="the embedded default: synthetic data to a trained, evaluated model"
    )
    _add_config_args(demo)

    synth = commands.add_parser("synth", help="write a synthetic XS-Video-like JSON file")
    synth.add_argument("--out", required=True, help="JSON file to write")
    synth.add_argument("--videos", type=int, default=300, help="number of videos")
    synth.add_argument("--seed", type=int, default=0, help="random seed (same seed, same file)")

    prepare = commands.add_parser("prepare", help="import XS-Video JSON into validated, split parquet tables")
    prepare.add_argument(
        "--input",
        required=True,
        help="the released XS-Video JSON, a zip archive holding it (a split release joined first: "
        "zip -s 0 released_dataset.zip --out xs_video.zip), or a synthetic JSON",
    )
    prepare.add_argument("--out", required=True, help="output folder of the tables")
    prepare.add_argument(
        "--strict", action="store_true", help="refuse keys the release does not have (data.strict_keys)"
    )
    _add_config_args(prepare)

    build_graph = commands.add_parser(
        "build-graph", help="build the partitioned propagation-graph store from the parquet tables"
    )
    build_graph.add_argument(
        "--content",
        help="parquet of per-video content vectors (video_id, vector): graph.content_file, docs/data.md",
    )
    _add_config_args(build_graph)

    check_store = commands.add_parser(
        "check-store", help="verify every file of a graph store against the sha256 its meta.json records"
    )
    check_store.add_argument("--store", help="the store folder (default: graph.store_dir of the config)")
    _add_config_args(check_store)

    train = commands.add_parser("train", help="run (or resume) the three-stage curriculum on Ray + DeepSpeed")
    _add_config_args(train)

    evaluate = commands.add_parser(
        "evaluate", help="score model folders on a split of the graph store, beside the majority level"
    )
    evaluate.add_argument(
        "--model",
        action="append",
        required=True,
        help="a NetGPT folder; repeat it to put several in one table",
    )
    evaluate.add_argument(
        "--split", choices=["train", "val", "test"], help="the split scored (evaluate.split)"
    )
    evaluate.add_argument("--out", help="also write the report (every metric, per platform) as JSON here")
    _add_config_args(evaluate)

    predict = commands.add_parser("predict", help="rate new videos (not in the training data) with a model")
    predict.add_argument(
        "--model", required=True, help="NetGPT model folder (save_pretrained, e.g. run/model)"
    )
    predict.add_argument(
        "--input", required=True, help="new samples as released XS-Video JSON (or a zip), level optional"
    )
    predict.add_argument("--out", required=True, help="parquet file of the ratings, one row per input sample")
    predict.add_argument("--batch-size", type=int, default=16, help="samples rated at once")
    predict.add_argument(
        "--chunk-size",
        type=int,
        default=4096,
        help="new samples whose graph is built at once (bounds memory)",
    )
    predict.add_argument("--device", default=None, help="torch device (default: cuda when there is one)")
    predict.add_argument(
        "--content",
        default="",
        help="parquet of the new videos' content vectors (video_id, vector), as graph.content_file",
    )
    _add_config_args(predict)

    plan = commands.add_parser(
        "plan", help="what a run needs (CPU, GPUs, memory per GPU) and whether a Ray cluster has it"
    )
    plan.add_argument(
        "--address", default=None, help="a Ray cluster to check against (default: RAY_ADDRESS when set)"
    )
    plan.add_argument(
        "--gpu-memory-gib", type=float, default=80.0, help="one GPU's memory, for the GPUs-needed line (80)"
    )
    _add_config_args(plan)

    convert = commands.add_parser(
        "convert", help="consolidate a run's DeepSpeed ZeRO checkpoint into an HF-format NetGPT folder"
    )
    convert.add_argument(
        "checkpoint",
        help="a checkpoint folder, a best/<stage> folder, or a run folder (its latest checkpoint)",
    )
    convert.add_argument("out", help="the NetGPT folder to write (NetGPT.from_pretrained reads it)")
    convert.add_argument(
        "--config", default=None, help="preset name or YAML path (default: the run's saved config.yaml)"
    )
    convert.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32", help="weights' dtype in OUT")
    convert.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    convert.add_argument(
        "--max-shard-size", default="500MB", help="largest LLM weights file; memory grows with it (500MB)"
    )
    return parser


RAY_COMMANDS = frozenset({"demo", "build-graph", "train", "evaluate"})
"""Commands that start or join a Ray cluster: the installed Ray is checked before they begin."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; a bad config or an untested Ray is one line on stderr and exit status 2."""
    args = _parser().parse_args(argv)
    from netgpt.config import ConfigError
    from netgpt.ray_version import RayVersionError, check_ray_version

    try:
        if args.command in RAY_COMMANDS:
            check_ray_version()
        return _run(args)
    except (ConfigError, RayVersionError) as error:
        print(f"netgpt {args.command}: error: {error}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from netgpt.config import load_config

    if args.command == "synth":
        from netgpt.data.synthetic import write_synthetic

        write_synthetic(args.out, videos=args.videos, seed=args.seed)
        return 0
    if args.command == "convert":
        return _convert(args)
    overrides = list(args.overrides)
    if getattr(args, "strict", False):
        overrides.append("data.strict_keys=true")
    if args.command == "build-graph" and args.content:
        overrides.append(f"graph.content_file={args.content}")
    if getattr(args, "split", None):
        overrides.append(f"evaluate.split={args.split}")
    config = load_config(args.config, overrides)
    if args.command == "plan":
        return _plan(args, config)
    if args.command == "prepare":
        from netgpt.data.prepare import prepare

        prepare(args.input, args.out, config.data, config=config)
        return 0
    if args.command == "build-graph":
        import json

        from netgpt.graph.build import build_graph

        summary = build_graph(config.data.tables_dir, config.graph, config.graph.store_dir, config=config)
        print(json.dumps(summary, ensure_ascii=False))
        content = summary["content_vectors"]
        print(
            f"content vectors: {content['videos_with']} of {content['videos']} videos have one, "
            f"{content['videos_without']} have none (zeros); {content['ids_naming_no_video']} ids of "
            f"{content['files'] or 'no file (graph.content_file)'} name no video",
            file=sys.stderr,
        )
        return 0
    if args.command == "check-store":
        return _check_store(args.store or config.graph.store_dir)
    if args.command == "train":
        import json

        from netgpt.convert import export_run
        from netgpt.train.run import train

        result = train(config)
        model = export_run(result.run_dir)
        summary = {"run_dir": str(result.run_dir), "model": str(model), **result.metrics}
        print(json.dumps(summary, ensure_ascii=False))
        return 0
    if args.command == "evaluate":
        import ray

        from netgpt.evaluate.run import evaluate_models, write_report
        from netgpt.train.run import local_ray_resources

        if not ray.is_initialized():
            ray.init(**local_ray_resources(config))
        report = evaluate_models(config, args.model)
        print(report.markdown())
        if args.out:
            write_report(report, args.out)
        return 0
    if args.command == "predict":
        import json

        from netgpt.data.validate import DataError
        from netgpt.evaluate.predict import predict

        try:
            summary = predict(
                args.model,
                args.input,
                args.out,
                config,
                batch_size=args.batch_size,
                chunk_size=args.chunk_size,
                device=args.device,
                content_file=args.content,
            )
        except DataError as error:
            print(f"netgpt predict: {error}", file=sys.stderr)
            return 2
        print(json.dumps(summary, ensure_ascii=False))
        return 0
    if args.command == "demo":
        from netgpt.demo import run_demo

        run_demo(config)
        return 0
    raise AssertionError(f"unhandled command {args.command}")


def _check_store(store_dir: str) -> int:
    """`netgpt check-store`: exit status 0 and a summary when every file matches, else 1 and the files."""
    from netgpt.graph.store import StoreError, verify_store

    try:
        checked = verify_store(store_dir)
    except StoreError as error:
        print(f"netgpt check-store: {error}", file=sys.stderr)
        return 1
    print(f"{store_dir}: {checked['files']} files, {checked['bytes']} bytes: every sha256 matches meta.json")
    return 0


def _plan(args: argparse.Namespace, config) -> int:  # noqa: ANN001
    """`netgpt plan`: the run's resource plan as a table; exit status 1 when a connected cluster lacks
    some of it (none is connected unless --address or RAY_ADDRESS names one: the plan alone is printed)."""
    import os

    from rich.console import Console
    from rich.table import Table

    from netgpt.train.plan import GIB, ResourcePlan, shortfall_message

    plan = ResourcePlan.of(config)
    table = Table(title=f"netgpt plan --config {args.config} {' '.join(args.overrides)}".rstrip())
    for column in ("item", "amount", "how"):
        table.add_column(column)
    for row in plan.rows(int(args.gpu_memory_gib * GIB)):
        table.add_row(*row)
    console = Console(width=max(Console().width, 120))
    console.print(table)
    for note in plan.notes:
        console.print(f"note: {note}")
    address = args.address or os.environ.get("RAY_ADDRESS")
    if not address:
        console.print("no Ray cluster given (--address or RAY_ADDRESS): the plan is not checked against one")
        return 0
    import ray

    ray.init(address=address, log_to_driver=False)
    shortfalls = plan.check(ray.cluster_resources())
    if shortfalls:
        print(f"netgpt plan: {shortfall_message(shortfalls)}", file=sys.stderr)
        return 1
    console.print(f"the cluster at {address} has what the plan needs")
    return 0


def _convert(args: argparse.Namespace) -> int:
    """`netgpt convert`: bad input is one line on stderr and exit status 2, never a traceback."""
    from netgpt.config import ConfigError
    from netgpt.convert import ConvertError, convert

    try:
        out = convert(
            args.checkpoint,
            args.out,
            config=args.config,
            dtype=args.dtype,
            overwrite=args.overwrite,
            max_shard_size=args.max_shard_size,
        )
    except (ConvertError, ConfigError) as error:
        print(f"netgpt convert: error: {error}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

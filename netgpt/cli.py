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
    prepare.add_argument("--input", required=True, help="the released XS-Video JSON (or a synthetic one)")
    prepare.add_argument("--out", required=True, help="output folder of the tables")
    _add_config_args(prepare)

    build_graph = commands.add_parser(
        "build-graph", help="build the partitioned propagation-graph store from the parquet tables"
    )
    _add_config_args(build_graph)

    train = commands.add_parser("train", help="run (or resume) the three-stage curriculum on Ray + DeepSpeed")
    _add_config_args(train)

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


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from netgpt.config import load_config

    if args.command == "synth":
        from netgpt.data.synthetic import write_synthetic

        write_synthetic(args.out, videos=args.videos, seed=args.seed)
        return 0
    if args.command == "convert":
        return _convert(args)
    config = load_config(args.config, args.overrides)
    if args.command == "prepare":
        from netgpt.data.prepare import prepare

        prepare(args.input, args.out, config.data, config=config)
        return 0
    if args.command == "build-graph":
        import json

        from netgpt.graph.build import build_graph

        summary = build_graph(config.data.tables_dir, config.graph, config.graph.store_dir, config=config)
        print(json.dumps(summary, ensure_ascii=False))
        return 0
    if args.command == "train":
        import json

        from netgpt.convert import export_run
        from netgpt.train.run import train

        result = train(config)
        model = export_run(result.run_dir)
        summary = {"run_dir": str(result.run_dir), "model": str(model), **result.metrics}
        print(json.dumps(summary, ensure_ascii=False))
        return 0
    if args.command == "demo":
        from netgpt.demo import run_demo

        run_demo(config)
        return 0
    raise AssertionError(f"unhandled command {args.command}")


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

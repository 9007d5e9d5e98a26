"""`netgpt <command>`: parse the command line, then hand over to one function of the package.

Each command is one `Command` in `COMMANDS`: its help, an example, a function that adds its arguments and one
that runs it. A new command is one more entry. Errors a user can cause are classified by `EXIT_CODES` into one
line on stderr and an exit status per kind; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import textwrap
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from importlib import metadata
from typing import Any


@dataclass(frozen=True)
class ExitCode:
    """One kind of error a user can cause: its exit status and the exceptions that are of that kind."""

    code: int
    kind: str
    errors: tuple[str, ...]
    """Exception classes by qualified name (`module.Class`), so that classifying an error imports nothing
    (some live in modules that import torch or Ray); a subclass of one is of the same kind."""


USAGE_EXIT = 2
"""argparse's own status for a command line it cannot parse (unknown option, missing argument)."""

EXIT_CODES = (
    ExitCode(3, "bad config", ("netgpt.config.ConfigError",)),
    ExitCode(
        4,
        "a file or folder missing or not accessible",
        (
            "builtins.FileNotFoundError",
            "builtins.NotADirectoryError",
            "builtins.IsADirectoryError",
            "builtins.PermissionError",
        ),
    ),
    ExitCode(
        5,
        "bad data",
        (
            "netgpt.data.validate.DataError",
            "netgpt.data.tables.TableSchemaError",
            "netgpt.graph.topology.GraphInputError",
            "netgpt.graph.features.ContentError",
        ),
    ),
    ExitCode(6, "damaged or mismatched graph store", ("netgpt.graph.store.StoreError",)),
    ExitCode(
        7,
        "checkpoint or model folder refused",
        (
            "netgpt.convert.errors.ConvertError",
            "netgpt.convert.errors.VerificationError",
            "netgpt.train.checkpoint.ResumeRefused",
            "netgpt.train.registry.NoCompleteCheckpoint",
        ),
    ),
    ExitCode(8, "output refused", ("netgpt.atomic.OutputError",)),
    ExitCode(
        9,
        "Ray cluster absent or short of resources",
        ("builtins.ConnectionError", "netgpt.train.plan.InsufficientResources"),
    ),
    ExitCode(10, "Ray version not the tested one", ("netgpt.ray_version.RayVersionError",)),
    ExitCode(11, "training diverged (a non-finite loss)", ("netgpt.train.step.LossNotFinite",)),
)
"""Exit status per kind of error a user can cause (0: done; 1: an unexpected error, with its traceback)."""


def exit_code_of(error: BaseException) -> ExitCode | None:
    """The kind of `error` (the first of its classes, most derived first, that `EXIT_CODES` names)."""
    by_name = {name: code for code in EXIT_CODES for name in code.errors}
    for cls in type(error).__mro__:
        found = by_name.get(f"{cls.__module__}.{cls.__qualname__}")
        if found is not None:
            return found
    return None


EXIT_CODES_HELP = "exit status:\n  0   done\n  1   an unexpected error (a bug: its traceback is printed)\n"
EXIT_CODES_HELP += f"  {USAGE_EXIT}   the command line itself (unknown option, missing argument)\n"
EXIT_CODES_HELP += "".join(f"  {code.code:<3} {code.kind}\n" for code in EXIT_CODES)
EXIT_CODES_HELP += (
    f"Errors of kinds {EXIT_CODES[0].code}-{EXIT_CODES[-1].code} are one line on stderr; --debug adds the "
    "traceback."
)


def package_version() -> str:
    """The installed distribution's version (pyproject.toml's), or a note when netgpt runs uninstalled."""
    try:
        return metadata.version("netgpt")
    except metadata.PackageNotFoundError:
        return "unknown (run from a source tree that is not installed)"


RAY_PROBE_TIMEOUT_S = 10.0
"""How long a Ray cluster's address may take to accept a TCP connection before it counts as absent."""


def check_ray_address(address: str | None) -> None:
    """Raise `ConnectionError` at once when nothing listens at a Ray cluster's `host:port` (or
    `ray://host:port`): `ray.init` retries an absent cluster for many minutes (here: over ten) before it
    gives up. `auto`, `local`, no address and other schemes are left to Ray."""
    if not address or address in ("auto", "local"):
        return
    host_port = address.removeprefix("ray://")
    host, colon, port = host_port.rpartition(":")
    if "://" in host_port or not colon or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=RAY_PROBE_TIMEOUT_S).close()
    except OSError as error:
        raise ConnectionError(
            f"no Ray cluster answers at {address} ({error.strerror or error}); start one there, or unset "
            "RAY_ADDRESS to run on a local one"
        ) from None


# ---------------------------------------------------------------------------------------------- arguments


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        default="demo",
        help="preset (demo, small, small_zh, xs_video, xs_video_paper) or a YAML file (default: demo)",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="dotted config overrides applied last, e.g. graph.num_partitions=4 train.stages.1.lr=2e-5",
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


def _config_only_arguments(parser: argparse.ArgumentParser) -> None:
    _add_config_args(parser)


def _synth_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--videos", type=_positive_int, default=300, help="number of videos (300)")
    parser.add_argument("--seed", type=int, default=0, help="random seed: same seed, same file (0)")


def _prepare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--input",
        help="the released XS-Video JSON, a zip archive holding it (a split release joined first: "
        "zip -s 0 released_dataset.zip --out xs_video.zip), or a synthetic JSON (default: data.raw_path)",
    )
    parser.add_argument("--out", help="folder of the tables to write (default: data.tables_dir)")
    parser.add_argument(
        "--strict", action="store_true", help="refuse keys the release does not have (data.strict_keys)"
    )
    _add_config_args(parser)


def _build_graph_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--content",
        help="parquet of per-video content vectors (video_id, vector): graph.content_file, docs/data.md",
    )
    _add_config_args(parser)


def _train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-test", action="store_true", help="skip scoring the test split at the end of the run"
    )
    _add_config_args(parser)


def _evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        action="append",
        required=True,
        help="a NetGPT folder; repeat it to put several in one table",
    )
    parser.add_argument("--split", choices=["train", "val", "test"], help="the split scored (evaluate.split)")
    parser.add_argument("--out", help="also write the report (every metric, per platform) as JSON here")
    _add_config_args(parser)


def _predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="NetGPT model folder (e.g. RUN/model)")
    parser.add_argument(
        "--input", required=True, help="new samples as released XS-Video JSON (or a zip), level optional"
    )
    parser.add_argument("--out", required=True, help="parquet file of the ratings, one row per input sample")
    parser.add_argument("--batch-size", type=_positive_int, default=16, help="samples rated at once (16)")
    parser.add_argument(
        "--chunk-size",
        type=_positive_int,
        default=4096,
        help="new samples whose graph is built at once; bounds memory",
    )
    parser.add_argument("--device", default=None, help="torch device (default: cuda when there is one)")
    parser.add_argument(
        "--content",
        default="",
        help="parquet of the new videos' content vectors (video_id, vector), as graph.content_file",
    )
    _add_config_args(parser)


def _plan_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--address", default=None, help="a Ray cluster to check against (default: RAY_ADDRESS when set)"
    )
    parser.add_argument(
        "--gpu-memory-gib", type=float, default=80.0, help="one GPU's memory, for the GPUs-needed line (80)"
    )
    _add_config_args(parser)


def _convert_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "checkpoint",
        help="a checkpoint folder, a best/<stage> folder, or a run folder (its latest checkpoint)",
    )
    parser.add_argument("out", help="the NetGPT folder to write (NetGPT.from_pretrained reads it)")
    parser.add_argument(
        "--config", default=None, help="preset name or YAML file (default: the run's saved config.yaml)"
    )
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32", help="weights' dtype in OUT")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    parser.add_argument(
        "--max-shard-size", default="500MB", help="largest LLM weights file; memory grows with it (500MB)"
    )


# ---------------------------------------------------------------------------------------------- commands


def _config_of(args: argparse.Namespace, extra: Sequence[str] = ()) -> Any:
    from netgpt.config import load_config

    return load_config(args.config, [*args.overrides, *extra])


def _print_json(summary: dict[str, Any]) -> None:
    import json

    print(json.dumps(summary, ensure_ascii=False))


def _run_demo(args: argparse.Namespace) -> int:
    from netgpt.demo import run_demo

    run_demo(_config_of(args))
    return 0


def _run_synth(args: argparse.Namespace) -> int:
    from netgpt.data.synthetic import write_synthetic

    write_synthetic(args.out, videos=args.videos, seed=args.seed)
    return 0


def _run_prepare(args: argparse.Namespace) -> int:
    from netgpt.config import ConfigError
    from netgpt.data.prepare import prepare

    config = _config_of(args, ["data.strict_keys=true"] if args.strict else [])
    # set as values, not dotted overrides: a path is not parsed as YAML; the saved config.yaml records them
    config.data = replace(
        config.data,
        raw_path=args.input or config.data.raw_path,
        tables_dir=args.out or config.data.tables_dir,
    )
    if not config.data.raw_path:
        raise ConfigError("config key 'data.raw_path': empty; give --input FILE or set data.raw_path")
    prepare(config.data.raw_path, config.data.tables_dir, config.data, config=config)
    return 0


def _check_store_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", help="the store folder (default: graph.store_dir of the config)")
    _add_config_args(parser)


def _run_check_store(args: argparse.Namespace) -> int:
    """Exit status 0 and a summary when every file matches its recorded sha256; a StoreError (status 6)
    naming the damaged file otherwise."""
    from netgpt.graph.store import verify_store

    store_dir = args.store or _config_of(args).graph.store_dir
    checked = verify_store(store_dir)
    print(f"{store_dir}: {checked['files']} files, {checked['bytes']} bytes: every sha256 matches meta.json")
    return 0


def _run_build_graph(args: argparse.Namespace) -> int:
    from netgpt.graph.build import build_graph

    config = _config_of(args)
    if args.content:  # a value, not a dotted override: a path is not parsed as YAML
        config.graph = replace(config.graph, content_file=args.content)
    summary = build_graph(config.data.tables_dir, config.graph, config.graph.store_dir, config=config)
    _print_json(summary)
    content = summary["content_vectors"]
    print(
        f"content vectors: {content['videos_with']} of {content['videos']} videos have one, "
        f"{content['videos_without']} have none (zeros); {content['ids_naming_no_video']} ids of "
        f"{content['files'] or 'no file (graph.content_file)'} name no video",
        file=sys.stderr,
    )
    return 0


def _run_train(args: argparse.Namespace) -> int:
    from netgpt.convert import export_run
    from netgpt.train.run import train

    result = train(_config_of(args), evaluate_test=not args.no_test)
    model = export_run(result.run_dir)
    _print_json(
        {
            "run_dir": str(result.run_dir),
            "model": str(model),
            "resumed_from": result.progress["resumed_from"],
            **result.metrics,
        }
    )
    return 0


def _run_evaluate(args: argparse.Namespace) -> int:
    import ray

    from netgpt.evaluate.run import evaluate_models, write_report
    from netgpt.train.run import local_ray_resources

    config = _config_of(args, [f"evaluate.split={args.split}"] if args.split else [])
    if not ray.is_initialized():
        ray.init(**local_ray_resources(config))
    report = evaluate_models(config, args.model, show_progress=sys.stderr.isatty())
    print(report.markdown())
    if args.out:
        write_report(report, args.out)
    return 0


def _run_predict(args: argparse.Namespace) -> int:
    from netgpt.evaluate.predict import predict

    summary = predict(
        args.model,
        args.input,
        args.out,
        _config_of(args),
        batch_size=args.batch_size,
        chunk_size=args.chunk_size,
        device=args.device,
        content_file=args.content,
    )
    _print_json(summary)
    return 0


def _run_plan(args: argparse.Namespace) -> int:
    """The run's resource plan as a table; when a cluster is given (--address or RAY_ADDRESS) and lacks
    some of it, an `InsufficientResources` error."""
    from rich.console import Console
    from rich.table import Table

    from netgpt.train.plan import GIB, InsufficientResources, ResourcePlan, shortfall_message

    plan = ResourcePlan.of(_config_of(args))
    table = Table(title=f"netgpt plan --config {args.config} {' '.join(args.overrides)}".rstrip())
    for column in ("item", "amount", "how"):
        table.add_column(column)
    for row in plan.rows(int(args.gpu_memory_gib * GIB)):
        table.add_row(*row)
    console = Console(width=max(Console().width, 120))
    console.print(table)
    for note in plan.notes:
        console.print(f"note: {note}")
    disk = plan.disk_note()
    if disk is not None:
        console.print(f"warning: {disk}")
    address = args.address or os.environ.get("RAY_ADDRESS")
    if not address:
        console.print("no Ray cluster given (--address or RAY_ADDRESS): the plan is not checked against one")
        return 0
    import ray

    check_ray_address(address)
    ray.init(address=address, log_to_driver=False)
    shortfalls = plan.check(ray.cluster_resources())
    if shortfalls:
        raise InsufficientResources(shortfall_message(shortfalls))
    console.print(f"the cluster at {address} has what the plan needs")
    return 0


def _run_convert(args: argparse.Namespace) -> int:
    from netgpt.convert import convert

    out = convert(
        args.checkpoint,
        args.out,
        config=args.config,
        dtype=args.dtype,
        overwrite=args.overwrite,
        max_shard_size=args.max_shard_size,
    )
    print(out)
    return 0


def _run_config(args: argparse.Namespace) -> int:
    from netgpt.config import to_yaml

    print(to_yaml(_config_of(args)), end="")
    return 0


@dataclass(frozen=True)
class Command:
    """One `netgpt <name>`: what it does (for the command list and its help), an example, its arguments."""

    name: str
    summary: str
    """One line in `netgpt --help`."""
    description: str
    example: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    uses_ray: bool = False
    """Whether it starts or joins a Ray cluster: the installed Ray is checked before it begins."""


COMMANDS = (
    Command(
        "demo",
        "the whole pipeline on synthetic data: generate, import, build, train, evaluate (CPU, minutes)",
        "Generates a synthetic XS-Video-like data set, imports it, builds the graph store, trains NetGPT "
        "and the LLM-alone baseline on a local Ray cluster, and prints the evaluation table of the test "
        "split. Outputs go under the preset's folders (runs/demo/ for `demo`); running it again resumes.",
        "netgpt demo\nnetgpt demo --config small train.num_workers=1",
        _config_only_arguments,
        _run_demo,
        uses_ray=True,
    ),
    Command(
        "synth",
        "write a synthetic XS-Video-like JSON file",
        "Writes a JSON file in the released data set's format with made-up videos, for trying the pipeline "
        "without the release. The same seed gives the same file.",
        "netgpt synth --out runs/xs.json --videos 3000 --seed 1",
        _synth_arguments,
        _run_synth,
    ),
    Command(
        "prepare",
        "import XS-Video JSON into validated, split parquet tables",
        "Reads the released JSON (or a zip holding it) as a stream, checks every record, labels and splits "
        "the samples, and writes the tables atomically; prints a summary. Without --input/--out it reads "
        "data.raw_path and writes data.tables_dir of the config. It refuses to replace a folder netgpt did "
        "not write.",
        "netgpt prepare --input runs/xs.json --out runs/demo/tables\n"
        "netgpt prepare --config xs_video   # reads data.raw_path, writes data.tables_dir",
        _prepare_arguments,
        _run_prepare,
    ),
    Command(
        "build-graph",
        "build the partitioned propagation-graph store from the tables",
        "Builds the propagation graph from data.tables_dir, computes node features and writes the "
        "partitioned store to graph.store_dir; prints a JSON summary.",
        "netgpt build-graph --config demo graph.num_partitions=4",
        _build_graph_arguments,
        _run_build_graph,
        uses_ray=True,
    ),
    Command(
        "check-store",
        "verify every file of a graph store against the sha256 its meta.json records",
        "Reads every file of the store and compares its size and sha256 with what the build recorded in "
        "meta.json (training runs the same check once before it starts); a damaged file is named.",
        "netgpt check-store --config demo\nnetgpt check-store --store runs/demo/graph",
        _check_store_arguments,
        _run_check_store,
    ),
    Command(
        "train",
        "run (or resume) the curriculum on Ray Train + DeepSpeed, then export the model",
        "Runs the stages of train.stages on the Ray cluster (RAY_ADDRESS, else a local one), checkpointing "
        "as it goes, then converts the last stage's best checkpoint into RUN/model (Hugging Face format). "
        "The same train.storage_path and train.run_name resume from the latest complete checkpoint. "
        "Prints a JSON summary. `python ray_jobs/train.py` takes the same arguments on a cluster.",
        "netgpt train --config demo train.num_workers=2\n"
        "netgpt train --config xs_video --no-test train.use_gpu=true",
        _train_arguments,
        _run_train,
        uses_ray=True,
    ),
    Command(
        "evaluate",
        "score model folders on a split of the graph store, beside the majority level",
        "Rates a split of graph.store_dir with each model folder (Ray Data batch inference) and prints one "
        "table: accuracy, MSE, MAE, macro-F1 and within-one per prediction.",
        "netgpt evaluate --config demo --model runs/demo/ray/netgpt/model --split val --out report.json",
        _evaluate_arguments,
        _run_evaluate,
        uses_ray=True,
    ),
    Command(
        "predict",
        "rate new videos (not in the training data) with a model folder",
        "Joins new samples to the graph of graph.store_dir, samples their neighbourhoods and rates them with "
        "the model; writes one row per input sample.",
        "netgpt predict --config demo --model runs/demo/ray/netgpt/model --input new.json "
        "--out ratings.parquet",
        _predict_arguments,
        _run_predict,
    ),
    Command(
        "plan",
        "what a run needs (CPUs, GPUs, memory per GPU), and whether a Ray cluster has it",
        "Prints the resources the config's run needs; given a cluster (--address or RAY_ADDRESS), checks it "
        "and fails naming what is missing.",
        "netgpt plan --config xs_video\nnetgpt plan --config xs_video --address ray://head:10001",
        _plan_arguments,
        _run_plan,
    ),
    Command(
        "convert",
        "consolidate a DeepSpeed ZeRO checkpoint into a Hugging Face-format NetGPT folder",
        "Converts any checkpoint of a run (or the latest, given the run folder) on one CPU process, with "
        "bounded memory, into a folder NetGPT.from_pretrained reads.",
        "netgpt convert runs/demo/ray/netgpt runs/demo/netgpt-latest --dtype bf16",
        _convert_arguments,
        _run_convert,
    ),
    Command(
        "config",
        "print the resolved config (preset + overrides) as YAML",
        "Prints the config a command would run with: the defaults, then the preset, then the overrides, all "
        "checked. Save it and pass it back with --config FILE.yaml.",
        "netgpt config --config xs_video train.num_workers=8 > my_run.yaml",
        _config_only_arguments,
        _run_config,
    ),
)

DESCRIPTION = """\
netgpt trains NetGPT, a graph neural network joined to a causal LLM that rates how far a short video will
spread (a level from 0 to 9), on Ray Train + DeepSpeed, from the XS-Video data set or synthetic data.

Every command that reads a config takes --config PRESET (or a YAML file) and dotted KEY=VALUE overrides;
`netgpt config` prints the result. `netgpt COMMAND --help` shows each command's options and an example."""

WORKFLOW = """\
a run, step by step:
  netgpt synth --out runs/xs.json --videos 3000
  netgpt prepare --input runs/xs.json --out runs/demo/tables
  netgpt build-graph --config demo
  netgpt train --config demo
  netgpt evaluate --config demo --model runs/demo/ray/netgpt/model"""


def _add_debug(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument(
        "--debug", action="store_true", default=default, help="print the traceback of an error as well"
    )


DESCRIPTION_WIDTH = 100
"""Columns a command's description is wrapped to (the raw formatter keeps the examples' lines as written)."""


def _epilog(command: Command) -> str:
    examples = "\n".join(f"  {line}" for line in command.example.splitlines())
    return f"example:\n{examples}\n\n{EXIT_CODES_HELP}"


def _add_command(commands: Any, command: Command) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        command.name,
        help=command.summary,
        description=textwrap.fill(command.description, DESCRIPTION_WIDTH),
        epilog=_epilog(command),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    command.add_arguments(parser)
    # SUPPRESS: a subcommand's default must not overwrite `netgpt --debug COMMAND`'s True
    _add_debug(parser, argparse.SUPPRESS)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="netgpt",
        description=DESCRIPTION,
        epilog=f"{WORKFLOW}\n\n{EXIT_CODES_HELP}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    _add_debug(parser, False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        _add_command(commands, command)
    return parser


def command_parser(name: str, prog: str) -> argparse.ArgumentParser:
    """One command's parser on its own, for an entry script that runs just that command (`ray_jobs/`)."""
    (command,) = [c for c in COMMANDS if c.name == name]
    parser = argparse.ArgumentParser(
        prog=prog,
        description=textwrap.fill(command.description, DESCRIPTION_WIDTH),
        epilog=_epilog(command),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    command.add_arguments(parser)
    _add_debug(parser, False)
    parser.set_defaults(command=name)
    return parser


def run(args: argparse.Namespace, prog: str | None = None) -> int:
    """Run the parsed command; an error a user can cause is one line `PROG: error: MESSAGE` on stderr and its
    kind's exit status (`EXIT_CODES`), with the traceback before it under --debug."""
    (command,) = [c for c in COMMANDS if c.name == args.command]
    try:
        if command.uses_ray:
            from netgpt.ray_version import check_ray_version

            check_ray_version()
            check_ray_address(os.environ.get("RAY_ADDRESS"))
        return command.run(args)
    except Exception as error:
        kind = exit_code_of(error)
        if kind is None:
            raise
        if getattr(args, "debug", False):
            traceback.print_exc()
        # raised in a Ray task or actor, the error arrives as RayTaskError(X), a subclass of X whose text
        # is the remote traceback; the error itself is its `cause`
        cause = getattr(error, "cause", None)
        shown = cause if isinstance(cause, BaseException) else error
        message = str(shown).strip().replace("\n", " ") or type(shown).__name__
        print(f"{prog or 'netgpt ' + command.name}: error: {message}", file=sys.stderr)
        return kind.code


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

"""`netgpt`: help for users with an example per command, `--version`, `config`, one line and a distinct exit
status per kind of error a user can cause (the traceback behind --debug), `prepare`'s paths from the config,
and `ray_jobs/` scripts with the same options as their commands."""

from __future__ import annotations

import argparse
import importlib
import socket
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest

from netgpt import cli
from netgpt.config import load_config

ROOT = Path(__file__).resolve().parents[1]


def _error(name: str, message: str) -> Exception:
    """An instance of the exception class `name` (`module.Class`) whose message is `message`, whatever the
    class's own constructor takes."""
    module, _, cls = name.rpartition(".")
    error_class = getattr(importlib.import_module(module), cls)
    error = error_class.__new__(error_class)
    Exception.__init__(error, message)
    return error


def test_every_command_has_help_with_an_example_and_the_exit_codes(capsys):
    for command in cli.COMMANDS:
        with pytest.raises(SystemExit) as done:
            cli.main([command.name, "--help"])
        assert done.value.code == 0
        text = capsys.readouterr().out
        example = text.split("example:\n", 1)[1]
        assert example.lstrip().startswith(f"netgpt {command.name}"), command.name
        assert "exit status:" in text and "--debug" in text
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    assert all(command.name in text for command in cli.COMMANDS) and "exit status:" in text


def test_version_is_the_package_metadata(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"netgpt {metadata.version('netgpt')}"


def test_config_prints_the_resolved_yaml_that_loads_back(tmp_path, capsys):
    assert cli.main(["config", "--config", "xs_video", "train.num_workers=8"]) == 0
    printed = capsys.readouterr().out
    saved = tmp_path / "run.yaml"
    saved.write_text(printed, encoding="utf-8")
    again = load_config(saved)
    assert again == load_config("xs_video", ["train.num_workers=8"]) and again.train.num_workers == 8


def test_exit_codes_are_distinct_and_name_importable_errors():
    codes = [code.code for code in cli.EXIT_CODES]
    assert len(set(codes)) == len(codes) and 0 not in codes and 1 not in codes and cli.USAGE_EXIT not in codes
    for code in cli.EXIT_CODES:
        for name in code.errors:
            assert cli.exit_code_of(_error(name, "x")) == code, name
    assert cli.exit_code_of(ValueError("a bug")) is None


@pytest.mark.parametrize("kind", cli.EXIT_CODES, ids=lambda kind: kind.kind)
def test_a_user_error_is_one_line_and_its_code_and_debug_adds_the_traceback(kind, monkeypatch, capsys):
    def fail(args: argparse.Namespace) -> int:
        raise _error(kind.errors[0], "what went wrong\nand where")

    failing = cli.Command("config", "", "", "netgpt config", cli._config_only_arguments, fail)
    monkeypatch.setattr(cli, "COMMANDS", (failing,))
    assert cli.main(["config"]) == kind.code
    err = capsys.readouterr().err
    assert err == "netgpt config: error: what went wrong and where\n"
    for argv in (["--debug", "config"], ["config", "--debug"]):
        assert cli.main(argv) == kind.code
        err = capsys.readouterr().err
        assert "Traceback" in err and err.endswith("netgpt config: error: what went wrong and where\n")


def test_an_error_raised_in_a_ray_actor_is_its_cause_in_one_line(monkeypatch, capsys):
    from ray.exceptions import RayTaskError

    from netgpt.graph.store import StoreError

    def fail(args: argparse.Namespace) -> int:
        raise RayTaskError(
            "sample", "Traceback (most recent call last):\n  ...", StoreError("x: damaged")
        ).as_instanceof_cause()

    monkeypatch.setattr(
        cli, "COMMANDS", (cli.Command("config", "", "", "", cli._config_only_arguments, fail),)
    )
    assert cli.main(["config"]) == 6
    assert capsys.readouterr().err == "netgpt config: error: x: damaged\n"


def test_an_unexpected_error_keeps_its_traceback(monkeypatch):
    def fail(args: argparse.Namespace) -> int:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(
        cli, "COMMANDS", (cli.Command("config", "", "", "", cli._config_only_arguments, fail),)
    )
    with pytest.raises(ZeroDivisionError):
        cli.main(["config"])


def test_bad_config_exits_3(capsys):
    assert cli.main(["config", "train.num_workers=0"]) == 3
    err = capsys.readouterr().err
    assert err == "netgpt config: error: config key 'train.num_workers': expected an integer >= 1, got 0\n"


def test_prepare_errors_a_user_can_cause(tmp_path, capsys):
    assert cli.main(["prepare", "--input", str(tmp_path / "none.json"), "--out", str(tmp_path / "t")]) == 4
    assert capsys.readouterr().err.startswith(f"netgpt prepare: error: {tmp_path / 'none.json'}")
    broken = tmp_path / "broken.json"
    broken.write_text('{"a": [1,', encoding="utf-8")
    assert cli.main(["prepare", "--input", str(broken), "--out", str(tmp_path / "t")]) == 5
    assert capsys.readouterr().err.splitlines()[-1].startswith(f"netgpt prepare: error: {broken}")
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.txt").write_text("mine", encoding="utf-8")
    raw = tmp_path / "raw.json"
    assert cli.main(["synth", "--out", str(raw), "--videos", "5"]) == 0
    assert cli.main(["prepare", "--input", str(raw), "--out", str(precious)]) == 8
    assert capsys.readouterr().err.startswith(f"netgpt prepare: error: {precious}: refusing to replace")
    assert (precious / "thesis.txt").read_text(encoding="utf-8") == "mine"
    assert cli.main(["prepare", "data.raw_path=''"]) == 3
    assert "give --input FILE or set data.raw_path" in capsys.readouterr().err


def test_prepare_reads_its_paths_from_the_config(tmp_path, capsys):
    raw = tmp_path / "raw.json"
    assert cli.main(["synth", "--out", str(raw), "--videos", "20"]) == 0
    tables = tmp_path / "tables"
    preset = tmp_path / "mine.yaml"
    preset.write_text(f"data:\n  raw_path: {raw}\n  tables_dir: {tables}\n", encoding="utf-8")
    assert cli.main(["prepare", "--config", str(preset)]) == 0
    saved = load_config(tables / "config.yaml")
    assert (tables / "samples.parquet").is_file()
    assert saved.data.raw_path == str(raw) and saved.data.tables_dir == str(tables)
    # --input and --out win over the config, and the saved config records them
    other = tmp_path / "other"
    assert cli.main(["prepare", "--config", str(preset), "--input", str(raw), "--out", str(other)]) == 0
    assert load_config(other / "config.yaml").data.tables_dir == str(other)


def test_ray_job_scripts_take_their_commands_options():
    for name in ("train", "evaluate", "predict"):
        script = ROOT / "ray_jobs" / f"{name}.py"
        shown = subprocess.run(
            [sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=60, cwd=ROOT
        )
        assert shown.returncode == 0, shown.stderr
        parser = cli.build_parser()
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        options = {o for a in commands.choices[name]._actions for o in a.option_strings}
        assert options and all(option in shown.stdout for option in options), (name, options)
    assert (
        "--no-test"
        in subprocess.run(
            [sys.executable, "-m", "netgpt.cli", "train", "--help"], capture_output=True, text=True, cwd=ROOT
        ).stdout
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_absent_cluster_is_one_line_at_once(monkeypatch, capsys):
    address = f"127.0.0.1:{_free_port()}"  # nothing listens there
    started = time.monotonic()
    assert cli.main(["plan", "--address", address]) == 9
    assert capsys.readouterr().err.startswith(f"netgpt plan: error: no Ray cluster answers at {address}")
    monkeypatch.setenv("RAY_ADDRESS", f"ray://{address}")
    assert cli.main(["train", "--config", "demo"]) == 9
    assert capsys.readouterr().err.startswith(
        f"netgpt train: error: no Ray cluster answers at ray://{address}"
    )
    assert time.monotonic() - started < 30


def test_a_listening_address_passes_the_probe():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        cli.check_ray_address(f"127.0.0.1:{port}")
        cli.check_ray_address(f"ray://127.0.0.1:{port}")
    for left_to_ray in (None, "", "auto", "local", "http://127.0.0.1:8265"):
        cli.check_ray_address(left_to_ray)

"""`netgpt convert`: the folder on success; bad input as one line on stderr and exit status 7 (checkpoint or
model folder refused)."""

from __future__ import annotations

import pytest

from netgpt.cli import main

pytestmark = pytest.mark.timeout(300)


def test_convert_command(zero3_run, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["convert", str(zero3_run.run_dir), str(out), "--dtype", "bf16"]) == 0
    # the last line: DeepSpeed may print its accelerator warning first (when this test runs alone)
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(out)
    assert (out / "netgpt_config.json").is_file()
    assert main(["convert", str(zero3_run.run_dir), str(out)]) == 7
    err = capsys.readouterr().err
    assert err == f"netgpt convert: error: {out}: already exists; pass --overwrite to replace it\n"
    assert main(["convert", str(zero3_run.best), str(out), "--overwrite"]) == 0


def test_bad_input_is_one_line_and_exit_7(tmp_path, capsys):
    assert main(["convert", str(tmp_path), str(tmp_path / "out")]) == 7
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and f"{tmp_path}: not a checkpoint" in err
    assert not (tmp_path / "out").exists()

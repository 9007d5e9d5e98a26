"""The README-steps timer reads the README's own commands, each one a command the CLI parses."""

from pathlib import Path

import pytest

from netgpt.cli import build_parser

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def readme_steps(load_bench):
    return load_bench("readme_steps.py")


def test_the_timed_steps_are_the_readmes_netgpt_commands_and_the_cli_parses_each(readme_steps):
    commands = readme_steps.readme_steps(REPO / "README.md")
    names = [command[1] for command in commands]
    assert names[:4] == ["synth", "prepare", "build-graph", "train"]
    assert "tensorboard" not in {command[0] for command in commands}
    parser = build_parser()
    for command in commands:
        assert command[0] == "netgpt"
        parser.parse_args(command[1:])  # exits (fails the test) on a command the CLI does not take


def test_the_video_count_is_replaced_only_where_given(readme_steps, tmp_path):
    synth = ["netgpt", "synth", "--out", "x.json", "--videos", "3000"]
    assert readme_steps.with_videos(synth, 300) == ["netgpt", "synth", "--out", "x.json", "--videos", "300"]
    assert readme_steps.with_videos(synth, None) == synth
    readme = tmp_path / "README.md"
    readme.write_text(
        "# x\n\n## Step by step\n\n```\nnetgpt synth --out a.json  # made up\ntensorboard --logdir x\n```\n"
    )
    assert readme_steps.readme_steps(readme) == [["netgpt", "synth", "--out", "a.json"]]

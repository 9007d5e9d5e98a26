"""Benchmark: the README's "Step by step" commands, run as written and timed one by one.

Prints ONE JSON line: seconds per command (keyed by its subcommand), their total, the machine's core count
and its 1-minute load average before and after (a loaded machine's figures are not the README's).

    python tools/bench/readme_steps.py [--videos N] [--keep DIR]

The commands are read from README.md's first code block under "## Step by step", so what is timed is what
the README says; `tensorboard` (a server) is left out, and `predict`'s `new.json` is made first with
`netgpt synth` (20 videos, another seed), untimed. `--videos` replaces the `synth` command's count (a quick
check of the script; the README's figure is for the count it states). Every command runs in a fresh folder
(`--keep` to keep it), its `runs/` relative to it, with this repository's `netgpt` on the path.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LEFT_OUT = {"tensorboard"}


def readme_steps(readme: Path) -> list[list[str]]:
    """The commands of README.md's "Step by step" code block, comments stripped, as argument lists."""
    text = readme.read_text(encoding="utf-8")
    section = text.split("## Step by step", 1)
    if len(section) < 2:
        raise SystemExit(f"{readme}: no '## Step by step' section")
    block = re.search(r"```\n(.*?)```", section[1], re.DOTALL)
    if block is None:
        raise SystemExit(f"{readme}: no code block under '## Step by step'")
    commands = []
    for line in block.group(1).splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0] not in LEFT_OUT:
            commands.append(words)
    return commands


def with_videos(command: list[str], videos: int | None) -> list[str]:
    """`command` with its `--videos` count replaced by `videos` (when given)."""
    if videos is None or "--videos" not in command:
        return command
    index = command.index("--videos") + 1
    return [*command[:index], str(videos), *command[index + 1 :]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, help="replace the synth command's video count (a quick check)")
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it (default: a temporary one)")
    args = parser.parse_args()

    commands = [with_videos(c, args.videos) for c in readme_steps(REPO / "README.md")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    netgpt = [sys.executable, "-m", "netgpt.cli"]
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="netgpt-readme-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        seconds: dict[str, float] = {}
        for command in commands:
            if command[0] != "netgpt":
                raise SystemExit(f"README step {shlex.join(command)!r}: not a netgpt command")
            if command[1] == "predict":  # its input, made untimed
                new = command[command.index("--input") + 1]
                make = [*netgpt, "synth", "--out", new, "--videos", "20", "--seed", "1"]
                subprocess.run(make, cwd=folder, env=env, check=True, stdout=subprocess.DEVNULL)
            started = time.perf_counter()
            done = subprocess.run([*netgpt, *command[1:]], cwd=folder, env=env, stdout=subprocess.DEVNULL)
            if done.returncode:
                raise SystemExit(f"README step {shlex.join(command)!r} failed with status {done.returncode}")
            seconds[command[1]] = round(seconds.get(command[1], 0.0) + time.perf_counter() - started, 1)
    print(
        json.dumps(
            {
                "bench": "readme_steps",
                "seconds": seconds,
                "total_s": round(sum(seconds.values()), 1),
                "videos": args.videos,
                "cores": os.cpu_count(),
                "load_avg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            }
        )
    )


if __name__ == "__main__":
    main()

"""`ray job submit -- python ray_jobs/evaluate.py --model DIR [--model DIR] --config PRESET key=value`: score
model folders on a split of the graph store, on the cluster (Ray Data batch inference).

Runs the same function as `netgpt evaluate`; prints the markdown table and, with `--out`, writes the JSON
report (on storage every node sees).

    RAY_AUTH_MODE=token ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python ray_jobs/evaluate.py --model /shared/runs/netgpt/model --config xs_video evaluate.use_gpu=true
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the working dir ships the package source

from netgpt.cli import command_parser, run  # noqa: E402

PROG = "ray_jobs/evaluate.py"


def main(argv: Sequence[str] | None = None) -> int:
    """`netgpt evaluate`'s arguments, checks and errors (its exit codes), under this script's name."""
    return run(command_parser("evaluate", PROG).parse_args(argv), prog=PROG)


if __name__ == "__main__":
    sys.exit(main())

"""`ray job submit -- python ray_jobs/predict.py --model DIR --input new.json --out ratings.parquet`: rate new
videos on the cluster.

Runs the same function as `netgpt predict` (one process; a GPU when the job's node has one). The store and
tables are the config's `graph.store_dir` and `data.tables_dir`.

    RAY_AUTH_MODE=token ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python ray_jobs/predict.py --model runs/demo/ray/netgpt/model --input new.json --out ratings.parquet
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the working dir ships the package source

from netgpt.cli import command_parser, run  # noqa: E402

PROG = "ray_jobs/predict.py"


def main(argv: Sequence[str] | None = None) -> int:
    """`netgpt predict`'s arguments, checks and errors (its exit codes), under this script's name."""
    return run(command_parser("predict", PROG).parse_args(argv), prog=PROG)


if __name__ == "__main__":
    sys.exit(main())

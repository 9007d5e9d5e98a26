"""`ray job submit -- python ray_jobs/train.py --config PRESET key=value ...`: train NetGPT on the cluster.

Runs the same functions as `netgpt train`: `train`, then `export_run` (the HF-format NetGPT folder
`<run>/model`, converted on the driver from the best checkpoint of the last stage). Submitting again with
the same `train.storage_path` and `train.run_name` resumes from the latest complete checkpoint.

    RAY_AUTH_MODE=token ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python ray_jobs/train.py --config demo train.num_workers=2
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the working dir ships the package source

from netgpt.cli import command_parser, run  # noqa: E402

PROG = "ray_jobs/train.py"


def main(argv: Sequence[str] | None = None) -> int:
    """`netgpt train`'s arguments, checks and errors (its exit codes), under this script's name."""
    return run(command_parser("train", PROG).parse_args(argv), prog=PROG)


if __name__ == "__main__":
    sys.exit(main())

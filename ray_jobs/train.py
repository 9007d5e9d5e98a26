"""`ray job submit -- python ray_jobs/train.py --config PRESET key=value ...`: train NetGPT on the cluster.

Runs the same functions as `netgpt train`: `train`, then `export_run` (the HF-format NetGPT folder
`<run>/model`, converted on the driver from the best checkpoint of the last stage). Submitting again with
the same `train.storage_path` and `train.run_name` resumes from the latest complete checkpoint.

    RAY_AUTH_MODE=token ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python ray_jobs/train.py --config demo train.num_workers=2

`--all-gpus` sets `train.num_workers` to the GPUs the cluster has (one Train worker, one DeepSpeed rank per
GPU): on a fixed-size cluster (the k8s overlays set its size in one place) the run then follows the
cluster's size without a second number to keep in step.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the working dir ships the package source

from netgpt.cli import command_parser, run  # noqa: E402

PROG = "ray_jobs/train.py"


def main(argv: Sequence[str] | None = None) -> int:
    """`netgpt train`'s arguments, checks and errors (its exit codes), under this script's name, plus
    `--all-gpus`."""
    parser = command_parser("train", PROG)
    parser.add_argument(
        "--all-gpus", action="store_true", help="one Train worker per GPU of the cluster (train.num_workers)"
    )
    args = parser.parse_args(argv)
    if args.all_gpus:
        args.overrides = [*args.overrides, f"train.num_workers={_cluster_gpus()}", "train.use_gpu=true"]
    return run(args, prog=PROG)


def _cluster_gpus() -> int:
    """The GPUs of the Ray cluster this job runs on; exits with one line when it has none."""
    import ray

    if not ray.is_initialized():
        ray.init()  # inside `ray job submit`: joins the job's cluster
    gpus = int(ray.cluster_resources().get("GPU", 0))
    if gpus < 1:
        raise SystemExit("ray_jobs/train.py: error: --all-gpus, and the Ray cluster has no GPU")
    return gpus


if __name__ == "__main__":
    sys.exit(main())

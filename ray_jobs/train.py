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

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the working dir ships the package source

from netgpt.config import load_config  # noqa: E402
from netgpt.ray_version import require_tested_ray  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="demo", help="preset name (demo, xs_video) or a YAML path")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.num_workers=4")
    parser.add_argument("--no-test", action="store_true", help="skip scoring the test split at the end")
    parser.add_argument(
        "--all-gpus", action="store_true", help="one Train worker per GPU of the cluster (train.num_workers)"
    )
    args = parser.parse_args(argv)
    require_tested_ray("ray_jobs/train.py")
    from netgpt.convert import export_run  # after the check: these import Ray Train
    from netgpt.train.run import train

    overrides = list(args.overrides)
    if args.all_gpus:
        overrides += [f"train.num_workers={_cluster_gpus()}", "train.use_gpu=true"]
    config = load_config(args.config, overrides)
    result = train(config, evaluate_test=not args.no_test)  # progress as plain lines in the job log
    model = export_run(result.run_dir)
    summary = {
        "run_dir": str(result.run_dir),
        "model": str(model),
        "resumed_from": result.progress["resumed_from"],
        **result.metrics,
    }
    print(json.dumps(summary, ensure_ascii=False))
    return 0


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

"""`ray job submit -- python ray_jobs/train.py --config PRESET key=value ...`: train NetGPT on the cluster.

Runs the same functions as `netgpt train`: `train`, then `export_run` (the HF-format NetGPT folder
`<run>/model`, converted on the driver from the best checkpoint of the last stage). Submitting again with
the same `train.storage_path` and `train.run_name` resumes from the latest complete checkpoint.

    RAY_AUTH_MODE=token ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python ray_jobs/train.py --config demo train.num_workers=2
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
    args = parser.parse_args(argv)
    require_tested_ray("ray_jobs/train.py")
    from netgpt.convert import export_run  # after the check: these import Ray Train
    from netgpt.train.run import train

    config = load_config(args.config, args.overrides)
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


if __name__ == "__main__":
    sys.exit(main())

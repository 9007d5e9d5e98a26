"""`ray job submit -- python ray_jobs/evaluate.py --model DIR [--model DIR] --config PRESET key=value`: score
model folders on a split of the graph store, on the cluster (Ray Data batch inference).

Runs the same function as `netgpt evaluate`; prints the markdown table and, with `--out`, writes the JSON
report (on storage every node sees).

    RAY_AUTH_MODE=token ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python ray_jobs/evaluate.py --model /shared/runs/netgpt/model --config xs_video evaluate.use_gpu=true
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the working dir ships the package source

from netgpt.config import load_config  # noqa: E402
from netgpt.ray_version import require_tested_ray  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, help="a NetGPT folder (repeatable)")
    parser.add_argument("--config", default="demo", help="preset name (demo, xs_video) or a YAML path")
    parser.add_argument("--out", help="write the JSON report here")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. evaluate.split=val")
    args = parser.parse_args(argv)
    require_tested_ray("ray_jobs/evaluate.py")
    from netgpt.evaluate.run import evaluate_models, write_report  # after the check: it imports Ray

    report = evaluate_models(load_config(args.config, args.overrides), args.model, show_progress=False)
    print(report.markdown())
    if args.out:
        write_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

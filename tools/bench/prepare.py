"""Benchmark: import synthetic XS-Video JSON at 1/20 and 1/10 of the real size; print one JSON line.

Each import runs in a fresh subprocess, so its peak RSS is its own. The baseline, measured in the same run on
the same files: `json.load` of the whole file (what streaming avoids), and an idle interpreter that has
imported the importer (the floor under every figure). Goals: 1/10 scale under 60 s on 2 cores, and peak RSS
at 1/10 at most 1.3 x that at 1/20.

    python tools/bench/prepare.py [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # results.py, beside this file

from results import emit, keep_stdout_for_results  # noqa: E402

from netgpt.data.synthetic import write_synthetic  # noqa: E402

XS_VIDEO_VIDEOS = 117_720
SCALES = {"1/20": 20, "1/10": 10}

_IMPORT = """
import json, resource, sys, time
from netgpt.config import DataConfig
from netgpt.data.importer import import_json
started = time.perf_counter()
summary = import_json(sys.argv[1], sys.argv[2], DataConfig(), progress=False)
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"samples": summary.samples, "seconds": seconds, "peak_rss_mb": peak}))
"""
_JSON_LOAD = """
import json, resource, sys, time
started = time.perf_counter()
data = json.load(open(sys.argv[1], encoding="utf-8"))
seconds = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"samples": len(data), "seconds": seconds, "peak_rss_mb": peak}))
"""
_IDLE = """
import json, resource
import netgpt.data.importer
print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _child(code: str, *args: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--work", default=None, help="folder for the generated files (default: a temp folder)"
    )
    args = parser.parse_args()
    keep_stdout_for_results()
    with tempfile.TemporaryDirectory(dir=args.work) as work:
        result: dict = {"bench": "prepare", "idle_rss_mb": round(_child(_IDLE)["peak_rss_mb"], 1)}
        for name, divisor in SCALES.items():
            raw = write_synthetic(
                Path(work) / f"xs_{divisor}.json", videos=XS_VIDEO_VIDEOS // divisor, seed=0
            )
            run = _child(_IMPORT, str(raw), str(Path(work) / f"tables_{divisor}"))
            baseline = _child(_JSON_LOAD, str(raw))
            result[name] = {
                "input_mb": round(raw.stat().st_size / 2**20, 1),
                "samples": run["samples"],
                "seconds": round(run["seconds"], 2),
                "samples_per_s": round(run["samples"] / run["seconds"]),
                "peak_rss_mb": round(run["peak_rss_mb"], 1),
                "baseline_json_load": {
                    "seconds": round(baseline["seconds"], 2),
                    "peak_rss_mb": round(baseline["peak_rss_mb"], 1),
                },
            }
    ratio = result["1/10"]["peak_rss_mb"] / result["1/20"]["peak_rss_mb"]
    result["rss_ratio_1/10_over_1/20"] = round(ratio, 3)
    result["goals_met"] = {
        "1/10_under_60_s": result["1/10"]["seconds"] < 60,
        "rss_ratio_at_most_1.3": ratio <= 1.3,
    }
    emit(result)


if __name__ == "__main__":
    main()

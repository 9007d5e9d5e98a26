"""`ray job submit -- python ray_jobs/prepare.py --input xs_video.json --out TABLES --config PRESET`: import
the XS-Video JSON into validated, split parquet tables, on the cluster (the job's driver, on the head node).

Runs the same function as `netgpt prepare`. Both paths must be on storage every node sees (the k8s manifests
mount the shared claim at /data), since the graph build and training read the tables from there.

    RAY_AUTH_MODE=token ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python ray_jobs/prepare.py --input /data/xs_video/xs_video.json --out /data/netgpt/tables \
        --config xs_video
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the working dir ships the package source

from netgpt.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["prepare", *sys.argv[1:]]))

"""`ray job submit -- python ray_jobs/predict.py --model DIR --input new.json --out ratings.parquet`: rate new
videos on the cluster.

Runs the same function as `netgpt predict` (one process; a GPU when the job's node has one). The store and
tables are the config's `graph.store_dir` and `data.tables_dir`.

    RAY_AUTH_MODE=token ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python ray_jobs/predict.py --model runs/demo/ray/netgpt/model --input new.json --out ratings.parquet
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the working dir ships the package source

from netgpt.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["predict", *sys.argv[1:]]))

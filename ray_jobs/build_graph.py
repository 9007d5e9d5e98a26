"""`ray job submit -- python ray_jobs/build_graph.py --config PRESET key=value ...`: build the partitioned
propagation-graph store from the parquet tables, on the cluster.

Runs the same function as `netgpt build-graph` (its Ray tasks join the job's cluster): it reads
`data.tables_dir` and writes `graph.store_dir`, both on storage every node sees.

    RAY_AUTH_MODE=token ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python ray_jobs/build_graph.py --config xs_video
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the working dir ships the package source

from netgpt.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["build-graph", *sys.argv[1:]]))

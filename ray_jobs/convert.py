"""`ray job submit -- python ray_jobs/convert.py CHECKPOINT OUT [--dtype bf16]`: consolidate a run's DeepSpeed
ZeRO checkpoint into an HF-format NetGPT folder, on the cluster (the job's driver, on the head node).

Runs the same function as `netgpt convert`; CHECKPOINT may be a run folder (its latest checkpoint), a
`best/<stage>` folder or one checkpoint. Training already writes `<run>/model` at its end: this is for a
checkpoint in the middle of a run, another dtype, or a run stopped early.

    RAY_AUTH_MODE=token ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python ray_jobs/convert.py /data/netgpt/runs/xs_video /data/netgpt/models/xs_video-bf16 --dtype bf16
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the working dir ships the package source

from netgpt.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["convert", *sys.argv[1:]]))

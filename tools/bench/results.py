"""The benches' JSON lines: stdout holds them and nothing else.

DeepSpeed's logger, Ray, the training progress, the demo's table and native libraries (NCCL) all print to
stdout. `keep_stdout_for_results` points file descriptor 1 at stderr, native code included, and keeps a
private copy of the real stdout, to which `emit` writes one JSON line per record.
"""

from __future__ import annotations

import json
import os
import sys
from typing import TextIO

_results: TextIO | None = None
"""The private copy of stdout, once `keep_stdout_for_results` has run; until then `emit` uses stdout."""


def keep_stdout_for_results() -> TextIO:
    """Send everything else printed (by Python or native code) to stderr; return the stream for results."""
    global _results
    sys.stdout.flush()
    _results = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return _results


def emit(record: dict) -> None:
    """One JSON line (non-ASCII text kept as it is) on the results stream."""
    print(json.dumps(record, ensure_ascii=False), file=_results or sys.stdout, flush=True)

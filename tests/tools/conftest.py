"""What the bench tests share: a script of tools/bench run as its users run it, its JSON lines read back."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


def _run_bench(
    script: str, *args: str, timeout: float = 200, cwd: Path = REPO, env: dict[str, str] | None = None
) -> list[dict]:
    """`tools/bench/<script> args` in a process of its own (the repo on its path, `env` added to this one's);
    every line of its stdout parsed as JSON, the benches printing only their results there. A failed run
    fails the test with the end of its stderr."""
    done = subprocess.run(
        [sys.executable, str(REPO / "tools" / "bench" / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        cwd=cwd,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines()]


@pytest.fixture
def run_bench() -> Callable[..., list[dict]]:
    return _run_bench


def _load_bench(script: str) -> ModuleType:
    """`tools/bench/<script>` loaded afresh as a module (`<stem>_bench`), its `main` not run: for testing its
    helpers. It is registered in `sys.modules` before it runs, as an import would be, because a dataclass
    looks its module up there."""
    path = REPO / "tools" / "bench" / script
    spec = importlib.util.spec_from_file_location(f"{path.stem}_bench", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def load_bench() -> Callable[[str], ModuleType]:
    return _load_bench

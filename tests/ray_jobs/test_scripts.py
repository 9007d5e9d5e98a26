"""The ray_jobs/ entry scripts the RayJobs of k8s/ run: the thin ones reach their `netgpt` subcommand, and
train.py's --all-gpus sizes the run to the cluster's GPUs."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "script, usage",
    [
        ("prepare.py", "netgpt prepare"),
        ("build_graph.py", "netgpt build-graph"),
        ("convert.py", "netgpt convert"),
    ],
)
def test_thin_scripts_hand_over_to_their_subcommand(script, usage):
    done = subprocess.run(
        [sys.executable, str(REPO / "ray_jobs" / script), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: {usage}")


def _train_script():
    spec = importlib.util.spec_from_file_location("ray_jobs_train", REPO / "ray_jobs" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def fake_run(monkeypatch):
    """ray, train and export_run replaced: what config the script hands to training."""
    import ray

    import netgpt.convert
    import netgpt.train.run

    seen = {}

    def train(config, evaluate_test=True):
        seen["config"] = config
        return SimpleNamespace(run_dir=Path("/run"), progress={"resumed_from": None}, metrics={})

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kwargs: seen.setdefault("init", kwargs))
    monkeypatch.setattr(netgpt.train.run, "train", train)
    monkeypatch.setattr(netgpt.convert, "export_run", lambda run_dir: run_dir / "model")
    return seen


def test_all_gpus_runs_one_train_worker_per_gpu_of_the_cluster(fake_run, monkeypatch, capsys):
    import ray

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 64.0, "GPU": 8.0})
    assert _train_script().main(["--config", "demo", "--all-gpus", "--no-test"]) == 0
    assert fake_run["init"] == {}  # joins the job's cluster
    assert fake_run["config"].train.num_workers == 8 and fake_run["config"].train.use_gpu
    assert '"model": "/run/model"' in capsys.readouterr().out


def test_all_gpus_on_a_cluster_without_gpus_stops_with_one_line(fake_run, monkeypatch):
    import ray

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 64.0})
    with pytest.raises(SystemExit, match="--all-gpus, and the Ray cluster has no GPU"):
        _train_script().main(["--config", "demo", "--all-gpus"])
    assert "config" not in fake_run


def test_without_all_gpus_the_config_decides(fake_run):
    assert _train_script().main(["--config", "demo", "train.num_workers=3"]) == 0
    assert fake_run["config"].train.num_workers == 3 and "init" not in fake_run

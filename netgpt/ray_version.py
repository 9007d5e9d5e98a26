"""The Ray this release is tested with, checked before any command starts or joins a Ray cluster.

Ray Train's API moves between minor releases (2.60 runs Train v2: the controller, the storage layout and
the checkpoint reports the trainer relies on), and `ray job submit` runs on whatever Ray the cluster's image
holds, so a mismatch is refused at start-up with both versions named instead of failing somewhere inside a
run. pyproject.toml pins the same minor (a test keeps the two in step); this module imports nothing of Ray,
so the check also runs where the package is shipped as source (`--working-dir`), not installed.
"""

from __future__ import annotations

from importlib import metadata

from packaging.version import Version

TESTED_RAY = (2, 60)
"""Major and minor version of Ray that the tests run on; any patch release of it is accepted."""

RAY_REQUIREMENT = "ray[default,train,data]==2.60.*"
"""What to install: the dashboard and job server (`default`), Ray Train and Ray Data."""


class RayVersionError(RuntimeError):
    """The installed Ray is missing or not of the tested minor version."""


def installed_ray() -> str | None:
    """The installed Ray's version, or None when Ray is not installed."""
    try:
        return metadata.version("ray")
    except metadata.PackageNotFoundError:
        return None


def check_ray_version(installed: str | None = None) -> None:
    """Raise `RayVersionError` unless the installed Ray (or `installed`) is of the tested minor version."""
    installed = installed if installed is not None else installed_ray()
    required = ".".join(map(str, TESTED_RAY))
    fix = f"install it with: pip install '{RAY_REQUIREMENT}'"
    if installed is None:
        raise RayVersionError(f"netgpt needs Ray {required}.x, and Ray is not installed; {fix}")
    if Version(installed).release[:2] != TESTED_RAY:
        raise RayVersionError(
            f"netgpt needs Ray {required}.x (the version it is tested with), installed is Ray {installed}; "
            f"{fix} (on a cluster: in the image every node runs)"
        )

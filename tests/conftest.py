"""Fixtures shared across test packages."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def ray_cluster():
    """One in-process Ray cluster for the whole session (a process can hold only one), never an existing one.

    8 logical CPUs on 2 cores: room for 2 train workers, the sampler actors and the progress actor."""
    import ray

    ray.init(address="local", num_cpus=8, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()

"""RNG states round-trip through safetensors + JSON; old pickled files load without running code."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from netgpt.train.rng_state import (
    RngStateError,
    legacy_rng_file,
    load_rng_state,
    rng_file,
    save_rng_state,
)


def _draws():
    return (
        random.random(),
        random.gauss(0, 1),
        np.random.random(),
        np.random.normal(),
        torch.rand(2).tolist(),
    )


def test_every_generator_continues_where_it_was_saved(tmp_path):
    random.gauss(0, 1), np.random.normal()  # leave a cached Gaussian in both
    path = save_rng_state(tmp_path, 3)
    assert path == rng_file(tmp_path, 3) and path.read_bytes()[8:9] == b"{"  # safetensors: a JSON header
    expected = _draws()
    load_rng_state(tmp_path, 3)
    assert _draws() == expected


def test_a_missing_rng_file_is_an_error_naming_it(tmp_path):
    with pytest.raises(
        RngStateError, match=r"rng/rank1.safetensors: missing; the checkpoint .* is incomplete"
    ):
        load_rng_state(tmp_path, 1)


def test_a_damaged_rng_file_is_an_error_naming_it(tmp_path):
    path = save_rng_state(tmp_path, 0)
    path.write_bytes(b"\x10" + path.read_bytes()[1:])
    with pytest.raises(RngStateError, match=r"rng/rank0.safetensors: damaged RNG state file"):
        load_rng_state(tmp_path, 0)


def test_an_old_pickled_rng_file_still_loads(tmp_path):
    legacy_rng_file(tmp_path, 0).parent.mkdir()
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    torch.save(state, legacy_rng_file(tmp_path, 0))  # what netgpt wrote before
    expected = _draws()
    load_rng_state(tmp_path, 0)
    assert _draws() == expected


def test_an_old_rng_file_cannot_run_code(tmp_path, code_running_pickle):
    legacy_rng_file(tmp_path, 0).parent.mkdir()
    torch.save({"python": code_running_pickle(tmp_path / "ran")}, legacy_rng_file(tmp_path, 0))
    with pytest.raises(RngStateError, match=r"rng/rank0.pt: unreadable RNG state file of an older netgpt"):
        load_rng_state(tmp_path, 0)
    assert not (tmp_path / "ran").exists()

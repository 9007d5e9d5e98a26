"""Inputs built to exhaust memory are refused at their sample, within a small memory limit."""

import io
import resource
import subprocess
import sys

import pytest

from netgpt.data.jsonstream import MAX_DEPTH, MAX_ITEMS, iter_samples
from netgpt.data.validate import DataError

MEMORY_LIMIT = 1 << 30
"""Address space of the child: imports take about half of it; 100,000 nested `[` used to take 23 GB."""


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("[" * 100_000 + "]" * 100_000, "0.0.0.0.0.0.0.0"),
        ('{"a":' * 100_000 + "1" + "}" * 100_000, "a.a.a.a.a.a.a.a"),
    ],
    ids=["100k nested lists", "100k nested objects"],
)
def test_deep_nesting_is_refused_within_a_memory_limit(tmp_path, body, field):
    path = tmp_path / "bomb.json"
    path.write_text('{"0": ' + body + "}")
    done = subprocess.run(
        [sys.executable, "-m", "netgpt.cli", "prepare", "--input", str(path), "--out", str(tmp_path / "t")],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_limited,
    )
    assert done.returncode != 0
    assert f"{path}: sample 0: field '{field}': nested deeper than {MAX_DEPTH} levels" in done.stderr
    assert "MemoryError" not in done.stderr and not (tmp_path / "t").exists()


def _samples(text: str) -> list:
    return list(iter_samples(io.BytesIO(text.encode()), "x.json"))


def test_too_many_items_in_a_list_is_refused():
    with pytest.raises(DataError, match=r"sample 7: field 'h\.100000': more than 100,000 items in a list"):
        _samples('{"7": {"h": [' + ",".join(["1"] * (MAX_ITEMS + 1)) + "]}}")


def test_values_are_built_as_json_says():
    text = '{"0": {"a": [1, 2.5, "x", true, null, {"b": []}], "c": {}}, "1": []}'
    assert _samples(text) == [("0", {"a": [1, 2.5, "x", True, None, {"b": []}], "c": {}}), ("1", [])]

"""The package floors: training never imports conversion (the entry points call it)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import netgpt

pytestmark = pytest.mark.timeout(60)


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_train_does_not_import_convert():
    train = Path(netgpt.__file__).parent / "train"
    offenders = {
        str(path.name): sorted(name for name in _imports(path) if name.startswith("netgpt.convert"))
        for path in train.glob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_convert_imports_only_model_config_store_and_checkpoint_layout():
    convert = Path(netgpt.__file__).parent / "convert"
    allowed = (
        "netgpt.convert",
        "netgpt.model",
        "netgpt.config",
        "netgpt.train.checkpoint",
        "netgpt.train.best_swap",  # which folder is a stage's complete best (checkpoint layout, no engine)
        "netgpt.graph.store",
        "netgpt.atomic",  # writing the model folder under a temporary name, then renaming it
    )
    used = {name for path in convert.glob("*.py") for name in _imports(path) if name.startswith("netgpt")}
    assert used and all(name.startswith(allowed) for name in used), sorted(used)

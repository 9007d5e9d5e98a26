"""The epoch plan's module stays light: Ray Data's task workers import it before their first batch."""

import subprocess
import sys


def test_the_plan_module_imports_neither_torch_nor_pyg() -> None:
    probe = (
        "import sys, netgpt.graph.plan; "
        "print(sorted(m for m in ('torch', 'torch_geometric', 'transformers') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"

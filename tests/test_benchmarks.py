"""The benchmark scripts still import against the package (they are not run here).

Two of them (train_throughput.py, train_memory.py) once imported modules that a refactor
had moved, and nothing noticed until someone ran them.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(BENCHMARKS.glob("*.py"))
LIBRARIES = {"baseline.py", "machine.py"}  # imported by the scripts, not run


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_benchmark_imports(script, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"benchmark_{script.stem}", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # top-level imports only: main() is behind __main__
    assert script.name in LIBRARIES or callable(getattr(module, "main", None))
    sys.modules.pop(spec.name, None)

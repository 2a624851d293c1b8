"""Tests of the datamodules package as a whole: lazy imports, names and dependency direction."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import datamodules

PACKAGE = Path(datamodules.__file__).parent
MODULES = sorted(PACKAGE.rglob("*.py"))


def _imported(path: Path) -> set[str]:
    """Top-level package of every import statement in a file, wherever it stands."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_datamodules_never_imports_flashdepth() -> None:
    """``flashdepth`` depends on ``datamodules`` (its CLI, recipes), never the reverse."""
    assert len(MODULES) > 30
    offending = [str(p.relative_to(PACKAGE)) for p in MODULES if "flashdepth" in _imported(p)]
    assert offending == []


def test_no_module_is_named_like_a_standard_library_module() -> None:
    shadowing = [p.stem for p in MODULES if p.stem in sys.stdlib_module_names]
    assert shadowing == []
    assert not (PACKAGE / "inspect.py").exists()


def test_importing_the_package_loads_neither_torch_nor_lightning() -> None:
    loaded = "sorted({'lightning', 'torch', 'datamodules.clips'} & set(sys.modules))"
    probe = f"import sys, datamodules; print({loaded})"
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]"

"""Doctests run with the tests: `pytest` collects pyapp, models and server with
--doctest-modules (pyproject). pyapp modules that import what only the browser provides (``js``,
``pyodide``, the modules web/worker.js registers) cannot be imported under CPython and are left
out of that collection; the browser tests run them."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path


def _imports_browser_only_module(path: Path) -> bool:
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        if any(importlib.util.find_spec(name.split(".")[0]) is None for name in names):
            return True
    return False


def pytest_ignore_collect(collection_path: Path, config):
    root = Path(__file__).resolve().parent
    if (collection_path.suffix == ".py" and collection_path.is_relative_to(root / "pyapp")
            and _imports_browser_only_module(collection_path)):
        return True
    return None

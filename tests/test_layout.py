"""The import graph, read from the source (AST, function-level imports included): layers import
downward only (server → models → pyapp), nothing imports in a circle, and ``pyapp`` — the
browser's code — imports nothing but itself, the standard library and what the browser provides.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("pyapp", "models", "server")  # lowest first: a module may import its own layer or lower
#: what pyapp may import besides itself and the standard library: its browser wheels' packages
#: (server/runtime.py BROWSER_REQUIREMENTS) and the modules Pyodide / web/worker.js provide.
BROWSER_PROVIDED = {"pydantic", "pyodide", "js", "edge_triage_encoders",
                    "edge_triage_lm"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for layer in LAYERS for p in sorted((ROOT / layer).rglob("*.py"))}


def imported_names(name: str, path: Path) -> set[str]:
    """Every dotted name ``path`` imports, relative imports resolved (``from . import x`` gives
    both the package and ``package.x``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            names.add(target)
            names.update(f"{target}.{alias.name}" for alias in node.names)
    return names


def import_graph() -> dict[str, set[str]]:
    """module → the modules of this repository it imports (the most specific one per name)."""
    mods = modules()
    return {name: {n for n in imported_names(name, path) if n in mods and n != name}
            for name, path in mods.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph)))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def browser_entry_points() -> set[str]:
    """The Python modules web/worker.js imports (``pyodide.pyimport("…")``)."""
    return set(re.findall(r"""pyimport\(\s*["']([\w.]+)["']""",
                          (ROOT / "web" / "worker.js").read_text(encoding="utf-8")))


def browser_modules() -> set[str]:
    """Every pyapp module the browser runs: the entry points, what they import, transitively,
    and the packages above each (importing ``a.b`` runs ``a/__init__.py``)."""
    graph = import_graph()
    seen: set[str] = set()
    todo = list(browser_entry_points())
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(graph[name])
        todo.extend(name.rsplit(".", i)[0] for i in range(1, name.count(".") + 1))
    return seen


def test_layers_import_downward_only():
    upward = [(a, b) for a, deps in import_graph().items() for b in deps
              if LAYERS.index(b.split(".")[0]) > LAYERS.index(a.split(".")[0])]
    assert upward == []


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_pyapp_imports_only_itself_the_stdlib_and_the_browser_packages():
    outside = {}
    for name, path in modules().items():
        if name.split(".")[0] != "pyapp":
            continue
        tops = {n.split(".")[0] for n in imported_names(name, path)}
        bad = tops - {"pyapp", "__future__"} - set(sys.stdlib_module_names) - BROWSER_PROVIDED
        if bad:
            outside[name] = sorted(bad)
    assert outside == {}


def test_browser_entry_points_are_read_from_the_worker():
    entry_points = browser_entry_points()
    assert entry_points and entry_points <= set(modules()), entry_points


def test_pyapp_is_exactly_the_browser_code():
    pyapp = {name for name in modules() if name.split(".")[0] == "pyapp"}
    assert pyapp - browser_modules() == set()  # shipped but never imported in the browser
    assert browser_modules() <= pyapp

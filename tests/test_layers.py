"""The package's layers point down: the graph of which module imports which (at module level
or inside a function, ``TYPE_CHECKING`` blocks aside) has no cycle but those listed in
KNOWN_CYCLES, a list that may only shrink (issue 16 empties it)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src"
PACKAGE = "whichvoice"

# groups of modules that import each other today; remove a group once it is untangled
KNOWN_CYCLES: list[set[str]] = []


def module_names() -> dict[str, Path]:
    out = {}
    for path in (SRC / PACKAGE).rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name | ast.Attribute) and "TYPE_CHECKING" in ast.unparse(
        node.test
    )


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``path`` imports (a submodule, not the package root: every
    import of a submodule runs the root's __init__ first, which imports nothing heavy)."""
    tree = ast.parse(path.read_text())
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and _is_type_checking(node)
            for n in ast.walk(node)}  # fmt: skip
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith(PACKAGE):
                found.add(node.module)
                found |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith(PACKAGE)}
    return {m for m in found if m in modules and m != PACKAGE}


def import_graph() -> dict[str, set[str]]:
    modules = module_names()
    return {
        name: {m for m in imports_of(path, modules) if m != name}
        for name, path in modules.items()
        if name != PACKAGE
    }


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_cycles() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_but_the_known_ones() -> None:
    found = cycles(import_graph())
    new = [sorted(c) for c in found if not any(c <= known for known in KNOWN_CYCLES)]
    assert not new, f"new import cycles: {new}"
    gone = [sorted(k) for k in KNOWN_CYCLES if not any(k & c for c in found)]
    assert not gone, f"untangled, remove from KNOWN_CYCLES: {gone}"


@pytest.mark.slow
def test_each_module_imports_alone() -> None:
    """Each module in a fresh interpreter: no module works only because another was
    imported first."""
    names = sorted(n for n in module_names() if not n.endswith("__main__"))
    script = "import importlib, sys; importlib.import_module(sys.argv[1])"

    def run(name: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", script, name], capture_output=True, text=True, timeout=120
        )

    # one interpreter a core at a time: each is its own process, so they cannot share state
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        procs = dict(zip(names, pool.map(run, names), strict=True))
    failed = {
        name: proc.stderr.strip().splitlines()[-1]
        for name, proc in procs.items()
        if proc.returncode != 0
    }
    assert not failed, failed

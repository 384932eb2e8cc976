"""The layering rules hold: the engine never imports Qt; lint is clean."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed; install the test extra: pip install -e '.[test]'")
    return found


def test_import_contracts_hold():
    result = subprocess.run([_tool("lint-imports")], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


def _cycles(graph) -> list[list[str]]:
    """The import cycles of ``graph`` (a grimp graph): its strongly connected components of
    more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for other in sorted(graph.find_modules_directly_imported_by(module)):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def test_the_cycle_finder_finds_a_cycle():
    import grimp

    graph = grimp.ImportGraph()
    for importer, imported in (("a.x", "a.y"), ("a.y", "a.z"), ("a.z", "a.x"), ("a.z", "a.w"), ("a.w", "a.v")):
        graph.add_import(importer=importer, imported=imported)
    assert _cycles(graph) == [["a.x", "a.y", "a.z"]]


def test_no_import_cycles():
    """No two modules import each other, directly or through others, even lazily inside a
    function (grimp reads every import statement): floors point down, rooms do not loop."""
    code = ("import grimp, json; g = grimp.build_graph('vizapp', 'models', 'widgets', cache_dir=None); "
            "print(json.dumps({m: sorted(g.find_modules_directly_imported_by(m)) for m in g.modules}))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    edges = json.loads(result.stdout)

    class Graph:
        modules = set(edges)

        @staticmethod
        def find_modules_directly_imported_by(module):
            return set(edges.get(module, ()))

    assert {"models.loading", "vizapp.explain.attribution.run", "widgets.main_window"} <= set(edges)  # all read
    assert _cycles(Graph) == []


def test_ruff_is_clean():
    result = subprocess.run([_tool("ruff"), "check", "main.py", "vizapp", "widgets", "models", "tests", "benchmarks"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_emitting_a_qt_signal_keeps_the_reference_count_of_true():
    """PySide6 6.12.0 drops a reference to ``True`` on every Python-side ``Signal.emit``;
    on Python < 3.12 (``True`` is not immortal) the process aborts with "bool_dealloc"
    once the count reaches zero, which a GUI session or the test suite reaches. Run in a
    subprocess so a broken binding fails this test, not the interpreter running the suite."""
    code = (
        "import sys\n"
        "from PySide6.QtCore import QCoreApplication, QObject, Signal\n"
        "app = QCoreApplication([])\n"
        "class O(QObject):\n"
        "    s = Signal(object)\n"
        "o = O(); o.s.connect(lambda x: None)\n"
        "before = sys.getrefcount(True)\n"
        "for _ in range(50): o.s.emit('x')\n"
        "print(sys.getrefcount(True) - before)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.split()[-1]) >= 0, "this PySide6 leaks references to True on emit: avoid it (pyproject)"

"""The layering rules hold: the engine never imports Qt; lint is clean."""

from __future__ import annotations

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

"""Shared helpers for the benchmark scripts: options, device report, timing, the summary table.

Not a test module: nothing here asserts on timings. Each ``bench_*.py`` exposes
``run(quick: bool, threads: int | None) -> list[Result]`` and a ``main()`` for running alone;
``run_all.py`` calls every ``run`` in one process and prints one table.
"""

from __future__ import annotations

import argparse
import atexit
import gc
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without ``pip install -e .``
    sys.path.insert(0, str(ROOT))

__all__ = [
    "AtLeast",
    "Result",
    "parse_args",
    "setup_threads",
    "device_report",
    "print_header",
    "print_table",
    "median_ms",
    "percentile",
    "fmt_ms",
    "interleaved",
    "load_cached_model",
    "setup_gui_env",
    "make_app",
]


@dataclass
class Result:
    """One line of the summary table.

    ``target`` is an upper bound (lower is better); ``None`` means the row is for
    information only. ``unit`` is ``"ms"`` or ``"x"`` (a ratio).
    """

    bench: str
    name: str
    value: float
    unit: str
    target: float | None = None
    note: str = ""
    error: bool = False

    @property
    def status(self) -> str:
        if self.error:
            return "ERROR"
        if self.target is None:
            return "info"
        return "pass" if self.value <= self.target else "MISS"

    def value_text(self) -> str:
        return "-" if self.error else _fmt(self.value, self.unit)

    def target_text(self) -> str:
        return "-" if self.target is None else f"<= {_fmt(self.target, self.unit)}"


@dataclass
class AtLeast(Result):
    """A summary row whose target is a lower bound (higher is better)."""

    @property
    def status(self) -> str:
        if self.error:
            return "ERROR"
        if self.target is None:
            return "info"
        return "pass" if self.value >= self.target else "MISS"

    def target_text(self) -> str:
        return "-" if self.target is None else f">= {_fmt(self.target, self.unit)}"


def _fmt(value: float, unit: str) -> str:
    if unit == "x":
        return f"{value:.3f}x"
    if unit == "ms":
        return f"{value:.1f} ms" if value >= 10 else f"{value:.2f} ms"
    return f"{value:.3g} {unit}"


def fmt_ms(seconds: float) -> str:
    return _fmt(seconds * 1000.0, "ms")


# --- options and environment ---------------------------------------------------------


def parse_args(description: str, argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a short run (fewer repetitions)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (default: cores - 1, as the app's configure_threads does)",
    )
    return parser.parse_args(argv)


def setup_threads(threads: int | None) -> int:
    """Set torch's thread count the way the app does (cores - 1) unless told otherwise."""
    import torch

    from vizapp.probing.device import configure_threads

    if threads is None:
        return configure_threads(leave_for_gui=1)
    torch.set_num_threads(max(1, threads))
    return torch.get_num_threads()


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_report() -> dict[str, str]:
    import numpy as np
    import torch

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    info = {
        "cpu": _cpu_model(),
        "cores": f"{os.cpu_count()} logical, {usable} usable by this process",
        "torch": f"{torch.__version__} (cuda available: {torch.cuda.is_available()})",
        "torch threads": f"{torch.get_num_threads()} intra-op, {torch.get_num_interop_threads()} inter-op",
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    try:
        import pyqtgraph
        import PySide6

        info["qt"] = f"PySide6 {PySide6.__version__}, pyqtgraph {pyqtgraph.__version__}, " \
                     f"QT_QPA_PLATFORM={os.environ.get('QT_QPA_PLATFORM', '(unset)')}"
    except ImportError:
        pass
    return info


_HEADER_SHOWN = False


def print_header(title: str, quick: bool, threads: int) -> None:
    """The benchmark's title, and the device report the first time in a process."""
    global _HEADER_SHOWN
    print("=" * 78)
    print(f"{title}  ({'quick' if quick else 'full'} run, torch threads = {threads})")
    if not _HEADER_SHOWN:
        for key, value in device_report().items():
            print(f"  {key:<14} {value}")
        _HEADER_SHOWN = True
    print("=" * 78)
    sys.stdout.flush()


def print_table(results: Sequence[Result], title: str = "Summary") -> None:
    headers = ("benchmark", "metric", "measured", "target", "result")
    rows = [(r.bench, r.name, r.value_text(), r.target_text(), r.status) for r in results]
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    print()
    print(title)
    print(line)
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    misses = [r for r in results if r.status == "MISS"]
    print()
    errors = sum(r.status == "ERROR" for r in results)
    print(f"{len(results)} rows: {sum(r.status == 'pass' for r in results)} pass, "
          f"{len(misses)} miss, {sum(r.status == 'info' for r in results)} info"
          + (f", {errors} error" if errors else ""))
    notes = [r for r in results if r.note]
    for r in notes:
        print(f"  note [{r.bench}: {r.name}] {r.note}")


# --- timing --------------------------------------------------------------------------


def median_ms(seconds: Sequence[float]) -> float:
    return statistics.median(seconds) * 1000.0


def percentile(values: Sequence[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else float("nan")


def interleaved(
    a: Callable[[], object], b: Callable[[], object], pairs: int, warmup: int
) -> tuple[list[float], list[float]]:
    """Time ``a`` and ``b`` alternately (A B, then B A, ...) so drift hits both alike.

    Returns the per-call times in seconds for ``a`` and ``b``. The order flips every
    pair so neither always runs first (cache and frequency effects cancel).
    """
    for _ in range(warmup):
        a()
        b()
    gc.collect()
    ta: list[float] = []
    tb: list[float] = []
    clock = time.perf_counter
    for i in range(pairs):
        order = ((a, ta), (b, tb)) if i % 2 == 0 else ((b, tb), (a, ta))
        for fn, out in order:
            t0 = clock()
            fn()
            out.append(clock() - t0)
    return ta, tb


# --- shared fixtures -----------------------------------------------------------------

_MODELS: dict[str, object] = {}


def load_cached_model(name: str):
    """``models.load_model(name)``, loaded once per process (run_all shares it)."""
    if name not in _MODELS:
        from models import load_model

        _MODELS[name] = load_model(name)
    return _MODELS[name]


def setup_gui_env() -> None:
    """Offscreen Qt and a throwaway settings file; call before importing Qt."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    if "VIZAPP_SETTINGS" not in os.environ:  # the window saves its layout on close: not to the user's
        folder = tempfile.mkdtemp(prefix="vizapp-bench-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        os.environ["VIZAPP_SETTINGS"] = str(Path(folder) / "settings.ini")


def _quiet_qt_messages() -> None:
    """Drop the offscreen plugin's harmless 'does not support propagateSizeHints' lines."""
    from PySide6.QtCore import qInstallMessageHandler

    def handler(_mode, _context, message: str) -> None:
        if "propagateSizeHints" not in message:
            print(message, file=sys.stderr)

    qInstallMessageHandler(handler)


def ready_window(size: tuple[int, int] | None = None, layer: str | None = None):
    """The offscreen main window on its default model and image (``layer`` selected), shown at
    ``size``, once its first analysis is on screen (``SystemExit`` naming the error otherwise)."""
    from widgets.app import wait_until_ready
    from widgets.main_window import MainWindow

    make_app()
    window = MainWindow(restore_layout=False)
    if size is not None:
        window.resize(*size)
    window.show()
    window.start(layer=layer)
    if not wait_until_ready(window, timeout=300):
        raise SystemExit(f"the main window did not get ready: {window.last_error}")
    return window


def make_app():
    """The QApplication (one per process, shared by run_all), offscreen unless told otherwise."""
    setup_gui_env()
    from widgets.app import make_app as _make_app

    _quiet_qt_messages()
    return _make_app()

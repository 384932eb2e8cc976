"""GUI stall: the longest gap between GUI event-loop ticks while forward passes run.

A ``QTimer`` (PreciseTimer, 2 ms) on the GUI thread records a timestamp per tick; a gap
is the time between consecutive ticks. Three phases, each on a live event loop:

1. baseline: the main window shown and idle (no jobs);
2. runner: back-to-back ``analysis.analyse_image`` jobs (EfficientNet-Lite0, conv_head and
   conv_stem, several images) through a real ``JobRunner``, results not rendered;
3. app: the real ``MainWindow``: images opened and layers switched (conv_head <-> conv_stem)
   back to back, each result rendered by the window as in the app.

Target: max gap < 50 ms while forward passes run (phases 2 and 3). torch uses cores - 1
threads, as the app does (``vizapp.probing.device.configure_threads``).

Run alone: ``python benchmarks/bench_gui_stall.py [--quick] [--threads N]``.
"""

from __future__ import annotations

import os
import sys
import time

from _common import (
    Result,
    load_cached_model,
    make_app,
    parse_args,
    percentile,
    print_header,
    print_table,
    setup_threads,
)

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

BENCH = "gui_stall"
TARGET_MAX_GAP_MS = 50.0
TICK_MS = 2
LAYERS = ("conv_head", "conv_stem")


def _sample_paths(n: int) -> list[str]:
    from vizapp.inputs.images import sample_images

    paths = [str(s.path) for s in sample_images()[:n]]
    if not paths:
        raise SystemExit("scikit-image's sample images are missing (pip install scikit-image)")
    return paths


def _ticker():
    from PySide6.QtCore import QObject, Qt, QTimer, Slot

    class Ticker(QObject):
        def __init__(self) -> None:
            super().__init__()
            self.ticks: list[float] = []
            self.timer = QTimer(self)
            self.timer.setTimerType(Qt.PreciseTimer)
            self.timer.setInterval(TICK_MS)
            self.timer.timeout.connect(self.tick)

        @Slot()
        def tick(self) -> None:
            self.ticks.append(time.perf_counter())

    return Ticker()


def _run_loop(seconds: float, ticker, on_start=None) -> list[float]:
    """Run a GUI event loop for ``seconds`` with the ticker on; returns its tick times."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    ticker.ticks = []
    ticker.timer.start()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    if on_start is not None:
        QTimer.singleShot(0, on_start)
    loop.exec()
    ticker.timer.stop()
    return ticker.ticks


def _report(label: str, ticks: list[float], events: list[float], work: str) -> dict[str, float]:
    import numpy as np

    t = np.asarray(ticks)
    gaps = np.diff(t) * 1000.0 if t.size > 1 else np.zeros(1)
    stats = {
        "max": float(gaps.max()),
        "p99": percentile(gaps, 99),
        "p50": percentile(gaps, 50),
        "n": float(gaps.size),
        "over50": float((gaps > 50).sum()),
        "over16": float((gaps > 1000 / 60).sum()),
    }
    span = (t[-1] - t[0]) if t.size > 1 else 0.0
    print(f"\n{label}: {gaps.size} gaps over {span:.1f} s, {work}")
    print(f"  gap median {stats['p50']:.2f} ms, p90 {percentile(gaps, 90):.2f} ms, p99 {stats['p99']:.2f} ms, "
          f"p99.9 {percentile(gaps, 99.9):.2f} ms, max {stats['max']:.2f} ms; "
          f"> 16.7 ms: {int(stats['over16'])}, > 50 ms: {int(stats['over50'])}")
    edges = [0, 3, 5, 10, 16.7, 33, 50, 100, float("inf")]
    counts, _ = np.histogram(gaps, bins=edges)
    print("  distribution: " + ", ".join(
        f"{lo:g}-{hi:g} ms: {c}" if hi != float("inf") else f">{lo:g} ms: {c}"
        for lo, hi, c in zip(edges[:-1], edges[1:], counts, strict=True)))
    if events and t.size > 1:
        worst = np.argsort(gaps)[::-1][:5]
        ev = np.asarray(events)
        parts = []
        for i in worst:
            start, end = t[i], t[i + 1]
            rendered = bool(((ev >= start) & (ev <= end + 0.0005)).any())
            parts.append(f"{gaps[i]:.1f} ms{' (a result was rendered in it)' if rendered else ''}")
        print("  worst gaps: " + "; ".join(parts))
    return stats


def _baseline(app, seconds: float, ticker) -> dict[str, float]:
    ticks = _run_loop(seconds, ticker)
    return _report("baseline (window idle, no jobs)", ticks, [], "no work")


def _runner_phase(app, model, paths: list[str], seconds: float, ticker) -> dict[str, float]:
    """Back-to-back analysis jobs through a bare JobRunner; results are counted, not shown."""
    from PySide6.QtCore import QObject, Slot

    from vizapp import analysis
    from widgets.bridge import JobRunner

    records = [analysis.decode_image(p) for p in paths]
    runner = JobRunner()

    class Chain(QObject):
        def __init__(self) -> None:
            super().__init__()
            self.i = 0
            self.running = True
            self.done: list[float] = []
            self.failed: list[str] = []

        def submit(self) -> None:
            layer = LAYERS[(self.i // len(records)) % len(LAYERS)]
            runner.submit("analysis", analysis.analyse_image, model, records[self.i % len(records)], layer)
            self.i += 1

        @Slot(str, object)
        def finished(self, _kind: str, _result) -> None:
            self.done.append(time.perf_counter())
            if self.running:
                self.submit()

        @Slot(str, str)
        def failed_(self, _kind: str, message: str) -> None:
            self.failed.append(message)

    chain = Chain()
    runner.sigFinished.connect(chain.finished)
    runner.sigFailed.connect(chain.failed_)
    try:
        ticks = _run_loop(seconds, ticker, on_start=chain.submit)
    finally:
        chain.running = False
        runner.shutdown()
    if chain.failed:
        raise SystemExit(f"analysis jobs failed: {chain.failed[0]}")
    rate = len(chain.done) / seconds
    return _report("runner (JobRunner, results not rendered)", ticks, [],
                   f"{len(chain.done)} analyses done ({rate:.1f}/s)")


def _window_phase(app, paths: list[str], seconds: float, ticker) -> dict[str, float]:
    """The real window: open images and switch layers back to back; results rendered."""
    from PySide6.QtCore import QObject, Slot

    from widgets.app import wait_until_ready
    from widgets.main_window import MainWindow

    window = MainWindow(restore_layout=False)
    window.show()
    window.start()
    if not wait_until_ready(window, timeout=300):
        raise SystemExit(f"the main window did not get ready: {window.last_error}")
    window.session.select_layer(LAYERS[0])
    while not window.runner.idle():
        app.processEvents()
        time.sleep(0.002)
    for _ in range(5):
        app.processEvents()

    class Chain(QObject):
        """Connected after the window: runs once the window has rendered each result."""

        def __init__(self) -> None:
            super().__init__()
            self.i = 0
            self.running = True
            self.rendered: list[float] = []
            self.switches = 0

        def next(self) -> None:
            self.i += 1
            if self.i % 3 == 0:  # every third step switches the layer (kernels + analysis jobs)
                s = window.session
                s.select_layer(LAYERS[1] if s.layer == LAYERS[0] else LAYERS[0])
                self.switches += 1
            else:
                window.open_image(paths[self.i % len(paths)])

        @Slot(str, object)
        def finished(self, kind: str, _result) -> None:
            if kind != "analysis":
                return
            self.rendered.append(time.perf_counter())
            if self.running:
                self.next()

    chain = Chain()
    window.runner.sigFinished.connect(chain.finished)
    try:
        ticks = _run_loop(seconds, ticker, on_start=chain.next)
    finally:
        chain.running = False
        window.runner.sigFinished.disconnect(chain.finished)
    errors = window.last_error
    window.close()
    window.deleteLater()
    app.processEvents()
    if errors:
        print(f"  (the window reported: {errors})")
    rate = len(chain.rendered) / seconds
    return _report("app (MainWindow: open image / switch layer, results rendered)", ticks, chain.rendered,
                   f"{len(chain.rendered)} analyses rendered ({rate:.1f}/s), {chain.switches} layer switches")


def run(quick: bool = False, threads: int | None = None) -> list[Result]:
    threads = setup_threads(threads)
    app = make_app()
    print_header("GUI stall: gaps between event-loop ticks while forward passes run", quick, threads)
    seconds = 1.5 if quick else 5.0
    print(f"tick timer: {TICK_MS} ms PreciseTimer on the GUI thread; Python switch interval "
          f"{sys.getswitchinterval() * 1000:.1f} ms; {seconds:g} s per loaded phase")
    model = load_cached_model("efficientnet_lite0")
    paths = _sample_paths(4 if quick else 8)
    ticker = _ticker()
    base = _baseline(app, 1.0 if quick else 3.0, ticker)
    bare = _runner_phase(app, model, paths, seconds, ticker)
    full = _window_phase(app, paths, seconds, ticker)
    return [
        Result(BENCH, "baseline max gap (idle)", base["max"], "ms"),
        Result(BENCH, "baseline p99 gap (idle)", base["p99"], "ms"),
        Result(BENCH, "runner max gap", bare["max"], "ms", TARGET_MAX_GAP_MS),
        Result(BENCH, "runner p99 gap", bare["p99"], "ms"),
        Result(BENCH, "app max gap (MainWindow, rendered)", full["max"], "ms", TARGET_MAX_GAP_MS),
        Result(BENCH, "app p99 gap (MainWindow, rendered)", full["p99"], "ms"),
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv)
    print_table(run(args.quick, args.threads), "GUI stall summary")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Image to pixels: a new image file to the feature-map mosaic painted on screen.

Targets (EfficientNet-Lite0, CPU):
* whole path, median < 250 ms, measured two ways:
  - direct: ``analysis.decode_image(path)`` -> ``analysis.analyse_image(model, image, layer)``
    (forward + capture + mosaic) -> ``FeatureMapsView.set_analysis`` -> ``processEvents()``
    -> a synchronous repaint of the mosaic canvas (so the ImageItem really paints);
  - app: ``MainWindow.open_image(path)`` -> JobRunner decode job -> session -> analysis job
    -> the window renders the result -> the canvas repainted (timed until then).
* mosaic painting alone for conv_head (1280 x 7 x 7): ``FeatureMapsView._show_mosaic`` +
  repaint, median < 20 ms.
* the numpy mosaic build alone (``vizapp.probing.mosaic.feature_mosaic``): reported, no target.

Run alone: ``python benchmarks/bench_image_to_pixels.py [--quick] [--threads N]``.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

from _common import (
    Result,
    fmt_ms,
    load_cached_model,
    make_app,
    median_ms,
    parse_args,
    percentile,
    print_header,
    print_table,
    setup_threads,
)

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

BENCH = "image_to_pixels"
TARGET_PATH_MS = 250.0
TARGET_PAINT_MS = 20.0
LAYERS = ("conv_stem", "blocks.3", "conv_head")
#: The size of the Feature maps dock in the default window layout (about).
VIEW_SIZE = (1080, 600)


def _samples(n: int | None = None):
    from vizapp.inputs.images import sample_images

    found = sample_images()
    if not found:
        raise SystemExit("scikit-image's sample images are missing (pip install scikit-image)")
    return found[:n] if n else found


def _painted(view) -> bool:
    """pyqtgraph renders an ImageItem's QImage lazily in paint(); set means it was painted."""
    return view.image.qimage is not None


def _stats_line(label: str, seconds: list[float]) -> str:
    return (f"{label:<22} n={len(seconds):<3} median {fmt_ms(statistics.median(seconds)):>9}  "
            f"p90 {fmt_ms(percentile(seconds, 90)):>9}  max {fmt_ms(max(seconds)):>9}")


# --- direct path ---------------------------------------------------------------------


def _direct(app, model, samples, rounds: int) -> tuple[list[float], dict[str, list[float]]]:
    from vizapp import analysis
    from vizapp.session import Session
    from widgets.feature_maps_view import FeatureMapsView

    view = FeatureMapsView(Session())
    view.resize(*VIEW_SIZE)
    view.show()
    app.processEvents()
    stages = {k: [] for k in ("decode", "analyse", "set_analysis", "processEvents", "repaint")}
    per_layer: dict[str, list[float]] = {layer: [] for layer in LAYERS}
    totals: list[float] = []
    not_painted = 0
    # Warm-up: one pass per layer (first-call allocations, lazy imports, file cache).
    for layer in LAYERS:
        view.set_analysis(analysis.analyse_image(model, analysis.decode_image(str(samples[0].path)), layer))
        app.processEvents()
        view.canvas.viewport().repaint()
    clock = time.perf_counter
    for _ in range(rounds):
        for sample in samples:
            for layer in LAYERS:  # layers interleaved per image, so drift spreads over all
                app.processEvents()
                t0 = clock()
                record = analysis.decode_image(str(sample.path))
                t1 = clock()
                result = analysis.analyse_image(model, record, layer)
                t2 = clock()
                view.set_analysis(result)
                t3 = clock()
                app.processEvents()
                t4 = clock()
                view.canvas.viewport().repaint()
                t5 = clock()
                not_painted += not _painted(view)
                for key, dt in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
                    stages[key].append(dt)
                totals.append(t5 - t0)
                per_layer[layer].append(t5 - t0)
    print(f"\nDirect path: {len(totals)} runs ({len(samples)} images x {len(LAYERS)} layers x {rounds}), "
          f"view {VIEW_SIZE[0]}x{VIEW_SIZE[1]}; mosaic not painted after repaint: {not_painted}")
    print(_stats_line("total", totals))
    for layer, values in per_layer.items():
        print(_stats_line(f"  layer {layer}", values))
    print("  stage medians: " + ", ".join(f"{k} {fmt_ms(statistics.median(v))}" for k, v in stages.items()))
    view.close()
    view.deleteLater()
    return totals, per_layer


# --- the app's path: MainWindow + JobRunner ------------------------------------------


def _window_path(app, samples, rounds: int) -> tuple[list[float], dict[str, list[float]]]:
    from PySide6.QtCore import QEventLoop, QObject, QTimer, Slot

    from widgets.app import wait_until_ready
    from widgets.main_window import MainWindow

    window = MainWindow(restore_layout=False)
    window.show()
    t_start = time.perf_counter()
    window.start()
    if not wait_until_ready(window, timeout=300):
        raise SystemExit(f"the main window did not get ready: {window.last_error}")
    print(f"\nApp path (MainWindow + JobRunner): window ready in {time.perf_counter() - t_start:.1f} s "
          f"(model load + first analysis)")

    class Watcher(QObject):
        """Connected after the window, so its slot runs once the window rendered the result."""

        def __init__(self) -> None:
            super().__init__()
            self.loop: QEventLoop | None = None
            self.done_at = 0.0
            self.painted = False
            self.result = None

        @Slot(str, object)
        def finished(self, kind: str, result) -> None:
            if kind != "analysis" or self.loop is None:
                return
            view = window.feature_view
            view.canvas.viewport().repaint()
            self.done_at = time.perf_counter()
            self.painted = view.analysis is result and _painted(view)
            self.result = result
            self.loop.quit()

    watcher = Watcher()
    window.runner.sigFinished.connect(watcher.finished)

    def settle() -> None:
        while not window.runner.idle():
            app.processEvents()
            time.sleep(0.002)
        for _ in range(3):
            app.processEvents()

    def open_and_wait(path: str) -> float:
        loop = QEventLoop()
        watcher.loop = loop
        timeout = QTimer()
        timeout.setSingleShot(True)
        timeout.timeout.connect(loop.quit)
        timeout.start(60_000)
        t0 = time.perf_counter()
        window.open_image(path)
        loop.exec()
        watcher.loop = None
        if not timeout.isActive():
            raise SystemExit(f"no analysis result within 60 s for {path}: {window.last_error}")
        timeout.stop()
        return watcher.done_at - t0

    per_layer: dict[str, list[float]] = {layer: [] for layer in LAYERS}
    totals: list[float] = []
    not_painted = 0
    try:
        for layer in LAYERS:
            window.session.select_layer(layer)
            settle()
            open_and_wait(str(samples[-1].path))  # warm-up for this layer
            settle()
            for _ in range(rounds):
                for sample in samples:
                    dt = open_and_wait(str(sample.path))
                    not_painted += not watcher.painted
                    if watcher.result.layer != layer:
                        raise SystemExit(f"expected layer {layer}, got {watcher.result.layer}")
                    totals.append(dt)
                    per_layer[layer].append(dt)
                    settle()
    finally:
        window.runner.sigFinished.disconnect(watcher.finished)
        window.close()  # shuts the runner down
        window.deleteLater()
        app.processEvents()
    print(f"{len(totals)} runs ({len(samples)} images x {len(LAYERS)} layers x {rounds}); "
          f"result not on screen when timed: {not_painted}")
    print(_stats_line("total", totals))
    for layer, values in per_layer.items():
        print(_stats_line(f"  layer {layer}", values))
    return totals, per_layer


# --- mosaic alone ----------------------------------------------------------------------


def _mosaic_alone(app, model, samples, reps: int) -> dict[str, float]:
    from vizapp import analysis
    from vizapp.probing.mosaic import feature_mosaic
    from vizapp.session import Session
    from widgets.feature_maps_view import FeatureMapsView

    view = FeatureMapsView(Session())
    view.resize(*VIEW_SIZE)
    view.show()
    app.processEvents()
    out: dict[str, float] = {}
    print(f"\nMosaic alone ({reps} repetitions each, two images alternated so each paint is a new image)")
    for layer in ("conv_head", "conv_stem"):
        results = [analysis.analyse_image(model, analysis.decode_image(str(s.path)), layer) for s in samples[:2]]
        maps = [r.maps for r in results]
        mosaics = [r.mosaic for r in results]
        c, h, w = maps[0].shape
        # numpy build
        for sort in ("index", "mean"):
            for i in range(5):
                feature_mosaic(maps[i % 2], sort=sort)
            times = []
            for i in range(reps):
                t0 = time.perf_counter()
                feature_mosaic(maps[i % 2], sort=sort)
                times.append(time.perf_counter() - t0)
            out[f"build {layer} {sort}"] = median_ms(times)
            print(_stats_line(f"numpy build {layer} ({c}x{h}x{w}) sort={sort}", times))
        # painting: _show_mosaic (setImage + autoRange + marker) + synchronous repaint
        for i in range(5):
            view._show_mosaic(mosaics[i % 2])
            view.canvas.viewport().repaint()
        paint, set_only, repaint_only = [], [], []
        not_painted = 0
        for i in range(reps):
            app.processEvents()
            t0 = time.perf_counter()
            view._show_mosaic(mosaics[i % 2])
            t1 = time.perf_counter()
            view.canvas.viewport().repaint()
            t2 = time.perf_counter()
            not_painted += not _painted(view)
            paint.append(t2 - t0)
            set_only.append(t1 - t0)
            repaint_only.append(t2 - t1)
        shape = mosaics[0].image.shape
        out[f"paint {layer}"] = median_ms(paint)
        out[f"paint p95 {layer}"] = percentile(paint, 95) * 1000.0
        print(_stats_line(f"paint {layer} ({shape[1]}x{shape[0]} px)", paint)
              + f"  [_show_mosaic {fmt_ms(statistics.median(set_only))}, repaint "
              f"{fmt_ms(statistics.median(repaint_only))}; not painted: {not_painted}]")
    view.close()
    view.deleteLater()
    return out


def run(quick: bool = False, threads: int | None = None) -> list[Result]:
    threads = setup_threads(threads)
    app = make_app()
    print_header("Image to pixels: file -> decode -> forward + capture + mosaic -> painted", quick, threads)
    model = load_cached_model("efficientnet_lite0")
    samples = _samples(6 if quick else None)
    print("images: " + ", ".join(f"{s.name}{s.path.suffix}" for s in samples))
    direct, direct_layers = _direct(app, model, samples, rounds=1 if quick else 2)
    window, window_layers = _window_path(app, samples[:4] if quick else samples, rounds=1)
    mosaic = _mosaic_alone(app, model, samples, reps=40 if quick else 200)

    ms = 1000.0
    return [
        Result(BENCH, "direct path median (all layers)", median_ms(direct), "ms", TARGET_PATH_MS),
        Result(BENCH, "direct path median conv_head", median_ms(direct_layers["conv_head"]), "ms", TARGET_PATH_MS),
        Result(BENCH, "direct path max", max(direct) * ms, "ms"),
        Result(BENCH, "app path median (MainWindow+JobRunner)", median_ms(window), "ms", TARGET_PATH_MS),
        Result(BENCH, "app path median conv_head", median_ms(window_layers["conv_head"]), "ms", TARGET_PATH_MS),
        Result(BENCH, "app path max", max(window) * ms, "ms"),
        Result(BENCH, "mosaic paint conv_head 1280x7x7 median", mosaic["paint conv_head"], "ms", TARGET_PAINT_MS),
        Result(BENCH, "mosaic paint conv_head p95", mosaic["paint p95 conv_head"], "ms"),
        Result(BENCH, "mosaic paint conv_stem 32x112x112 median", mosaic["paint conv_stem"], "ms", TARGET_PAINT_MS),
        Result(BENCH, "numpy mosaic build conv_head", mosaic["build conv_head index"], "ms"),
        Result(BENCH, "numpy mosaic build conv_head sort=mean", mosaic["build conv_head mean"], "ms"),
        Result(BENCH, "numpy mosaic build conv_stem", mosaic["build conv_stem index"], "ms"),
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv)
    print_table(run(args.quick, args.threads), "Image to pixels summary")
    return 0


if __name__ == "__main__":
    sys.exit(main())

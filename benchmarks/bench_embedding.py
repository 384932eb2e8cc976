"""Embedding: t-SNE and UMAP of 10k x 1280 features as jobs (GUI stalls meanwhile), and 100k-point pan/zoom.

1. jobs: synthetic clustered features (10 000 x 1280, 20 clusters; 2 000 with ``--quick``)
   go through ``vizapp.collection.projection.project`` (PCA to 50 dims, then openTSNE or umap-learn)
   as jobs on a real ``JobRunner``, while a 2 ms ``QTimer`` on the GUI thread records the
   gaps between its ticks. Reported: the job's wall time (info) and the longest GUI gap
   (target < 50 ms). Each method runs twice: the first call in a process imports the
   library and loads numba code (UMAP compiles it unless numba's cache has it, see
   ``vizapp.collection.projection._cache_umap_jit``); the second call is the steady state.
2. pan/zoom: an ``EmbeddingView`` (1200 x 800, offscreen) showing 100 000 points in 25
   labels (20 colour groups); the ViewBox is panned and zoomed programmatically and the
   plot's viewport repainted synchronously each frame. Reported: median frame time
   (target <= 33.3 ms, i.e. >= 30 fps) and frames per second (info).

Run alone: ``python benchmarks/bench_embedding.py [--quick] [--threads N]``.
"""

from __future__ import annotations

import os
import sys
import time

from _common import (
    Result,
    make_app,
    parse_args,
    percentile,
    print_header,
    print_table,
    setup_threads,
)
from bench_gui_stall import _report, _run_loop, _ticker

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

BENCH = "embedding"
TARGET_MAX_GAP_MS = 50.0
TARGET_FRAME_MS = 1000.0 / 30.0
JOB_LIMIT_S = 300.0


def clustered_features(n: int, dims: int = 1280, clusters: int = 20, seed: int = 0):
    """``n`` feature vectors around ``clusters`` random centres (ReLU-like: non-negative)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = rng.gamma(1.0, 1.0, (clusters, dims)).astype(np.float32)
    labels = rng.integers(0, clusters, n)
    noise = rng.standard_normal((n, dims), dtype=np.float32) * 0.8
    return np.maximum(centres[labels] + noise, 0.0), labels


def _job(app, ticker, features, method: str) -> tuple[float, dict[str, float], object]:
    """Run ``project(features, method)`` on a JobRunner; tick the GUI thread meanwhile."""
    from PySide6.QtCore import QEventLoop, QTimer

    from vizapp.collection.projection import project
    from widgets.bridge import JobRunner

    runner = JobRunner()
    loop = QEventLoop()
    out: dict[str, object] = {}

    def finished(_kind: str, result) -> None:
        out["result"], out["t1"] = result, time.perf_counter()
        loop.quit()

    def failed(_kind: str, message: str) -> None:
        out["error"], out["t1"] = message, time.perf_counter()
        loop.quit()

    stages: list[tuple[float, str]] = []
    runner.sigFinished.connect(finished)
    runner.sigFailed.connect(failed)
    runner.sigProgress.connect(lambda _kind, _done, _total, text: stages.append((time.perf_counter(), text)))
    ticker.ticks = []
    ticker.timer.start()
    QTimer.singleShot(int(JOB_LIMIT_S * 1000), loop.quit)
    t0 = time.perf_counter()
    runner.submit("embedding", project, features, method)
    loop.exec()
    ticker.timer.stop()
    runner.shutdown()
    if "error" in out:
        raise SystemExit(f"{method} job failed: {out['error']}")
    if "result" not in out:
        raise SystemExit(f"{method} job did not finish in {JOB_LIMIT_S:.0f} s")
    seconds = out["t1"] - t0
    n, d = features.shape
    stats = _report(f"{method} of {n} x {d} features as a job", ticker.ticks, [], f"took {seconds:.1f} s")
    _worst_stages(ticker.ticks, stages)
    return seconds, stats, out["result"]


def _worst_stages(ticks: list[float], stages: list[tuple[float, str]]) -> None:
    """Name the job stage each of the three worst GUI gaps fell in (by the progress reports)."""
    import numpy as np

    t = np.asarray(ticks)
    if t.size < 2 or not stages:
        return
    gaps = np.diff(t)
    parts = []
    for i in np.argsort(gaps)[::-1][:3]:
        # a progress report is queued to the GUI thread: it arrives after the gap it ended
        before = [text for when, text in stages if when <= t[i] + 1e-4]
        parts.append(f"{gaps[i] * 1000:.0f} ms after '{before[-1] if before else 'start'}'")
    print("  worst gaps by stage: " + "; ".join(parts))


def _knn_agreement(coords, labels, k: int = 10) -> float:
    """How often a point's 2-D neighbours share its cluster (a sanity check on the layout)."""
    import numpy as np

    rng = np.random.default_rng(0)
    picks = rng.choice(len(coords), size=min(500, len(coords)), replace=False)
    d = ((coords[picks, None, :] - coords[None, :, :]) ** 2).sum(-1)
    d[np.arange(len(picks)), picks] = np.inf
    near = np.argsort(d, axis=1)[:, :k]
    return float((labels[near] == labels[picks, None]).mean())


def _pan_zoom(app, n: int, frames: int) -> dict[str, float]:
    import numpy as np

    from vizapp.collection.embedding import Embedding
    from widgets.embedding_view import EmbeddingView

    rng = np.random.default_rng(1)
    label_ids = rng.integers(0, 25, n)
    centres = rng.uniform(-40, 40, (25, 2))
    coords = (centres[label_ids] + rng.normal(0, 3, (n, 2))).astype(np.float32)
    labels = [f"class {k}" for k in label_ids]
    e = Embedding(np.zeros((n, 1), np.float32), coords, [f"set:{i}" for i in range(n)], labels, "tsne")
    view = EmbeddingView()
    view.resize(1200, 800)
    view.show()
    app.processEvents()
    t0 = time.perf_counter()
    view.set_embedding(e, title="synthetic")
    app.processEvents()
    set_s = time.perf_counter() - t0
    vp = view.plot.viewport()
    for _ in range(3):
        vp.repaint()
    before = vp.grab().toImage()
    times = []
    for i in range(frames):
        t0 = time.perf_counter()
        if i % 4 in (0, 1):
            view.box.translateBy(x=1.5 if i % 8 < 4 else -1.5, y=0.7)
        else:
            f = 0.93 if i % 8 < 4 else 1 / 0.93
            view.box.scaleBy((f, f))
        vp.repaint()
        times.append(time.perf_counter() - t0)
    changed = vp.grab().toImage() != before
    visible = sum(len(item.getData()[0]) for item in view.items)
    view.close()
    view.deleteLater()
    app.processEvents()
    if not changed:
        raise SystemExit("the pan/zoom frames did not change the picture: nothing was measured")
    ms = np.asarray(times) * 1000.0
    print(f"\npan/zoom of {visible} points in {len(view.items)} scatter items, {frames} frames "
          f"(set_embedding {set_s * 1000:.0f} ms): median {np.median(ms):.1f} ms, "
          f"p90 {percentile(ms, 90):.1f} ms, max {ms.max():.1f} ms, {1000 / np.median(ms):.0f} fps")
    return {"median": float(np.median(ms)), "p90": percentile(ms, 90), "max": float(ms.max()),
            "set": set_s * 1000.0}


def run(quick: bool = False, threads: int | None = None) -> list[Result]:
    threads = setup_threads(threads)
    app = make_app()
    print_header("Embedding: projections as jobs (GUI gaps) and 100k-point pan/zoom", quick, threads)
    from vizapp.collection.projection import _workers

    n = 2_000 if quick else 10_000
    features, labels = clustered_features(n)
    print(f"{n} x {features.shape[1]} synthetic features in 20 clusters; openTSNE n_jobs = {_workers()}; "
          f"tick timer 2 ms on the GUI thread")
    ticker = _ticker()
    base = _report("baseline (idle)", _run_loop(1.0, ticker), [], "no work")
    results = [Result(BENCH, "baseline max gap (idle)", base["max"], "ms")]
    # Each method twice: the first call in a process imports openTSNE / umap-learn and loads
    # (or compiles) numba code, which holds the GIL; the second is the steady state.
    for method, name in [("tsne", "t-SNE"), ("umap", "UMAP"), ("tsne", "t-SNE"), ("umap", "UMAP")]:
        first = not any(r.name.startswith(name) for r in results)
        name = f"{name} {'first call' if first else 'again'}"
        seconds, stats, coords = _job(app, ticker, features, method)
        agree = _knn_agreement(coords, labels)
        print(f"  layout check: {agree:.0%} of 10 nearest 2-D neighbours share the cluster")
        note = "includes imports and numba loading/compiling, which hold the GIL" if first else ""
        results += [
            Result(BENCH, f"{name}, {n / 1000:g}k x 1280: time", seconds * 1000.0, "ms"),
            Result(BENCH, f"{name}: GUI max gap", stats["max"], "ms", TARGET_MAX_GAP_MS, note=note),
        ]
    frames = 40 if quick else 120
    pan = _pan_zoom(app, 100_000, frames)
    results += [
        Result(BENCH, "set_embedding, 100k points", pan["set"], "ms"),
        Result(BENCH, "pan/zoom 100k points: median frame", pan["median"], "ms", TARGET_FRAME_MS,
               note=f"{1000 / pan['median']:.0f} fps (target >= 30 fps)"),
        Result(BENCH, "pan/zoom 100k points: p90 frame", pan["p90"], "ms"),
        Result(BENCH, "pan/zoom 100k points: frames per second", 1000.0 / pan["median"], "fps"),
    ]
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv)
    print_table(run(args.quick, args.threads), "Embedding summary")
    return 0


if __name__ == "__main__":
    sys.exit(main())

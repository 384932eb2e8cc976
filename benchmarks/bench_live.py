"""Live video in the window: frames per second with the predictions and the feature maps drawn.

A generated 224 x 224 clip (a moving crop over the "chelsea" and "coffee" samples, 30 fps,
MJPG) is followed live by the real ``MainWindow`` (offscreen), EfficientNet-Lite0 at 224 px on
the CPU, the selected layer ``conv_stem`` (its 32-channel mosaic drawn for every frame shown):

1. headless: ``vizapp.analysis.live_frames`` over the same clip, every frame analysed as fast
   as the model goes (what ``vizapp live`` measures), for comparison;
2. window: ``window.live.start(clip)`` with Loop on, the video played at its own speed (as a
   camera delivers); frames shown per second (each with its predictions and mosaic on screen
   before the next is taken; the frames the model cannot keep up with are dropped), the
   longest gap between the ticks of a 5 ms ``QTimer`` on the GUI thread while live, and the
   process's RSS after 100 and after 1000 frames shown (300 with ``--quick``).

Targets: >= 15 frames shown per second on 2 cores; longest GUI gap < 50 ms; RSS after the last
count / after 100 <= 1.10 (no growth beyond noise). torch uses cores - 1 threads, as the app does.

Run alone: ``python benchmarks/bench_live.py [--quick] [--threads N]``.
"""

from __future__ import annotations

import gc
import os
import sys
import tempfile
import time
from pathlib import Path

from _common import (
    AtLeast,
    Result,
    load_cached_model,
    make_app,
    parse_args,
    percentile,
    print_header,
    print_table,
    ready_window,
    setup_threads,
)

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

BENCH = "live"
TARGET_FPS = 15.0
TARGET_MAX_GAP_MS = 50.0
TARGET_RSS_RATIO = 1.10
TICK_MS = 5
LAYER = "conv_stem"
CLIP_FRAMES, CLIP_SIZE, CLIP_FPS = 150, (224, 224), 30


def make_clip(path: Path, frames: int = CLIP_FRAMES) -> Path:
    """A clip like a camera's: a square crop panning and zooming over chelsea, then coffee."""
    import cv2
    import numpy as np
    from PIL import Image

    from vizapp.inputs.sources import resolve_image_source

    w, h = CLIP_SIZE
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), CLIP_FPS, (w, h))
    try:
        half = frames // 2
        for name in ("chelsea", "coffee"):
            with Image.open(resolve_image_source(name)) as im:
                picture = np.asarray(im.convert("RGB"))
            ph, pw = picture.shape[:2]
            for i in range(half):
                t = i / max(1, half - 1)
                side = int(min(ph, pw) * (1.0 - 0.35 * np.sin(np.pi * t)))
                x = int((pw - side) * (0.5 + 0.4 * np.sin(2 * np.pi * t)))
                y = int((ph - side) * (0.5 + 0.3 * np.cos(2 * np.pi * t)))
                frame = cv2.resize(picture[y:y + side, x:x + side], (w, h), interpolation=cv2.INTER_AREA)
                writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return path


def rss_mb() -> float:
    """The process's resident memory now, MB (``/proc/self/status``; psutil elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            return int(next(line.split()[1] for line in f if line.startswith("VmRSS:"))) / 1024
    except OSError:
        import psutil

        return psutil.Process().memory_info().rss / 2**20


def _headless(model, clip: Path, frames: int) -> dict:
    from vizapp.analysis import live_frames

    gen = live_frames(model, str(clip), LAYER, frames, realtime=False)
    while True:
        try:
            next(gen)
        except StopIteration as end:
            return end.value


def _window(app, clip: Path, counts: tuple[int, ...], timeout_s: float) -> dict:
    """Follow the clip live in the window until each of ``counts`` frames was shown; the rate,
    GUI gaps and RSS at each count."""
    import numpy as np
    from PySide6.QtCore import QEventLoop, Qt, QTimer

    window = ready_window((1400, 900), LAYER)
    live = window.live
    ticks: list[float] = []
    marks: dict[int, tuple[float, float]] = {}  # frames shown -> (time, RSS MB)
    ticker = QTimer()
    ticker.setTimerType(Qt.PreciseTimer)
    ticker.setInterval(TICK_MS)
    ticker.timeout.connect(lambda: ticks.append(time.perf_counter()))
    loop = QEventLoop()
    collections: list[tuple[float, float, int]] = []  # (start, end, generation) of the GC's passes
    gc_start: list[float] = []

    def gc_watch(phase: str, info: dict) -> None:
        if phase == "start":
            gc_start[:] = [time.perf_counter()]
        elif gc_start:
            collections.append((gc_start[0], time.perf_counter(), info["generation"]))

    restarts: list[float] = []
    real_start = live._start_reader

    def start_reader() -> None:  # the video's end with Loop on opens it again (on the live lane)
        restarts.append(time.perf_counter())
        real_start()

    live._start_reader = start_reader
    gc.callbacks.append(gc_watch)
    warm = 10  # the first frames (the reader starting, caches warming) are not in the rate

    def check() -> None:
        shown = live.shown
        if shown >= warm and warm not in marks:
            marks[warm] = (time.perf_counter(), rss_mb())
        for n in counts:
            if shown >= n and n not in marks:
                marks[n] = (time.perf_counter(), rss_mb())
        if shown >= counts[-1] or not live.active:
            loop.quit()

    poll = QTimer()
    poll.setInterval(10)
    poll.timeout.connect(check)
    live.set_loop(True)
    live.start(str(clip))
    ticker.start()
    poll.start()
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    t0 = time.perf_counter()
    loop.exec()
    ticker.stop()
    poll.stop()
    gc.callbacks.remove(gc_watch)
    wall = time.perf_counter() - t0
    shown, dropped, error = live.shown, live.dropped, live.error or window.last_error
    live.stop(quiet=True)
    window.close()
    window.deleteLater()
    app.processEvents()
    if counts[-1] not in marks:
        raise SystemExit(f"live showed {shown} frames in {wall:.0f} s, not {counts[-1]}: {error}")
    t = np.asarray(ticks)
    gaps = np.diff(t) * 1000.0
    worst = []
    for i in np.argsort(gaps)[::-1][:5]:
        start, end = t[i], t[i + 1]
        why = [f"gc gen {g} {1000 * (e - b):.0f} ms" for b, e, g in collections if b < end and e > start]
        why += ["the video reopened (Loop)" for r in restarts if start - 0.05 <= r <= end]
        worst.append(f"{gaps[i]:.1f} ms" + (f" ({', '.join(why)})" if why else ""))
    (ta, _), (tb, _) = marks[warm], marks[counts[-1]]
    return {"fps": (counts[-1] - warm) / (tb - ta), "shown": shown, "dropped": dropped, "wall": wall,
            "gap_max": float(gaps.max()), "gap_p99": percentile(gaps, 99), "gaps": int(gaps.size),
            "over50": int((gaps > 50).sum()), "worst": worst,
            "rss": {n: marks[n][1] for n in counts}}


def run(quick: bool = False, threads: int | None = None) -> list[Result]:
    threads = setup_threads(threads)
    app = make_app()
    print_header("Live video in the window: frames shown per second, GUI gaps, memory", quick, threads)
    model = load_cached_model("efficientnet_lite0")
    counts = (100, 300) if quick else (100, 1000)
    with tempfile.TemporaryDirectory(prefix="vizapp-bench-live-") as folder:
        clip = make_clip(Path(folder) / "clip.avi")
        print(f"clip: {CLIP_FRAMES} frames {CLIP_SIZE[0]}x{CLIP_SIZE[1]} at {CLIP_FPS} fps (MJPG), layer {LAYER}")
        head = _headless(model, clip, 60 if quick else CLIP_FRAMES)
        print(f"\nheadless live_frames (every frame, as fast as the model goes): {head['frames']} frames, "
              f"{head['fps']:.1f} fps; median decode {head['decode_ms']['median']:.1f} ms, forward "
              f"{head['forward_ms']['median']:.1f} ms, views {head['views_ms']['median']:.1f} ms")
        win = _window(app, clip, counts, timeout_s=600)
    ratio = win["rss"][counts[-1]] / win["rss"][counts[0]]
    print(f"\nwindow (MainWindow offscreen, the clip played at {CLIP_FPS} fps, looping): {win['shown']} frames "
          f"shown, {win['dropped']} dropped, in {win['wall']:.1f} s; {win['fps']:.1f} frames shown per second")
    print(f"  GUI ticks ({TICK_MS} ms timer): {win['gaps']} gaps, p99 {win['gap_p99']:.1f} ms, "
          f"max {win['gap_max']:.1f} ms; > 50 ms: {win['over50']}; worst: {'; '.join(win['worst'])}")
    print(f"  RSS after {counts[0]} frames {win['rss'][counts[0]]:.0f} MB, after {counts[-1]} "
          f"{win['rss'][counts[-1]]:.0f} MB: {ratio:.3f}x")
    return [
        AtLeast(BENCH, "frames shown/s in the window (predictions + mosaic)", win["fps"], "fps", TARGET_FPS),
        Result(BENCH, "headless live_frames fps (every frame analysed)", head["fps"], "fps"),
        Result(BENCH, "longest GUI gap while live", win["gap_max"], "ms", TARGET_MAX_GAP_MS),
        Result(BENCH, "p99 GUI gap while live", win["gap_p99"], "ms"),
        Result(BENCH, f"RSS after {counts[0]} frames", win["rss"][counts[0]], "MB"),
        Result(BENCH, f"RSS after {counts[-1]} frames", win["rss"][counts[-1]], "MB"),
        Result(BENCH, f"RSS after {counts[-1]} / after {counts[0]} frames", ratio, "x", TARGET_RSS_RATIO),
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv)
    print_table(run(args.quick, args.threads), "Live video summary")
    return 0


if __name__ == "__main__":
    sys.exit(main())

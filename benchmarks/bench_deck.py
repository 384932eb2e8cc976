"""Deck stepping: the time from PgDn (``MainWindow.step_scene(1)``) until the next scene is on
screen (its model, image, layer and analysis), with and without the lecture controller's
prefetch, for a model the deck has not shown yet (cold) and one it has (warm).

The deck alternates the small digits ViT and EfficientNet-Lite0 (both offline) on different
images: scene 1 the ViT, scene 2 Lite0 (cold: never shown), scene 3 the ViT again (warm: shown
in scene 1). Without prefetch, a cold step loads the model from disk; with prefetch, it was
loaded in the background while scene 1 was on screen (the lecturer talking), so a step costs
the analysis only. A warm step reuses the deck's model either way.

Target: a step to a model the deck already used (warm, or prepared by the prefetch) under 1 s
on the CPU.

Run alone: ``python benchmarks/bench_deck.py [--quick] [--threads N]``.
"""

from __future__ import annotations

import statistics
import sys
import time

from _common import Result, make_app, parse_args, print_header, print_table, setup_threads

BENCH = "deck"
TARGET_S = 1.0


def _deck():
    from vizapp.lecture import Deck, Scene

    return Deck("bench", [
        Scene(model="vit_digits", image="digit3", layer="blocks.0", title="vit"),
        Scene(model="efficientnet_lite0", image="chelsea", layer="blocks.2", title="lite0"),
        Scene(model="vit_digits", image="digit7", layer="blocks.1", title="vit again"),
    ])


def _wait(app, window, *kinds: str, timeout: float = 600.0) -> None:
    """Until the scene is on screen (or, with ``kinds``, until those jobs are done too)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        app.processEvents()
        lecture = window.lecture
        if lecture.settled() and window.ready and window.runner.idle("model", "image", "analysis", *kinds):
            return
        time.sleep(0.002)
    raise SystemExit(f"the deck's scene did not come on screen: {window.last_error}")


def _steps(app, window, prefetch: bool) -> tuple[float, float]:
    """Open the deck on its first scene, then time the cold step (1 -> 2) and the warm one (2 -> 3)."""
    lecture = window.lecture
    lecture.close_deck()
    lecture.open_deck(_deck())
    _wait(app, window, "prefetch")  # the first scene, and the next one's preparation (prefetch only)
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        window.step_scene(1)
        _wait(app, window)
        times.append(time.perf_counter() - t0)
        _wait(app, window, "prefetch")  # the lecturer talks: the next scene is prepared meanwhile
    return times[0], times[1]


def run(quick: bool = False, threads: int | None = None) -> list[Result]:
    threads = setup_threads(threads)
    app = make_app()
    print_header("Deck: stepping to the next scene, with and without prefetch", quick, threads)
    from widgets.main_window import MainWindow

    window = MainWindow(restore_layout=False)
    window.resize(1280, 800)
    window.show()
    window.start(model="vit_digits", device="cpu")
    _wait(app, window, timeout=600)
    repeats = 1 if quick else 3
    measured: dict[str, list[float]] = {k: [] for k in ("cold", "warm", "cold_pf", "warm_pf")}
    try:
        prefetch = window.lecture._prefetch_next
        for _ in range(repeats):
            window.lecture._prefetch_next = lambda: None  # the controller without its prefetch
            cold, warm = _steps(app, window, prefetch=False)
            measured["cold"].append(cold)
            measured["warm"].append(warm)
            window.lecture._prefetch_next = prefetch
            cold, warm = _steps(app, window, prefetch=True)
            measured["cold_pf"].append(cold)
            measured["warm_pf"].append(warm)
    finally:
        window.close()
        window.deleteLater()
        app.processEvents()
    med = {k: statistics.median(v) for k, v in measured.items()}
    for key, text in (("cold", "new model, no prefetch"), ("cold_pf", "new model, prefetched"),
                      ("warm", "model used before, no prefetch"), ("warm_pf", "model used before, prefetch")):
        print(f"  {text:<34} {med[key]:6.3f} s  (runs: {', '.join(f'{t:.3f}' for t in measured[key])})")
    sys.stdout.flush()
    return [
        Result(BENCH, "step to a new model, no prefetch", med["cold"], "s"),
        Result(BENCH, "step to a new model, prefetched", med["cold_pf"], "s", TARGET_S),
        Result(BENCH, "step to a used model, no prefetch", med["warm"], "s", TARGET_S),
        Result(BENCH, "step to a used model, prefetch", med["warm_pf"], "s", TARGET_S),
    ]


if __name__ == "__main__":
    args = parse_args(__doc__.splitlines()[0])
    print_table(run(quick=args.quick, threads=args.threads))

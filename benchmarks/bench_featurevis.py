"""Feature visualisation and deconvnet projections: speed, and the GUI while they run.

1. Optimisation steps per second of ``vizapp.explain.featurevis`` (EfficientNet-Lite0, a
   ``blocks.4`` channel, 224 px) against a plain loop at the same size that does only the
   forward pass to the layer and the backward pass to the input (``torch.autograd.grad``,
   parameters untouched), timed alternately. Two rows: the bare Fourier parametrisation and
   the "Olah 2017" preset (decorrelated colour, jitter, scales, rotation). Target >= 0.9.
2. Time to a 256-step 224 px channel visualisation ("Olah 2017") on the CPU (``--quick``: 64
   steps, the 256-step time extrapolated and said so).
3. The longest GUI gap while a visualisation runs: the offscreen main window's Feature
   visualisation dock runs one (its controller streams ``analysis.feature_vis``; the dock draws
   each preview and the trace); a 2 ms timer on the GUI thread records its ticks as
   ``bench_gui_stall`` does. Target < 50 ms.
4. Deconvnet projections (``vizapp.explain.projection``): one Lite0 ``blocks.3`` unit, and a
   channel's top-9 set (``analysis.top_projections`` over the offline samples: images opened,
   receptive boxes, one batched pass, crops).

Run alone: ``python benchmarks/bench_featurevis.py [--quick] [--threads N]``.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time

from _common import (
    AtLeast,
    Result,
    interleaved,
    load_cached_model,
    parse_args,
    print_header,
    print_table,
    ready_window,
    setup_threads,
)

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

BENCH = "featurevis"
MODEL = "efficientnet_lite0"
LAYER, CHANNEL, SIZE = "blocks.4", 5, 224
TARGET_RATIO = 0.9
TARGET_GAP_MS = 50.0
PROJECTION_LAYER, PROJECTION_CHANNEL = "blocks.3", 5


def _plain_step(model):
    """One forward pass to ``LAYER`` and one backward pass to a 224 px input: the floor."""
    import torch

    from vizapp.probing.probe import first_tensor, resolve_layers

    module = model.module
    layer = resolve_layers(module, [LAYER])[LAYER]
    mean = torch.tensor(model.preprocess.mean).view(1, -1, 1, 1)
    std = torch.tensor(model.preprocess.std).view(1, -1, 1, 1)
    pixels = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0)).requires_grad_(True)

    class Stop(Exception):  # noqa: N818 - control flow
        pass

    def step() -> None:
        store = {}

        def hook(_m, _i, out):
            store["act"] = first_tensor(out)
            raise Stop

        handle = layer.register_forward_hook(hook)
        try:
            module((pixels - mean) / std)
        except Stop:
            pass
        finally:
            handle.remove()
        (grad,) = torch.autograd.grad(store["act"][:, CHANNEL].mean(), [pixels])
        with torch.no_grad():
            pixels.add_(0.01 * grad.sign())

    return step


def _engine_steps(model, settings):
    """A callable doing one engine step (the generator advanced by one)."""
    from vizapp.explain import featurevis

    state = {"gen": None}

    def step() -> None:
        if state["gen"] is None:
            state["gen"] = featurevis.visualize(model, settings)
        try:
            next(state["gen"])
        except StopIteration:
            state["gen"] = featurevis.visualize(model, settings)
            next(state["gen"])

    return step


def _ratio_rows(model, quick: bool) -> list[Result]:
    from dataclasses import replace

    from vizapp.explain import featurevis

    steps = 12 if quick else 40
    plain = _plain_step(model)
    rows = []
    base = featurevis.Settings(layer=LAYER, channel=CHANNEL, size=SIZE, steps=10_000, preview_every=8)
    olah = featurevis.preset("Olah 2017", model, layer=LAYER, channel=CHANNEL, size=SIZE, steps=10_000)
    for label, settings in (("Fourier", base), ("Olah 2017 preset", replace(olah, preview_every=8))):
        engine = _engine_steps(model, settings)
        te, tp = interleaved(engine, plain, pairs=steps, warmup=3)
        e, p = statistics.median(te), statistics.median(tp)
        ratio = p / e  # engine steps/s over plain steps/s
        print(f"  {label}: engine {1 / e:.2f} steps/s ({e * 1000:.1f} ms), plain forward+backward "
              f"{1 / p:.2f} steps/s ({p * 1000:.1f} ms): ratio {ratio:.3f}")
        rows.append(AtLeast(BENCH, f"steps/s vs plain fwd+bwd, {label} (Lite0 224)", ratio, "x", TARGET_RATIO,
                            note=f"engine {e * 1000:.0f} ms/step, plain {p * 1000:.0f} ms/step"))
    return rows


def _full_run_row(model, quick: bool) -> Result:
    from vizapp.explain import featurevis

    steps = 64 if quick else 256
    settings = featurevis.preset("Olah 2017", model, layer=LAYER, channel=CHANNEL, size=SIZE, steps=steps)
    t0 = time.perf_counter()
    vis = featurevis.run(model, settings)
    seconds = time.perf_counter() - t0
    total = seconds * 256 / steps
    how = "measured" if steps == 256 else f"{steps} steps measured ({seconds:.1f} s), x4"
    print(f"  256-step 224 px Lite0 channel visualisation (Olah 2017) on the CPU: {total:.1f} s ({how}); "
          f"objective {vis.trace[0]:.3g} -> {vis.trace[-1]:.3g}")
    return Result(BENCH, "256-step 224 px Lite0 channel vis, CPU", total * 1000.0, "ms", None, note=how)


def _gui_gap_row(model, quick: bool) -> Result:
    """The Feature visualisation dock runs an "Olah 2017" visualisation of ``LAYER``/``CHANNEL`` in
    the offscreen main window (its controller streams ``analysis.feature_vis``; each preview and
    the objective trace are drawn by the dock); a 2 ms timer records the GUI's ticks."""
    from bench_gui_stall import _report, _run_loop, _ticker

    window = ready_window((1600, 1000), LAYER)
    steps = 48 if quick else 128
    view = window.featurevis_view
    ticker = _ticker()
    try:
        window.session.select_channel(CHANNEL)
        window.docks["featurevis"].raise_()
        view.set_view_options({"preset": "Olah 2017", "objective": "channel", "steps": steps, "seed": 0})
        idle = _report("baseline (the same window idle)", _run_loop(2.0, ticker), [], "no work")  # also settles it
        t0 = time.perf_counter()
        started = []
        ticks = _run_loop(0.5, ticker, on_start=lambda: started.append(window.featurevis.run()))
        while view.result is None and time.perf_counter() - t0 < 600:
            ticks += _run_loop(0.5, ticker)
        result, previews = view.result, view.previews
    finally:
        window.close()
    if not started or not started[0] or result is None:
        raise SystemExit(f"the visualisation did not run: {window.last_error or 'no result'}")
    stats = _report("GUI while the Feature vis dock runs a visualisation (previews and trace drawn)", ticks, [],
                    f"{len(result.trace)} steps, {previews} previews drawn")
    return Result(BENCH, "max GUI gap while a visualisation runs", stats["max"], "ms", TARGET_GAP_MS,
                  note=f"the Feature vis dock's own run of {result.description}, previews drawn; "
                       f"p99 {stats['p99']:.1f} ms; idle window's max {idle['max']:.1f} ms")


def _projection_rows(model, quick: bool) -> list[Result]:
    from PIL import Image

    from vizapp import analysis
    from vizapp.collection.datasets import ImageCollection
    from vizapp.collection.indexing import build_index
    from vizapp.explain.projection import project
    from vizapp.inputs.images import sample_images

    chelsea = next(s.path for s in sample_images() if s.name == "chelsea")
    with Image.open(chelsea) as im:
        image = im.convert("RGB")
    project(model, image, PROJECTION_LAYER, (PROJECTION_CHANNEL, 7, 7))  # the copy, Captum's import
    repeats = 5 if quick else 15
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        project(model, image, PROJECTION_LAYER, (PROJECTION_CHANNEL, 3 + i % 8, 7))
        times.append(time.perf_counter() - t0)
    one = statistics.median(times)
    collection = ImageCollection.samples()
    with tempfile.TemporaryDirectory() as folder:
        index = build_index(model, collection, [PROJECTION_LAYER], k=9, out=folder, workers=0)
        sets = []
        for _ in range(2 if quick else 5):
            t0 = time.perf_counter()
            result = analysis.top_projections(model, collection, index, PROJECTION_LAYER, PROJECTION_CHANNEL,
                                              "deconvnet")
            sets.append(time.perf_counter() - t0)
    nine = statistics.median(sets)
    print(f"  deconvnet projection of one {PROJECTION_LAYER} unit: {one * 1000:.0f} ms (median of {repeats}); "
          f"a top-{len(result.images)} set with boxes and crops: {nine * 1000:.0f} ms")
    return [Result(BENCH, f"one deconvnet projection (Lite0 {PROJECTION_LAYER})", one * 1000.0, "ms"),
            Result(BENCH, "top-9 deconvnet set (analysis.top_projections)", nine * 1000.0, "ms")]


def run(quick: bool = False, threads: int | None = None) -> list[Result]:
    n = setup_threads(threads)
    print_header("Feature visualisation and deconvnet projections", quick, n)
    model = load_cached_model(MODEL)
    rows = _ratio_rows(model, quick)
    rows.append(_full_run_row(model, quick))
    rows.append(_gui_gap_row(model, quick))
    rows.extend(_projection_rows(model, quick))
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(__doc__.splitlines()[0], argv)
    print_table(run(args.quick, args.threads))
    return 0


if __name__ == "__main__":
    sys.exit(main())

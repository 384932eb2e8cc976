"""The Feature visualisation dock (widgets/featurevis_view.py, widgets/featurevis_panels.py,
widgets/controllers/featurevis.py): its image is the engine's, previews arrive while it runs and
Cancel stops it, the objective follows the selection and the picked class, the presets set the
settings, the top-9 patches come from the collection's index, the layer overview fills a mosaic
from the cache or the engine, and the dock fits a projector. On the small shapes CNN (32 x 32
inputs: quick) with few steps."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt

pytestmark = pytest.mark.gui

LAYER, CHANNEL = "conv2_2", 7


@pytest.fixture
def fv(make_window, qtbot, tmp_path, monkeypatch):
    """The shapes CNN on its star, conv2_2 channel 7 selected, the Feature vis dock raised; the
    overview cache in a temporary folder."""
    from vizapp.inputs.sources import resolve_image_source

    monkeypatch.setenv("VIZAPP_CACHE", str(tmp_path / "cache"))
    w = make_window(model="tinyvgg_shapes", image=str(resolve_image_source("star")), layer=LAYER, device="cpu")
    w.session.select_channel(CHANNEL)
    w.docks["featurevis"].raise_()
    qtbot.waitUntil(lambda: w.dock_on_screen("featurevis") and w.runner.idle(), timeout=30_000)
    return w


def run_and_wait(qtbot, w, steps: int):
    view = w.featurevis_view
    view.form.set_values({"steps": steps})
    assert w.featurevis.run()
    qtbot.waitUntil(lambda: w.runner.idle() and view.result is not None, timeout=60_000)
    return view.result


def test_the_dock_shows_the_engines_image_and_previews_as_it_runs(fv, qtbot):
    from vizapp.explain import featurevis

    w = fv
    view = w.featurevis_view
    result = run_and_wait(qtbot, w, 24)
    settings = view.settings()
    assert settings.layer == LAYER and settings.channel == CHANNEL and settings.steps == 24
    assert settings.name == "Olah 2017" and settings.method == "fourier"
    ref = featurevis.run(w.session.model, settings)
    assert np.array_equal(result.images, ref.images)
    assert np.array_equal(view.shown, ref.image) and np.array_equal(view.image.image, ref.image)
    # Every step's objective reached the dock, and a preview every 8 steps (the last one included).
    assert view.preview_records == 3
    np.testing.assert_allclose(view.trace, ref.trace, rtol=1e-6)
    x, y = view.curve.getData()
    assert len(x) == 24 and y[-1] == pytest.approx(float(ref.trace[-1]), rel=1e-5)
    assert "conv2_2 channel 7 (Olah 2017)" in view.caption.text() and view.run_button.isEnabled()


def test_cancel_stops_the_run_and_keeps_the_last_preview(fv, qtbot):
    w = fv
    view = w.featurevis_view
    view.form.set_values({"steps": 4000})
    assert w.featurevis.run()
    assert view.running and not view.run_button.isEnabled() and view.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: view.preview_records >= 2 and view.shown is not None, timeout=60_000)
    view.cancel_button.click()
    qtbot.waitUntil(w.runner.idle, timeout=30_000)
    qtbot.wait(50)
    assert view.result is None and not view.running and view.run_button.isEnabled()
    assert view.caption.text().startswith("cancelled after") and 0 < len(view.trace) < 4000
    assert view.shown is not None  # the last preview stays
    # The window's Escape stops it too.
    assert w.featurevis.run()
    qtbot.waitUntil(lambda: len(view.trace) >= 1, timeout=30_000)
    w.cancel_jobs()
    qtbot.waitUntil(w.runner.idle, timeout=30_000)
    assert view.result is None and not view.running


def test_a_run_stops_when_the_dock_goes_off_screen(fv, qtbot):
    w = fv
    view = w.featurevis_view
    view.form.set_values({"steps": 4000})
    assert w.featurevis.run()
    qtbot.waitUntil(lambda: len(view.trace) >= 2, timeout=30_000)
    w.docks["features"].raise_()
    qtbot.waitUntil(w.runner.idle, timeout=30_000)
    assert view.result is None and not view.running and len(view.trace) < 4000
    assert w.session.is_stale("featurevis") and view.caption.text().startswith("stopped when the dock was hidden")
    # An overview stops as soon as the dock goes, not when its group of channels is done (which
    # it would write to the cache: here it writes nothing).
    cache = Path(os.environ["VIZAPP_CACHE"])
    w.docks["featurevis"].raise_()
    view.set_view_options({"overview_steps": 4096, "overview_batch": 10, "overview_size": 0, "page": "overview"})
    qtbot.waitUntil(lambda: w.dock_on_screen("featurevis") and w.runner.idle(), timeout=30_000)
    steps = []
    w.runner.sigProgress.connect(lambda kind, done, *_: kind == "featurevis:overview" and steps.append(done))
    assert w.featurevis.run_overview()
    qtbot.waitUntil(lambda: len(steps) >= 2, timeout=30_000)
    w.docks["features"].raise_()
    qtbot.waitUntil(w.runner.idle, timeout=30_000)
    assert not view.overview_tiles and "stopped when the dock was hidden" in view.overview_readout.text()
    assert not list(cache.rglob("*.npz"))  # the group of 10 x 4096 steps was not finished


def test_the_objective_follows_the_selection_and_the_picked_class(fv, qtbot):
    w = fv
    view, s = w.featurevis_view, w.session
    s.select_layer("conv1_2")
    s.select_channel(5)
    got = view.settings()
    assert (got.objective, got.layer, got.channel) == ("channel", "conv1_2", 5)
    assert "conv1_2 channel 5" in view.title.text()
    w.pick_class(2)  # a click in the Predictions dock
    got = view.settings()
    assert (got.objective, got.target, got.layer) == ("class", 2, None)
    assert view.form.class_name.text() == w.session.model.label(2) and "class 2" in view.title.text()
    result = run_and_wait(qtbot, w, 8)
    assert result.settings.objective == "class" and result.settings.target == 2
    s.select_channel(1)  # a channel again (feature maps, top patches)
    got = view.settings()
    assert (got.objective, got.layer, got.channel) == ("channel", "conv1_2", 1)
    view.form.set_values({"objective": "neuron"})
    assert view.settings().objective == "neuron" and "centre neuron" in view.title.text()
    view.form.set_values({"objective": "dream"})  # DeepDream: the image it starts from beside it
    assert view.settings().layer == "conv1_2" and view.side_canvas.isVisibleTo(view)
    assert np.array_equal(view.side_image.image, s.image.pixels)


def test_the_presets_set_the_settings(fv):
    from vizapp.explain import featurevis

    w = fv
    view, model = w.featurevis_view, w.session.model
    form = view.form
    assert [form.preset.itemData(i) for i in range(form.preset.count())] == list(featurevis.PRESETS)
    for name in ("Simonyan 2014", "Yosinski 2015", "DeepDream", "Olah 2017"):
        form.preset.setCurrentIndex(form.preset.findData(name))
        form.preset.activated.emit(form.preset.currentIndex())
        p = featurevis.PRESETS[name]
        got = view.settings()
        want = featurevis.preset(name, model, objective=got.objective, layer=LAYER,
                                 channel=None if got.objective == "dream" else CHANNEL)
        assert got == want, name
        assert form.method.currentData() == p.method and form.steps.value() == p.steps
        assert got.objective == ("dream" if name == "DeepDream" else "channel")
        assert (got.l2, got.blur_every, got.clip, got.octaves, got.scales) == (p.l2, p.blur_every, p.clip,
                                                                               p.octaves, p.scales)
    assert view.settings().jitter == 1  # Olah's 8 px at 224 is 1 px at the model's 32
    # A box changed after the preset overrides it; a scene keeps the boxes.
    form.set_values({"steps": 7, "seed": 3, "negative": True, "method": "pixel", "bogus": 1, "size": "x"})
    got = view.settings()
    assert (got.steps, got.seed, got.negative, got.method, got.rotate) == (7, 3, True, "pixel", 10.0)
    options = view.view_options()
    assert options["preset"] == "Olah 2017" and options["steps"] == 7 and options["negative"] is True


def test_the_top_patches_come_from_the_index_or_a_button_builds_it(fv, qtbot):
    from vizapp.collection.patches import load_patch_grid

    w = fv
    view, s = w.featurevis_view, w.session
    assert view.grid is None and view.index_button.isVisibleTo(view)
    assert view.index_button.text() == "Index the sample photographs"
    view.index_button.click()
    qtbot.waitUntil(lambda: w.runner.idle() and view.grid is not None, timeout=120_000)
    assert s.collection is not None and LAYER in s.index.layers
    want = load_patch_grid(s.index, LAYER, CHANNEL, s.collection)
    assert (view.grid.layer, view.grid.channel) == (LAYER, CHANNEL) and len(view.grid.patches) == 9
    assert [(p.image, p.box) for p in view.grid.patches] == [(p.image, p.box) for p in want.patches]
    assert all(np.array_equal(a, b) for a, b in zip(view.grid.tiles, want.tiles, strict=True))
    assert view.side_title.text() == f"Top 9 dataset patches of {LAYER} channel {CHANNEL}"
    assert not view.index_button.isVisibleTo(view)
    s.select_channel(2)  # follows the channel
    qtbot.waitUntil(lambda: w.runner.idle() and view.grid.channel == 2, timeout=30_000)


def test_the_overview_fills_a_mosaic_from_the_engine_then_from_the_cache(fv, qtbot, monkeypatch):
    from vizapp.explain import featurevis

    w = fv
    view, s = w.featurevis_view, w.session
    view.set_view_options({"overview_steps": 6, "overview_batch": 4, "overview_size": 0, "page": "overview"})
    calls = []
    real_run = featurevis.run

    def counted(*args, **kwargs):
        calls.append(args[1].channel)
        return real_run(*args, **kwargs)

    monkeypatch.setattr(featurevis, "run", counted)
    assert w.featurevis.run_overview()
    qtbot.waitUntil(lambda: w.runner.idle() and view.overview is not None, timeout=60_000)
    settings = view.overview.settings
    assert calls == [(0, 1, 2, 3), (4, 5, 6, 7), (8, 9)] and view.overview.computed == 10
    assert sorted(view.overview_tiles) == list(range(10))
    for group in calls:  # each tile is the engine's image of its channel (optimised with its group)
        ref = real_run(s.model, replace(settings, channel=group, batch=len(group)))
        for c, image in zip(group, ref.images, strict=True):
            assert np.array_equal(view.overview_tiles[c], image), c
    tiling = view._overview_tiling
    assert (tiling.count, tiling.tile_h, tiling.tile_w) == (10, 32, 32)
    # A second overview reads the cache: nothing is optimised again.
    calls.clear()
    first = {c: t.copy() for c, t in view.overview_tiles.items()}
    assert w.featurevis.run_overview()
    qtbot.waitUntil(lambda: w.runner.idle() and view.overview is not None, timeout=60_000)
    assert calls == [] and view.overview.cached == 10 and view.overview.computed == 0
    assert all(np.array_equal(first[c], view.overview_tiles[c]) for c in range(10))
    assert "10 read from the cache" in view.overview_readout.text()
    # Tiles arriving one by one are pasted into the mosaic: the same picture as tiling them all at once.
    from widgets.featurevis_panels import tile_images

    finished = view.overview
    view.start_overview(LAYER, 10)
    for c in (3, 0, 9, 1, 2, 4, 5, 6, 7, 8):
        view.set_overview_tile(c, first[c])
        qtbot.wait(1 if c % 2 else 0)
    qtbot.waitUntil(lambda: len(view._overview_pasted) == 10, timeout=5_000)
    assert np.array_equal(view.overview_image.image, tile_images([first[c] for c in range(10)])[0])
    view.set_overview(finished)
    # A click on a tile selects its channel.
    x, y = tiling.origin(5)
    scene = view.overview_view.mapViewToScene(QPointF(x + tiling.tile_w / 2, y + tiling.tile_h / 2))
    qtbot.mouseClick(view.overview_canvas.viewport(), Qt.LeftButton, pos=view.overview_canvas.mapFromScene(scene))
    assert s.channel == 5 and view.marker.isVisible()
    assert view.marker.rect().x() == pytest.approx(x - 1)
    # Hovering a tile names its channel.
    x, y = tiling.origin(8)
    view._overview_moved((view.overview_view.mapViewToScene(QPointF(x + 1, y + 1)),))
    assert view.overview_readout.text() == "conv2_2 channel 8: click to select it"


def test_a_cancelled_overview_keeps_its_groups_and_resumes(fv, qtbot, monkeypatch):
    from vizapp.explain import featurevis

    w = fv
    view = w.featurevis_view
    view.set_view_options({"overview_steps": 6, "overview_batch": 4, "overview_size": 0})
    calls, stop = [], [True]
    real_run = featurevis.run

    def counted(*args, **kwargs):
        calls.append(args[1].channel)
        if len(calls) == 2 and stop:  # the first overview's second group: cancel while it runs
            stop.clear()
            w.runner.cancel("featurevis:overview")
        return real_run(*args, **kwargs)

    monkeypatch.setattr(featurevis, "run", counted)
    assert w.featurevis.run_overview()
    qtbot.waitUntil(lambda: w.runner.idle(), timeout=60_000)
    qtbot.wait(50)
    assert view.overview is None and calls == [(0, 1, 2, 3), (4, 5, 6, 7)]
    calls.clear()
    assert w.featurevis.run_overview()
    qtbot.waitUntil(lambda: w.runner.idle() and view.overview is not None, timeout=60_000)
    assert calls == [(4, 5, 6, 7), (8, 9)] and view.overview.cached == 4 and view.overview.computed == 6


def test_screenshot_view_options_start_a_run():
    from vizapp.cli.parser import parse_args
    from widgets.app import view_option

    args = parse_args(["screenshot", "--out", "x.png", "--dock", "featurevis", "--view-option",
                       "featurevis.preset=DeepDream", "--view-option", "featurevis.run=true"])
    assert [view_option(t) for t in args.view_option] == [("featurevis", "preset", "DeepDream"),
                                                          ("featurevis", "run", True)]


def test_the_dock_fits_1280x720_on_a_desk_and_projected_at_2x(fv, qtbot):
    from _fit import misfits

    w = fv
    view = w.featurevis_view
    w.resize(1280, 720)
    w.reset_layout()
    w.resize(1280, 720)
    w.docks["featurevis"].raise_()
    run_and_wait(qtbot, w, 8)
    qtbot.wait(50)
    assert misfits(w) == []
    assert view.canvas.width() > 200 and view.canvas.height() > 200
    view.pages.setCurrentIndex(1)
    qtbot.wait(50)
    assert misfits(w) == []
    view.pages.setCurrentIndex(0)
    try:
        w.set_presentation(True, 2, full_screen=False)
        w.resize(1280, 720)
        w.presentation.toggle_maximise("featurevis")
        view.settings_button.setChecked(False)
        qtbot.wait(100)
        assert misfits(w) == []
        assert view.view.width() > 150 and view.view.height() > 150
    finally:
        w.set_presentation(False)


def test_a_run_and_an_overview_asked_together_both_arrive(fv, qtbot):
    w = fv
    view = w.featurevis_view
    view.form.set_values({"steps": 16})
    view.set_view_options({"overview_steps": 4, "overview_batch": 5, "overview_size": 0})
    assert w.featurevis.run() and w.featurevis.run_overview()  # the overview waits behind the run
    qtbot.waitUntil(lambda: w.runner.idle() and view.overview is not None, timeout=60_000)
    assert view.result is not None and len(view.result.trace) == 16 and len(view.trace) == 16
    assert view.preview_records == 2 and sorted(view.overview_tiles) == list(range(10))

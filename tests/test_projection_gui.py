"""The Top patches dock's projections: the deconvnet (or guided backprop) projection of each of
the selected channel's top-9 units beside its patch, computed as a job while the dock shows."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from vizapp.core.paths import resource

LAYER = "conv2_1"
SHAPES = ("circle", "cross", "diamond", "hexagon", "ring", "square", "star", "triangle",
          *(f"digit{i}" for i in range(10)))  # more images than the top 9


@pytest.fixture
def shapes_folder(tmp_path):
    folder = tmp_path / "shapes"
    folder.mkdir()
    for name in SHAPES:
        shutil.copy(resource("samples", f"{name}.png"), folder / f"{name}.png")
    return folder


@pytest.mark.gui
def test_dock_shows_nine_projections_beside_nine_patches(qtbot, make_window, shapes_folder, tmp_path, monkeypatch):
    from vizapp import analysis

    monkeypatch.setenv("VIZAPP_CACHE", str(tmp_path / "cache"))
    w = make_window(model="tinyvgg_shapes", layer=LAYER)
    pv = w.patches_view
    w.docks["patches"].raise_()
    qtbot.waitUntil(lambda: w.dock_on_screen("patches"), timeout=5_000)
    assert pv.current_projection() == "none" and not pv.projection_box.isVisibleTo(pv)
    pv.projection.setCurrentIndex(pv.projection.findData("deconvnet"))
    w.set_collection(str(shapes_folder))
    qtbot.waitUntil(lambda: pv.projections is not None and w.runner.idle(), timeout=120_000)
    s = w.session
    channel = pv.grid.channel
    result = pv.projections
    assert (result.layer, result.channel, result.method) == (LAYER, channel, "deconvnet")
    shown = [t for t in pv.projection_thumbs if t.isVisibleTo(pv)]
    patches = [t for t in pv.thumbs if t.isVisibleTo(pv)]
    assert len(shown) == len(patches) == 9
    # Slot for slot: projection i sits left of patch i at the same grid position.
    for i, (p, t) in enumerate(zip(shown, patches, strict=True)):
        assert pv.projection_layout.getItemPosition(pv.projection_layout.indexOf(p))[:2] == (i // 3, i % 3)
        assert pv.thumb_layout.getItemPosition(pv.thumb_layout.indexOf(t))[:2] == (i // 3, i % 3)
        assert not p.picture.pixmap().isNull()
        assert p.mapTo(pv, p.rect().center()).x() < pv.thumb_area.mapTo(pv, pv.thumb_area.rect().topLeft()).x()
    # They are the job's projections for that channel.
    expected = analysis.top_projections(s.model, s.collection, s.index, LAYER, channel, "deconvnet")
    assert result.patches == pv.grid.patches == expected.patches
    for got, want in zip(result.images, expected.images, strict=True):
        np.testing.assert_array_equal(got, want)
    # Beside each projection, the model-input pixels under the same box (not the original image's
    # patch): the same size, and both enlarged by the same whole factor (nearest neighbour).
    from widgets.top_patches_view import _enlarged

    for p, t, projected, under in zip(shown, patches, result.images, result.inputs, strict=True):
        assert projected.shape == under.shape
        assert p._pixmap.size() == t._pixmap.size()
        side = max(projected.shape[:2])
        assert p._pixmap.width() == projected.shape[1] * max(1, -(-128 // side))
        assert t._pixmap.toImage().pixelColor(0, 0).red() == _enlarged(under)[0, 0, 0]
    # Both grids fit the lecture screens beside the layer overview.
    from _fit import misfits

    for size in ((1280, 720), (1024, 768)):
        w.resize(*size)
        w.reset_layout()
        w.resize(*size)
        w.docks["patches"].raise_()
        qtbot.wait(50)
        assert misfits(w) == [], size
    w.resize(1400, 900)
    # Another channel: its own projections; guided backprop replaces them; the scene keeps the choice.
    s.select_channel(channel + 1)
    qtbot.waitUntil(lambda: w.runner.idle() and pv.projections is not None
                    and pv.projections.channel == channel + 1, timeout=60_000)
    assert pv.view_options() == {"projection": "deconvnet"}
    pv.set_view_options({"projection": "guided"})
    qtbot.waitUntil(lambda: w.runner.idle() and pv.projections is not None
                    and pv.projections.method == "guided", timeout=60_000)
    assert "guided backprop projection" in pv.projection_title.text()
    # None: the projections go, and no job runs.
    pv.set_view_options({"projection": "none"})
    assert not pv.projection_box.isVisibleTo(pv) and pv.view_options() == {"projection": "none"}
    assert pv.thumbs[0]._pixmap.size().width() == pv.grid.tiles[0].shape[1]  # the patches again
    pv.set_view_options({"projection": "lrp"})  # unknown: skipped
    assert pv.current_projection() == "none"


@pytest.mark.gui
def test_projections_wait_while_the_dock_is_hidden(qtbot, make_window, shapes_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("VIZAPP_CACHE", str(tmp_path / "cache"))
    w = make_window(model="tinyvgg_shapes", layer=LAYER)
    pv = w.patches_view
    w.docks["patches"].close()
    pv.projection.setCurrentIndex(pv.projection.findData("guided"))
    w.set_collection(str(shapes_folder))
    qtbot.waitUntil(lambda: pv.grid is not None and w.runner.idle(), timeout=120_000)
    assert pv.projections is None and w.session.is_stale("patches")
    w.docks["patches"].show()
    w.docks["patches"].raise_()
    qtbot.waitUntil(lambda: pv.projections is not None and w.runner.idle(), timeout=60_000)
    assert pv.projections.method == "guided" and pv.projections.channel == pv.grid.channel
    assert not w.session.is_stale("patches")

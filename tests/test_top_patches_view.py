"""The Top patches engine (``vizapp.collection.patches``) and view, against a real small index.

The index (Lite0's stem over the offline samples, k=4) is built once per module; the
stem's boxes are analytic, so building it takes a few seconds.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QPointF, Qt

from vizapp.collection.datasets import ImageCollection
from vizapp.collection.index_store import Patch
from vizapp.collection.indexing import build_index
from vizapp.collection.patches import (
    MISSING_VALUE,
    PAD_VALUE,
    crop_patch,
    load_layer_overview,
    load_patch_grid,
    patch_pixels,
)
from vizapp.core.errors import Cancelled
from vizapp.core.jobs import CancelToken

LAYER = "conv_stem"
K = 4


@pytest.fixture(scope="module")
def index(tmp_path_factory, lite0):
    return build_index(lite0, ImageCollection.samples(), [LAYER], k=K, out=tmp_path_factory.mktemp("idx"), workers=0)


@pytest.fixture(scope="module")
def overview(index):
    return load_layer_overview(index, LAYER)


def _independent(path: str, box, size: int) -> np.ndarray:
    """Crop + resize + centre on grey, written out here without vizapp's helpers."""
    with Image.open(path) as im:
        im = im.convert("RGB")
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    scale = size / max(w, h)
    nw, nh = round(w * scale), round(h * scale)
    resample = Image.NEAREST if scale >= 4 else Image.LANCZOS
    crop = np.asarray(im.crop(box).resize((nw, nh), resample))
    out = np.full((size, size, 3), PAD_VALUE, np.uint8)
    out[(size - nh) // 2 : (size - nh) // 2 + nh, (size - nw) // 2 : (size - nw) // 2 + nw] = crop
    return out


# --- engine ------------------------------------------------------------------------


def test_patch_pixels_is_the_box_of_the_original_image(index):
    patch = index.top_patches(LAYER, 3)[0]
    pixels = patch_pixels(None, patch, 128)
    assert pixels.shape == (128, 128, 3) and pixels.dtype == np.uint8
    np.testing.assert_array_equal(pixels, _independent(patch.image, patch.box, 128))
    # Opened through the collection (by index) it is the same.
    np.testing.assert_array_equal(patch_pixels(ImageCollection.samples(), patch, 128), pixels)


@pytest.mark.parametrize("box", [(100, 40, 300, 240), (10, 20, 250, 120), (0, 0, 7, 30)])
def test_crop_patch_large_and_non_square_boxes(sample_paths, box):
    path = str(sample_paths["chelsea"])
    with Image.open(path) as im:
        image = im.convert("RGB")
    np.testing.assert_array_equal(crop_patch(image, box, 96), _independent(path, box, 96))
    tile = crop_patch(image, box, 96)
    if box[2] - box[0] != box[3] - box[1]:  # the short side is centred on grey
        assert (tile[0, 0] == PAD_VALUE).all() and (tile[-1, -1] == PAD_VALUE).all()


def test_patch_grid_is_the_channels_top_patches_best_first(index):
    grid = load_patch_grid(index, LAYER, 5, size=64)
    assert grid.patches == index.top_patches(LAYER, 5)
    assert len(grid.patches) == K and grid.channels == 32 and grid.images == len(index.paths)
    values = [p.value for p in grid.patches]
    assert values == sorted(values, reverse=True)
    for patch, tile in zip(grid.patches, grid.tiles, strict=True):
        np.testing.assert_array_equal(tile, patch_pixels(None, patch, 64))


def test_layer_overview_has_each_channels_best_patch(index, overview):
    m = overview.mosaic
    best = index.best_patches(LAYER)
    assert overview.patches == best and len(m.order) == 32 and m.rows * m.cols >= 32
    assert m.image.dtype == np.uint8 and m.image.ndim == 3
    for c, patch in enumerate(best):
        x, y = m.tile_origin(m.slot_of(c))
        np.testing.assert_array_equal(m.image[y : y + 48, x : x + 48], patch_pixels(None, patch, 48))


def test_cancel_stops_the_overview(index):
    token = CancelToken()
    calls = []

    def progress(done, total, text):
        calls.append(done)
        if done == 3:
            token.cancel()

    with pytest.raises(Cancelled):
        load_layer_overview(index, LAYER, progress=progress, cancel=token)
    assert calls == [1, 2, 3]  # polled per channel, not per image


def test_unreadable_image_gives_a_dark_tile_and_a_note(index, tmp_path):
    missing = Patch(str(tmp_path / "gone.png"), 0, 1.0, (0, 0, 4, 4), 0, 0)
    keep = index.top_patches(LAYER, 0)[0]

    class Fake:
        paths, skipped = index.paths, []

        def best_patches(self, layer):
            return [missing, None, keep]

    o = load_layer_overview(Fake(), LAYER, size=16)
    assert len(o.notes) == 1 and "gone.png" in o.notes[0]
    m = o.mosaic

    def tile_of(c):
        x, y = m.tile_origin(m.slot_of(c))
        return m.image[y : y + 16, x : x + 16]

    assert (tile_of(0) == MISSING_VALUE).all() and (tile_of(1) == MISSING_VALUE).all()
    np.testing.assert_array_equal(tile_of(2), patch_pixels(None, keep, 16))


def test_view_module_does_not_load_torch():
    code = "import sys, widgets.top_patches_view, vizapp.collection.patches; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# --- view --------------------------------------------------------------------------


@pytest.fixture
def view(qtbot, index, overview):
    from widgets.top_patches_view import TopPatchesView

    v = TopPatchesView()
    qtbot.addWidget(v)
    v.resize(1300, 800)
    v.show()
    qtbot.waitExposed(v)
    v.set_overview(overview)
    v.set_grid(load_patch_grid(index, LAYER, 5))
    v.set_channel(5)
    return v


def _tile_viewport_pos(v, channel):
    m = v.overview.mosaic
    x, y = m.tile_origin(m.slot_of(channel))
    scene = v.view.mapViewToScene(QPointF(x + m.tile_w / 2, y + m.tile_h / 2))
    return v.canvas.mapFromScene(scene)


@pytest.mark.gui
def test_view_shows_k_thumbnails_with_values(view, index):
    shown = [t for t in view.thumbs if t.isVisible()]
    patches = index.top_patches(LAYER, 5)
    assert len(shown) == K
    assert view.title.text() == f"Top {K} patches of {LAYER} channel 5 (over {len(index.paths)} images)"
    for thumb, patch in zip(shown, patches, strict=True):
        assert thumb.value.text() == f"{patch.value:.3g}"
        assert thumb.caption.text() == os.path.basename(patch.image)
        assert not thumb.picture.pixmap().isNull()
    # 2 x 2 for k = 4
    positions = {view.thumb_layout.getItemPosition(view.thumb_layout.indexOf(t))[:2] for t in shown}
    assert positions == {(0, 0), (0, 1), (1, 0), (1, 1)}
    # The overview is one ImageItem holding the whole mosaic, the channel marked.
    assert view.image.image.shape == view.overview.mosaic.image.shape
    assert view.marker.isVisible()
    x, y = view.overview.mosaic.tile_origin(5)
    assert view.marker.rect().contains(QPointF(x + 24, y + 24))


@pytest.mark.gui
def test_clicking_a_thumbnail_opens_its_patch(qtbot, view, index):
    with qtbot.waitSignal(view.sigPatchRequested) as blocker:
        qtbot.mouseClick(view.thumbs[2], Qt.LeftButton)
    assert blocker.args == [index.top_patches(LAYER, 5)[2]]


@pytest.mark.gui
def test_clicking_an_overview_tile_selects_its_channel(qtbot, view):
    with qtbot.waitSignal(view.sigChannelChanged) as blocker:
        qtbot.mouseClick(view.canvas.viewport(), Qt.LeftButton, pos=_tile_viewport_pos(view, 17))
    assert blocker.args == [17]
    view.set_channel(17)
    x, y = view.overview.mosaic.tile_origin(17)
    assert view.marker.rect().contains(QPointF(x + 24, y + 24))


@pytest.mark.gui
def test_hover_reads_the_tile(qtbot, view, overview):
    qtbot.mouseMove(view.canvas.viewport(), _tile_viewport_pos(view, 9))
    p = overview.patches[9]
    text = f"channel 9: value {p.value:.3g}, {os.path.basename(p.image)}"
    qtbot.waitUntil(lambda: view.readout.text() == text, timeout=2000)


@pytest.mark.gui
def test_arrow_keys_step_channels_clamped(qtbot, view):
    view.setFocus()
    with qtbot.waitSignal(view.sigChannelChanged) as blocker:
        qtbot.keyClick(view, Qt.Key_Right)
    assert blocker.args == [6]
    with qtbot.waitSignal(view.sigChannelChanged) as blocker:
        qtbot.keyClick(view, Qt.Key_Left)
    assert blocker.args == [4]
    view.set_channel(0)
    with qtbot.assertNotEmitted(view.sigChannelChanged):
        qtbot.keyClick(view, Qt.Key_Left)
    view.set_channel(31)
    with qtbot.assertNotEmitted(view.sigChannelChanged):
        qtbot.keyClick(view, Qt.Key_Right)


@pytest.mark.gui
def test_buttons_message_and_export(qtbot, view, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    from widgets.common import export_png

    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(tmp_path))
    with qtbot.waitSignal(view.sigCollectionRequested) as chosen:
        qtbot.mouseClick(view.collection_button, Qt.LeftButton)
    assert chosen.args == [str(tmp_path)]
    with qtbot.waitSignal(view.sigCollectionRequested) as samples:
        qtbot.mouseClick(view.samples_button, Qt.LeftButton)
    assert samples.args == ["samples"]
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: "")  # cancelled: nothing
    with qtbot.assertNotEmitted(view.sigCollectionRequested):
        qtbot.mouseClick(view.collection_button, Qt.LeftButton)
    with qtbot.waitSignal(view.sigIndexRequested):
        qtbot.mouseClick(view.index_button, Qt.LeftButton)
    view.set_status("Index: samples, 12 images, efficientnet_lite0, layers conv_stem")
    assert "12 images" in view.status.text()
    assert export_png(view, tmp_path / "patches").stat().st_size > 0
    view.set_message("not indexed for this layer")
    assert view.title.text() == "not indexed for this layer"
    assert not any(t.isVisible() for t in view.thumbs) and view.image.image is None
    assert not view.marker.isVisible() and view.channel_count() == 0


# --- noise shown as signal: dead channels and ties at the k-th value ---------------------------


@pytest.fixture(scope="module")
def bn1_index(tmp_path_factory, lite0):
    """Lite0's bn1 (ReLU6) over the 12 samples, k=4: saturated channels tie at 6.0, some are 0 everywhere."""
    return build_index(lite0, ImageCollection.samples(), ["bn1"], k=K, out=tmp_path_factory.mktemp("bn1"),
                       workers=0)


@pytest.fixture(scope="module")
def bn1_brute(lite0):
    """``(per-image maximum N x C, overall minimum C)`` of bn1, by a forward hook per image."""
    import torch

    collection = ImageCollection.samples()
    seen = []
    handle = lite0.module.bn1.register_forward_hook(lambda _m, _i, out: seen.append(out.detach().clone()))
    try:
        with torch.inference_mode():
            for i in range(len(collection)):
                lite0.module(lite0.preprocess(collection.open(i))[None])
    finally:
        handle.remove()
    maps = torch.cat(seen)
    return maps.amax(dim=(2, 3)).numpy(), maps.amin(dim=(0, 2, 3)).numpy()


def test_dead_channels_and_ties_equal_brute_force(bn1_index, bn1_brute):
    best, low = bn1_brute
    n, c = best.shape
    dead_seen = ties_seen = 0
    for ch in range(c):
        flags = load_patch_grid(bn1_index, "bn1", ch).flags
        values = np.sort(best[:, ch])[::-1]
        kth = values[K - 1]
        sharing = int((best[:, ch] == kth).sum())
        left_out = sharing - int((values[:K] == kth).sum())
        assert flags.dead == bool(low[ch] == values[0]), ch
        assert flags.tied_at_k == (sharing if left_out else 0), ch
        dead_seen += flags.dead
        ties_seen += bool(flags.tied_at_k) and not flags.dead
    assert dead_seen >= 1 and ties_seen >= 1  # the case: channel 28 dead, ReLU6 saturating at 6.0
    dead = load_patch_grid(bn1_index, "bn1", 28).flags
    assert dead.dead and dead.lines == [
        "dead: this unit is 0.0 for every image (at every position); the 4 shown are the first in collection order"]
    tied = load_patch_grid(bn1_index, "bn1", 0).flags
    assert not tied.dead and tied.kth_value == 6.0 and tied.tied_at_k == int((best[:, 0] == 6.0).sum()) > K
    assert tied.lines == [f"ties: {tied.tied_at_k} images share the 4th value 6.00; the 4 shown are the first "
                          "in collection order"]


@pytest.mark.gui
def test_view_says_dead_and_ties(view, bn1_index):
    view.set_grid(load_patch_grid(bn1_index, "bn1", 28))
    assert view.flags.isVisible() and view.flags_text().startswith("dead: this unit is 0.0 for every image")
    view.set_grid(load_patch_grid(bn1_index, "bn1", 0))
    assert view.flags.isVisible()
    assert view.flags_text().startswith("ties: ") and "share the 4th value 6.00; the 4 shown are the first" in \
        view.flags_text()
    view.set_grid(load_patch_grid(bn1_index, "bn1", 1))  # neither
    assert not load_patch_grid(bn1_index, "bn1", 1).flags.lines
    assert not view.flags.isVisible() and view.flags_text() == ""
    view.set_grid(load_patch_grid(bn1_index, "bn1", 28))
    view.set_message("not indexed for this layer")
    assert not view.flags.isVisible()


def test_top_patches_json_flags(capsys, bn1_index):
    import json

    from vizapp.cli import main

    for channel, dead, tied in ((28, True, True), (0, False, True), (1, False, False)):
        assert main(["top-patches", "--index", str(bn1_index.directory), "--layer", "bn1", "--channel",
                     str(channel), "--json"]) == 0
        out, err = capsys.readouterr()
        rows = json.loads(out)
        assert len(rows) == K and err == ""
        flags = load_patch_grid(bn1_index, "bn1", channel).flags
        assert all(r["dead"] is dead and r["tied_at_k"] == flags.tied_at_k for r in rows)
        assert (flags.tied_at_k > K) == tied
        assert main(["top-patches", "--index", str(bn1_index.directory), "--layer", "bn1", "--channel",
                     str(channel)]) == 0
        out, err = capsys.readouterr()
        assert len(out.splitlines()) == K
        assert err == "".join(f"vizapp: {line}\n" for line in flags.lines)
        assert bool(err) == tied

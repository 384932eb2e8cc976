"""pytest-qt tests of the attention view, offscreen, on synthetic attention (no model needed).

Every expected image is computed here independently (``np.kron`` for the patch blocks,
Pillow for bilinear), from the synthetic ``L x H x T x T`` weights.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QImage, QKeySequence, QShortcut
from PySide6.QtWidgets import QVBoxLayout, QWidget

from vizapp.explain.attention import (
    AttentionResult,
    TokenLayout,
    attention_distance,
    gradient_rollout,
)
from widgets.attention_view import OWN_QUERY

pytestmark = pytest.mark.gui

L, H, G, P = 4, 3, 5, 16  # layers, heads, patch grid side, pixels per patch


def planted(layer: int, head: int, g: int = G) -> tuple[int, int]:
    """The patch where the class token's attention peaks in ``(layer, head)``."""
    return divmod((7 * layer + 3 * head + 2) % (g * g), g)


def make_result(
    layers: int = L,
    heads: int = H,
    g: int = G,
    seed: int = 0,
    trained: bool = True,
    gradient: bool = False,
) -> AttentionResult:
    """Random row-stochastic attention with a planted peak in every class-token row."""
    rng = np.random.default_rng(seed)
    t = 1 + g * g
    logits = rng.normal(0.0, 1.0, (layers, heads, t, t))
    for layer in range(layers):
        for head in range(heads):
            row, col = planted(layer, head, g)
            logits[layer, head, 0, 1 + row * g + col] += 5.0
    a = np.exp(logits)
    a = (a / a.sum(-1, keepdims=True)).astype(np.float32)
    layout = TokenLayout(1, (g, g), P)
    side = g * P
    yy, xx = np.mgrid[0:side, 0:side]
    display = np.stack([xx * 255 // side, yy * 255 // side, np.full_like(xx, 128)], -1).astype(
        np.uint8
    )
    result = AttentionResult(
        input=np.zeros((1, 3, side, side), np.float32),
        display=display,
        attention=a,
        layers=[f"blocks.{i}.attn" for i in range(layers)],
        layout=layout,
        distance=attention_distance(a, layout),
        trained=trained,
    )
    if trained is False:
        result.notes.append(
            "test-vit is UNTRAINED: these are random weights, not learned attention"
        )
    if gradient:
        result.gradient = gradient_rollout(a, rng.normal(size=a.shape).astype(np.float32))
        result.target, result.target_label = 281, "tabby cat"
    return result


def blocks(grid_map: np.ndarray, p: int = P) -> np.ndarray:
    """Nearest upsampling written independently: every patch a ``p x p`` block."""
    return np.kron(np.asarray(grid_map, np.float64), np.ones((p, p)))


def encoded(m: np.ndarray) -> np.ndarray:
    """A tile as the mosaic codes it: 1..255 by its own max (0 is the gaps)."""
    m = np.asarray(m, np.float64)
    return 1 + np.rint(m / m.max() * 254)


@pytest.fixture
def view(qtbot):
    from widgets.attention_view import AttentionView

    v = AttentionView()
    qtbot.addWidget(v)
    v.resize(1200, 800)
    v.show()
    qtbot.waitExposed(v)
    return v


@pytest.fixture
def shown(view):
    r = make_result()
    view.set_result(r)
    return view, r


def image_pos(view, x: float, y: float) -> QPoint:
    """Image pixels -> scene -> the main canvas's viewport pixels."""
    return view.canvas.mapFromScene(view.view.mapViewToScene(QPointF(x, y)))


def click_patch(qtbot, view, row: int, col: int) -> None:
    pos = image_pos(view, (col + 0.5) * P, (row + 0.5) * P)
    qtbot.mouseClick(view.canvas.viewport(), Qt.LeftButton, pos=pos)


def test_view_module_does_not_load_torch():
    code = "import sys, widgets.attention_view; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_fusions_match_the_engine():
    from vizapp.explain.attention import FUSIONS as ENGINE
    from widgets.attention_view import FUSIONS

    assert FUSIONS == ENGINE


def test_head_mode_shows_the_class_row_of_the_head(shown):
    view, r = shown
    assert (
        view.mode() == "head"
        and view.layer() == 0
        and view.head() is None
        and view.query_token() == OWN_QUERY
    )
    assert not view.message_shown() and view.canvas.isVisible() and view.strip.isVisible()
    assert view.title.text() == "Attention: 4 layers × 3 heads, 5×5 patches of 16 px"
    a = r.attention
    for layer, head in ((0, 0), (2, 1), (3, 2)):
        view.set_layer_head(layer, head)
        assert (view.layer(), view.head()) == (layer, head)
        shown_image = view.displayed_image()
        assert shown_image.shape == r.display.shape[:2]
        np.testing.assert_allclose(
            shown_image, blocks(a[layer, head, 0, 1:].reshape(G, G)), rtol=1e-6
        )
        y, x = np.unravel_index(np.argmax(shown_image), shown_image.shape)
        assert (y // P, x // P) == planted(layer, head)
        assert view.layer_box.value() == layer and view.head_box.currentIndex() == head + 1
        share = 100 * a[layer, head, 0, 0]
        assert view.caption.text().startswith(
            f"Layer {layer}, head {head}: where the class token looks"
        )
        assert f"{share:.0f}% of its attention goes to the class token" in view.caption.text()
    # The mean of the heads.
    view.set_layer_head(1, None)
    np.testing.assert_allclose(
        view.displayed_image(), blocks(a[1, :, 0, 1:].mean(0).reshape(G, G)), rtol=1e-5
    )
    assert view.head_box.currentIndex() == 0 and "mean of 3 heads" in view.caption.text()
    # The overlay sits on the model's-eye image, scaled to the map's own max.
    np.testing.assert_array_equal(view.base.image, r.display)
    assert view.overlay.levels[1] == pytest.approx(view.displayed_image().max())


def test_pickers_drive_the_selection(shown):
    view, r = shown
    view.layer_box.setValue(3)
    view.head_box.setCurrentIndex(3)  # "head 2"
    assert (view.layer(), view.head()) == (3, 2)
    np.testing.assert_allclose(
        view.displayed_image(), blocks(r.attention[3, 2, 0, 1:].reshape(G, G)), rtol=1e-6
    )
    assert [view.head_box.itemText(i) for i in range(4)] == [
        "mean of heads",
        "head 0",
        "head 1",
        "head 2",
    ]


def test_smooth_is_bilinear_between_patch_centres(shown):
    view, r = shown
    view.set_layer_head(2, 0)
    view.smooth.setChecked(True)
    grid = r.attention[2, 0, 0, 1:].reshape(G, G).astype(np.float32)
    expected = np.asarray(Image.fromarray(grid, mode="F").resize((G * P, G * P), Image.BILINEAR))
    np.testing.assert_allclose(view.displayed_image(), expected, rtol=1e-4, atol=1e-6)
    view.smooth.setChecked(False)
    np.testing.assert_allclose(view.displayed_image(), blocks(grid), rtol=1e-6)


def test_strip_shows_every_head_of_the_layer(shown):
    view, r = shown
    view.set_layer_head(1, 2)
    np.testing.assert_array_equal(view.head_maps, r.token_maps(0)[1])
    strip = view.strip_image.image
    gap = 1  # one pixel between 5 x 5 tiles, 2 columns for 3 heads
    for h in range(H):
        row, col = divmod(h, 2)
        y, x = row * (G + gap), col * (G + gap)
        np.testing.assert_allclose(
            strip[y : y + G, x : x + G], encoded(r.attention[1, h, 0, 1:].reshape(G, G)), atol=1
        )
        assert view.strip_labels[h].isVisible() and view.strip_labels[h].toPlainText() == f"h{h}"
    assert strip[G, 0] == 0  # a gap
    marker = view.strip_marker.rect()  # around head 2's tile (row 1, col 0)
    assert view.strip_marker.isVisible() and marker.contains(QPointF(2.5, G + gap + 2.5))
    view.set_layer_head(1, None)
    assert not view.strip_marker.isVisible()


def test_clicking_a_strip_tile_selects_its_head(qtbot, shown):
    view, _r = shown
    x, y = (G + 1) + G / 2, G / 2  # head 1's tile
    pos = view.strip_canvas.mapFromScene(view.strip_view.mapViewToScene(QPointF(x, y)))
    qtbot.mouseClick(view.strip_canvas.viewport(), Qt.LeftButton, pos=pos)
    assert view.head() == 1 and view.layer() == 0


def test_clicking_a_patch_makes_it_the_query(qtbot, shown):
    view, r = shown
    view.set_layer_head(2, 1)
    click_patch(qtbot, view, 3, 1)
    token = r.patch_token(3, 1)
    assert token == 1 + 3 * G + 1 and view.query_token() == token
    np.testing.assert_array_equal(view.head_maps, r.token_maps(token)[2])
    np.testing.assert_allclose(
        view.displayed_image(), blocks(r.attention[2, 1, token, 1:].reshape(G, G)), rtol=1e-6
    )
    # The patch is outlined on the image and in every head's tile.
    assert view.outline.isVisible()
    rect = view.outline.rect()
    assert (rect.x(), rect.y(), rect.width(), rect.height()) == (1 * P, 3 * P, P, P)
    path = view.strip_outlines.path()
    for h in range(H):
        row, col = divmod(h, 2)
        assert path.contains(QPointF(col * (G + 1) + 1.5, row * (G + 1) + 3.5))
    assert not path.contains(QPointF(0.5, 0.5))
    assert "where patch (row 3, col 1) looks" in view.caption.text()
    strip = view.strip_image.image
    np.testing.assert_allclose(
        strip[:G, :G], encoded(r.attention[2, 0, token, 1:].reshape(G, G)), atol=1
    )
    assert view.cls_button.isEnabled()
    # Clicking it again goes back to the class token.
    click_patch(qtbot, view, 3, 1)
    assert (
        view.query_token() == OWN_QUERY and not view.outline.isVisible() and not view.cls_button.isEnabled()
    )
    # So do the button and Escape.
    click_patch(qtbot, view, 0, 4)
    assert view.query_token() == r.patch_token(0, 4)
    qtbot.mouseClick(view.cls_button, Qt.LeftButton)
    assert view.query_token() == OWN_QUERY
    click_patch(qtbot, view, 4, 4)
    assert view.query_token() == r.patch_token(4, 4) and view.hasFocus()
    qtbot.keyClick(view, Qt.Key_Escape)
    assert view.query_token() == OWN_QUERY
    np.testing.assert_allclose(
        view.displayed_image(), blocks(r.attention[2, 1, 0, 1:].reshape(G, G)), rtol=1e-6
    )


def test_escape_beats_the_window_shortcut_only_while_a_patch_is_the_query(qtbot):
    from widgets.attention_view import AttentionView

    window = QWidget()
    qtbot.addWidget(window)
    cancelled = []
    QShortcut(QKeySequence("Escape"), window, lambda: cancelled.append(1))
    view = AttentionView()
    QVBoxLayout(window).addWidget(view)
    window.resize(1100, 750)
    with qtbot.waitActive(window):
        window.show()
        window.activateWindow()
    r = make_result()
    view.set_result(r)
    view.set_query(r.patch_token(1, 1))
    view.setFocus()
    qtbot.keyClick(view, Qt.Key_Escape)
    assert view.query_token() == OWN_QUERY and cancelled == []
    qtbot.keyClick(view, Qt.Key_Escape)  # nothing of ours to undo: the window cancels
    assert cancelled == [1]


def test_keys_step_layers_and_heads_and_clamp(qtbot, shown):
    view, _r = shown
    view.setFocus()
    qtbot.keyClick(view, Qt.Key_Down)
    assert view.layer() == 1
    for _ in range(5):
        qtbot.keyClick(view, Qt.Key_Down)
    assert view.layer() == L - 1
    for _ in range(6):
        qtbot.keyClick(view, Qt.Key_Up)
    assert view.layer() == 0
    qtbot.keyClick(view, Qt.Key_Right)  # mean -> head 0
    assert view.head() == 0
    for _ in range(5):
        qtbot.keyClick(view, Qt.Key_Right)
    assert view.head() == H - 1 and view.head_box.currentIndex() == H
    for _ in range(H):
        qtbot.keyClick(view, Qt.Key_Left)
    assert view.head() is None
    qtbot.keyClick(view, Qt.Key_Left)
    assert view.head() is None


def test_grid_mode_is_one_mosaic_of_every_class_map(qtbot, shown):
    view, r = shown
    view.set_mode("grid")
    assert view.mode() == "grid" and view.grid_canvas.isVisible() and not view.canvas.isVisible()
    mosaic = view.displayed_image()
    assert not view.smooth.isVisible() and not view.opacity.isVisible()
    assert mosaic.dtype == np.uint8 and np.array_equal(mosaic, view.grid_image.image)
    step = G + 1
    assert mosaic.shape == (L * step - 1, H * step - 1)
    cls = r.cls_maps()
    for layer in range(L):
        for head in range(H):
            tile = mosaic[layer * step : layer * step + G, head * step : head * step + G]
            np.testing.assert_allclose(tile, encoded(cls[layer, head]), atol=1)
            assert tile.max() == 255
    assert (mosaic[G, :] == 0).all() and (mosaic[:, G] == 0).all()  # the gaps
    # Layers numbered left of their row, heads above their column.
    rows = [(item.toPlainText(), item.pos().x(), item.pos().y()) for item in view.row_labels]
    cols = [(item.toPlainText(), item.pos().x(), item.pos().y()) for item in view.col_labels]
    assert rows == [(str(i), -1, i * step + G / 2) for i in range(L)]
    assert cols == [(str(h), h * step + G / 2, -1) for h in range(H)]
    assert all(item.isVisible() for item in view.row_labels + view.col_labels)
    marker = view.grid_marker.rect()  # layer 0, mean of heads: the whole row
    assert marker.contains(QPointF(0.5, 0.5)) and marker.contains(QPointF(H * step - 1.5, G - 0.5))
    view.set_layer_head(3, 1)
    marker = view.grid_marker.rect()
    assert marker.contains(QPointF(step + 2.5, 3 * step + 2.5)) and not marker.contains(
        QPointF(2.5, 3 * step + 2.5)
    )
    # Clicking a tile opens it in Head mode.
    vb = view.grid_view
    pos = view.grid_canvas.mapFromScene(vb.mapViewToScene(QPointF(1 * step + 2.5, 2 * step + 2.5)))
    qtbot.mouseClick(view.grid_canvas.viewport(), Qt.LeftButton, pos=pos)
    assert (view.mode(), view.layer(), view.head()) == ("head", 2, 1)
    np.testing.assert_allclose(view.displayed_image(), blocks(cls[2, 1]), rtol=1e-6)


def test_rollout_mode_follows_fusion_and_discard(qtbot, shown):
    view, r = shown
    view.set_mode("rollout")
    assert (
        view.rollout_controls.isVisible()
        and not view.pickers.isVisible()
        and not view.strip.isVisible()
    )
    assert view.smooth.isVisible() and view.opacity.isVisible()
    np.testing.assert_allclose(view.displayed_image(), blocks(r.rollout("mean", 0.0)), rtol=1e-5)
    view.fusion.setCurrentIndex(view.fusion.findData("max"))
    view.discard.setValue(40)
    assert view.discard_label.text() == "discard 40%"
    expected = r.rollout("max", 0.4)
    assert not np.allclose(expected, r.rollout("mean", 0.0))
    np.testing.assert_allclose(view.displayed_image(), blocks(expected), rtol=1e-5)
    view.fusion.setCurrentIndex(view.fusion.findData("min"))
    np.testing.assert_allclose(view.displayed_image(), blocks(r.rollout("min", 0.4)), rtol=1e-5)
    assert "min over heads, weakest 40% dropped" in view.caption.text()
    # Clicks do not change the query outside Head mode.
    click_patch(qtbot, view, 2, 2)
    assert view.query_token() == OWN_QUERY


def test_gradient_box_asks_for_gradients_and_waits_for_them(qtbot, shown):
    view, r = shown
    view.set_mode("rollout")
    assert not view.gradient_wanted()
    with qtbot.waitSignal(view.sigGradientChanged, timeout=1000) as blocker:
        view.gradient.setChecked(True)
    assert blocker.args == [True] and view.gradient_wanted()
    assert view.busy.isVisible() and view.busy.toPlainText() == "computing…"
    assert view.displayed_image().size == 0 and view.overlay.image is None
    assert view.caption.text().startswith("Computing the gradient-weighted rollout")
    g = make_result(gradient=True)
    view.set_result(g)
    assert not view.busy.isVisible() and "tabby cat" in view.gradient.text()
    np.testing.assert_allclose(
        view.displayed_image(), blocks(g.gradient[0, 1:].reshape(G, G)), rtol=1e-5
    )
    assert "tabby cat" in view.caption.text()
    with qtbot.waitSignal(view.sigGradientChanged, timeout=1000) as blocker:
        qtbot.mouseClick(view.gradient, Qt.LeftButton)
    assert blocker.args == [False] and not view.gradient_wanted()
    np.testing.assert_allclose(view.displayed_image(), blocks(g.rollout("mean", 0.0)), rtol=1e-5)


def test_distance_plot_has_one_dot_per_head(qtbot, shown):
    view, r = shown
    view.set_mode("distance")
    assert view.distance_plot.isVisible() and view.displayed_image().size == 0
    x, y = view.distance_dots.getData()
    np.testing.assert_allclose(y, r.distance.reshape(-1), rtol=1e-6)
    np.testing.assert_array_equal(np.rint(x), np.repeat(np.arange(L), H))
    assert np.abs(x - np.rint(x)).max() < 0.25
    mx, my = view.distance_mean.getData()
    np.testing.assert_allclose(my, r.distance.mean(axis=1), rtol=1e-6)
    np.testing.assert_array_equal(mx, np.arange(L))
    plot = view.distance_plot.getPlotItem()
    assert plot.getAxis("bottom").labelText == "layer"
    assert plot.getAxis("left").labelText == "mean attention distance (px)"
    assert "Mean attention distance" in plot.titleLabel.text
    view.set_layer_head(2, 1)  # the selected head is ringed
    np.testing.assert_allclose(np.c_[view.distance_mark.getData()], [[x[2 * H + 1], y[2 * H + 1]]])
    # Clicking a dot opens that head.
    vb = view.distance_plot.getViewBox()
    i = 3 * H + 2
    pos = view.distance_plot.mapFromScene(vb.mapViewToScene(QPointF(x[i], y[i])))
    qtbot.mouseClick(view.distance_plot.viewport(), Qt.LeftButton, pos=pos)
    assert (view.mode(), view.layer(), view.head()) == ("head", 3, 2)


def test_message_hides_the_maps(qtbot, view):
    assert view.message_shown()  # nothing yet
    view.set_result(make_result())
    assert not view.message_shown() and view.canvas.isVisible()
    text = "EfficientNet-Lite0 is a CNN: attention maps need a Vision Transformer"
    view.set_message(text)
    assert view.message_shown() and view.message.isVisible() and view.message.text() == text
    assert (
        not view.canvas.isVisible()
        and not view.controls.isVisible()
        and not view.banner.isVisible()
    )
    assert view.displayed_image().size == 0
    view.set_mode("grid")  # remembered for the next result
    view.set_result(make_result(seed=2))
    assert not view.message_shown() and view.grid_canvas.isVisible() and view.mode() == "grid"


def test_untrained_banner(shown):
    view, _r = shown
    assert not view.banner.isVisible()
    view.set_result(make_result(trained=False))
    assert view.banner.isVisible() and view.banner.text().startswith("UNTRAINED")
    assert "UNTRAINED" in view.title.toolTip()
    assert view.banner.geometry().bottom() < view.pages.geometry().top()  # above the maps
    view.set_result(make_result())
    assert not view.banner.isVisible()


def test_new_results_keep_what_still_exists(shown):
    view, r = shown
    view.set_layer_head(3, 2)
    view.set_query(r.patch_token(2, 2))
    view.set_result(make_result(seed=5))  # same model: all kept
    assert (view.layer(), view.head(), view.query_token()) == (3, 2, r.patch_token(2, 2))
    small = make_result(layers=2, heads=2, seed=6)  # same tokens, fewer layers and heads: clamped
    view.set_result(small)
    assert (view.layer(), view.head(), view.query_token()) == (1, 1, r.patch_token(2, 2))
    np.testing.assert_array_equal(view.head_maps, small.token_maps(r.patch_token(2, 2))[1])
    assert view.head_box.count() == 3 and view.layer_box.maximum() == 1
    other = make_result(layers=2, heads=2, g=4, seed=7)  # other tokens: back to the class token
    view.set_result(other)
    assert view.query_token() == OWN_QUERY and view.displayed_image().shape == (4 * P, 4 * P)
    np.testing.assert_allclose(
        view.displayed_image(), blocks(other.attention[1, 1, 0, 1:].reshape(4, 4)), rtol=1e-6
    )
    with pytest.raises(ValueError, match="outside"):
        view.set_query(17)
    with pytest.raises(ValueError, match="mode"):
        view.set_mode("heads")


def test_hover_reads_the_patch(qtbot, shown):
    view, r = shown
    view.set_layer_head(1, 0)
    qtbot.mouseMove(view.canvas.viewport(), image_pos(view, 2.5 * P, 1.5 * P))
    value = 100 * r.attention[1, 0, 0, 1 + 1 * G + 2]
    qtbot.waitUntil(
        lambda: view.readout.text() == f"patch (row 1, col 2): {value:.1f}% of the attention",
        timeout=2000,
    )


def test_export_png(shown, tmp_path):
    from widgets.common import export_png

    view, _r = shown
    for mode in ("grid", "distance", "head"):
        view.set_mode(mode)
        path = export_png(view, tmp_path / f"{mode}.png", scale=1.0)
        assert path.stat().st_size > 0
        image = QImage(str(path))
        assert (image.width(), image.height()) == (view.width(), view.height())
    assert export_png(view, tmp_path / "a.png").stat().st_size > 0


def test_a_register_vit_without_a_class_token_shows_its_mean_patch_query(qtbot, view):
    """4 registers, no class token: the default query is the mean of the patch rows,
    not register 0's row, in the head, grid and rollout modes."""
    rng = np.random.default_rng(3)
    prefix, t = 4, 4 + G * G
    a = np.exp(rng.normal(0.0, 2.0, (2, H, t, t)))
    a = (a / a.sum(-1, keepdims=True)).astype(np.float32)
    layout = TokenLayout(prefix, (G, G), P, class_token=False)
    side = G * P
    r = AttentionResult(
        input=np.zeros((1, 3, side, side), np.float32), display=np.zeros((side, side, 3), np.uint8),
        attention=a, layers=["blocks.0.attn", "blocks.1.attn"], layout=layout,
        distance=attention_distance(a, layout),
    )
    view.set_result(r)
    assert view.query_token() == OWN_QUERY
    for layer, head in ((0, 1), (1, 2)):
        view.set_layer_head(layer, head)
        mean_query = np.mean([a[layer, head, q, prefix:] for q in range(prefix, t)], axis=0)
        np.testing.assert_allclose(view.displayed_image(), blocks(mean_query.reshape(G, G)), rtol=1e-5)
        assert not np.allclose(view.displayed_image(), blocks(a[layer, head, 0, prefix:].reshape(G, G)), rtol=1e-2)
        assert "where the mean patch query (no class token) looks" in view.caption.text()
        assert "prefix tokens" in view.caption.text() and "the class token" not in view.caption.text()
    view.set_mode("rollout")
    assert "mean patch's information" in view.caption.text()


def test_a_pooled_vit_without_prefix_tokens_can_query_its_first_patch(qtbot, view):
    """No class token and no registers: the own query (mean patch row) is not patch (0, 0),
    and clicking patch (0, 0) shows that patch's own row (it used to stay on the mean)."""
    rng = np.random.default_rng(4)
    t = G * G
    a = np.exp(rng.normal(0.0, 2.0, (1, H, t, t)))
    a = (a / a.sum(-1, keepdims=True)).astype(np.float32)
    layout = TokenLayout(0, (G, G), P, class_token=False)
    side = G * P
    r = AttentionResult(
        input=np.zeros((1, 3, side, side), np.float32), display=np.zeros((side, side, 3), np.uint8),
        attention=a, layers=["blocks.0.attn"], layout=layout, distance=attention_distance(a, layout),
    )
    view.set_result(r)
    view.set_layer_head(0, 1)
    assert view.query_token() == OWN_QUERY and view.query_patch() is None
    assert "where the mean patch query (no class token) looks" in view.caption.text()
    np.testing.assert_allclose(view.displayed_image(), blocks(a[0, 1].mean(axis=0).reshape(G, G)), rtol=1e-5)
    view.set_query(r.patch_token(0, 0))
    assert view.query_token() == 0 and view.query_patch() == (0, 0)
    assert "where patch (row 0, col 0) looks" in view.caption.text()
    np.testing.assert_allclose(view.displayed_image(), blocks(a[0, 1, 0].reshape(G, G)), rtol=1e-5)
    assert view.cls_button.isEnabled()
    view.cls_button.click()
    assert view.query_token() == OWN_QUERY

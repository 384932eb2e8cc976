"""pytest-qt tests of the attribution view, offscreen, on synthetic records (no model needed).

The display image has a bright square at the top left and the map a Gaussian peak at
the bottom right, so every expected pixel is computed here from the documented blend
``w = opacity * m; out = round((1 - w) * display + w * LUT[round(255 m)])``.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyqtgraph as pg
import pytest
from PIL import Image
from PySide6.QtCore import QPoint, Qt

from vizapp.explain.attribution import METHODS, Attribution
from vizapp.probing.inference import Prediction

pytestmark = pytest.mark.gui

SIZE = 64
SQUARE = (slice(8, 24), slice(8, 24))  # rows, columns of the bright square
PEAK = (44, 40)  # (row, column) of the map's maximum
PREDICTIONS = [
    Prediction("tiger cat", 282, 0.368),
    Prediction("tabby", 281, 0.301),
    Prediction("Egyptian cat", 285, 0.112),
]


def make_display() -> np.ndarray:
    y, x = np.mgrid[:SIZE, :SIZE]
    d = np.stack([40 + x, 60 + y, np.full_like(x, 90)], axis=-1).astype(np.uint8)
    d[SQUARE] = (250, 240, 230)
    return d


def make_map(peak=PEAK, sigma: float = 9.0) -> np.ndarray:
    y, x = np.mgrid[:SIZE, :SIZE]
    m = np.exp(-((y - peak[0]) ** 2 + (x - peak[1]) ** 2) / (2 * sigma**2))
    return (m / m.max()).astype(np.float32)


def make_attribution(
    method: str = "saliency",
    target: int = 282,
    seconds: float = 0.42,
    notes: list[str] | None = None,
    peak=PEAK,
) -> Attribution:
    layer = "layer4" if method == "gradcam" else None
    return Attribution(
        method=method,
        target=target,
        target_label="tiger cat",
        probability=0.368,
        raw=np.zeros((3, SIZE, SIZE), np.float32),
        map=make_map(peak),
        display=make_display(),
        input=np.zeros((1, 3, SIZE, SIZE), np.float32),
        layer=layer,
        seconds=seconds,
        notes=list(notes or []),
    )


def lut(name: str) -> np.ndarray:
    pg_name = {"grey": "CET-L1"}.get(name, name)
    return np.asarray(
        pg.colormap.get(pg_name).getLookupTable(nPts=256, alpha=False), dtype=np.uint8
    )


def expected_pixel(
    display: np.ndarray, heat: np.ndarray, y: int, x: int, opacity: float, cmap: str
) -> list[int]:
    """The documented blend for one pixel, in plain Python floats."""
    m = float(heat[y, x])
    colour = lut(cmap)[int(round(m * 255))]
    w = opacity * m
    return [int(round((1 - w) * float(display[y, x, c]) + w * float(colour[c]))) for c in range(3)]


@pytest.fixture
def view(qtbot):
    from widgets.attribution_view import AttributionView

    v = AttributionView()
    qtbot.addWidget(v)
    v.resize(1280, 720)
    v.show()
    qtbot.waitExposed(v)
    return v


@pytest.fixture
def shown(view):
    view.set_predictions(PREDICTIONS)
    view.clear(pending=view.current_methods())
    view.set_attribution(make_attribution("saliency"))
    return view


def test_view_module_does_not_load_torch():
    code = "import sys, widgets.attribution_view; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_one_checkbox_per_method_and_the_defaults(view):
    assert [box.text() for box in view.boxes.values()] == list(METHODS.values())
    assert list(view.boxes) == list(METHODS)
    assert view.current_methods() == ["saliency", "integrated_gradients", "gradcam"]
    assert view.current_target() is None and not view.use_selected_layer()
    assert view.opacity() == pytest.approx(0.55) and view.colormap() == "inferno"
    # Nothing yet: the centred message, no panels.
    assert view.message_text() == "Open a model and an image"
    assert all(view.panel_image(m) is None for m in METHODS)


def test_pending_panels_say_computing_in_methods_order(view):
    view.clear(pending=["saliency", "integrated_gradients", "gradcam"])
    assert view.message_text() == ""
    visible = [k for k, p in view.panels.items() if p.is_shown()]
    assert visible == ["saliency", "integrated_gradients", "gradcam"]
    pictures = [view.panels[k].picture for k in visible]
    xs = [p.mapTo(view, p.rect().topLeft()).x() for p in pictures]
    ys = [p.mapTo(view, p.rect().topLeft()).y() for p in pictures]
    assert (
        xs == sorted(xs) and len(set(xs)) == 3 and len(set(ys)) == 1
    )  # side by side, in METHODS order
    for k in visible:
        assert view.panels[k].picture.text() == "computing…"
        assert view.panel_image(k) is None


def test_panel_is_the_documented_blend(shown):
    view = shown
    shown_pixels = view.panel_image("saliency")
    display, heat = make_display(), make_map()
    assert shown_pixels.shape == (SIZE, SIZE, 3) and shown_pixels.dtype == np.uint8
    for y, x in (PEAK, (16, 16), (30, 30), (44, 52), (0, 63)):
        assert shown_pixels[y, x].tolist() == expected_pixel(
            display, heat, y, x, 0.55, "inferno"
        ), (y, x)
    # Far from the peak the photograph shows through almost unchanged; at it, the colour map's top.
    assert np.abs(shown_pixels[SQUARE].astype(int) - display[SQUARE]).max() <= 3
    top = lut("inferno")[255]
    assert shown_pixels[PEAK].tolist() == [
        round(0.45 * d + 0.55 * c) for d, c in zip(display[PEAK], top, strict=True)
    ]
    # The panel really paints that array (the full-resolution pixmap, before scaling to fit).
    image = view.panels["saliency"].picture.pixmap_full.toImage()
    for y, x in (PEAK, (16, 16)):
        c = image.pixelColor(x, y)
        assert [c.red(), c.green(), c.blue()] == shown_pixels[y, x].tolist()
    assert not view.panels["saliency"].picture.pixmap().isNull()
    assert view.panels["saliency"].title.text() == "Saliency · 420\u00a0ms"
    assert view.header.text() == "Explaining tiger cat (282): p = 36.8%"
    # The others are still computing.
    assert view.panels["gradcam"].picture.text() == "computing…"


def test_opacity_zero_shows_the_image_and_heat_only_the_map(shown):
    view = shown
    view.set_opacity(0.0)
    assert view.opacity() == 0.0 and view.opacity_label.text() == "0%"
    np.testing.assert_array_equal(view.panel_image("saliency"), make_display())
    view.set_opacity(1.0)
    np.testing.assert_array_equal(view.panel_image("saliency")[PEAK], lut("inferno")[255])
    view.set_heat_only(True)
    idx = np.rint(make_map() * 255).astype(int)
    np.testing.assert_array_equal(view.panel_image("saliency"), lut("inferno")[idx])
    assert not view.opacity_slider.isEnabled()


def test_colormap_change_re_renders_with_that_lut(shown):
    view = shown
    before = view.panel_image("saliency").copy()
    display, heat = make_display(), make_map()
    for name in ("viridis", "turbo", "grey"):
        view.set_colormap(name)
        assert view.colormap() == name
        pixels = view.panel_image("saliency")
        for y, x in (PEAK, (30, 30), (50, 44)):
            assert pixels[y, x].tolist() == expected_pixel(display, heat, y, x, 0.55, name), (
                name,
                y,
                x,
            )
        assert not np.array_equal(pixels, before)
    # The user's combo does the same as the setter.
    view.cmap_combo.setCurrentIndex(view.cmap_combo.findData("inferno"))
    np.testing.assert_array_equal(view.panel_image("saliency"), before)
    with pytest.raises(ValueError, match="jet"):
        view.set_colormap("jet")


def test_grad_cam_title_has_its_layer_and_notes_show(shown):
    view = shown
    note = "resnet has no ReLU modules (it uses GELU); Guided Backprop equals the gradient"
    view.set_attribution(make_attribution("gradcam", seconds=1.25, notes=[note]))
    panel = view.panels["gradcam"]
    assert panel.title.text() == "Grad-CAM (layer4) · 1.2\u00a0s"
    assert panel.notes.text() == note and panel.notes.isVisible()
    assert view.panel_image("gradcam") is not None
    assert view.panels["saliency"].notes.text() == ""


def test_unticking_removes_the_panel_and_asks_again(qtbot, shown):
    view = shown
    view.set_attribution(make_attribution("gradcam"))
    with qtbot.waitSignal(view.sigRequested):
        view.boxes["saliency"].setChecked(False)
    assert view.current_methods() == ["integrated_gradients", "gradcam"]
    assert not view.panels["saliency"].is_shown() and view.panel_image("saliency") is None
    assert "saliency" not in view.results and "gradcam" in view.results
    with qtbot.waitSignal(view.sigRequested):
        box = view.boxes["occlusion"]
        qtbot.mouseClick(box, Qt.LeftButton, pos=QPoint(8, box.height() // 2))  # on the tick box
    assert view.current_methods() == ["integrated_gradients", "occlusion", "gradcam"]
    assert view.panels["occlusion"].is_shown()
    # A result for a method that is not ticked (a job that outlived its tick) is ignored.
    view.set_attribution(make_attribution("saliency"))
    assert view.panel_image("saliency") is None and "saliency" not in view.results
    view.set_error("smoothgrad", "boom")
    assert "smoothgrad" not in view.errors


def test_seven_methods_wrap_into_two_rows(view):
    view.set_methods(list(METHODS))
    assert view.current_methods() == list(METHODS)
    grid = view.panel_grid
    rows = [grid.getItemPosition(grid.indexOf(p.picture))[0] for p in view.panels.values()]
    assert rows == [1, 1, 1, 1, 4, 4, 4]  # title, picture, notes rows per row of panels
    with pytest.raises(ValueError, match="nope"):
        view.set_methods(["nope"])


def test_set_predictions_fills_the_class_picker(qtbot, view):
    view.clear()  # the panels show (the header is hidden with a message)
    view.set_predictions(PREDICTIONS)
    combo = view.class_combo
    texts = [combo.itemText(i) for i in range(combo.count())]
    assert texts == [
        "predicted class (tiger cat)",
        "tiger cat (282) 36.8%",
        "tabby (281) 30.1%",
        "Egyptian cat (285) 11.2%",
    ]
    assert view.current_target() is None
    # The user picks the second prediction: the target follows and a request goes out.
    with qtbot.waitSignal(view.sigClassChanged) as picked:
        combo.activated.emit(2)
    assert picked.args == [281]
    assert view.current_target() == 281 and view.class_edit.text() == "281"
    assert view.header.text() == "Explaining tabby (281) 30.1%"
    # New predictions (another image) keep the choice ...
    view.set_predictions([Prediction("lynx", 287, 0.5), Prediction("tabby", 281, 0.2)])
    assert view.current_target() == 281 and combo.currentText() == "tabby (281) 20.0%"
    # ... even when it is no longer among them; a new model (no predictions) resets it.
    view.set_predictions([Prediction("lynx", 287, 0.5)])
    assert view.current_target() == 281 and combo.currentText() == "class 281"
    view.set_predictions([])
    assert view.current_target() is None and combo.currentText() == "predicted class"
    # Back to the predicted class from the combo.
    view.set_target(285)
    with qtbot.waitSignal(view.sigClassChanged) as picked:
        combo.activated.emit(0)
    assert picked.args == [None]
    assert view.current_target() is None and view.class_edit.text() == ""


def test_a_view_with_a_session_follows_and_sets_the_explained_class(qtbot):
    from vizapp.session import Session
    from widgets.attribution_view import AttributionView

    session = Session()
    view = AttributionView(session)
    qtbot.addWidget(view)
    session.set_predictions(PREDICTIONS)  # the image's top-k fill the picker
    assert view.class_combo.count() == 4
    session.set_target(281)  # a click in the predictions
    assert view.current_target() == 281 and view.class_combo.currentText() == "tabby (281) 30.1%"
    with qtbot.waitSignal(view.sigClassChanged):
        view.class_combo.activated.emit(3)  # the user's choice here becomes the session's
    assert session.target == 285 and view.current_target() == 285
    with qtbot.assertNotEmitted(view.sigRequested):
        session.set_target(None)  # the class is not a method: nothing to request here
    assert view.current_target() is None


def test_set_target_selects_or_adds_the_class(qtbot, view):
    view.set_predictions(PREDICTIONS)
    with qtbot.waitSignal(view.sigClassChanged):
        view.set_target(285)
    assert (
        view.current_target() == 285
        and view.class_combo.currentText() == "Egyptian cat (285) 11.2%"
    )
    with qtbot.assertNotEmitted(view.sigClassChanged):
        view.set_target(285)  # no change, no request
    with qtbot.waitSignal(view.sigClassChanged):
        view.set_target(7)
    assert view.current_target() == 7 and view.class_combo.currentText() == "class 7"
    assert view.class_combo.count() == 5
    with pytest.raises(ValueError, match="negative"):
        view.set_target(-3)


def test_typing_an_index_picks_that_class(qtbot, view):
    view.set_predictions(PREDICTIONS)
    view.class_edit.setFocus()
    qtbot.keyClicks(view.class_edit, "409")
    with qtbot.waitSignal(view.sigClassChanged):
        qtbot.keyClick(view.class_edit, Qt.Key_Return)
    assert view.current_target() == 409 and view.class_combo.currentText() == "class 409"
    view.class_edit.clear()
    qtbot.keyClicks(view.class_edit, "-5x")  # the validator lets no sign or letter through
    assert view.class_edit.text() == "5"


def test_layer_checkbox_asks_only_when_grad_cam_is_ticked(qtbot, view):
    with qtbot.waitSignal(view.sigRequested):
        view.layer_box.setChecked(True)
    assert view.use_selected_layer()
    view.boxes["gradcam"].setChecked(False)
    assert not view.layer_box.isEnabled()
    with qtbot.assertNotEmitted(view.sigRequested):
        view.layer_box.setChecked(False)


def test_errors_messages_and_the_untrained_banner(shown):
    view = shown
    text = "Grad-CAM at blocks.11 is zero everywhere: ...; use blocks.11.norm1"
    view.set_error("gradcam", text)
    panel = view.panels["gradcam"]
    assert panel.picture.text() == text and panel.title.text() == "Grad-CAM: failed"
    assert view.panel_image("gradcam") is None and view.panel_image("saliency") is not None
    # A later result replaces the error.
    view.set_attribution(make_attribution("gradcam"))
    assert view.panel_image("gradcam") is not None and "gradcam" not in view.errors

    view.set_message("TorchScript model: attributions need the eager model")
    assert view.message_text() == "TorchScript model: attributions need the eager model"
    assert view.stack.currentWidget() is view.message and not view.panel_area.isVisible()
    assert all(view.panel_image(m) is None for m in METHODS) and not view.results
    assert view.header.text() == ""
    view.set_target(3)  # a class picked meanwhile does not bring the header back over the message
    assert view.header.text() == "" and view.message_text()
    view.clear(pending=["saliency"])
    assert view.message_text() == "" and view.panel_area.isVisible()
    assert view.panels["saliency"].picture.text() == "computing…"
    assert view.panels["gradcam"].picture.text() == "not computed yet"

    assert not view.banner.isVisible()
    view.set_untrained(True)
    assert view.banner.isVisible() and "UNTRAINED" in view.banner.text()
    view.set_untrained(False)
    assert not view.banner.isVisible()


def test_export_png(shown, tmp_path):
    from widgets.common import export_png

    view = shown
    view.set_attribution(make_attribution("integrated_gradients", peak=(20, 44)))
    view.set_attribution(make_attribution("gradcam"))
    path = export_png(view, tmp_path / "a.png")
    assert path == tmp_path / "a.png" and path.stat().st_size > 0
    with Image.open(path) as im:
        assert im.size == (2 * view.width(), 2 * view.height())

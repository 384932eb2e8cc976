"""Presentation mode (widgets/presentation.py) and the keys (widgets/keys.py): the chrome hidden
and restored, the caption, the themes, a maximised dock, blanking, the key table, a presenter
clicker's keys, and the stepping keys wherever the focus is."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

pytestmark = pytest.mark.gui


@pytest.fixture
def shapes(make_window):
    """The shapes CNN on its star (small and fast), the theme put back afterwards."""
    from vizapp.inputs.sources import resolve_image_source
    from widgets.theme import THEME

    w = make_window(model="tinyvgg_shapes", image=str(resolve_image_source("star")), device="cpu")
    yield w
    w.set_presentation(False)
    THEME.set_scale(1.0)
    THEME.set_theme("default")


def _layout(w) -> dict:
    """What the dock layout shows: each dock on screen, its geometry, and the floating ones.

    (Not ``saveState()``'s bytes: those also hold the last geometry of the tabs behind the
    raised ones, which Qt lays out again only when they are raised.)"""
    return {k: (d.geometry().getRect(), d.isFloating()) for k, d in w.docks.items() if w.dock_on_screen(k)}


def _settled_state(qtbot, w):
    """The window's dock layout once it stops changing (a started window's views may still be
    re-laying their text when the analysis has just arrived)."""
    state = None
    for _ in range(50):
        qtbot.wait(20)
        now = _layout(w)
        if now == state:
            return now
        state = now
    return state


def _chrome(w) -> dict:
    return {
        "menu": w.menuBar().isVisible(), "status": w.statusBar().isVisible(),
        "titles": [d.titleBarWidget() is None for d in w.docks.values()],
        "caption": w.presentation.bar.isVisible(), "full screen": w.isFullScreen(),
    }


def test_presenting_at_2x_hides_the_chrome_and_captions_what_is_on_screen_and_leaving_restores_all(qtbot, shapes):
    from widgets.theme import THEME

    w = shapes
    w.session.select_channel(3)
    second = w.predictions_view.predictions()[1]
    w.session.set_target(second.index)  # (before the layout is taken: the explain docks re-lay their text)
    qtbot.waitUntil(w.runner.idle, timeout=30_000)
    before = _chrome(w), _settled_state(qtbot, w), w.geometry(), w.presentation.caption.font().pointSize()
    assert before[0] == {"menu": True, "status": True, "titles": [True] * len(w.docks), "caption": False,
                         "full screen": False}
    w.set_presentation(True, 2)
    assert w.presenting and THEME.scale == 2.0
    assert _chrome(w) == {"menu": False, "status": False, "titles": [False] * len(w.docks), "caption": True,
                          "full screen": True}
    for dock in w.docks.values():  # an empty title bar: the view starts at the dock's top
        assert dock.widget().geometry().top() == 0
    text = w.presentation.caption.full_text()
    assert text.split("  ·  ") == ["TinyVGG on shapes (trained here)", "layer conv1_1", "channel 3",
                                    f"class {second.label}", "star.png"]
    assert w.presentation.caption.font().pointSize() == 2 * before[3]
    # The caption follows the session.
    w.session.select_channel(5)
    assert "channel 5" in w.presentation.caption.full_text()
    # F10 brings the chrome back while presenting, and hides it again.
    qtbot.keyClick(w, Qt.Key_F10)
    assert w.menuBar().isVisible() and w.docks["features"].titleBarWidget() is None
    qtbot.keyClick(w, Qt.Key_F10)
    assert not w.menuBar().isVisible()

    w.set_presentation(False)
    assert not w.presenting and THEME.scale == 1.0
    # The same docks on screen, each where it was, its size within a few rows of text: the
    # Image dock's square pictures ask for their height at their width, which restoreState
    # cannot pin exactly (the Model dock above it gives or takes the difference).
    qtbot.waitUntil(lambda: _layout(w).keys() == before[1].keys(), timeout=5_000)
    qtbot.wait(300)
    for key, (rect, floating) in _layout(w).items():
        was, was_floating = before[1][key]
        assert floating == was_floating
        assert all(abs(a - b) <= 100 for a, b in zip(rect, was, strict=True)), (key, was, rect)
    assert _chrome(w) == before[0] and w.geometry() == before[2]


def test_scale_keys_and_the_menu_step_the_ui_scale(qtbot, shapes):
    from widgets.presentation import SCALES
    from widgets.theme import THEME

    w = shapes
    qtbot.keyClick(w, Qt.Key_Equal, Qt.ControlModifier)
    assert THEME.scale == SCALES[1]
    assert w.presentation.scale_actions[SCALES[1]].isChecked()
    qtbot.keyClick(w, Qt.Key_Minus, Qt.ControlModifier)
    assert THEME.scale == 1.0
    w.presentation.scale_actions[2.5].trigger()
    assert THEME.scale == 2.5
    qtbot.keyClick(w, Qt.Key_0, Qt.ControlModifier)
    assert THEME.scale == 1.0
    with pytest.raises(ValueError, match="outside 1 to 3"):
        w.set_presentation(True, 4)


def test_the_light_theme_changes_the_palette_and_the_canvases_and_leaving_restores_them(shapes):
    from widgets.theme import THEME

    w = shapes
    app = QApplication.instance()
    window_before = app.palette().color(QPalette.Window)
    canvas = w.feature_view.canvas
    assert canvas.backgroundBrush().color() == QColor(THEME.colour("background")) == QColor("#202020")
    w.set_presentation(True, 1.5, "light")
    assert THEME.theme == "light" and THEME.scale == 1.5
    assert app.palette().color(QPalette.Window) == QColor("#ffffff")
    assert app.palette().color(QPalette.WindowText) == QColor("#000000")
    assert canvas.backgroundBrush().color() == QColor("#ffffff")
    from pyqtgraph import GraphicsView

    assert w.training_panel.findChildren(GraphicsView)  # the lab's plots are canvases too
    for view in w.findChildren(GraphicsView):
        assert view.backgroundBrush().color() == QColor("#ffffff")
    w.presentation.set_theme("dark")  # View > Theme while presenting: the mode's theme
    assert app.palette().color(QPalette.Window) == QColor("#000000") and w.presentation.theme == "dark"
    w.set_presentation(False)
    assert THEME.theme == "default"
    assert app.palette().color(QPalette.Window) == window_before
    assert canvas.backgroundBrush().color() == QColor("#202020")
    w.set_presentation(True)  # the mode remembers its scale and theme
    assert (THEME.scale, THEME.theme) == (1.5, "dark")


def test_a_maximised_dock_fills_the_window_and_the_layout_comes_back_exactly(qtbot, shapes):
    w = shapes
    state = _settled_state(qtbot, w)
    w.presentation.toggle_maximise("predictions")
    assert w.presentation.maximised == "predictions"
    assert [k for k, d in w.docks.items() if d.isVisible()] == ["predictions"]
    qtbot.wait(10)
    dock = w.docks["predictions"]
    assert dock.width() > 0.9 * w.centralWidget().width() if w.centralWidget() else dock.width() > 0.9 * w.width()
    w.presentation.toggle_maximise()
    assert w.presentation.maximised is None and _layout(w) == state
    # A double-click on a dock's title maximises it (not floating it), and again restores.
    kernels = w.docks["kernels"]
    qtbot.mouseDClick(kernels, Qt.LeftButton, pos=QPoint(kernels.width() // 2, 4))
    assert w.presentation.maximised == "kernels" and not kernels.isFloating()
    assert [k for k, d in w.docks.items() if d.isVisible()] == ["kernels"]
    qtbot.mouseDClick(kernels, Qt.LeftButton, pos=QPoint(kernels.width() // 2, 4))
    assert w.presentation.maximised is None and _layout(w) == state
    # Z maximises the dock holding the focus.
    w.image_view.gallery.setFocus()
    qtbot.keyClick(w.image_view.gallery, Qt.Key_Z)
    assert w.presentation.maximised == "image"
    qtbot.keyClick(w.image_view.gallery, Qt.Key_Z)
    assert _layout(w) == state


def test_b_blanks_the_screen_any_key_brings_it_back_and_esc_then_leaves_presentation(qtbot, shapes):
    w = shapes
    w.set_presentation(True, 1.25)
    channel = w.session.channel
    qtbot.keyClick(w.feature_view, Qt.Key_B)
    blank = w.presentation.blank
    assert w.presentation.blanked and blank.geometry() == w.rect()
    assert blank.palette().color(QPalette.Window) == QColor("#000000")
    qtbot.keyClick(w.feature_view, Qt.Key_Right)  # un-blanks, and does nothing else
    assert not w.presentation.blanked and w.session.channel == channel
    qtbot.keyClick(w.feature_view, Qt.Key_Period)
    assert w.presentation.blanked
    qtbot.keyClick(w.feature_view, Qt.Key_Escape)  # a clicker's Esc: blanking first
    assert not w.presentation.blanked and w.presenting
    qtbot.keyClick(w.feature_view, Qt.Key_Escape)  # then presentation mode
    assert not w.presenting
    qtbot.keyClick(w.feature_view, Qt.Key_F5)  # a clicker's F5 starts it
    assert w.presenting
    qtbot.keyClick(w.feature_view, Qt.Key_F5)  # and leaves it on
    assert w.presenting
    qtbot.keyClick(w.feature_view, Qt.Key_F11)
    assert not w.presenting


def test_the_key_table_drives_the_navigate_menu_and_the_key_map(qtbot, shapes):
    from widgets.keys import KEYS, key_text

    w = shapes
    menus = {a.text().replace("&", ""): a.menu() for a in w.menuBar().actions()}
    navigate = [a.text() for a in menus["Navigate"].actions()]
    assert navigate == [f"{r.description}\t{key_text(r)}" for r in KEYS if r.menu == "navigate"]
    view = [a.text() for a in menus["View"].actions()]
    for r in KEYS:
        if r.menu == "view" and r.action not in ("present_toggle", "escape"):
            assert f"{r.description}\t{key_text(r)}" in view
    assert "&Presentation mode\tF11" in view
    # The menu entry runs the same action as the key.
    [next_channel] = [a for a in menus["Navigate"].actions() if a.text().startswith("Next channel")]
    next_channel.trigger()
    assert w.session.channel == int(w.feature_view.mosaic.order[0])
    # '?' shows every row in large text; any key closes it and does nothing else.
    qtbot.keyClick(w.feature_view, Qt.Key_Question, Qt.ShiftModifier)
    shown = w.presentation.keymap_text.text()
    assert w.presentation.keymap.isVisible()
    for r in KEYS:
        assert r.description in shown and key_text(r) in shown
    assert w.presentation.keymap_text.font().pointSize() >= 12
    channel = w.session.channel
    qtbot.keyClick(w.feature_view, Qt.Key_Right)
    assert not w.presentation.keymap.isVisible() and w.session.channel == channel
    qtbot.keyClick(w.feature_view, Qt.Key_F1)
    assert w.presentation.keymap.isVisible()


def test_after_clicking_the_gallery_the_arrows_step_channels_and_the_gallery_names_the_image(qtbot, shapes):
    w = shapes
    gallery = w.image_view.gallery
    qtbot.waitUntil(lambda: gallery.count() >= 8, timeout=30_000)
    paths = w.image_view.gallery_paths()
    row = next(i for i, p in enumerate(paths) if p.endswith("square.png"))
    item = gallery.item(row)
    qtbot.mouseClick(gallery.viewport(), Qt.LeftButton, pos=gallery.visualItemRect(item).center())
    qtbot.waitUntil(lambda: w.session.image is not None and w.session.image.name == "square.png"
                    and w.ready and w.runner.idle(), timeout=30_000)
    assert QApplication.focusWidget() is gallery
    order = [int(c) for c in w.feature_view.mosaic.order]
    qtbot.keyClick(gallery, Qt.Key_Right)
    assert w.session.channel == order[0]
    qtbot.keyClick(gallery, Qt.Key_Right)
    assert w.session.channel == order[1]
    assert gallery.currentItem() is item and item.data(Qt.UserRole) == w.session.image.path
    layer = w.session.layer
    qtbot.keyClick(gallery, Qt.Key_Down)
    steps = w.session.steppable_layers()
    assert w.session.layer == steps[steps.index(layer) + 1]
    assert gallery.currentItem() is item


def test_a_text_field_keeps_its_keys(qtbot, shapes):
    from PySide6.QtWidgets import QAbstractSpinBox

    w = shapes
    w.docks["training"].raise_()
    spin = w.training_panel.findChildren(QAbstractSpinBox)[0]
    spin.setFocus()
    qtbot.waitUntil(lambda: QApplication.focusWidget() is spin, timeout=5_000)
    channel, value = w.session.channel, spin.value()
    qtbot.keyClick(spin, Qt.Key_Up)
    assert w.session.channel == channel and spin.value() != value
    qtbot.keyClick(spin, Qt.Key_F11)  # function keys still reach the window
    assert w.presenting


@pytest.mark.parametrize("stepped", [True, False, None])
def test_page_down_asks_the_scene_stepper_first_then_steps_layers(qtbot, shapes, stepped):
    w = shapes
    calls = []
    if stepped is not None:
        w.presentation.keys.scene_stepper = lambda delta: calls.append(delta) or stepped
    steps = w.session.steppable_layers()
    layer = w.session.layer
    qtbot.keyClick(w.feature_view, Qt.Key_PageDown)
    assert calls == ([] if stepped is None else [1])
    assert w.session.layer == (layer if stepped else steps[steps.index(layer) + 1])
    qtbot.keyClick(w.feature_view, Qt.Key_PageUp)
    assert calls == ([] if stepped is None else [1, -1])
    assert w.session.layer == layer


def test_class_and_head_keys_and_ctrl_r(qtbot, shapes, monkeypatch):
    w = shapes
    top = [p.index for p in w.predictions_view.predictions()]
    qtbot.keyClick(w.feature_view, Qt.Key_Down, Qt.ShiftModifier)
    assert w.session.target == top[1]
    qtbot.keyClick(w.feature_view, Qt.Key_C)
    assert w.session.target == top[2]
    qtbot.keyClick(w.feature_view, Qt.Key_Up, Qt.ShiftModifier)
    qtbot.keyClick(w.feature_view, Qt.Key_Up, Qt.ShiftModifier)
    assert w.session.target is None  # back to the predicted class
    steps = []
    monkeypatch.setattr(w.attention_view, "step_head", lambda delta: steps.append(delta))
    qtbot.keyClick(w.feature_view, Qt.Key_Right, Qt.ShiftModifier)
    qtbot.keyClick(w.feature_view, Qt.Key_H, Qt.ShiftModifier)
    assert steps == [1, -1]
    refreshed = []
    monkeypatch.setattr(w.explain, "refresh", lambda: refreshed.append(True))
    qtbot.keyClick(w.feature_view, Qt.Key_R, Qt.ControlModifier)
    assert refreshed == [True] and not w.presenting


def test_screenshot_in_presentation_mode_is_the_projector_size_with_a_caption_twice_as_large(
        qtbot, qapp, settings_file, tmp_path, capsys, monkeypatch):
    from PIL import Image

    from main import main
    from widgets.presentation import PresentationMode
    from widgets.theme import THEME

    seen = {}
    real_set = PresentationMode.set

    def spy(self, on, *args, **kwargs):
        real_set(self, on, *args, **kwargs)
        if on:
            seen["caption pt"] = self.caption.font().pointSize()
            seen["window"] = self.window

    monkeypatch.setattr(PresentationMode, "set", spy)
    out = tmp_path / "p.png"
    status = main(["screenshot", "--model", "tinyvgg_shapes", "--device", "cpu", "--image", "star",
                   "--presentation", "--scale", "2", "--size", "1280x720", "--out", str(out)])
    printed = capsys.readouterr().out
    assert status == 0 and printed == f"saved {out} (1280x720)\n"
    with Image.open(out) as image:
        assert image.size == (1280, 720)
        top = image.convert("L").crop((0, 0, 1280, 40))
        assert top.getextrema()[0] < 80  # the caption's dark text is at the very top (no menu bar)
    assert seen["caption pt"] == 2 * 16  # the "title" role at 2x
    assert THEME.scale == 1.0 and THEME.theme == "default"  # put back for the rest of the process


def test_the_window_options_take_presentation_scale_and_theme():
    from vizapp.cli.parser import THEMES, parse_args
    from widgets.theme import THEMES as THEME_SETS

    assert tuple(THEME_SETS) == THEMES
    args = parse_args(["--presentation", "--scale", "2", "--theme", "light", "--model", "vit_digits"])
    assert (args.command, args.presentation, args.scale, args.theme, args.model) == ("gui", True, 2.0, "light", "vit_digits")
    args = parse_args(["gui", "--scale", "1.5"])
    assert (args.presentation, args.scale, args.theme) == (False, 1.5, None)
    shot = parse_args(["screenshot", "--out", "s.png", "--presentation", "--scale", "3", "--theme", "dark"])
    assert (shot.presentation, shot.scale, shot.theme) == (True, 3.0, "dark")


def test_the_window_options_set_the_scale_and_theme_without_presenting(window):
    from argparse import Namespace

    from widgets.app import present
    from widgets.theme import THEME

    try:
        present(window, Namespace(presentation=False, scale=1.5, theme="dark"))
        assert (THEME.scale, THEME.theme, window.presenting) == (1.5, "dark", False)
        present(window, Namespace(presentation=True, scale=None, theme=None), full_screen=False)
        assert window.presenting and THEME.scale == 2.0 and not window.menuBar().isVisible()
        window.set_presentation(False)
        assert (THEME.scale, THEME.theme) == (1.5, "dark")  # as before presenting
    finally:
        window.set_presentation(False)
        THEME.set_scale(1.0)
        THEME.set_theme("default")


def test_escape_outside_presentation_still_cancels_the_jobs(qtbot, window, monkeypatch):
    cancelled = []
    monkeypatch.setattr(window.routes, "cancel", lambda: cancelled.append(True))
    window.feature_view.setFocus()
    qtbot.keyClick(window.feature_view, Qt.Key_Escape)
    assert cancelled == [True] and not window.presenting


def test_an_error_while_presenting_shows_the_status_bar_until_dismissed(qtbot, window):
    from vizapp.core.notifications import notification_manager

    window.set_presentation(True, 1.25, full_screen=False)
    try:
        assert not window.statusBar().isVisible()
        notification_manager.error("layer 'nope' is not in the model")
        qtbot.waitUntil(window.statusBar().isVisible, timeout=5_000)
        assert window.message.text() == "layer 'nope' is not in the model"
        window.dismiss_button.click()
        assert not window.statusBar().isVisible()
    finally:
        window.set_presentation(False)
    assert window.statusBar().isVisible()


def test_keys_work_in_a_floating_dock_and_not_in_a_dialog(qtbot, shapes):
    from PySide6.QtWidgets import QDialog, QPushButton, QVBoxLayout

    w = shapes
    dock = w.docks["features"]
    dock.setFloating(True)
    qtbot.waitUntil(dock.isVisible, timeout=5_000)
    qtbot.keyClick(w.feature_view, Qt.Key_Down, Qt.ShiftModifier)  # a key the view itself ignores
    assert w.session.target == w.predictions_view.predictions()[1].index
    qtbot.keyClick(w.feature_view.sort, Qt.Key_Right)
    assert w.session.channel == int(w.feature_view.mosaic.order[0])
    dialog = QDialog(w)
    button = QPushButton("ok", dialog)
    QVBoxLayout(dialog).addWidget(button)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.keyClick(button, Qt.Key_Right)
    assert w.session.channel == int(w.feature_view.mosaic.order[0])  # the dialog's key, not the window's
    dialog.close()


def test_every_label_and_control_text_doubles_at_scale_2(shapes):
    """Labels (role fonts and the application's) and controls (buttons, combo boxes, tabs,
    tables) all follow the one scale."""
    from PySide6.QtWidgets import (
        QAbstractButton,
        QAbstractItemView,
        QComboBox,
        QLabel,
        QTabBar,
        QWidget,
    )

    w = shapes
    kinds = (QLabel, QAbstractButton, QComboBox, QTabBar, QAbstractItemView)
    widgets = [x for x in w.findChildren(QWidget) if isinstance(x, kinds)
               and not (isinstance(x, QLabel) and not x.text())  # a picture's label
               and x is not w.presentation.keymap_text]  # as large as fits, when shown
    before = {id(x): x.font().pointSizeF() for x in widgets}
    w.set_presentation(True, 2, full_screen=False)
    small = [f"{type(x).__name__} {x.objectName() or getattr(x, 'text', lambda: '')()!r}: "
             f"{before[id(x)]} -> {x.font().pointSizeF()}"
             for x in widgets if x.font().pointSizeF() < 2 * before[id(x)] - 0.01]
    assert small == []
    w.set_presentation(False)
    assert {id(x): x.font().pointSizeF() for x in widgets} == before


def test_the_caption_names_the_attention_block_and_head_once_that_dock_shows_a_result(qtbot, shapes, monkeypatch):
    w = shapes
    w.set_presentation(True, 1.25, full_screen=False)
    assert "attention" not in w.presentation.caption.full_text()
    monkeypatch.setattr(w, "dock_on_screen", lambda key: key == "attention")
    monkeypatch.setattr(w.attention_view, "result", object())  # a result arrives: no session event says so
    monkeypatch.setattr(w.attention_view, "layer", lambda: 4)
    monkeypatch.setattr(w.attention_view, "head", lambda: 2)
    qtbot.waitUntil(lambda: "attention block 4, head 2" in w.presentation.caption.full_text(), timeout=5_000)
    assert w.presentation.caption.full_text().split("  ·  ")[:2] == ["TinyVGG on shapes (trained here)",
                                                                     "attention block 4, head 2"]
    w.set_presentation(False)

"""Every view fits the screens a lecture is projected on (1024x768 to 1920x1080) and its
sizes follow the theme's scale: the walker of ``tests/_fit.py`` over one shared window."""

from __future__ import annotations

import pytest
from _fit import misfits

SIZES = ((1024, 768), (1280, 720), (1920, 1080))


def fit_to(window, qtbot, size):
    """Resize ``window`` to ``size`` and lay it out for that size, as a fresh window would be."""
    window.resize(*size)  # (the previous size's layout may hold it larger for now)
    window.reset_layout()  # the layout for the new size, as a window shown at that size gets
    window.resize(*size)
    qtbot.wait(50)


@pytest.fixture
def lecture(make_window):
    """One started window (the offline model on the default sample), fast attributions only."""
    w = make_window(start=True)
    w.attribution_view.set_methods(["saliency", "gradcam"])
    return w


def test_every_dock_fits_each_lecture_screen(lecture, qtbot):
    w = lecture
    problems: dict[str, str] = {}  # problem -> the first dock raised when it showed
    for size in SIZES:
        fit_to(w, qtbot, size)
        got = w.size().toTuple()
        if got != size:
            problems[f"{size}: the window is {got[0]}x{got[1]} (its minimum {w.minimumSizeHint().toTuple()})"] = ""
        for key, dock in w.docks.items():
            dock.raise_()
            qtbot.waitUntil(w.runner.idle, timeout=60_000)
            qtbot.wait(20)
            for p in misfits(w):
                problems.setdefault(f"{size[0]}x{size[1]} {p}", f"({key} raised)")
    lines = [f"{p} {raised}" for p, raised in problems.items()]
    assert lines == [], f"{len(lines)} misfits:\n" + "\n".join(lines)


def _font_px(widget) -> float:
    """The size of ``widget``'s font in points (a pixel-sized font: its pixels)."""
    f = widget.font()
    return f.pointSizeF() if f.pointSizeF() > 0 else float(f.pixelSize())


def thumbnails(w) -> dict[str, tuple[int, int]]:
    """The window's thumbnails, tiles and picture minimums, by name: (width, height)."""
    from widgets.training_views import ConfusionView, KernelView

    sizes = {
        "image gallery icon": w.image_view.gallery.iconSize().toTuple(),
        "image original minimum": w.image_view.original.minimumSize().toTuple(),
        "image model input minimum": w.image_view.model_input.minimumSize().toTuple(),
        "embedding hover thumbnail": w.embedding_view.thumb.size().toTuple(),
        "predictions bars minimum": w.predictions_view.minimumSize().toTuple(),
    }
    for key, panel in w.attribution_view.panels.items():
        sizes[f"attribution {key} map minimum"] = panel.picture.minimumSize().toTuple()
    board = w.training_panel.board
    for name, view in (("kernels", board.kernel_mosaic_view), ("confusion", board.confusion_view),
                       ("loss", board.curves_view.loss_plot), ("embedding", board.embedding_scatter.canvas)):
        assert isinstance(view, (KernelView, ConfusionView)) or name in ("loss", "embedding")
        sizes[f"training {name} plot minimum"] = view.minimumSize().toTuple()
    for i, tile in enumerate(w.patches_view.thumbs + getattr(w, "_test_tiles", [])):
        sizes[f"top patch tile {i} minimum"] = tile.picture.minimumSize().toTuple()
    return sizes


def fonts(w) -> dict[str, float]:
    """Every label's, button's and combo box's font size in the docks and the status bar, by widget."""
    from PySide6.QtWidgets import QAbstractButton, QComboBox, QLabel

    found = {}
    roots = [d.widget() for d in w.docks.values()] + [w.statusBar()]
    for root in roots:
        for kind in (QLabel, QAbstractButton, QComboBox):
            for widget in root.findChildren(kind):
                text = getattr(widget, "text", widget.currentText if isinstance(widget, QComboBox) else str)()
                where = widget.parentWidget()
                found[f"{type(widget).__name__} {text[:30]!r} in {type(where).__name__} {id(widget)}"] = _font_px(widget)
    return found


def test_scale_two_doubles_every_font_and_thumbnail(lecture, qtbot):
    from widgets.theme import THEME
    from widgets.top_patches_view import _Thumb

    w = lecture
    w._test_tiles = [_Thumb()]  # a top patch's tile (the view makes them for an index)
    fit_to(w, qtbot, (1920, 1080))
    font_1, thumbs_1 = fonts(w), thumbnails(w)
    assert len(font_1) > 100 and len(thumbs_1) >= 10
    try:
        THEME.set_scale(2)
        qtbot.wait(100)
        font_2, thumbs_2 = fonts(w), thumbnails(w)
    finally:
        THEME.set_scale(1)
    small = [f"{k}: {font_1[k]} -> {font_2.get(k)}" for k in font_1 if font_2.get(k, 0) < 2 * font_1[k] - 0.5]
    assert small == [], f"{len(small)} of {len(font_1)} fonts not doubled:\n" + "\n".join(small[:40])
    thin = [f"{k}: {thumbs_1[k]} -> {thumbs_2[k]}" for k in thumbs_1
            if any(b < 2 * a - 1 for a, b in zip(thumbs_1[k], thumbs_2[k], strict=True))]
    assert thin == [], "thumbnails not doubled:\n" + "\n".join(thin)
    qtbot.wait(50)
    assert fonts(w) == font_1  # and back at scale 1


@pytest.mark.parametrize("size", ["1024x768", "1280x720"])
def test_a_screenshot_has_exactly_the_size_asked(size, capsys, qapp, settings_file, tmp_path):
    from PIL import Image

    from main import main

    out_file = tmp_path / "s.png"
    status = main(["screenshot", "--model", "tinyvgg_shapes", "--device", "cpu", "--image", "star",
                   "--size", size, "--out", str(out_file)])
    out, err = capsys.readouterr()
    assert status == 0, err
    with Image.open(out_file) as image:
        assert image.size == tuple(int(x) for x in size.split("x"))
    assert out == f"saved {out_file} ({size})\n"


def test_a_window_takes_its_share_of_the_screen_and_a_big_one_is_clamped(qapp):
    from PySide6.QtWidgets import QWidget

    from widgets.fit import SCREEN_FRACTION, available, clamp_to_screen, fit_to_screen

    w = QWidget()
    area = available(w)
    size = fit_to_screen(w)
    assert size.toTuple() == (round(area.width() * SCREEN_FRACTION), round(area.height() * SCREEN_FRACTION))
    assert area.contains(w.geometry())
    w.setGeometry(area.x() + 50, area.y() + 50, area.width() * 3, area.height() * 2)  # saved on a bigger screen
    assert clamp_to_screen(w)
    assert w.width() <= area.width() and w.height() <= area.height() and area.contains(w.frameGeometry())
    assert not clamp_to_screen(w)  # already inside


def test_the_window_fits_1024x768_and_lays_out_compact_below_1400x900(lecture, qtbot):
    from widgets.docks import is_compact

    w = lecture
    fit_to(w, qtbot, (1024, 768))
    hint = w.minimumSizeHint()
    assert hint.width() <= 1024 and hint.height() <= 768, hint
    assert is_compact(1280, 720) and is_compact(1024, 768) and not is_compact(1920, 1080)
    assert is_compact(1920, 1080, scale=2)  # a doubled theme fills a big screen like a small one
    tabbed = {k for k, d in w.docks.items() if d in w.tabifiedDockWidgets(w.docks["image"])}
    assert tabbed == {"model", "kernels"}
    assert w.dock_on_screen("image") and w.dock_on_screen("predictions") and not w.dock_on_screen("model")
    # The training lab: too narrow for the form beside the board, the form starts hidden.
    w.docks["training"].raise_()
    qtbot.wait(50)
    panel = w.training_panel
    assert not panel.form.isVisible() and not panel.settings_button.isChecked()
    panel.settings_button.click()
    assert panel.form.isVisible()
    fit_to(w, qtbot, (1920, 1080))
    assert not is_compact(w.width(), w.height())
    assert w.dock_on_screen("model") and w.dock_on_screen("kernels") and w.dock_on_screen("predictions")
    w.docks["training"].raise_()
    qtbot.wait(50)
    assert panel.form.isVisible()


def test_a_wrapped_label_reserves_its_lines_only_while_shown(qtbot):
    """A heading asks for the height of its wrapped lines, and a hidden one (another page of a
    stack) asks for none, so it cannot hold a dock taller than the screen."""
    from widgets.common import heading

    label = heading("a sentence long enough to wrap onto several lines in a narrow dock " * 3)
    qtbot.addWidget(label)
    label.resize(120, 20)
    label.show()
    qtbot.waitExposed(label)
    assert label.minimumHeight() == label.heightForWidth(120) > 3 * label.fontMetrics().lineSpacing()
    label.hide()
    assert label.minimumHeight() == 0

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

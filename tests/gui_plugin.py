"""The one window fixture, a pytest plugin that ``tests/conftest.py`` loads (napari's
``make_napari_viewer`` idea: a factory fixture that owns every window it makes).

``make_window(...)`` builds the :class:`~widgets.main_window.MainWindow` the way every
window test wants it: settings in a temporary ``$VIZAPP_SETTINGS`` file, training runs in a
temporary ``$VIZAPP_RUNS`` folder, registered with ``qtbot``, shown (1400 x 900) and exposed,
and, when asked to start (or given a model, image or layer), started and waited for until its
analysis is on screen and no job is left. At teardown every window it made is closed (which
stops its job runner and the training panel) and the test fails if a thread of the app
(``vizapp-*``: the job runner, training, previews, the projection preload) is still running.

``window`` is ``make_window()`` (not started) and ``started`` is ``make_window(start=True)``.
``QT_QPA_PLATFORM`` is set once, in ``tests/conftest.py``, before anything imports Qt.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from pathlib import Path

import pytest

#: How long teardown waits for the app's threads that end by themselves (the projection
#: preload is an import that cannot be cancelled) before it fails the test.
THREAD_GRACE_S = 120.0
#: The default window size of the tests (the screenshots' size in ``test_gui.py``).
SIZE = (1400, 900)


def app_threads(before: Iterable[threading.Thread]) -> list[threading.Thread]:
    """The app's threads (named ``vizapp-*``) alive now that were not in ``before``."""
    old = set(before)
    return [t for t in threading.enumerate() if t.name.startswith("vizapp-") and t not in old and t.is_alive()]


def close_and_check(windows: Iterable, before: Iterable[threading.Thread], timeout_s: float = THREAD_GRACE_S) -> None:
    """Close ``windows`` and fail the test if one of the app's threads outlives ``timeout_s``.

    A thread that is still running after the window closed is one that nothing joins: it
    would run into the next test (and, in the app, past quitting).
    """
    for w in windows:
        w.close()  # closeEvent: the training panel's and the runner's shutdown
    deadline = time.monotonic() + timeout_s
    for thread in app_threads(before):
        thread.join(max(0.0, deadline - time.monotonic()))
    left = [w for w in windows if w.runner.alive()]
    names = sorted({t.name for t in app_threads(before)} | ({"vizapp-jobs"} if left else set()))
    if names:
        pytest.fail(f"the window left {len(names)} thread(s) running after it closed: {', '.join(names)}",
                    pytrace=False)


@pytest.fixture
def settings_file(tmp_path, monkeypatch) -> Path:
    """``$VIZAPP_SETTINGS``: a temporary settings file (not created)."""
    path = tmp_path / "settings.ini"
    monkeypatch.setenv("VIZAPP_SETTINGS", str(path))
    return path


@pytest.fixture
def make_window(qtbot, settings_file, tmp_path, monkeypatch):
    """``make_window(model=None, image=None, layer=None, *, start=False, restore_layout=False,
    size=(1400, 900), show=True, timeout_ms=60_000, **start_options)``: a MainWindow.

    ``size=None`` keeps the window's own size; ``show=False`` builds it hidden. Starting
    (``start=True``, or any of ``model``/``image``/``layer``/``start_options``) calls
    ``window.start(...)`` and waits until the window is ready and its runner idle.
    """
    from widgets.main_window import MainWindow

    monkeypatch.setenv("VIZAPP_RUNS", str(tmp_path / "runs"))
    before = list(threading.enumerate())
    made = []

    def make(model: str | None = None, image: str | None = None, layer: str | None = None, *,
             start: bool = False, restore_layout: bool = False, size: tuple[int, int] | None = SIZE,
             show: bool = True, timeout_ms: int = 60_000, **start_options) -> MainWindow:
        w = MainWindow(restore_layout=restore_layout)
        made.append(w)
        qtbot.addWidget(w)
        if size is not None:
            w.resize(*size)
        if show:
            w.show()
            qtbot.waitExposed(w)
        if start or model or image or layer or start_options:
            w.start(model=model, image=image, layer=layer, **start_options)
            qtbot.waitUntil(lambda: w.ready and w.runner.idle(), timeout=timeout_ms)
        return w

    yield make
    close_and_check(made, before)


@pytest.fixture
def window(make_window):
    """The window as launched, before ``start()``: shown at 1400 x 900, nothing loaded."""
    return make_window()


@pytest.fixture
def started(make_window):
    """The default window started (the offline model on the default sample) and ready."""
    return make_window(start=True)

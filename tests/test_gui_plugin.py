"""The window fixture itself (``tests/gui_plugin.py``): its teardown fails a test that leaves
one of the app's threads running."""

from __future__ import annotations

import threading

import pytest
from gui_plugin import close_and_check

pytestmark = pytest.mark.gui


def test_teardown_fails_a_test_that_leaves_a_thread_running(make_window):
    before = list(threading.enumerate())
    w = make_window(size=None, show=False)
    release = threading.Event()
    stuck = threading.Thread(target=release.wait, args=(60,), name="vizapp-stuck", daemon=True)
    stuck.start()
    try:
        with pytest.raises(pytest.fail.Exception, match=r"left 1 thread\(s\) running after it closed: vizapp-stuck$"):
            close_and_check([w], before, timeout_s=0.2)
        assert not w.runner.alive()  # closing stopped the window's own worker
    finally:
        release.set()
        stuck.join(10)
    close_and_check([w], before, timeout_s=10)  # nothing left running: no failure


def test_the_window_is_built_shown_and_started_by_the_fixture(make_window, settings_file, tmp_path):
    import os

    w = make_window(model="tinyvgg_shapes")
    assert os.environ["VIZAPP_SETTINGS"] == str(settings_file)
    assert os.environ["VIZAPP_RUNS"] == str(tmp_path / "runs")
    assert w.isVisible() and (w.width(), w.height()) == (1400, 900)
    assert w.ready and w.runner.idle() and w.session.model.name == "tinyvgg_shapes"

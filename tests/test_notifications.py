"""The one notifier (``vizapp.core.notifications``) and the one status route of the window."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from vizapp.core.notifications import (
    Notification,
    NotificationManager,
    Severity,
    notification_manager,
)

# --- the manager, Qt-free -------------------------------------------------------------


def test_the_notifier_imports_no_qt():
    code = "import sys, vizapp.core.notifications; print(sorted(m for m in sys.modules if 'PySide' in m or 'Qt' in m))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_subscribers_get_every_severity_in_order():
    manager = NotificationManager()
    got, also = [], []
    manager.subscribe(got.append)
    manager.subscribe(got.append)  # subscribing twice delivers once
    manager.subscribe(also.append)
    manager.info("loaded")
    manager.warning("slow", details="on the CPU")
    manager.error("broken")
    manager.notify("plain", "warning")
    assert got == [
        Notification("loaded", Severity.INFO),
        Notification("slow", Severity.WARNING, "on the CPU"),
        Notification("broken", Severity.ERROR),
        Notification("plain", Severity.WARNING),
    ]
    assert also == got
    assert [n.is_error for n in got] == [False, False, True, False]
    manager.unsubscribe(got.append)
    manager.info("after")
    assert len(got) == 4 and also[-1] == Notification("after", Severity.INFO)
    with pytest.raises(ValueError):
        manager.notify("x", "fatal")


def test_a_failing_subscriber_does_not_stop_the_others(caplog):
    manager = NotificationManager()
    got = []

    def broken(_n):
        raise RuntimeError("subscriber bug")

    manager.subscribe(broken)
    manager.subscribe(got.append)
    manager.error("still delivered")
    assert got == [Notification("still delivered", Severity.ERROR)]
    assert "subscriber bug" in caplog.text


def test_install_hooks_replaces_and_restores_the_previous_hooks():
    manager = NotificationManager()
    before = (sys.excepthook, threading.excepthook)
    manager.install_hooks()
    try:
        assert manager.hooks_installed
        assert sys.excepthook == manager.receive_error
        assert threading.excepthook == manager.receive_thread_error
        manager.install_hooks()  # nested installs unwind in order
        manager.uninstall_hooks()
        assert sys.excepthook == manager.receive_error
    finally:
        manager.uninstall_hooks()
    assert (sys.excepthook, threading.excepthook) == before
    assert not manager.hooks_installed
    manager.uninstall_hooks()  # nothing installed: a no-op
    assert (sys.excepthook, threading.excepthook) == before


def test_an_exception_in_a_thread_becomes_an_error_with_its_traceback(caplog):
    manager = NotificationManager()
    got = []
    manager.subscribe(got.append)

    def work():
        raise ValueError("the worker broke")

    manager.install_hooks()
    try:
        thread = threading.Thread(target=work, name="vizapp-test-notify")
        thread.start()
        thread.join()
    finally:
        manager.uninstall_hooks()
    assert len(got) == 1
    note = got[0]
    assert note.severity is Severity.ERROR
    assert note.message == "internal error in a worker thread: ValueError: the worker broke"
    assert note.details.startswith("Traceback (most recent call last):")
    assert 'raise ValueError("the worker broke")' in note.details and "in work" in note.details
    assert "the worker broke" in caplog.text  # logged too, with the traceback
    assert 'raise ValueError("the worker broke")' in caplog.text


def test_the_main_thread_hook_becomes_an_error():
    manager = NotificationManager()
    got = []
    manager.subscribe(got.append)
    try:
        {}["missing"]
    except KeyError:
        manager.receive_error(*sys.exc_info())
    assert got[0].message == "internal error: KeyError: 'missing'"
    assert got[0].severity is Severity.ERROR and "KeyError" in got[0].details


# --- the window: one status label, one error colour --------------------------------------


def _shows_error(w, text: str) -> bool:
    from widgets.theme import THEME

    return (text in w.message.text() and w.last_error == w.message.text()
            and THEME.colour("error") in w.message.styleSheet() and w.dismiss_button.isVisible())


def test_the_window_subscribes_once_and_stops_when_closed(make_window):
    w = make_window(show=False)
    assert notification_manager.subscribers.count(w._receive_notification) == 1
    w.close()
    assert w._receive_notification not in notification_manager.subscribers


def test_a_failed_worker_job_shows_in_the_status_label(qtbot, make_window, monkeypatch):
    from vizapp import analysis

    def broken(_source, **_job):
        raise RuntimeError("decoder exploded")

    monkeypatch.setattr(analysis, "decode_image", broken)
    w = make_window()
    w.open_image("anything.png")
    qtbot.waitUntil(lambda: "decoder exploded" in w.last_error, timeout=10_000)
    assert w.last_error == "internal error in image: RuntimeError: decoder exploded"
    assert _shows_error(w, "decoder exploded")


def test_a_training_failure_shows_in_the_status_label(qtbot, make_window, tmp_path):
    import numpy as np
    from PIL import Image

    from vizapp.training.config import TrainConfig

    folder = tmp_path / "loose"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((16, 16, 3), 60 * i, np.uint8)).save(folder / f"{i}.png")
    w = make_window()
    panel = w.training_panel
    panel.set_config(TrainConfig(dataset=str(folder), n=500, model="lenet", loss="ce", epochs=2, batch_size=32,
                                 log_every=2, kernels_every=5, embed_points=100, checkpoint_every=0, seed=0))
    assert panel.start()
    qtbot.waitUntil(lambda: not panel.running(), timeout=180_000)
    qtbot.waitUntil(lambda: "class sub-folders" in w.last_error, timeout=10_000)
    assert w.last_error == panel.error_text()
    assert _shows_error(w, "class sub-folders")


def test_uncaught_exceptions_show_in_the_status_label(qtbot, make_window):
    w = make_window()
    notification_manager.install_hooks()
    try:
        # A worker thread: delivered to the GUI thread by a queued signal.
        def work():
            raise ValueError("thread broke")

        thread = threading.Thread(target=work, name="vizapp-test-uncaught")
        thread.start()
        thread.join()
        qtbot.waitUntil(lambda: "thread broke" in w.last_error, timeout=10_000)
        assert w.last_error == "internal error in a worker thread: ValueError: thread broke"
        assert _shows_error(w, "thread broke")
        # The GUI thread: what Qt calls when a slot raises.
        try:
            raise KeyError("gui broke")
        except KeyError:
            sys.excepthook(*sys.exc_info())
        assert w.last_error == "internal error: KeyError: 'gui broke'"
        assert _shows_error(w, "gui broke")
    finally:
        notification_manager.uninstall_hooks()


def test_warnings_and_info_share_the_label_in_their_colours(qtbot, make_window):
    from widgets.theme import THEME

    w = make_window()
    notification_manager.warning("running on the CPU")
    assert w.message.text() == "running on the CPU" and THEME.colour("warning") in w.message.styleSheet()
    assert w.dismiss_button.isVisible() and w.last_error == ""
    w.notify("saved x.png")  # the window's wrapper dispatches INFO
    assert w.message.text() == "saved x.png" and w.message.styleSheet() == ""
    assert not w.dismiss_button.isVisible()
    w.notify("it failed", error=True)
    assert _shows_error(w, "it failed")


def test_a_bound_method_is_held_weakly():
    """A view that is never closed can still be freed: the module-level manager must not
    keep it (a PySide object alive at interpreter exit crashes the finaliser)."""
    import gc
    import weakref

    class View:
        def __init__(self):
            self.got = []

        def receive(self, n):
            self.got.append(n.message)

    manager = NotificationManager()
    view = View()
    manager.subscribe(view.receive)
    manager.info("one")
    assert view.got == ["one"] and manager.subscribers == [view.receive]
    gone = weakref.ref(view)
    del view
    gc.collect()
    assert gone() is None and manager.subscribers == []
    manager.info("two")  # no dead subscriber is called

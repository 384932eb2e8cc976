"""Start the app, or render its window headless to a PNG (``main.py screenshot``)."""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from pathlib import Path

__all__ = ["make_app", "run_gui", "screenshot", "wait_until_ready"]


def make_app():
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("vizapp")
    app.setOrganizationName("vizapp")
    icon = Path(__file__).resolve().parents[1] / "resources" / "icon.png"
    if icon.is_file():
        from PySide6.QtGui import QIcon

        app.setWindowIcon(QIcon(str(icon)))
    return app


def _install_error_hooks(window) -> None:
    """Uncaught exceptions (GUI or other threads) become a message, not a crash."""

    def hook(exc_type, exc, tb):
        traceback.print_exception(exc_type, exc, tb)
        window.notify(f"internal error: {exc_type.__name__}: {exc}", error=True)

    def thread_hook(args):
        traceback.print_exception(args.exc_type, args.exc_value, args.exc_traceback)
        window.sigNotify.emit(f"internal error in a worker thread: {args.exc_type.__name__}: {args.exc_value}", True)

    sys.excepthook = hook
    threading.excepthook = thread_hook


def run_gui(args) -> int:
    from vizapp.device import configure_threads
    from widgets.main_window import MainWindow

    app = make_app()
    configure_threads(leave_for_gui=1)
    window = MainWindow()
    _install_error_hooks(window)
    window.show()
    window.start(args.model, args.image, args.layer, args.arch, args.trust, args.device)
    return app.exec()


def wait_until_ready(window, timeout: float = 600.0) -> bool:
    """Process events until the window shows a model, an image and their analysis."""
    from PySide6.QtWidgets import QApplication

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        QApplication.processEvents()
        if window.ready and window.runner.idle():
            QApplication.processEvents()
            return True
        if window.last_error and window.runner.idle() and (window.session.model is None or window.session.image is None):
            return False
        time.sleep(0.01)
    return False


def screenshot(args) -> int:
    """``main.py screenshot``: the main window in a given state, saved as a PNG."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from vizapp.errors import UserError
    from widgets.main_window import MainWindow

    try:
        w, h = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise UserError(f"--size must look like 1600x1000, not '{args.size}'") from None
    app = make_app()
    window = MainWindow(restore_layout=False)
    window.resize(w, h)
    window.show()
    window.start(args.model, args.image, args.layer, args.arch, args.trust, args.device)
    try:
        if not wait_until_ready(window):
            raise UserError(window.last_error or "the window did not finish loading in time")
        if args.layer and window.session.layer != args.layer:
            raise UserError(f"layer '{args.layer}' is not in {window.session.model.title}")
        if args.channel is not None:
            window.session.select_channel(args.channel)
        if args.dock:
            if args.dock not in window.docks:
                raise UserError(f"--dock must be one of {', '.join(window.docks)}, not '{args.dock}'")
            window.docks[args.dock].raise_()
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:  # the raised dock's jobs start on the next events
                app.processEvents()
                time.sleep(0.05)
                app.processEvents()
                if window.runner.idle():
                    break
        for _ in range(5):
            app.processEvents()
        path = window.export_view(None, args.out)
    finally:
        window.runner.shutdown()
        window.close()
    print(f"saved {path}")
    return 0

"""Start the app, or render its window headless to a PNG (``main.py screenshot``)."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

__all__ = ["make_app", "run_gui", "screenshot", "wait_until_ready"]


def make_app():
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("vizapp")
    app.setOrganizationName("vizapp")
    from vizapp.core.paths import resource

    icon: Path = resource("icon.png")
    if icon.is_file():
        from PySide6.QtGui import QIcon

        app.setWindowIcon(QIcon(str(icon)))
    return app


def run_gui(args) -> int:
    from vizapp.core.config import machine_config
    from vizapp.core.notifications import notification_manager
    from vizapp.probing.device import configure_threads
    from widgets.main_window import MainWindow

    machine_config()  # a bad per-machine config file: one line and exit 2, before any window
    app = make_app()
    configure_threads(leave_for_gui=1)
    window = MainWindow()
    # Uncaught exceptions (GUI or other threads) become an error in the status bar, not a crash.
    notification_manager.install_hooks()
    window.show()
    window.start(args.model, args.image, args.layer, args.arch, args.trust, args.device)
    try:
        return app.exec()
    finally:
        notification_manager.uninstall_hooks()


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


class _Collect(logging.Handler):
    """Keeps the window's warnings instead of printing them as they come."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if (text := record.getMessage()) not in self.messages:
            self.messages.append(text)


def screenshot(args) -> int:
    """``main.py screenshot``: the main window in a given state, saved as a PNG."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from vizapp.core.config import machine_config
    from vizapp.core.errors import UserError
    from widgets.main_window import MainWindow

    machine_config()  # a bad per-machine config file: one line and exit 2, before any window
    w, h = args.size  # validated by the parser (vizapp.cli.parser: WxH within its bounds)
    app = make_app()
    window = MainWindow(restore_layout=False)
    window.resize(w, h)
    window.show()
    # An error that stops the screenshot is printed once, as the command's error line;
    # other warnings the window showed are printed after the "saved" line.
    collected = _Collect()
    logging.getLogger("widgets").addHandler(collected)
    window.start(args.model, args.image, args.layer, args.arch, args.trust, args.device)
    try:
        if not wait_until_ready(window):
            raise UserError(window.last_error or "the window did not finish loading in time")
        if args.layer and window.session.layer != args.layer:
            raise UserError(f"layer '{args.layer}' is not in {window.session.model.title}")
        if args.channel is not None:
            maps = getattr(window.feature_view.analysis, "maps", None)
            layer = window.session.layer
            if maps is None:
                raise UserError(f"--channel: layer '{layer}' has no channel maps to select from")
            if args.channel >= maps.shape[0]:
                raise UserError(f"--channel {args.channel}: layer '{layer}' has channels 0 to {maps.shape[0] - 1}")
            window.session.select_channel(args.channel)
        if args.dock:
            window.docks[args.dock].raise_()
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:  # the raised dock's jobs start on the next events
                app.processEvents()
                time.sleep(0.05)
                app.processEvents()
                if window.runner.idle():
                    break
        window.resize(w, h)  # a long status message on the way may have grown it; it has gone
        for _ in range(5):
            app.processEvents()
        path = window.export_view(None, args.out)
        got = window.size()
    finally:
        window.runner.shutdown()
        window.close()
        logging.getLogger("widgets").removeHandler(collected)
    note = "" if (got.width(), got.height()) == (w, h) else f"; the window's smallest size is {got.width()}x{got.height()}"
    print(f"saved {path} ({got.width()}x{got.height()}{note})")
    for text in collected.messages:
        print(f"vizapp: {text}", file=sys.stderr)
    return 0

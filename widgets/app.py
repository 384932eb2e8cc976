"""Start the app, or render its window headless to a PNG (``main.py screenshot``)."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

__all__ = ["checked_start", "make_app", "present", "run_gui", "screenshot", "set_view_options", "view_option",
           "wait_until_ready"]


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
    deck = _read_scene(args)  # a bad scene file: one line and exit 2, before any window
    app = make_app()
    configure_threads(leave_for_gui=1)
    window = MainWindow()
    # Uncaught exceptions (GUI or other threads) become an error in the status bar, not a crash.
    notification_manager.install_hooks()
    window.show()
    present(window, args)
    if args.scene:
        start_on_scene(window, deck, args)
    else:
        window.start(args.model, args.image, args.layer, args.arch, args.trust, args.device)
    if args.video or args.camera is not None:  # --video FILE / --camera [N]: the window follows it live
        window.live.start(args.video or f"camera:{args.camera}")
    try:
        return app.exec()
    finally:
        notification_manager.uninstall_hooks()


def _read_scene(args):
    """The deck ``--scene`` names (a scene is a deck of one), the command line's model, image and
    layer put in its first scene; None without ``--scene``."""
    if not getattr(args, "scene", None):
        return None
    from vizapp.lecture import read_lecture

    deck = read_lecture(args.scene)
    first = deck.scenes[0]
    if args.model:
        first.model, first.arch = args.model, args.arch
    for name in ("image", "layer"):
        if getattr(args, name, None):
            setattr(first, name, getattr(args, name))
    return deck


def start_on_scene(window, deck, args) -> None:
    """Start ``window`` on ``deck``'s first scene (a deck of several stays open for PgDn).

    The window starts as :meth:`MainWindow.start` does, on the scene's model and image where
    they exist (else the defaults, and the scene says what is missing); ``--trust`` is the
    user's, never the scene's.
    """
    import os

    from vizapp.lecture import looks_like_path
    from vizapp.lecture.scene import image_path

    first = deck.scenes[0]
    model = first.model if first.model and not (looks_like_path(first.model) and not os.path.exists(first.model)) else None
    image = image_path(first.image) if first.image else None
    window.start(model, None if image is None else str(image), first.layer, first.arch if model else None,
                 bool(args.trust), args.device)
    if len(deck.scenes) > 1:
        window.lecture.open_deck(deck, args.scene, bool(args.trust))
    else:
        window.lecture.apply(first, os.path.basename(args.scene), bool(args.trust))
def present(window, args, full_screen: bool = True) -> None:
    """``--presentation``, ``--scale`` and ``--theme``: presentation mode at that scale and theme,
    or without ``--presentation`` only the UI scale and colours."""
    scale, theme = getattr(args, "scale", None), getattr(args, "theme", None)
    if getattr(args, "presentation", False):
        window.set_presentation(True, scale, theme, full_screen=full_screen)
        return
    if scale is not None:
        window.presentation.set_scale(scale)
    if theme is not None:
        window.presentation.set_theme(theme)


def wait_until_ready(window, timeout: float = 600.0) -> bool:
    """Process events until the window shows a model, an image and their analysis."""
    from PySide6.QtWidgets import QApplication

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        QApplication.processEvents()
        if window.ready and window.runner.idle() and window.lecture.settled():
            QApplication.processEvents()
            return True
        if window.last_error and window.runner.idle() and window.lecture.settled() and (
                window.session.model is None or window.session.image is None):
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


def checked_start(window, args) -> None:
    """Wait for the window to load what ``args`` asked for, then check ``--layer`` and select
    ``--channel``; a ``UserError`` naming the argument when either is not there."""
    from vizapp.core.errors import UserError

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


def view_option(text: str) -> tuple[str, str, object]:
    """One ``--view-option DOCK.KEY=VALUE`` as ``(dock, key, value)``: VALUE is read as JSON when it is
    JSON (``5``, ``false``, ``[[0, 1], [1, 0]]``), else as text; a ``UserError`` naming the option."""
    import json

    from vizapp.cli.parser import DOCKS
    from vizapp.core.errors import UserError

    where, eq, value = text.partition("=")
    dock, dot, key = where.partition(".")
    if not eq or not dot or not key:
        raise UserError(f"--view-option {text}: write DOCK.KEY=VALUE, like convolution.step=40")
    if dock not in DOCKS:
        raise UserError(f"--view-option {text}: '{dock}' is not a dock; the docks are {', '.join(DOCKS)}")
    try:
        return dock, key, json.loads(value)
    except ValueError:
        return dock, key, value


def set_view_options(window, options: list[tuple[str, str, object]]) -> None:
    """``--view-option``: each :func:`view_option` given to that dock's view's ``set_view_options``."""
    from vizapp.core.errors import UserError

    by_dock: dict[str, dict] = {}
    for dock, key, value in options:
        by_dock.setdefault(dock, {})[key] = value
    for dock, values in by_dock.items():
        view = window.views[dock]
        if not hasattr(view, "set_view_options"):
            raise UserError(f"--view-option: the {dock} dock has no view options")
        view.set_view_options(values)


def _until_idle(app, window, timeout: float = 600.0) -> None:
    """Process events until the window's jobs (those just asked for too) have run."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.05)
        app.processEvents()
        if window.runner.idle():
            return


def screenshot(args) -> int:
    """``main.py screenshot``: the main window in a given state, saved as a PNG."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from vizapp.core.config import machine_config
    from vizapp.core.errors import UserError
    from widgets.main_window import MainWindow

    machine_config()  # a bad per-machine config file: one line and exit 2, before any window
    deck = _read_scene(args)  # a bad scene file: one line and exit 2, before any window
    if args.maximise and not args.dock:
        raise UserError("--maximise: name the dock to fill the window with --dock")
    view_options = [view_option(text) for text in getattr(args, "view_option", None) or ()]  # checked first
    w, h = args.size  # validated by the parser (vizapp.cli.parser: WxH within its bounds)
    app = make_app()
    from widgets.theme import THEME

    scale, theme = THEME.scale, THEME.theme
    window = MainWindow(restore_layout=False)
    window.resize(w, h)
    window.show()
    # As projected: presentation mode's chrome and caption at --scale in a window of --size (the
    # offscreen screen is not resized: full screen would be its size, not the projector's).
    present(window, args, full_screen=False)
    window.resize(w, h)
    # An error that stops the screenshot is printed once, as the command's error line;
    # other warnings the window showed are printed after the "saved" line.
    collected = _Collect()
    logging.getLogger("widgets").addHandler(collected)
    if deck is not None:
        if deck.scenes[0].presentation and not window.presenting:  # as projected, in a window of --size
            window.set_presentation(True, full_screen=False)
            window.resize(w, h)
        start_on_scene(window, deck, args)
    else:
        window.start(args.model, args.image, args.layer, args.arch, args.trust, args.device)
    try:
        checked_start(window, args)
        if args.video:  # follow --frames frames of the video, then the picture (the live bar shows the rate)
            window.live.follow(args.video, args.frames)
        if args.collection:
            window.set_collection(args.collection)
            _until_idle(app, window)
            if window.session.index is None:
                raise UserError(window.last_error or f"--collection {args.collection}: nothing was indexed")
        if args.dock:
            window.docks[args.dock].raise_()
            if args.maximise:
                window.presentation.toggle_maximise(args.dock)
            _until_idle(app, window)  # the raised dock's jobs start on the next events
        if view_options:
            set_view_options(window, view_options)
            _until_idle(app, window)
        window.resize(w, h)  # a long status message on the way may have grown it; it has gone
        for _ in range(5):
            app.processEvents()
        window.presentation.update_caption()  # the raised dock's result may have just arrived
        path = window.export_view(None, args.out)
        got = window.size()
    finally:
        window.runner.shutdown()
        window.close()
        THEME.set_scale(scale)  # a --scale without --presentation too (the theme is per process)
        THEME.set_theme(theme)
        logging.getLogger("widgets").removeHandler(collected)
    note = "" if (got.width(), got.height()) == (w, h) else f"; the window's smallest size is {got.width()}x{got.height()}"
    print(f"saved {path} ({got.width()}x{got.height()}{note})")
    for text in collected.messages:
        print(f"vizapp: {text}", file=sys.stderr)
    return 0

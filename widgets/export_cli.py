"""``vizapp export`` and ``vizapp record``: figures from the window rendered headless, in the
state ``screenshot`` renders (the default layout, ``--model``/``--image``/``--layer``/
``--channel``/``--size``), through :mod:`widgets.export` and :mod:`widgets.recording`."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["export_command", "record_command", "headless_window"]


@contextmanager
def headless_window(args) -> Iterator:
    """The main window, offscreen at ``args.size``, started on ``args``' model and image, at
    its layer and channel, with ``args.dock`` raised (if any) and every job done; closed after.
    A state it cannot reach is a one-line :class:`~vizapp.core.errors.UserError`."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import qInstallMessageHandler

    from vizapp.core.config import machine_config
    from widgets.app import checked_start, make_app
    from widgets.main_window import MainWindow

    machine_config()  # a bad per-machine config file: one line and exit 2, before any window
    previous = qInstallMessageHandler(_quiet_offscreen)
    app = make_app()
    window = MainWindow(restore_layout=False)
    window.resize(*args.size)
    window.show()
    quiet = logging.getLogger("widgets")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # the window's own status messages are not this command's output
    window.start(args.model, args.image, args.layer, args.arch, args.trust, args.device)
    try:
        checked_start(window, args)
        if getattr(args, "dock", None):
            window.docks[args.dock].raise_()
        settle(app, window)
        yield app, window
    finally:
        quiet.setLevel(level)
        window.runner.shutdown()
        window.close()
        qInstallMessageHandler(previous)


def _quiet_offscreen(mode, context, message: str) -> None:
    """Qt's messages on stderr, less the offscreen platform's notes on what it cannot do
    (``This plugin does not support propagateSizeHints()``): the command's error stays one line."""
    if "This plugin does not support" not in message:
        sys.stderr.write(f"{message}\n")


def settle(app, window, timeout_s: float = 600.0) -> None:
    """Process events until the jobs a change started (a raised dock's) have been drawn."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.05)
        app.processEvents()
        if window.runner.lane_idle():
            break
    for _ in range(5):
        app.processEvents()


def export_command(args) -> int:
    """``vizapp export --dock D [--scale S] [--format png|svg] --out FILE`` or ``--all --out FOLDER``."""
    from vizapp.core.errors import UserError
    from widgets.export import content, export_all, export_png, export_svg, has_svg

    out = Path(args.out)
    if args.all and out.exists() and not out.is_dir():
        raise UserError(f"{out}: is a file; --all writes into a folder")
    with headless_window(args) as (_app, window):
        if args.all:
            files = export_all(window, out, args.scale)
            print(f"saved {len(files) - 2} views and captions.json, captions.txt in {out}")
            for path in files[:-2]:
                print(f"  {path.name}")
            return 0
        widget = content(window, args.dock)
        if args.format == "svg":
            if not has_svg(widget):
                raise UserError(f"--format svg: the '{args.dock}' dock shows no plot; SVG is for the embedding, "
                                "the attention dock's distance plot and the training lab (use png)")
            path = export_svg(widget, out)
            print(f"saved {path} (SVG, {widget.width()}x{widget.height()} on screen)")
        else:
            path = export_png(widget, out, args.scale)
            print(f"saved {path} ({widget.width() * args.scale}x{widget.height() * args.scale}, {args.scale}x)")
    return 0


def record_command(args) -> int:
    """``vizapp record --dock D --step channels|layers|heads [--count N] [--fps F] --out x.gif|x.mp4``."""
    from widgets.export import content
    from widgets.recording import Stepper, check_target, encode

    out = check_target(args.out)
    with headless_window(args) as (app, window):
        stepper = Stepper(window, args.dock, args.step, args.count, args.scale)
        frames = stepper.run(app)
        size = content(window, args.dock).size()
    path = encode(frames, out, args.fps)
    h, w = frames[0].shape[:2]
    print(f"saved {path} ({len(frames)} frames, {w}x{h}, {args.fps} fps; "
          f"the {args.dock} dock at {size.width()}x{size.height()})")
    return 0

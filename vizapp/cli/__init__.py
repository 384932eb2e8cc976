"""Headless commands: ``python main.py models|layers|predict|features|attention|attribute ...``.

Every picture the GUI shows can be computed from here. Bad input exits with status
2 and one line on stderr naming the file, model or layer; never a traceback.
GUI commands (``gui``, ``screenshot``, ``export``, ``record`` and ``doctor``'s hidden Qt child ``_doctor-qt``) are
parsed here and run by handlers that ``main.py`` passes in, so this package never imports Qt.

:mod:`vizapp.cli.parser` holds the arguments and their help, :mod:`vizapp.cli.commands`
what each command does; :func:`main` parses, runs one command and turns its errors into
one line.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from vizapp.cli.commands import COMMANDS, Handler
from vizapp.cli.parser import parse_args
from vizapp.core.errors import UserError

__all__ = ["main"]


def _names_as_bytes(stream) -> None:
    """File names that are not UTF-8 (``bad\\xff.png``) print as their own bytes, not a crash."""
    if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
        stream.reconfigure(errors="surrogateescape")


def main(argv: Sequence[str] | None = None, gui_handlers: dict[str, Handler] | None = None) -> int:
    """Run one command; returns the exit status (2 and one line on stderr for bad input)."""
    _names_as_bytes(sys.stdout)
    try:
        args = parse_args(argv)
    except SystemExit as exc:  # --help (0) or a bad argument (2, its line already printed)
        return exc.code if isinstance(exc.code, int) else 2
    handler = dict(COMMANDS, **(gui_handlers or {})).get(args.command)
    try:
        if handler is None:
            raise UserError(f"the '{args.command}' command needs the GUI; run it through main.py")
        if getattr(args, "image", None) is not None:
            from vizapp.inputs.sources import resolve_image_source

            args.image = str(resolve_image_source(args.image))
        return handler(args)
    except UserError as exc:
        print(f"vizapp: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, not a traceback
        if os.environ.get("VIZAPP_DEBUG"):
            raise
        print(f"vizapp: internal error: {type(exc).__name__}: {exc} (set VIZAPP_DEBUG=1 for details)", file=sys.stderr)
        return 1

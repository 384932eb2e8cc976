"""vizapp entry point: the GUI by default, headless sub-commands for scripts.

    python main.py                      # open the app on the offline default
    python main.py predict --model efficientnet_lite0 --image chelsea --json
    python main.py --model vit_digits --image digit3     # the app, on the ViT and a digit
    python main.py doctor               # check this machine (exit 1 on a failure)
    python main.py --help
"""

from __future__ import annotations

import sys


def _gui(args) -> int:
    from widgets.app import run_gui

    return run_gui(args)


def _screenshot(args) -> int:
    from widgets.app import screenshot

    return screenshot(args)


def _export(args) -> int:
    from widgets.export_cli import export_command

    return export_command(args)


def _record(args) -> int:
    from widgets.export_cli import record_command

    return record_command(args)


def _doctor_qt(args) -> int:
    from widgets.doctor_qt import probe

    return probe(args)


def main(argv: list[str] | None = None) -> int:
    import multiprocessing

    # A frozen build (packaging/) re-runs this executable for data-loader workers on spawn
    # platforms (Windows, macOS): the child must run the worker, not the app.
    multiprocessing.freeze_support()
    from vizapp.cli import main as cli_main

    return cli_main(argv, gui_handlers={"gui": _gui, "screenshot": _screenshot,
                                            "export": _export, "record": _record,
                                            "_doctor-qt": _doctor_qt})


if __name__ == "__main__":
    sys.exit(main())

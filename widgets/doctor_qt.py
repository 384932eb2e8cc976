"""The Qt part of ``vizapp doctor``, run in a child process (the hidden ``_doctor-qt`` command).

A missing system library or an unreachable display makes Qt abort its process, so the
parent (:mod:`vizapp.cli.doctor`) starts this one and reads what it prints: one
:data:`~vizapp.cli.qt_child.QT_MARK` line of JSON before Qt starts (``stage: info``: PySide6's
and Qt's versions, Qt's plugin folder, the settings file the window would use), then one
after it tried (``stage: window``: the platform Qt started, the screen, whether a main
window showed, or the error). If the process dies in between, the parent diagnoses it from
Qt's message on stderr and ``ldd`` on the platform plugin. The platform is whatever the app
would get: ``$QT_QPA_PLATFORM`` as set, else Qt's default; nothing here changes it.
"""

from __future__ import annotations

import json
import sys

from vizapp.cli.qt_child import QT_MARK

__all__ = ["probe"]


def _emit(record: dict) -> None:
    sys.stdout.write(QT_MARK + json.dumps(record) + "\n")
    sys.stdout.flush()  # before Qt gets a chance to abort the process


def probe(args) -> int:
    """Report Qt's versions, then start a QApplication and show a small QMainWindow; 0 if it showed."""
    info: dict = {"stage": "info"}
    try:
        import PySide6
        from PySide6.QtCore import QLibraryInfo, qVersion

        from widgets.main_window import settings_for

        info.update(pyside6=PySide6.__version__, qt=qVersion(),
                    plugins=QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath),
                    settings=settings_for().fileName())
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which makes it a FAIL row
        info["error"] = f"{type(exc).__name__}: {exc}"
    _emit(info)
    if "error" in info:
        return 1

    window: dict = {"stage": "window"}
    try:
        from PySide6.QtWidgets import QApplication, QLabel, QMainWindow

        app = QApplication.instance() or QApplication(["vizapp"])
        window["platform"] = app.platformName()
        screen = app.primaryScreen()
        window["screen"] = f"{screen.size().width()}x{screen.size().height()}" if screen else "none"
        main = QMainWindow()
        main.setWindowTitle("vizapp doctor")
        main.setCentralWidget(QLabel("vizapp doctor: this window closes by itself"))
        main.resize(320, 120)
        main.show()
        app.processEvents()
        window["ok"] = main.isVisible() and main.winId() != 0
        if not window["ok"]:
            window["error"] = "the window did not become visible"
        main.close()
        app.processEvents()
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which makes it a FAIL row
        window["ok"] = False
        window["error"] = f"{type(exc).__name__}: {exc}"
    _emit(window)
    return 0 if window["ok"] else 1

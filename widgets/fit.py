"""The window fits the screen it opens on, and the application's own font follows the theme.

- :func:`fit_to_screen` sizes a window to :data:`SCREEN_FRACTION` of its screen's available
  area (never more than that area, never less than the window's minimum), centred on it;
  :func:`clamp_to_screen` does the same for a restored geometry that was saved on a larger
  screen. The dock layout for that size is chosen by :func:`widgets.docks.default_layout`.
- :func:`follow_theme_scale` makes the application's font (the one every plain label, button
  and combo box inherits) follow ``THEME.scale``, so ``THEME.set_scale(2)`` doubles every
  text of the window, not only the themed roles. The unscaled size is kept in
  :data:`widgets.theme.THEME` (``app_pt``), which ``bind_font`` reads for its ``at_least``.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QRect, QSize
from PySide6.QtWidgets import QApplication, QWidget

from widgets.theme import THEME

__all__ = ["SCREEN_FRACTION", "available", "fit_to_screen", "clamp_to_screen", "follow_theme_scale"]

#: The share of the screen's available width and height a new window takes.
SCREEN_FRACTION = 0.92


def available(window: QWidget) -> QRect:
    """The available geometry (without task bars) of the screen ``window`` is on."""
    screen = window.screen() or QApplication.primaryScreen()
    return screen.availableGeometry()


def fit_to_screen(window: QWidget, fraction: float = SCREEN_FRACTION) -> QSize:
    """Resize ``window`` to ``fraction`` of its screen, centred; returns the new size."""
    area = available(window)
    size = QSize(round(area.width() * fraction), round(area.height() * fraction))
    size = size.expandedTo(window.minimumSizeHint()).boundedTo(area.size())
    window.resize(size)
    window.move(area.x() + (area.width() - size.width()) // 2, area.y() + (area.height() - size.height()) // 2)
    return size


def clamp_to_screen(window: QWidget) -> bool:
    """Shrink and move ``window`` into its screen if a restored geometry is larger or off it.

    Returns whether it changed anything.
    """
    area = available(window)
    frame = window.frameGeometry()
    if area.contains(frame):
        return False
    size = window.size().boundedTo(area.size() - (frame.size() - window.size()))
    window.resize(size)
    frame = window.frameGeometry()
    x = min(max(frame.x(), area.x()), area.right() + 1 - frame.width())
    y = min(max(frame.y(), area.y()), area.bottom() + 1 - frame.height())
    window.move(x, y)
    return True


class _AppFont:
    """Sets the application's font to its size at scale 1 times ``THEME.scale``."""

    def __init__(self, app: QApplication) -> None:
        self.app = app
        f = app.font()
        if THEME.app_pt is None:
            THEME.app_pt = f.pointSizeF() / THEME.scale if f.pointSizeF() > 0 else None
        THEME.changed.connect(self.apply)
        self.apply()

    def apply(self, *_args) -> None:
        if THEME.app_pt is None:
            return
        f = self.app.font()
        f.setPointSizeF(THEME.app_pt * THEME.scale)
        self.app.setFont(f)
        QApplication.sendPostedEvents(None, QEvent.ApplicationFontChange)  # every widget now, not later
        # A widget with a style sheet of its own keeps the font it was polished with: polish
        # it again (a themed binding re-applies its own sheet itself).
        # Only the windows on screen: a closed window's widgets may be on their way out (walking
        # every widget of the application crashed on one being deleted).
        for top in self.app.topLevelWidgets():
            if not top.isVisible():
                continue
            for widget in (top, *top.findChildren(QWidget)):
                sheet = widget.styleSheet()
                if sheet and getattr(widget, "_theme_binding", None) is None:
                    widget.setStyleSheet(sheet)


_FOLLOWING: list[_AppFont] = []


def follow_theme_scale(app: QApplication | None = None) -> None:
    """Make the application's font follow ``THEME.scale`` from now on (once per process)."""
    app = app or QApplication.instance()
    if app is None or _FOLLOWING:
        return
    _FOLLOWING.append(_AppFont(app))

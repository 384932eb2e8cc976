"""The one theme: font scale, text roles, marker sizes, line widths and colours of every view.

After napari's ``utils/theme.py``: one base point size, and every text size a named role
that is a multiple of it; marker sizes and line widths are named the same way. ``THEME.scale``
(1.0 by default) multiplies them all; ``THEME.set_scale(s)`` emits ``THEME.changed`` and
every view re-applies its fonts, stylesheets and pens (a presentation mode turns this).

The arithmetic is Qt-free (tested without a display); the few helpers that make a ``QFont``
or bind a widget's font import Qt when called. Views never write a literal point size,
pixel size, marker size or pen width: ``tests/test_theme.py`` greps ``widgets/`` for them.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

__all__ = [
    "BASE_PT", "TEXT_ROLES", "MARKERS", "WIDTHS", "PIXELS", "COLOURS", "THEMES", "Theme", "THEME", "increase",
    "font", "bind_font", "css_pt", "palette",
]

#: The base point size: the ``body`` role at scale 1.0.
BASE_PT = 12

#: Text roles as multiples of the base (at scale 1.0, ``BASE_PT * multiple`` points).
TEXT_ROLES: dict[str, float] = {
    "tiny": 9 / 12,        # a confusion matrix of more than ten classes
    "note": 10 / 12,       # the model's details
    "small": 11 / 12,      # captions, hints, secondary lines
    "body": 1.0,           # controls, read-outs, ordinary headings
    "label": 13 / 12,      # axis labels, the model's name
    "subheading": 14 / 12,  # plot titles, panel status texts, image captions
    "heading": 15 / 12,    # the training status line, attribution panel titles
    "title": 16 / 12,      # a dock's title, banners, whole-sentence messages
    "huge": 18 / 12,       # the attribution dock's message
    "busy": 20 / 12,       # the attention dock's busy overlay
}

#: Scatter / marker sizes in pixels at scale 1.0.
MARKERS: dict[str, float] = {
    "many": 3.0,       # embedding points: more than 20,000
    "some": 5.0,       # embedding points: 2,001 to 20,000
    "few": 7.0,        # embedding points: up to 2,000
    "dot": 9.0,        # a point of the training lab's embedding
    "val": 10.0,       # a validation point on the training curves
    "point": 12.0,     # a head of the attention distance plot; the hover ring
    "ring": 13.0,      # a neighbour ring
    "ring_big": 18.0,  # the clicked point's ring
    "mark": 24.0,      # the selected head's ring
}

#: Line widths in pixels at scale 1.0 (0 is Qt's cosmetic one-pixel pen and stays 0).
WIDTHS: dict[str, float] = {
    "cosmetic": 0.0,
    "hair": 1.0,
    "thin": 1.5,
    "line": 2.0,
    "medium": 2.5,
    "thick": 3.0,
}

#: Other lengths in pixels at scale 1.0.
PIXELS: dict[str, float] = {
    "bar_row_min": 18.0,    # a prediction bar's row: at least
    "bar_row_max": 44.0,    # and at most
    "bar_label_min": 11.0,  # a bar's label: at least (half a row otherwise)
    "bar_label_max": 22.0,  # and at most
    "thumb": 72.0,          # a gallery thumbnail (the Image dock's samples, the embedding's strip)
    "picture_min": 80.0,    # an image's or an attribution map's smallest side
    "tile_min": 64.0,       # a top patch's smallest side
    "head_min": 40.0,       # an attention head's thumbnail in the strip: at least
    "plot_min": 100.0,      # a plot of the training lab: its smallest side
}

#: Colours the views share. ``error`` is the one red of every error text.
COLOURS: dict[str, str] = {
    "error": "#c0392b",       # error texts (status bar, training lab, attribution panels)
    "untrained": "#c0392b",   # the attention dock's UNTRAINED banner
    "untrained_alt": "#b3261e",  # the attribution dock's UNTRAINED banner
    "warning": "#ffb000",     # "dead"/"ties" flags
    "ok": "#59a14f",
    "accent": "#00dcff",      # the selection: query patch, marker, clicked point
    "hover": "#ffffff",       # the ring under the mouse on a canvas
    "neighbour": "#ffd400",   # the clicked point's neighbours' rings
    "background": "#202020",  # the dark canvases
    "text": "#f0f0f0",        # text on the dark canvases
    "muted": "#909090",       # a panel's status text
    "notes": "#a0a0a0",
    "axis": "#909090",        # a plot's axis lines on a canvas
    "axis_text": "#e0e0e0",   # its tick labels and axis titles
    "axis_dim": "#707070",    # a secondary axis (the training curves' epochs)
    "axis_dim_text": "#b0b0b0",
    "window": "",             # the application's palette: "" keeps the platform's (the default theme)
    "window_text": "",
    "base": "",
    "highlight": "",
}

#: The named colour sets (:meth:`Theme.set_theme`): ``default`` is the platform's palette with
#: dark canvases; ``light`` and ``dark`` are high-contrast sets for a projector in a bright or
#: a dark room (black on white, white on black, every canvas and plot text following).
THEMES: dict[str, dict[str, str]] = {
    "default": COLOURS,
    "light": {
        **COLOURS,
        "error": "#b00020", "untrained": "#b00020", "untrained_alt": "#b00020",
        "warning": "#a64b00", "ok": "#1b7a1b", "accent": "#0050ff", "hover": "#000000", "neighbour": "#c05000",
        "background": "#ffffff", "text": "#000000", "muted": "#303030", "notes": "#202020",
        "axis": "#202020", "axis_text": "#000000", "axis_dim": "#404040", "axis_dim_text": "#202020",
        "window": "#ffffff", "window_text": "#000000", "base": "#ffffff", "highlight": "#0050ff",
    },
    "dark": {
        **COLOURS,
        "error": "#ff6b5b", "untrained": "#c0392b", "untrained_alt": "#b3261e",
        "warning": "#ffc400", "ok": "#7ed957", "accent": "#00e5ff",
        "background": "#000000", "text": "#ffffff", "muted": "#d0d0d0", "notes": "#d8d8d8",
        "axis": "#d0d0d0", "axis_text": "#ffffff", "axis_dim": "#a0a0a0", "axis_dim_text": "#e0e0e0",
        "window": "#000000", "window_text": "#ffffff", "base": "#101010", "highlight": "#00a0c0",
    },
}


def increase(size: float, n: float) -> float:
    """``size`` plus ``n`` points, never below 1 (napari's ``increase``)."""
    return max(1.0, size + n)


class _WeakEvent:
    """A Qt-free event whose bound-method subscribers are held weakly.

    A view connects its ``_apply_theme`` and may be deleted any time: a dead subscriber (its
    Python object collected, or its C++ object deleted: ``RuntimeError``) is dropped.
    """

    def __init__(self) -> None:
        self._refs: list[Any] = []

    def connect(self, callback: Callable[..., Any]) -> None:
        ref = weakref.WeakMethod(callback) if hasattr(callback, "__func__") else (lambda c=callback: c)
        self._refs.append(ref)

    def disconnect(self, callback: Callable[..., Any]) -> None:
        self._refs = [r for r in self._refs if r() is not None and r() != callback]

    def emit(self, *args: Any) -> None:
        alive = []
        for ref in list(self._refs):
            callback = ref()
            if callback is None:
                continue
            try:
                callback(*args)
            except RuntimeError as exc:  # the widget's C++ object is gone
                if "already deleted" not in str(exc):
                    raise
                continue
            alive.append(ref)
        self._refs = alive


class Theme:
    """Sizes at the current ``scale`` and colours of the current ``theme`` (a :data:`THEMES`
    name); ``changed(scale)`` is emitted when either changes."""

    def __init__(self, base_pt: float = BASE_PT, scale: float = 1.0, theme: str = "default") -> None:
        self.base_pt = base_pt
        self.scale = float(scale)
        self.theme = theme
        #: The application's font size at scale 1 (set by ``widgets.fit.follow_theme_scale``,
        #: which then scales the application's font; ``None``: the application's font as is).
        self.app_pt: float | None = None
        self.changed = _WeakEvent()

    def set_theme(self, name: str) -> None:
        """Use the colour set ``name`` (``default``, ``light`` or ``dark``)."""
        if name not in THEMES:
            raise ValueError(f"unknown theme '{name}'; the themes are {', '.join(THEMES)}")
        if name != self.theme:
            self.theme = name
            self.changed.emit(self.scale)

    def set_scale(self, scale: float) -> None:
        if scale <= 0:
            raise ValueError(f"theme scale must be positive, got {scale}")
        if float(scale) != self.scale:
            self.scale = float(scale)
            self.changed.emit(self.scale)

    def pt(self, role: str) -> int:
        """The point size of text ``role`` (whole points: Qt's stylesheets and fonts)."""
        return max(1, round(self.base_pt * TEXT_ROLES[role] * self.scale))

    def css(self, role: str) -> str:
        """``"<n>pt"`` for a stylesheet or pyqtgraph's ``size=`` / ``font-size``."""
        return f"{self.pt(role)}pt"

    def px(self, pixels: float) -> float:
        """A length in pixels at scale 1.0, scaled (paddings, row heights, bounds)."""
        return pixels * self.scale

    def pixels(self, name: str) -> float:
        """A named length of :data:`PIXELS`, scaled."""
        return PIXELS[name] * self.scale

    def marker(self, role: str) -> float:
        return MARKERS[role] * self.scale

    def width(self, role: str) -> float:
        return WIDTHS[role] * self.scale

    def colour(self, role: str) -> str:
        """Colour ``role`` of the current theme (``""`` for the default theme's palette roles)."""
        return THEMES[self.theme][role]


#: The app's theme (one per process).
THEME = Theme()


def css_pt(role: str) -> str:
    return THEME.css(role)


def palette(base=None):
    """The application's QPalette for the current theme: ``base`` (the platform's, kept by the
    caller) for the default theme, else high-contrast window, text and highlight colours."""
    from PySide6.QtGui import QColor, QPalette

    if not THEME.colour("window"):
        return QPalette(base) if base is not None else QPalette()
    window, text, field = (QColor(THEME.colour(r)) for r in ("window", "window_text", "base"))
    highlight = QColor(THEME.colour("highlight"))
    p = QPalette(window)
    for role, colour in (
        (QPalette.Window, window), (QPalette.WindowText, text), (QPalette.Base, field),
        (QPalette.AlternateBase, window), (QPalette.Text, text), (QPalette.Button, window),
        (QPalette.ButtonText, text), (QPalette.ToolTipBase, window), (QPalette.ToolTipText, text),
        (QPalette.Highlight, highlight), (QPalette.HighlightedText, QColor("#ffffff")),
        (QPalette.BrightText, QColor(THEME.colour("error"))), (QPalette.PlaceholderText, QColor(THEME.colour("muted"))),
    ):
        p.setColor(QPalette.All, role, colour)
    for role in (QPalette.WindowText, QPalette.Text, QPalette.ButtonText):
        p.setColor(QPalette.Disabled, role, QColor(THEME.colour("muted")))
    return p


def font(role: str = "body", bold: bool = False, base=None):
    """A QFont of text ``role`` at the theme's scale (a copy of ``base`` when given)."""
    from PySide6.QtGui import QFont

    f = QFont(base) if base is not None else QFont()
    f.setPointSize(THEME.pt(role))
    f.setBold(bold)
    return f


class _FontBinding:
    """Re-applies a widget's role font (and an optional stylesheet maker) on every change."""

    def __init__(self, widget, role: str | None, bold: bool | None, style: Callable[[], str] | None,
                 at_least: bool = False) -> None:
        self.widget = weakref.ref(widget)
        self.role, self.bold, self.style, self.at_least = role, bold, style, at_least
        THEME.changed.connect(self.apply)
        self.apply()

    def apply(self, *_args) -> None:
        w = self.widget()
        if w is None:
            return
        f = w.font()
        pt = 0 if self.role is None else THEME.pt(self.role)
        if self.at_least or self.role is None:  # the role's size or the application's (scaled), the larger
            from PySide6.QtWidgets import QApplication

            app_pt = THEME.app_pt if THEME.app_pt is not None else QApplication.font().pointSizeF()
            pt = max(pt, round(app_pt * THEME.scale))
        if pt > 0:
            f.setPointSize(pt)
        if self.bold is not None:
            f.setBold(self.bold)
        w.setFont(f)
        if self.style is not None:
            w.setStyleSheet(self.style())


def bind_font(widget, role: str | None, bold: bool | None = None, style: Callable[[], str] | None = None,
              at_least: bool = False):
    """Give ``widget`` the font of ``role`` now and whenever the scale changes.

    ``style``, if given, makes the widget's stylesheet (re-made on each change, so a
    ``font-size`` or padding in it follows the scale). ``at_least``: never smaller than the
    application's font (scaled); ``role`` None: the application's font, scaled. Returns ``widget``.
    """
    binding = _FontBinding(widget, role, bold, style, at_least)
    widget._theme_binding = binding  # lives as long as the widget's Python wrapper
    return widget

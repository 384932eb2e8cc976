"""The Attribution dock's pieces: the overlay arithmetic, colour maps and one method's panel.

The overlay (:func:`overlay`) lets the map's own value set the colour's weight::

    w   = opacity * m                      # per pixel, m = Attribution.map in [0, 1]
    out = (1 - w) * display + w * LUT[m]   # LUT: 256 colours, index round(255 * m)

so cold pixels keep the photograph and hot ones take the colour map ("heat only" shows
``LUT[m]`` alone). Opacity 0 shows the input unchanged.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QSizePolicy

from widgets.common import heading, to_pixmap
from widgets.theme import THEME, bind_font

__all__ = ["COLORMAPS", "DEFAULT_METHODS", "DEFAULT_OPACITY", "Panel", "lookup_table", "overlay", "seconds"]

COLORMAPS = {"inferno": "inferno", "viridis": "viridis", "turbo": "turbo", "grey": "CET-L1"}
#: Methods ticked at start: one gradient, one path-integral, one layer method.
DEFAULT_METHODS = ("saliency", "integrated_gradients", "gradcam")
DEFAULT_OPACITY = 0.55


@cache
def lookup_table(name: str) -> np.ndarray:
    """``256 x 3`` uint8 colours of the colour map ``name`` (a key of :data:`COLORMAPS`)."""
    if name not in COLORMAPS:
        raise ValueError(f"unknown colour map '{name}'; choose one of {', '.join(COLORMAPS)}")
    lut = pg.colormap.get(COLORMAPS[name]).getLookupTable(nPts=256, alpha=False)
    lut = np.ascontiguousarray(lut, dtype=np.uint8)
    lut.setflags(write=False)
    return lut


def overlay(
    display: np.ndarray, heat: np.ndarray, lut: np.ndarray, opacity: float, heat_only: bool = False
) -> np.ndarray:
    """``H x W x 3`` uint8: ``heat`` (``H x W`` in [0, 1]) coloured by ``lut`` over ``display``.

    ``w = opacity * heat``; ``out = (1 - w) * display + w * lut[round(255 * heat)]``, rounded.
    With ``heat_only`` the coloured map alone.
    """
    if heat.shape != display.shape[:2]:
        raise ValueError(
            f"the map is {heat.shape[1]}x{heat.shape[0]} but the image is "
            f"{display.shape[1]}x{display.shape[0]}; they must match"
        )
    m = np.clip(np.nan_to_num(heat.astype(np.float64), nan=0.0), 0.0, 1.0)
    colour = lut[np.rint(m * 255).astype(np.intp)]
    if heat_only:
        return np.ascontiguousarray(colour, dtype=np.uint8)
    w = (float(np.clip(opacity, 0.0, 1.0)) * m)[..., None]
    out = (1.0 - w) * display.astype(np.float64) + w * colour
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def seconds(s: float) -> str:
    """``"348 ms"`` / ``"4.8 s"`` with a no-break space, so a wrapped title keeps them whole."""
    return f"{1000 * s:.0f}\u00a0ms" if s < 1 else f"{s:.1f}\u00a0s"


class _Picture(QLabel):
    """A label that keeps its pixmap scaled to fit (aspect kept), or shows a status text."""

    def __init__(self) -> None:
        super().__init__()
        self.pixmap_full = None  # the unscaled overlay, one pixel per image pixel
        self.setAlignment(Qt.AlignCenter)
        self.setWordWrap(True)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        bind_font(self, "subheading")
        THEME.changed.connect(self._apply_theme)
        self._apply_theme()

    def _apply_theme(self, *_args) -> None:
        side = round(THEME.pixels("picture_min"))
        self.setMinimumSize(side, side)

    def set_pixels(self, pixels: np.ndarray) -> None:
        self.pixmap_full = to_pixmap(pixels)
        self.setStyleSheet("")
        self._rescale()

    def set_status(self, text: str, error: bool = False) -> None:
        self.pixmap_full = None
        self.setStyleSheet(f"color: {THEME.colour('error' if error else 'muted')}")
        self.setText(text)

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._rescale()

    def _rescale(self) -> None:
        if self.pixmap_full is not None:
            self.setPixmap(
                self.pixmap_full.scaled(self.size(), Qt.KeepAspectRatio, Qt.SmoothTransformation)
            )


class Panel:
    """One method's three widgets: title, picture, notes.

    They sit in three rows of the view's grid (not in a box of their own), so the
    titles of a row of panels share one height and the pictures line up.
    """

    def __init__(self, label: str) -> None:
        self.label = label
        self.title = heading(label, "heading")
        self.title.setAlignment(Qt.AlignHCenter | Qt.AlignBottom)
        self.picture = _Picture()
        self.notes = heading("", "small", bold=False)
        self.notes.setAlignment(Qt.AlignHCenter | Qt.AlignTop)
        self.notes.setStyleSheet(f"color: {THEME.colour('notes')}")
        self.widgets = (self.title, self.picture, self.notes)

    def is_shown(self) -> bool:
        return self.picture.isVisible()

    def set_image(self, pixels: np.ndarray, title: str, notes: list[str]) -> None:
        self.title.setText(title)
        self.notes.setText("\n".join(notes))
        self.picture.set_pixels(pixels)

    def set_text(self, text: str, title: str | None = None, error: bool = False) -> None:
        self.title.setText(title or self.label)
        self.notes.clear()
        self.picture.set_status(text, error)

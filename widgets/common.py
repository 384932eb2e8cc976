"""Shared bits for the views: themed headings, numpy -> Qt images (and ``export_png``, from
:mod:`widgets.export`)."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QLabel, QWidget

from widgets.export import export_png  # its home is widgets/export.py (PNG, SVG, clipboard)
from widgets.theme import bind_font

__all__ = ["export_png", "to_pixmap", "heading", "image_view_box", "LUT_ACTIVATION", "WrappingLabel"]

pg.setConfigOptions(imageAxisOrder="row-major", antialias=True)

#: The colour map for activations (perceptually uniform, readable on a projector).
LUT_ACTIVATION = pg.colormap.get("inferno").getLookupTable(nPts=256)


def to_pixmap(pixels: np.ndarray) -> QPixmap:
    """An ``H x W x 3`` uint8 array to a QPixmap (copied, so the array may change later)."""
    a = np.ascontiguousarray(pixels)
    h, w = a.shape[:2]
    fmt = QImage.Format_RGB888 if a.ndim == 3 else QImage.Format_Grayscale8
    image = QImage(a.data, w, h, a.strides[0], fmt)
    return QPixmap.fromImage(image.copy())


class WrappingLabel(QLabel):
    """A word-wrapped label that asks its layout for the height its text needs at its width.

    A plain wrapped QLabel's minimum height is one width's worth; a narrow dock then squeezes
    it and the widgets below paint over its last lines. This one raises its minimum height to
    ``heightForWidth(width)`` whenever its width or text changes.
    """

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(text, parent)
        self.setWordWrap(True)

    def _reserve(self) -> None:
        # Only while shown: a hidden page of a stack must not hold the stack's minimum up.
        need = self.heightForWidth(self.width()) if self.text() and self.isVisible() else 0
        if need != self.minimumHeight():
            self.setMinimumHeight(max(0, need))

    def showEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        self._reserve()

    def hideEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().hideEvent(event)
        self._reserve()

    def setText(self, text: str) -> None:  # noqa: N802 - Qt override
        super().setText(text)
        self._reserve()

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._reserve()

    def changeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().changeEvent(event)
        from PySide6.QtCore import QEvent

        if event.type() == QEvent.FontChange:
            self._reserve()


def heading(text: str = "", role: str = "body", bold: bool = True, style=None) -> QLabel:
    """A word-wrapped label in the theme's text ``role`` (re-sized when the scale changes)."""
    label = WrappingLabel(text)
    bind_font(label, role, bold, style)
    label.setWordWrap(True)
    return label


def image_view_box(widget: pg.GraphicsLayoutWidget) -> pg.ViewBox:
    """A ViewBox for images: y down, square pixels, no menu."""
    vb = widget.addViewBox()
    vb.setAspectLocked(True)
    vb.invertY(True)
    vb.setMenuEnabled(False)
    return vb

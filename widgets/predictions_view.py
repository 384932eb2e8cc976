"""The Predictions dock: top-k classes as labelled bars, big enough for a projector."""

from __future__ import annotations

from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QPainter
from PySide6.QtWidgets import QWidget

from widgets.theme import THEME

__all__ = ["PredictionsView"]


class PredictionsView(QWidget):
    """Horizontal probability bars, best first. Click a bar to pick that class.

    Given a session, it shows the session's predictions and a click sets the class the
    explanation docks explain (``session.target``).

    Signals
    -------
    sigClassChanged(index)
        A bar was clicked: explain that class.
    """

    sigClassChanged = Signal(int)

    def __init__(self, session=None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._predictions: list = []
        self._message = "Open a model and an image"
        self._apply_theme()
        THEME.changed.connect(self._apply_theme)
        if session is not None:  # the image's predictions and the explained class are the session's
            session.events.predictions.connect(self.set_predictions)
            self.sigClassChanged.connect(session.set_target)

    def _apply_theme(self, *_args) -> None:
        """Room for every bar at the theme's smallest row (five rows when there are none yet)."""
        rows = max(5, len(self._predictions))
        self.setMinimumHeight(round(rows * THEME.pixels("bar_row_min") + THEME.px(8)))
        self.update()

    def set_predictions(self, predictions: list, message: str = "") -> None:
        """``predictions``: ``Prediction(label, index, prob)`` records, best first."""
        self._predictions = list(predictions)
        self._message = message or ("" if predictions else "This model has no classifier head")
        self._apply_theme()

    def predictions(self) -> list:
        return list(self._predictions)

    def _row_height(self) -> float:
        n = max(1, len(self._predictions))
        return min(THEME.pixels("bar_row_max"), max(THEME.pixels("bar_row_min"), (self.height() - 8) / n))

    def label_font(self) -> QFont:
        """The font of the bars' labels: half a row, between 11 and 22 pixels (times the theme's scale)."""
        font = QFont(self.font())
        if not self._predictions:
            font.setPointSize(THEME.pt("body"))
        else:
            half_row = self._row_height() / 2
            pixels = max(THEME.pixels("bar_label_min"), min(THEME.pixels("bar_label_max"), half_row))
            font.setPixelSize(int(pixels))
        return font

    def mousePressEvent(self, event) -> None:  # noqa: N802 - Qt override
        i = int((event.position().y() - 4) // self._row_height())
        if 0 <= i < len(self._predictions):
            self.sigClassChanged.emit(self._predictions[i].index)

    def paintEvent(self, _event) -> None:  # noqa: N802 - Qt override
        p = QPainter(self)
        p.setRenderHint(QPainter.Antialiasing)
        p.fillRect(self.rect(), self.palette().base())
        p.setFont(self.label_font())
        if not self._predictions:
            p.drawText(self.rect(), Qt.AlignCenter, self._message)
            return
        rh = self._row_height()
        label_w = min(self.width() * 0.42, max(p.fontMetrics().horizontalAdvance(x.label) for x in self._predictions) + 16)
        pct_w = p.fontMetrics().horizontalAdvance("100.0%") + 12
        bar_w = max(10.0, self.width() - label_w - pct_w - 8)
        for i, pred in enumerate(self._predictions):
            y = 4 + i * rh
            p.setPen(self.palette().text().color())
            p.drawText(QRectF(4, y, label_w - 8, rh), Qt.AlignRight | Qt.AlignVCenter, pred.label)
            color = QColor(230, 97, 1) if i == 0 else QColor(66, 133, 214)
            p.fillRect(QRectF(label_w, y + rh * 0.15, bar_w * pred.prob, rh * 0.7), color)
            p.drawText(QRectF(label_w + 4, y, bar_w + pct_w, rh), Qt.AlignRight | Qt.AlignVCenter, f"{100 * pred.prob:.1f}%")
        p.end()

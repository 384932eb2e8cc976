"""The Convolution dock's parts that only need numpy: the numbers of one step, the kernel
editor, the maps' colours, and the stepping state (which position of which stage is shown).

:class:`StepNumbers` paints one step as numbers sized to its room (the largest font, up to
the theme's ``huge`` role, at which they fit): for the convolution, each input channel's
patch, weights and their element-wise products with the channel's sum, then the sum over
the channels plus the bias; for ReLU the value in and out; for the pool its 2 x 2 values and
their max or mean. A kernel larger than 5 x 5 is drawn as coloured cells without digits
(hover a cell for its value), and at most :data:`MAX_CHANNEL_ROWS` channels get grids (the
rest are added up in one line that says how many). The view (``widgets/convolution_view.py``)
feeds it; nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QPainter, QPen
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QSizePolicy,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from widgets.theme import THEME

__all__ = ["MAX_CHANNEL_ROWS", "NUMBER_KERNEL_MAX", "STAGES", "KernelEditor", "Stepper", "StepNumbers", "combo",
           "diverging_rgba", "fmt", "identity", "labelled", "mosaic", "pen", "rgb_of", "set_data", "spin", "tile_font"]

#: The stages the window steps through, in order, and their names on screen.
STAGES = {"conv": "Convolution", "relu": "ReLU", "pool": "2×2 pool"}
#: Input channels drawn as grids; the others are summed in one line.
MAX_CHANNEL_ROWS = 3
#: Kernels up to this size show their numbers; larger ones coloured cells with a hover read-out.
NUMBER_KERNEL_MAX = 5
_CHANNEL_NAMES = ("R", "G", "B")


def fmt(v: float, decimals: int = 2) -> str:
    """A number as it is shown: ``decimals`` below 10, one below 100, none above (−0 is 0)."""
    v = float(v)
    a = abs(v)
    text = f"{v:.{decimals}f}" if a < 10 else f"{v:.1f}" if a < 100 else f"{v:.0f}"
    if text.lstrip("-").strip("0.") == "":
        text = text.lstrip("-")
    return text.replace("-", "−")


def rgb_of(values: np.ndarray, scale: float | None = None) -> np.ndarray:
    """``values`` (any shape) as RGB uint8 on a diverging map: negative blue, zero grey, positive
    orange; ``scale`` is the magnitude of full colour (default: the largest magnitude)."""
    v = np.nan_to_num(np.asarray(values, np.float32))
    m = float(scale) if scale is not None else float(np.abs(v).max()) if v.size else 1.0
    t = np.clip(v / (m if m > 0 else 1.0), -1.0, 1.0)[..., None]
    grey = np.array([110, 110, 110], np.float32)
    pos, neg = np.array([255, 150, 20], np.float32), np.array([40, 120, 255], np.float32)
    out = np.where(t >= 0, grey + t * (pos - grey), grey - t * (neg - grey))
    return out.clip(0, 255).astype(np.uint8)


def diverging_rgba(values: np.ndarray, reached: np.ndarray | None = None, scale: float | None = None) -> np.ndarray:
    """``values`` (H x W) as RGBA uint8 (:func:`rgb_of`), transparent where ``reached`` is False."""
    rgb = rgb_of(values, scale)
    alpha = np.full(rgb.shape[:2] + (1,), 255, np.uint8)
    if reached is not None:
        alpha[~reached] = 0
    return np.concatenate([rgb, alpha], axis=-1)


@dataclass
class Stepper:
    """Which output position of which stage is shown, and how far the map has filled in.

    ``shape`` is the stage's output ``(rows, cols)``; ``position`` the current one in row-major
    order (the positions up to it are filled in).
    """

    shape: tuple[int, int] = (0, 0)
    position: int = 0

    @property
    def count(self) -> int:
        return self.shape[0] * self.shape[1]

    @property
    def ij(self) -> tuple[int, int]:
        return divmod(self.position, self.shape[1]) if self.count else (0, 0)

    def reshape(self, shape: tuple[int, int]) -> None:
        """A new output size: the position is kept where it still exists."""
        self.shape = (int(shape[0]), int(shape[1]))
        self.position = min(self.position, max(0, self.count - 1))

    def go(self, position: int) -> int:
        self.position = min(max(0, int(position)), max(0, self.count - 1))
        return self.position

    def go_ij(self, i: int, j: int) -> int:
        return self.go(int(i) * self.shape[1] + int(j)) if self.count else 0

    def at_end(self) -> bool:
        return self.position >= self.count - 1

    def reached(self) -> np.ndarray:
        """``shape`` booleans: the positions filled in so far."""
        flat = np.zeros(self.count, bool)
        flat[: self.position + 1] = self.count > 0
        return flat.reshape(self.shape)


class StepNumbers(QWidget):
    """One step's numbers, painted as large as its room allows, up to twice the ``huge`` role.

    Feed it with :meth:`set_conv`, :meth:`set_relu`, :meth:`set_pool` or :meth:`set_text`;
    :attr:`shown` is what it shows (the arrays and the strings drawn), for the tests and the
    hover read-out.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.shown: dict = {"stage": None}
        self._cells: list[tuple[QRectF, str]] = []  # hover read-out of the coloured cells
        self.setMouseTracking(True)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        THEME.changed.connect(self._theme_changed)

    def _theme_changed(self, *_args) -> None:
        self.updateGeometry()
        self.update()

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return QSize(round(THEME.px(160)), round(THEME.px(90)))

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return QSize(round(THEME.px(560)), round(THEME.px(300)))

    # --- the setters -------------------------------------------------------------
    def set_conv(self, window, kernel: np.ndarray, bias: float, names: list[str] | None = None) -> None:
        """One output position of the convolution: ``window`` (a ``vizapp.explain.convolution.Window``)."""
        c = window.patch.shape[0]
        rows = min(c, MAX_CHANNEL_ROWS)
        names = names or ([*_CHANNEL_NAMES] if c == 3 else [f"ch {k}" for k in range(c)] if c > 1 else [""])
        self.shown = {
            "stage": "conv", "i": int(window.i), "j": int(window.j),
            "patch": np.asarray(window.patch[:rows]), "weights": np.asarray(kernel[:rows]),
            "products": np.asarray(window.products[:rows]), "channel_sums": np.asarray(window.channel_sums),
            "bias": float(bias), "total": float(window.total), "channels": c, "names": names[:rows],
            "rest": float(np.asarray(window.channel_sums)[rows:].sum()) if c > rows else None,
        }
        self.shown["sum_text"] = self._sum_text()
        self.update()

    def set_relu(self, value: float, result: float, i: int, j: int) -> None:
        self.shown = {"stage": "relu", "i": i, "j": j, "value": float(value), "result": float(result),
                      "sum_text": f"ReLU({fmt(value)}) = max(0, {fmt(value)}) = {fmt(result)}"}
        self.update()

    def set_pool(self, window, pool: str) -> None:
        """One 2 x 2 window of the pool (a ``vizapp.explain.convolution.PoolWindow``)."""
        how = "max" if pool == "max" else "mean"
        values = np.asarray(window.values)
        self.shown = {"stage": "pool", "i": int(window.i), "j": int(window.j), "values": values,
                      "result": float(window.result), "pool": pool,
                      "sum_text": f"{how}({', '.join(fmt(v) for v in values.ravel())}) = {fmt(window.result)}"}
        self.update()

    def set_text(self, text: str) -> None:
        """No step to show: ``text`` instead."""
        self.shown = {"stage": None, "sum_text": text}
        self.update()

    def _sum_text(self) -> str:
        s = self.shown
        sums = [fmt(v, 3) for v in s["channel_sums"][: len(s["names"])]]
        if s["rest"] is not None:
            sums.append(f"{fmt(s['rest'], 3)} ({s['channels'] - len(s['names'])} more channels)")
        bias = f" + bias {fmt(s['bias'], 3)}" if s["bias"] else ""
        added = " + ".join(sums) if len(sums) > 1 or bias else ""
        return f"output ({s['i']}, {s['j']}) = {added}{bias}{' = ' if added else ''}{fmt(s['total'], 3)}"

    # --- painting ----------------------------------------------------------------
    def _font(self, pixels: float, bold: bool = False) -> QFont:
        f = QFont(self.font())
        fitted = max(1, int(pixels))  # fitted to the room, at most the theme's huge role
        f.setPixelSize(fitted)
        f.setBold(bold)
        return f

    def _largest(self) -> float:
        """Twice the theme's ``huge`` role, in pixels: the numbers are never larger."""
        return 2 * THEME.pt("huge") * self.logicalDpiY() / 72

    def paintEvent(self, _event) -> None:  # noqa: N802 - Qt override
        p = QPainter(self)
        p.setRenderHint(QPainter.Antialiasing)
        p.setRenderHint(QPainter.TextAntialiasing)
        text_colour = self.palette().windowText().color()
        self._cells = []
        stage = self.shown.get("stage")
        if stage == "conv":
            self._paint_conv(p, text_colour)
        elif stage == "pool":
            self._paint_pool(p, text_colour)
        else:
            size = self._fit_line(self.shown.get("sum_text", ""), self.width(), self.height() / 2)
            p.setFont(self._font(size, stage == "relu"))
            p.setPen(text_colour)
            p.drawText(QRectF(0, 0, self.width(), self.height()), Qt.AlignCenter | Qt.TextWordWrap,
                       self.shown.get("sum_text", ""))
        p.end()

    def _fit_line(self, text: str, width: float, height: float) -> float:
        size = min(self._largest(), height)
        fm = QFontMetricsF(self._font(size))
        wide = fm.horizontalAdvance(text) or 1.0
        return max(1.0, min(size, size * width / wide * 0.95))

    def _grid(self, p: QPainter, x: float, y: float, cell_w: float, cell_h: float, values: np.ndarray,
              colours: np.ndarray, numbers: bool, text_colour: QColor, what: str) -> None:
        k_rows, k_cols = values.shape
        for r in range(k_rows):
            for c in range(k_cols):
                rect = QRectF(x + c * cell_w, y + r * cell_h, cell_w, cell_h)
                colour = QColor(*(int(v) for v in colours[r, c]))
                colour.setAlpha(110 if numbers else 255)
                p.fillRect(rect, colour)
                self._cells.append((rect, f"{what} [{r}, {c}] = {fmt(values[r, c])}"))
                if numbers:
                    p.setPen(text_colour)
                    p.drawText(rect, Qt.AlignCenter, fmt(values[r, c]))
        p.setPen(QPen(text_colour, THEME.width("hair")))
        p.drawRect(QRectF(x, y, k_cols * cell_w, k_rows * cell_h))

    def _paint_conv(self, p: QPainter, text_colour: QColor) -> None:
        s = self.shown
        patch, weights, products = s["patch"], s["weights"], s["products"]
        rows, k = patch.shape[0], patch.shape[1]
        numbers = k <= NUMBER_KERNEL_MAX
        w, h = self.width(), self.height()
        # Columns in character widths: a name, three grids of k cells (5.6 characters each),
        # the signs between them and the channel's sum; rows: k lines a channel, a header and the total.
        cell_chars = 5.6 if numbers else 2.2
        chars = 3 + 3 * k * cell_chars + 3 * 2.4 + 7.5
        lines = rows * (k + 0.4) + 1.2 + 1.6
        size = min(self._largest(), w / (chars * 0.62), h / (lines * 1.3))
        p.setFont(self._font(size))
        fm = QFontMetricsF(p.font())
        char = fm.horizontalAdvance("0")
        cell_w, cell_h = cell_chars * char, fm.height() * 1.1
        name_w, sign_w = 3 * char, 2.4 * char
        grid_w = k * cell_w
        y = fm.height() * 1.15
        # Column headers.
        x0 = name_w
        heads = ("input patch", "weights", "products")
        p.setPen(text_colour)
        for n, head in enumerate(heads):
            p.drawText(QRectF(x0 + n * (grid_w + sign_w), 0, grid_w + sign_w, y), Qt.AlignLeft | Qt.AlignVCenter, head)
        p.drawText(QRectF(x0 + 3 * (grid_w + sign_w), 0, w, y), Qt.AlignLeft | Qt.AlignVCenter, "sum")
        m_patch = float(np.abs(patch).max()) or 1.0
        m_w = float(np.abs(weights).max()) or 1.0
        m_p = float(np.abs(products).max()) or 1.0
        for c in range(rows):
            p.setPen(text_colour)
            p.drawText(QRectF(0, y, name_w, k * cell_h), Qt.AlignCenter, s["names"][c])
            x = x0
            for n, (arr, m) in enumerate(((patch[c], m_patch), (weights[c], m_w), (products[c], m_p))):
                self._grid(p, x, y, cell_w, cell_h, arr, rgb_of(arr, m), numbers, text_colour, heads[n])
                x += grid_w
                p.setPen(text_colour)
                p.drawText(QRectF(x, y, sign_w, k * cell_h), Qt.AlignCenter, ("×", "=", "→")[n])
                x += sign_w
            p.setFont(self._font(size, True))
            p.drawText(QRectF(x, y, w - x, k * cell_h), Qt.AlignLeft | Qt.AlignVCenter, fmt(s["channel_sums"][c], 3))
            p.setFont(self._font(size))
            y += k * cell_h + 0.4 * fm.height()
        # The total: the channels added up, plus the bias.
        text = s["sum_text"]
        total = min(size * 1.3, self._fit_line(text, w, h - y))
        p.setFont(self._font(total, True))
        p.setPen(QColor(THEME.colour("accent")) if THEME.colour("window") == "" else text_colour)
        p.drawText(QRectF(0, y, w, h - y), Qt.AlignLeft | Qt.AlignTop | Qt.TextWordWrap, text)

    def _paint_pool(self, p: QPainter, text_colour: QColor) -> None:
        s = self.shown
        values = s["values"]
        w, h = self.width(), self.height()
        size = min(self._largest() * 1.2, w / (2 * 5.6 * 0.62 + 16 * 0.62), h / (4.5 * 1.35))
        p.setFont(self._font(size))
        fm = QFontMetricsF(p.font())
        cell_w, cell_h = 5.6 * fm.horizontalAdvance("0"), fm.height() * 1.3
        self._grid(p, 0, 0, cell_w, cell_h, values, rgb_of(values), True, text_colour, "ReLU map")
        p.setFont(self._font(size, True))
        p.setPen(text_colour)
        label = f"→ {'max' if s['pool'] == 'max' else 'mean'} = {fmt(s['result'])}"
        p.drawText(QRectF(2 * cell_w + fm.horizontalAdvance("0"), 0, w, 2 * cell_h), Qt.AlignLeft | Qt.AlignVCenter, label)
        line = min(size, self._fit_line(s["sum_text"], w, h - 2.4 * cell_h))
        p.setFont(self._font(line))
        p.drawText(QRectF(0, 2.4 * cell_h, w, h - 2.4 * cell_h), Qt.AlignLeft | Qt.AlignTop | Qt.TextWordWrap,
                   s["sum_text"])

    def mouseMoveEvent(self, event) -> None:  # noqa: N802 - Qt override
        pos = event.position()
        for rect, text in self._cells:
            if rect.contains(pos):
                self.setToolTip(text)
                return
        self.setToolTip("")


class KernelEditor(QTableWidget):
    """An editable K x K grid of weights (3 x 3 or 5 x 5); ``sigChanged`` after an edit."""

    sigChanged = Signal()

    def __init__(self, size: int = 3, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.horizontalHeader().setVisible(False)
        self.verticalHeader().setVisible(False)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.verticalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.setEditTriggers(QAbstractItemView.AllEditTriggers)
        self.setToolTip("Type a weight in each cell; the window runs again with this kernel")
        self.set_weights(identity(size))
        self.itemChanged.connect(lambda _item: self.sigChanged.emit())

    def set_weights(self, weights: np.ndarray) -> None:
        weights = np.asarray(weights, np.float32)
        self.blockSignals(True)
        self.setRowCount(weights.shape[0])
        self.setColumnCount(weights.shape[1])
        for r in range(weights.shape[0]):
            for c in range(weights.shape[1]):
                item = QTableWidgetItem(f"{weights[r, c]:g}")
                item.setTextAlignment(Qt.AlignCenter)
                self.setItem(r, c, item)
        self.blockSignals(False)
        self.sigChanged.emit()

    def weights(self) -> np.ndarray:
        """The grid as a K x K float32 array (a cell that is not a number counts as 0)."""
        out = np.zeros((self.rowCount(), self.columnCount()), np.float32)
        for r in range(self.rowCount()):
            for c in range(self.columnCount()):
                item = self.item(r, c)
                try:
                    out[r, c] = float(item.text().replace("−", "-")) if item is not None else 0.0
                except ValueError:
                    out[r, c] = 0.0
        return out

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt override
        side = self.fontMetrics().horizontalAdvance("−0.000") * self.columnCount()
        return QSize(side, round(self.fontMetrics().height() * 1.6 * self.rowCount()))

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return self.minimumSizeHint()


def identity(size: int) -> np.ndarray:
    """The K x K identity kernel (1 in the centre)."""
    out = np.zeros((size, size), np.float32)
    out[size // 2, size // 2] = 1.0
    return out


# --- small builders of the view's controls -------------------------------------------------


def combo() -> QComboBox:
    """A combo box as wide as its longest item (its items change with the model)."""
    box = QComboBox()
    box.setSizeAdjustPolicy(QComboBox.AdjustToContents)
    return box


def labelled(text: str, widget: QWidget) -> QWidget:
    """``widget`` after a label, as one item of a wrapping row."""
    box = QWidget()
    row = QHBoxLayout(box)
    row.setContentsMargins(0, 0, 0, 0)
    row.addWidget(QLabel(text))
    row.addWidget(widget)
    return box


def spin(low: int, high: int, value: int, tip: str) -> QSpinBox:
    box = QSpinBox()
    box.setRange(low, high)
    box.setValue(value)
    box.setToolTip(tip)
    return box


def pen(role: str = "accent", width: str = "line") -> QPen:
    """A cosmetic pen of colour ``role`` and width ``width`` (theme roles)."""
    p = QPen(QColor(THEME.colour(role)), THEME.width(width))
    p.setCosmetic(True)
    return p


def set_data(box: QComboBox, value) -> bool:
    """Select the item whose data is ``value`` (of the same type); whether the selection changed."""
    rows = [r for r in range(box.count()) if box.itemData(r) == value and type(box.itemData(r)) is type(value)]
    if not rows or rows[0] == box.currentIndex():
        return False
    box.setCurrentIndex(rows[0])
    return True


def tile_font():
    from widgets.theme import font

    return font("small", bold=True)


def mosaic(maps: list[np.ndarray], cols: int) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """``maps`` (each H x W, scaled to its own range) tiled ``cols`` across as one RGB image with a
    gap for each tile's title; the tiles' top-left corners."""
    h, w = (max(m.shape[i] for m in maps) for i in (0, 1))
    gap = max(2, h // 6)
    rows = -(-len(maps) // cols)
    out = np.zeros((rows * (h + gap), cols * (w + gap) - gap, 3), np.uint8)
    origins = []
    for n, m in enumerate(maps):
        r, c = divmod(n, cols)
        y, x = r * (h + gap) + gap, c * (w + gap)
        m = np.asarray(m, np.float32)
        lo, hi = float(m.min()), float(m.max())
        grey = ((m - lo) / (hi - lo if hi > lo else 1.0) * 255).astype(np.uint8)
        out[y:y + m.shape[0], x:x + m.shape[1]] = grey[..., None]
        origins.append((float(x), float(y)))
    return out, origins

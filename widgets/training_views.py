"""The Training dock's four live views, composed by :class:`~widgets.training_panel.TrainingPanel`.

- :class:`CurvesView`: the loss and accuracy curves, train and validation, over steps
  (an epoch axis on top).
- :class:`KernelView`: the first layer's kernels as one mosaic (:func:`kernel_mosaic`).
- :class:`EmbeddingScatter`: the validation embedding, one scatter item per class, with
  a legend beside it.
- :class:`ConfusionView`: the confusion matrix, shaded by row fraction, with counts.

Each view has one documented setter that draws a record's data in place (persistent
items, ``setData`` / ``setImage``), a ``reset()`` for a new run, and a getter of the data
it shows. The views hold no run state: the panel decides when each is drawn.
"""

from __future__ import annotations

from html import escape

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QFontMetrics, QTransform
from PySide6.QtWidgets import (
    QGraphicsItem,
    QGraphicsSimpleTextItem,
    QHBoxLayout,
    QLabel,
    QSplitter,
    QWidget,
)

from vizapp.probing.mosaic import tile
from widgets.common import LUT_ACTIVATION, image_view_box
from widgets.embedding_view import PALETTE
from widgets.theme import THEME, bind_font, font

__all__ = ["CurvesView", "KernelView", "EmbeddingScatter", "ConfusionView", "kernel_mosaic", "big_font"]

TRAIN_COLOUR = "#5ab4ff"
VAL_COLOUR = "#ffa23a"
#: Text roles of the plots (sizes come from the theme, at its current scale).
AXIS_ROLE, LABEL_ROLE, TITLE_ROLE, SUBTITLE_ROLE = "body", "label", "subheading", "small"


def _title_pt() -> str:
    return THEME.css(TITLE_ROLE)


def _label_pt() -> str:
    return THEME.css(LABEL_ROLE)


def _legend_pt() -> str:
    return THEME.css(SUBTITLE_ROLE)


#: The confusion matrix names its rows (long class names) only when at least this wide.
NAMED_ROWS_PX = 320


def _plot_min(widget: QWidget) -> None:
    """A plot's smallest side: the theme's ``plot_min`` (the board's grid shrinks to it)."""
    side = round(THEME.pixels("plot_min"))
    widget.setMinimumSize(side, side)


def kernel_mosaic(weights: np.ndarray | None, gap: int = 1) -> np.ndarray | None:
    """First-layer weights as one ``H x W x 3`` uint8 mosaic, each filter scaled to its range.

    ``weights`` is ``N x C x h x w`` (the ``weights`` of a ``kernels`` record): 3 input
    channels give colour tiles, 1 grey tiles, any other count the mean over inputs in
    grey. An ``N x D`` matrix (a linear first layer on inputs that are not images) is
    drawn as one row per unit. ``None`` gives ``None``.
    """
    if weights is None:
        return None
    w = np.asarray(weights, dtype=np.float32)
    rows_only = w.ndim == 2
    if rows_only:
        w = w[:, None, None, :]
    if w.ndim != 4:
        raise ValueError(f"expected N x C x h x w or N x D weights, got shape {w.shape}")
    if w.shape[1] not in (1, 3):
        w = w.mean(axis=1, keepdims=True)
    lo = w.min(axis=(1, 2, 3), keepdims=True)
    hi = w.max(axis=(1, 2, 3), keepdims=True)
    scaled = ((w - lo) * (255.0 / np.where(hi > lo, hi - lo, 1.0)) + 0.5).astype(np.uint8)
    tiles = scaled.transpose(0, 2, 3, 1)
    if tiles.shape[3] == 1:
        tiles = np.repeat(tiles, 3, axis=3)
    image, _rows, _cols = tile(np.ascontiguousarray(tiles), cols=1 if rows_only else None,
                               gap=0 if rows_only else gap, gap_value=40)
    return image


def big_font(role: str, bold: bool = False) -> QFont:
    """A font of the theme's text ``role`` (the panel's labels and buttons use it too)."""
    return font(role, bold)


def _plot_title(plot: pg.PlotItem, title: str) -> None:
    """Set ``plot``'s title and give its row the title's height (pyqtgraph fixes it at 30 px,
    which cuts a second line or a scaled-up font)."""
    plot.setTitle(title, size=_title_pt(), color=THEME.colour("text"))
    height = int(np.ceil(plot.titleLabel.item.boundingRect().height()))
    plot.titleLabel.setMaximumHeight(height)
    plot.layout.setRowFixedHeight(0, height)


_KEY_TIP = "━ train: each training batch · ● val: the validation set after each evaluation"


def _keyed(title: str) -> str:
    """A curve plot's title over its key: the train line and the validation dots in their colours."""
    key = (f"<span style='color: {TRAIN_COLOUR}'>━ train</span>&nbsp;&nbsp;"
           f"<span style='color: {VAL_COLOUR}'>● val</span>")
    return f"{title}<br><span style='font-size: {_legend_pt()}'>{key}</span>"


def _title(title: str, subtitle: str = "") -> str:
    """A view's title over a smaller second line (always two lines, so the layout never moves)."""
    return f"{title}<br><span style='font-size: {THEME.css(SUBTITLE_ROLE)}'>{subtitle or '&nbsp;'}</span>"


def _style_plot(plot: pg.PlotItem, title: str, left: str, bottom: str) -> None:
    _plot_title(plot, title)
    for name, text in (("left", left), ("bottom", bottom)):
        axis = plot.getAxis(name)
        axis.setCacheMode(QGraphicsItem.DeviceCoordinateCache)  # big-font ticks: repainted only when they change
        axis.enableAutoSIPrefix(False)  # "loss (x0.001)" over 200 confuses; show 0.2
        axis.setTickFont(big_font(AXIS_ROLE))
        axis.setTextPen(THEME.colour("axis_text"))
        axis.setPen(THEME.colour("axis"))
        if text:
            axis.setLabel(text, **{"font-size": _label_pt(), "color": THEME.colour("axis_text")})
    plot.showGrid(x=True, y=True, alpha=0.2)
    plot.setMenuEnabled(False)
    plot.hideButtons()


def _xy(item: pg.PlotDataItem) -> tuple[np.ndarray, np.ndarray]:
    x = item.xData if item.xData is not None else np.zeros(0)
    y = item.yData if item.yData is not None else np.zeros(0)
    return np.asarray(x), np.asarray(y)


class CurvesView(QSplitter):
    """The loss plot and the accuracy plot side by side (``loss_plot``, ``acc_plot``).

    Items: ``train_loss``, ``val_loss``, ``train_acc``, ``val_acc``. :meth:`set_schedule`
    sets the epoch axis when a run starts; :meth:`set_data` draws the curves.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(Qt.Horizontal, parent)
        self.loss_plot = pg.PlotWidget()
        self.acc_plot = pg.PlotWidget()
        for widget in (self.loss_plot, self.acc_plot):
            widget.setBackground(THEME.colour("background"))
            _plot_min(widget)
        lp, ap = self.loss_plot.getPlotItem(), self.acc_plot.getPlotItem()
        self._loss_title, self._acc_title = "Loss", "Accuracy"
        # The key is the title's second line, not a legend over the plot: it never covers a curve.
        _style_plot(lp, _keyed("Loss"), "loss", "step")
        _style_plot(ap, _keyed("Accuracy"), "accuracy", "step")
        train, val = self._pens()
        self.train_loss = lp.plot(pen=train, name="train (batch)")
        self.val_loss = lp.plot(pen=val, symbol="o", symbolSize=THEME.marker("val"), symbolBrush=VAL_COLOUR,
                                symbolPen=None, name="validation")
        self.train_acc = ap.plot(pen=train, name="train (batch)")
        self.val_acc = ap.plot(pen=val, symbol="o", symbolSize=THEME.marker("val"), symbolBrush=VAL_COLOUR,
                               symbolPen=None, name="validation")
        for item in (self.train_loss, self.train_acc):
            item.setDownsampling(auto=True, method="peak")
            item.setClipToView(True)
            # Qt strokes a wide antialiased polyline as one path, in time that grows with the
            # points; separate segments paint in a few milliseconds at any length.
            item.curve.setSegmentedLineMode("on")
        ap.setYRange(0.0, 1.0, padding=0.02)
        ap.enableAutoRange(axis="y", enable=False)
        for widget in (self.loss_plot, self.acc_plot):
            widget.setToolTip(_KEY_TIP)
        for plot in (lp, ap):
            plot.showAxis("top")
            top = plot.getAxis("top")
            top.setCacheMode(QGraphicsItem.DeviceCoordinateCache)
            top.setTextPen(THEME.colour("axis_dim_text"))
            top.setPen(THEME.colour("axis_dim"))
            top.setTicks([[]])
        self._style_top()
        self.addWidget(self.loss_plot)
        self.addWidget(self.acc_plot)
        self._lr_title = ""
        THEME.changed.connect(self._apply_theme)

    @staticmethod
    def _pens():
        return (pg.mkPen(TRAIN_COLOUR, width=THEME.width("line")), pg.mkPen(VAL_COLOUR, width=THEME.width("thick")))

    def _style_top(self) -> None:
        for plot in (self.loss_plot.getPlotItem(), self.acc_plot.getPlotItem()):
            top = plot.getAxis("top")
            top.setTickFont(big_font("small"))
            top.setTextPen(THEME.colour("axis_dim_text"))
            top.setLabel("epoch", **{"font-size": THEME.css("small"), "color": THEME.colour("axis_dim_text")})

    def _apply_theme(self, *_args) -> None:
        """Titles, axes, legends, pens and symbols at the theme's scale."""
        lp, ap = self.loss_plot.getPlotItem(), self.acc_plot.getPlotItem()
        for widget in (self.loss_plot, self.acc_plot):
            _plot_min(widget)
        _style_plot(lp, _keyed(self._lr_title or self._loss_title), "loss", "step")
        _style_plot(ap, _keyed(self._acc_title), "accuracy", "step")
        self._style_top()
        train, val = self._pens()
        for item in (self.train_loss, self.train_acc):
            item.setPen(train)
        for item in (self.val_loss, self.val_acc):
            item.setPen(val)
            item.setSymbolSize(THEME.marker("val"))

    def reset(self) -> None:
        """Empty the curves (a new run); the loss title is rewritten at the next :meth:`set_data`."""
        for item in (self.train_loss, self.val_loss, self.train_acc, self.val_acc):
            item.setData([], [])
        self._lr_title = ""

    def set_schedule(self, steps_per_epoch: int, epochs: int, total_steps: int, metric: bool) -> None:
        """Epoch ticks on the top axes and the step range of a run; ``metric`` (a metric-learning
        loss) titles the accuracy "nearest class centre". Re-lays out both plots' axes."""
        every = max(1, int(np.ceil(epochs / 10)))
        ticks = [(k * steps_per_epoch, str(k)) for k in range(0, epochs + 1, every)]
        for plot in (self.loss_plot.getPlotItem(), self.acc_plot.getPlotItem()):
            plot.getAxis("top").setTicks([ticks])
            plot.setXRange(0, max(1, total_steps), padding=0.02)
            plot.enableAutoRange(axis="x", enable=False)
        self.loss_plot.getPlotItem().enableAutoRange(axis="y", enable=True)
        self._acc_title = "Accuracy (nearest class centre)" if metric else "Accuracy"
        _plot_title(self.acc_plot.getPlotItem(), _keyed(self._acc_title))

    def set_data(self, steps: dict[str, list[float]], evals: dict[str, list[float]], optimizer: str = "") -> None:
        """Draw the curves.

        ``steps`` holds per logged step ``step``, ``loss``, ``acc`` (NaN where none) and
        ``lr``; ``evals`` per evaluation ``step``, ``val_loss`` (NaN where none) and
        ``val_acc``. The loss title shows the latest learning rate and ``optimizer``.
        """
        s, e = steps, evals
        xs = np.asarray(s["step"], dtype=np.float64)
        self.train_loss.setData(xs, np.asarray(s["loss"], dtype=np.float64))
        acc = np.asarray(s["acc"], dtype=np.float64)
        has_acc = np.isfinite(acc)
        self.train_acc.setData(xs[has_acc], acc[has_acc])
        vsteps = np.asarray(e["step"], dtype=np.float64)
        vloss = np.asarray(e["val_loss"], dtype=np.float64)
        has_loss = np.isfinite(vloss)
        self.val_loss.setData(vsteps[has_loss], vloss[has_loss])
        self.val_acc.setData(vsteps, np.asarray(e["val_acc"], dtype=np.float64))
        if s["lr"]:
            title = f"Loss · lr {s['lr'][-1]:.3g}"  # short: a narrow plot's title must not be cut
            self.loss_plot.setToolTip(f"Learning rate {s['lr'][-1]:.3g} ({optimizer}) · {_KEY_TIP}")
            if title != self._lr_title:  # a new title re-lays out the plot: only when it changes
                self._lr_title = title
                _plot_title(self.loss_plot.getPlotItem(), _keyed(title))

    def curves(self) -> dict[str, np.ndarray]:
        """The data shown: ``step``, ``loss``, ``acc_step``, ``acc``, ``val_step``,
        ``val_loss``, ``val_acc_step``, ``val_acc``."""
        out = {}
        out["step"], out["loss"] = _xy(self.train_loss)
        out["acc_step"], out["acc"] = _xy(self.train_acc)
        out["val_step"], out["val_loss"] = _xy(self.val_loss)
        out["val_acc_step"], out["val_acc"] = _xy(self.val_acc)
        return out


class KernelView(pg.GraphicsLayoutWidget):
    """The first layer's kernels as one mosaic image (``item`` in ``view``) under ``title``."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setBackground(THEME.colour("background"))
        _plot_min(self)
        self._title_args = ("Kernels", "first layer")
        self.title = self.addLabel(_title(*self._title_args), size=_title_pt(), color=THEME.colour("text"))
        self.nextRow()
        self.view = image_view_box(self)
        self.item = pg.ImageItem(axisOrder="row-major")
        self.view.addItem(self.item)
        self._image: np.ndarray | None = None
        THEME.changed.connect(self._apply_theme)

    def _set_title(self, title: str, subtitle: str = "") -> None:
        self._title_args = (title, subtitle)
        self.title.setText(_title(title, subtitle), size=_title_pt(), color=THEME.colour("text"))

    def _apply_theme(self, *_args) -> None:
        _plot_min(self)
        self._set_title(*self._title_args)

    def reset(self) -> None:
        """No mosaic (a new run)."""
        self._image = None
        self.item.clear()
        self._set_title("Kernels", "first layer")

    def set_kernels(self, record: dict) -> None:
        """Draw a ``kernels`` record (``weights``, ``layer``, ``step``) with :func:`kernel_mosaic`;
        ``weights`` None says the model has no convolution or linear layer."""
        image = kernel_mosaic(record.get("weights"))
        self._image = image
        if image is None:
            self.item.clear()
            self._set_title("Kernels", "none: the model has no convolution or linear layer")
            return
        first = self.item.image is None or self.item.image.shape != image.shape
        self.item.setImage(image, levels=(0, 255), autoLevels=False)
        shape = "×".join(str(d) for d in record["weights"].shape)
        self._set_title("Kernels", f"{record['layer']} · step {record['step']}")
        self.setToolTip(f"The first layer's weights, {record['layer']} {shape}, each filter scaled to its range")
        if first:
            self.view.autoRange(padding=0.02)

    def image(self) -> np.ndarray | None:
        """The mosaic shown (``H x W x 3`` uint8), or None."""
        return self._image


class EmbeddingScatter(QWidget):
    """The validation embedding: a scatter (``canvas``, ``box``, ``title``) and a legend label.

    One :class:`pg.ScatterPlotItem` per class (``items``), made by :meth:`set_classes`;
    :meth:`set_embedding` draws an ``embedding`` record.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.canvas = pg.GraphicsLayoutWidget()
        self.canvas.setBackground(THEME.colour("background"))
        _plot_min(self.canvas)
        self._title_args = ("Embedding", "validation set")
        self.title = self.canvas.addLabel(_title(*self._title_args), size=_title_pt(), color=THEME.colour("text"))
        self.canvas.nextRow()
        self.box = self.canvas.addViewBox()
        self.box.setAspectLocked(True)
        self.box.setMenuEnabled(False)
        self.box.disableAutoRange()
        # The legend is one rich-text label beside the plot: it never covers points, and
        # building it costs a millisecond (a pg.LegendItem of ten classes costs tens).
        self.legend = QLabel()
        bind_font(self.legend, "body", style=lambda: f"background: {THEME.colour('background')}; color: {THEME.colour('text')};"
                  f" padding: {THEME.px(4):g}px;")
        self.legend.setAlignment(Qt.AlignLeft | Qt.AlignVCenter)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(0)
        row.addWidget(self.canvas, 1)
        row.addWidget(self.legend)
        self.items: list[pg.ScatterPlotItem] = []
        self._classes: list[str] = []
        self._points: tuple[np.ndarray, np.ndarray] | None = None
        self._range = 0.0
        THEME.changed.connect(self._apply_theme)

    def _apply_theme(self, *_args) -> None:
        _plot_min(self.canvas)
        self.title.setText(_title(*self._title_args), size=_title_pt(), color=THEME.colour("text"))
        for item in self.items:
            item.setSize(THEME.marker("dot"))
        self._legend_text(self._classes)

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._fit_legend()

    def _fit_legend(self) -> None:
        """The legend beside the points only while the points keep most of the width (else
        it is the canvas's tooltip)."""
        self.legend.setVisible(bool(self._classes) and self.legend.sizeHint().width() * 2 < self.width())

    def _legend_text(self, classes: list[str]) -> None:
        lines = [f"<span style='color: {PALETTE[k % len(PALETTE)]}; font-size: {THEME.css('title')}'>●</span>"
                 f"&nbsp;{escape(name)}" for k, name in enumerate(classes[:20])]
        if len(classes) > 20:
            lines.append(f"… {len(classes) - 20} more")
        self.legend.setText("<br>".join(lines))
        self._fit_legend()

    def reset(self) -> None:
        """No points (a new run); the class items stay."""
        for item in self.items:
            item.setData([], [])
        self._points = None
        self._range = 0.0

    def set_classes(self, classes: list[str]) -> None:
        """One scatter item per class (one shared brush each) and the legend."""
        if classes == self._classes:
            return
        for item in self.items:
            self.box.removeItem(item)
        self.items = []
        for k, _name in enumerate(classes):
            hex_colour = PALETTE[k % len(PALETTE)]
            colour = pg.mkColor(hex_colour)
            colour.setAlpha(200)
            item = pg.ScatterPlotItem(size=THEME.marker("dot"), pen=None, brush=pg.mkBrush(colour), pxMode=True,
                                      hoverable=False)
            self.box.addItem(item)
            self.items.append(item)
        self._legend_text(classes)
        self._classes = list(classes)

    def set_embedding(self, record: dict, metric: bool = False) -> None:
        """Draw an ``embedding`` record (``coords`` N x 2, ``labels`` N, ``classes``, ``step``);
        ``metric`` says the points are a metric-learning embedding, not penultimate features."""
        coords = np.asarray(record["coords"], dtype=np.float32)
        labels = np.asarray(record["labels"])
        self.set_classes(list(record["classes"]))
        for k, item in enumerate(self.items):
            mine = labels == k
            item.setData(x=coords[mine, 0], y=coords[mine, 1])
        self._points = (coords, labels)
        # A fixed symmetric range (the projection is centred, RMS radius 1): it changes only
        # when points would leave it or the cloud has shrunk to well inside it.
        needed = 1.1 * max(1.0, float(np.abs(coords).max()) if len(coords) else 1.0)
        if needed > self._range or needed < 0.6 * self._range:
            self._range = needed
            self.box.setRange(xRange=(-needed, needed), yRange=(-needed, needed), padding=0.0)
        what = "embedding" if metric else "penultimate features"
        self._title_args = ("Embedding", f"step {record['step']} · {len(coords)} images")
        self.title.setText(_title(*self._title_args), size=_title_pt(), color=THEME.colour("text"))
        self.canvas.setToolTip(f"The validation images' {what} projected on two principal axes, "
                               "rotated onto the previous projection so the points move, not jump")

    def points(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(coords N x 2, labels N)`` shown, or None."""
        return self._points

    def view_range(self) -> float:
        """Half the side of the (fixed, symmetric) view range."""
        return self._range


class ConfusionView(pg.GraphicsLayoutWidget):
    """The confusion matrix (``item`` in ``plot``), a count label per cell (``texts``, up to
    20 classes), class names on the axes."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setBackground(THEME.colour("background"))
        _plot_min(self)
        self.plot = self.addPlot()
        cp = self.plot
        _style_plot(cp, "Confusion", "true class", "predicted")
        cp.showGrid(x=False, y=False)
        cp.invertY(True)
        cp.setAspectLocked(True)
        cp.setMouseEnabled(x=False, y=False)
        cp.getViewBox().setDefaultPadding(0.0)
        cp.enableAutoRange()  # the image's bounds, whatever size the dock has
        self.item = pg.ImageItem(axisOrder="row-major")
        self.item.setLookupTable(LUT_ACTIVATION)
        cp.addItem(self.item)
        for side in ("left", "bottom"):  # no numbers until a run names the classes
            cp.getAxis(side).setTicks([[]])
        self.texts: list[QGraphicsSimpleTextItem] = []
        self._key: tuple = ()
        self._matrix: np.ndarray | None = None
        self._title = "Confusion"
        THEME.changed.connect(self._apply_theme)

    def _cell_font(self, k: int) -> QFont:
        return big_font("body" if k <= 10 else "tiny", bold=True)

    def _apply_theme(self, *_args) -> None:
        _plot_min(self)
        metric = bool(self._key[2]) if self._key else False
        _style_plot(self.plot, self._title, "true class", "predicted (nearest class centre)" if metric else "predicted")
        if self._key:
            f = self._cell_font(self._key[1])
            for text in self.texts:
                text.setFont(f)
                r = text.boundingRect()
                text.setTransform(QTransform.fromTranslate(-r.width() / 2, -r.height() / 2))

    def reset(self) -> None:
        """No matrix (a new run); the labels stay, empty."""
        self._matrix = None
        self.item.clear()
        for text in self.texts:
            text.setText("")

    def prepare(self, classes: list[str], metric: bool = False, k: int | None = None) -> None:
        """The count labels (up to 20 classes) and the class names on the axes (``k`` classes,
        default ``len(classes)``); ``metric``: predictions by nearest class centre."""
        k = len(classes) if k is None else k
        key = (tuple(classes), k, metric)
        if key == self._key:
            return
        self._key = key
        plot = self.plot
        for text in self.texts:
            plot.removeItem(text)
        self.texts = []
        if k <= 20:
            cell_font = self._cell_font(k)
            for i in range(k):
                for j in range(k):
                    # Plain text items (a pg.TextItem costs 15 times more to build), in pixels
                    # at the cell's centre whatever the zoom.
                    text = QGraphicsSimpleTextItem()
                    text.setFont(cell_font)
                    text.setFlag(QGraphicsItem.ItemIgnoresTransformations)
                    text.setPos(j + 0.5, i + 0.5)
                    plot.addItem(text, ignoreBounds=True)
                    self.texts.append(text)
        self._names = classes if len(classes) == k else [str(i) for i in range(k)]
        self._named_rows = None
        self._label_axes()
        self.setToolTip("Rows: the true class · columns: the predicted one · "
                        + ", ".join(f"{i} {n}" for i, n in enumerate(self._names)))
        plot.getAxis("bottom").setLabel("predicted (nearest class centre)" if metric else "predicted",
                                        **{"font-size": _label_pt(), "color": THEME.colour("axis_text")})

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._label_axes()
        self._fit_counts()

    def _fit_counts(self) -> None:
        """The counts only while a cell on screen is taller than their font (else the shading
        alone; the numbers would run over each other)."""
        if not getattr(self, "texts", None) or not getattr(self, "_key", None):
            return
        k = self._key[1]
        box = self.plot.getViewBox().sceneBoundingRect()
        cell = min(box.width(), box.height()) / max(1, k)
        fits = cell >= QFontMetrics(self._cell_font(k)).height()
        for text in self.texts:
            text.setVisible(fits)

    def _label_axes(self) -> None:
        """Short names (digits) under the columns and beside the rows; long names beside the
        rows while the view is wide enough for them (:data:`NAMED_ROWS_PX` times the theme's
        scale), else numbers only (the names are in the tooltip)."""
        names = getattr(self, "_names", None)
        if names is None:
            return
        short = max((len(n) for n in names), default=0) <= 3
        named = short or self.width() >= THEME.px(NAMED_ROWS_PX)
        if named == self._named_rows:
            return
        self._named_rows = named
        numbers = [str(i) for i in range(len(names))]
        left = names if short else [f"{n}  {i}" for i, n in enumerate(names)] if named else numbers
        below = names if short else numbers
        self.plot.getAxis("left").setTicks([[(i + 0.5, n) for i, n in enumerate(left)]])
        self.plot.getAxis("bottom").setTicks([[(i + 0.5, n) for i, n in enumerate(below)]])

    def set_confusion(self, confusion: np.ndarray, classes: list[str], metric: bool = False) -> None:
        """Draw a ``k x k`` count matrix (rows: true class, columns: predicted), shaded by row
        fraction, with its accuracy in the title; ``metric`` as in :meth:`prepare`."""
        cm = np.asarray(confusion, dtype=np.int64)
        k = cm.shape[0]
        self._matrix = cm
        rows = cm.sum(axis=1, keepdims=True)
        frac = cm / np.maximum(rows, 1)
        self.item.setImage(frac.astype(np.float32), levels=(0.0, 1.0), autoLevels=False)
        self.item.setRect(QRectF(0, 0, k, k))
        self.prepare(classes, metric, k)
        dark, light = QBrush(QColor("#000000")), QBrush(QColor("#ffffff"))
        for idx, text in enumerate(self.texts):
            i, j = divmod(idx, k)
            text.setText(str(int(cm[i, j])))
            text.setBrush(dark if frac[i, j] > 0.6 else light)
            r = text.boundingRect()
            text.setTransform(QTransform.fromTranslate(-r.width() / 2, -r.height() / 2))
        self._fit_counts()
        acc = np.trace(cm) / max(1, cm.sum())
        self._title = "Confusion" if self.width() < THEME.px(NAMED_ROWS_PX) else f"Confusion · {acc:.0%} right"
        _plot_title(self.plot, self._title)

    def counts(self) -> np.ndarray | None:
        """The count matrix shown, or None."""
        return self._matrix

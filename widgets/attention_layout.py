"""How the Attention dock is built and drawn: its constants, widgets and plot items.

:class:`AttentionLayout` is the layout half of :class:`widgets.attention_view.AttentionView`
(as pyqtgraph keeps ``ImageViewTemplate`` apart from ``ImageView``): it creates the
controls and the four pages, re-applies the theme, and fills the items that only draw
(the head strip, the grid labels, the distance plot). What is shown, and how the user
moves through it, is in the view.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QPainterPath, QPen
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QGraphicsPathItem,
    QGraphicsRectItem,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QSpinBox,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from vizapp.probing.mosaic import Mosaic, tile
from widgets.common import LUT_ACTIVATION, heading, image_view_box
from widgets.theme import THEME, bind_font, font

__all__ = ["AttentionLayout", "MODES", "MODE_NAMES", "FUSIONS", "FUSION_NAMES", "HINTS", "IDLE_MESSAGE",
           "OWN_QUERY", "LUT_TILES", "TEXT", "tile_mosaic", "upsample"]

#: The query of the model's own output: its class token, or the mean patch query without one.
OWN_QUERY = -1

MODES = ("head", "grid", "rollout", "distance")
MODE_NAMES = {"head": "Head", "grid": "All heads", "rollout": "Rollout", "distance": "Distance"}
#: ``vizapp.explain.attention.FUSIONS``, spelled out so that opening the window does not load torch.
FUSIONS = ("mean", "max", "min")
FUSION_NAMES = {"mean": "Mean of heads", "max": "Max over heads", "min": "Min over heads"}
HINTS = {
    "head": "↑/↓ layer · ←/→ head · click a patch to make it the query · Esc: back to the class token",
    "grid": "↑/↓ layer · ←/→ head · click a map to open it",
    "rollout": "Discard drops the weakest weights of every layer before rolling out",
    "distance": "↑/↓ layer · ←/→ head · click a dot to open its head",
}
#: What the dock says before any model is open (the explain controller adds the models to try).
IDLE_MESSAGE = "No attention yet: open a Vision Transformer and an image"
TEXT = THEME.colour("text")
#: Tile mosaics: 0 is the gaps (grey), 1..255 the maps (inferno), so a map's zeros stay dark.
LUT_TILES = np.vstack([[[70, 70, 70]], pg.colormap.get("inferno").getLookupTable(nPts=255)]).astype(
    np.uint8
)
QUERY_COLOUR = QColor(THEME.colour("accent"))
DOT_COLOUR = "#1f1f1f"
DOT_BRUSH = pg.mkBrush(78, 121, 167, 220)
MEAN_COLOUR = "#f28e2b"


def _pen(colour: QColor, width: str) -> QPen:
    """A cosmetic pen of the theme's line ``width`` role."""
    pen = QPen(colour)
    pen.setWidthF(THEME.width(width))
    pen.setCosmetic(True)  # screen pixels at any zoom
    return pen


def upsample(grid: np.ndarray, height: int, width: int, smooth: bool = False) -> np.ndarray:
    """A ``gh x gw`` map on ``height x width`` pixels: each patch as a block, or bilinear."""
    g = np.asarray(grid, dtype=np.float32)
    gh, gw = g.shape
    if not smooth:
        return g[np.ix_(np.arange(height) * gh // height, np.arange(width) * gw // width)]

    def axis(n: int, size: int):  # sample positions between patch centres
        src = np.clip((np.arange(n) + 0.5) * size / n - 0.5, 0, size - 1)
        lo = np.floor(src).astype(np.intp)
        return lo, np.minimum(lo + 1, size - 1), (src - lo).astype(np.float32)

    y0, y1, wy = axis(height, gh)
    x0, x1, wx = axis(width, gw)
    rows = g[y0] * (1 - wy)[:, None] + g[y1] * wy[:, None]
    return rows[:, x0] * (1 - wx) + rows[:, x1] * wx


def _encode(maps: np.ndarray) -> np.ndarray:
    """``N x h x w`` maps as uint8 1..255 for :data:`LUT_TILES`, each scaled to its own max."""
    m = np.clip(np.asarray(maps, dtype=np.float32), 0, None)
    top = m.max(axis=(1, 2), keepdims=True)
    return (1 + np.rint(m / np.where(top > 0, top, 1) * 254)).astype(np.uint8)


def tile_mosaic(maps: np.ndarray, cols: int) -> Mosaic:
    n, h, w = maps.shape
    gap = max(1, h // 7)
    image, rows, cols = tile(_encode(maps), cols=cols, gap=gap)
    return Mosaic(image, np.arange(n), rows, cols, h, w, gap)


class AttentionLayout:
    """The widgets and plot items of the Attention dock (a mixin of ``AttentionView``)."""

    def _apply_theme(self, *_args) -> None:
        """Fonts, pens and marker sizes at the theme's scale (labels re-apply themselves)."""
        self.discard_label.setMinimumWidth(
            self.discard_label.fontMetrics().horizontalAdvance("discard 95%") + round(THEME.px(6))
        )
        query = QColor(THEME.colour("accent"))  # the theme's (a light theme's accent is darker)
        self.outline.setPen(_pen(query, "thick"))
        self.strip_outlines.setPen(_pen(query, "line"))
        self.strip_marker.setPen(_pen(QColor("white"), "thick"))
        self.grid_marker.setPen(_pen(query, "thick"))
        self.busy.setFont(font("busy", bold=True))
        self._strip_minimum()
        self.grid_corner.setFont(font("body", bold=True))
        self.grid_corner.setColor(THEME.colour("text"))
        for label in self.strip_labels:
            label.setFont(font("small", bold=True))
        for item in (*self.row_labels, *self.col_labels):
            item.setFont(font("body"))
            item.setColor(THEME.colour("text"))
        self.distance_plot.setTitle("Mean attention distance of every head", color=THEME.colour("text"), size=THEME.css("title"))
        for side, label in (("bottom", "layer"), ("left", "mean attention distance (px)")):
            axis = self.distance_plot.getAxis(side)
            axis.setStyle(tickFont=font("body"))
            axis.setTextPen(THEME.colour("text"))
            axis.setPen(THEME.colour("text"))
            axis.setLabel(label, color=THEME.colour("text"), **{"font-size": THEME.css("subheading")})
        self.distance_mean.setPen(pg.mkPen(MEAN_COLOUR, width=THEME.width("thick")))
        self.distance_dots.setPen(pg.mkPen(DOT_COLOUR, width=THEME.width("hair")))
        self.distance_dots.setSize(THEME.marker("point"))
        self.distance_mark.setPen(pg.mkPen(query, width=THEME.width("thick")))
        self.distance_mark.setSize(THEME.marker("mark"))

    # --- construction ------------------------------------------------------------
    def _build_controls(self) -> None:
        """Two rows: the modes and the overlay opacity; under them, the mode's own controls."""
        self.mode_group = QButtonGroup(self)
        self.mode_buttons: dict[str, QPushButton] = {}
        for i, mode in enumerate(MODES):
            button = QPushButton(MODE_NAMES[mode])
            button.setCheckable(True)
            bind_font(button, "body", True)
            self.mode_group.addButton(button, i)
            self.mode_buttons[mode] = button
        self.mode_group.idClicked.connect(lambda i: self.set_mode(MODES[i]))
        self.opacity = QSlider(Qt.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(60)
        self.opacity.setMaximumWidth(160)
        self.opacity.setToolTip("Overlay opacity: 0 shows the image, 100 the attention")
        self.smooth = QCheckBox("Smooth")
        self.smooth.setToolTip("Bilinear between patch centres instead of one block per patch")
        self.smooth.toggled.connect(lambda _on: self._render())
        self.opacity_controls = self._group(self.smooth, QLabel("Overlay"), self.opacity)

        self.layer_box = QSpinBox()
        self.layer_box.setPrefix("layer ")
        self.layer_box.valueChanged.connect(lambda v: self.set_layer_head(v, self._head))
        self.head_box = QComboBox()
        self.head_box.addItem("mean of heads")
        self.head_box.currentIndexChanged.connect(
            lambda i: self.set_layer_head(self._layer, None if i == 0 else i - 1)
        )
        self.cls_button = QPushButton("Class token")
        self.cls_button.setToolTip("Back to the class token as the query (Esc)")
        self.cls_button.clicked.connect(lambda: self.set_query(OWN_QUERY))
        self.pickers = self._group(self.layer_box, self.head_box, self.cls_button)

        self.fusion = QComboBox()
        for key in FUSIONS:
            self.fusion.addItem(FUSION_NAMES[key], key)
        self.fusion.setToolTip("How each layer's heads are combined before rolling out")
        self.fusion.currentIndexChanged.connect(lambda _i: self._render())
        self.discard = QSlider(Qt.Horizontal)
        self.discard.setRange(0, 95)
        self.discard.setMaximumWidth(160)
        self.discard.setToolTip(
            "Drop this fraction of the weakest attention weights in every layer"
        )
        self.discard_label = QLabel()
        bind_font(self.discard_label, "body")
        self.discard.valueChanged.connect(self._discard_changed)
        self.gradient = QCheckBox("Gradient-weighted for the picked class")
        self.gradient.setToolTip(
            "Chefer et al. 2021: weight each layer's attention by its gradient for the class"
        )
        self.gradient.toggled.connect(self._gradient_toggled)
        self.rollout_controls = self._group(
            self.fusion, self.discard_label, self.discard, self.gradient
        )
        self._discard_changed(0)

        # Mouse-driven controls never take the focus, so the arrows keep stepping layers
        # and heads; the pickers take it only when clicked (to type a layer number).
        for w in (
            *self.mode_buttons.values(),
            self.opacity,
            self.cls_button,
            self.smooth,
            self.discard,
            self.gradient,
        ):
            w.setFocusPolicy(Qt.NoFocus)
        for w in (self.layer_box, self.head_box, self.fusion):
            w.setFocusPolicy(Qt.ClickFocus)
        self.controls = QWidget()
        bind_font(self.controls, "body")
        rows = QVBoxLayout(self.controls)
        rows.setContentsMargins(0, 0, 0, 0)
        top, below = QHBoxLayout(), QHBoxLayout()
        for button in self.mode_buttons.values():
            top.addWidget(button)
        top.addStretch(1)
        top.addWidget(self.opacity_controls)
        below.addWidget(self.pickers)
        below.addWidget(self.rollout_controls)
        below.addStretch(1)
        rows.addLayout(top)
        rows.addLayout(below)

    @staticmethod
    def _group(*widgets: QWidget) -> QWidget:
        box = QWidget()
        row = QHBoxLayout(box)
        row.setContentsMargins(0, 0, 0, 0)
        for w in widgets:
            row.addWidget(w)
        return box

    def _canvas(self) -> pg.GraphicsLayoutWidget:
        canvas = pg.GraphicsLayoutWidget()
        canvas.setBackground(THEME.colour("background"))
        canvas.setFocusPolicy(Qt.NoFocus)  # clicks leave the focus (and the arrows) with the view
        return canvas

    def _build_pages(self) -> None:
        # Head / rollout: the image with the overlay, and the strip of every head.
        self.canvas = self._canvas()
        self.view = image_view_box(self.canvas)
        self.base = pg.ImageItem(axisOrder="row-major")
        self.overlay = pg.ImageItem(axisOrder="row-major")
        self.overlay.setLookupTable(LUT_ACTIVATION)
        self.overlay.setOpacity(0.6)
        self.outline = QGraphicsRectItem()
        self.outline.setVisible(False)
        self.busy = pg.TextItem("", color=TEXT, anchor=(0.5, 0.5), fill=pg.mkBrush(20, 20, 20, 220))
        self.busy.setVisible(False)
        for item in (self.base, self.overlay, self.outline):
            self.view.addItem(item)
        self.view.addItem(self.busy, ignoreBounds=True)
        self.opacity.valueChanged.connect(lambda v: self.overlay.setOpacity(v / 100))
        self.canvas.scene().sigMouseClicked.connect(self._image_clicked)
        self._hover = pg.SignalProxy(
            self.canvas.scene().sigMouseMoved, rateLimit=30, slot=self._image_hovered
        )

        self.strip_title = heading("", "body")
        self.strip_canvas = self._canvas()
        self.strip_view = image_view_box(self.strip_canvas)
        self.strip_image = pg.ImageItem(axisOrder="row-major")
        self.strip_image.setLookupTable(LUT_TILES)
        self.strip_outlines = QGraphicsPathItem()
        self.strip_marker = QGraphicsRectItem()
        for item in (self.strip_image, self.strip_outlines, self.strip_marker):
            self.strip_view.addItem(item)
        self.strip_labels: list[pg.TextItem] = []
        self.strip_canvas.scene().sigMouseClicked.connect(self._strip_clicked)
        self.strip = QWidget()
        sl = QVBoxLayout(self.strip)
        sl.setContentsMargins(0, 0, 0, 0)
        sl.addWidget(self.strip_title)
        sl.addWidget(self.strip_canvas, 1)
        image_page = QWidget()
        il = QHBoxLayout(image_page)
        il.setContentsMargins(0, 0, 0, 0)
        il.addWidget(self.canvas, 3)
        il.addWidget(self.strip, 2)

        # Grid: one mosaic, layers down and heads across, numbered beside the tiles.
        self.grid_canvas = self._canvas()
        self.grid_view = image_view_box(self.grid_canvas)
        self.grid_image = pg.ImageItem(axisOrder="row-major")
        self.grid_image.setLookupTable(LUT_TILES)
        self.grid_marker = QGraphicsRectItem()
        self.grid_view.addItem(self.grid_image)
        self.grid_view.addItem(self.grid_marker)
        self.grid_corner = pg.TextItem("layer ↓  head →", color=THEME.colour("text"), anchor=(1, 1))
        self.grid_view.addItem(self.grid_corner, ignoreBounds=True)
        self.row_labels: list[pg.TextItem] = []
        self.col_labels: list[pg.TextItem] = []
        self.grid_canvas.scene().sigMouseClicked.connect(self._grid_clicked)

        # Distance: one dot per head, the mean of each layer as a line.
        self.distance_plot = pg.PlotWidget(background=THEME.colour("background"))
        self.distance_plot.setFocusPolicy(Qt.NoFocus)
        self.distance_plot.hideButtons()
        self.distance_plot.setMenuEnabled(False)
        self.distance_plot.showGrid(x=False, y=True, alpha=0.25)
        for side in ("bottom", "left"):
            axis = self.distance_plot.getAxis(side)
            axis.setTextPen(TEXT)
            axis.setPen(TEXT)
        self.distance_mean = pg.PlotDataItem()
        self.distance_dots = pg.ScatterPlotItem(brush=DOT_BRUSH, hoverable=False)
        self.distance_mark = pg.ScatterPlotItem(brush=None)
        for item in (self.distance_mean, self.distance_dots, self.distance_mark):
            self.distance_plot.addItem(item)
        self.distance_dots.sigClicked.connect(self._dot_clicked)

        self.message = heading("", "title", bold=False)  # whole sentences, read at a glance
        self.message.setAlignment(Qt.AlignCenter)
        self.pages = QStackedWidget()
        self._page = {}
        for key, page in (
            ("image", image_page),
            ("grid", self.grid_canvas),
            ("distance", self.distance_plot),
            ("message", self.message),
        ):
            self._page[key] = page
            self.pages.addWidget(page)

    # --- items that only draw ------------------------------------------------------
    def _strip_minimum(self) -> None:
        """Every head's thumbnail at least the theme's ``head_min`` pixels a side."""
        m = getattr(self, "_strip", None)
        if m is None:
            return
        side = THEME.pixels("head_min")
        self.strip_canvas.setMinimumSize(round(m.cols * side), round(m.rows * side))

    def _set_strip(self, maps: np.ndarray) -> None:
        heads = len(maps)
        cols = int(np.ceil(np.sqrt(heads)))
        before = None if self._strip is None else self._strip.image.shape
        m = self._strip = tile_mosaic(maps, cols)
        self._strip_minimum()
        self.strip_image.setImage(m.image, levels=(0, 255), autoLevels=False)
        if m.image.shape != before:
            self.strip_view.autoRange(padding=0.02)
        while len(self.strip_labels) < heads:
            label = pg.TextItem("", color=TEXT, anchor=(0, 0), fill=pg.mkBrush(0, 0, 0, 170))
            label.setFont(font("small", bold=True))
            self.strip_view.addItem(label, ignoreBounds=True)
            self.strip_labels.append(label)
        path = QPainterPath()
        patch = self.query_patch()
        for h, label in enumerate(self.strip_labels):
            label.setVisible(h < heads)
            if h >= heads:
                continue
            x, y = m.tile_origin(h)
            label.setText(f"h{h}")
            label.setPos(x, y)
            if patch is not None:
                path.addRect(QRectF(x + patch[1], y + patch[0], 1, 1))
        self.strip_outlines.setPath(path)
        self.strip_marker.setVisible(self._head is not None)
        if self._head is not None:
            x, y = m.tile_origin(self._head)
            self.strip_marker.setRect(QRectF(x, y, m.tile_w, m.tile_h))
        self.strip_title.setText(
            f"Every head of layer {self._layer}, each scaled to its own max; click one to show it"
        )

    def _set_labels(
        self, pool: list[pg.TextItem], labels: list[tuple[str, QPointF]], anchor
    ) -> None:
        while len(pool) < len(labels):
            item = pg.TextItem("", color=THEME.colour("text"), anchor=anchor)
            item.setFont(font("body"))
            self.grid_view.addItem(item, ignoreBounds=True)
            pool.append(item)
        for i, item in enumerate(pool):
            item.setVisible(i < len(labels))
            if i < len(labels):
                item.setText(labels[i][0])
                item.setPos(labels[i][1])

    def _set_distance(self, r) -> None:
        d = np.asarray(r.distance, dtype=np.float32)
        n_layers, heads = d.shape
        spread = 0.3 / max(heads - 1, 1)  # heads side by side, well within their layer
        x = np.repeat(np.arange(n_layers, dtype=np.float32), heads) + np.tile(
            (np.arange(heads) - (heads - 1) / 2) * spread, n_layers
        )
        self.distance_dots.setData(x=x, y=d.reshape(-1), data=np.arange(n_layers * heads))
        self.distance_mean.setData(np.arange(n_layers), d.mean(axis=1))
        every = max(1, int(np.ceil(n_layers / 24)))
        self.distance_plot.getAxis("bottom").setTicks(
            [[(ly, str(ly)) for ly in range(0, n_layers, every)]]
        )
        self.distance_plot.setXRange(-0.6, n_layers - 0.4, padding=0)
        top = float(d.max()) if d.size and d.max() > 0 else 1.0
        self.distance_plot.setYRange(-0.04 * top, 1.08 * top, padding=0)  # whole dots at 0 too

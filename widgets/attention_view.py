"""The Attention dock: where a Vision Transformer's tokens look.

Four modes over one ``vizapp.explain.attention.AttentionResult``:

- **Head**: the class token's attention in one layer and head (or the mean of the
  heads) over the input as the model saw it; beside it the same query in every head
  of the layer. Click a patch to make it the query instead (click it again or press
  Escape for the class token).
- **Grid**: every layer × head map of the class token in one mosaic; click a map to
  open it in Head mode.
- **Rollout**: attention rollout (Abnar & Zuidema 2020), or on request the
  gradient-weighted rollout for a class (Chefer et al. 2021).
- **Distance**: the ViT paper's mean attention distance, one dot per head.

The view only paints: the window runs the attention job and hands the result to
:meth:`AttentionView.set_result`. Everything here is numpy; nothing imports torch (the
result's methods do the engine's numpy work).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QPointF, QRectF, QSignalBlocker, Qt, Signal
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

__all__ = ["AttentionView", "MODES", "FUSIONS", "OWN_QUERY"]

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
#: What the dock says before any model is open (the window adds the models to try).
IDLE_MESSAGE = "No attention yet: open a Vision Transformer and an image"
BACKGROUND = THEME.colour("background")
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


def _upsample(grid: np.ndarray, height: int, width: int, smooth: bool = False) -> np.ndarray:
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


def _mosaic(maps: np.ndarray, cols: int) -> Mosaic:
    n, h, w = maps.shape
    gap = max(1, h // 7)
    image, rows, cols = tile(_encode(maps), cols=cols, gap=gap)
    return Mosaic(image, np.arange(n), rows, cols, h, w, gap)


class AttentionView(QWidget):
    """Attention maps, rollout and attention distance of one ViT forward pass.

    Feed it with :meth:`set_result` (a ``vizapp.explain.attention.AttentionResult``) or
    :meth:`set_message`. Layer, head, mode and query survive a new result where they
    still exist (clamped to a smaller model; the query resets when the tokens change).

    Signals
    -------
    sigGradient(bool)
        The "gradient-weighted" box was toggled: the window re-runs the attention job
        with (or without) gradients; until a result with ``gradient`` arrives the
        rollout page says it is computing.
    """

    sigGradient = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.result = None  # AttentionResult
        self._mode, self._layer, self._head, self._query = "head", 0, None, OWN_QUERY
        self._layout = None  # the TokenLayout the query refers to
        self._map: np.ndarray | None = None  # the grid-resolution map under the overlay
        self._shown = np.zeros((0, 0), np.float32)
        self._rollouts: dict[tuple[str, float], np.ndarray] = {}
        self._grid: Mosaic | None = None
        self._strip: Mosaic | None = None
        self.head_maps = np.zeros((0, 0, 0), np.float32)  # the query's maps in the layer, per head
        self.setFocusPolicy(Qt.StrongFocus)

        self.title = heading("Attention", "title")
        self.banner = QLabel("UNTRAINED: random weights, not learned attention")
        self.banner.setAlignment(Qt.AlignCenter)
        bind_font(self.banner, "title", True, lambda: (
            f"background: {THEME.colour('untrained')}; color: white; font-weight: bold;"
            f" font-size: {THEME.css('title')}; padding: {THEME.px(6):g}px; border-radius: {THEME.px(4):g}px;"
        ))
        self.banner.setVisible(False)
        self._build_controls()
        self._build_pages()
        self.caption = heading("", "subheading", bold=False)
        self.readout = heading("", "body", bold=False)
        self.hint = heading("", "small", bold=False)
        layout = QVBoxLayout(self)
        for w in (self.title, self.banner, self.controls):
            layout.addWidget(w)
        layout.addWidget(self.pages, 1)
        for w in (self.caption, self.readout, self.hint):
            layout.addWidget(w)
        self.set_mode("head")
        self._idle = IDLE_MESSAGE
        self.set_message(self._idle)
        self._apply_theme()
        THEME.changed.connect(self._apply_theme)

    def _apply_theme(self, *_args) -> None:
        """Fonts, pens and marker sizes at the theme's scale (labels re-apply themselves)."""
        self.discard_label.setMinimumWidth(
            self.discard_label.fontMetrics().horizontalAdvance("discard 95%") + round(THEME.px(6))
        )
        self.outline.setPen(_pen(QUERY_COLOUR, "thick"))
        self.strip_outlines.setPen(_pen(QUERY_COLOUR, "line"))
        self.strip_marker.setPen(_pen(QColor("white"), "thick"))
        self.grid_marker.setPen(_pen(QUERY_COLOUR, "thick"))
        self.busy.setFont(font("busy", bold=True))
        self.grid_corner.setFont(font("body", bold=True))
        for label in self.strip_labels:
            label.setFont(font("small", bold=True))
        for item in (*self.row_labels, *self.col_labels):
            item.setFont(font("body"))
        self.distance_plot.setTitle("Mean attention distance of every head", color=TEXT, size=THEME.css("title"))
        for side, label in (("bottom", "layer"), ("left", "mean attention distance (px)")):
            axis = self.distance_plot.getAxis(side)
            axis.setStyle(tickFont=font("body"))
            axis.setLabel(label, color=TEXT, **{"font-size": THEME.css("subheading")})
        self.distance_mean.setPen(pg.mkPen(MEAN_COLOUR, width=THEME.width("thick")))
        self.distance_dots.setPen(pg.mkPen(DOT_COLOUR, width=THEME.width("hair")))
        self.distance_dots.setSize(THEME.marker("point"))
        self.distance_mark.setPen(pg.mkPen(QUERY_COLOUR, width=THEME.width("thick")))
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
        self.layer_box.valueChanged.connect(lambda v: self.select(v, self._head))
        self.head_box = QComboBox()
        self.head_box.addItem("mean of heads")
        self.head_box.currentIndexChanged.connect(
            lambda i: self.select(self._layer, None if i == 0 else i - 1)
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
        canvas.setBackground(BACKGROUND)
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
        self.grid_corner = pg.TextItem("layer ↓  head →", color=TEXT, anchor=(1, 1))
        self.grid_view.addItem(self.grid_corner, ignoreBounds=True)
        self.row_labels: list[pg.TextItem] = []
        self.col_labels: list[pg.TextItem] = []
        self.grid_canvas.scene().sigMouseClicked.connect(self._grid_clicked)

        # Distance: one dot per head, the mean of each layer as a line.
        self.distance_plot = pg.PlotWidget(background=BACKGROUND)
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

    # --- the setters -------------------------------------------------------------
    def set_result(self, result) -> None:
        """Show a ``vizapp.explain.attention.AttentionResult`` in the current mode.

        Keeps the layer, head, mode and query token where the new result has them:
        layer and head are clamped to a smaller model, and the query goes back to the
        class token when the token layout changes.
        """
        self.result = result
        if result.layout != self._layout:
            self._query = OWN_QUERY
        self._layout = result.layout
        self._rollouts.clear()
        self._grid = None
        n_layers, heads = result.attention.shape[:2]
        with QSignalBlocker(self.layer_box), QSignalBlocker(self.head_box):
            self.layer_box.setRange(0, n_layers - 1)
            if self.head_box.count() != heads + 1:
                self.head_box.clear()
                self.head_box.addItems(["mean of heads", *(f"head {h}" for h in range(heads))])
        self._layer = min(self._layer, n_layers - 1)
        self._head = None if self._head is None else min(self._head, heads - 1)
        self.base.setImage(result.display, levels=(0, 255), autoLevels=False)
        self.banner.setVisible(not result.trained)
        label = f"“{result.target_label}”" if result.target_label else "the class picked in Predictions"
        self.gradient.setText(f"Gradient-weighted for {label}")
        gh, gw = result.layout.grid
        self.title.setText(
            f"Attention: {n_layers} layers × {heads} heads, {gh}×{gw} patches of "
            f"{result.layout.patch} px"
        )
        self.title.setToolTip("\n".join(result.notes))
        self._set_distance(result)
        for w in (self.controls, self.caption, self.readout, self.hint):
            w.setVisible(True)
        self.set_mode(self._mode)  # leaves the message page, renders
        self.view.autoRange(padding=0.01)
        self.strip_view.autoRange(padding=0.02)

    def set_message(self, text: str) -> None:
        """Show ``text`` large and centred instead of the maps (e.g. why there is no attention)."""
        self.result = None
        self._map = None
        self._shown = np.zeros((0, 0), np.float32)
        self.message.setText(text)
        self.pages.setCurrentWidget(self.message)
        self.title.setText("Attention")
        self.title.setToolTip("")
        for w in (self.banner, self.controls, self.caption, self.readout, self.hint):
            w.setVisible(False)

    def set_suggestion(self, models: str) -> None:
        """Name the Vision Transformers to open while nothing is shown (``vizapp.explain.suggestions``:
        what loads here first). Replaces the waiting message, never a result or a reason."""
        idle = f"{IDLE_MESSAGE}.\nTry {models}" if models else IDLE_MESSAGE
        showing_idle = self.message_shown() and self.message.text() == self._idle
        self._idle = idle
        if showing_idle:
            self.set_message(idle)

    def set_mode(self, mode: str) -> None:
        """One of :data:`MODES`: ``"head"``, ``"grid"``, ``"rollout"`` or ``"distance"``."""
        if mode not in MODES:
            raise ValueError(f"attention mode must be one of {MODES}, not '{mode}'")
        self._mode = mode
        self.mode_buttons[mode].setChecked(True)
        self.pickers.setVisible(mode != "rollout")
        self.cls_button.setVisible(mode == "head")
        self.rollout_controls.setVisible(mode == "rollout")
        self.opacity_controls.setVisible(mode in ("head", "rollout"))
        self.strip.setVisible(mode == "head")
        self.hint.setText(HINTS[mode])
        if self.result is None:
            return
        page = {"head": "image", "rollout": "image"}.get(mode, mode)
        self.pages.setCurrentWidget(self._page[page])
        self.readout.setText("")
        self._render()

    def select(self, layer: int, head: int | None) -> None:
        """Show ``layer`` and ``head`` (``None``: the mean of the heads), clamped to the model."""
        if self.result is not None:
            n_layers, heads = self.result.attention.shape[:2]
            layer = min(max(0, int(layer)), n_layers - 1)
            head = None if head is None else min(max(0, int(head)), heads - 1)
        self._layer, self._head = max(0, int(layer)), head
        self._render()

    def set_query(self, token: int) -> None:
        """Make ``token`` the query: :data:`OWN_QUERY` for the model's own (its class token,
        or the mean patch query without one), else a token index (patches from
        ``layout.prefix`` on). Token 0 of a model with a class token is its own query."""
        token = int(token)
        if self.result is not None and token != OWN_QUERY:
            if not 0 <= token < self.result.layout.tokens:
                raise ValueError(f"token {token} is outside 0..{self.result.layout.tokens - 1}")
            if token == 0 and self.result.has_class_token:
                token = OWN_QUERY
        self._query = token
        self._render()

    # --- getters -----------------------------------------------------------------
    def gradient_wanted(self) -> bool:
        return self.gradient.isChecked()

    def mode(self) -> str:
        return self._mode

    def layer(self) -> int:
        return self._layer

    def head(self) -> int | None:
        """The head shown, or ``None`` for the mean of the heads."""
        return self._head

    def query_token(self) -> int:
        """The query token, or :data:`OWN_QUERY` for the class token / mean patch query."""
        return self._query

    def query_patch(self) -> tuple[int, int] | None:
        """``(row, col)`` of the query patch, or ``None`` for a prefix token."""
        lay = self.result.layout if self.result is not None else None
        if lay is None or self._query < lay.prefix:
            return None
        return divmod(self._query - lay.prefix, lay.grid[1])

    def message_shown(self) -> bool:
        return self.pages.currentWidget() is self.message

    def displayed_image(self) -> np.ndarray:
        """What the mode's main image shows: the overlay (H x W float, head and rollout
        modes), the grid mosaic (uint8 codes for :data:`LUT_TILES`), or an empty array."""
        return self._shown

    # --- rendering ---------------------------------------------------------------
    def _sync_pickers(self) -> None:
        with QSignalBlocker(self.layer_box), QSignalBlocker(self.head_box):
            self.layer_box.setValue(self._layer)
            self.head_box.setCurrentIndex(0 if self._head is None else self._head + 1)
        if self.result is not None:
            self.layer_box.setToolTip(self.result.layers[self._layer])
        self.cls_button.setEnabled(self._query != OWN_QUERY)

    def _head_name(self) -> str:
        return f"mean of {self.result.heads} heads" if self._head is None else f"head {self._head}"

    def _query_name(self) -> str:
        patch = self.query_patch()
        if patch is not None:
            return f"patch (row {patch[0]}, col {patch[1]})"
        if self._query == OWN_QUERY:
            return "the class token" if self.result.has_class_token else "the mean patch query (no class token)"
        return f"prefix token {self._query}"

    def _render(self) -> None:
        self._sync_pickers()
        if self.result is None or self.message_shown():
            return
        self.busy.setVisible(False)
        {
            "head": self._render_head,
            "grid": self._render_grid,
            "rollout": self._render_rollout,
            "distance": self._render_distance,
        }[self._mode]()

    def _show_map(self, grid_map: np.ndarray) -> None:
        self._map = np.asarray(grid_map, dtype=np.float32)
        h, w = self.result.display.shape[:2]
        self._shown = _upsample(self._map, h, w, self.smooth.isChecked())
        top = float(self._shown.max())
        self.overlay.setImage(self._shown, levels=(0.0, top if top > 0 else 1.0), autoLevels=False)

    def _patch_rect(self, row: int, col: int) -> QRectF:
        h, w = self.result.display.shape[:2]
        gh, gw = self.result.layout.grid
        return QRectF(col * w / gw, row * h / gh, w / gw, h / gh)

    def _render_head(self) -> None:
        r, layer = self.result, self._layer
        # The own query is the class token; a ViT without one is read by its mean patch query.
        own = self._query == OWN_QUERY
        maps = np.asarray(r.cls_maps(layer) if own else r.token_maps(self._query)[layer], dtype=np.float32)
        self.head_maps = maps
        shown = maps.mean(axis=0) if self._head is None else maps[self._head]
        self._show_map(shown)
        patch = self.query_patch()
        self.outline.setVisible(patch is not None)
        if patch is not None:
            self.outline.setRect(self._patch_rect(*patch))
        prefix = (
            "the class token" if r.layout.prefix == 1 and r.has_class_token
            else f"the {r.layout.prefix} prefix tokens"
        )
        rest = f"{100 * max(0.0, 1.0 - float(shown.sum())):.0f}% of its attention goes to {prefix}"
        self.caption.setText(
            f"Layer {layer}, {self._head_name()}: where {self._query_name()} looks ({rest})"
        )
        self._set_strip(maps)

    def _set_strip(self, maps: np.ndarray) -> None:
        heads = len(maps)
        cols = int(np.ceil(np.sqrt(heads)))
        before = None if self._strip is None else self._strip.image.shape
        m = self._strip = _mosaic(maps, cols)
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

    def _render_grid(self) -> None:
        r = self.result
        if self._grid is None:
            cls = np.asarray(r.cls_maps(), dtype=np.float32)
            n_layers, heads, gh, gw = cls.shape
            m = self._grid = _mosaic(cls.reshape(n_layers * heads, gh, gw), heads)
            self.grid_image.setImage(m.image, levels=(0, 255), autoLevels=False)
            every = max(1, int(np.ceil(max(n_layers, heads) / 24)))  # a number per tile up to 24
            rows = [
                (str(ly), QPointF(-m.gap, m.tile_origin(ly * heads)[1] + m.tile_h / 2))
                for ly in range(0, n_layers, every)
            ]
            cols = [
                (str(h), QPointF(m.tile_origin(h)[0] + m.tile_w / 2, -m.gap))
                for h in range(0, heads, every)
            ]
            self._set_labels(self.row_labels, rows, (1, 0.5))
            self._set_labels(self.col_labels, cols, (0.5, 1))
            self.grid_corner.setPos(-m.gap, -m.gap - m.tile_h * 0.6)
            margin = 2.2 * (m.tile_h + m.gap)  # room for the numbers and the corner title
            self.grid_view.setRange(
                xRange=(-margin, m.image.shape[1]), yRange=(-margin, m.image.shape[0]), padding=0.01
            )
        m = self._grid
        self._shown = m.image
        heads = self.result.heads
        if self._head is None:  # the whole layer
            x, y = m.tile_origin(self._layer * heads)
            rect = QRectF(x, y, m.cols * (m.tile_w + m.gap) - m.gap, m.tile_h)
        else:
            x, y = m.tile_origin(self._layer * heads + self._head)
            rect = QRectF(x, y, m.tile_w, m.tile_h)
        self.grid_marker.setRect(rect.adjusted(-0.5, -0.5, 0.5, 0.5))
        self.caption.setText(
            f"Where {'the class token' if r.has_class_token else 'the mean patch query'} looks in every "
            "layer (down) and head (across), each map "
            "scaled to its own max. Click a map to open it."
        )

    def _set_labels(
        self, pool: list[pg.TextItem], labels: list[tuple[str, QPointF]], anchor
    ) -> None:
        while len(pool) < len(labels):
            item = pg.TextItem("", color=TEXT, anchor=anchor)
            item.setFont(font("body"))
            self.grid_view.addItem(item, ignoreBounds=True)
            pool.append(item)
        for i, item in enumerate(pool):
            item.setVisible(i < len(labels))
            if i < len(labels):
                item.setText(labels[i][0])
                item.setPos(labels[i][1])

    def _render_rollout(self) -> None:
        r = self.result
        self.outline.setVisible(False)
        if self.gradient.isChecked():
            label = r.target_label or "the top class"
            grad = r.gradient_map()
            if grad is None:
                self._map = None
                self._shown = np.zeros((0, 0), np.float32)
                self.overlay.clear()
                h, w = r.display.shape[:2]
                self.busy.setText("computing…")
                self.busy.setPos(w / 2, h / 2)
                self.busy.setVisible(True)
                self.caption.setText(f"Computing the gradient-weighted rollout for “{label}”…")
                return
            self._show_map(grad)
            self.caption.setText(
                f"Gradient-weighted rollout for “{label}” (Chefer et al. 2021): the patches "
                "whose attention raises that class score"
            )
            return
        fusion, discard = self.fusion.currentData(), self.discard.value() / 100
        key = (fusion, discard)
        if key not in self._rollouts:
            self._rollouts[key] = np.asarray(r.rollout(fusion, discard), dtype=np.float32)
        self._show_map(self._rollouts[key])
        dropped = f", weakest {self.discard.value()}% dropped" if discard else ""
        self.caption.setText(
            f"Attention rollout through all {r.attention.shape[0]} layers "
            f"({FUSION_NAMES[fusion].lower()}{dropped}): where the "
            f"{'class token' if r.has_class_token else 'mean patch'}'s information comes from"
        )

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

    def _render_distance(self) -> None:
        d = self.result.distance
        self._shown = np.zeros((0, 0), np.float32)
        if self._head is None:
            self.distance_mark.setData(x=[self._layer], y=[float(d[self._layer].mean())])
        else:
            x, y = self.distance_dots.getData()
            i = self._layer * d.shape[1] + self._head
            self.distance_mark.setData(x=[x[i]], y=[y[i]])
        self.caption.setText(
            "Each dot is one head; the line is the mean over heads. Distance between patch "
            "centres weighted by attention, averaged over query patches (ViT paper, Fig. 7). "
            "Click a dot to open that head."
        )

    # --- interaction -------------------------------------------------------------
    def _discard_changed(self, value: int) -> None:
        self.discard_label.setText(f"discard {value}%")
        if self._mode == "rollout":
            self._render()

    def _gradient_toggled(self, on: bool) -> None:
        self.fusion.setEnabled(not on)  # the gradient-weighted rollout has no fusion or discard
        self.discard.setEnabled(not on)
        self.sigGradient.emit(on)
        if self._mode == "rollout":
            self._render()

    def _patch_at(self, scene_pos) -> tuple[int, int] | None:
        r = self.result
        if r is None or not self.view.sceneBoundingRect().contains(scene_pos):
            return None
        p = self.view.mapSceneToView(scene_pos)
        h, w = r.display.shape[:2]
        if not (0 <= p.x() < w and 0 <= p.y() < h):
            return None
        gh, gw = r.layout.grid
        return int(p.y() * gh / h), int(p.x() * gw / w)

    def _image_clicked(self, event) -> None:
        if event.button() != Qt.LeftButton or self._mode != "head":
            return
        patch = self._patch_at(event.scenePos())
        if patch is None:
            return
        self.setFocus()
        token = self.result.patch_token(*patch)
        self.set_query(OWN_QUERY if token == self._query else token)

    def _image_hovered(self, args) -> None:
        patch = self._patch_at(args[0])
        if patch is None or self._map is None or self._mode not in ("head", "rollout"):
            return
        value = float(self._map[patch])
        what = (
            f"{100 * value:.1f}% of the attention"
            if self._mode == "head"
            else f"rollout {value:.4f}"
        )
        self.readout.setText(f"patch (row {patch[0]}, col {patch[1]}): {what}")

    def _strip_clicked(self, event) -> None:
        if event.button() != Qt.LeftButton or self._strip is None or self.result is None:
            return
        p = self.strip_view.mapSceneToView(event.scenePos())
        slot = self._strip.slot_at(p.x(), p.y())
        if slot is not None:
            self.setFocus()
            self.select(self._layer, slot)

    def _grid_clicked(self, event) -> None:
        if event.button() != Qt.LeftButton or self._grid is None or self.result is None:
            return
        p = self.grid_view.mapSceneToView(event.scenePos())
        slot = self._grid.slot_at(p.x(), p.y())
        if slot is not None:
            self.setFocus()
            self._layer, self._head = divmod(slot, self.result.heads)
            self.set_mode("head")

    def _dot_clicked(self, _item, points, _event) -> None:
        if len(points):
            self._layer, self._head = divmod(int(points[0].data()), self.result.heads)
            self.setFocus()
            self.set_mode("head")

    def step_layer(self, delta: int) -> None:
        self.select(self._layer + delta, self._head)

    def step_head(self, delta: int) -> None:
        """Step through mean, head 0, head 1, …, clamped at both ends."""
        if self.result is None:
            return
        slot = min(
            max(-1, (-1 if self._head is None else self._head) + delta), self.result.heads - 1
        )
        self.select(self._layer, None if slot < 0 else slot)

    def event(self, event) -> bool:  # Qt override
        # With a patch as the query, Escape is ours (back to the class token), not the
        # window's cancel shortcut.
        if event.type() == QEvent.ShortcutOverride and event.key() == Qt.Key_Escape and self._query != OWN_QUERY:
            event.accept()
            return True
        return super().event(event)

    def keyPressEvent(self, event) -> None:  # noqa: N802 - Qt override
        key = event.key()
        if key in (Qt.Key_Up, Qt.Key_Down):
            self.step_layer(1 if key == Qt.Key_Down else -1)
        elif key in (Qt.Key_Left, Qt.Key_Right):
            self.step_head(1 if key == Qt.Key_Right else -1)
        elif key == Qt.Key_Escape and self._query != OWN_QUERY:
            self.set_query(OWN_QUERY)
        else:
            super().keyPressEvent(event)

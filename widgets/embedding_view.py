"""The Embedding dock: an image collection as a 2-D scatter, coloured by label or prediction.

Hover a point to see which image it is (the collection controller supplies a thumbnail
through ``set_thumbnail``), click it to open the image and ask for its nearest neighbours, or
turn on *Select* and drag a rectangle to count the labels inside.

Drawn for 100k points: one ``ScatterPlotItem`` per colour group, each with a single
shared brush and no outline (pyqtgraph then blits every point from one cached symbol),
and hit-testing through a k-d tree built once per embedding rather than per-point items.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
from pyqtgraph.graphicsItems.LegendItem import ItemSample
from PySide6.QtCore import QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPen
from PySide6.QtWidgets import (
    QComboBox,
    QGraphicsRectItem,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QToolButton,
    QVBoxLayout,
    QWidget,
)
from scipy.spatial import cKDTree

from vizapp.collection.embedding import Embedding, subset_stats
from vizapp.collection.projection import METHOD_NAMES
from widgets.common import heading, to_pixmap
from widgets.theme import THEME

__all__ = ["EmbeddingView", "PALETTE"]

#: A qualitative palette (Tableau 20, strong colours first, its two greys swapped for cyan and
#: olive so that only "other" is grey), readable on a dark ground.
PALETTE = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#17becf", "#a0cbe8", "#ffbe7d", "#ff9d9a", "#86bcb6", "#8cd17d", "#f1ce63",
    "#d4a6c8", "#fabfd2", "#d7b5a6", "#bcbd22",
]
OTHER_COLOUR = "#6e6e6e"
OTHER = "other"
NO_LABEL = "(no label)"
HIT_PX = 6  # how near (screen pixels) the mouse must be to a point
THUMB_PX = 128
COLOUR_BY = [("label", "Label"), ("predicted", "Predicted class")]


def _point_size(n: int) -> float:
    return THEME.marker("few" if n <= 2_000 else "some" if n <= 20_000 else "many")


class _SelectBox(pg.ViewBox):
    """A ViewBox whose left-drag draws a selection rectangle while ``selecting`` is on."""

    sigRectDrawn = Signal(object)  # QRectF in data coordinates

    def __init__(self) -> None:
        super().__init__()
        self.selecting = False

    def mouseDragEvent(self, ev, axis=None) -> None:  # noqa: N802 - pyqtgraph override
        if not self.selecting or ev.button() != Qt.LeftButton:
            super().mouseDragEvent(ev, axis)
            return
        ev.accept()
        if ev.isFinish():
            self.rbScaleBox.hide()
            rect = QRectF(self.mapToView(ev.buttonDownPos()), self.mapToView(ev.pos())).normalized()
            self.sigRectDrawn.emit(rect)
        else:
            self.updateScaleBox(ev.buttonDownPos(), ev.pos())


class _Swatch(ItemSample):
    """A legend sample drawn as a large dot, whatever the size of the plotted points."""

    def paint(self, p, *args) -> None:
        if not self.item.isVisible():
            super().paint(p, *args)  # pyqtgraph's crossed-out eye
            return
        p.setRenderHint(p.RenderHint.Antialiasing)
        p.setPen(Qt.NoPen)
        p.setBrush(self.item.opts["brush"])
        p.drawEllipse(QRectF(3, 3, 14, 14))


#: The rings: the theme's colour, marker size and line width roles.
RINGS = {
    "hover_ring": ("hover", "point", "thin"),
    "clicked_ring": ("accent", "ring_big", "medium"),
    "neighbour_rings": ("neighbour", "ring", "line"),
}


def _ring() -> pg.ScatterPlotItem:
    item = pg.ScatterPlotItem(brush=None, pxMode=True)
    item.setZValue(10)
    return item


class EmbeddingView(QWidget):
    """Scatter of an :class:`~vizapp.collection.embedding.Embedding` with hover, neighbours and selection.

    Signals
    -------
    sigThumbnailRequested(index)
        The point under the mouse changed: its thumbnail is wanted (answered with
        :meth:`set_thumbnail`).
    sigImageRequested(path)
        A point or a neighbour thumbnail was clicked: open its image.
    sigNeighboursRequested(index)
        A point was clicked: its nearest neighbours are wanted (answered with
        :meth:`set_neighbours`).
    sigSelectionChanged(indices)
        The rectangle selection changed (an int64 array, sorted).
    sigMethodChanged(method)
        The user chose another layout method (``"pca"``, ``"tsne"``, ``"umap"``).
    """

    sigThumbnailRequested = Signal(int)
    sigImageRequested = Signal(str)
    sigNeighboursRequested = Signal(int)
    sigSelectionChanged = Signal(object)
    sigMethodChanged = Signal(str)

    def __init__(self, session=None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session  # nothing of it to follow: the collection controller feeds the embedding
        self.embedding: Embedding | None = None
        self.items: list[pg.ScatterPlotItem] = []  # one per colour group, reused between embeddings
        self.group_names: list[str] = []
        self.group_indices: list[np.ndarray] = []
        self.neighbour_buttons: list[QToolButton] = []
        self._group_of = np.zeros(0, dtype=np.int32)
        self._tree: cKDTree | None = None
        self._hovered = -1
        self._clicked_index = -1
        self._selected = np.zeros(0, dtype=np.int64)

        self.title = heading("Embedding: nothing computed yet", "body")
        self.colour_by = QComboBox()
        for key, text in COLOUR_BY:
            self.colour_by.addItem(text, key)
        self.colour_by.currentIndexChanged.connect(self._regroup)
        self.method = QComboBox()
        for key, text in (("pca", "PCA"), ("tsne", "t-SNE"), ("umap", "UMAP")):
            self.method.addItem(text, key)
        self.method.setToolTip("How the features are laid out in 2-D (t-SNE and UMAP take seconds to minutes)")
        self.method.activated.connect(lambda _i: self.sigMethodChanged.emit(self.current_method()))
        self.select_button = QPushButton("Select")
        self.select_button.setCheckable(True)
        self.select_button.setToolTip("Drag a rectangle to select points and count their labels")
        self.select_button.toggled.connect(self._select_mode)

        self.box = _SelectBox()
        self.box.setAspectLocked(True)  # so data distances are screen distances for hit-testing
        self.box.setMenuEnabled(False)
        self.box.sigRectDrawn.connect(self.set_selection)
        self.plot = pg.PlotWidget(viewBox=self.box)
        self.plot.setBackground(THEME.colour("background"))
        self.plot.hideAxis("left")
        self.plot.hideButtons()
        self.plot.hideAxis("bottom")
        self.legend = pg.LegendItem(offset=(10, 10), labelTextSize=THEME.css("body"), labelTextColor=THEME.colour("text"),
                                    brush=pg.mkBrush(20, 20, 20, 200), sampleType=_Swatch)
        self.legend.setParentItem(self.box)
        self.hover_ring, self.clicked_ring, self.neighbour_rings = _ring(), _ring(), _ring()
        self._style_rings()
        self.selection_box = QGraphicsRectItem()
        pen = QPen(QColor(THEME.colour("accent")), THEME.width("cosmetic"), Qt.DashLine)
        self.selection_box.setPen(pen)
        self.selection_box.setVisible(False)
        for item in (self.hover_ring, self.clicked_ring, self.neighbour_rings, self.selection_box):
            self.box.addItem(item, ignoreBounds=True)
        scene = self.plot.scene()
        scene.sigMouseClicked.connect(self._clicked)
        self._hover_proxy = pg.SignalProxy(scene.sigMouseMoved, rateLimit=60, slot=self._mouse_moved)

        self.thumb = QLabel()
        self.thumb.setAlignment(Qt.AlignCenter)
        self.thumb.setStyleSheet(f"background: {THEME.colour('background')};")
        self.info = QLabel("Hover a point to see its image; click it for its neighbours")
        self.info.setWordWrap(True)
        self.selection_label = QLabel("")
        self.selection_label.setWordWrap(True)
        side = QVBoxLayout()
        side.addWidget(self.thumb)
        side.addWidget(self.info)
        side.addWidget(self.selection_label)
        side.addStretch(1)
        side_box = self.side_box = QWidget()
        side_box.setLayout(side)

        self.neighbours_title = QLabel("")
        self.strip = QWidget()
        self.strip_layout = QHBoxLayout(self.strip)
        self.strip_layout.setContentsMargins(0, 0, 0, 0)
        self.strip_layout.addStretch(1)
        self.strip_scroll = QScrollArea()
        self.strip_scroll.setWidget(self.strip)
        self.strip_scroll.setWidgetResizable(True)
        self.strip_scroll.setVisible(False)

        controls = QHBoxLayout()
        controls.addWidget(QLabel("Layout"))
        controls.addWidget(self.method)
        controls.addWidget(QLabel("Colour by"))
        controls.addWidget(self.colour_by)
        controls.addWidget(self.select_button)
        controls.addStretch(1)
        middle = QHBoxLayout()
        middle.addWidget(self.plot, 1)
        middle.addWidget(side_box)
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addLayout(controls)
        layout.addLayout(middle, 1)
        layout.addWidget(self.neighbours_title)
        layout.addWidget(self.strip_scroll)
        self._sizes()
        THEME.changed.connect(self._apply_theme)

    # --- the setter --------------------------------------------------------------
    def set_embedding(self, embedding: Embedding | None, title: str = "") -> None:
        """Show ``embedding`` (``None`` clears the view).

        ``title`` adds what the features are, e.g. ``"efficientnet_lite0 / conv_head"``,
        to the heading line. Clears the hover, the clicked point, the neighbours and the
        selection; keeps the colour-by choice where the embedding has that field.
        """
        self.embedding = embedding
        self._hovered = self._clicked_index = -1
        self._selected = np.zeros(0, dtype=np.int64)
        for ring in (self.hover_ring, self.clicked_ring, self.neighbour_rings):
            ring.clear()
        self.selection_box.setVisible(False)
        self.selection_label.setText("")
        self.thumb.clear()
        self._set_strip(None, [], [], [], [])
        has_predicted = embedding is not None and embedding.predicted is not None
        self.colour_by.model().item(1).setEnabled(has_predicted)
        if not has_predicted and self.colour_by.currentIndex() == 1:
            self.colour_by.blockSignals(True)
            self.colour_by.setCurrentIndex(0)
            self.colour_by.blockSignals(False)
        if embedding is None:
            self._tree = None
            self.title.setText("Embedding: nothing computed yet")
            self._regroup()
            return
        n = len(embedding)
        self._tree = cKDTree(embedding.coords)
        parts = [f"Embedding: {n:,} images", METHOD_NAMES.get(embedding.method, embedding.method)]
        self.title.setText(", ".join(p for p in [*parts, title] if p))
        self.info.setText("Hover a point to see its image; click it for its neighbours")
        self._regroup()
        (x0, y0), (x1, y1) = embedding.coords.min(axis=0).tolist(), embedding.coords.max(axis=0).tolist()
        self.box.setRange(xRange=(x0, x1), yRange=(y0, y1), padding=0.05)

    def _sizes(self) -> None:
        """The hovered point's thumbnail, the side column and the neighbours' strip (``thumb``)."""
        big = round(THEME.px(THUMB_PX))
        self.thumb.setFixedSize(big, big)
        self.side_box.setFixedWidth(big + round(THEME.px(72)))
        icon = round(THEME.pixels("thumb"))
        for button in self.neighbour_buttons:
            button.setIconSize(QSize(icon, icon))
        lines = 2 * self.strip_scroll.fontMetrics().lineSpacing()
        self.strip_scroll.setFixedHeight(icon + lines + round(THEME.px(16)))

    def _style_rings(self) -> None:
        for name, (colour, size, width) in RINGS.items():
            ring = getattr(self, name)
            ring.setPen(pg.mkPen(THEME.colour(colour), width=THEME.width(width)))
            ring.setSize(THEME.marker(size))

    def _apply_theme(self, *_args) -> None:
        """Rings, points, the legend's text and the thumbnails at the theme's scale."""
        self._sizes()
        self._style_rings()
        self.legend.opts["labelTextSize"] = THEME.css("body")
        self._regroup()

    # --- colour groups -----------------------------------------------------------
    def current_method(self) -> str:
        return self.method.currentData()

    def current_colour_by(self) -> str:
        return self.colour_by.currentData()

    def _values(self) -> list[str]:
        e = self.embedding
        if e is None:
            return []
        return e.predicted if self.current_colour_by() == "predicted" and e.predicted is not None else e.labels

    def _regroup(self, _index: int = 0) -> None:
        """One scatter item per colour group: the 20 commonest values, the rest grey."""
        values = self._values()
        self.legend.clear()
        if not values:
            names, groups = [], []
            self._group_of = np.zeros(0, dtype=np.int32)
        else:
            uniq, inverse, counts = np.unique(np.asarray(values), return_inverse=True, return_counts=True)
            inverse = inverse.ravel()
            if len(uniq) <= len(PALETTE):
                keep = np.arange(len(uniq))
            else:  # commonest first, ties by name; the others go grey
                keep = np.sort(np.lexsort((uniq, -counts))[: len(PALETTE) - 1])
            slot = np.full(len(uniq), len(keep), dtype=np.int32)
            slot[keep] = np.arange(len(keep))
            group_of = slot[inverse]
            order = np.argsort(group_of, kind="stable")
            bounds = np.searchsorted(group_of[order], np.arange(len(keep) + 2))
            groups = [order[bounds[g]:bounds[g + 1]] for g in range(len(keep) + 1)]
            names = [str(u) or NO_LABEL for u in uniq[keep]] + [OTHER]
            if not len(groups[-1]):
                names, groups = names[:-1], groups[:-1]
            self._group_of = group_of
        while len(self.items) < len(groups):
            item = pg.ScatterPlotItem(pxMode=True, hoverable=False)
            self.box.addItem(item)
            self.items.append(item)
        for extra in self.items[len(groups):]:
            self.box.removeItem(extra)
        self.items = self.items[: len(groups)]
        self.group_names, self.group_indices = names, groups
        coords = self.embedding.coords if self.embedding is not None else np.zeros((0, 2), np.float32)
        size = _point_size(len(coords))
        for g, (item, name, idx) in enumerate(zip(self.items, names, groups, strict=True)):
            colour = QColor(OTHER_COLOUR if name == OTHER else PALETTE[g])
            colour.setAlpha(220)
            item.setData(x=coords[idx, 0], y=coords[idx, 1], size=size, symbol="o",
                         pen=None, brush=pg.mkBrush(colour))
            item.setZValue(-1 if name == OTHER else 0)
            item.setVisible(True)
            self.legend.addItem(item, f"{name}  ({len(idx):,})")
        if len(self._selected):
            self._show_selection_stats()

    # --- hover and click ---------------------------------------------------------
    def point_at(self, x: float, y: float, radius_px: float = HIT_PX) -> int | None:
        """The index of the visible point nearest ``(x, y)`` (data coordinates) within ``radius_px``."""
        if self._tree is None:
            return None
        radius = radius_px * max(self.box.viewPixelSize())
        k = min(16, len(self.embedding))
        dist, idx = self._tree.query([x, y], k=k, distance_upper_bound=radius)
        for d, i in zip(np.atleast_1d(dist), np.atleast_1d(idx), strict=True):
            if not np.isfinite(d):
                break
            if self.items[self._group_of[i]].isVisible():
                return int(i)
        return None

    def _scene_point(self, scene_pos) -> int | None:
        if not self.box.sceneBoundingRect().contains(scene_pos):
            return None
        if self.legend.isVisible() and self.legend.sceneBoundingRect().contains(scene_pos):
            return None
        p = self.box.mapSceneToView(scene_pos)
        return self.point_at(p.x(), p.y())

    def _mouse_moved(self, args) -> None:
        i = self._scene_point(args[0])
        if i is None:
            if self._hovered >= 0:
                self._hovered = -1
                self.hover_ring.clear()
            return
        if i == self._hovered:
            return
        self._hovered = i
        e = self.embedding
        self.hover_ring.setData(pos=e.coords[i:i + 1])
        text = f"#{i}  {e.labels[i] or NO_LABEL}"
        if e.predicted is not None:
            text += f"\npredicted: {e.predicted[i]}"
        self.info.setText(f"{text}\n{Path(e.paths[i]).name}")
        self.info.setToolTip(e.paths[i])
        self.sigThumbnailRequested.emit(i)

    def set_thumbnail(self, index: int, pixels: np.ndarray) -> None:
        """Show ``pixels`` (H x W x 3 uint8) for point ``index`` if the mouse is still on it."""
        if index != self._hovered:
            return
        side = round(THEME.px(THUMB_PX))
        pix = to_pixmap(pixels).scaled(side, side, Qt.KeepAspectRatio, Qt.SmoothTransformation)
        self.thumb.setPixmap(pix)

    def _clicked(self, event) -> None:
        if self.embedding is None or event.button() != Qt.LeftButton:
            return
        i = self._scene_point(event.scenePos())
        if i is None:
            return
        self._clicked_index = i
        self.clicked_ring.setData(pos=self.embedding.coords[i:i + 1])
        self.sigImageRequested.emit(self.embedding.paths[i])
        self.sigNeighboursRequested.emit(i)

    def clicked_index(self) -> int:
        """The last clicked point, or -1."""
        return self._clicked_index

    # --- neighbours --------------------------------------------------------------
    def set_neighbours(self, index: int, indices, similarities, thumbnails: list[np.ndarray]) -> None:
        """Show the nearest neighbours of point ``index`` in a strip below the plot.

        ``indices`` / ``similarities`` come from :func:`vizapp.collection.embedding.nearest`;
        ``thumbnails`` (H x W x 3 uint8, one per neighbour, may be shorter or hold
        ``None``) are shown with the cosine similarity under each. Clicking one emits
        ``sigImageRequested``. The neighbours are ringed in the scatter.
        """
        e = self.embedding
        if e is None:
            return
        indices = np.asarray(indices, dtype=np.int64)
        self.neighbour_rings.setData(pos=e.coords[indices])
        self._set_strip(index, indices, np.asarray(similarities, dtype=float), list(thumbnails), e.paths)

    def _set_strip(self, index, indices, sims, thumbs, paths) -> None:
        for button in self.neighbour_buttons:
            self.strip_layout.removeWidget(button)
            button.deleteLater()
        self.neighbour_buttons = []
        if index is None:
            self.neighbours_title.setText("")
            self.strip_scroll.setVisible(False)
            return
        e = self.embedding
        self.neighbours_title.setText(f"Nearest neighbours of #{index} ({e.labels[index] or NO_LABEL}), "
                                      "cosine similarity of the features:")
        for j, (i, s) in enumerate(zip(indices, sims, strict=True)):
            button = QToolButton()
            button.setToolButtonStyle(Qt.ToolButtonTextUnderIcon)
            button.setText(f"{s:.3f}\n{e.labels[i] or NO_LABEL}")
            button.setToolTip(paths[i])
            button.setAutoRaise(True)
            if j < len(thumbs) and thumbs[j] is not None:
                button.setIcon(QIcon(to_pixmap(thumbs[j])))
                button.setIconSize(QSize(round(THEME.pixels("thumb")), round(THEME.pixels("thumb"))))
            button.clicked.connect(lambda _=False, p=paths[i]: self.sigImageRequested.emit(p))
            self.strip_layout.insertWidget(j, button)
            self.neighbour_buttons.append(button)
        self.strip_scroll.setVisible(True)

    # --- selection ---------------------------------------------------------------
    def _select_mode(self, on: bool) -> None:
        self.box.selecting = on
        self.plot.setCursor(Qt.CrossCursor if on else Qt.ArrowCursor)

    def set_selection(self, rect: QRectF) -> np.ndarray:
        """Select the visible points inside ``rect`` (data coordinates, edges included)."""
        rect = rect.normalized()
        self.selection_box.setRect(rect)
        self.selection_box.setVisible(self.embedding is not None and rect.width() * rect.height() > 0)
        if self.embedding is None:
            return self._selected
        xy = self.embedding.coords
        inside = ((xy[:, 0] >= rect.left()) & (xy[:, 0] <= rect.right())
                  & (xy[:, 1] >= rect.top()) & (xy[:, 1] <= rect.bottom()))
        visible = np.array([item.isVisible() for item in self.items], dtype=bool)
        inside &= visible[self._group_of] if len(visible) else False
        self._selected = np.flatnonzero(inside).astype(np.int64)
        self._show_selection_stats()
        self.sigSelectionChanged.emit(self._selected)
        return self._selected

    def selected(self) -> np.ndarray:
        """The indices of the selected points (sorted int64; empty when nothing is selected)."""
        return self._selected

    def _show_selection_stats(self) -> None:
        if not len(self._selected):
            self.selection_label.setText("")
            return
        counts = subset_stats(self._values(), self._selected)
        shown = [f"{name or NO_LABEL} {c:,}" for name, c in list(counts.items())[:8]]
        more = ", …" if len(counts) > 8 else ""
        self.selection_label.setText(f"{len(self._selected):,} selected: " + ", ".join(shown) + more)

    # --- scenes (widgets/controllers/lecture.py) ---------------------------------
    def view_options(self) -> dict:
        """The projection method and the colouring, for a scene."""
        return {"method": self.current_method(), "colour_by": self.current_colour_by()}

    def set_view_options(self, options: dict) -> None:
        """Apply :meth:`view_options`' keys (a new method asks for the projection again)."""
        from widgets.options import set_combo

        set_combo(self.colour_by, options.get("colour_by"))
        if set_combo(self.method, options.get("method")):
            self.sigMethodChanged.emit(self.current_method())

"""The Top patches dock: the image patches that drive a channel hardest (Zeiler & Fergus).

Left, the selected channel's top-k patches from an indexed collection as large
thumbnails with their activation and file name (click one to open that image).
Right, the layer overview: every channel's best patch in one mosaic (click a tile to
select the channel; left/right step channels). With a projection on ("Projection:
deconvnet / guided backprop"), each top patch's unit projected back to the pixels
(``vizapp.explain.projection``) stands in a grid left of the patches, slot for slot, as in
Zeiler & Fergus's Fig. 2. The view only paints
``vizapp.collection.patches.PatchGrid`` / ``LayerOverview`` records; the collection controller
(``widgets/controllers/collection.py``) runs the jobs.
"""

from __future__ import annotations

import math
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QColor, QPen
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from widgets.common import heading, image_view_box, to_pixmap
from widgets.theme import THEME

__all__ = ["TopPatchesView"]

HINT = "Click a patch to open its image · click a tile to pick a channel · ←/→ channel"
#: The projection choices: (shown, key); the keys are ``vizapp.explain.projection.METHODS`` and "none".
PROJECTIONS = (("none", "none"), ("deconvnet", "deconvnet"), ("guided backprop", "guided"))
#: A projection and its patch smaller than this (image pixels) are enlarged by a whole factor,
#: nearest neighbour, before Qt scales them: each model-input pixel stays a sharp square in both.
ENLARGE_TO = 128


def _enlarged(pixels):
    """``pixels`` repeated ``ceil(ENLARGE_TO / longer side)`` times along both axes."""
    import numpy as np

    f = max(1, math.ceil(ENLARGE_TO / max(1, *pixels.shape[:2])))
    return np.repeat(np.repeat(pixels, f, axis=0), f, axis=1) if f > 1 else pixels


def _name(patch) -> str:
    return Path(patch.image).name


class _Thumb(QFrame):
    """One patch: a picture scaled to fit (aspect kept) over its value and file name."""

    clicked = Signal()

    def __init__(self) -> None:
        super().__init__()
        self._pixmap = None
        self.setCursor(Qt.PointingHandCursor)
        self.picture = QLabel()
        self.picture.setAlignment(Qt.AlignHCenter | Qt.AlignBottom)  # caption right under it
        self._apply_theme()
        THEME.changed.connect(self._apply_theme)
        self.picture.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self.value = heading("", "subheading")
        self.value.setAlignment(Qt.AlignCenter)
        self.caption = heading("", "small", bold=False)
        self.caption.setAlignment(Qt.AlignCenter)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(2)
        layout.addWidget(self.picture, 1)
        layout.addWidget(self.value)
        layout.addWidget(self.caption)

    def _apply_theme(self, *_args) -> None:
        side = round(THEME.pixels("tile_min"))
        self.picture.setMinimumSize(side, side)

    def set_patch(self, pixels, value: str, caption: str, tooltip: str) -> None:
        self._pixmap = to_pixmap(pixels)
        self.value.setText(value)
        self.caption.setText(caption)
        self.setToolTip(tooltip)
        self._rescale()

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._rescale()

    def _rescale(self) -> None:
        if self._pixmap is not None:
            side = max(1, min(self.picture.width(), self.picture.height()))
            self.picture.setPixmap(self._pixmap.scaled(side, side, Qt.KeepAspectRatio, Qt.SmoothTransformation))

    def mousePressEvent(self, event) -> None:  # noqa: N802 - Qt override
        if event.button() == Qt.LeftButton:
            self.clicked.emit()
        super().mousePressEvent(event)


class TopPatchesView(QWidget):
    """Top-k patches of the selected channel, and the layer overview of best patches.

    Given a session, it marks the session's channel and a channel picked here becomes
    the session's. Feed it with :meth:`set_grid` and :meth:`set_overview` (results of
    ``vizapp.collection.patches.load_patch_grid`` / ``load_layer_overview``), :meth:`set_channel`,
    :meth:`set_status` and :meth:`set_message`.

    Signals
    -------
    sigChannelChanged(channel)
        The user picked a channel (overview click, left/right keys).
    sigPatchRequested(patch)
        A thumbnail was clicked: open ``patch.image`` with ``patch.box`` drawn.
    sigCollectionRequested(spec)
        Use this collection: a folder chosen with "Collection…", or ``"samples"``
        ("Samples": the offline sample photographs).
    sigIndexRequested()
        "Index": build (or reuse) the index for the current model and collection.
    sigProjectionChanged(method)
        The projection shown beside the patches: ``"none"``, ``"deconvnet"`` or ``"guided"``
        (feed it with :meth:`set_projections`).
    """

    sigChannelChanged = Signal(int)
    sigPatchRequested = Signal(object)
    sigCollectionRequested = Signal(str)
    sigIndexRequested = Signal()
    sigProjectionChanged = Signal(str)

    def __init__(self, session=None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.grid: object | None = None  # PatchGrid
        self.overview: object | None = None  # LayerOverview
        self.channel: int | None = None
        self.thumbs: list[_Thumb] = []
        self.projections: object | None = None  # vizapp.explain.projection.Projections
        self.projection_thumbs: list[_Thumb] = []
        self.setFocusPolicy(Qt.StrongFocus)

        self.collection_button = QPushButton("Collection…")
        self.collection_button.setToolTip("Choose a folder of images (sub-folders are labels) or a dataset")
        self.collection_button.clicked.connect(self._choose_collection)
        self.samples_button = QPushButton("Samples")
        self.samples_button.setToolTip("Use the offline sample photographs")
        self.samples_button.clicked.connect(lambda: self.sigCollectionRequested.emit("samples"))
        self.index_button = QPushButton("Index")
        self.index_button.setToolTip("Find each channel's top patches in the collection (reused when unchanged)")
        self.index_button.clicked.connect(lambda: self.sigIndexRequested.emit())
        self.status = QLabel("No index yet: choose a collection and press Index")
        self.status.setWordWrap(True)
        self.title = heading("Top patches", "title")
        # A dead channel or a tie at the k-th value: the patches shown are not "the top k".
        self.flags = QLabel("")
        self.flags.setWordWrap(True)
        self.flags.setStyleSheet(f"color: {THEME.colour('warning')}; font-weight: bold")
        self.flags.setVisible(False)
        self.readout = heading("Hover a tile to read its best patch", "body", bold=False)
        self.hint = QLabel(HINT)

        self.thumb_area = QWidget()
        self.thumb_layout = QGridLayout(self.thumb_area)
        self.thumb_layout.setSpacing(6)
        self.projection = QComboBox()
        for text, key in PROJECTIONS:
            self.projection.addItem(text, key)
        self.projection.setToolTip("Project each top patch's unit back to the pixels (Zeiler & Fergus 2014): "
                                   "deconvnet, or guided backprop (Springenberg et al. 2015)")
        self.projection.currentIndexChanged.connect(self._projection_changed)
        self.projection_area = QWidget()
        self.projection_layout = QGridLayout(self.projection_area)
        self.projection_layout.setSpacing(6)
        self.projection_title = heading("", "body")
        self.projection_note = heading("", "small", bold=False)
        self.projection_box = self.projection_area  # shown while a projection is chosen
        self.projection_box.setVisible(False)
        self.projection_title.setVisible(False)
        self.projection_note.setVisible(False)
        # The projections left of the patches, slot for slot; their title above, notes below both.
        patches_side = QWidget()
        ps = QVBoxLayout(patches_side)
        ps.setContentsMargins(0, 0, 0, 0)
        ps.addWidget(self.projection_title)
        grids = QHBoxLayout()
        grids.addWidget(self.projection_area, 1)
        grids.addWidget(self.thumb_area, 1)
        ps.addLayout(grids, 1)
        ps.addWidget(self.projection_note)

        self.canvas = pg.GraphicsLayoutWidget()
        self.canvas.setBackground(THEME.colour("background"))
        self.view = image_view_box(self.canvas)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.view.addItem(self.image)
        self.marker = pg.QtWidgets.QGraphicsRectItem()
        self._apply_theme()
        THEME.changed.connect(self._apply_theme)
        self.marker.setVisible(False)
        self.view.addItem(self.marker)
        self.canvas.scene().sigMouseClicked.connect(self._clicked)
        self._hover = pg.SignalProxy(self.canvas.scene().sigMouseMoved, rateLimit=30, slot=self._mouse_moved)

        controls = QHBoxLayout()
        for button in (self.collection_button, self.samples_button, self.index_button):
            controls.addWidget(button)
        controls.addWidget(QLabel("Projection:"))
        controls.addWidget(self.projection)
        controls.addWidget(self.status, 1)
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addWidget(heading("Layer overview: each channel's best patch", "body"))
        rl.addWidget(self.canvas, 1)
        rl.addWidget(self.readout)
        split = QSplitter(Qt.Horizontal)
        split.addWidget(patches_side)
        split.addWidget(right)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        split.setSizes([3000, 2000])  # scaled to the width: the patches get three fifths
        layout = QVBoxLayout(self)
        layout.addLayout(controls)
        layout.addWidget(self.title)
        layout.addWidget(self.flags)
        layout.addWidget(split, 1)
        layout.addWidget(self.hint)
        if session is not None:  # the selected channel is the session's
            session.events.channel.connect(self.set_channel)
            self.sigChannelChanged.connect(session.select_channel)

    # --- setters -----------------------------------------------------------------
    def _apply_theme(self, *_args) -> None:
        pen = QPen(QColor(THEME.colour("accent")))
        pen.setWidthF(THEME.width("thick"))
        pen.setCosmetic(True)  # screen pixels at any zoom
        self.marker.setPen(pen)

    def set_status(self, text: str) -> None:
        """One line about the index (collection, size, model, layers) or why there is none."""
        self.status.setText(text)

    def set_message(self, text: str) -> None:
        """Clear both areas and say ``text`` (e.g. "not indexed for this layer")."""
        self.grid = self.overview = None
        self._show_thumbs([])
        self.set_projections(None)
        self.image.clear()
        self.marker.setVisible(False)
        self.title.setText(text)
        self._set_flags([])
        self.readout.setText("")

    def set_grid(self, grid) -> None:
        """Show a ``vizapp.collection.patches.PatchGrid``: its tiles on a ``ceil(sqrt(k))`` grid, best first."""
        self.grid = grid
        self.channel = grid.channel
        k = len(grid.patches)
        over = f" (over {grid.images} images)" if grid.images else ""
        if k:
            self.title.setText(f"Top {k} patches of {grid.layer} channel {grid.channel}{over}")
        else:
            self.title.setText(f"{grid.layer} channel {grid.channel}: no patches in the index{over}")
        if grid.notes:
            self.title.setText(f"{self.title.text()}; {len(grid.notes)} image(s) unreadable")
        flags = getattr(grid, "flags", None)
        self._set_flags(flags.lines if flags is not None else [])
        self._place_marker()
        if self.projections is None or (self.projections.layer, self.projections.channel) != (grid.layer, grid.channel):
            self.projections = None  # the new channel's come as a job (the controller asks)
            self.set_projections(None)
        self._show_patch_tiles()

    def _show_patch_tiles(self) -> None:
        """The grid's patches; while projections are shown, the model-input pixels under each
        projection's box instead (``Projections.inputs``: the same region, pixel for pixel)."""
        grid, shown = self.grid, self.projections
        if grid is None:
            return
        if shown is not None and self.current_projection() != "none" and len(shown.inputs) == len(grid.patches):
            tiles = [_enlarged(t) for t in shown.inputs]
        else:
            tiles = grid.tiles
        self._show_thumbs(list(zip(grid.patches, tiles, strict=True)))

    def current_projection(self) -> str:
        """``"none"``, ``"deconvnet"`` or ``"guided"``."""
        return self.projection.currentData()

    def set_projections(self, projections) -> None:
        """Show a ``vizapp.explain.projection.Projections`` left of the patches, slot for slot
        (``None``: none yet; one for another channel or method than shown is ignored)."""
        method = self.current_projection()
        grid = self.grid
        if projections is not None and (
            grid is None or projections.method != method
            or (projections.layer, projections.channel) != (grid.layer, grid.channel)
        ):
            return
        self.projections = projections
        for part in (self.projection_box, self.projection_title):
            part.setVisible(method != "none")
        self.projection_note.setVisible(method != "none" and projections is not None and bool(projections.notes))
        for thumb in self.projection_thumbs:
            self.projection_layout.removeWidget(thumb)
            thumb.hide()
        self._show_patch_tiles()
        if method == "none":
            return
        title = dict((key, text) for text, key in PROJECTIONS)[method]
        if projections is None:
            busy = grid is not None and len(grid.patches) > 0
            self.projection_title.setText(f"{title.capitalize()}: computing…" if busy else "")
            self.projection_note.setText("")
            return
        self.projection_title.setText(f"Left: the {title} projection of each patch's unit (Zeiler & Fergus); "
                                      "right: the model input under it (the unit's whole field)")
        self.projection_note.setText("\n".join(projections.notes))
        while len(self.projection_thumbs) < len(projections.images):
            thumb = _Thumb()
            thumb.clicked.connect(lambda t=thumb: self._thumb_clicked(t))
            self.projection_thumbs.append(thumb)
        cols = max(1, math.ceil(math.sqrt(len(projections.images))))
        for i, (patch, pixels, box) in enumerate(zip(projections.patches, projections.images, projections.boxes,
                                                     strict=True)):
            thumb = self.projection_thumbs[i]
            tip = (f"{title} of unit ({patch.y}, {patch.x}) of {_name(patch)}\nits field {tuple(int(v) for v in box)} "
                   "of the model input (dark grey: past the input's edge)")
            thumb.set_patch(_enlarged(pixels), f"{patch.value:.3g}", _name(patch), tip)  # rows as tall as the patches'
            self.projection_layout.addWidget(thumb, i // cols, i % cols)
            thumb.show()

    def _projection_changed(self, *_args) -> None:
        self.set_projections(None)
        self.sigProjectionChanged.emit(self.current_projection())

    # --- scenes (widgets/controllers/lecture.py) ---------------------------------
    def view_options(self) -> dict:
        """The projection shown beside the patches, for a scene."""
        return {"projection": self.current_projection()}

    def set_view_options(self, options: dict) -> None:
        """Apply :meth:`view_options`' keys (unknown keys and values are skipped)."""
        from widgets.options import set_combo

        set_combo(self.projection, options.get("projection"))  # emits sigProjectionChanged when it changes

    def set_overview(self, overview) -> None:
        """Show a ``vizapp.collection.patches.LayerOverview``: one ImageItem for every channel's tile."""
        self.overview = overview
        self.image.setImage(overview.mosaic.image, levels=(0, 255), autoLevels=False)
        self.view.autoRange(padding=0.01)
        self.readout.setText(f"{overview.layer}: {len(overview.patches)} channels; hover a tile to read it")
        self._place_marker()

    def set_channel(self, channel: int | None) -> None:
        """Mark ``channel`` in the overview (the collection controller then requests its grid)."""
        self.channel = channel
        self._place_marker()

    def flags_text(self) -> str:
        """The dead / ties line shown under the title ("" when the unit is neither)."""
        return self.flags.text() if self.flags.isVisibleTo(self) else ""

    # --- rendering ---------------------------------------------------------------
    def _set_flags(self, lines: list[str]) -> None:
        self.flags.setText("\n".join(lines))
        self.flags.setVisible(bool(lines))

    def _show_thumbs(self, items: list) -> None:
        while len(self.thumbs) < len(items):
            thumb = _Thumb()
            thumb.clicked.connect(lambda t=thumb: self._thumb_clicked(t))
            self.thumbs.append(thumb)
        for thumb in self.thumbs:
            self.thumb_layout.removeWidget(thumb)
            thumb.hide()
        cols = max(1, math.ceil(math.sqrt(len(items))))
        for i, (patch, pixels) in enumerate(items):
            thumb = self.thumbs[i]
            tip = f"{patch.image}\nbox {patch.box}, unit ({patch.y}, {patch.x})"
            thumb.set_patch(pixels, f"{patch.value:.3g}", _name(patch), tip)
            self.thumb_layout.addWidget(thumb, i // cols, i % cols)
            thumb.show()

    def _thumb_clicked(self, thumb: _Thumb) -> None:
        i = self.thumbs.index(thumb) if thumb in self.thumbs else self.projection_thumbs.index(thumb)
        if self.grid is not None and i < len(self.grid.patches):
            self.sigPatchRequested.emit(self.grid.patches[i])

    def _place_marker(self) -> None:
        o, c = self.overview, self.channel
        slot = None if o is None or c is None else o.mosaic.slot_of(c)
        if slot is None:
            self.marker.setVisible(False)
            return
        m = o.mosaic
        x, y = m.tile_origin(slot)
        self.marker.setRect(QRectF(x - 1, y - 1, m.tile_w + 2, m.tile_h + 2))
        self.marker.setVisible(True)

    # --- interaction -------------------------------------------------------------
    def _choose_collection(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose an image folder (sub-folders are labels)")
        if folder:
            self.sigCollectionRequested.emit(folder)

    def channel_count(self) -> int:
        if self.overview is not None:
            return len(self.overview.patches)
        return self.grid.channels if self.grid is not None else 0

    def _channel_at(self, scene_pos) -> int | None:
        if self.overview is None:
            return None
        point = self.view.mapSceneToView(scene_pos)
        return self.overview.mosaic.channel_at(point.x(), point.y())

    def _clicked(self, event) -> None:
        if event.button() != Qt.LeftButton:
            return
        channel = self._channel_at(event.scenePos())
        if channel is not None:
            self.setFocus()
            self.sigChannelChanged.emit(channel)

    def _mouse_moved(self, event) -> None:
        channel = self._channel_at(event[0])
        if channel is None:
            return
        patch = self.overview.patches[channel]
        if patch is None:
            self.readout.setText(f"channel {channel}: no patch in the index")
        else:
            self.readout.setText(f"channel {channel}: value {patch.value:.3g}, {_name(patch)}")

    def keyPressEvent(self, event) -> None:  # noqa: N802 - Qt override
        if event.key() in (Qt.Key_Right, Qt.Key_Left):
            self.step_channel(1 if event.key() == Qt.Key_Right else -1)
        else:
            super().keyPressEvent(event)

    def step_channel(self, delta: int) -> None:
        """Emit ``sigChannelChanged`` for the neighbour channel, clamped to the layer's channels."""
        n = self.channel_count()
        if n == 0:
            return
        current = -1 if self.channel is None and delta > 0 else (self.channel or 0)
        target = min(n - 1, max(0, current + delta))
        if target != self.channel:
            self.sigChannelChanged.emit(target)

"""The Feature maps dock: every channel of the selected layer as one mosaic.

Click a tile to enlarge that channel over the input image; arrow keys step through
channels (left/right) and layers (up/down).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtGui import QColor, QPen
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QSlider,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from vizapp.probing.mosaic import feature_mosaic
from widgets.common import LUT_ACTIVATION, heading, image_view_box
from widgets.theme import THEME

__all__ = ["FeatureMapsView"]

SORTS = [("index", "Channel order"), ("mean", "By mean activation"), ("max", "By max activation")]
NORMS = [("channel", "Scale each channel"), ("layer", "One scale for the layer")]


class FeatureMapsView(QWidget):
    """Mosaic of a layer's channels plus the selected channel overlaid on the input.

    Signals
    -------
    sigOptionsChanged(sort, norm)
        The user changed the order or scaling (the view re-lays its cached maps itself).
    """

    sigOptionsChanged = Signal(str, str)

    def __init__(self, session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.analysis = None
        self.mosaic = None
        self.setFocusPolicy(Qt.StrongFocus)
        self.sort = QComboBox()
        self.norm = QComboBox()
        for combo, items in ((self.sort, SORTS), (self.norm, NORMS)):
            for key, text in items:
                combo.addItem(text, key)
            combo.activated.connect(self._options_changed)
        self.opacity = QSlider(Qt.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(60)
        self.opacity.setToolTip("Overlay opacity: 0 shows the image, 100 the channel")
        self.opacity.valueChanged.connect(lambda v: self.overlay.setOpacity(v / 100))
        self.title = heading("Feature maps", "body")
        self.detail = heading("Click a channel to enlarge it", "small")
        self.hint = QLabel("←/→ channel · ↑/↓ layer · click a tile")

        self.canvas = pg.GraphicsLayoutWidget()
        self.canvas.setBackground(THEME.colour("background"))
        self.view = image_view_box(self.canvas)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.image.setLookupTable(LUT_ACTIVATION)
        self.view.addItem(self.image)
        self.marker = pg.QtWidgets.QGraphicsRectItem()
        self.marker.setPen(QPen(QColor(THEME.colour("accent")), THEME.width("cosmetic")))  # one screen pixel
        self.marker.setVisible(False)
        self.view.addItem(self.marker)
        self.canvas.scene().sigMouseClicked.connect(self._clicked)

        self.zoom_canvas = pg.GraphicsLayoutWidget()
        self.zoom_canvas.setBackground(THEME.colour("background"))
        self.zoom = image_view_box(self.zoom_canvas)
        self.base = pg.ImageItem(axisOrder="row-major")
        self.overlay = pg.ImageItem(axisOrder="row-major")
        self.overlay.setLookupTable(LUT_ACTIVATION)
        self.overlay.setOpacity(0.6)
        self.zoom.addItem(self.base)
        self.zoom.addItem(self.overlay)

        controls = QHBoxLayout()
        controls.addWidget(self.sort)
        controls.addWidget(self.norm)
        controls.addWidget(QLabel("Overlay"))
        controls.addWidget(self.opacity)
        controls.addStretch(1)
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addWidget(self.detail)
        rl.addWidget(self.zoom_canvas, 1)
        split = QSplitter(Qt.Horizontal)
        split.addWidget(self.canvas)
        split.addWidget(right)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addLayout(controls)
        layout.addWidget(split, 1)
        layout.addWidget(self.hint)

        session.events.channel.connect(self._channel_changed)

    # --- options -----------------------------------------------------------------
    def current_sort(self) -> str:
        return self.sort.currentData()

    def current_norm(self) -> str:
        return self.norm.currentData()

    def _options_changed(self, _index: int = 0) -> None:
        if self.analysis is not None and self.analysis.maps is not None:
            # Re-laying out the cached maps is numpy only (about a millisecond).
            self._show_mosaic(feature_mosaic(self.analysis.maps, self.current_sort(), self.current_norm()))
        self.sigOptionsChanged.emit(self.current_sort(), self.current_norm())

    # --- rendering ---------------------------------------------------------------
    def set_analysis(self, analysis) -> None:
        """Show a ``vizapp.analysis.LayerAnalysis``."""
        self.analysis = analysis
        self.base.setImage(analysis.display, levels=(0, 255), autoLevels=False)
        self.zoom.autoRange(padding=0.01)
        if analysis.mosaic is None:
            self.mosaic = None
            self.image.clear()
            self.overlay.clear()
            self.marker.setVisible(False)
            why = "; ".join(analysis.notes) or "this layer gives no tensor output"
            self.title.setText(f"Feature maps: {analysis.layer or 'no layer selected'} ({why})")
            return
        c, h, w = analysis.maps.shape
        self.title.setText(f"Feature maps of {analysis.layer}: {c} channels of {h}×{w}")
        mosaic = analysis.mosaic
        if (analysis.sort, analysis.norm) != (self.current_sort(), self.current_norm()):
            # The options changed while the job ran: lay the maps out as the boxes say.
            mosaic = feature_mosaic(analysis.maps, self.current_sort(), self.current_norm())
        self._show_mosaic(mosaic)
        self._channel_changed(self.session.channel)

    def _show_mosaic(self, mosaic) -> None:
        self.mosaic = mosaic
        self.image.setImage(mosaic.image, levels=(0, 255), autoLevels=False)
        self.view.autoRange(padding=0.01)
        self._place_marker()

    def _place_marker(self) -> None:
        m, c = self.mosaic, self.session.channel
        slot = None if m is None or c is None else m.slot_of(c)
        if slot is None:
            self.marker.setVisible(False)
            return
        x, y = m.tile_origin(slot)
        self.marker.setRect(QRectF(x - 0.5, y - 0.5, m.tile_w + 1, m.tile_h + 1))
        self.marker.setVisible(True)

    def _channel_changed(self, channel: int | None) -> None:
        a = self.analysis
        if a is None or a.maps is None or channel is None or not 0 <= channel < a.maps.shape[0]:
            self.overlay.clear()
            self.detail.setText("Click a channel to enlarge it")
            self.marker.setVisible(False)
            return
        cmap = a.maps[channel].astype(np.float32)
        lo, hi = float(cmap.min()), float(cmap.max())
        self.overlay.setImage(cmap, levels=(lo, hi if hi > lo else lo + 1), autoLevels=False)
        side_h, side_w = a.display.shape[:2]
        self.overlay.setRect(QRectF(0, 0, side_w, side_h))
        self.detail.setText(f"Channel {channel}: min {lo:.3g}, mean {cmap.mean():.3g}, max {hi:.3g}")
        self._place_marker()

    # --- interaction -------------------------------------------------------------
    def channel_count(self) -> int:
        return 0 if self.analysis is None or self.analysis.maps is None else self.analysis.maps.shape[0]

    def _clicked(self, event) -> None:
        if self.mosaic is None or event.button() != Qt.LeftButton:
            return
        point = self.view.mapSceneToView(event.scenePos())
        channel = self.mosaic.channel_at(point.x(), point.y())
        if channel is not None:
            self.session.select_channel(channel)
            self.setFocus()

    def keyPressEvent(self, event) -> None:  # noqa: N802 - Qt override
        key = event.key()
        if key in (Qt.Key_Right, Qt.Key_Left):
            self.step_channel(1 if key == Qt.Key_Right else -1)
        elif key in (Qt.Key_Down, Qt.Key_Up):
            self.session.step_layer(1 if key == Qt.Key_Down else -1)
        else:
            super().keyPressEvent(event)

    def step_channel(self, delta: int) -> None:
        """Step in display order (so sorting by max walks strongest-first)."""
        m = self.mosaic
        if m is None or not len(m.order):
            return
        slot = m.slot_of(self.session.channel) if self.session.channel is not None else None
        slot = 0 if slot is None else (slot + delta) % len(m.order)
        self.session.select_channel(int(m.order[slot]))

    # --- scenes (widgets/controllers/lecture.py) ---------------------------------
    def view_options(self) -> dict:
        """The order, the scaling and the overlay's opacity, for a scene."""
        return {"sort": self.current_sort(), "norm": self.current_norm(), "overlay": self.opacity.value()}

    def set_view_options(self, options: dict) -> None:
        """Apply :meth:`view_options`' keys (unknown keys and values are skipped)."""
        from widgets.options import set_combo, set_slider

        changed = set_combo(self.sort, options.get("sort"))
        changed = set_combo(self.norm, options.get("norm")) or changed
        set_slider(self.opacity, options.get("overlay"))
        if changed:
            self._options_changed()

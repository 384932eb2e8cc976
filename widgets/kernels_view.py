"""The Kernels dock: a conv layer's filters as one mosaic, with a value read-out on hover."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QVBoxLayout, QWidget

from widgets.common import heading, image_view_box
from widgets.flow_layout import flow_of
from widgets.theme import THEME

__all__ = ["KernelsView"]

MODES = [("auto", "Auto"), ("rgb", "RGB filters"), ("grid", "Out × in grid"), ("mean", "Mean over inputs")]
NORMS = [("filter", "Scale each filter"), ("layer", "One scale for the layer")]

class KernelsView(QWidget):
    """Kernels of the conv layer for the selected layer.

    Signals
    -------
    sigOptionsChanged(mode, norm)
        The user changed the layout or normalisation (the probing controller re-requests kernels).
    """

    sigOptionsChanged = Signal(str, str)

    def __init__(self, session=None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session  # nothing of it to follow: the probing controller feeds the kernels
        self.kernels = None
        self.mode = QComboBox()
        self.norm = QComboBox()
        for combo, items in ((self.mode, MODES), (self.norm, NORMS)):
            for key, text in items:
                combo.addItem(text, key)
            combo.activated.connect(lambda _i: self.sigOptionsChanged.emit(self.current_mode(), self.current_norm()))
        self.title = heading("Kernels", "body")
        self.readout = heading("Hover a kernel to read its weights", None, bold=False)  # wraps
        self.canvas = pg.GraphicsLayoutWidget()
        self.canvas.setBackground(THEME.colour("background"))
        self.view = image_view_box(self.canvas)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.view.addItem(self.image)
        self._hover = pg.SignalProxy(self.canvas.scene().sigMouseMoved, rateLimit=30, slot=self._mouse_moved)

        controls = flow_of(self.mode, self.norm)  # they wrap in a narrow dock
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addLayout(controls)
        layout.addWidget(self.canvas, 1)
        layout.addWidget(self.readout)

    def current_mode(self) -> str:
        return self.mode.currentData()

    def current_norm(self) -> str:
        return self.norm.currentData()

    def set_kernels(self, kernels, message: str = "") -> None:
        """Show a ``vizapp.probing.kernels.KernelView``, or clear the view with ``message``."""
        self.kernels = kernels
        if kernels is None:
            self.image.clear()
            self.title.setText(message or "Kernels: this model has no 2-D convolutions")
            return
        w = kernels.weights
        what = {"rgb": "RGB filters", "grid": "output × input channels", "mean": "per output channel, mean over inputs"}[kernels.mode]
        clipped = ""
        if kernels.mode == "grid" and (kernels.shown_out < w.shape[0] or kernels.shown_in < w.shape[1]):
            clipped = f" (first {kernels.shown_out}×{kernels.shown_in})"
        self.title.setText(
            f"Kernels of {kernels.layer}: {w.shape[0]}×{w.shape[1]}×{w.shape[2]}×{w.shape[3]}, {what}{clipped}"
        )
        self.image.setImage(kernels.mosaic.image, levels=(0, 255), autoLevels=False)
        self.view.autoRange(padding=0.02)

    def _mouse_moved(self, event) -> None:
        if self.kernels is None:
            return
        point = self.view.mapSceneToView(event[0])
        hit = self.kernels.value_at(point.x(), point.y())
        if hit is None:
            self.readout.setText("Hover a kernel to read its weights")
            return
        out, inp, ky, kx, value = hit
        where = f"filter {out}" + (f", input {inp}" if inp is not None else "")
        kind = {"rgb": "max |w| over RGB", "mean": "mean over inputs", "grid": "w"}[self.kernels.mode]
        self.readout.setText(f"{where}, position ({ky}, {kx}): {kind} = {value:+.4f}")

    # --- scenes (widgets/controllers/lecture.py) ---------------------------------
    def view_options(self) -> dict:
        """The display mode and the scaling, for a scene."""
        return {"mode": self.current_mode(), "norm": self.current_norm()}

    def set_view_options(self, options: dict) -> None:
        """Apply :meth:`view_options`' keys (asks for the kernels again if they change)."""
        from widgets.options import set_combo

        changed = set_combo(self.mode, options.get("mode"))
        changed = set_combo(self.norm, options.get("norm")) or changed
        if changed:
            self.sigOptionsChanged.emit(self.current_mode(), self.current_norm())

"""The Attribution dock: which pixels made the prediction, several methods side by side.

One panel per ticked method (``vizapp.explain.attribution.METHODS``), all for the same image
and class, each the method's heat map over the model's input. The window runs one job
per method and hands each result to :meth:`AttributionView.set_attribution`; the view
only paints. Opacity, colours and "heat only" re-render the stored records (numpy, no
job). The overlay (:func:`overlay`) lets the map's own value set the colour's weight::

    w   = opacity * m                      # per pixel, m = Attribution.map in [0, 1]
    out = (1 - w) * display + w * LUT[m]   # LUT: 256 colours, index round(255 * m)

so cold pixels keep the photograph and hot ones take the colour map ("heat only" shows
``LUT[m]`` alone). Opacity 0 shows the input unchanged.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QIntValidator
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSizePolicy,
    QSlider,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from widgets.common import heading, to_pixmap
from widgets.theme import THEME, bind_font

__all__ = ["AttributionView", "COLORMAPS", "DEFAULT_METHODS", "lookup_table", "overlay"]

#: Colour map choices: what the combo says -> pyqtgraph's name (all ship with pyqtgraph).
COLORMAPS = {"inferno": "inferno", "viridis": "viridis", "turbo": "turbo", "grey": "CET-L1"}
#: Methods ticked at start: one gradient, one path-integral, one layer method.
DEFAULT_METHODS = ("saliency", "integrated_gradients", "gradcam")
DEFAULT_OPACITY = 0.55
_PREDICTED = -1  # the class combo's data for "predicted class"


@cache
def lookup_table(name: str) -> np.ndarray:
    """``256 x 3`` uint8 colours of the colour map ``name`` (a key of :data:`COLORMAPS`)."""
    if name not in COLORMAPS:
        raise ValueError(f"unknown colour map '{name}'; choose one of {', '.join(COLORMAPS)}")
    lut = pg.colormap.get(COLORMAPS[name]).getLookupTable(nPts=256, alpha=False)
    lut = np.ascontiguousarray(lut, dtype=np.uint8)
    lut.setflags(write=False)
    return lut


def overlay(
    display: np.ndarray, heat: np.ndarray, lut: np.ndarray, opacity: float, heat_only: bool = False
) -> np.ndarray:
    """``H x W x 3`` uint8: ``heat`` (``H x W`` in [0, 1]) coloured by ``lut`` over ``display``.

    ``w = opacity * heat``; ``out = (1 - w) * display + w * lut[round(255 * heat)]``, rounded.
    With ``heat_only`` the coloured map alone.
    """
    if heat.shape != display.shape[:2]:
        raise ValueError(
            f"the map is {heat.shape[1]}x{heat.shape[0]} but the image is "
            f"{display.shape[1]}x{display.shape[0]}; they must match"
        )
    m = np.clip(np.nan_to_num(heat.astype(np.float64), nan=0.0), 0.0, 1.0)
    colour = lut[np.rint(m * 255).astype(np.intp)]
    if heat_only:
        return np.ascontiguousarray(colour, dtype=np.uint8)
    w = (float(np.clip(opacity, 0.0, 1.0)) * m)[..., None]
    out = (1.0 - w) * display.astype(np.float64) + w * colour
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _seconds(s: float) -> str:
    """``"348 ms"`` / ``"4.8 s"`` with a no-break space, so a wrapped title keeps them whole."""
    return f"{1000 * s:.0f}\u00a0ms" if s < 1 else f"{s:.1f}\u00a0s"


class _Picture(QLabel):
    """A label that keeps its pixmap scaled to fit (aspect kept), or shows a status text."""

    def __init__(self) -> None:
        super().__init__()
        self.pixmap_full = None  # the unscaled overlay, one pixel per image pixel
        self.setAlignment(Qt.AlignCenter)
        self.setWordWrap(True)
        self.setMinimumSize(120, 120)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        bind_font(self, "subheading")

    def set_pixels(self, pixels: np.ndarray) -> None:
        self.pixmap_full = to_pixmap(pixels)
        self.setStyleSheet("")
        self._rescale()

    def set_status(self, text: str, error: bool = False) -> None:
        self.pixmap_full = None
        self.setStyleSheet(f"color: {THEME.colour('error' if error else 'muted')}")
        self.setText(text)

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._rescale()

    def _rescale(self) -> None:
        if self.pixmap_full is not None:
            self.setPixmap(
                self.pixmap_full.scaled(self.size(), Qt.KeepAspectRatio, Qt.SmoothTransformation)
            )


class _Panel:
    """One method's three widgets: title, picture, notes.

    They sit in three rows of the view's grid (not in a box of their own), so the
    titles of a row of panels share one height and the pictures line up.
    """

    def __init__(self, label: str) -> None:
        self.label = label
        self.title = heading(label, "heading")
        self.title.setAlignment(Qt.AlignHCenter | Qt.AlignBottom)
        self.picture = _Picture()
        self.notes = heading("", "small", bold=False)
        self.notes.setAlignment(Qt.AlignHCenter | Qt.AlignTop)
        self.notes.setStyleSheet(f"color: {THEME.colour('notes')}")
        self.widgets = (self.title, self.picture, self.notes)

    def is_shown(self) -> bool:
        return self.picture.isVisible()

    def show_image(self, pixels: np.ndarray, title: str, notes: list[str]) -> None:
        self.title.setText(title)
        self.notes.setText("\n".join(notes))
        self.picture.set_pixels(pixels)

    def show_text(self, text: str, title: str | None = None, error: bool = False) -> None:
        self.title.setText(title or self.label)
        self.notes.clear()
        self.picture.set_status(text, error)


class AttributionView(QWidget):
    """Attribution maps of the ticked methods side by side, for one image and class.

    The window asks :meth:`current_methods`, :meth:`current_target` and
    :meth:`use_selected_layer` when :attr:`sigRequest` fires, calls :meth:`clear` with
    the methods it submitted, then :meth:`set_attribution` (the one rich setter) or
    :meth:`set_error` per method as the jobs finish. :attr:`results` maps each shown
    method to its ``vizapp.explain.attribution.Attribution``.

    Signals
    -------
    sigRequest()
        What must be computed changed: methods ticked, class, Grad-CAM layer.
    """

    sigRequest = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        # Imported here, not at module level: importing the view must not load torch
        # (the window has loaded it through ``models`` by the time it builds its docks).
        from vizapp.explain.attribution import METHODS

        self.methods: dict[str, str] = dict(METHODS)
        bind_font(self, "small", at_least=True)  # controls a size up: this dock is projected
        self.results: dict = {}  # method -> Attribution
        self.errors: dict[str, str] = {}
        self._pending: set[str] = set()
        self._shown: dict[str, np.ndarray] = {}
        self._predictions: list = []
        self._target: int | None = None

        self.boxes: dict[str, QCheckBox] = {}
        methods_row = QGridLayout()
        methods_row.setHorizontalSpacing(16)
        for i, (key, label) in enumerate(self.methods.items()):
            box = QCheckBox(label)
            box.setChecked(key in DEFAULT_METHODS)
            box.toggled.connect(self._methods_changed)
            self.boxes[key] = box
            methods_row.addWidget(box, i // 4, i % 4)
        methods_row.setColumnStretch(4, 1)  # packed to the left

        self.class_combo = QComboBox()
        self.class_combo.setMinimumContentsLength(24)
        self.class_combo.setToolTip(
            "The class whose score is explained (click a prediction to pick it)"
        )
        self.class_combo.activated.connect(self._class_chosen)
        self.class_edit = QLineEdit()
        self.class_edit.setValidator(QIntValidator(0, 9_999_999, self))
        self.class_edit.setPlaceholderText("index")
        self.class_edit.setMaximumWidth(110)
        self.class_edit.setToolTip("Type any class index and press Enter")
        self.class_edit.editingFinished.connect(self._index_typed)
        self.layer_box = QCheckBox("Grad-CAM at the selected layer")
        self.layer_box.setToolTip(
            "Off: the engine's default layer (the last spatial map, or a ViT's last block)"
        )
        self.layer_box.toggled.connect(self._layer_toggled)
        class_row = QHBoxLayout()
        class_row.addWidget(QLabel("Explain class:"))
        class_row.addWidget(self.class_combo)
        class_row.addWidget(QLabel("or index:"))
        class_row.addWidget(self.class_edit)
        class_row.addSpacing(16)
        class_row.addWidget(self.layer_box)
        class_row.addStretch(1)

        self.opacity_slider = QSlider(Qt.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(round(DEFAULT_OPACITY * 100))
        self.opacity_slider.setMinimumWidth(160)
        self.opacity_slider.setMaximumWidth(240)
        self.opacity_slider.setToolTip("0%: the image alone; 100%: hot pixels fully coloured")
        self.opacity_label = QLabel()
        self.opacity_label.setMinimumWidth(44)
        self.cmap_combo = QComboBox()
        for name in COLORMAPS:
            self.cmap_combo.addItem(name, name)
        self.legend = QLabel()
        self._legend_for: str | None = None
        self.heat_box = QCheckBox("Heat only")
        self.heat_box.setToolTip("Show the coloured map without the image")
        self.opacity_slider.valueChanged.connect(self._render_all)
        self.cmap_combo.currentIndexChanged.connect(self._render_all)
        self.heat_box.toggled.connect(self._render_all)
        overlay_row = QHBoxLayout()
        overlay_row.addWidget(QLabel("Opacity"))
        overlay_row.addWidget(self.opacity_slider)
        overlay_row.addWidget(self.opacity_label)
        overlay_row.addSpacing(16)
        overlay_row.addWidget(QLabel("Colours"))
        overlay_row.addWidget(self.cmap_combo)
        overlay_row.addWidget(QLabel("low"))
        overlay_row.addWidget(self.legend)
        overlay_row.addWidget(QLabel("high"))
        overlay_row.addSpacing(16)
        overlay_row.addWidget(self.heat_box)
        overlay_row.addStretch(1)

        self.banner = heading(
            "UNTRAINED model: these maps explain random weights, not learned features", "subheading",
            style=lambda: (f"background: {THEME.colour('untrained_alt')}; color: white;"
                           f" padding: {THEME.px(6):g}px; border-radius: {THEME.px(4):g}px"),
        )
        self.banner.setAlignment(Qt.AlignCenter)
        self.banner.hide()
        self.header = heading("", "title")

        self.panels: dict[str, _Panel] = {key: _Panel(label) for key, label in self.methods.items()}
        self.panel_area = QWidget()
        self.panel_grid = QGridLayout(self.panel_area)
        self.panel_grid.setContentsMargins(0, 0, 0, 0)
        self.panel_grid.setHorizontalSpacing(12)
        self.panel_grid.setVerticalSpacing(4)
        self.message = heading("Open a model and an image", "huge", bold=False)
        self.message.setAlignment(Qt.AlignCenter)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.panel_area)
        self.stack.addWidget(self.message)
        self.stack.setCurrentWidget(self.message)

        layout = QVBoxLayout(self)
        layout.addLayout(methods_row)
        layout.addLayout(class_row)
        layout.addLayout(overlay_row)
        layout.addWidget(self.banner)
        layout.addWidget(self.header)
        layout.addWidget(self.stack, 1)

        self._fill_classes()
        self._layout_panels()
        self._render_all()

    # --- what to compute -----------------------------------------------------------
    def current_methods(self) -> list[str]:
        """The ticked methods, in ``METHODS`` order."""
        return [key for key, box in self.boxes.items() if box.isChecked()]

    def current_target(self) -> int | None:
        """The class index to explain; ``None`` for the predicted class."""
        return self._target

    def use_selected_layer(self) -> bool:
        """Grad-CAM at the session's selected layer (``True``) or the engine's default."""
        return self.layer_box.isChecked()

    def set_methods(self, methods: list[str]) -> None:
        """Tick exactly ``methods`` (emits :attr:`sigRequest` once if that changes them)."""
        unknown = [m for m in methods if m not in self.boxes]
        if unknown:
            raise ValueError(
                f"unknown attribution method(s) {', '.join(unknown)}; choose from {', '.join(self.boxes)}"
            )
        before = self.current_methods()
        for key, box in self.boxes.items():
            box.blockSignals(True)
            box.setChecked(key in methods)
            box.blockSignals(False)
        if self.current_methods() != before:
            self._methods_changed()

    def _methods_changed(self, _checked: bool = False) -> None:
        ticked = set(self.current_methods())
        for store in (self.results, self.errors, self._shown):
            for key in [k for k in store if k not in ticked]:
                del store[key]
        self._pending &= ticked
        self._layout_panels()
        self._render_all()
        self.sigRequest.emit()

    def _layer_toggled(self, _on: bool) -> None:
        if self.boxes["gradcam"].isChecked():
            self.sigRequest.emit()

    # --- the class -----------------------------------------------------------------
    def set_predictions(self, predictions: list) -> None:
        """Fill the class picker from ``Prediction(label, index, prob)`` records, best first.

        The chosen class is kept (as its own entry when it is not among them); an empty
        list (a new model) goes back to the predicted class. Emits nothing.
        """
        self._predictions = list(predictions)
        if not self._predictions:
            self._target = None
        self._fill_classes()

    def set_target(self, index: int | None) -> None:
        """Explain class ``index`` (``None``: the predicted class); emits :attr:`sigRequest` if it changed."""
        if index is not None:
            index = int(index)
            if index < 0:
                raise ValueError(f"class index {index} is negative; give 0 or more")
        changed = index != self._target
        self._target = index
        self._fill_classes()
        if changed:
            self._refresh_header()
            self.sigRequest.emit()

    def _class_text(self, index: int) -> str:
        for p in self._predictions:
            if p.index == index:
                return f"{p.label} ({p.index}) {100 * p.prob:.1f}%"
        return f"class {index}"

    def _fill_classes(self) -> None:
        combo = self.class_combo
        combo.blockSignals(True)
        combo.clear()
        top = f" ({self._predictions[0].label})" if self._predictions else ""
        combo.addItem(f"predicted class{top}", _PREDICTED)
        for p in self._predictions:
            combo.addItem(self._class_text(p.index), p.index)
        if self._target is not None and combo.findData(self._target) < 0:
            combo.addItem(self._class_text(self._target), self._target)
        combo.setCurrentIndex(combo.findData(_PREDICTED if self._target is None else self._target))
        combo.blockSignals(False)
        self.class_edit.setText("" if self._target is None else str(self._target))

    def _class_chosen(self, row: int) -> None:
        data = self.class_combo.itemData(row)
        self.set_target(None if data == _PREDICTED else int(data))

    def _index_typed(self) -> None:
        text = self.class_edit.text().strip()
        if text:
            self.set_target(int(text))

    # --- overlay -------------------------------------------------------------------
    def opacity(self) -> float:
        return self.opacity_slider.value() / 100

    def set_opacity(self, value: float) -> None:
        """``value`` in [0, 1] (clipped); re-renders the panels."""
        self.opacity_slider.setValue(round(100 * min(1.0, max(0.0, float(value)))))

    def colormap(self) -> str:
        return self.cmap_combo.currentData()

    def set_colormap(self, name: str) -> None:
        """One of :data:`COLORMAPS`; re-renders the panels."""
        row = self.cmap_combo.findData(name)
        if row < 0:
            raise ValueError(f"unknown colour map '{name}'; choose one of {', '.join(COLORMAPS)}")
        self.cmap_combo.setCurrentIndex(row)

    def heat_only(self) -> bool:
        return self.heat_box.isChecked()

    def set_heat_only(self, on: bool) -> None:
        self.heat_box.setChecked(on)

    # --- results -------------------------------------------------------------------
    def clear(self, pending: list[str] | None = None) -> None:
        """Drop every result; the panels of ``pending`` methods say "computing…"."""
        self.results.clear()
        self.errors.clear()
        self._shown.clear()
        self._pending = set(pending or ()) & set(self.current_methods())
        self.stack.setCurrentWidget(self.panel_area)
        self._refresh_header()
        self._render_all()

    def set_pending(self, method: str) -> None:
        """Drop ``method``'s result or error; its panel says "computing…" until the next setter."""
        if method not in self.current_methods():
            return
        self.results.pop(method, None)
        self.errors.pop(method, None)
        self._shown.pop(method, None)
        self._pending.add(method)
        self.stack.setCurrentWidget(self.panel_area)
        self._refresh_header()
        self._render(method)

    def pending(self) -> set[str]:
        """The methods whose panels wait for a result."""
        return set(self._pending)

    def set_attribution(self, a) -> None:
        """Show a ``vizapp.explain.attribution.Attribution`` in its method's panel (ignored if unticked)."""
        if a.method not in self.current_methods():
            return
        self.results[a.method] = a
        self.errors.pop(a.method, None)
        self._pending.discard(a.method)
        self.stack.setCurrentWidget(self.panel_area)
        self._refresh_header()
        self._render(a.method)

    def set_error(self, method: str, text: str) -> None:
        """Say why ``method`` failed in its panel (ignored if unticked)."""
        if method not in self.current_methods():
            return
        self.errors[method] = text
        self.results.pop(method, None)
        self._shown.pop(method, None)
        self._pending.discard(method)
        self.stack.setCurrentWidget(self.panel_area)
        self._render(method)

    def set_message(self, text: str) -> None:
        """Drop the results and show ``text`` centred instead of the panels."""
        self.results.clear()
        self.errors.clear()
        self._shown.clear()
        self._pending.clear()
        self.message.setText(text)
        self.header.clear()
        self.stack.setCurrentWidget(self.message)

    def message_text(self) -> str:
        """The centred message, or ``""`` while the panels show."""
        return self.message.text() if self.stack.currentWidget() is self.message else ""

    def set_untrained(self, flag: bool) -> None:
        """Show the red UNTRAINED banner (the model has random weights)."""
        self.banner.setVisible(bool(flag))

    def panel_image(self, method: str) -> np.ndarray | None:
        """The ``H x W x 3`` uint8 overlay ``method``'s panel shows, or ``None``."""
        if self.stack.currentWidget() is not self.panel_area:
            return None
        return self._shown.get(method)

    # --- rendering -----------------------------------------------------------------
    def _layout_panels(self) -> None:
        """The ticked panels in METHODS order, one row of up to 4 (7 wrap into two rows of 4 and 3)."""
        grid = self.panel_grid
        for panel in self.panels.values():
            for widget in panel.widgets:
                grid.removeWidget(widget)
                widget.hide()
        for col in range(grid.columnCount()):
            grid.setColumnStretch(col, 0)
        for row in range(grid.rowCount()):
            grid.setRowStretch(row, 0)
        ticked = self.current_methods()
        cols = len(ticked) if len(ticked) <= 4 else math.ceil(len(ticked) / 2)
        for i, key in enumerate(ticked):
            row, col = 3 * (i // cols), i % cols
            for offset, widget in enumerate(self.panels[key].widgets):
                grid.addWidget(widget, row + offset, col)
                widget.show()
            grid.setColumnStretch(col, 1)
            grid.setRowStretch(row + 1, 1)  # the pictures take the height

    def _refresh_header(self) -> None:
        if self.stack.currentWidget() is self.message:
            self.header.clear()
        elif self.results:
            a = next(iter(self.results.values()))
            self.header.setText(
                f"Explaining {a.target_label} ({a.target}): p = {100 * a.probability:.1f}%"
            )
        elif self._target is None:
            self.header.setText("Explaining the predicted class")
        else:
            self.header.setText(f"Explaining {self._class_text(self._target)}")

    def _render_all(self, *_args) -> None:
        self.opacity_label.setText(f"{self.opacity_slider.value()}%")
        self.opacity_slider.setEnabled(not self.heat_only())
        if self._legend_for != self.colormap():  # the colour bar, redrawn only when it changes
            self._legend_for = self.colormap()
            self.legend.setToolTip(f"{self.colormap()}: low → high attribution")
            lut = lookup_table(self.colormap())
            self.legend.setPixmap(to_pixmap(np.repeat(lut[None], 16, axis=0)).scaled(160, 16))
        self.layer_box.setEnabled(self.boxes["gradcam"].isChecked())
        for key in self.current_methods():
            self._render(key)

    def _render(self, method: str) -> None:
        panel = self.panels[method]
        a = self.results.get(method)
        if a is not None:
            pixels = overlay(
                a.display, a.map, lookup_table(self.colormap()), self.opacity(), self.heat_only()
            )
            self._shown[method] = pixels
            panel.show_image(pixels, f"{a.title} · {_seconds(a.seconds)}", list(a.notes))
        elif method in self.errors:
            panel.show_text(self.errors[method], f"{self.methods[method]}: failed", error=True)
        elif method in self._pending:
            panel.show_text("computing…")
        else:
            panel.show_text("not computed yet")

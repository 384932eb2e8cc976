"""The Attribution dock: which pixels made the prediction, several methods side by side.

One panel per ticked method (``vizapp.explain.attribution.METHODS``), all for the same image
and class, each the method's heat map over the model's input. The explain controller
(``widgets/controllers/explain.py``) runs one job per method and hands each result to
:meth:`AttributionView.set_attribution`; the view only paints. Opacity, colours and
"heat only" re-render the stored records (numpy, no job) through
:func:`widgets.attribution_panels.overlay`.
"""

from __future__ import annotations

import math

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QIntValidator
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSlider,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from widgets.attribution_panels import (
    COLORMAPS,
    DEFAULT_METHODS,
    DEFAULT_OPACITY,
    Panel,
    lookup_table,
    overlay,
    seconds,
)
from widgets.common import heading, to_pixmap
from widgets.flow_layout import FlowLayout, flow_of
from widgets.theme import THEME, bind_font

__all__ = ["AttributionView", "COLORMAPS", "DEFAULT_METHODS", "lookup_table", "overlay"]

_PREDICTED = -1  # the class combo's data for "predicted class"


def _group(*widgets: QWidget) -> QWidget:
    """``widgets`` side by side as one item of a flow layout (a label stays with its control)."""
    box = QWidget()
    row = QHBoxLayout(box)
    row.setContentsMargins(0, 0, 0, 0)
    for w in widgets:
        row.addWidget(w)
    return box


class AttributionView(QWidget):
    """Attribution maps of the ticked methods side by side, for one image and class.

    Given a session, the view follows its explained class (``session.target``) and the
    image's predictions (the class picker), and a class chosen here becomes the session's.
    The explain controller asks :meth:`current_methods` and :meth:`use_selected_layer`
    when :attr:`sigRequested` fires, calls :meth:`set_pending` per method it submits, then
    :meth:`set_attribution` (the one rich setter) or :meth:`set_error` per method as the
    jobs finish. :attr:`results` maps each shown method to its
    ``vizapp.explain.attribution.Attribution``.

    Signals
    -------
    sigRequested()
        What must be computed changed: methods ticked, Grad-CAM layer.
    sigClassChanged(index)
        The user chose the class to explain (an int, or ``None`` for the predicted class).
    """

    sigRequested = Signal()
    sigClassChanged = Signal(object)

    def __init__(self, session=None, parent: QWidget | None = None) -> None:
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
        # The rows of controls wrap (a flow layout) so a narrow dock keeps every box readable.
        methods_row = FlowLayout()
        for key, label in self.methods.items():
            box = QCheckBox(label)
            box.setChecked(key in DEFAULT_METHODS)
            box.toggled.connect(self._methods_changed)
            self.boxes[key] = box
            methods_row.addWidget(box)

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
        class_row = flow_of(_group(QLabel("Explain class:"), self.class_combo),
                            _group(QLabel("or index:"), self.class_edit), self.layer_box)

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
        overlay_row = flow_of(_group(QLabel("Opacity"), self.opacity_slider, self.opacity_label),
                              _group(QLabel("Colours"), self.cmap_combo),
                              _group(QLabel("low"), self.legend, QLabel("high")), self.heat_box)

        self.banner = heading(
            "UNTRAINED model: these maps explain random weights, not learned features", "subheading",
            style=lambda: (f"background: {THEME.colour('untrained_alt')}; color: white;"
                           f" padding: {THEME.px(6):g}px; border-radius: {THEME.px(4):g}px"),
        )
        self.banner.setAlignment(Qt.AlignCenter)
        self.banner.hide()
        self.header = heading("", "title")

        self.panels: dict[str, Panel] = {key: Panel(label) for key, label in self.methods.items()}
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
        if session is not None:
            session.events.model.connect(self._model_changed)
            session.events.predictions.connect(self.set_predictions)
            session.events.target.connect(self.set_target)
            self.sigClassChanged.connect(session.set_target)

    def _model_changed(self, model) -> None:
        self.set_predictions([])  # another model's classes: back to the predicted class
        self.set_untrained(not getattr(model, "trained", True))

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
        """Tick exactly ``methods`` (emits :attr:`sigRequested` once if that changes them)."""
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
        self.sigRequested.emit()

    def _layer_toggled(self, _on: bool) -> None:
        if self.boxes["gradcam"].isChecked():
            self.sigRequested.emit()

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
        """Explain class ``index`` (``None``: the predicted class); emits :attr:`sigClassChanged` if it changed."""
        if index is not None:
            index = int(index)
            if index < 0:
                raise ValueError(f"class index {index} is negative; give 0 or more")
        changed = index != self._target
        self._target = index
        self._fill_classes()
        if changed:
            self._refresh_header()
            self.sigClassChanged.emit(index)

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
            self.legend.setPixmap(to_pixmap(np.repeat(lut[None], 16, axis=0)).scaled(round(THEME.px(160)), round(THEME.px(16))))
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
            panel.set_image(pixels, f"{a.title} · {seconds(a.seconds)}", list(a.notes))
        elif method in self.errors:
            panel.set_text(self.errors[method], f"{self.methods[method]}: failed", error=True)
        elif method in self._pending:
            panel.set_text("computing…")
        else:
            panel.set_text("not computed yet")

    # --- scenes (widgets/controllers/lecture.py) ---------------------------------
    def view_options(self) -> dict:
        """The ticked methods, Grad-CAM's layer choice and the overlay, for a scene (the
        explained class is the session's)."""
        return {"methods": self.current_methods(), "selected_layer": self.use_selected_layer(),
                "opacity": self.opacity_slider.value(), "colormap": self.colormap(),
                "heat_only": self.heat_only()}

    def set_view_options(self, options: dict) -> None:
        """Apply :meth:`view_options`' keys (unknown methods and values are skipped)."""
        from widgets.options import set_check, set_combo, set_slider

        methods = options.get("methods")
        if isinstance(methods, list):
            self.set_methods([m for m in methods if m in self.boxes])
        set_check(self.layer_box, options.get("selected_layer"))
        set_slider(self.opacity_slider, options.get("opacity"))
        set_combo(self.cmap_combo, options.get("colormap"))
        set_check(self.heat_box, options.get("heat_only"))

"""The Feature visualisation dock's parts that need only Qt and numpy: the settings form (preset,
objective, method, steps, size, seed, negative, batch and diversity, the class) and the tiling of
images into one picture with hit-testing (the visualisations of a batch, the top-9 patches, the
layer overview's mosaic).

The form builds a ``vizapp.explain.featurevis_settings.Settings`` (torch-free) from a preset of
``PRESETS`` (the regularisers the paper used: L2 decay, blur, clipping, jitter, scales, rotation,
octaves) with the values of its boxes on top; the view (``widgets/featurevis_view.py``) adds the
objective's layer, channel and class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QSignalBlocker, Signal
from PySide6.QtWidgets import QCheckBox, QDoubleSpinBox, QLabel, QWidget

from widgets.convolution_panels import combo, labelled, spin
from widgets.flow_layout import FlowLayout

__all__ = ["GAP", "OBJECTIVE_TEXT", "SettingsForm", "Tiling", "tile_images"]

#: How each objective reads in the objective menu.
OBJECTIVE_TEXT = {
    "channel": "a channel (its mean activation)",
    "neuron": "a neuron (the channel's centre unit)",
    "class": "a class (its score)",
    "dream": "DeepDream (the layer's L2 norm, on the image)",
}
METHOD_TEXT = {"fourier": "Fourier, decorrelated colour", "pixel": "raw pixels"}
#: The background between tiles (dark grey: the pictures' edges stay visible).
GAP_VALUE = 24
#: Tiles are this many pixels apart, at most, in a tiled picture (a fraction of the tile below that).
GAP = 4


@dataclass(frozen=True)
class Tiling:
    """Where each image of a tiled picture is: ``count`` tiles of ``tile_h x tile_w`` on ``rows x cols``
    with ``gap`` pixels between them, row by row."""

    count: int
    rows: int
    cols: int
    tile_h: int
    tile_w: int
    gap: int

    def origin(self, i: int) -> tuple[int, int]:
        """The top-left ``(x, y)`` of tile ``i``."""
        r, c = divmod(i, self.cols)
        return c * (self.tile_w + self.gap), r * (self.tile_h + self.gap)

    def at(self, x: float, y: float) -> int | None:
        """The tile under picture coordinates ``(x, y)``, or None (a gap, outside, past the last)."""
        if x < 0 or y < 0:
            return None
        c, dx = divmod(int(x), self.tile_w + self.gap)
        r, dy = divmod(int(y), self.tile_h + self.gap)
        if dx >= self.tile_w or dy >= self.tile_h or c >= self.cols or r >= self.rows:
            return None
        i = r * self.cols + c
        return i if i < self.count else None


def tile_images(images, cols: int | None = None, gap: int | None = None) -> tuple[np.ndarray, Tiling]:
    """``images`` (a sequence or ``N x H x W x 3`` uint8, any of them None: left dark) as one RGB
    picture, ``cols`` across (default: as square as it gets), and where each tile is."""
    items = list(images)
    n = max(1, len(items))
    shapes = [np.asarray(a).shape[:2] for a in items if a is not None]
    h, w = (max(s[0] for s in shapes), max(s[1] for s in shapes)) if shapes else (1, 1)
    cols = max(1, min(n, cols if cols else int(np.ceil(np.sqrt(n)))))
    rows = -(-n // cols)
    gap = max(1, min(GAP, h // 16)) if gap is None else gap
    out = np.full((rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap, 3), GAP_VALUE, np.uint8)
    tiling = Tiling(len(items), rows, cols, h, w, gap)
    for i, a in enumerate(items):
        if a is None:
            continue
        a = np.asarray(a, np.uint8)
        if a.ndim == 2:
            a = np.repeat(a[..., None], 3, axis=-1)
        x, y = tiling.origin(i)
        out[y:y + a.shape[0], x:x + a.shape[1]] = a[..., :3]
    return out, tiling


def _double(low: float, high: float, value: float, step: float, tip: str) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(low, high)
    box.setSingleStep(step)
    box.setDecimals(2)
    box.setValue(value)
    box.setToolTip(tip)
    return box


class SettingsForm(QWidget):
    """The visualisation's settings as a wrapping row of controls.

    A preset (``PRESETS``' names) sets every box and the regularisers without a box; a box changed
    afterwards overrides the preset's value. :meth:`settings` is the engine's ``Settings`` without
    the objective's place (layer, channel, class), which the view fills in.

    Signals
    -------
    sigChanged()
        A box or the preset changed.
    """

    sigChanged = Signal()
    #: The boxes' keys, as :meth:`values` and :meth:`set_values` name them.
    KEYS = ("preset", "objective", "method", "steps", "size", "seed", "negative", "batch", "diversity", "class",
            "class_score")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from vizapp.explain import featurevis_settings as featurevis

        self.presets: dict = dict(featurevis.PRESETS)
        self.preset = combo()
        for name in self.presets:
            self.preset.addItem(name, name)
        self.preset.setToolTip("The settings of a paper: Simonyan 2014 (raw pixels, L2 decay), Yosinski 2015 "
                               "(L2 decay, blur, clipping, jitter), Olah 2017 (Fourier, decorrelated colour, "
                               "jitter, scale, rotation), DeepDream (the layer's L2 norm on the image, octaves)")
        self.objective = combo()
        for key in featurevis.OBJECTIVES:
            self.objective.addItem(OBJECTIVE_TEXT.get(key, key), key)
        self.objective.setToolTip("What the image is optimised to excite: the selected channel (or its centre "
                                  "neuron) of the selected layer, a class of the model, or the whole layer "
                                  "(DeepDream, starting from the image on screen)")
        self.method = combo()
        for key in featurevis.METHODS:
            self.method.addItem(METHOD_TEXT.get(key, key), key)
        self.method.setToolTip("Raw pixels (Simonyan, Yosinski) or a Fourier parametrisation with decorrelated "
                               "colour (Olah et al. 2017), which avoids high-frequency noise")
        self.steps = spin(1, 4096, 256, "Optimisation steps")
        self.size = spin(0, 1024, 0, "The optimised image's side in pixels (the model's input size at its minimum)")
        self.size.setSpecialValueText("model's")
        self.seed = spin(0, 2**31 - 1, 0, "The random start and transformations: the same seed and settings "
                                          "give the same image")
        self.negative = QCheckBox("negative")
        self.negative.setToolTip("Minimise instead: what the unit hates")
        self.batch = spin(1, 16, 1, "Images optimised together (with diversity: different ones)")
        self.diversity = _double(0.0, 1000.0, 0.0, 1.0, "Weight of the diversity term over the batch "
                                                        "(lucent's Gram cosine; 0: none)")
        self.target = spin(0, 0, 0, "The class to visualise (follows the class picked in the Predictions dock)")
        self.class_score = combo()
        for key, text in (("log_softmax", "log-probability"), ("logit", "logit")):
            self.class_score.addItem(text, key)
        self.class_score.setToolTip("What is maximised for a class: its log-probability (the image is classified as "
                                    "the class) or its raw logit (Simonyan's score: stronger pictures, though the other "
                                    "classes may grow with it)")
        self.class_name = QLabel("")
        for box in (self.preset,):
            box.activated.connect(lambda _i: self.apply_preset(self.preset.currentData()))
        for box in (self.objective, self.method, self.class_score):
            box.activated.connect(lambda _i: self._changed())
        for box in (self.steps, self.size, self.seed, self.batch, self.target):
            box.valueChanged.connect(lambda _v: self._changed())
        self.diversity.valueChanged.connect(lambda _v: self._changed())
        self.negative.toggled.connect(lambda _on: self._changed())
        self.class_box = labelled("class", self.target)
        self.score_box = labelled("score", self.class_score)
        row = FlowLayout(self)
        for w in (labelled("preset", self.preset), labelled("objective", self.objective),
                  labelled("method", self.method), labelled("steps", self.steps), labelled("size", self.size),
                  labelled("seed", self.seed), self.negative, labelled("batch", self.batch),
                  labelled("diversity", self.diversity), self.class_box, self.class_name, self.score_box):
            row.addWidget(w)
        first = "Olah 2017" if "Olah 2017" in self.presets else next(iter(self.presets))
        self.apply_preset(first, emit=False)

    # --- the preset and the boxes ---------------------------------------------------------
    def apply_preset(self, name: str, emit: bool = True) -> None:
        """Set every box (and the regularisers without one) from ``PRESETS[name]``; the objective
        is the preset's only for DeepDream, or when leaving DeepDream (a channel or class stays one)."""
        if name not in self.presets:
            return
        p = self.presets[name]
        current = self.objective.currentData()
        objective = p.objective if p.objective == "dream" or current in (None, "dream") else current
        boxes = (self.preset, self.objective, self.method, self.steps, self.size, self.seed, self.negative,
                 self.batch, self.diversity)
        blockers = [QSignalBlocker(b) for b in boxes]
        self.preset.setCurrentIndex(self.preset.findData(name))
        self.objective.setCurrentIndex(max(0, self.objective.findData(objective)))
        self.method.setCurrentIndex(max(0, self.method.findData(p.method)))
        self.steps.setValue(p.steps)
        self.size.setValue(p.size or 0)
        self.seed.setValue(p.seed)
        self.negative.setChecked(p.negative)
        self.batch.setValue(p.batch)
        self.diversity.setValue(p.diversity)
        del blockers
        self._changed(emit)

    def set_objective(self, objective: str) -> None:
        """Switch the objective (the selection moved to a class, or from a class to a channel)."""
        row = self.objective.findData(objective)
        if row >= 0 and row != self.objective.currentIndex():
            self.objective.setCurrentIndex(row)
            self._changed()

    def set_classes(self, names: list[str] | None) -> None:
        """The model's classes (None or empty: no class objective)."""
        self._names = list(names or [])
        with QSignalBlocker(self.target):
            self.target.setRange(0, max(0, len(self._names) - 1))
        self._name_class()

    def set_class(self, index: int) -> None:
        if 0 <= index <= self.target.maximum() and index != self.target.value():
            self.target.setValue(index)  # -> sigChanged

    def _name_class(self) -> None:
        names = getattr(self, "_names", [])
        i = self.target.value()
        self.class_name.setText(names[i] if 0 <= i < len(names) else "")

    def _changed(self, emit: bool = True) -> None:
        objective = self.objective.currentData()
        self.class_box.setVisible(objective == "class")
        self.class_name.setVisible(objective == "class")
        self.score_box.setVisible(objective == "class")
        self.diversity.setEnabled(self.batch.value() > 1)
        self._name_class()
        if emit:
            self.sigChanged.emit()

    def settings(self, model=None, **changes):
        """The engine's ``Settings``: ``featurevis.preset`` of the chosen preset (its jitter scaled to
        the image ``model`` optimises), with the boxes' values and ``changes`` (the objective's layer,
        channel, class) on top."""
        from vizapp.explain import featurevis_settings as featurevis

        values = {"objective": self.objective.currentData(), "method": self.method.currentData(),
                  "steps": self.steps.value(), "size": self.size.value() or None, "seed": self.seed.value(),
                  "negative": self.negative.isChecked(), "batch": self.batch.value(),
                  "diversity": float(self.diversity.value()) if self.batch.value() > 1 else 0.0,
                  "class_score": self.class_score.currentData()}
        return featurevis.preset(self.preset.currentData(), model, **{**values, **changes})

    # --- scenes ------------------------------------------------------------------------------
    def values(self) -> dict:
        """The boxes as plain JSON values (:attr:`KEYS`)."""
        return {"preset": self.preset.currentData(), "objective": self.objective.currentData(),
                "method": self.method.currentData(), "steps": self.steps.value(), "size": self.size.value(),
                "seed": self.seed.value(), "negative": self.negative.isChecked(), "batch": self.batch.value(),
                "diversity": float(self.diversity.value()), "class": self.target.value(),
                "class_score": self.class_score.currentData()}

    def set_values(self, options: dict) -> None:
        """Apply :meth:`values`' keys: the preset first, then the boxes given (unknown keys and
        values are skipped)."""
        from widgets.options import set_check, set_combo, set_slider

        if isinstance(options.get("preset"), str) and options["preset"] in self.presets:
            self.apply_preset(options["preset"], emit=False)
        boxes = (self.objective, self.method, self.steps, self.size, self.seed, self.negative, self.batch,
                 self.diversity, self.target, self.class_score)
        blockers = [QSignalBlocker(b) for b in boxes]
        set_combo(self.objective, options.get("objective"))
        set_combo(self.class_score, options.get("class_score"))
        set_combo(self.method, options.get("method"))
        for key, box in (("steps", self.steps), ("size", self.size), ("seed", self.seed), ("batch", self.batch),
                         ("class", self.target)):
            set_slider(box, options.get(key))
        set_check(self.negative, options.get("negative"))
        d = options.get("diversity")
        if isinstance(d, (int, float)) and not isinstance(d, bool):
            self.diversity.setValue(float(d))
        del blockers
        self._changed()


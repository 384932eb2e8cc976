"""The training lab's settings form and its augmentation preview.

:class:`TrainingForm` holds every setting of a run (data, model, loss, optimiser,
augmentations) and turns them into a :class:`~vizapp.training.config.TrainConfig`
(:meth:`~TrainingForm.config`) and back (:meth:`~TrainingForm.set_config`). Below the
augmentations it previews eight images of the set, plain and augmented: a function job
of kind :data:`PREVIEW_KIND` on the window's :class:`~widgets.bridge.JobRunner`, on a
lane of its own (loading a set must not hold up the feature maps), the latest request
winning. ``preview`` seeds torch's global generator for a moment, so it takes a lock
that a run holds from start to end, and the form asks for no preview while it is
locked (a run is on).
"""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QPixmap, QValidator
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QLabel,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from widgets.common import to_pixmap
from widgets.theme import THEME

if TYPE_CHECKING:
    from vizapp.training.config import TrainConfig
    from widgets.bridge import JobRunner

__all__ = ["TrainingForm", "PREVIEW_KIND", "FOLDER_ITEM"]

#: The runner's job kind of the augmentation preview (on the lane ``preview``).
PREVIEW_KIND = "training:preview"
FOLDER_ITEM = "__folder__"
FREEZE = [("all", "Freeze the whole backbone"), ("some", "Train the last stage"), ("none", "Train everything")]
OPTIMIZERS = [("adam", "Adam"), ("sgd", "SGD with momentum 0.9")]


def _loss(key: str):
    """The loss module of ``key`` (``vizapp.training.losses.<key>``): its ``OPTIONS`` say which
    rows of the form it reads."""
    from vizapp.training.losses import loss_module

    return loss_module(key)


def preview_job(spec: str, size: int | None, names: tuple[str, ...], seed: int, cache: dict,
                rng_lock: threading.Lock, *, progress, cancel) -> dict:
    """On the preview lane: 8 images of the set, plain and augmented (same images)."""
    from vizapp.training.augmentations import build_augment, preview
    from vizapp.training.trainsets import load_trainset

    key = (spec, size)
    ts = cache.get(key)
    if ts is None:
        # A few dozen images are all a preview needs (the built-in sets load whole anyway).
        small = spec == "shapes" or spec not in ("digits", "mnist", "fashion-mnist", "cifar10")
        ts = load_trainset(spec, size=size, n=64 if small else None, seed=0, progress=progress, cancel=cancel)
        cache.clear()
        cache[key] = ts
    cancel.check()
    augment = build_augment(list(names), ts.size, ts.channels) if names else None
    while not rng_lock.acquire(timeout=0.1):  # a run holds it: preview seeds torch's global generator
        cancel.check()
    try:
        plain = preview(ts, None, k=8, seed=seed, cols=4)
        augmented = preview(ts, augment, k=8, seed=seed, cols=4) if augment is not None else None
    finally:
        rng_lock.release()
    return {"key": (spec, size, names, seed), "plain": plain, "augmented": augmented, "name": ts.name,
            "classes": len(ts.classes), "channels": ts.channels, "size": ts.size}


class _LogSpinBox(QDoubleSpinBox):
    """A spin box for rates: shown as ``0.001`` or ``1e-05``, its arrows walk 1-2-5 per decade."""

    def textFromValue(self, value: float) -> str:  # noqa: N802 - Qt override
        return f"{value:g}"

    def valueFromText(self, text: str) -> float:  # noqa: N802 - Qt override
        try:
            return float(text)
        except ValueError:
            return self.value()

    def validate(self, text: str, pos: int):
        try:
            value = float(text)
        except ValueError:
            return QValidator.Intermediate, text, pos
        ok = self.minimum() <= value <= self.maximum()
        return (QValidator.Acceptable if ok else QValidator.Intermediate), text, pos

    def stepBy(self, steps: int) -> None:  # noqa: N802 - Qt override
        value = self.value()
        if value <= 0:
            self.setValue(self.minimum() if steps < 0 else 1e-5)
            return
        for _ in range(abs(steps)):
            exponent = np.floor(np.log10(value))
            mantissa = round(value / 10**exponent, 6)
            ladder = [1.0, 2.0, 5.0, 10.0]
            if steps > 0:
                nxt = next((m for m in ladder if m > mantissa + 1e-9), 10.0)
            else:
                nxt = next((m for m in reversed([0.5, *ladder]) if m < mantissa - 1e-9), 0.5)
            value = nxt * 10**exponent
        self.setValue(float(f"{value:.6g}"))


def _spin(low: float, high: float, step: float | None = None, cls=QSpinBox, tip: str = ""):
    """A spin box with its range, step and tool tip (two decimals for a ``QDoubleSpinBox``)."""
    box = cls()
    box.setRange(low, high)
    if step is not None:
        box.setSingleStep(step)
    if tip:
        box.setToolTip(tip)
    return box


class TrainingForm(QScrollArea):
    """The settings of the next run (a scrolling group box) and the augmentation preview.

    Parameters
    ----------
    runner : JobRunner
        Runs the preview (kind :data:`PREVIEW_KIND`, routed to the lane ``preview``).
    rng_lock : threading.Lock
        Held by a run from start to end; the preview takes it to seed torch's generator.
    """

    def __init__(self, runner: JobRunner, rng_lock: threading.Lock, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from models import SMALL_MODELS
        from vizapp.training.augmentations import AUGMENTATIONS
        from vizapp.training.config import TrainConfig
        from vizapp.training.losses import LOSSES
        from vizapp.training.trainsets import DATASETS

        self.runner = runner
        self._rng_lock = rng_lock
        self._datasets = DATASETS
        self._base = TrainConfig()  # the fields the form does not show come from here
        self._locked = False
        self._closing = False
        self._preview_cache: dict = {}
        self._preview: dict | None = None
        self._folder_previous = 0
        self._lr_model: str | None = None  # the model whose default learning rate the box may hold

        self.dataset = QComboBox()
        for name in DATASETS:
            self.dataset.addItem(name, name)
        self.dataset.addItem("Folder…", FOLDER_ITEM)
        self.dataset.setItemData(self.dataset.count() - 1, "A folder with one sub-folder of images per class",
                                 Qt.ToolTipRole)
        self.dataset.activated.connect(self._dataset_activated)
        self.image_size = _spin(0, 512, 8, tip="Image side; default: 32 for shapes and digits, the set's own, "
                                               "64 for folders")
        self.image_size.setSpecialValueText("default")
        self.image_size.setSuffix(" px")
        self.limit = _spin(0, 1_000_000, 500, tip="At most this many images (a class-balanced subset); shapes: "
                                                  "how many to draw (all = 12000)")
        self.limit.setSpecialValueText("all")
        self.lecture = QPushButton("Lecture demo")
        self.lecture.setToolTip("Fill in a short run that learns visibly on this dataset: about 20-30 s on a "
                                "two-core CPU (the seed stays as it is)")
        self.lecture.clicked.connect(lambda: self.apply_preset("lecture"))
        self.model = QComboBox()
        for key, text in SMALL_MODELS.items():
            self.model.addItem(f"{key} — {text.split(':')[0].split(' (')[0].split(' as ')[0]}", key)
            self.model.setItemData(self.model.count() - 1, text, Qt.ToolTipRole)
        self.model.currentIndexChanged.connect(self._model_changed)
        self.freeze = QComboBox()
        for key, text in FREEZE:
            self.freeze.addItem(text, key)
        self.freeze.setToolTip("Transfer learning: how much of the hub model's backbone stays fixed")
        self.loss = QComboBox()
        for key, text in LOSSES.items():
            self.loss.addItem(text, key)
        self.loss.currentIndexChanged.connect(self._loss_changed)
        self.margin = _spin(0.01, 10.0, 0.05, QDoubleSpinBox,
                            "The margin m: negative pairs further apart than m cost nothing")
        self.temperature = _spin(0.01, 5.0, 0.05, QDoubleSpinBox,
                                 "InfoNCE's temperature: lower sharpens the softmax over the batch")
        self.optimizer = QComboBox()
        for key, text in OPTIMIZERS:
            self.optimizer.addItem(text, key)
        self.lr = _LogSpinBox()
        self.lr.setDecimals(6)  # before the range, which Qt rounds to the decimals
        self.lr.setRange(1e-6, 10.0)
        self.lr.setToolTip("Learning rate (the arrows step 1-2-5 per decade)")
        self.batch = _spin(2, 4096, 16)
        self.weight_decay = _LogSpinBox()
        self.weight_decay.setDecimals(6)
        self.weight_decay.setRange(0.0, 1.0)
        self.epochs = _spin(1, 1000)
        self.seed = _spin(0, 2**31 - 1)
        self.augment_boxes: dict[str, QCheckBox] = {}
        augment_grid = QGridLayout()
        augment_grid.setContentsMargins(0, 0, 0, 0)
        for i, (key, text) in enumerate(AUGMENTATIONS.items()):
            box = QCheckBox(key)
            box.setToolTip(text)
            box.toggled.connect(self._schedule_preview)
            self.augment_boxes[key] = box
            augment_grid.addWidget(box, i // 2, i % 2)
        self.preview_label = QLabel()
        self.preview_label.setAlignment(Qt.AlignCenter)
        self.preview_label.setMinimumHeight(round(THEME.px(140)))
        self.preview_label.setStyleSheet(f"background: {THEME.colour('background')};")
        self.preview_caption = QLabel("")
        self.preview_caption.setWordWrap(True)
        for combo in (self.dataset, self.model, self.loss):
            combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(14)
        for spin in (self.image_size, self.seed):
            spin.valueChanged.connect(self._schedule_preview)

        self.form = QFormLayout()
        for label, widget in (("&Data", self.dataset), ("Image size", self.image_size), ("Images", self.limit),
                              ("&Model", self.model), ("Backbone", self.freeze), ("&Loss", self.loss),
                              ("Margin", self.margin), ("Temperature", self.temperature),
                              ("Optimiser", self.optimizer), ("Learning rate", self.lr), ("Batch size", self.batch),
                              ("Weight decay", self.weight_decay), ("Epochs", self.epochs), ("Seed", self.seed)):
            self.form.addRow(label, widget)
        self.form.insertRow(1, "Preset", self.lecture)
        self.settings = QGroupBox("Settings")
        settings_layout = QVBoxLayout(self.settings)
        settings_layout.addLayout(self.form)
        settings_layout.addWidget(QLabel("Augmentations"))
        settings_layout.addLayout(augment_grid)
        settings_layout.addWidget(self.preview_label)
        settings_layout.addWidget(self.preview_caption)
        settings_layout.addStretch(1)
        self.setWidget(self.settings)
        self.setWidgetResizable(True)
        # As wide as the settings need (they scroll down, never sideways), the bar included.
        self.setMinimumWidth(self.settings.minimumSizeHint().width() + self.verticalScrollBar().sizeHint().width()
                             + 2 * self.frameWidth())
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)

        self._preview_timer = QTimer(self)
        self._preview_timer.setSingleShot(True)
        self._preview_timer.setInterval(150)
        self._preview_timer.timeout.connect(self._request_preview)
        runner.set_lane(PREVIEW_KIND, "preview")
        runner.sigFinished.connect(self._preview_finished)
        runner.sigFailed.connect(self._preview_failed)
        runner.sigProgress.connect(self._preview_progress)
        self.set_config(self._base)

    # --- the settings -------------------------------------------------------------------
    def config(self) -> TrainConfig:
        """The :class:`~vizapp.training.config.TrainConfig` of the form (``out`` unset);
        fields the form does not show come from the last :meth:`set_config`."""
        names = [k for k, box in self.augment_boxes.items() if box.isChecked()]
        loss = self.loss.currentData()
        options = _loss(loss).OPTIONS
        base = self._base
        return replace(
            base,
            dataset=self.current_dataset(),
            size=self.image_size.value() or None,
            n=self.limit.value() or None,
            model=self.model.currentData(),
            freeze=self.freeze.currentData(),
            loss=loss,
            margin=self.margin.value() if "margin" in options else None,
            temperature=self.temperature.value() if "temperature" in options else base.temperature,
            optimizer=self.optimizer.currentData(),
            lr=self.lr.value(),
            batch_size=self.batch.value(),
            weight_decay=self.weight_decay.value(),
            epochs=self.epochs.value(),
            seed=self.seed.value(),
            augment=names,
            out=None,
            resume=None,
        )

    def set_config(self, config: TrainConfig) -> None:
        """Fill the form from ``config`` (a folder dataset is added to the data menu; a
        ``hub:`` model not offered yet is added to the model menu; no learning rate: the
        model's default) and keep its other fields for the next run."""
        from vizapp.training.presets import default_lr

        self._base = replace(config, augment=list(config.augment), options=dict(config.options))
        spec = str(config.dataset)
        index = self.dataset.findData(spec)
        if index < 0:
            index = self._add_folder(spec)
        self.dataset.setCurrentIndex(index)
        self._folder_previous = index
        self._dataset_changed()
        self.image_size.setValue(config.size or 0)
        self.limit.setValue(config.n or 0)
        model = self.model.findData(config.model)
        if model < 0:
            self.model.addItem(config.model, config.model)
            model = self.model.count() - 1
        self.model.setCurrentIndex(model)
        self.freeze.setCurrentIndex(max(0, self.freeze.findData(config.freeze)))
        self.loss.setCurrentIndex(max(0, self.loss.findData(config.loss)))
        self._loss_changed()
        if config.margin is not None:
            self.margin.setValue(config.margin)
        self.temperature.setValue(config.temperature)
        self.optimizer.setCurrentIndex(max(0, self.optimizer.findData(config.optimizer)))
        self.lr.setValue(config.lr if config.lr is not None else default_lr(config.model))
        self.batch.setValue(config.batch_size)
        self.weight_decay.setValue(config.weight_decay)
        self.epochs.setValue(config.epochs)
        self.seed.setValue(config.seed)
        for key, box in self.augment_boxes.items():
            box.blockSignals(True)
            box.setChecked(key in config.augment)
            box.blockSignals(False)
        self._model_changed()
        self._schedule_preview()

    def apply_preset(self, name: str = "lecture") -> None:
        """Fill the form with preset ``name`` (:mod:`vizapp.training.presets`) for the chosen
        dataset; the seed and the fields a preset does not set stay. Folders have no preset
        (the button is disabled for them)."""
        from vizapp.training.presets import apply_preset

        self.set_config(apply_preset(self.config(), name))

    def set_hub_models(self, models: list[tuple[str, str]]) -> None:
        """Offer hub models for transfer learning: ``[(registry name, title), ...]`` appear
        as ``hub:<name>`` in the model menu (replacing the ones offered before)."""
        current = self.model.currentData()
        for i in reversed(range(self.model.count())):
            if str(self.model.itemData(i)).startswith("hub:"):
                self.model.removeItem(i)
        for name, title in models:
            self.model.addItem(f"hub: {title}", f"hub:{name}")
            self.model.setItemData(self.model.count() - 1, f"Transfer learning from {name}: a new head; "
                                   "freeze all, some or none of the backbone", Qt.ToolTipRole)
        index = self.model.findData(current)
        self.model.setCurrentIndex(max(0, index))

    def current_dataset(self) -> str:
        """The chosen set's name or folder path."""
        data = self.dataset.currentData()
        return self._datasets[0] if data == FOLDER_ITEM else str(data)

    def is_builtin(self, dataset: str) -> bool:
        """Whether ``dataset`` names a built-in set (not a folder)."""
        return dataset in self._datasets

    def set_locked(self, locked: bool) -> None:
        """Lock the form while a run is on (no preview then); unlocking refreshes the preview."""
        self._locked = locked
        self.settings.setEnabled(not locked)
        self._model_changed()
        if locked:
            self._preview_timer.stop()
            self.runner.cancel(PREVIEW_KIND)
        else:
            self._schedule_preview()

    def shutdown(self) -> None:
        """Ask for no more previews and abandon the one running."""
        self._closing = True
        self._preview_timer.stop()
        self.runner.cancel(PREVIEW_KIND)

    def _add_folder(self, path: str) -> int:
        index = self.dataset.findData(path)
        if index >= 0:
            return index
        at = self.dataset.count() - 1  # before "Folder…"
        self.dataset.insertItem(at, Path(path).name or path, path)
        self.dataset.setItemData(at, path, Qt.ToolTipRole)
        return at

    def _dataset_activated(self, index: int) -> None:
        if self.dataset.itemData(index) == FOLDER_ITEM:
            folder = QFileDialog.getExistingDirectory(self, "A folder with one sub-folder per class")
            if not folder:
                self.dataset.setCurrentIndex(self._folder_previous)
                return
            index = self._add_folder(folder)
            self.dataset.setCurrentIndex(index)
        self._folder_previous = index
        self._dataset_changed()
        self._schedule_preview()

    def _dataset_changed(self) -> None:
        """A preset exists for the built-in sets only."""
        self.lecture.setEnabled(self.dataset.currentData() in self._datasets)

    def _model_changed(self, _index: int = 0) -> None:
        from vizapp.training.presets import default_lr

        model = str(self.model.currentData())
        self.freeze.setEnabled(model.startswith("hub:") and not self._locked)
        # A learning rate left at the previous model's default follows the model (2e-3 for
        # the small CNNs, 1e-3 for the ViT and hub models); one the user typed stays.
        previous, self._lr_model = self._lr_model, model
        if previous is not None and previous != model and abs(self.lr.value() - default_lr(previous)) < 1e-12:
            self.lr.setValue(default_lr(model))

    def _loss_changed(self, _index: int = 0) -> None:
        loss = _loss(self.loss.currentData())  # what the loss reads, from its module
        self.form.setRowVisible(self.margin, "margin" in loss.OPTIONS)
        self.form.setRowVisible(self.temperature, "temperature" in loss.OPTIONS)
        if "margin" in loss.OPTIONS:
            self.margin.setValue(loss.DEFAULT_MARGIN)

    def loss_options_visible(self) -> dict[str, bool]:
        """Which loss options the form shows: ``{"margin": bool, "temperature": bool}``."""
        return {"margin": self.margin.isVisibleTo(self), "temperature": self.temperature.isVisibleTo(self)}

    # --- the augmentation preview ------------------------------------------------------
    def _schedule_preview(self, *_args) -> None:
        if not self._closing:
            self._preview_timer.start()

    def showEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        self.refresh_preview()

    def refresh_preview(self) -> None:
        """Compute the augmentation preview if it is out of date. It waits until the form
        is on screen (a hidden dock tab costs nothing at start-up)."""
        self._schedule_preview()

    def _request_preview(self) -> None:
        if self._locked or self._closing:
            return  # the form is locked during a run; the last preview stays
        if not self.isVisible() or self.visibleRegion().isEmpty():
            return  # not on screen (a hidden dock tab is still "visible"): refresh_preview asks again
        names = tuple(k for k, box in self.augment_boxes.items() if box.isChecked())
        key = (self.current_dataset(), self.image_size.value() or None, names, self.seed.value())
        if self._preview is not None and self._preview.get("key") == key:
            return
        self.preview_caption.setText("loading the preview…")
        self.runner.submit(PREVIEW_KIND, preview_job, key[0], key[1], names, key[3], self._preview_cache,
                           self._rng_lock)

    def _preview_progress(self, kind: str, _done: int, _total: int, text: str) -> None:
        if kind == PREVIEW_KIND:
            self.preview_caption.setText(text)

    def _preview_finished(self, kind: str, result: dict) -> None:
        if kind != PREVIEW_KIND:
            return
        self._preview = result
        plain, augmented = result["plain"], result["augmented"]
        grid = plain if augmented is None else np.concatenate(
            [plain, np.full((6, plain.shape[1], 3), 32, np.uint8), augmented])
        pixmap = to_pixmap(grid)
        factor = max(1, min(4, 300 // max(1, grid.shape[1])))
        if factor > 1:
            pixmap = pixmap.scaled(grid.shape[1] * factor, grid.shape[0] * factor, Qt.KeepAspectRatio,
                                   Qt.FastTransformation)
        self.preview_label.setPixmap(pixmap)
        what = "above: the images; below: augmented" if augmented is not None else "tick augmentations to preview them"
        self.preview_caption.setText(f"{result['name']}, {result['classes']} classes: {what}")

    def _preview_failed(self, kind: str, message: str) -> None:
        if kind != PREVIEW_KIND:
            return
        self._preview = None
        self.preview_label.setPixmap(QPixmap())
        self.preview_caption.setText(f"No preview: {message}")

    def preview_image(self) -> np.ndarray | None:
        """The augmented preview grid shown (the plain grid when no augmentation is ticked)."""
        if self._preview is None:
            return None
        return self._preview["augmented"] if self._preview["augmented"] is not None else self._preview["plain"]

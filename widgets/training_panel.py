"""The Training dock: train a small network live and watch it learn.

A settings form (data, model, loss, optimiser, augmentations with a preview), the run
buttons, and four live views fed by :class:`vizapp.training.trainer.Trainer`'s records: loss and
accuracy curves, the first layer's kernels, the validation embedding and the confusion
matrix. The four views are widgets of :mod:`widgets.training_views`; the panel
composes them and decides when each is drawn.

Threads
-------
- The run has a daemon thread of its own (``vizapp-train``), not the window's
  :class:`~widgets.bridge.JobRunner`, whose single worker it would block for minutes.
  The thread builds the :class:`~vizapp.training.trainer.Trainer` (which loads the data),
  iterates ``run(control)`` and sends each record to the GUI thread through a queued
  signal. Pause, resume, stop and "checkpoint now" go to its
  :class:`~vizapp.training.trainer.TrainControl`.
- The GUI thread never draws per record: records queue up and a single-shot timer
  draws them at most every :data:`REDRAW_MS` (persistent items, ``setData`` /
  ``setImage``), so painting costs training little however fast steps come.
- The augmentation preview (data loading and ``augmentations.preview``) runs on a private
  :class:`~widgets.bridge.JobRunner` (latest request wins). ``preview`` seeds torch's
  global generator for a moment, so it takes a lock that the run holds from start to
  end, and the panel asks for no preview while a run is on (the form is locked then).

Messages for the status bar go through :data:`vizapp.core.notifications.notification_manager`
(errors are also shown in the panel). The window calls :meth:`TrainingPanel.shutdown` on
close, connects ``sigOpenCheckpoint`` (load the checkpoint in the model hub), and may
offer hub models for transfer learning with :meth:`TrainingPanel.set_hub_models`.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QFontMetrics, QPixmap, QValidator
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from vizapp.core.errors import Cancelled, UserError
from vizapp.core.jobs import CancelToken
from vizapp.core.notifications import notification_manager
from widgets.bridge import JobRunner
from widgets.common import heading, to_pixmap
from widgets.theme import THEME, bind_font
from widgets.training_views import (
    BACKGROUND,
    TRAIN_COLOUR,  # noqa: F401
    VAL_COLOUR,  # noqa: F401
    ConfusionView,
    CurvesView,
    EmbeddingScatter,
    KernelView,
    kernel_mosaic,
)

if TYPE_CHECKING:
    from vizapp.training.config import TrainConfig

__all__ = ["TrainingPanel", "kernel_mosaic", "REDRAW_MS"]
# kernel_mosaic and the style constants (F401 above) live in widgets.training_views since
# the views moved there; they stay importable from here.

log = logging.getLogger(__name__)

#: The live views are redrawn at most this often (milliseconds), never per record.
REDRAW_MS = 100
#: The delay before the next picture view when several changed at once.
STAGGER_MS = 30
#: The views drawn one per tick, in this order.
PICTURE_VIEWS = ("prepare_embedding", "prepare_confusion", "kernels", "embedding", "confusion")
FOLDER_ITEM = "__folder__"
FREEZE = [("all", "Freeze the whole backbone"), ("some", "Train the last stage"), ("none", "Train everything")]
OPTIMIZERS = [("adam", "Adam"), ("sgd", "SGD with momentum 0.9")]


def _default_runs_dir() -> Path:
    from vizapp.core.paths import runs_dir

    return runs_dir()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.]+", "_", text).strip("_") or "run"


def _preview_job(spec: str, size: int | None, names: tuple[str, ...], seed: int, cache: dict,
                 rng_lock: threading.Lock, *, progress, cancel) -> dict:
    """On the preview worker: 8 images of the set, plain and augmented (same images)."""
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


class TrainingPanel(QWidget):
    """Settings, run buttons and live views of one training run at a time.

    Parameters
    ----------
    runs_dir : path, optional
        Where each run gets its folder ``<dataset>-<model>-<loss>-<YYYYmmdd-HHMMSS>``
        (checkpoints: ``model.safetensors``, ``card.json``, ``train_state.pt``).
        Default ``$VIZAPP_RUNS``, else the app data folder's ``runs``.

    Signals
    -------
    sigOpenCheckpoint(path)
        "Open in the app" was pressed: ``path`` is the latest checkpoint folder.
    sigRunning(running)
        A run started (True) or ended (False).
    """

    sigOpenCheckpoint = Signal(str)
    sigRunning = Signal(bool)
    _sigRecord = Signal(int, object)  # run serial, record (queued from the run thread)
    _sigProgress = Signal(int, str)
    _sigRunDone = Signal(int, str, bool)  # run serial, message, error

    def __init__(self, runs_dir: str | Path | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from models.small import SMALL_MODELS
        from vizapp.training.augmentations import AUGMENTATIONS
        from vizapp.training.config import TrainConfig
        from vizapp.training.losses import LOSSES
        from vizapp.training.trainsets import DATASETS

        self.runs_dir = Path(runs_dir) if runs_dir is not None else _default_runs_dir()
        self._datasets = DATASETS
        self._base = TrainConfig()  # the fields the form does not show come from here
        self._serial = 0
        self._thread: threading.Thread | None = None
        self._control = None
        self._cancel: CancelToken | None = None
        self._closing = threading.Event()
        self._rng_lock = threading.Lock()
        self._running = False
        self._run_config: TrainConfig | None = None
        self._pending: list[dict] = []
        self._dirty: set[str] = set()
        self._preview_cache: dict = {}
        self._preview: dict | None = None
        self._folder_previous = 0
        self._reset_state()

        # --- the form -------------------------------------------------------------
        self.dataset = QComboBox()
        for name in DATASETS:
            self.dataset.addItem(name, name)
        self.dataset.addItem("Folder…", FOLDER_ITEM)
        self.dataset.setItemData(self.dataset.count() - 1, "A folder with one sub-folder of images per class",
                                 Qt.ToolTipRole)
        self.dataset.activated.connect(self._dataset_activated)
        self.image_size = QSpinBox()
        self.image_size.setRange(0, 512)
        self.image_size.setSingleStep(8)
        self.image_size.setSpecialValueText("default")
        self.image_size.setSuffix(" px")
        self.image_size.setToolTip("Image side; default: 32 for shapes and digits, the set's own, 64 for folders")
        self.limit = QSpinBox()
        self.limit.setRange(0, 1_000_000)
        self.limit.setSingleStep(500)
        self.limit.setSpecialValueText("all")
        self.limit.setToolTip("At most this many images (a class-balanced subset); shapes: how many to draw "
                              "(all = 6000)")
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
        self.margin = QDoubleSpinBox()
        self.margin.setRange(0.01, 10.0)
        self.margin.setSingleStep(0.05)
        self.margin.setToolTip("The margin m: negative pairs further apart than m cost nothing")
        self.temperature = QDoubleSpinBox()
        self.temperature.setRange(0.01, 5.0)
        self.temperature.setSingleStep(0.05)
        self.temperature.setToolTip("InfoNCE's temperature: lower sharpens the softmax over the batch")
        self.optimizer = QComboBox()
        for key, text in OPTIMIZERS:
            self.optimizer.addItem(text, key)
        self.lr = _LogSpinBox()
        self.lr.setDecimals(6)
        self.lr.setRange(1e-6, 10.0)
        self.lr.setToolTip("Learning rate (the arrows step 1-2-5 per decade)")
        self.batch = QSpinBox()
        self.batch.setRange(2, 4096)
        self.batch.setSingleStep(16)
        self.weight_decay = _LogSpinBox()
        self.weight_decay.setDecimals(6)
        self.weight_decay.setRange(0.0, 1.0)
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 1000)
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
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
        self.preview_label.setMinimumHeight(140)
        self.preview_label.setStyleSheet(f"background: {BACKGROUND};")
        self.preview_caption = QLabel("")
        self.preview_caption.setWordWrap(True)
        for combo in (self.dataset, self.model, self.loss):
            combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(16)
        for spin in (self.image_size, self.seed):
            spin.valueChanged.connect(self._schedule_preview)

        self.form = QFormLayout()
        self.form.addRow("&Data", self.dataset)
        self.form.addRow("Image size", self.image_size)
        self.form.addRow("Images", self.limit)
        self.form.addRow("&Model", self.model)
        self.form.addRow("Backbone", self.freeze)
        self.form.addRow("&Loss", self.loss)
        self.form.addRow("Margin", self.margin)
        self.form.addRow("Temperature", self.temperature)
        self.form.addRow("Optimiser", self.optimizer)
        self.form.addRow("Learning rate", self.lr)
        self.form.addRow("Batch size", self.batch)
        self.form.addRow("Weight decay", self.weight_decay)
        self.form.addRow("Epochs", self.epochs)
        self.form.addRow("Seed", self.seed)
        self.settings = QGroupBox("Settings")
        settings_layout = QVBoxLayout(self.settings)
        settings_layout.addLayout(self.form)
        settings_layout.addWidget(QLabel("Augmentations"))
        settings_layout.addLayout(augment_grid)
        settings_layout.addWidget(self.preview_label)
        settings_layout.addWidget(self.preview_caption)
        settings_layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidget(self.settings)
        scroll.setWidgetResizable(True)
        scroll.setMinimumWidth(330)

        # --- buttons and status ---------------------------------------------------
        self.start_button = QPushButton("&Start")
        self.pause_button = QPushButton("&Pause")
        self.stop_button = QPushButton("S&top")
        self.checkpoint_button = QPushButton("&Checkpoint now")
        self.open_button = QPushButton("&Open in the app")
        self.start_button.setToolTip("Train with these settings (Alt+S)")
        self.pause_button.setToolTip("Pause or resume the run (Alt+P / Alt+R)")
        self.stop_button.setToolTip("Stop the run; it saves a checkpoint first (Alt+T)")
        self.checkpoint_button.setToolTip("Save the weights now (Alt+C); a paused run saves when it resumes")
        self.open_button.setToolTip("Load the latest checkpoint in the model hub, so every view inspects it (Alt+O)")
        self.start_button.clicked.connect(self.start)
        self.pause_button.clicked.connect(self.toggle_pause)
        self.stop_button.clicked.connect(self.stop)
        self.checkpoint_button.clicked.connect(self.checkpoint_now)
        self.open_button.clicked.connect(self.open_checkpoint)
        buttons = QHBoxLayout()
        for b in (self.start_button, self.pause_button, self.stop_button, self.checkpoint_button, self.open_button):
            bind_font(b, "body", bold=b is self.start_button)
            buttons.addWidget(b)
        buttons.addStretch(1)
        self.status = heading("Ready: choose the settings and press Start", "heading")
        self.detail = QLabel("")
        bind_font(self.detail, "small")
        self.detail.setWordWrap(True)
        self.detail.setTextInteractionFlags(Qt.TextSelectableByMouse)
        # Text that changes every tick must not change the labels' size: that would re-lay
        # out (and repaint) every plot below them.
        self.status.setWordWrap(False)
        self._apply_theme()
        THEME.changed.connect(self._apply_theme)
        for label in (self.status, self.detail):
            label.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Fixed)
        self.error = QLabel("")
        self.error.setWordWrap(True)
        bind_font(self.error, "body", True, style=lambda: f"color: {THEME.colour('error')};")
        self.error.setVisible(False)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setTextVisible(True)
        self.progress.setFormat("%v / %m steps")

        # --- live views -----------------------------------------------------------
        self.curves_view = CurvesView()
        self.kernel_mosaic_view = KernelView()
        self.embedding_scatter = EmbeddingScatter()
        self.confusion_view = ConfusionView()
        self._alias_views()
        bottom = QSplitter(Qt.Horizontal)
        for w in (self.kernel_mosaic_view, self.embedding_scatter, self.confusion_view):
            bottom.addWidget(w)
        views = QSplitter(Qt.Vertical)
        views.addWidget(self.curves_view)
        views.addWidget(bottom)
        views.setStretchFactor(0, 1)
        views.setStretchFactor(1, 1)
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addLayout(buttons)
        rl.addWidget(self.status)
        rl.addWidget(self.progress)
        rl.addWidget(self.detail)
        rl.addWidget(self.error)
        rl.addWidget(views, 1)
        split = QSplitter(Qt.Horizontal)
        split.addWidget(scroll)
        split.addWidget(right)
        split.setStretchFactor(0, 0)
        split.setStretchFactor(1, 1)
        split.setSizes([340, 1200])
        layout = QVBoxLayout(self)
        layout.addWidget(split)

        # --- plumbing -------------------------------------------------------------
        self._draw_timer = QTimer(self)
        self._draw_timer.setSingleShot(True)
        self._draw_timer.timeout.connect(self._drain)
        self._preview_timer = QTimer(self)
        self._preview_timer.setSingleShot(True)
        self._preview_timer.setInterval(150)
        self._preview_timer.timeout.connect(self._request_preview)
        self._sigRecord.connect(self._on_record)
        self._sigProgress.connect(self._on_progress)
        self._sigRunDone.connect(self._on_run_done)
        self._previews = JobRunner(self)
        self._previews.sigFinished.connect(self._preview_finished)
        self._previews.sigFailed.connect(self._preview_failed)
        self._previews.sigProgress.connect(lambda _k, _d, _t, text: self.preview_caption.setText(text))
        self.set_config(self._base)
        self._update_buttons()

    # --- the views' parts under their names from before training_views.py ------------
    def _apply_theme(self, *_args) -> None:
        """The detail line keeps room for two lines of its (theme-sized) font."""
        self.detail.setFixedHeight(2 * QFontMetrics(self.detail.font()).lineSpacing() + round(THEME.px(4)))

    def _alias_views(self) -> None:
        c, k, e, m = self.curves_view, self.kernel_mosaic_view, self.embedding_scatter, self.confusion_view
        self.loss_plot, self.acc_plot = c.loss_plot, c.acc_plot
        self.train_loss, self.val_loss = c.train_loss, c.val_loss
        self.train_acc, self.val_acc = c.train_acc, c.val_acc
        self.kernel_canvas, self.kernel_title, self.kernel_view, self.kernel_item = k, k.title, k.view, k.item
        self.embedding_widget, self.embedding_canvas = e, e.canvas
        self.embedding_title, self.embedding_box, self.embedding_legend = e.title, e.box, e.legend
        self.confusion_canvas, self.confusion_plot, self.confusion_item = m, m.plot, m.item

    @property
    def embedding_items(self) -> list:
        """The embedding's scatter items, one per class."""
        return self.embedding_scatter.items

    @property
    def confusion_texts(self) -> list:
        """The confusion matrix's count labels, one per cell (up to 20 classes)."""
        return self.confusion_view.texts

    # --- state ------------------------------------------------------------------------
    def _reset_state(self) -> None:
        self._steps: dict[str, list[float]] = {k: [] for k in ("step", "epoch", "loss", "acc", "lr", "samples_per_s")}
        self._evals: dict[str, list[float]] = {k: [] for k in ("step", "epoch", "val_loss", "val_acc")}
        self._last: dict[str, dict] = {}
        self._checkpoint: str | None = None
        self._checkpoint_why = ""
        self._info: dict = {}
        self._paused = False
        self._error = ""

    # --- settings -----------------------------------------------------------------------
    def config(self) -> TrainConfig:
        """The :class:`~vizapp.training.config.TrainConfig` that Start would use (``out`` unset:
        Start gives each run a new folder under ``runs_dir``). Fields the form does not
        show (``log_every``, ``kernels_every``, ``embed_points``...) come from the last
        :meth:`set_config`."""
        names = [k for k, box in self.augment_boxes.items() if box.isChecked()]
        loss = self.loss.currentData()
        base = self._base
        return replace(
            base,
            dataset=self.current_dataset(),
            size=self.image_size.value() or None,
            n=self.limit.value() or None,
            model=self.model.currentData(),
            freeze=self.freeze.currentData(),
            loss=loss,
            margin=self.margin.value() if loss in ("contrastive", "triplet") else None,
            temperature=self.temperature.value() if loss == "infonce" else base.temperature,
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
        ``hub:`` model not offered yet is added to the model menu) and keep its other
        fields for the next run."""
        self._base = replace(config, augment=list(config.augment), options=dict(config.options))
        spec = str(config.dataset)
        index = self.dataset.findData(spec)
        if index < 0:
            index = self._add_folder(spec)
        self.dataset.setCurrentIndex(index)
        self._folder_previous = index
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
        self.lr.setValue(config.lr)
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
        self._schedule_preview()

    def _model_changed(self, _index: int = 0) -> None:
        self.freeze.setEnabled(str(self.model.currentData()).startswith("hub:") and not self._running)

    def _loss_changed(self, _index: int = 0) -> None:
        loss = self.loss.currentData()
        self.form.setRowVisible(self.margin, loss in ("contrastive", "triplet"))
        self.form.setRowVisible(self.temperature, loss == "infonce")
        if loss in ("contrastive", "triplet"):
            self.margin.setValue(1.0 if loss == "contrastive" else 0.2)

    def loss_options_visible(self) -> dict[str, bool]:
        """Which loss options the form shows: ``{"margin": bool, "temperature": bool}``."""
        return {"margin": self.margin.isVisibleTo(self), "temperature": self.temperature.isVisibleTo(self)}

    # --- the augmentation preview ------------------------------------------------------
    def _schedule_preview(self, *_args) -> None:
        if not self._closing.is_set():
            self._preview_timer.start()

    def showEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        self.refresh_preview()

    def refresh_preview(self) -> None:
        """Compute the augmentation preview if it is out of date. It waits until the panel
        is on screen (a hidden dock tab costs nothing at start-up): the window calls this
        when the panel's dock is raised."""
        self._schedule_preview()

    def _request_preview(self) -> None:
        if self._running or self._closing.is_set():
            return  # the form is locked during a run; the last preview stays
        if not self.isVisible() or self.visibleRegion().isEmpty():
            return  # not on screen (a hidden dock tab is still "visible"): refresh_preview asks again
        names = tuple(k for k, box in self.augment_boxes.items() if box.isChecked())
        key = (self.current_dataset(), self.image_size.value() or None, names, self.seed.value())
        if self._preview is not None and self._preview.get("key") == key:
            return
        self.preview_caption.setText("loading the preview…")
        self._previews.submit("preview", _preview_job, key[0], key[1], names, key[3], self._preview_cache,
                              self._rng_lock)

    def _preview_finished(self, _kind: str, result: dict) -> None:
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

    def _preview_failed(self, _kind: str, message: str) -> None:
        self._preview = None
        self.preview_label.setPixmap(QPixmap())
        self.preview_caption.setText(f"No preview: {message}")

    def preview_image(self) -> np.ndarray | None:
        """The augmented preview grid shown (the plain grid when no augmentation is ticked)."""
        if self._preview is None:
            return None
        return self._preview["augmented"] if self._preview["augmented"] is not None else self._preview["plain"]

    # --- running ------------------------------------------------------------------------
    def running(self) -> bool:
        """Whether a run is on (from Start until its last record is drawn)."""
        return self._running

    def paused(self) -> bool:
        return self._running and self._paused

    def run_config(self) -> TrainConfig | None:
        """The config of the current or last run (with its ``out`` folder)."""
        return self._run_config

    def start(self) -> bool:
        """Start a run with :meth:`config` in a new folder under ``runs_dir``; False if one is on."""
        from vizapp.training.trainer import TrainControl

        if self._running or self._closing.is_set():
            return False
        config = self.config()
        stamp = time.strftime("%Y%m%d-%H%M%S")
        stem = f"{_slug(Path(config.dataset).name if config.dataset not in self._datasets else config.dataset)}" \
               f"-{_slug(config.model)}-{config.loss}-{stamp}"
        out, k = self.runs_dir / stem, 2
        while out.exists():
            out, k = self.runs_dir / f"{stem}-{k}", k + 1
        config.out = str(out)
        self._preview_timer.stop()
        self._previews.cancel("preview")
        self._reset_state()
        self._clear_views()
        self._run_config = config
        self._serial += 1
        self._control = TrainControl()
        self._cancel = CancelToken()
        self._running = True
        self.error.setVisible(False)
        self.status.setText("Loading the data and building the model…")
        self.detail.setText(f"run folder: {out}")
        self._thread = threading.Thread(target=self._train, name="vizapp-train", daemon=True,
                                        args=(self._serial, replace(config), self._control, self._cancel))
        self._thread.start()
        self._update_buttons()
        self.sigRunning.emit(True)
        return True

    def pause(self) -> None:
        if self._running and self._control is not None:
            self._control.pause()
            self._paused = True
            self._update_buttons()
            self._update_status()

    def resume(self) -> None:
        if self._running and self._control is not None:
            self._control.resume()
            self._paused = False
            self._update_buttons()
            self._update_status()

    def toggle_pause(self) -> None:
        if self._paused:
            self.resume()
        else:
            self.pause()

    def stop(self) -> None:
        """Stop the run: it saves a "stopped" checkpoint at its next step (a load is cancelled)."""
        if self._running and self._control is not None:
            self._control.stop()
            self._cancel.cancel()
            self._paused = False
            self.status.setText("Stopping…")
            self._update_buttons()

    def checkpoint_now(self) -> None:
        """Ask the run to save a checkpoint after its current step."""
        if self._running and self._control is not None:
            self._control.checkpoint()
            notification_manager.info("checkpoint requested" + (": saved when the run resumes" if self._paused else ""))

    def open_checkpoint(self) -> None:
        """Emit ``sigOpenCheckpoint`` with the latest checkpoint folder (if any)."""
        if self._checkpoint:
            self.sigOpenCheckpoint.emit(self._checkpoint)

    def checkpoint_path(self) -> str | None:
        """The latest checkpoint folder of the current or last run."""
        return self._checkpoint

    def alive(self) -> bool:
        """Whether any of the panel's threads (the run, the preview worker) is still alive."""
        return (self._thread is not None and self._thread.is_alive()) or self._previews.alive()

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """Stop a run and the preview worker and wait for their threads (the window calls
        this on close). Both are daemon threads, so a stuck one never blocks quitting.
        The panel runs nothing afterwards."""
        self._closing.set()
        self._draw_timer.stop()
        self._preview_timer.stop()
        if self._control is not None:
            self._control.stop()
            self._cancel.cancel()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.warning("the training run did not stop within %.0f s; it ends with the process", timeout_s)
        self._previews.shutdown(timeout_s)
        self._running = False

    # --- the run thread ---------------------------------------------------------------
    def _emit(self, signal, *args) -> bool:
        if self._closing.is_set():
            return False
        try:
            signal.emit(*args)
        except RuntimeError:  # the widget is gone (deleted without shutdown)
            self._closing.set()
            return False
        return True

    def _train(self, serial: int, config: TrainConfig, control, cancel: CancelToken) -> None:
        """The run thread: build the trainer (loads the data), iterate its records."""
        from models.small import count_parameters
        from vizapp.training.trainer import Trainer

        message, error = "", False

        def progress(_done: int, _total: int, text: str) -> None:
            cancel.check()
            self._emit(self._sigProgress, serial, text)

        try:
            with self._rng_lock:  # no preview may reseed torch's generator during the run
                trainer = Trainer(config, progress=progress, cancel=cancel)
                total, trainable = count_parameters(trainer.module)
                self._emit(self._sigRecord, serial, {
                    "type": "started", "total_steps": trainer.total_steps, "steps_per_epoch": trainer.steps_per_epoch,
                    "epochs": config.epochs, "data": trainer.data_name, "train": len(trainer.train_set),
                    "val": len(trainer.val_set), "classes": list(trainer.classes), "device": str(trainer.device),
                    "parameters": total, "trainable": trainable, "model": config.model, "loss": config.loss})
                for record in trainer.run(control):  # ends with the final weights' kernels
                    if not self._emit(self._sigRecord, serial, record):
                        control.stop()
        except Cancelled:
            message = "the run was stopped while loading its data"
        except UserError as exc:
            message, error = str(exc), True
        except Exception as exc:  # noqa: BLE001 - every run error reaches the user as a message
            log.error("training run failed:\n%s", traceback.format_exc())
            message, error = f"internal error in the training run: {type(exc).__name__}: {exc}", True
        self._emit(self._sigRunDone, serial, message, error)

    # --- records on the GUI thread ----------------------------------------------------
    def _on_progress(self, serial: int, text: str) -> None:
        if serial == self._serial and self._running:
            self.status.setText(text)

    def _on_record(self, serial: int, record: dict) -> None:
        if serial != self._serial:
            return
        self._pending.append(record)
        if not self._draw_timer.isActive():
            self._draw_timer.start(REDRAW_MS)

    def _on_run_done(self, serial: int, message: str, error: bool) -> None:
        if serial != self._serial:
            return
        self._draw_timer.stop()
        self._drain(everything=True)
        if self._thread is not None:
            self._thread.join(5.0)
        self._running = False
        self._paused = False
        self._update_buttons()
        self._model_changed()
        self._update_status()
        if error:
            self._error = message
            self.error.setText(message)
            self.error.setVisible(True)
            self.status.setText("The run failed")
            notification_manager.error(message)
        elif message:
            notification_manager.info(message)
        elif self._checkpoint:
            notification_manager.info(f"training {self._checkpoint_why}: checkpoint in {self._checkpoint}")
        self.sigRunning.emit(False)
        self._schedule_preview()

    def _drain(self, everything: bool = False) -> None:
        """Take every queued record, then redraw what changed.

        The curves and the status line are redrawn on every tick; the picture views
        (kernels, embedding, confusion matrix, and building their items when a run
        starts) one per tick, the next one :data:`STAGGER_MS` later, so that a burst of
        records (a run's start, an evaluation) never paints every view in one event-loop
        turn. ``everything`` draws all that is due at once (the run's end).
        """
        records, self._pending = self._pending, []
        dirty = self._dirty
        started = False
        for n, r in enumerate(records):
            kind = r.get("type")
            self._last[kind] = r
            if kind == "started":
                self._info = r
                self._set_epoch_ticks()  # re-lays out both plots' axes: nothing else this tick
                self.progress.setRange(0, max(1, r["total_steps"]))
                dirty |= {"prepare_embedding", "prepare_confusion"}
                started = not everything
                if started:
                    self._pending[:0] = records[n + 1:]
                    records = records[:n + 1]
                    break
            elif kind == "step":
                s = self._steps
                s["step"].append(r["step"])
                s["epoch"].append(r["epoch"])
                s["loss"].append(r["loss"])
                s["acc"].append(r.get("acc", np.nan))
                s["lr"].append(r["lr"])
                s["samples_per_s"].append(r["samples_per_s"])
                dirty.add("curves")
            elif kind == "eval":
                e = self._evals
                e["step"].append(r["step"])
                e["epoch"].append(r["epoch"])
                e["val_loss"].append(r.get("val_loss", np.nan))
                e["val_acc"].append(r["val_acc"])
                dirty |= {"curves", "confusion"}
            elif kind in ("kernels", "embedding"):
                dirty.add(kind)
            elif kind == "checkpoint" and r.get("path"):
                self._checkpoint, self._checkpoint_why = r["path"], r["why"]
        if "curves" in dirty and not started:
            dirty.discard("curves")
            self._draw_curves()
        classes = self._info.get("classes", [])
        metric = self._info.get("loss", "ce") != "ce"  # metric learning: accuracy by nearest class centre
        for view in () if started else PICTURE_VIEWS:
            if view not in dirty:
                continue
            dirty.discard(view)
            if view == "prepare_embedding":
                self.embedding_scatter.set_classes(classes)
            elif view == "prepare_confusion":
                self.confusion_view.prepare(classes, metric)
            elif view == "kernels":
                self.kernel_mosaic_view.set_kernels(self._last["kernels"])
            elif view == "embedding":
                self.embedding_scatter.set_embedding(self._last["embedding"], metric)
            else:
                self.confusion_view.set_confusion(self._last["eval"]["confusion"], classes, metric)
            if not everything:
                break
        if records:
            self._update_status()
            self._update_buttons()
        if (dirty or self._pending) and not everything and not self._draw_timer.isActive():
            self._draw_timer.start(STAGGER_MS)

    # --- drawing ------------------------------------------------------------------------
    def _clear_views(self) -> None:
        for view in (self.curves_view, self.kernel_mosaic_view, self.embedding_scatter, self.confusion_view):
            view.reset()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)

    def _set_epoch_ticks(self) -> None:
        info = self._info
        self.curves_view.set_schedule(info["steps_per_epoch"], info["epochs"], info["total_steps"],
                                      metric=info.get("loss", "ce") != "ce")

    def _draw_curves(self) -> None:
        opt = self._run_config.optimizer if self._run_config is not None else ""
        self.curves_view.set_data(self._steps, self._evals, opt)

    def _update_status(self) -> None:
        info, last = self._info, self._last
        if not info:
            return
        step = last.get("step", {}).get("step", 0)
        parts = []
        spe = max(1, info["steps_per_epoch"])
        parts.append(f"epoch {step / spe:.2f} / {info['epochs']}")
        parts.append(f"step {step:,} / {info['total_steps']:,}")
        if "step" in last:
            parts.append(f"{last['step']['samples_per_s']:,.0f} samples/s")
        if "eval" in last:
            parts.append(f"val acc {last['eval']['val_acc']:.1%}")
        head = "PAUSED   ·   " if self._paused and self._running else ""
        if not self._running and self._checkpoint_why:
            head = {"finished": "Finished   ·   ", "stopped": "Stopped   ·   ",
                    "diverged": "Diverged   ·   "}.get(self._checkpoint_why, "")
        self.status.setText(head + "   ·   ".join(parts))
        self.progress.setValue(step)
        trainable = ("all trainable" if info["trainable"] == info["parameters"]
                     else f"{info['trainable']:,} trainable")
        detail = (f"{info['data']}: {info['train']:,} training / {info['val']:,} validation images, "
                  f"{len(info['classes'])} classes   ·   {info['model']}: {info['parameters']:,} parameters "
                  f"({trainable})   ·   {info['device']}")
        if self._checkpoint:
            detail += f"\ncheckpoint ({self._checkpoint_why}): {self._checkpoint}"
        self.detail.setText(detail)
        self.detail.setToolTip(detail)

    def _update_buttons(self) -> None:
        on = self._running
        self.start_button.setEnabled(not on)
        stopping = self._control is not None and self._control.stopped
        self.pause_button.setEnabled(on and not stopping)
        self.pause_button.setText("&Resume" if self._paused else "&Pause")
        self.stop_button.setEnabled(on)
        self.checkpoint_button.setEnabled(on)
        self.open_button.setEnabled(bool(self._checkpoint))
        self.settings.setEnabled(not on)

    # --- getters for tests and the window ---------------------------------------------
    def curves(self) -> dict[str, np.ndarray]:
        """The data the curves show: ``step``, ``loss``, ``acc_step``, ``acc`` (train, per
        logged step), ``val_step``, ``val_loss``, ``val_acc_step``, ``val_acc``; plus
        ``lr`` and ``samples_per_s`` per logged step."""
        out = self.curves_view.curves()
        out["lr"] = np.asarray(self._steps["lr"], dtype=np.float64)
        out["samples_per_s"] = np.asarray(self._steps["samples_per_s"], dtype=np.float64)
        return out

    @property
    def last_records(self) -> dict[str, dict]:
        """The latest drawn record of each type (``started``, ``step``, ``eval``, ``kernels``,
        ``embedding``, ``checkpoint``); ``started`` is the panel's own (sizes, classes,
        parameter count, total steps)."""
        return dict(self._last)

    def kernel_image(self) -> np.ndarray | None:
        """The kernel mosaic shown (``H x W x 3`` uint8), from :func:`kernel_mosaic`."""
        return self.kernel_mosaic_view.image()

    def embedding_points(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(coords N x 2, labels N)`` of the embedding shown."""
        return self.embedding_scatter.points()

    def embedding_range(self) -> float:
        """Half the side of the embedding's (fixed, symmetric) view range."""
        return self.embedding_scatter.view_range()

    def confusion(self) -> np.ndarray | None:
        """The confusion matrix shown (rows: true class, columns: predicted; counts)."""
        return self.confusion_view.counts()

    def error_text(self) -> str:
        """The error the last run ended with ('' if none)."""
        return self._error

    def status_text(self) -> str:
        return self.status.text()

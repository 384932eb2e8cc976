"""The Training dock: train a small network live and watch it learn.

The panel composes three parts: the settings form with its augmentation preview
(:class:`widgets.training_form.TrainingForm`), the run controller
(:class:`widgets.training_run.TrainingRun`), and the live board
(:class:`widgets.training_board.TrainingBoard`: loss and accuracy curves, the first
layer's kernels, the validation embedding and the confusion matrix, fed by
:class:`vizapp.training.trainer.Trainer`'s records). The panel owns the buttons and the
status lines.

Jobs
----
- The run and the previews are jobs on the window's :class:`~widgets.bridge.JobRunner`
  (a panel built without one makes its own and shuts it down with itself): the run is a
  generator job on the runner's lane ``train``, the previews function jobs on the lane
  ``preview``, so neither holds up the interactive jobs of the other docks. Pause,
  resume and stop go through the runner; "checkpoint now" to the run's
  :class:`~vizapp.training.trainer.TrainControl`; errors through the runner's triage.
  Both kinds (:data:`RUN_KIND`, :data:`PREVIEW_KIND`) start with ``training``: the window
  leaves their progress and failures to the panel, which shows (and notifies) them.
- The GUI thread never draws per record: the board queues records and draws them at
  most every :data:`~widgets.training_board.REDRAW_MS`.

Messages for the status bar go through :data:`vizapp.core.notifications.notification_manager`
(errors are also shown in the panel). The window calls :meth:`TrainingPanel.shutdown` on
close (before the runner's), connects ``sigCheckpointRequested`` (load the checkpoint in the model
hub), and may offer hub models for transfer learning with :meth:`TrainingPanel.set_hub_models`.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFontMetrics
from PySide6.QtWidgets import (
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from vizapp.core.notifications import notification_manager
from widgets.bridge import JobRunner
from widgets.common import heading
from widgets.flow_layout import FlowLayout
from widgets.theme import THEME, bind_font
from widgets.training_board import REDRAW_MS, TrainingBoard
from widgets.training_form import PREVIEW_KIND, TrainingForm
from widgets.training_run import RUN_KIND, TrainingRun
from widgets.training_views import kernel_mosaic

if TYPE_CHECKING:
    from vizapp.training.config import TrainConfig

#: The board's narrowest width beside the form (pixels at scale 1): three pictures side by side.
BOARD_MIN = 480

__all__ = ["TrainingPanel", "kernel_mosaic", "REDRAW_MS", "RUN_KIND", "PREVIEW_KIND"]
# kernel_mosaic (widgets.training_views) and REDRAW_MS (widgets.training_board) stay
# importable from here.


def _default_runs_dir() -> Path:
    from vizapp.core.paths import runs_dir

    return runs_dir()


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.]+", "_", text).strip("_") or "run"


class TrainingPanel(QWidget):
    """Settings, run buttons and live views of one training run at a time.

    Parameters
    ----------
    runner : JobRunner, optional
        The window's job runner, which runs the training run and the previews (on lanes
        of their own). Default: a runner of the panel's own (a panel built alone).
    runs_dir : path, optional
        Where each run gets its folder ``<dataset>-<model>-<loss>-<YYYYmmdd-HHMMSS>``
        (checkpoints: ``model.safetensors``, ``card.json``, ``train_state.pt``).
        Default ``$VIZAPP_RUNS``, else the app data folder's ``runs``.

    Signals
    -------
    sigCheckpointRequested(path)
        "Open in the app" was pressed: ``path`` is the latest checkpoint folder.
    sigRunningChanged(running)
        A run started (True) or ended (False).
    """

    sigCheckpointRequested = Signal(str)
    sigRunningChanged = Signal(bool)

    def __init__(self, runner: JobRunner | None = None, runs_dir: str | Path | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._owns_runner = runner is None
        self.runner = runner if runner is not None else JobRunner(self)
        self.runs_dir = Path(runs_dir) if runs_dir is not None else _default_runs_dir()
        self._closing = False
        self._run_config: TrainConfig | None = None
        self._error = ""
        rng_lock = threading.Lock()  # a run holds it throughout; a preview takes it to seed torch
        self.form = TrainingForm(self.runner, rng_lock)
        self.run = TrainingRun(self.runner, rng_lock, self)

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
        # "Settings" shows or hides the form; a panel too narrow for the form and the board side
        # by side starts with the form hidden (_fit_form), so the plots keep their room.
        self.settings_button = QPushButton("S&ettings")
        self.settings_button.setCheckable(True)
        self.settings_button.setChecked(True)
        self.settings_button.setToolTip("Show or hide the settings beside the plots")
        self.settings_button.toggled.connect(lambda on: self.form.setVisible(on))
        self._narrow: bool | None = None
        buttons = FlowLayout()  # the buttons wrap in a narrow dock
        for b in (self.settings_button, self.start_button, self.pause_button, self.stop_button,
                  self.checkpoint_button, self.open_button):
            bind_font(b, "body", bold=b is self.start_button)
            buttons.addWidget(b)
        self.status = heading("Ready: choose the settings and press Start", "heading")
        self.detail = QLabel("")
        bind_font(self.detail, "small")
        self.detail.setWordWrap(True)
        self.detail.setTextInteractionFlags(Qt.TextSelectableByMouse)
        # Text that changes every tick must not change the labels' size: that would re-lay
        # out (and repaint) every plot below them. Both keep two lines (_apply_theme).
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
        self.board = TrainingBoard()
        self.board.sigStarted.connect(lambda info: self.progress.setRange(0, max(1, info["total_steps"])))
        self.board.sigDrawn.connect(self._records_drawn)
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addLayout(buttons)
        rl.addWidget(self.status)
        rl.addWidget(self.progress)
        rl.addWidget(self.detail)
        rl.addWidget(self.error)
        rl.addWidget(self.board, 1)
        split = QSplitter(Qt.Horizontal)
        split.addWidget(self.form)  # the settings scroll alone (the form is a scroll area)
        split.addWidget(right)
        split.setChildrenCollapsible(False)
        self._apply_theme()
        THEME.changed.connect(self._apply_theme)
        split.setStretchFactor(0, 0)
        split.setStretchFactor(1, 1)
        split.setSizes([round(THEME.px(300)), round(THEME.px(1200))])
        layout = QVBoxLayout(self)
        layout.addWidget(split)

        # --- plumbing -------------------------------------------------------------
        self.run.sigRecord.connect(self.board.add)
        self.run.sigProgress.connect(self._on_progress)
        self.run.sigEnded.connect(self._on_run_done)
        self._update_buttons()

    # --- theme ------------------------------------------------------------------------
    def _apply_theme(self, *_args) -> None:
        """The status line keeps room for two lines of its (theme-sized) font, the detail
        line (data, model, checkpoint) for three."""
        for label, lines in ((self.status, 2), (self.detail, 3)):
            label.setFixedHeight(lines * QFontMetrics(label.font()).lineSpacing() + round(THEME.px(4)))

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._fit_form()

    def _fit_form(self) -> None:
        """Hide the form when the panel is narrower than it and the board's :data:`BOARD_MIN`
        pixels (times the theme's scale), show it again when wider; the button follows."""
        narrow = self.width() < self.form.minimumWidth() + THEME.px(BOARD_MIN)
        if narrow != self._narrow:
            self._narrow = narrow
            self.settings_button.setChecked(not narrow)

    # --- the form ---------------------------------------------------------------------
    def config(self) -> TrainConfig:
        """The :class:`~vizapp.training.config.TrainConfig` that Start would use (``out`` unset:
        Start gives each run a new folder under ``runs_dir``). Fields the form does not
        show (``log_every``, ``kernels_every``, ``embed_points``...) come from the last
        :meth:`set_config`."""
        return self.form.config()

    def set_config(self, config: TrainConfig) -> None:
        """Fill the form from ``config`` (see :meth:`TrainingForm.set_config`)."""
        self.form.set_config(config)

    def set_hub_models(self, models: list[tuple[str, str]]) -> None:
        """Offer hub models for transfer learning (see :meth:`TrainingForm.set_hub_models`)."""
        self.form.set_hub_models(models)

    def loss_options_visible(self) -> dict[str, bool]:
        """Which loss options the form shows: ``{"margin": bool, "temperature": bool}``."""
        return self.form.loss_options_visible()

    def refresh_preview(self) -> None:
        """Compute the augmentation preview if it is out of date (the window calls this when
        the panel's dock is raised; a hidden tab computes nothing)."""
        self.form.refresh_preview()

    def preview_image(self) -> np.ndarray | None:
        """The augmented preview grid shown (the plain grid when no augmentation is ticked)."""
        return self.form.preview_image()

    # --- running ------------------------------------------------------------------------
    def running(self) -> bool:
        """Whether a run is on (from Start until its last record is drawn)."""
        return self.run.active

    def paused(self) -> bool:
        return self.run.paused

    def run_config(self) -> TrainConfig | None:
        """The config of the current or last run (with its ``out`` folder)."""
        return self._run_config

    def start(self) -> bool:
        """Start a run with :meth:`config` in a new folder under ``runs_dir``; False if one is on."""
        if self.run.active or self._closing:
            return False
        config = self.config()
        stamp = time.strftime("%Y%m%d-%H%M%S")
        data = config.dataset if self.form.is_builtin(config.dataset) else Path(config.dataset).name
        stem = f"{_slug(data)}-{_slug(config.model)}-{config.loss}-{stamp}"
        out, k = self.runs_dir / stem, 2
        while out.exists():
            out, k = self.runs_dir / f"{stem}-{k}", k + 1
        config.out = str(out)
        if not self.run.start(config):
            return False
        self._error = ""
        self.board.reset(config.optimizer)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self._run_config = config
        self.form.set_locked(True)
        self.error.setVisible(False)
        self.status.setText("Loading the data and building the model…")
        self.detail.setText(f"run folder: {out}")
        self._update_buttons()
        self.sigRunningChanged.emit(True)
        return True

    def pause(self) -> None:
        if self.run.active:
            self.run.pause()
            self._update_buttons()
            self._update_status()

    def resume(self) -> None:
        if self.run.active:
            self.run.resume()
            self._update_buttons()
            self._update_status()

    def toggle_pause(self) -> None:
        if self.run.paused:
            self.resume()
        else:
            self.pause()

    def stop(self) -> None:
        """Stop the run: it saves a "stopped" checkpoint at its next step (a load is cancelled)."""
        if self.run.active:
            self.run.stop()
            self.status.setText("Stopping…")
            self._update_buttons()

    def checkpoint_now(self) -> None:
        """Ask the run to save a checkpoint after its current step."""
        if self.run.active:
            self.run.checkpoint()
            notification_manager.info("checkpoint requested" + (": saved when the run resumes" if self.run.paused
                                                                else ""))

    def open_checkpoint(self) -> None:
        """Emit ``sigCheckpointRequested`` with the latest checkpoint folder (if any)."""
        if self.board.checkpoint:
            self.sigCheckpointRequested.emit(self.board.checkpoint)

    def checkpoint_path(self) -> str | None:
        """The latest checkpoint folder of the current or last run."""
        return self.board.checkpoint

    def alive(self) -> bool:
        """Whether a job of the panel (the run, a preview) is still queued or running, or
        (a panel with a runner of its own) one of that runner's threads."""
        return not self.runner.idle(RUN_KIND, PREVIEW_KIND) or (self._owns_runner and self.runner.alive())

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """Stop a run (it saves its checkpoint) and the preview, and wait for their jobs (the
        window calls this on close, before the runner's shutdown). Their lanes are daemon
        threads, so a stuck one never blocks quitting. The panel runs nothing afterwards."""
        deadline = time.monotonic() + timeout_s
        self._closing = True
        self.board.stop()
        self.form.shutdown()
        self.run.shutdown(timeout_s)
        self.runner.wait_idle(PREVIEW_KIND, timeout_s=max(0.0, deadline - time.monotonic()))
        if self._owns_runner:
            self.runner.shutdown(max(0.0, deadline - time.monotonic()))

    # --- records on the GUI thread ----------------------------------------------------
    def _on_progress(self, text: str) -> None:
        self.status.setText(text)

    def _records_drawn(self) -> None:
        self._update_status()
        self._update_buttons()

    def _on_run_done(self, message: str, error: bool) -> None:
        self.board.flush()
        self.form.set_locked(False)
        self._update_buttons()
        self._update_status()
        if error:
            self._error = message
            self.error.setText(message)
            self.error.setVisible(True)
            self.status.setText("The run failed")
            notification_manager.error(message)
        elif message:
            notification_manager.info(message)
        elif self.board.checkpoint:
            notification_manager.info(f"training {self.board.checkpoint_why}: checkpoint in {self.board.checkpoint}")
        self.sigRunningChanged.emit(False)

    # --- the status lines ---------------------------------------------------------------
    def _update_status(self) -> None:
        b = self.board
        info, last = b.info, b.last_records
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
        head = "PAUSED   ·   " if self.run.paused else ""
        if not self.run.active and b.checkpoint_why:
            head = {"finished": "Finished   ·   ", "stopped": "Stopped   ·   ",
                    "diverged": "Diverged   ·   "}.get(b.checkpoint_why, "")
        self.status.setText(head + "   ·   ".join(parts))
        self.progress.setValue(step)
        trainable = ("all trainable" if info["trainable"] == info["parameters"]
                     else f"{info['trainable']:,} trainable")
        detail = (f"{info['data']}: {info['train']:,} training / {info['val']:,} validation images, "
                  f"{len(info['classes'])} classes   ·   {info['model']}: {info['parameters']:,} parameters "
                  f"({trainable})   ·   {info['device']}")
        if b.checkpoint:
            detail += f"\ncheckpoint ({b.checkpoint_why}): {b.checkpoint}"
        self.detail.setText(detail)
        self.detail.setToolTip(detail)

    def _update_buttons(self) -> None:
        on = self.run.active
        self.start_button.setEnabled(not on)
        self.pause_button.setEnabled(on and not self.run.stopping)
        self.pause_button.setText("&Resume" if self.run.paused else "&Pause")
        self.stop_button.setEnabled(on)
        self.checkpoint_button.setEnabled(on)
        self.open_button.setEnabled(bool(self.board.checkpoint))

    # --- what is shown, for tests and the window --------------------------------------
    def curves(self) -> dict[str, np.ndarray]:
        """The data the curves show (see :meth:`TrainingBoard.curves`)."""
        return self.board.curves()

    @property
    def last_records(self) -> dict[str, dict]:
        """The latest drawn record of each type (``started``, ``step``, ``eval``, ``kernels``,
        ``embedding``, ``checkpoint``); ``started`` is the panel's own (sizes, classes,
        parameter count, total steps)."""
        return self.board.last_records

    def kernel_image(self) -> np.ndarray | None:
        """The kernel mosaic shown (``H x W x 3`` uint8), from :func:`kernel_mosaic`."""
        return self.board.kernel_image()

    def embedding_points(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(coords N x 2, labels N)`` of the embedding shown."""
        return self.board.embedding_points()

    def embedding_range(self) -> float:
        """Half the side of the embedding's (fixed, symmetric) view range."""
        return self.board.embedding_range()

    @property
    def embedding_items(self) -> list:
        """The embedding's scatter items, one per class."""
        return self.board.embedding_scatter.items

    def confusion(self) -> np.ndarray | None:
        """The confusion matrix shown (rows: true class, columns: predicted; counts)."""
        return self.board.confusion()

    def error_text(self) -> str:
        """The error the last run ended with ('' if none)."""
        return self._error

    def status_text(self) -> str:
        return self.status.text()

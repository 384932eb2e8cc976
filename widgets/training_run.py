"""The training lab's run controller: one run at a time, a generator job on the job runner.

:func:`run_records` is the job: it builds the
:class:`~vizapp.training.trainer.Trainer` (which loads the data), yields a ``started``
record of its own (sizes, classes, parameter count), then the trainer's records.
:class:`TrainingRun` streams it on the window's :class:`~widgets.bridge.JobRunner` as kind
:data:`RUN_KIND`, routed to the lane ``train`` (thread ``vizapp-train``: a run lasts
minutes and must not hold up the interactive jobs), and maps Pause / Resume / Stop to the
runner and "checkpoint now" to the run's :class:`~vizapp.training.trainer.TrainControl`.
Errors go through the runner's one triage; the controller re-emits what belongs to its run.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Signal

from vizapp.core.errors import Cancelled
from vizapp.core.jobs import CancelToken

if TYPE_CHECKING:
    from vizapp.training.config import TrainConfig
    from vizapp.training.trainer import TrainControl
    from widgets.bridge import JobRunner

__all__ = ["TrainingRun", "run_records", "RUN_KIND"]

#: The runner's job kind of a training run (on the lane ``train``).
RUN_KIND = "training"


class _StopOrCancel:
    """The cancel token the trainer's data loading polls: it fires on a stop too, so a run
    stopped while it loads ends there (the trainer itself looks at its control)."""

    def __init__(self, cancel: CancelToken, control: TrainControl) -> None:
        self._cancel, self._control = cancel, control

    def cancel(self) -> None:
        self._cancel.cancel()

    @property
    def cancelled(self) -> bool:
        return self._cancel.cancelled or self._control.stopped

    def check(self) -> None:
        if self.cancelled:
            raise Cancelled("stopped")


def run_records(config: TrainConfig, rng_lock: threading.Lock, *, progress, cancel: CancelToken,
                control: TrainControl) -> Iterator[dict]:
    """The run's generator job: a ``started`` record, then the trainer's; returns the message
    for the user ('' normally; a stop during the data loading says so)."""
    from models import count_parameters
    from vizapp.training.trainer import Trainer

    with rng_lock:  # no preview may reseed torch's generator during the run
        try:
            trainer = Trainer(config, progress=progress, cancel=_StopOrCancel(cancel, control))
        except Cancelled:
            if cancel.cancelled:
                raise
            return "the run was stopped while loading its data"
        try:
            total, trainable = count_parameters(trainer.module)
            yield {"type": "started", "total_steps": trainer.total_steps, "steps_per_epoch": trainer.steps_per_epoch,
                   "epochs": config.epochs, "data": trainer.data_name, "train": len(trainer.train_set),
                   "val": len(trainer.val_set), "classes": list(trainer.classes), "device": str(trainer.device),
                   "parameters": total, "trainable": trainable, "model": config.model, "loss": config.loss}
            yield from trainer.run(control)  # ends with the final weights' kernels
        finally:
            trainer.close()  # also when the job is abandoned before run() began
    return ""


class TrainingRun(QObject):
    """Starts, pauses, resumes, stops and checkpoints the lab's one run on ``runner``.

    Signals
    -------
    sigRecord(record)
        A record of the run, in order (the runner drops a superseded run's).
    sigProgress(text)
        The data loading's progress.
    sigEnded(message, error)
        The run ended: ``error`` False with a message for the user ('' when it finished or
        stopped normally), or True with the error's message.
    """

    sigRecord = Signal(object)
    sigProgress = Signal(str)
    sigEnded = Signal(str, bool)

    def __init__(self, runner: JobRunner, rng_lock: threading.Lock, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.runner = runner
        self._rng_lock = rng_lock
        self._control: Any = None
        self._active = False
        self._closing = False
        runner.set_lane(RUN_KIND, "train")
        runner.sigRecord.connect(self._record)
        runner.sigProgress.connect(self._progress)
        runner.sigFinished.connect(self._finished)
        runner.sigFailed.connect(self._failed)

    # --- state --------------------------------------------------------------------------
    @property
    def active(self) -> bool:
        """From :meth:`start` until the run's end reaches the GUI thread."""
        return self._active

    @property
    def paused(self) -> bool:
        return self._active and self.runner.paused(RUN_KIND)

    @property
    def stopping(self) -> bool:
        return self._control is not None and self._control.stopped

    # --- commands -----------------------------------------------------------------------
    def start(self, config: TrainConfig) -> bool:
        """Start a run of ``config`` (its ``out`` set); False if one is on or the lab is closing."""
        from vizapp.training.trainer import TrainControl

        if self._active or self._closing:
            return False
        self._control = TrainControl()
        if not self.runner.stream(RUN_KIND, run_records, replace(config), self._rng_lock, control=self._control):
            return False
        self._active = True
        return True

    def pause(self) -> None:
        if self._active:
            self.runner.pause(RUN_KIND)

    def resume(self) -> None:
        if self._active:
            self.runner.resume(RUN_KIND)

    def stop(self) -> None:
        """The run saves a "stopped" checkpoint at its next step (a data load ends at once)."""
        if self._active:
            self.runner.stop(RUN_KIND)

    def checkpoint(self) -> None:
        """The run saves a checkpoint after its current step."""
        if self._active and self._control is not None:
            self._control.checkpoint()

    def alive(self) -> bool:
        """Whether the run's job is still queued or running."""
        return not self.runner.idle(RUN_KIND)

    def shutdown(self, timeout_s: float = 10.0) -> bool:
        """Stop the run (it saves) and wait for its job to end; nothing more is emitted.
        False if it is still running after ``timeout_s`` (a daemon thread: it ends with
        the process)."""
        self._closing = True
        self.runner.stop(RUN_KIND)
        done = self.runner.wait_idle(RUN_KIND, timeout_s=timeout_s)
        self._active = False
        return done

    # --- from the runner ----------------------------------------------------------------
    def _record(self, kind: str, record: dict) -> None:
        if kind == RUN_KIND and not self._closing:
            self.sigRecord.emit(record)

    def _progress(self, kind: str, _done: int, _total: int, text: str) -> None:
        if kind == RUN_KIND and self._active and not self._closing:
            self.sigProgress.emit(text)

    def _finished(self, kind: str, message: Any) -> None:
        if kind == RUN_KIND:  # not str() of every job's result: a layer analysis's repr prints its arrays
            self._end(kind, str(message or ""), False)

    def _failed(self, kind: str, message: str) -> None:
        self._end(kind, message, True)

    def _end(self, kind: str, message: str, error: bool) -> None:
        if kind != RUN_KIND or self._closing:
            return
        self._active = False
        self.sigEnded.emit(message, error)

"""The one bridge from engine jobs to Qt signals.

A single worker thread runs jobs (torch releases the GIL, so the GUI stays live).
Jobs are grouped by ``kind``: submitting a new job of a kind cancels the pending
or running one of that kind (the latest request wins), and results of a job that
was superseded are dropped. Signals arrive on the GUI thread.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal

from vizapp.errors import Cancelled, UserError
from vizapp.jobs import CancelToken

__all__ = ["JobRunner"]

log = logging.getLogger(__name__)


@dataclass
class _Job:
    kind: str
    serial: int
    fn: Callable[..., Any]
    args: tuple
    kwargs: dict
    token: CancelToken


class _Thread(QThread):
    def __init__(self, runner: JobRunner) -> None:
        super().__init__()
        self.runner = runner

    def run(self) -> None:
        self.runner._loop()


class JobRunner(QObject):
    """Runs engine jobs off the GUI thread.

    Signals
    -------
    sigFinished(kind, result)
    sigFailed(kind, message)
    sigProgress(kind, done, total, text)
    sigBusy(busy)
        True when the queue turns non-empty, False when it drains.
    """

    sigFinished = Signal(str, object)
    sigFailed = Signal(str, str)
    sigProgress = Signal(str, int, int, str)
    sigBusy = Signal(bool)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._cond = threading.Condition()
        self._pending: list[_Job] = []
        self._running: _Job | None = None
        self._latest: dict[str, int] = {}
        self._serial = 0
        self._stopping = False
        self._busy = False
        self._thread = _Thread(self)
        self._thread.start()

    # --- GUI side ----------------------------------------------------------------
    def submit(self, kind: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
        """Queue ``fn(*args, progress=..., cancel=..., **kwargs)``; supersedes older jobs of ``kind``."""
        with self._cond:
            self._serial += 1
            job = _Job(kind, self._serial, fn, args, kwargs, CancelToken())
            self._latest[kind] = job.serial
            for old in [j for j in self._pending if j.kind == kind]:
                self._pending.remove(old)
            if self._running is not None and self._running.kind == kind:
                self._running.token.cancel()
            self._pending.append(job)
            self._cond.notify_all()
        return job.serial

    def cancel(self, kind: str | None = None) -> None:
        """Cancel queued and running jobs (of ``kind``, or all)."""
        with self._cond:
            for job in [j for j in self._pending if kind is None or j.kind == kind]:
                self._pending.remove(job)
                self._latest.pop(job.kind, None)
            if self._running is not None and (kind is None or self._running.kind == kind):
                self._running.token.cancel()
                self._latest.pop(self._running.kind, None)
        if self.idle():
            self._set_busy(False)

    def idle(self) -> bool:
        with self._cond:
            return not self._pending and self._running is None

    def shutdown(self, timeout_ms: int = 10_000) -> None:
        """Cancel everything and join the thread."""
        with self._cond:
            self._stopping = True
            for job in self._pending:
                job.token.cancel()
            self._pending.clear()
            if self._running is not None:
                self._running.token.cancel()
            self._cond.notify_all()
        self._thread.wait(timeout_ms)

    def _set_busy(self, busy: bool) -> None:
        with self._cond:
            changed, self._busy = busy != self._busy, busy
        if changed:
            self.sigBusy.emit(busy)

    # --- worker side -------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                job = self._running = self._pending.pop(0)
            self._set_busy(True)
            self._execute(job)
            with self._cond:
                self._running = None
                drained = not self._pending
            if drained:
                self._set_busy(False)

    def _current(self, job: _Job) -> bool:
        with self._cond:
            return self._latest.get(job.kind) == job.serial and not job.token.cancelled

    def _execute(self, job: _Job) -> None:
        def progress(done: int, total: int, text: str) -> None:
            job.token.check()
            self.sigProgress.emit(job.kind, int(done), int(total), text)

        try:
            result = job.fn(*job.args, progress=progress, cancel=job.token, **job.kwargs)
        except Cancelled:
            return
        except UserError as exc:
            if self._current(job):
                self.sigFailed.emit(job.kind, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - every worker error reaches the user as a message
            log.error("job %s failed:\n%s", job.kind, traceback.format_exc())
            if self._current(job):
                self.sigFailed.emit(job.kind, f"internal error in {job.kind}: {type(exc).__name__}: {exc}")
            return
        if self._current(job):
            self.sigFinished.emit(job.kind, result)

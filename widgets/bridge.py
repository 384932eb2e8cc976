"""The one bridge from engine jobs to Qt signals.

A single worker thread runs jobs (torch releases the GIL, so the GUI stays live).
Jobs are grouped by ``kind``: submitting a new job of a kind cancels the pending
or running one of that kind (the latest request wins). A result is delivered only
if its job is still the latest of its kind when the signal reaches the GUI thread,
so a superseded result queued just before a new request is dropped too.

The worker is a daemon thread: quitting while a job is stuck in an uninterruptible
call (a stalled download, a large ``torch.load``) never aborts the process.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, Signal

from vizapp.core.errors import Cancelled, UserError
from vizapp.core.jobs import CancelToken

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


class JobRunner(QObject):
    """Runs engine jobs off the GUI thread.

    Signals
    -------
    sigFinished(kind, result)
    sigFailed(kind, message)
    sigProgress(kind, done, total, text)
    sigBusy(busy)
        True when a job starts after idling, False when the queue drains.
    """

    sigFinished = Signal(str, object)
    sigFailed = Signal(str, str)
    sigProgress = Signal(str, int, int, str)
    sigBusy = Signal(bool)
    _sigDone = Signal(str, int, object, bool)  # kind, serial, result or message, ok

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._cond = threading.Condition()
        self._pending: list[_Job] = []
        self._running: _Job | None = None
        self._latest: dict[str, int] = {}
        self._serial = 0
        self._stopping = False
        self._busy = False
        self._sigDone.connect(self._deliver)
        self._thread = threading.Thread(target=self._loop, name="vizapp-jobs", daemon=True)
        self._thread.start()

    # --- GUI side ----------------------------------------------------------------
    def submit(self, kind: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
        """Queue ``fn(*args, progress=..., cancel=..., **kwargs)``; supersedes older jobs of ``kind``.

        Returns the job's serial number, or 0 if the runner is shut down.
        """
        with self._cond:
            if self._stopping:
                return 0
            self._serial += 1
            job = _Job(kind, self._serial, fn, args, kwargs, CancelToken())
            self._latest[kind] = job.serial
            self._pending = [j for j in self._pending if j.kind != kind]
            if self._running is not None and self._running.kind == kind:
                self._running.token.cancel()
            self._pending.append(job)
            self._cond.notify_all()
        return job.serial

    def cancel(self, *kinds: str) -> None:
        """Cancel queued and running jobs of ``kinds`` (all kinds if none are given)."""
        with self._cond:
            hit = [j for j in self._pending if not kinds or j.kind in kinds]
            if self._running is not None and (not kinds or self._running.kind in kinds):
                self._running.token.cancel()
                hit.append(self._running)
            for job in hit:
                if job in self._pending:
                    self._pending.remove(job)
                if self._latest.get(job.kind) == job.serial:
                    del self._latest[job.kind]
            drained = not self._pending and self._running is None
        if drained:
            self._set_busy(False)

    def idle(self) -> bool:
        with self._cond:
            return not self._pending and self._running is None

    def alive(self) -> bool:
        """Whether the worker thread is still running."""
        return self._thread.is_alive()

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """Cancel everything, refuse new jobs, and wait for the worker to end."""
        with self._cond:
            self._stopping = True
            for job in self._pending:
                job.token.cancel()
            self._pending.clear()
            if self._running is not None:
                self._running.token.cancel()
            self._cond.notify_all()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            log.warning("a job is still running at shutdown; it ends with the process")

    def _set_busy(self, busy: bool) -> None:
        with self._cond:
            changed, self._busy = busy != self._busy, busy
        if changed:
            self.sigBusy.emit(busy)

    def _deliver(self, kind: str, serial: int, payload: object, ok: bool) -> None:
        """On the GUI thread: emit only if the job is still the latest of its kind."""
        with self._cond:
            current = self._latest.get(kind) == serial and not self._stopping
        if current:
            (self.sigFinished if ok else self.sigFailed).emit(kind, payload)

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

    def _execute(self, job: _Job) -> None:
        def progress(done: int, total: int, text: str) -> None:
            job.token.check()
            self.sigProgress.emit(job.kind, int(done), int(total), text)

        try:
            result = job.fn(*job.args, progress=progress, cancel=job.token, **job.kwargs)
        except Cancelled:
            return
        except UserError as exc:
            self._sigDone.emit(job.kind, job.serial, str(exc), False)
            return
        except Exception as exc:  # noqa: BLE001 - every worker error reaches the user as a message
            log.error("job %s failed:\n%s", job.kind, traceback.format_exc())
            self._sigDone.emit(job.kind, job.serial, f"internal error in {job.kind}: {type(exc).__name__}: {exc}", False)
            return
        if not job.token.cancelled:
            self._sigDone.emit(job.kind, job.serial, result, True)

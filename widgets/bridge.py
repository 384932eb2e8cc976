"""The one bridge from engine jobs to Qt signals: :class:`JobRunner`.

Two shapes of job, one triage
-----------------------------
- A *function job* (:meth:`JobRunner.submit`) is ``fn(*args, progress=, cancel=)``; its
  return value arrives as ``sigFinished(kind, result)``.
- A *generator job* (:meth:`JobRunner.stream`) is ``fn(*args, progress=, cancel=,
  control=)`` returning an iterator of records (a training run): each record arrives as
  ``sigRecord(kind, record)``, and its end as ``sigFinished(kind, value)`` with the
  generator's return value. :meth:`~JobRunner.pause`, :meth:`~JobRunner.resume` and
  :meth:`~JobRunner.stop` go to its ``control``; pausing is cooperative like cancelling
  (the job waits where a pause makes sense, ``control.wait_if_paused()``), and a stop
  is a graceful end (a trainer saves its checkpoint first and keeps sending records).
  :meth:`~JobRunner.cancel` abandons a job instead: nothing more of it is delivered.

Both raise the same way: a :class:`~vizapp.core.errors.UserError` arrives as
``sigFailed(kind, message)``; anything else is logged with its traceback and arrives as
``sigFailed(kind, "internal error in <kind>: ...")``; ``Cancelled`` is quiet (or, in a
job being stopped, its graceful end).

Kinds and lanes
---------------
Jobs are grouped by ``kind``: submitting a new job of a kind cancels the pending or
running one of that kind (the latest request wins). A result or record is delivered only
if its job is still the latest of its kind when the signal reaches the GUI thread, so a
superseded one queued just before a new request is dropped too.

Jobs run on *lanes*, one worker thread each, owned and named by the runner
(``vizapp-jobs`` for the shared lane, ``vizapp-<lane>`` for the others). Every kind runs
on the shared lane unless :meth:`~JobRunner.set_lane` routes it to a lane of its own: a
training run lasts minutes and must not hold up the feature maps, which share one
thread because they share the model (torch releases the GIL in its kernels, so one
thread keeps the GUI live). A lane's thread starts with its first job.

The workers are daemon Python threads rather than QThreads: quitting while a job is
stuck in an uninterruptible call (a stalled download, a large ``torch.load``) never
aborts the process, which a running QThread's destructor does.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QObject, Signal

from vizapp.core.errors import Cancelled, UserError
from vizapp.core.jobs import CancelToken, JobControl

__all__ = ["JobControl", "JobRunner", "SHARED_LANE"]  # JobControl lives in vizapp.core.jobs

log = logging.getLogger(__name__)

#: The lane every kind runs on unless routed elsewhere (thread ``vizapp-jobs``).
SHARED_LANE = "jobs"


@dataclass(eq=False)
class _Job:
    kind: str
    serial: int
    fn: Callable[..., Any]
    args: tuple
    kwargs: dict
    token: CancelToken
    control: Any = None  # generator jobs only

    def abandon(self) -> None:
        self.token.cancel()
        if self.control is not None:
            self.control.stop()  # a paused job must not wait for a resume that never comes


@dataclass(eq=False)
class _Lane:
    name: str
    thread: threading.Thread | None = None
    pending: list[_Job] = field(default_factory=list)
    running: _Job | None = None

    def jobs(self) -> list[_Job]:
        return self.pending + ([self.running] if self.running is not None else [])


class JobRunner(QObject):
    """Runs engine jobs off the GUI thread (see the module's docstring).

    Signals
    -------
    sigFinished(kind, result)
        A function job's result, or a generator job's return value when it ends.
    sigRecord(kind, record)
        One record of a generator job, in order.
    sigFailed(kind, message)
    sigProgress(kind, done, total, text)
    sigBusy(busy)
        True when a job of the shared lane starts after idling, False when that lane
        drains. Lanes of their own (a training run) do not count: their owners show them.
    """

    sigFinished = Signal(str, object)
    sigRecord = Signal(str, object)
    sigFailed = Signal(str, str)
    sigProgress = Signal(str, int, int, str)
    sigBusy = Signal(bool)
    _sigDone = Signal(str, int, object, bool)  # kind, serial, result or message, ok
    _sigRecord = Signal(str, int, object)  # kind, serial, record

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._cond = threading.Condition()
        self._lanes: dict[str, _Lane] = {}
        self._route: dict[str, str] = {}  # kind -> lane
        self._latest: dict[str, _Job] = {}
        self._serial = 0
        self._stopping = False
        self._busy = False
        self._sigDone.connect(self._deliver)
        self._sigRecord.connect(self._deliver_record)
        with self._cond:
            self._lane(SHARED_LANE)

    # --- GUI side ----------------------------------------------------------------
    def set_lane(self, kind: str, lane: str) -> None:
        """Run the jobs of ``kind`` on ``lane``, a worker thread of its own (``vizapp-<lane>``)."""
        with self._cond:
            self._route[kind] = lane

    def lane_of(self, kind: str) -> str:
        """The lane ``kind`` runs on (:data:`SHARED_LANE` unless :meth:`set_lane` routed it)."""
        with self._cond:
            return self._route.get(kind, SHARED_LANE)

    def submit(self, kind: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
        """Queue ``fn(*args, progress=..., cancel=..., **kwargs)``; supersedes older jobs of ``kind``.

        Returns the job's serial number, or 0 if the runner is shut down.
        """
        return self._queue(kind, fn, args, kwargs, None)

    def stream(self, kind: str, fn: Callable[..., Iterator[Any]], *args: Any, control: Any = None,
               **kwargs: Any) -> int:
        """Queue the generator job ``fn(*args, progress=..., cancel=..., control=..., **kwargs)``.

        Each record it yields is sent as ``sigRecord(kind, record)``; its return value as
        ``sigFinished(kind, value)``. ``control`` (default: a new :class:`JobControl`) is
        what :meth:`pause`, :meth:`resume` and :meth:`stop` act on. Supersedes older jobs
        of ``kind``; returns the serial number, or 0 if the runner is shut down.
        """
        return self._queue(kind, fn, args, kwargs, control if control is not None else JobControl())

    def _queue(self, kind: str, fn: Callable[..., Any], args: tuple, kwargs: dict, control: Any) -> int:
        with self._cond:
            if self._stopping:
                return 0
            self._serial += 1
            job = _Job(kind, self._serial, fn, args, kwargs, CancelToken(), control)
            self._latest[kind] = job
            lane = self._lane(self._route.get(kind, SHARED_LANE))
            for old in lane.jobs():
                if old.kind == kind:
                    old.abandon()
            lane.pending = [j for j in lane.pending if j.kind != kind]
            lane.pending.append(job)
            self._cond.notify_all()
        return job.serial

    def pause(self, kind: str) -> None:
        """Ask the latest generator job of ``kind`` to pause (it waits where it can)."""
        self._control(kind, "pause")

    def resume(self, kind: str) -> None:
        self._control(kind, "resume")

    def stop(self, kind: str) -> None:
        """Ask the latest generator job of ``kind`` to end gracefully; its records keep coming."""
        self._control(kind, "stop")

    def paused(self, kind: str) -> bool:
        """Whether the latest generator job of ``kind`` is live and asked to pause."""
        with self._cond:
            job = self._live(kind)
        return job is not None and job.control is not None and bool(job.control.paused)

    def _control(self, kind: str, action: str) -> None:
        with self._cond:
            job = self._live(kind)
        if job is not None and job.control is not None:
            getattr(job.control, action)()

    def _live(self, kind: str) -> _Job | None:
        job = self._latest.get(kind)
        return job if job is not None and any(job in lane.jobs() for lane in self._lanes.values()) else None

    def cancel(self, *kinds: str) -> None:
        """Abandon queued and running jobs of ``kinds`` (all kinds if none are given)."""
        with self._cond:
            hit = [j for lane in self._lanes.values() for j in lane.jobs() if not kinds or j.kind in kinds]
            for job in hit:
                job.abandon()
                for lane in self._lanes.values():
                    if job in lane.pending:
                        lane.pending.remove(job)
                if self._latest.get(job.kind) is job:
                    del self._latest[job.kind]
            shared = self._lanes[SHARED_LANE]
            drained = not shared.pending and shared.running is None
        if drained:
            self._set_busy(False)

    def idle(self, *kinds: str) -> bool:
        """Whether no job (of ``kinds``, if given) is queued or running, on any lane."""
        with self._cond:
            return self._idle(kinds)

    def _idle(self, kinds: tuple[str, ...]) -> bool:
        return not any(not kinds or j.kind in kinds for lane in self._lanes.values() for j in lane.jobs())

    def lane_idle(self, lane: str = SHARED_LANE) -> bool:
        """Whether no job is queued or running on ``lane`` (a training run on its own lane
        does not keep the shared one busy)."""
        with self._cond:
            found = self._lanes.get(lane)
            return found is None or not found.jobs()

    def wait_idle(self, *kinds: str, timeout_s: float = 10.0) -> bool:
        """Block until no job (of ``kinds``, if given) is queued or running; False on timeout.

        Signals queued meanwhile are delivered afterwards, by the event loop, to whoever
        still listens.
        """
        with self._cond:
            return self._cond.wait_for(lambda: self._idle(kinds), timeout_s)

    def alive(self) -> bool:
        """Whether any of the runner's worker threads is still running."""
        with self._cond:
            threads = [lane.thread for lane in self._lanes.values() if lane.thread is not None]
        return any(t.is_alive() for t in threads)

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """Cancel everything, refuse new jobs, and wait for the workers to end."""
        with self._cond:
            self._stopping = True
            for lane in self._lanes.values():
                for job in lane.jobs():
                    job.abandon()
                lane.pending.clear()
            threads = [lane.thread for lane in self._lanes.values() if lane.thread is not None]
            self._cond.notify_all()
        deadline = time.monotonic() + timeout_s
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        stuck = [t.name for t in threads if t.is_alive()]
        if stuck:
            log.warning("a job is still running at shutdown (%s); it ends with the process", ", ".join(stuck))

    def _set_busy(self, busy: bool) -> None:
        with self._cond:
            changed, self._busy = busy != self._busy, busy
        if changed:
            self.sigBusy.emit(busy)

    def _current(self, kind: str, serial: int) -> bool:
        with self._cond:
            job = self._latest.get(kind)
            return job is not None and job.serial == serial and not self._stopping

    def _deliver(self, kind: str, serial: int, payload: object, ok: bool) -> None:
        """On the GUI thread: emit only if the job is still the latest of its kind."""
        if self._current(kind, serial):
            (self.sigFinished if ok else self.sigFailed).emit(kind, payload)

    def _deliver_record(self, kind: str, serial: int, record: object) -> None:
        if self._current(kind, serial):
            self.sigRecord.emit(kind, record)

    # --- worker side -------------------------------------------------------------
    def _lane(self, name: str) -> _Lane:
        """The lane ``name``, its thread started (call with the lock held)."""
        lane = self._lanes.get(name)
        if lane is None:
            lane = self._lanes[name] = _Lane(name)
            lane.thread = threading.Thread(target=self._loop, args=(lane,), name=f"vizapp-{name}", daemon=True)
            lane.thread.start()
        return lane

    def _loop(self, lane: _Lane) -> None:
        shared = lane.name == SHARED_LANE
        while True:
            with self._cond:
                while not lane.pending and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                job = lane.running = lane.pending.pop(0)
            if shared:
                self._set_busy(True)
            self._execute(job)
            with self._cond:
                lane.running = None
                drained = not lane.pending
                self._cond.notify_all()  # wait_idle
            if drained and shared:
                self._set_busy(False)

    def _post(self, job: _Job, signal: Any, *args: Any) -> None:
        try:
            signal.emit(*args)
        except RuntimeError:  # the runner's Qt object is gone (deleted without shutdown)
            job.abandon()

    def _execute(self, job: _Job) -> None:
        def progress(done: int, total: int, text: str) -> None:
            job.token.check()
            self._post(job, self.sigProgress, job.kind, int(done), int(total), text)

        extra = {} if job.control is None else {"control": job.control}
        try:
            result = job.fn(*job.args, progress=progress, cancel=job.token, **extra, **job.kwargs)
            if job.control is not None:
                result = self._relay(job, result)
        except Cancelled:
            if job.token.cancelled or job.control is None or not job.control.stopped:
                return
            result = None  # a stop that ended the job early (while it loaded) is its graceful end
        except UserError as exc:
            self._post(job, self._sigDone, job.kind, job.serial, str(exc), False)
            return
        except Exception as exc:  # noqa: BLE001 - every worker error reaches the user as a message
            log.error("job %s failed:\n%s", job.kind, traceback.format_exc())
            self._post(job, self._sigDone, job.kind, job.serial,
                       f"internal error in {job.kind}: {type(exc).__name__}: {exc}", False)
            return
        if not job.token.cancelled:
            self._post(job, self._sigDone, job.kind, job.serial, result, True)

    def _relay(self, job: _Job, records: Iterator[Any]) -> Any:
        """Send each record of a generator job; returns its return value. An abandoned job
        is closed at its next record (its ``finally`` blocks run on this thread)."""
        it = iter(records)
        try:
            while True:
                job.token.check()
                try:
                    record = next(it)
                except StopIteration as end:
                    return end.value
                job.token.check()
                self._post(job, self._sigRecord, job.kind, job.serial, record)
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

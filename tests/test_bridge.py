"""The job runner (``widgets.bridge.JobRunner``): function jobs and generator jobs, latest
wins per kind, pause / resume / stop / cancel, lanes, and the one error triage.

The jobs synchronise with the tests through ``threading.Event``s; waits are only ever
upper bounds on something that must happen.
"""

from __future__ import annotations

import threading
import time

import pytest

from vizapp.core.errors import Cancelled, UserError

pytestmark = pytest.mark.gui

WAIT_MS = 10_000


@pytest.fixture
def runner(qtbot):
    from widgets.bridge import JobRunner

    r = JobRunner()
    yield r
    r.shutdown()
    assert not r.alive(), "the runner left a thread running"


class Seen:
    """Everything the runner delivers, in order: ``(signal, kind, payload)``."""

    def __init__(self, runner) -> None:
        self.events: list[tuple] = []
        runner.sigRecord.connect(lambda kind, r: self.events.append(("record", kind, r)))
        runner.sigFinished.connect(lambda kind, r: self.events.append(("finished", kind, r)))
        runner.sigFailed.connect(lambda kind, m: self.events.append(("failed", kind, m)))
        runner.sigProgress.connect(lambda kind, d, t, text: self.events.append(("progress", kind, (d, t, text))))

    def of(self, signal: str, kind: str | None = None) -> list:
        return [e[2] for e in self.events if e[0] == signal and (kind is None or e[1] == kind)]

    def ended(self, kind: str) -> bool:
        return any(e[0] in ("finished", "failed") and e[1] == kind for e in self.events)


# --- function jobs -----------------------------------------------------------------------


def test_function_jobs_latest_request_wins(qtbot, runner):
    results = []
    runner.sigFinished.connect(lambda kind, r: results.append(r))

    def slow(value, progress, cancel):
        for _ in range(20):
            time.sleep(0.005)
            cancel.check()
        return value

    for i in range(6):
        runner.submit("k", slow, i)
    qtbot.waitUntil(runner.idle, timeout=WAIT_MS)
    qtbot.wait(50)
    assert results == [5]
    runner.submit("k", slow, 99)
    runner.cancel("k")
    qtbot.waitUntil(runner.idle, timeout=WAIT_MS)
    qtbot.wait(50)
    assert results == [5]
    runner.shutdown()
    assert not runner.alive()


def test_superseded_result_already_queued_is_dropped(qtbot, runner):
    got = []
    runner.sigFinished.connect(lambda kind, r: got.append(r))
    runner.submit("k", lambda v, progress, cancel: v, "old")
    # Let the worker finish without processing GUI events: the result sits in the queue.
    assert runner.wait_idle(timeout_s=5)
    runner.submit("k", lambda v, progress, cancel: v, "new")
    qtbot.waitUntil(lambda: got == ["new"], timeout=5000)
    qtbot.wait(50)
    assert got == ["new"]
    runner.shutdown()
    assert runner.submit("k", lambda progress, cancel: 1) == 0  # refused after shutdown
    assert runner.stream("g", lambda progress, cancel, control: iter(())) == 0


# --- generator jobs ----------------------------------------------------------------------


def test_records_arrive_in_order_then_the_return_value(qtbot, runner):
    seen = Seen(runner)

    def count(n, *, progress, cancel, control):
        for i in range(n):
            progress(i, n, f"record {i}")
            yield {"i": i}
        return "done"

    assert runner.stream("g", count, 50) > 0
    qtbot.waitUntil(lambda: seen.ended("g"), timeout=WAIT_MS)
    assert seen.of("record", "g") == [{"i": i} for i in range(50)]
    assert seen.of("finished", "g") == ["done"]
    assert seen.of("progress", "g")[-1] == (49, 50, "record 49")
    assert [e[0] for e in seen.events][-1] == "finished", "the end comes after the last record"
    qtbot.waitUntil(runner.idle, timeout=WAIT_MS)


def test_a_newer_job_of_the_kind_supersedes_the_older_ones_records(qtbot, runner):
    seen = Seen(runner)
    resumed, go, closed = threading.Event(), threading.Event(), threading.Event()

    def older(*, progress, cancel, control):
        try:
            yield "a1"
            resumed.set()  # a1 is posted and the runner asked for the next record
            go.wait(WAIT_MS / 1000)
            yield "a2"
            yield "a3"
        finally:
            closed.set()

    def newer(*, progress, cancel, control):
        yield "b1"
        yield "b2"
        return "b"

    runner.stream("g", older)
    assert resumed.wait(WAIT_MS / 1000)
    runner.stream("g", newer)  # a1 still sits in the GUI thread's queue: it must be dropped
    go.set()
    qtbot.waitUntil(lambda: seen.ended("g"), timeout=WAIT_MS)
    assert closed.is_set(), "the superseded generator was not closed"
    assert seen.of("record", "g") == ["b1", "b2"]
    assert seen.of("finished", "g") == ["b"]


def test_pause_holds_a_generator_until_resume(qtbot, runner):
    seen = Seen(runner)
    first, entered, passed = threading.Event(), threading.Event(), threading.Event()
    state = {}

    def job(*, progress, cancel, control):
        yield 0
        first.wait(WAIT_MS / 1000)  # the test pauses the job here
        state["paused when asked"] = not control.wait_if_paused(0)
        entered.set()
        control.wait_if_paused()  # cooperative: the job waits where a pause makes sense
        passed.set()
        yield 1
        yield 2

    runner.stream("g", job)
    qtbot.waitUntil(lambda: seen.of("record", "g") == [0], timeout=WAIT_MS)
    runner.pause("g")
    assert runner.paused("g")
    first.set()
    assert entered.wait(WAIT_MS / 1000)
    assert state["paused when asked"], "the pause did not reach the job's control"
    assert not passed.is_set() and not runner.idle("g")
    qtbot.wait(100)  # give a broken pause the chance to show itself
    assert not passed.is_set() and seen.of("record", "g") == [0]
    runner.resume("g")
    assert not runner.paused("g")
    qtbot.waitUntil(lambda: seen.ended("g"), timeout=WAIT_MS)
    assert passed.is_set() and seen.of("record", "g") == [0, 1, 2]
    assert seen.of("finished", "g") == [None]


def test_stop_ends_a_generator_gracefully(qtbot, runner):
    seen = Seen(runner)

    def endless(*, progress, cancel, control):
        i = 0
        while not control.stopped:
            control.wait_if_paused()
            yield i
            i += 1
            time.sleep(0.002)
        yield "saved"  # a graceful end: the job's last records still arrive
        return "stopped"

    runner.stream("g", endless)
    qtbot.waitUntil(lambda: len(seen.of("record", "g")) >= 3, timeout=WAIT_MS)
    runner.pause("g")
    runner.stop("g")  # releases a paused job
    qtbot.waitUntil(lambda: seen.ended("g"), timeout=WAIT_MS)
    records = seen.of("record", "g")
    assert records[-1] == "saved" and records[:-1] == list(range(len(records) - 1))
    assert seen.of("finished", "g") == ["stopped"]
    qtbot.waitUntil(runner.idle, timeout=WAIT_MS)


def test_a_stop_while_the_job_loads_is_its_end_not_an_error(qtbot, runner):
    seen = Seen(runner)
    loading = threading.Event()

    def loads(*, progress, cancel, control):
        loading.set()
        while not control.stopped:  # a data load that polls its stop
            time.sleep(0.005)
        raise Cancelled("stopped while loading")
        yield  # a generator

    runner.stream("g", loads)
    assert loading.wait(WAIT_MS / 1000)
    runner.stop("g")
    qtbot.waitUntil(lambda: seen.ended("g"), timeout=WAIT_MS)
    assert seen.of("finished", "g") == [None] and seen.of("failed") == []


def test_cancel_abandons_a_generator(qtbot, runner):
    seen = Seen(runner)
    closed = threading.Event()

    def endless(*, progress, cancel, control):
        try:
            i = 0
            while True:
                control.wait_if_paused()
                yield i
                i += 1
                time.sleep(0.002)
        finally:
            closed.set()

    runner.stream("g", endless)
    qtbot.waitUntil(lambda: len(seen.of("record", "g")) >= 2, timeout=WAIT_MS)
    runner.pause("g")
    runner.cancel("g")  # a paused job is released and closed
    assert closed.wait(WAIT_MS / 1000)
    assert runner.wait_idle("g", timeout_s=WAIT_MS / 1000)
    count = len(seen.of("record", "g"))
    qtbot.wait(50)  # whatever was still queued is dropped
    assert len(seen.of("record", "g")) == count and not seen.ended("g")


@pytest.mark.parametrize("error, message", [
    (UserError("the folder has no class sub-folders"), "the folder has no class sub-folders"),
    (ValueError("boom"), "internal error in g: ValueError: boom"),
])
def test_generator_errors_take_the_function_jobs_triage(qtbot, runner, error, message):
    seen = Seen(runner)

    def fails(*, progress, cancel, control):
        yield 1
        raise error

    def fails_at_once(progress, cancel):
        raise error

    runner.stream("g", fails)
    runner.submit("f", fails_at_once)
    qtbot.waitUntil(lambda: seen.ended("g") and seen.ended("f"), timeout=WAIT_MS)
    assert seen.of("record", "g") == [1]
    assert seen.of("failed", "g") == [message] and seen.of("finished", "g") == []
    assert seen.of("failed", "f") == [message.replace("in g:", "in f:")]


def test_a_long_generator_on_its_lane_leaves_the_shared_lane_free(qtbot, runner):
    seen = Seen(runner)
    runner.set_lane("train", "train")
    waiting = threading.Event()

    def run(*, progress, cancel, control):
        yield "started"
        control.pause()  # as if the user paused it: the lane's thread now waits
        waiting.set()
        control.wait_if_paused()
        yield "resumed"

    busy = []
    runner.sigBusy.connect(busy.append)
    runner.stream("train", run)
    assert waiting.wait(WAIT_MS / 1000)
    assert "vizapp-train" in {t.name for t in threading.enumerate()}
    runner.submit("analysis", lambda v, progress, cancel: v + 1, 41)
    qtbot.waitUntil(lambda: seen.ended("analysis"), timeout=WAIT_MS)
    assert seen.of("finished", "analysis") == [42]
    qtbot.waitUntil(lambda: busy[-1:] == [False], timeout=WAIT_MS)  # the shared lane drained
    assert runner.idle("analysis") and not runner.idle("train") and not runner.idle()
    assert runner.lane_idle() and not runner.lane_idle("train") and runner.lane_idle("never-used")
    runner.resume("train")
    qtbot.waitUntil(lambda: seen.ended("train"), timeout=WAIT_MS)
    assert seen.of("record", "train") == ["started", "resumed"]


def test_shutdown_closes_a_running_generator_and_joins_every_lane(qtbot, runner):
    runner.set_lane("train", "train")
    running, closed = threading.Event(), threading.Event()

    def endless(*, progress, cancel, control):
        try:
            while True:
                running.set()
                control.wait_if_paused()
                yield 0
                time.sleep(0.002)
        finally:
            closed.set()

    runner.stream("train", endless)
    runner.pause("train")
    assert running.wait(WAIT_MS / 1000)
    runner.shutdown()
    assert closed.is_set() and not runner.alive()

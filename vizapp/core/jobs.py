"""What every long job takes: a cancel token and a progress callback.

Jobs are plain functions; the Qt bridge (``widgets.bridge``) wraps them at the edge.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from vizapp.core.errors import Cancelled

__all__ = ["CancelToken", "JobControl", "Progress", "no_progress", "RNG_LOCK", "seeded"]

#: Held by every user of torch's process-wide random generator that seeds it (a training
#: run's augmentations, seeded model builds, previews): threads share that generator, and
#: ``fork_rng`` restoring it on exit would otherwise rewind another thread's draws.
RNG_LOCK = threading.RLock()

#: ``progress(done, total, text)``; ``total`` is 0 when the amount is unknown.
Progress = Callable[[int, int, str], None]


def no_progress(done: int, total: int, text: str) -> None:  # noqa: ARG001
    """A progress callback that ignores everything."""


class CancelToken:
    """A flag a job polls between steps; ``check()`` raises :class:`Cancelled`."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled("cancelled")


class JobControl:
    """Pause, resume and stop for a generator job, from any thread (the job runner's default
    ``control``; :class:`vizapp.training.trainer.TrainControl` adds "checkpoint now").

    The job calls :meth:`wait_if_paused` where a pause makes sense and ends when
    :attr:`stopped`; stop also releases a paused job (a stopping job never waits again).
    """

    def __init__(self) -> None:
        self._run = threading.Event()
        self._run.set()
        self._stop = threading.Event()

    def pause(self) -> None:
        if not self._stop.is_set():  # a stopping job never waits again
            self._run.clear()

    def resume(self) -> None:
        self._run.set()

    def stop(self) -> None:
        self._stop.set()
        self._run.set()

    @property
    def paused(self) -> bool:
        return not self._run.is_set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def wait_if_paused(self, timeout: float | None = None) -> bool:
        """Block while paused (at most ``timeout`` seconds); True when running."""
        return self._run.wait(timeout)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Draw from torch's global generator seeded with ``seed``, alone, and restore it after."""
    import torch

    with RNG_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield

"""The one notifier: every message for the user goes through :data:`notification_manager`.

Modelled on napari's ``napari.utils.notifications``: a :class:`Notification` has a
message, a :class:`Severity` and optional details (a traceback's text); the
:class:`NotificationManager` hands each one to its subscribers and, once
:meth:`~NotificationManager.install_hooks` ran, turns every uncaught exception (on the
main thread or any other) into an ERROR notification instead of a crash.

Qt-free (the engine floor): a subscriber is called on the thread that notifies, so a
GUI subscriber marshals to its own thread itself (the window does it with a Qt signal,
queued when the notification comes from a worker thread).
"""

from __future__ import annotations

import enum
import logging
import sys
import threading
import traceback
import types
import weakref
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Notification", "NotificationManager", "Severity", "notification_manager"]

log = logging.getLogger(__name__)


class Severity(str, enum.Enum):
    """How a notification is shown: ERROR (kept, the error colour), WARNING, INFO."""

    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True)
class Notification:
    message: str
    severity: Severity = Severity.INFO
    details: str | None = None  # e.g. the traceback of an uncaught exception

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR


Subscriber = Callable[[Notification], object]


class NotificationManager:
    """Dispatches notifications to subscribers; optionally owns the exception hooks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._refs: list[Callable[[], Subscriber | None]] = []  # weak for bound methods
        self._previous_hooks: list[tuple[Callable, Callable]] = []  # (sys, threading), a stack

    # --- subscribers ----------------------------------------------------------
    def subscribe(self, callback: Subscriber) -> None:
        """Call ``callback(notification)`` for every notification (once, however often subscribed).

        A bound method is held weakly (a view that is never closed can still be freed, and
        the module-level manager never keeps a Qt object alive until the interpreter
        finalises, which crashes PySide); a plain function is held as given.
        """
        ref = weakref.WeakMethod(callback) if isinstance(callback, types.MethodType) else (lambda: callback)
        with self._lock:
            if callback not in self._live():
                self._refs.append(ref)

    def unsubscribe(self, callback: Subscriber) -> None:
        with self._lock:
            self._refs = [r for r in self._refs if r() is not None and r() != callback]

    def _live(self) -> list[Subscriber]:
        """The subscribers still alive (call with the lock held); dead ones are dropped."""
        self._refs = [r for r in self._refs if r() is not None]
        return [r() for r in self._refs]

    @property
    def subscribers(self) -> list[Subscriber]:
        with self._lock:
            return [cb for cb in self._live() if cb is not None]

    # --- sending ----------------------------------------------------------------
    def dispatch(self, notification: Notification) -> Notification:
        """Hand ``notification`` to every subscriber, in subscription order, on this thread.

        A subscriber that raises is logged and skipped: one broken view must not stop
        the message reaching the others (nor recurse into the exception hook).
        """
        for callback in self.subscribers:
            try:
                callback(notification)
            except Exception:  # noqa: BLE001 - a subscriber's bug is logged, not re-raised
                log.exception("notification subscriber %r failed", callback)
        return notification

    def notify(self, message: str, severity: Severity | str = Severity.INFO, details: str | None = None) -> Notification:
        return self.dispatch(Notification(str(message), Severity(severity), details))

    def error(self, message: str, details: str | None = None) -> Notification:
        return self.notify(message, Severity.ERROR, details)

    def warning(self, message: str, details: str | None = None) -> Notification:
        return self.notify(message, Severity.WARNING, details)

    def info(self, message: str, details: str | None = None) -> Notification:
        return self.notify(message, Severity.INFO, details)

    # --- exception hooks ---------------------------------------------------------
    def install_hooks(self) -> None:
        """Make uncaught exceptions (``sys.excepthook``, ``threading.excepthook``) notifications.

        The hooks in place are kept and put back by :meth:`uninstall_hooks` (nested
        installs unwind in order).
        """
        self._previous_hooks.append((sys.excepthook, threading.excepthook))
        sys.excepthook = self.receive_error
        threading.excepthook = self.receive_thread_error

    def uninstall_hooks(self) -> None:
        """Put back the hooks that :meth:`install_hooks` replaced (no-op when none)."""
        if self._previous_hooks:
            sys.excepthook, threading.excepthook = self._previous_hooks.pop()

    @property
    def hooks_installed(self) -> bool:
        return bool(self._previous_hooks)

    def receive_error(self, exc_type, exc, tb, where: str = "") -> Notification | None:
        """``sys.excepthook``: an uncaught exception becomes an ERROR notification."""
        if issubclass(exc_type, KeyboardInterrupt):  # Ctrl+C still quits
            sys.__excepthook__(exc_type, exc, tb)
            return None
        details = "".join(traceback.format_exception(exc_type, exc, tb))
        message = f"internal error{where}: {exc_type.__name__}: {exc}"
        log.error("%s\n%s", message, details.rstrip())
        return self.error(message, details)

    def receive_thread_error(self, args: threading.ExceptHookArgs) -> Notification | None:
        """``threading.excepthook``: the same, for an exception that ended a thread."""
        if args.exc_type is SystemExit:  # what threading's own hook ignores
            return None
        return self.receive_error(args.exc_type, args.exc_value, args.exc_traceback, " in a worker thread")


#: The app's one notifier (the window subscribes; ``widgets.app`` installs the hooks).
notification_manager = NotificationManager()

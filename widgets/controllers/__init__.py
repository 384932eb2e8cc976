"""One controller per feature: it owns its job kinds, their results, failures and cancelling.

The window is a composition root: it builds the views from the dock table
(``widgets/docks.py``), one controller per feature, and a :class:`JobRoutes` that hands
every finished or failed job to the controller that owns its kind. A controller:

- declares the job kinds it owns (:attr:`Controller.kinds`; a kind ending in ``:`` owns a
  family, ``"attribution:"`` every ``"attribution:<method>"``) and which of them the user
  waits on (:attr:`Controller.interactive`: what Escape and the Cancel button stop);
- submits them to the one :class:`~widgets.bridge.JobRunner` (:meth:`Controller.submit`),
  from its views' request signals and the session's events;
- receives its own results (:meth:`Controller.finished`) and failures
  (:meth:`Controller.failed`; by default an error in the status bar);
- follows the docks it feeds: :meth:`Controller.on_screen` says whether one is showing
  (and marks it stale in the session when not), :meth:`Controller.dock_shown` is called
  when one comes on screen (a controller whose jobs run only while their dock shows
  re-requests there).

Adding a view with an engine job is one view file, a controller (or an entry in one) and
one row of the dock table.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from vizapp.core.notifications import Severity, notification_manager

__all__ = ["Controller", "JobRoutes", "notify"]

log = logging.getLogger(__name__)


def notify(text: str, error: bool = False) -> None:
    """Send ``text`` through the one notifier (an ERROR when ``error``, else INFO)."""
    notification_manager.notify(text, Severity.ERROR if error else Severity.INFO)


class Controller:
    """A feature's jobs, between its views, the session and the runner.

    Parameters
    ----------
    session : vizapp.session.Session
    runner : widgets.bridge.JobRunner
    views : mapping of str to QWidget
        Every view by dock key (a controller uses its own, and may update another's
        display of its results).
    on_screen : callable
        ``on_screen(key) -> bool``: whether dock ``key`` is showing (not closed, not a hidden tab).
    """

    #: The job kinds this controller owns (``"name:"`` owns every ``"name:<anything>"``).
    kinds: tuple[str, ...] = ()
    #: The kinds the user waits on: Escape and the Cancel button stop them.
    interactive: tuple[str, ...] = ()

    def __init__(self, session, runner, views: dict, on_screen: Callable[[str], bool]) -> None:
        self.session = session
        self.runner = runner
        self.views = views
        self._on_screen = on_screen

    # --- jobs --------------------------------------------------------------------
    def submit(self, kind: str, fn, *args, **kwargs) -> int:
        """Queue a job of one of this controller's kinds on the one runner."""
        if not self.owns(kind):
            raise ValueError(f"{type(self).__name__} does not own job kind '{kind}'; add it to its kinds")
        return self.runner.submit(kind, fn, *args, **kwargs)

    def owns(self, kind: str) -> bool:
        return any(kind == k or (k.endswith(":") and kind.startswith(k)) for k in self.kinds)

    def finished(self, kind: str, result) -> None:
        """A job of this controller's finished (on the GUI thread, the latest of its kind)."""

    def failed(self, kind: str, message: str) -> None:
        """A job of this controller's failed: by default, an error in the status bar."""
        notify(message, error=True)

    def cancel(self) -> None:
        """Stop the jobs the user waits on (Escape, the Cancel button).

        The plain kinds of :attr:`interactive`; a controller with a family (``"name:"``)
        cancels its members itself, since only it knows them.
        """
        kinds = [k for k in self.interactive if not k.endswith(":")]
        if kinds:
            self.runner.cancel(*kinds)

    # --- docks -------------------------------------------------------------------
    def on_screen(self, key: str) -> bool:
        """Whether dock ``key`` is showing; if not, the session marks it stale."""
        shown = self._on_screen(key)
        self.session.mark_stale(key, not shown)
        return shown

    def dock_shown(self, key: str) -> None:
        """Dock ``key`` (one this controller feeds) came on screen."""

    def dock_hidden(self, key: str) -> None:
        """Dock ``key`` went off screen (another tab raised, closed, the window minimised)."""


class JobRoutes:
    """Which controller owns which job kind; the runner's results and failures go through it."""

    def __init__(self, controllers: Iterable[Controller] = ()) -> None:
        self.controllers: list[Controller] = []
        for c in controllers:
            self.register(c)

    def register(self, controller: Controller) -> None:
        """Add ``controller``; a kind may have one owner only."""
        for kind in controller.kinds:
            other = self.owner(kind)
            if other is not None:
                raise ValueError(f"job kind '{kind}' is owned by {type(other).__name__} already")
        self.controllers.append(controller)

    def owner(self, kind: str) -> Controller | None:
        for c in self.controllers:
            if c.owns(kind) or (kind.endswith(":") and any(k.startswith(kind) for k in c.kinds)):
                return c
        return None

    def finished(self, kind: str, result) -> None:
        owner = self.owner(kind)
        if owner is None:  # a job someone else put on the window's runner (a benchmark's)
            log.debug("no controller owns job kind %r; its result is left alone", kind)
            return
        owner.finished(kind, result)

    def failed(self, kind: str, message: str) -> None:
        owner = self.owner(kind)
        if owner is None:
            notify(message, error=True)
        else:
            owner.failed(kind, message)

    def cancel(self) -> None:
        """Escape / Cancel: every controller stops what the user waits on."""
        for c in self.controllers:
            c.cancel()

    def interactive(self) -> list[str]:
        """Every interactive kind (a family as ``"name:"``), in the controllers' order."""
        return [k for c in self.controllers for k in c.interactive]

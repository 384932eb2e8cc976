"""The training controller: the Training lab dock (thin: the panel runs its own training).

The panel (``widgets/training_panel.py``) is built by the window on the window's runner;
this controller opens a run's checkpoint in every view and refreshes the data preview when
the dock is shown. It owns the lab's job kinds (the run, ``training``, and the previews,
``training:preview``) so that no one else claims them, but the panel listens to the runner
itself: it shows their records, results, progress and failures (and notifies them).
"""

from __future__ import annotations

from widgets.controllers import Controller

__all__ = ["TrainingController"]


class TrainingController(Controller):
    """Wires the training panel to the rest of the window; ``probing`` opens checkpoints."""

    kinds = ("training", "training:")

    def __init__(self, session, runner, views, on_screen, *, probing) -> None:
        super().__init__(session, runner, views, on_screen)
        self.panel = views["training"]
        self.panel.sigCheckpointRequested.connect(lambda path: probing.open_model(path))

    def dock_shown(self, key: str) -> None:
        self.panel.refresh_preview()

    def finished(self, kind: str, result) -> None:
        """The panel has the result already (it listens to the runner)."""

    def failed(self, kind: str, message: str) -> None:
        """The panel shows and notifies the failure itself."""

"""The training controller: the Training lab dock (thin: the panel runs its own training).

The panel (``widgets/training_panel.py``) is built by the window; this controller opens
a run's checkpoint in every view and refreshes the data preview when the dock is shown.
It owns no job kinds of the window's runner.
"""

from __future__ import annotations

from widgets.controllers import Controller

__all__ = ["TrainingController"]


class TrainingController(Controller):
    """Wires the training panel to the rest of the window; ``probing`` opens checkpoints."""

    def __init__(self, session, runner, views, on_screen, *, probing) -> None:
        super().__init__(session, runner, views, on_screen)
        self.panel = views["training"]
        self.panel.sigOpenCheckpoint.connect(lambda path: probing.open_model(path))

    def dock_shown(self, key: str) -> None:
        self.panel.refresh_preview()

"""The dock table: one row per view, from which the window builds its docks, menus and layout.

A row names the dock (``key``: what ``screenshot --dock``, ``export_view`` and the
settings use; ``vizapp.cli.DOCKS`` lists the same keys), its title, the window attribute
that holds the view, how the view is made from the session, the controller that feeds it
(``widgets/controllers/``), and where it sits in the default layout: a dock area, below or
beside another dock, or a tab behind one, with its default width and height. The rows are
in the order the docks are placed, listed in the menus, and tabbed.

Adding a view is one row here, one view file, and a controller (or an entry in one).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDockWidget, QMainWindow, QWidget

from vizapp.session import Session

__all__ = ["DOCKS", "DockRow", "default_layout", "row"]


@dataclass(frozen=True)
class DockRow:
    """One dock of the window.

    ``place`` is ``("left" | "right",)`` for a dock area, ``("below", key)`` or
    ``("beside", key)`` to split another dock, or ``("tab", key)`` to sit behind it.
    ``size`` is the default ``(width, height)`` in pixels (``None``: whatever is left).
    ``view`` names the view's class, ``"module:Class"`` (imported when the window is built;
    every view's class takes the session first); ``None`` when the window builds the view
    itself (the training panel, which also takes the window's runner).
    """

    key: str
    title: str
    attr: str
    view: str | None
    controller: str
    place: tuple
    size: tuple[int | None, int | None] = (None, None)
    raised: bool = False
    scroll: bool = False  # a long form: it scrolls rather than forcing a big window

    def make(self, session: Session) -> QWidget:
        """The row's view for ``session``."""
        module, _, name = self.view.partition(":")
        return getattr(importlib.import_module(module), name)(session)


DOCKS: tuple[DockRow, ...] = (
    # key, title, window attribute, view class, controller, place, default size
    DockRow("model", "Model", "model_view", "widgets.model_view:ModelView", "probing", ("left",), (520, 520)),
    DockRow("image", "Image", "image_view", "widgets.image_view:ImageView", "inputs", ("below", "model"), (None, 480)),
    DockRow("features", "Feature maps", "feature_view", "widgets.feature_maps_view:FeatureMapsView", "probing", ("right",), (1080, 600), raised=True),
    DockRow("kernels", "Kernels", "kernels_view", "widgets.kernels_view:KernelsView", "probing", ("below", "features"), (560, 400)),
    DockRow("predictions", "Predictions", "predictions_view", "widgets.predictions_view:PredictionsView", "probing", ("beside", "kernels"), (520, None)),
    DockRow("patches", "Top patches", "patches_view", "widgets.top_patches_view:TopPatchesView", "collection", ("tab", "features")),
    DockRow("embedding", "Embedding", "embedding_view", "widgets.embedding_view:EmbeddingView", "collection", ("tab", "features")),
    DockRow("attention", "Attention", "attention_view", "widgets.attention_view:AttentionView", "explain", ("tab", "features")),
    DockRow("attribution", "Attribution", "attribution_view", "widgets.attribution_view:AttributionView", "explain", ("tab", "features")),
    DockRow("training", "Training lab", "training_panel", None, "training", ("tab", "features"), scroll=True),
    # (the window builds the training panel itself: it takes the window's runner too)
)


def row(key: str) -> DockRow:
    """The row of dock ``key``."""
    for r in DOCKS:
        if r.key == key:
            return r
    raise KeyError(f"no dock '{key}'; the docks are {', '.join(r.key for r in DOCKS)}")


_AREAS = {"left": Qt.LeftDockWidgetArea, "right": Qt.RightDockWidgetArea}
_SPLITS = {"below": Qt.Vertical, "beside": Qt.Horizontal}


def default_layout(window: QMainWindow, docks: dict[str, QDockWidget]) -> None:
    """Place ``docks`` as the table says: areas, splits and tabs in row order, then the sizes."""
    for dock in docks.values():
        window.removeDockWidget(dock)
    for r in DOCKS:
        how, *where = r.place
        if how in _AREAS:
            window.addDockWidget(_AREAS[how], docks[r.key])
        elif how in _SPLITS:
            window.splitDockWidget(docks[where[0]], docks[r.key], _SPLITS[how])
        else:
            window.tabifyDockWidget(docks[where[0]], docks[r.key])
    for dock in docks.values():
        dock.show()
    for r in DOCKS:
        if r.raised:
            docks[r.key].raise_()
    # The widths of the areas side by side, then each split against its neighbour.
    areas = [r for r in DOCKS if r.place[0] in _AREAS]
    window.resizeDocks([docks[r.key] for r in areas], [r.size[0] for r in areas], Qt.Horizontal)
    for r in DOCKS:
        how, *where = r.place
        if how in _SPLITS:
            side = 1 if how == "below" else 0  # heights for a vertical split, widths for a horizontal one
            anchor = row(where[0])
            window.resizeDocks([docks[anchor.key], docks[r.key]], [anchor.size[side], r.size[side]], _SPLITS[how])

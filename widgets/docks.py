"""The dock table: one row per view, from which the window builds its docks, menus and layout.

A row names the dock (``key``: what ``screenshot --dock``, ``export_view`` and the
settings use; ``vizapp.cli.DOCKS`` lists the same keys), its title, the window attribute
that holds the view, how the view is made from the session, the controller that feeds it
(``widgets/controllers/``), and where it sits in the default layout: a dock area, below or
beside another dock, or a tab behind one, with its default width and height as shares of
the window, on a wide and on a small (compact) screen. The rows are
in the order the docks are placed, listed in the menus, and tabbed.

Adding a view is one row here, one view file, and a controller (or an entry in one).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDockWidget, QMainWindow, QWidget

from vizapp.session import Session

__all__ = ["COMPACT_BELOW", "DOCKS", "DockRow", "default_layout", "is_compact", "row"]


@dataclass(frozen=True)
class DockRow:
    """One dock of the window.

    ``place`` is ``("left" | "right",)`` for a dock area, ``("below", key)`` or
    ``("beside", key)`` to split another dock, or ``("tab", key)`` to sit behind it.
    ``size`` is the default ``(width, height)`` as fractions of the window (``None``: whatever
    is left). ``compact`` and ``compact_size`` are the same on a small screen (``None``: as
    ``place`` / ``size``); see :func:`is_compact` for the rule.
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
    size: tuple[float | None, float | None] = (None, None)
    scroll: bool = False  # a long form: it scrolls rather than forcing a big window
    compact: tuple | None = None
    compact_size: tuple[float | None, float | None] | None = None

    def make(self, session: Session) -> QWidget:
        """The row's view for ``session``."""
        module, _, name = self.view.partition(":")
        return getattr(importlib.import_module(module), name)(session)

    def placement(self, compact: bool) -> tuple:
        return self.compact if compact and self.compact is not None else self.place

    def fractions(self, compact: bool) -> tuple[float | None, float | None]:
        return self.compact_size if compact and self.compact_size is not None else self.size


DOCKS: tuple[DockRow, ...] = (
    # key, title, window attribute, view class, controller, place, default size (fractions of
    # the window); on a small screen (compact, see is_compact) the left column holds the Image
    # (the Model and the Kernels behind it) over the Predictions, and the main tabs take the
    # whole height on the right.
    DockRow("model", "Model", "model_view", "widgets.model_view:ModelView", "probing", ("left",), (0.3, 0.45),
            compact=("tab", "image")),
    DockRow("image", "Image", "image_view", "widgets.image_view:ImageView", "inputs", ("below", "model"), (None, 0.55),
            compact=("left",), compact_size=(0.3, 0.62)),
    DockRow("features", "Feature maps", "feature_view", "widgets.feature_maps_view:FeatureMapsView", "probing", ("right",), (0.7, 0.62),
            compact_size=(0.7, None)),
    DockRow("kernels", "Kernels", "kernels_view", "widgets.kernels_view:KernelsView", "probing", ("below", "features"), (0.38, 0.38),
            compact=("tab", "image")),
    DockRow("predictions", "Predictions", "predictions_view", "widgets.predictions_view:PredictionsView", "probing", ("beside", "kernels"), (0.32, None),
            compact=("below", "image"), compact_size=(None, 0.38)),
    DockRow("patches", "Top patches", "patches_view", "widgets.top_patches_view:TopPatchesView", "collection", ("tab", "features")),
    DockRow("embedding", "Embedding", "embedding_view", "widgets.embedding_view:EmbeddingView", "collection", ("tab", "features")),
    DockRow("attention", "Attention", "attention_view", "widgets.attention_view:AttentionView", "explain", ("tab", "features")),
    DockRow("attribution", "Attribution", "attribution_view", "widgets.attribution_view:AttributionView", "explain", ("tab", "features")),
    DockRow("convolution", "Convolution", "convolution_view", "widgets.convolution_view:ConvolutionView", "convolution",
            ("tab", "features")),
    DockRow("featurevis", "Feature vis", "featurevis_view", "widgets.featurevis_view:FeatureVisView", "featurevis",
            ("tab", "features")),
    DockRow("training", "Training lab", "training_panel", None, "training", ("tab", "features")),
    # (the window builds the training panel itself: it takes the window's runner too)
)

#: The adaptive rule: a window narrower or lower than this (times the theme's scale: at
#: scale 2 a 1920x1080 screen holds what 960x540 does at scale 1) gets the compact layout.
COMPACT_BELOW = (1400, 900)


def is_compact(width: int, height: int, scale: float = 1.0) -> bool:
    """Whether a ``width`` x ``height`` window gets the compact layout at theme ``scale``.

    Wide (1400x900 and up at scale 1): the Model and Image docks in a left column, the main
    tabs (feature maps, top patches, embedding, attention, attribution, training lab) on the
    right with Kernels and Predictions side by side below them. Compact (a 1024x768 or
    1280x720 projector): the left column holds the Image over the Predictions (what goes in
    and what comes out stay on screen), with the Model and the Kernels tabs behind the Image,
    and the main tabs take the right side's whole height. Views that would still not fit wrap their controls (``widgets.flow_layout``) or
    scroll a long form alone (the training lab's settings).
    """
    return width < COMPACT_BELOW[0] * scale or height < COMPACT_BELOW[1] * scale


def row(key: str) -> DockRow:
    """The row of dock ``key``."""
    for r in DOCKS:
        if r.key == key:
            return r
    raise KeyError(f"no dock '{key}'; the docks are {', '.join(r.key for r in DOCKS)}")


_AREAS = {"left": Qt.LeftDockWidgetArea, "right": Qt.RightDockWidgetArea}
_SPLITS = {"below": Qt.Vertical, "beside": Qt.Horizontal}


def default_layout(window: QMainWindow, docks: dict[str, QDockWidget]) -> None:
    """Place ``docks`` as the table says for the window's size (:func:`is_compact`): areas and
    splits, then tabs, each in row order (a row whose anchor is placed later waits for it),
    the first dock of each tab group raised, then the sizes as fractions of the window (the
    splits', then the areas')."""
    from widgets.theme import THEME

    compact = is_compact(window.width(), window.height(), THEME.scale)
    for dock in docks.values():
        window.removeDockWidget(dock)
    placed: set[str] = set()
    # Areas and splits before tabs: Qt adds a split of a dock that is already tabbed as one
    # more tab, not beside it.
    waiting = sorted(DOCKS, key=lambda r: r.placement(compact)[0] == "tab")
    while waiting:
        later = []
        for r in waiting:
            how, *where = r.placement(compact)
            if where and where[0] not in placed:
                later.append(r)
                continue
            if how in _AREAS:
                window.addDockWidget(_AREAS[how], docks[r.key])
            elif how in _SPLITS:
                window.splitDockWidget(docks[where[0]], docks[r.key], _SPLITS[how])
            else:
                window.tabifyDockWidget(docks[where[0]], docks[r.key])
            placed.add(r.key)
        if len(later) == len(waiting):
            raise ValueError(f"dock table: {', '.join(r.key for r in later)} wait for docks never placed")
        waiting = later
    for dock in docks.values():
        dock.show()
    for r in DOCKS:  # each tab group shows its first dock
        how, *where = r.placement(compact)
        if how == "tab":
            docks[where[0]].raise_()
    # The widths of the areas side by side, then each split against its neighbour.
    w, h = window.width(), window.height()

    def pixels(fractions, side):
        total = w if side == 0 else h
        return [round(total * (f or 0.0)) for f in fractions]

    for r in DOCKS:
        how, *where = r.placement(compact)
        if how in _SPLITS:
            side = 1 if how == "below" else 0  # heights for a vertical split, widths for a horizontal one
            anchor = row(where[0])
            sizes = pixels([anchor.fractions(compact)[side], r.fractions(compact)[side]], side)
            window.resizeDocks([docks[anchor.key], docks[r.key]], sizes, _SPLITS[how])
    areas = [r for r in DOCKS if r.placement(compact)[0] in _AREAS]  # last: the splits may have moved them
    window.resizeDocks([docks[r.key] for r in areas], pixels([r.fractions(compact)[0] for r in areas], 0), Qt.Horizontal)

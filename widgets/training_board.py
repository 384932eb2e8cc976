"""The training lab's live board: a run's records, drawn in batches on the four live views.

:class:`TrainingBoard` lays out the views of :mod:`widgets.training_views` (the curves above;
the kernels, the embedding and the confusion matrix below) and keeps what a run has sent so
far (the steps, the evaluations, the latest record of each type, the latest checkpoint). The
GUI thread never draws per record: :meth:`~TrainingBoard.add` queues a record and a
single-shot timer draws the queue at most every :data:`REDRAW_MS` (persistent items,
``setData`` / ``setImage``), so painting costs training little however fast steps come.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QSplitter, QWidget

from widgets.training_views import ConfusionView, CurvesView, EmbeddingScatter, KernelView

__all__ = ["TrainingBoard", "REDRAW_MS", "STAGGER_MS", "PICTURE_VIEWS"]

#: The live views are redrawn at most this often (milliseconds), never per record.
REDRAW_MS = 100
#: The delay before the next picture view when several changed at once.
STAGGER_MS = 30
#: The views drawn one per tick, in this order.
PICTURE_VIEWS = ("prepare_embedding", "prepare_confusion", "kernels", "embedding", "confusion")


class TrainingBoard(QSplitter):
    """The four live views of a run and the records behind them.

    Signals
    -------
    sigStarted(info)
        The run's ``started`` record was drawn (sizes, classes, total steps).
    sigDrawn()
        A batch of records was taken in (the panel updates its status line then).
    """

    sigStarted = Signal(object)
    sigDrawn = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(Qt.Vertical, parent)
        self.curves_view = CurvesView()
        self.kernel_mosaic_view = KernelView()
        self.embedding_scatter = EmbeddingScatter()
        self.confusion_view = ConfusionView()
        # The curves over the three pictures; every part shrinks to the theme's plot_min.
        self.pictures = QSplitter(Qt.Horizontal)
        for w in (self.kernel_mosaic_view, self.embedding_scatter, self.confusion_view):
            self.pictures.addWidget(w)
        for part in (self.curves_view, self.pictures):
            part.setChildrenCollapsible(False)
            self.addWidget(part)
        self.setChildrenCollapsible(False)
        self._shares = (3, 2)  # the curves carry two axes and a key
        for i, stretch in enumerate(self._shares):
            self.setStretchFactor(i, stretch)
        self._dragged = False  # the user moved the handle: their split stays
        self.splitterMoved.connect(lambda *_: setattr(self, "_dragged", True))
        self._pending: list[dict] = []
        self._dirty: set[str] = set()
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._drain)
        self.reset()

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        """The curves and the pictures keep their 3:2 shares as the board grows or shrinks (a
        splitter alone keeps pixels: the settings folded away or a scale change could leave the
        curves at their minimum while the pictures took the rest)."""
        super().resizeEvent(event)
        if not self._dragged:
            total = sum(self.sizes())
            if total > 0:
                self.setSizes([round(total * share / sum(self._shares)) for share in self._shares])

    # --- records in -------------------------------------------------------------------
    def reset(self, optimizer: str = "") -> None:
        """Forget the last run and clear the views (``optimizer`` titles the curves)."""
        self.optimizer = optimizer
        self._steps: dict[str, list[float]] = {k: [] for k in ("step", "epoch", "loss", "acc", "lr", "samples_per_s")}
        self._evals: dict[str, list[float]] = {k: [] for k in ("step", "epoch", "val_loss", "val_acc")}
        self._last: dict[str, dict] = {}
        self.info: dict = {}
        self.checkpoint: str | None = None
        self.checkpoint_why = ""
        self._pending.clear()
        self._dirty.clear()
        self._timer.stop()
        for view in (self.curves_view, self.kernel_mosaic_view, self.embedding_scatter, self.confusion_view):
            view.reset()

    def add(self, record: dict) -> None:
        """Queue ``record``; the views draw it within :data:`REDRAW_MS`."""
        self._pending.append(record)
        if not self._timer.isActive():
            self._timer.start(REDRAW_MS)

    def flush(self) -> None:
        """Draw everything queued now (the run's end)."""
        self._timer.stop()
        self._drain(everything=True)

    def stop(self) -> None:
        """Draw nothing more (the panel is closing)."""
        self._timer.stop()

    def _drain(self, everything: bool = False) -> None:
        """Take every queued record, then redraw what changed.

        The curves (and the panel's status line) are redrawn on every tick; the picture
        views (kernels, embedding, confusion matrix, and building their items when a run
        starts) one per tick, the next one :data:`STAGGER_MS` later, so that a burst of
        records (a run's start, an evaluation) never paints every view in one event-loop
        turn. ``everything`` draws all that is due at once (the run's end).
        """
        records, self._pending = self._pending, []
        dirty = self._dirty
        started = False
        for n, r in enumerate(records):
            kind = r.get("type")
            self._last[kind] = r
            if kind == "started":
                self.info = r
                self._set_epoch_ticks()  # re-lays out both plots' axes: nothing else this tick
                self.sigStarted.emit(r)
                dirty |= {"prepare_embedding", "prepare_confusion"}
                started = not everything
                if started:
                    self._pending[:0] = records[n + 1:]
                    records = records[:n + 1]
                    break
            elif kind == "step":
                s = self._steps
                s["step"].append(r["step"])
                s["epoch"].append(r["epoch"])
                s["loss"].append(r["loss"])
                s["acc"].append(r.get("acc", np.nan))
                s["lr"].append(r["lr"])
                s["samples_per_s"].append(r["samples_per_s"])
                dirty.add("curves")
            elif kind == "eval":
                e = self._evals
                e["step"].append(r["step"])
                e["epoch"].append(r["epoch"])
                e["val_loss"].append(r.get("val_loss", np.nan))
                e["val_acc"].append(r["val_acc"])
                dirty |= {"curves", "confusion"}
            elif kind in ("kernels", "embedding"):
                dirty.add(kind)
            elif kind == "checkpoint" and r.get("path"):
                self.checkpoint, self.checkpoint_why = r["path"], r["why"]
        if "curves" in dirty and not started:
            dirty.discard("curves")
            self._draw_curves()
        classes = self.info.get("classes", [])
        metric = self.info.get("loss", "ce") != "ce"  # metric learning: accuracy by nearest class centre
        for view in () if started else PICTURE_VIEWS:
            if view not in dirty:
                continue
            dirty.discard(view)
            if view == "prepare_embedding":
                self.embedding_scatter.set_classes(classes)
            elif view == "prepare_confusion":
                self.confusion_view.prepare(classes, metric)
            elif view == "kernels":
                self.kernel_mosaic_view.set_kernels(self._last["kernels"])
            elif view == "embedding":
                self.embedding_scatter.set_embedding(self._last["embedding"], metric)
            else:
                self.confusion_view.set_confusion(self._last["eval"]["confusion"], classes, metric)
            if not everything:
                break
        if records:
            self.sigDrawn.emit()
        if (dirty or self._pending) and not everything and not self._timer.isActive():
            self._timer.start(STAGGER_MS)

    # --- drawing ------------------------------------------------------------------------
    def _set_epoch_ticks(self) -> None:
        info = self.info
        self.curves_view.set_schedule(info["steps_per_epoch"], info["epochs"], info["total_steps"],
                                      metric=info.get("loss", "ce") != "ce")

    def _draw_curves(self) -> None:
        self.curves_view.set_data(self._steps, self._evals, self.optimizer)

    # --- what is shown ------------------------------------------------------------------
    def curves(self) -> dict[str, np.ndarray]:
        """The data the curves show: ``step``, ``loss``, ``acc_step``, ``acc`` (train, per
        logged step), ``val_step``, ``val_loss``, ``val_acc_step``, ``val_acc``; plus
        ``lr`` and ``samples_per_s`` per logged step."""
        out = self.curves_view.curves()
        out["lr"] = np.asarray(self._steps["lr"], dtype=np.float64)
        out["samples_per_s"] = np.asarray(self._steps["samples_per_s"], dtype=np.float64)
        return out

    @property
    def last_records(self) -> dict[str, dict]:
        """The latest drawn record of each type (``started``, ``step``, ``eval``, ``kernels``,
        ``embedding``, ``checkpoint``)."""
        return dict(self._last)

    def kernel_image(self) -> np.ndarray | None:
        """The kernel mosaic shown (``H x W x 3`` uint8), from ``kernel_mosaic``."""
        return self.kernel_mosaic_view.image()

    def embedding_points(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(coords N x 2, labels N)`` of the embedding shown."""
        return self.embedding_scatter.points()

    def embedding_range(self) -> float:
        """Half the side of the embedding's (fixed, symmetric) view range."""
        return self.embedding_scatter.view_range()

    def confusion(self) -> np.ndarray | None:
        """The confusion matrix shown (rows: true class, columns: predicted; counts)."""
        return self.confusion_view.counts()

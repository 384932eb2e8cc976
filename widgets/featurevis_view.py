"""The Feature visualisation dock: an image optimised to excite a unit, evolving live.

The objective follows the selection: the selected layer and channel (Feature maps, Top patches,
the layer overview here), or the class picked in the Predictions dock; a preset sets the
regularisers of a paper ("Simonyan 2014", "Yosinski 2015", "Olah 2017", "DeepDream"), and the
boxes (``widgets/featurevis_panels.py``) the main settings. Run optimises the image as a
generator job: the picture is repainted from each preview as it arrives (the latest wins: one
repaint per event-loop pass), with the objective's trace below. Beside it, as in OpenAI
Microscope, the channel's top-9 dataset patches from the collection's index (or how to build
one); for DeepDream the image it started from. The second page is the layer overview: every
channel's visualisation as one mosaic (a cancellable batch job, cached on disk; a click on a
tile selects that channel).

The feature-vis controller (``widgets/controllers/featurevis.py``) runs the jobs and feeds
:meth:`FeatureVisView.set_step`, :meth:`~FeatureVisView.set_result`,
:meth:`~FeatureVisView.set_patches`, :meth:`~FeatureVisView.set_overview_tile` and
:meth:`~FeatureVisView.set_overview`; nothing here imports torch at module level.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QPen
from PySide6.QtWidgets import (
    QProgressBar,
    QPushButton,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from widgets.common import heading, image_view_box
from widgets.convolution_panels import labelled, spin
from widgets.featurevis_panels import SettingsForm, tile_images
from widgets.flow_layout import flow_of
from widgets.theme import THEME

__all__ = ["FeatureVisView", "IDLE"]

IDLE = "Open a model: pick a channel (Feature maps, Top patches) or a class (Predictions), then Run"
HINT = "Run optimises the image · the objective follows the selected channel or the picked class"
PAGES = ("visualisation", "overview")


class FeatureVisView(QWidget):
    """The feature visualisation dock (see the module's docstring).

    Signals
    -------
    sigRunRequested()
        Run: optimise an image with :meth:`settings`.
    sigCancelRequested()
        Cancel (the run or the overview).
    sigOverviewRequested()
        Compute the layer overview with :meth:`overview_settings`.
    sigIndexRequested()
        No index has the layer: index a collection (the samples when none is chosen).
    sigChannelChanged(channel)
        A tile of the overview was clicked.
    sigPatchRequested(patch)
        A top patch was clicked: open its image.
    """

    sigRunRequested = Signal()
    sigCancelRequested = Signal()
    sigOverviewRequested = Signal()
    sigIndexRequested = Signal()
    sigChannelChanged = Signal(int)
    sigPatchRequested = Signal(object)

    def __init__(self, session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.result = None  # the Visualisation on screen
        self.shown: np.ndarray | None = None  # the picture on screen (a batch tiled)
        self.trace: list[float] = []
        self.previews = 0  # previews painted during the current run
        self.preview_records = 0  # previews received during the current run (some may not be painted)
        self.running = False
        self.grid = None  # the PatchGrid beside the visualisation
        self._patch_tiling = None
        self.overview = None  # the finished Overview
        self.overview_tiles: dict[int, np.ndarray] = {}  # channel -> its visualisation
        self._overview_layer: str | None = None
        self._overview_count = 0
        self._overview_tiling = None
        self._overview_picture: np.ndarray | None = None  # the mosaic on screen, filled in tile by tile
        self._overview_pasted: set[int] = set()
        self._latest = None  # the newest Step waiting to be painted
        self._paint_queued = False
        self._overview_queued = False

        self.form = SettingsForm()
        self.form.sigChanged.connect(self._describe)
        self.title = heading("Feature visualisation", "heading")
        self.note = heading("", "body", bold=False, style=lambda: f"color: {THEME.colour('warning')};")
        self.run_button = QPushButton("Run")
        self.run_button.setToolTip("Optimise an image to excite the objective (the image evolves as it runs)")
        self.run_button.clicked.connect(lambda: self.sigRunRequested.emit())
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the run (the last preview stays)")
        self.cancel_button.clicked.connect(lambda: self.sigCancelRequested.emit())
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.settings_button = QPushButton("Settings")
        self.settings_button.setCheckable(True)
        self.settings_button.setChecked(True)
        self.settings_button.setToolTip("Show or fold away the settings")
        self.settings_button.toggled.connect(lambda on: self.form.setVisible(on))
        self._build_visualisation_page()
        self._build_overview_page()
        self.pages = QTabWidget()
        self.pages.addTab(self.vis_page, "Visualisation")
        self.pages.addTab(self.overview_page, "Layer overview")
        self.caption = heading(HINT, "small", bold=False)

        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addWidget(self.note)
        layout.addWidget(self.form)
        layout.addLayout(flow_of(self.run_button, self.cancel_button, self.progress, self.settings_button))
        layout.addWidget(self.pages, 1)
        layout.addWidget(self.caption)
        self._apply_theme()
        THEME.changed.connect(self._apply_theme)
        self._set_running(False)
        self.note.setVisible(False)
        for event in (session.events.layer, session.events.channel):
            event.connect(lambda _v: self._describe())
        session.events.channel.connect(lambda c: self._channel_selected(c))
        session.events.target.connect(self._target_picked)
        session.events.predictions.connect(lambda _p: self._follow_prediction())
        session.events.model.connect(lambda _m: self._model_changed())
        self._describe()

    # --- building ------------------------------------------------------------------------------
    def _build_visualisation_page(self) -> None:
        self.canvas = pg.GraphicsLayoutWidget()
        self.view = image_view_box(self.canvas)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.view.addItem(self.image)
        self.canvas.nextRow()
        self.plot = self.canvas.addPlot()
        self.plot.setMenuEnabled(False)
        self.plot.setLabel("bottom", "step")
        self.plot.setLabel("left", "objective")
        self.curve = self.plot.plot([], [])
        self._beside = False
        self.canvas.installEventFilter(self)
        self._arrange()
        self.side_title = heading("", "body")
        self.side_canvas = pg.GraphicsLayoutWidget()
        self.side_view = image_view_box(self.side_canvas)
        self.side_image = pg.ImageItem(axisOrder="row-major")
        self.side_view.addItem(self.side_image)
        self.side_canvas.scene().sigMouseClicked.connect(self._side_clicked)
        self.side_message = heading("", "body", bold=False)
        self.index_button = QPushButton("Index the sample photographs")
        self.index_button.setToolTip("Find each channel's top patches in a collection (the Top patches dock's index)")
        self.index_button.clicked.connect(lambda: self.sigIndexRequested.emit())
        side = self.side = QWidget()
        column = QVBoxLayout(side)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self.side_title)
        column.addWidget(self.side_canvas, 1)
        column.addWidget(self.side_message)
        column.addWidget(self.index_button)
        column.addStretch(0)
        self.split = QSplitter(Qt.Horizontal)
        self.split.addWidget(self.canvas)
        self.split.addWidget(side)
        self.split.setStretchFactor(0, 1)
        self.split.setStretchFactor(1, 1)
        self.split.setSizes([1000, 1000])
        self.vis_page = self.split

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt override
        if obj is self.canvas and event.type() == QEvent.Resize:
            self._arrange()
        return False

    def _arrange(self) -> None:
        """The objective's trace under the image, or beside it on a wide, low canvas (a projector's)."""
        beside = self.canvas.width() > 1.5 * self.canvas.height()
        if beside == self._beside and self.canvas.ci.layout.count() == 2 and self.plot.parentItem() is not None:
            return
        self._beside = beside
        layout = self.canvas.ci
        layout.removeItem(self.plot)
        layout.addItem(self.plot, row=0 if beside else 1, col=1 if beside else 0)
        grid = layout.layout
        grid.setRowStretchFactor(0, 3)
        grid.setRowStretchFactor(1, 0 if beside else 1)
        grid.setColumnStretchFactor(0, 3)
        grid.setColumnStretchFactor(1, 2 if beside else 0)

    def _build_overview_page(self) -> None:
        self.overview_button = QPushButton("Compute overview")
        self.overview_button.setToolTip("Every channel's visualisation of the layer (kept on disk: a second run, "
                                        "or one after a cancel, reads what is done)")
        self.overview_button.clicked.connect(lambda: self.sigOverviewRequested.emit())
        self.overview_cancel = QPushButton("Cancel")
        self.overview_cancel.clicked.connect(lambda: self.sigCancelRequested.emit())
        self.overview_steps = spin(1, 4096, 64, "Steps per channel (fewer than a single run: there are many)")
        self.overview_size = spin(0, 1024, 96, "Image side per channel (model's: the model's input size)")
        self.overview_size.setSpecialValueText("model's")
        self.overview_batch = spin(1, 64, 8, "Channels optimised together in one pass (one image each)")
        self.overview_progress = QProgressBar()
        self.overview_canvas = pg.GraphicsLayoutWidget()
        self.overview_view = image_view_box(self.overview_canvas)
        self.overview_image = pg.ImageItem(axisOrder="row-major")
        self.overview_view.addItem(self.overview_image)
        self.marker = pg.QtWidgets.QGraphicsRectItem()
        self.marker.setVisible(False)
        self.overview_view.addItem(self.marker)
        self.overview_canvas.scene().sigMouseClicked.connect(self._overview_clicked)
        self._hover = pg.SignalProxy(self.overview_canvas.scene().sigMouseMoved, rateLimit=30,
                                     slot=self._overview_moved)
        self.overview_readout = heading("Compute the overview: one tile per channel; click a tile to select it",
                                        "body", bold=False)
        page = self.overview_page = QWidget()
        column = QVBoxLayout(page)
        column.setContentsMargins(0, 0, 0, 0)
        column.addLayout(flow_of(self.overview_button, self.overview_cancel, labelled("steps", self.overview_steps),
                                 labelled("size", self.overview_size), labelled("batch", self.overview_batch),
                                 self.overview_progress))
        column.addWidget(self.overview_canvas, 1)
        column.addWidget(self.overview_readout)

    def _apply_theme(self, *_args) -> None:
        for canvas in (self.canvas, self.side_canvas, self.overview_canvas):
            canvas.setBackground(THEME.colour("background"))
        pen = QPen(QColor(THEME.colour("accent")))
        pen.setWidthF(THEME.width("thick"))
        pen.setCosmetic(True)
        self.marker.setPen(pen)
        self.curve.setPen(pg.mkPen(THEME.colour("accent"), width=THEME.width("line")))
        side = round(THEME.pixels("picture_min"))
        for canvas in (self.canvas, self.side_canvas, self.overview_canvas):
            canvas.setMinimumSize(side, side)
        self.plot.setMinimumHeight(round(THEME.pixels("picture_min")))

    # --- the objective ---------------------------------------------------------------------------
    def place(self) -> dict:
        """The objective's place: ``layer`` and ``channel`` (the session's), or ``target`` (the class box)."""
        s, objective = self.session, self.form.objective.currentData()
        if objective == "class":
            return {"layer": None, "channel": None, "target": self.form.target.value()}
        if objective == "dream":
            return {"layer": s.layer, "channel": None, "target": None}
        return {"layer": s.layer, "channel": s.channel if s.channel is not None else 0, "target": None}

    def settings(self):
        """The engine's ``Settings`` for a run: the form's, at :meth:`place`."""
        return self.form.settings(self.session.model, **self.place())

    def overview_settings(self):
        """The overview's ``Settings``: the form's preset, method and seed, a channel objective of the
        selected layer, the overview's steps, size and batch (channels optimised together)."""
        return self.form.settings(self.session.model, objective="channel", layer=self.session.layer,
                                  channel=None, target=None, neuron=None, batch=self.overview_batch.value(),
                                  diversity=0.0, steps=self.overview_steps.value(),
                                  size=self.overview_size.value() or None)

    def description(self) -> str:
        """The objective in words: ``"blocks.4 channel 5"``, ``"class 207 (golden retriever)"``, ..."""
        place, objective = self.place(), self.form.objective.currentData()
        if objective == "class":
            text = f"class {place['target']}" + (f" ({self.form.class_name.text()})" if self.form.class_name.text() else "")
        elif objective == "dream":
            text = f"DeepDream of {place['layer']}"
        else:
            text = f"{place['layer']} channel {place['channel']}" + (" (centre neuron)" if objective == "neuron" else "")
        return ("what " if self.form.negative.isChecked() else "") + text + (" hates" if self.form.negative.isChecked() else "")

    def _describe(self) -> None:
        if self.session.model is None:
            self.title.setText("Feature visualisation")
            self.caption.setText(IDLE)
            return
        self.title.setText(f"{self.description()} · {self.form.preset.currentData()}")
        if not self.running:
            self.caption.setText(HINT)
        self._side_for_objective()

    def _channel_selected(self, channel) -> None:
        if channel is not None and self.form.objective.currentData() == "class":
            self.form.set_objective("channel")
        self._place_marker()

    def _target_picked(self, index) -> None:
        """A class picked in the Predictions dock becomes the objective."""
        if index is not None:
            self.form.set_class(int(index))
            self.form.set_objective("class")

    def _follow_prediction(self) -> None:
        """While no class is picked, the class box follows the top prediction."""
        p = self.session.predictions
        if self.session.target is None and p:
            self.form.set_class(int(p[0].index))

    def _model_changed(self) -> None:
        m = self.session.model
        self.form.set_classes(getattr(m, "class_names", None) if m is not None else None)
        self.result = self.shown = self.grid = self.overview = None
        self.overview_tiles, self._overview_layer, self._overview_picture = {}, None, None
        self.image.clear()
        self.curve.setData([], [])
        self.side_image.clear()
        self.overview_image.clear()
        self.marker.setVisible(False)
        self._describe()

    # --- the run ---------------------------------------------------------------------------------
    def _set_running(self, on: bool) -> None:
        self.running = on
        self.run_button.setEnabled(not on)
        self.cancel_button.setEnabled(on)
        self.progress.setVisible(on)

    def start_run(self, steps: int) -> None:
        """A run started: clear the trace, show the progress."""
        self._set_running(True)
        self.trace, self.previews, self.preview_records, self.result, self._latest = [], 0, 0, None, None
        self.curve.setData([], [])
        self.progress.setRange(0, max(1, steps))
        self.progress.setValue(0)
        self.caption.setText(f"optimising {self.description()}…")
        self.note.setVisible(False)

    def set_step(self, step) -> None:
        """One ``featurevis.Step``: the trace now, the preview at the next repaint (latest wins)."""
        self.trace.append(float(step.objective))
        if step.steps != self.progress.maximum():
            self.progress.setRange(0, max(1, step.steps))
        if step.preview is not None:
            self._latest = step
            self.preview_records += 1
        if not self._paint_queued:
            self._paint_queued = True
            QTimer.singleShot(0, self, self._paint)

    def _paint(self) -> None:
        self._paint_queued = False
        self.curve.setData(np.arange(1, len(self.trace) + 1), np.asarray(self.trace, np.float32))
        if self.trace:
            steps = self.progress.maximum()
            self.progress.setValue(min(len(self.trace), steps))
            self.progress.setFormat(f"step {len(self.trace)} / {steps}: {self.trace[-1]:.3g}")
        step, self._latest = self._latest, None
        if step is not None and self.running:
            self.previews += 1
            self._show_images(step.preview)

    def _show_images(self, images: np.ndarray) -> None:
        images = np.asarray(images)
        picture = images[0] if images.shape[0] == 1 else tile_images(images, cols=min(4, images.shape[0]))[0]
        first = self.shown is None or self.shown.shape != picture.shape
        self.shown = np.ascontiguousarray(picture)
        self.image.setImage(self.shown, levels=(0, 255), autoLevels=False)
        if first:
            self.view.autoRange(padding=0.01)

    def set_result(self, vis) -> None:
        """The finished ``featurevis.Visualisation``: its images, its whole trace and description."""
        self._set_running(False)
        self.result, self._latest = vis, None
        self.trace = [float(v) for v in np.asarray(vis.trace)]
        self._paint()
        self._show_images(vis.images)
        t = np.asarray(vis.trace)
        rise = f"; objective {t[0]:.3g} → {t[-1]:.3g}" if t.size else ""
        self.caption.setText(f"{vis.model}: {vis.description}, {len(t)} steps, seed {vis.settings.seed}{rise}")

    def set_stopped(self, text: str) -> None:
        """The run ended without a result (cancelled, refused): say so; the last preview stays."""
        self._set_running(False)
        self.caption.setText(text)

    def set_message(self, text: str) -> None:
        """A problem with the objective (a refused layer or class), in the dock's warning colour."""
        self._set_running(False)
        self.note.setText(text)
        self.note.setVisible(bool(text))

    # --- beside the visualisation ---------------------------------------------------------------
    def _side_for_objective(self) -> None:
        objective = self.form.objective.currentData()
        s = self.session
        self.side.setVisible(objective != "class")  # a class: the image takes the page
        if objective == "dream":
            self.grid = self._patch_tiling = None
            self.side_title.setText("The image it dreams on")
            self._side_picture(s.image.pixels if s.image is not None else None)
            self._side_text("")
        elif objective == "class":
            self.grid = self._patch_tiling = None

    def showing_patches(self) -> bool:
        """Whether the side is for the channel's top patches (channel or neuron objectives)."""
        return self.form.objective.currentData() in ("channel", "neuron")

    def set_patches(self, grid) -> None:
        """The channel's top patches (a ``vizapp.collection.patches.PatchGrid``) on a 3 x 3 grid."""
        self.grid = grid
        picture, self._patch_tiling = tile_images(grid.tiles, cols=3)
        self.side_title.setText(f"Top {len(grid.patches)} dataset patches of {grid.layer} channel {grid.channel}")
        self._side_picture(picture if grid.patches else None)
        self._side_text("" if grid.patches else "No patches in the index for this channel")

    def set_no_index(self, text: str, button: str | None) -> None:
        """No index has the layer: ``text``, and a button that builds one (``button`` its label; None: none)."""
        self.grid = self._patch_tiling = None
        self.side_title.setText("Top 9 dataset patches")
        self._side_picture(None)
        self._side_text(text)
        self.index_button.setVisible(button is not None)
        if button is not None:
            self.index_button.setText(button)

    def _side_text(self, text: str) -> None:
        self.side_message.setText(text)
        self.side_message.setVisible(bool(text))
        self.index_button.setVisible(False)

    def _side_picture(self, pixels) -> None:
        if pixels is None:
            self.side_image.clear()
            self.side_canvas.setVisible(False)
            return
        self.side_canvas.setVisible(True)
        self.side_image.setImage(np.ascontiguousarray(pixels), levels=(0, 255), autoLevels=False)
        self.side_view.autoRange(padding=0.01)

    def _side_clicked(self, event) -> None:
        if event.button() != Qt.LeftButton or self.grid is None or self._patch_tiling is None:
            return
        p = self.side_view.mapSceneToView(event.scenePos())
        i = self._patch_tiling.at(p.x(), p.y())
        if i is not None and i < len(self.grid.patches):
            self.sigPatchRequested.emit(self.grid.patches[i])

    # --- the layer overview ----------------------------------------------------------------------
    def start_overview(self, layer: str, channels: int) -> None:
        """An overview of ``layer``'s ``channels`` started: an empty mosaic, tiles fill in as they come."""
        self.overview_tiles, self._overview_picture = {}, None  # the cached ones come back at once
        self._overview_layer, self._overview_count, self.overview = layer, channels, None
        self.overview_button.setEnabled(False)
        self.overview_cancel.setEnabled(True)
        self.overview_progress.setVisible(True)
        self.overview_progress.setRange(0, max(1, channels))
        self._paint_overview()

    def set_overview_tile(self, channel: int, image: np.ndarray) -> None:
        """One channel's visualisation (from the cache or just computed)."""
        self.overview_tiles[int(channel)] = np.asarray(image)
        if not self._overview_queued:
            self._overview_queued = True
            QTimer.singleShot(0, self, self._paint_overview)

    def _paint_overview(self) -> None:
        self._overview_queued = False
        n = self._overview_count
        if not n:
            return
        tiles, t, picture = self.overview_tiles, self._overview_tiling, self._overview_picture
        shapes = {a.shape for a in tiles.values()}
        if picture is None or t is None or t.count != n or shapes - {(t.tile_h, t.tile_w, 3)}:
            picture, self._overview_tiling = tile_images([tiles.get(c) for c in range(n)])
            self._overview_pasted = set(tiles)
        else:  # only the tiles new since the last repaint are pasted in
            for c in set(tiles) - self._overview_pasted:
                x, y = t.origin(c)
                picture[y:y + t.tile_h, x:x + t.tile_w] = tiles[c]
            self._overview_pasted = set(tiles)
        self._overview_picture = picture
        first = self.overview_image.image is None or self.overview_image.image.shape != picture.shape
        self.overview_image.setImage(picture, levels=(0, 255), autoLevels=False)
        if first:
            self.overview_view.autoRange(padding=0.01)
        done = len(self.overview_tiles)
        self.overview_progress.setValue(done)
        self.overview_progress.setFormat(f"{done} / {n} channels")
        if self.overview is None:
            self.overview_readout.setText(f"{self._overview_layer}: {done} of {n} channels; click a tile to select it")
        else:
            cached = f" ({self.overview.cached} read from the cache)" if self.overview.cached else ""
            self.overview_readout.setText(f"{self.overview.layer}: all {n} channels{cached}, "
                                          f"{self.overview.settings.steps} steps each; click a tile to select it")
        self._place_marker()

    def set_overview(self, overview) -> None:
        """The finished overview (``vizapp.explain.featurevis_overview.Overview``)."""
        self.overview = overview
        self._overview_layer, self._overview_count = overview.layer, len(overview.images)
        self.overview_tiles = {c: np.asarray(overview.images[c]) for c in range(len(overview.images))}
        self._overview_picture = None
        self._overview_idle()
        self._paint_overview()

    def overview_stopped(self, text: str) -> None:
        self._overview_idle()
        self.overview_readout.setText(text)

    def _overview_idle(self) -> None:
        self.overview_button.setEnabled(True)
        self.overview_cancel.setEnabled(False)
        self.overview_progress.setVisible(False)

    def _place_marker(self) -> None:
        t, c = self._overview_tiling, self.session.channel
        if t is None or c is None or c >= t.count or self._overview_layer != self.session.layer:
            self.marker.setVisible(False)
            return
        x, y = t.origin(c)
        self.marker.setRect(QRectF(x - 1, y - 1, t.tile_w + 2, t.tile_h + 2))
        self.marker.setVisible(True)

    def channel_at(self, x: float, y: float) -> int | None:
        """The channel of the overview tile at picture coordinates ``(x, y)``."""
        return None if self._overview_tiling is None else self._overview_tiling.at(x, y)

    def _overview_moved(self, event) -> None:
        """Hovering a tile names its channel in the read-out."""
        p = self.overview_view.mapSceneToView(event[0])
        channel = self.channel_at(p.x(), p.y())
        if channel is not None:
            state = "" if channel in self.overview_tiles else " (not done yet)"
            self.overview_readout.setText(f"{self._overview_layer} channel {channel}{state}: click to select it")

    def _overview_clicked(self, event) -> None:
        if event.button() != Qt.LeftButton:
            return
        p = self.overview_view.mapSceneToView(event.scenePos())
        channel = self.channel_at(p.x(), p.y())
        if channel is not None:
            self.sigChannelChanged.emit(channel)

    # --- scenes (widgets/controllers/lecture.py) and screenshot --view-option ---------------------
    def view_options(self) -> dict:
        """The form's values, the page and the overview's steps and size."""
        return {**self.form.values(), "page": PAGES[self.pages.currentIndex()],
                "overview_steps": self.overview_steps.value(), "overview_size": self.overview_size.value(),
                "overview_batch": self.overview_batch.value(),
                "settings": self.settings_button.isChecked()}

    def set_view_options(self, options: dict) -> None:
        """Apply :meth:`view_options`' keys (unknown keys and values are skipped); ``run: true``
        then starts a run and ``overview: true`` computes the overview (``screenshot --view-option``)."""
        from widgets.options import set_check, set_slider

        self.form.set_values(options)
        set_slider(self.overview_steps, options.get("overview_steps"))
        set_slider(self.overview_size, options.get("overview_size"))
        set_slider(self.overview_batch, options.get("overview_batch"))
        set_check(self.settings_button, options.get("settings"))
        if options.get("page") in PAGES:
            self.pages.setCurrentIndex(PAGES.index(options["page"]))
        if options.get("run") is True:
            self.sigRunRequested.emit()
        if options.get("overview") is True:
            self.pages.setCurrentIndex(PAGES.index("overview"))
            self.sigOverviewRequested.emit()

"""The Convolution dock: a convolution happening, one output position at a time.

The window slides over the input (the image as the selected conv layer sees it, or one
channel of the layer's input), with a kernel that is the layer's own filter for the selected
output channel (all its input channels, summed, plus the bias), a classic one
(``vizapp.explain.convolution.CLASSIC``) or the user's 3 x 3 / 5 x 5 grid, under the stride,
padding and dilation chosen (by default the layer's own). Each step shows the window's real
(dilated) samples on the padded input, the numbers (``widgets/convolution_panels.py``) and the
output map filling in; then ReLU and the 2 x 2 pool the same way (the stage selector). Space
plays and pauses, the arrows step (Right/Left one position, Down/Up one output row) while
the keys are this dock's (``widgets/keys.py``: the focus in it, or it maximised); a click on
the output jumps there. The second page puts the classic filters on the image beside the
first conv layer's learned maps.

The convolution controller (``widgets/controllers/convolution.py``) runs the jobs and feeds
:meth:`ConvolutionView.set_convolution` and :meth:`ConvolutionView.set_classic`; everything here
is numpy (a ``Convolution`` result's ``window``/``pool_window`` do the engine's arithmetic).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QRectF, QSignalBlocker, Qt, QTimer, Signal
from PySide6.QtGui import QPainterPath
from PySide6.QtWidgets import (
    QCheckBox,
    QGraphicsPathItem,
    QHBoxLayout,
    QPushButton,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from widgets.common import heading, image_view_box
from widgets.convolution_panels import (
    STAGES,
    KernelEditor,
    StepNumbers,
    Stepper,
    combo,
    diverging_rgba,
    identity,
    labelled,
    mosaic,
    pen,
    rgb_of,
    set_data,
    spin,
    tile_font,
)
from widgets.flow_layout import flow_of
from widgets.theme import THEME

__all__ = ["ConvolutionView", "SPEEDS", "OWN_FILTER", "CUSTOM"]

#: Positions per second of the play button's speeds.
SPEEDS = (1, 2, 5, 10, 25, 100, 500, 2500)
OWN_FILTER, CUSTOM = "filter", "custom"
IDLE = "Open a model and an image: the first conv layer's filter slides over the image here"


class ConvolutionView(QWidget):
    """The convolution explainer (see the module's docstring).

    Signals
    -------
    sigRequested()
        The layer, filter, input, kernel or a setting changed: compute the convolution again
        (the controller reads :meth:`request`).
    sigClassicRequested()
        The "Classic vs learned" page is on screen without maps for the current image.
    """

    sigRequested = Signal()
    sigClassicRequested = Signal()

    def __init__(self, session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from vizapp.explain.convolution import CLASSIC

        self.session = session
        self.conv = None  # vizapp.explain.convolution.Convolution on screen
        self.classic = None  # the classic_vs_learned dict on screen
        self.layers: dict[str, tuple[int, int, int, bool]] = {}  # conv layer -> (in, out, groups, bias)
        self.stepper = Stepper()
        self._stage = "conv"
        self._pool_note = ""  # said in the caption when the output is too small to pool
        self._pending_step: int | None = None
        self._input_rgb: dict[str, np.ndarray] = {}
        self._budget = 0.0
        self.setFocusPolicy(Qt.StrongFocus)

        self.title = heading("Convolution", "body")
        self.note = heading("", "body", bold=False, style=lambda: f"color: {THEME.colour('warning')};")
        # Stepping.
        self.stage = combo()
        for key, text in STAGES.items():
            self.stage.addItem(text, key)
        self.stage.setToolTip("Step through the convolution, then ReLU, then the 2×2 pool")
        self.stage.activated.connect(lambda _i: self.set_stage(self.stage.currentData()))
        self.play_button = QPushButton("▶ Play")
        self.play_button.setCheckable(True)
        self.play_button.setToolTip("Play / pause the sliding window (Space)")
        self.play_button.toggled.connect(self._play_toggled)
        self.back_button = QPushButton("◀")
        self.back_button.setToolTip("One position back (Left; Up: one row)")
        self.back_button.clicked.connect(lambda: self.step(-1))
        self.next_button = QPushButton("▶")
        self.next_button.setToolTip("One position on (Right; Down: one row)")
        self.next_button.clicked.connect(lambda: self.step(1))
        self.end_button = QPushButton("To the end")
        self.end_button.setToolTip("Fill the whole map in")
        self.end_button.clicked.connect(lambda: self.go(self.stepper.count - 1))
        self.speed = combo()
        for s in SPEEDS:
            self.speed.addItem(f"{s} / s", s)
        self.speed.setCurrentIndex(SPEEDS.index(10))
        self.speed.setToolTip("Positions per second while playing")
        # What is convolved.
        self.layer = combo()
        self.layer.setToolTip("The conv layer (follows the selected layer when it is a convolution)")
        self.layer.activated.connect(lambda _i: self._changed())
        self.channel = spin(0, 0, 0, "The output channel: which of the layer's filters")
        self.channel.valueChanged.connect(lambda _v: self._changed())
        self.input = combo()
        self.input.setToolTip("For a classic or typed kernel: the image in grey, or one channel of the layer's input "
                              "(the layer's filter reads them all)")
        self.input.activated.connect(lambda _i: self._changed())
        self.kernel = combo()
        self.kernel.addItem("the layer's filter", OWN_FILTER)
        for name in CLASSIC:
            self.kernel.addItem(name.replace("_", " "), name)
        self.kernel.addItem("my own grid", CUSTOM)
        self.kernel.setToolTip("The layer's learned filter, a classic one, or a grid you type")
        self.kernel.activated.connect(lambda _i: self._kernel_changed())
        self.ksize = combo()
        for k in (3, 5):
            self.ksize.addItem(f"{k}×{k}", k)
        self.ksize.activated.connect(lambda _i: self._kernel_changed())
        self.editor = KernelEditor(3)
        self.editor.sigChanged.connect(self._changed)
        # The settings.
        self.own = QCheckBox("default settings")
        self.own.setToolTip("The layer's own stride, padding and dilation for its filter; stride 1 and the "
                            "padding that keeps the size for another kernel. Untick to set them")
        self.own.setChecked(True)
        self.own.toggled.connect(lambda _on: self._changed())
        self.stride = spin(1, 8, 1, "Stride S: the step between two windows")
        self.padding = spin(0, 8, 0, "Padding P: rows and columns added around the input")
        self.padding_mode = combo()
        for mode in ("zeros", "reflect"):
            self.padding_mode.addItem(mode, mode)
        self.dilation = spin(1, 6, 1, "Dilation D: the gap between the kernel's samples")
        self.pool = combo()
        self.pool.addItem("max pool", "max")
        self.pool.addItem("average pool", "avg")
        for box in (self.stride, self.padding, self.dilation):
            box.valueChanged.connect(lambda _v: self._changed())
        for box in (self.padding_mode, self.pool):
            box.activated.connect(lambda _i: self._changed())

        self.settings_button = QPushButton("Settings")
        self.settings_button.setCheckable(True)
        self.settings_button.setChecked(True)
        self.settings_button.setToolTip("Show or fold away the layer, kernel, stride, padding and dilation")
        self.settings_button.toggled.connect(lambda on: self.settings.setVisible(on))
        self._build_pages()
        self.caption = heading("", "small", bold=False)
        self.formula = heading("", "body")
        self.message = heading(IDLE, "title", bold=False)
        self.message.setAlignment(Qt.AlignCenter)
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addWidget(self.note)
        layout.addLayout(flow_of(self.stage, self.back_button, self.play_button, self.next_button,
                                 self.end_button, self.speed, self.settings_button))
        self.settings = QWidget()  # what is convolved and how: folds away to give a projector the numbers
        rows = QVBoxLayout(self.settings)
        rows.setContentsMargins(0, 0, 0, 0)
        rows.addLayout(flow_of(labelled("layer", self.layer), labelled("filter", self.channel),
                               labelled("input", self.input), labelled("kernel", self.kernel), self.ksize))
        rows.addLayout(flow_of(self.own, labelled("stride", self.stride), labelled("padding", self.padding),
                               self.padding_mode, labelled("dilation", self.dilation), self.pool))
        layout.addWidget(self.settings)
        layout.addWidget(self.pages, 1)  # or, instead, the message (a hidden one holds no room)
        layout.addWidget(self.message, 1)
        layout.addWidget(self.caption)
        layout.addWidget(self.formula)
        self._timer = QTimer(self)
        self._timer.setInterval(40)
        self._timer.timeout.connect(self._tick)
        self._kernel_changed(request=False)
        self.set_message(IDLE)
        self._apply_theme()
        THEME.changed.connect(self._apply_theme)
        session.events.channel.connect(self._session_channel)

    def _build_pages(self) -> None:
        self.canvas = pg.GraphicsLayoutWidget()
        self.in_view = image_view_box(self.canvas)
        self.canvas.nextRow()
        self.out_view = image_view_box(self.canvas)
        for row in (0, 1):  # the input over the output, the same height
            self.canvas.ci.layout.setRowStretchFactor(row, 1)
        self.in_image = pg.ImageItem(axisOrder="row-major")
        self.out_image = pg.ImageItem(axisOrder="row-major")
        self.in_view.addItem(self.in_image)
        self.out_view.addItem(self.out_image)
        self.window_path = QGraphicsPathItem()  # the window's samples on the input
        self.in_view.addItem(self.window_path)
        self.out_marker = QGraphicsPathItem()  # the output position being computed
        self.out_view.addItem(self.out_marker)
        self.out_frame = QGraphicsPathItem()  # the whole output's edge: what is still to fill in
        self.out_view.addItem(self.out_frame)
        # Cross-hairs through the window and the output position: easy to find on a projector.
        self.hairs = [pg.InfiniteLine(angle=a) for _view in (0, 1) for a in (0, 90)]
        for n, line in enumerate(self.hairs):
            (self.in_view if n < 2 else self.out_view).addItem(line)
        self.canvas.scene().sigMouseClicked.connect(self._canvas_clicked)
        self.canvas.setToolTip("Click an output pixel to jump there")
        self.numbers = StepNumbers()
        right = QWidget()
        column = QVBoxLayout(right)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self.editor)
        column.addWidget(self.numbers, 1)
        step_page = self.step_page = QWidget()
        step_page.installEventFilter(self)
        row = self._step_row = QHBoxLayout(step_page)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.canvas, 3)
        row.addWidget(right, 5)
        self.classic_canvas = pg.GraphicsLayoutWidget()
        self.classic_view = image_view_box(self.classic_canvas)
        self.learned_view = image_view_box(self.classic_canvas)
        self.classic_image = pg.ImageItem(axisOrder="row-major")
        self.learned_image = pg.ImageItem(axisOrder="row-major")
        self.classic_view.addItem(self.classic_image)
        self.learned_view.addItem(self.learned_image)
        self._tile_labels: list = []
        self.pages = QTabWidget()
        self.pages.addTab(step_page, "Step by step")
        self.pages.addTab(self.classic_canvas, "Classic vs learned")
        self.pages.currentChanged.connect(self._page_changed)

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt override
        if obj is self.step_page and event.type() == QEvent.Resize:
            self._arrange()
        return False

    def _arrange(self) -> None:
        """A wide, low page (a projector's, under the caption) puts the input beside the output;
        otherwise the input is over the output. The numbers take the rest."""
        side = self.step_page.width() > 2.6 * self.step_page.height()
        layout = self.canvas.ci
        if side == (layout.getItem(0, 1) is self.out_view):
            return
        layout.removeItem(self.out_view)
        layout.addItem(self.out_view, row=0 if side else 1, col=1 if side else 0)
        grid = layout.layout
        grid.setRowStretchFactor(0, 1)
        grid.setColumnStretchFactor(0, 1)
        grid.setRowStretchFactor(1, 0 if side else 1)  # the empty row or column takes no room
        grid.setColumnStretchFactor(1, 1 if side else 0)
        self._step_row.setStretch(0, 3)
        self._step_row.setStretch(1, 5)
        QTimer.singleShot(0, self, self._reframe)

    def _reframe(self) -> None:
        """Each map fills its box (after a new result, stage or arrangement)."""
        if self.conv is None:
            return
        ph, pw = self._input_picture().shape[:2]
        h, w = self.stepper.shape
        self.in_view.setRange(QRectF(0, 0, pw, ph), padding=0.02)
        self.out_view.setRange(QRectF(0, 0, w, h), padding=0.02)

    def _apply_theme(self, *_args) -> None:
        for canvas in (self.canvas, self.classic_canvas):
            canvas.setBackground(THEME.colour("background"))
        self.window_path.setPen(pen())
        self.out_marker.setPen(pen())
        self.out_frame.setPen(pen("muted", "hair"))
        faint = pen("accent", "hair")
        faint.setStyle(Qt.DashLine)
        for line in self.hairs:
            line.setPen(faint)
        for label in self._tile_labels:
            label.setColor(THEME.colour("text"))
            label.setFont(tile_font())

    # --- what to compute -----------------------------------------------------------
    def set_conv_layers(self, layers: dict[str, tuple[int, int, int, bool]]) -> None:
        """The model's conv layers: name -> (in channels, out channels, groups, has bias)."""
        self.layers = dict(layers)
        with QSignalBlocker(self.layer):
            self.layer.clear()
            for name in self.layers:
                self.layer.addItem(name, name)
        self.follow_layer(self.session.layer)

    def follow_layer(self, name: str | None) -> None:
        """The session selected ``name``: a conv layer is shown; another keeps the dock's conv
        layer and says so."""
        if name in self.layers:
            with QSignalBlocker(self.layer):
                self.layer.setCurrentIndex(self.layer.findData(name))
            self.note.setText("")
        elif not self.layers:
            self.note.setText("This model has no Conv2d layer to explain")
        else:
            self.note.setText(f"The selected layer '{name}' is not a convolution: showing "
                              f"{self.layer.currentData()}; pick a conv layer here or in the Model dock")
        self.note.setVisible(bool(self.note.text()))
        self._layer_shown()
        if name in self.layers and self.session.channel is not None:
            self._session_channel(self.session.channel)

    def _layer_shown(self) -> None:
        info = self.layers.get(self.layer.currentData())
        cin, cout = (info[0] // info[2], info[1]) if info else (1, 1)
        with QSignalBlocker(self.channel), QSignalBlocker(self.input):
            self.channel.setRange(0, max(0, cout - 1))
            keep = self.input.currentData()
            self.input.clear()
            self.input.addItem("", None)
            if info is not None and info[2] == 1 and cin > 1:
                for c in range(cin):
                    self.input.addItem(f"input channel {c}", c)
            row = self.input.findData(keep)
            self.input.setCurrentIndex(max(0, row))
        self._name_whole_input()

    def _name_whole_input(self) -> None:
        """The input's first item: the layer's whole input for its filter, the grey image for another kernel."""
        info = self.layers.get(self.layer.currentData())
        whole = "all its input channels" if info is None or info[0] // info[2] > 1 else "its input"
        self.input.setItemText(0, whole if self.kernel.currentData() == OWN_FILTER else "the image in grey")

    def _session_channel(self, channel: int | None) -> None:
        if channel is not None and self.layer.currentData() == self.session.layer and channel != self.channel.value():
            self.channel.setValue(min(channel, self.channel.maximum()))  # -> a request

    def _kernel_changed(self, request: bool = True) -> None:
        kind = self.kernel.currentData()
        self.ksize.setVisible(kind != OWN_FILTER)
        self.channel.setEnabled(kind == OWN_FILTER)  # another kernel has no filter number
        self.input.setEnabled(kind != OWN_FILTER)  # the layer's filter reads all its input channels
        self._name_whole_input()
        self.editor.setVisible(kind == CUSTOM)
        if kind == CUSTOM and self.editor.rowCount() != self.ksize.currentData():
            self.editor.set_weights(identity(self.ksize.currentData()))  # -> a request
            return
        if request:
            self._changed()

    def _changed(self) -> None:
        for box in (self.stride, self.padding, self.dilation, self.padding_mode):
            box.setEnabled(not self.own.isChecked())
        self.sigRequested.emit()

    def request(self) -> dict:
        """What to compute: ``layer``, ``channel`` and ``analysis.convolution``'s options."""
        kind, own = self.kernel.currentData(), self.own.isChecked()
        options = {
            "input_channel": self.input.currentData() if kind != OWN_FILTER else None,
            "kernel": kind if kind not in (OWN_FILTER, CUSTOM) else None,
            "kernel_size": self.ksize.currentData(),
            "weights": self.editor.weights() if kind == CUSTOM else None,
            "stride": None if own else self.stride.value(),
            "padding": None if own else self.padding.value(),
            "padding_mode": None if own else self.padding_mode.currentData(),
            "dilation": None if own else self.dilation.value(),
            "pool": self.pool.currentData(),
        }
        return {"layer": self.layer.currentData(), "channel": self.channel.value(), **options}

    # --- results ---------------------------------------------------------------------
    def set_message(self, text: str) -> None:
        """Show ``text`` instead of the convolution (no model, no conv layer, a refused setting)."""
        self.play_button.setChecked(False)
        self.message.setText(text)
        self.pages.setVisible(False)
        self.message.setVisible(True)
        self.title.setText("Convolution")
        self.caption.setText("")
        self.formula.setText("")

    def set_convolution(self, conv) -> None:
        """Show ``conv`` (a ``vizapp.explain.convolution.Convolution``), at the same position
        (clamped to the new output) unless a scene asked for one."""
        self.conv = conv
        self._input_rgb = {}
        self.message.setVisible(False)
        self.pages.setVisible(True)
        if self.own.isChecked():
            with QSignalBlocker(self.stride), QSignalBlocker(self.padding), QSignalBlocker(self.dilation), \
                    QSignalBlocker(self.padding_mode):
                self.stride.setValue(conv.stride)
                self.padding.setValue(conv.padding)
                self.dilation.setValue(conv.dilation)
                self.padding_mode.setCurrentIndex(max(0, self.padding_mode.findData(conv.padding_mode)))
        self._fit_stage()
        self.stepper.reshape(self._stage_shape())
        if self._pending_step is not None:
            self.stepper.go(self._pending_step)
            self._pending_step = None
        self.formula.setText(self.formula_text())
        self._render(reframe=True)

    def formula_text(self) -> str:
        """The output size with the current numbers (the effective kernel D(K−1)+1 when dilated)
        and, for a layer's own filter, the layer's parameter count K·K·C_in·C_out + C_out."""
        c = self.conv
        h, w = c.output.shape
        text = f"Output size {h}×{w}: {c.formula()}"
        params = c.params_formula()
        if params:
            rule = "K·K·C_in·C_out + C_out" if c.layer_bias else "K·K·C_in·C_out, no bias"
            text += f" · {self.layer.currentData()} has {params.replace(' (no bias)', '')} parameters ({rule})"
        return text.replace("*", "·")

    # --- stepping ------------------------------------------------------------------------
    def stage_name(self) -> str:
        return self._stage

    def set_stage(self, stage: str) -> None:
        """``"conv"``, ``"relu"`` or ``"pool"``: step that stage's output (from its first position)."""
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {', '.join(STAGES)}, not '{stage}'")
        self._stage = stage
        with QSignalBlocker(self.stage):
            self.stage.setCurrentIndex(self.stage.findData(stage))
        self._fit_stage()
        if self.conv is not None:
            self.stepper.reshape(self._stage_shape())
            self.stepper.go(0)
            self._render(reframe=True)

    def _fit_stage(self) -> None:
        """An output smaller than 2×2 has nothing to pool: the pool stage shows the ReLU instead,
        and the caption says why."""
        self._pool_note = ""
        if self._stage == "pool" and self.conv is not None and self.conv.pooled.size == 0:
            self._stage = "relu"
            self._pool_note = " · the output is smaller than 2×2: nothing to pool"
            with QSignalBlocker(self.stage):
                self.stage.setCurrentIndex(self.stage.findData("relu"))

    def _stage_shape(self) -> tuple[int, int]:
        c = self.conv
        return c.pooled.shape if self._stage == "pool" else c.output.shape

    def position(self) -> tuple[int, int]:
        """The output position shown, ``(row, column)``."""
        return self.stepper.ij

    def go(self, position: int) -> None:
        if self.conv is not None:
            self.stepper.go(position)
            self._render()

    def go_to(self, i: int, j: int) -> None:
        """Jump to output position ``(i, j)`` (the map fills in up to it)."""
        if self.conv is not None:
            self.stepper.go_ij(min(max(0, i), self.stepper.shape[0] - 1), min(max(0, j), self.stepper.shape[1] - 1))
            self._render()

    def step(self, delta: int) -> None:
        """``delta`` positions on (negative: back), clamped."""
        self.go(self.stepper.position + delta)

    def step_row(self, delta: int) -> None:
        """``delta`` output rows down (negative: up), the column kept."""
        self.go(self.stepper.position + delta * self.stepper.shape[1])

    def toggle_play(self) -> None:
        self.play_button.setChecked(not self.play_button.isChecked())

    def playing(self) -> bool:
        return self._timer.isActive()

    def _play_toggled(self, on: bool) -> None:
        self.play_button.setText("⏸ Pause" if on else "▶ Play")
        if on and self.conv is not None:
            if self.stepper.at_end():
                self.stepper.go(0)
            self._budget = 0.0
            self._timer.start()
        else:
            self._timer.stop()
            if on:
                self.play_button.setChecked(False)

    def _tick(self) -> None:
        self._budget += self.speed.currentData() * self._timer.interval() / 1000
        steps = int(self._budget)
        if steps:
            self._budget -= steps
            self.step(steps)
        if self.stepper.at_end():
            self.play_button.setChecked(False)

    def shown_output(self) -> np.ndarray:
        """The stage's output map as shown: its values where reached, NaN where not yet."""
        c = self.conv
        full = {"conv": c.output, "relu": c.relu, "pool": c.pooled}[self._stage]
        return np.where(self.stepper.reached(), full, np.nan).astype(np.float32)

    # --- drawing ------------------------------------------------------------------------------
    def _input_picture(self) -> np.ndarray:
        """The stage's input as pixels: the padded input (RGB for 3 channels, else its first
        channel) for the convolution, the conv output for ReLU, the ReLU map for the pool."""
        if self._stage not in self._input_rgb:
            c = self.conv
            if self._stage == "conv":
                x = c.padded[:3] if c.padded.shape[0] == 3 else c.padded[:1]
                lo, hi = float(x.min()), float(x.max())
                x = (x - lo) / (hi - lo if hi > lo else 1.0)
                pixels = (np.moveaxis(x, 0, -1) * 255).astype(np.uint8)
                pixels = np.repeat(pixels, 3, axis=-1) if pixels.shape[-1] == 1 else pixels
            else:
                pixels = rgb_of(c.output if self._stage == "relu" else c.relu)
            self._input_rgb[self._stage] = np.ascontiguousarray(pixels)
        return self._input_rgb[self._stage]

    def _render(self, reframe: bool = False) -> None:
        c = self.conv
        if c is None or self.pages.currentIndex() != 0:
            return
        i, j = self.stepper.ij
        self.in_image.setImage(self._input_picture(), levels=(0, 255), autoLevels=False)
        full = {"conv": c.output, "relu": c.relu, "pool": c.pooled}[self._stage]
        scale = float(np.abs(c.output).max()) or 1.0
        self.out_image.setImage(diverging_rgba(full, self.stepper.reached(), scale), levels=(0, 255), autoLevels=False)
        path = QPainterPath()
        if self._stage == "conv":
            window = c.window(i, j)
            for r in window.rows:
                for col in window.cols:
                    path.addRect(QRectF(float(col), float(r), 1.0, 1.0))
            span = QRectF(float(window.cols[0]), float(window.rows[0]),
                          float(window.cols[-1] - window.cols[0] + 1), float(window.rows[-1] - window.rows[0] + 1))
            path.addRect(span)
            self.numbers.set_conv(window, c.kernel, c.bias)
        elif self._stage == "relu":
            path.addRect(QRectF(j, i, 1, 1))
            self.numbers.set_relu(float(c.output[i, j]), float(c.relu[i, j]), i, j)
        else:
            pw = c.pool_window(i, j)
            path.addRect(QRectF(float(pw.cols[0]), float(pw.rows[0]), len(pw.cols), len(pw.rows)))
            self.numbers.set_pool(pw, c.pool)
        self.window_path.setPath(path)
        marker = QPainterPath()
        marker.addRect(QRectF(j, i, 1, 1))
        self.out_marker.setPath(marker)
        frame = QPainterPath()
        frame.addRect(QRectF(0, 0, full.shape[1], full.shape[0]))
        self.out_frame.setPath(frame)
        centre = path.boundingRect().center()
        for line, value in zip(self.hairs, (centre.y(), centre.x(), i + 0.5, j + 0.5), strict=True):
            line.setValue(value)
        h, w = full.shape
        if reframe:
            self._reframe()
        what = {"conv": f"{c.kernel_name} over {c.input_name}", "relu": "ReLU of the convolution's output",
                "pool": f"2×2 {'max' if c.pool == 'max' else 'average'} pool of the ReLU map, stride 2"}[self._stage]
        self.title.setText(f"{STAGES[self._stage]}: {what}")
        self.caption.setText(f"Output ({i}, {j}) of {h}×{w} · step {self.stepper.position + 1} / "
                             f"{self.stepper.count} · Space plays, arrows step{self._pool_note}")

    def _canvas_clicked(self, event) -> None:
        if event.button() != Qt.LeftButton or self.conv is None:
            return
        if not self.out_view.sceneBoundingRect().contains(event.scenePos()):
            return
        p = self.out_view.mapSceneToView(event.scenePos())
        h, w = self.stepper.shape
        if 0 <= p.x() < w and 0 <= p.y() < h:
            self.setFocus()
            self.go_to(int(p.y()), int(p.x()))

    # --- classic vs learned ---------------------------------------------------------------------
    def classic_shown(self) -> bool:
        return not self.message_shown() and self.pages.currentIndex() == 1

    def message_shown(self) -> bool:
        """Whether a message shows instead of the convolution."""
        return not self.message.isHidden()

    def _page_changed(self, index: int) -> None:
        self.formula.setVisible(index == 0)  # the step page's sizes
        if index == 0:
            self._render(reframe=True)
        elif self.classic is None:
            self.title.setText("Classic vs learned")
            self.caption.setText("Computing the classic filters and the first layer's maps…")
            self.sigClassicRequested.emit()
        else:
            self._classic_caption()

    def clear_classic(self) -> None:
        """The model or image changed: the classic page's maps are out of date."""
        self.classic = None
        if self.classic_shown():
            self.sigClassicRequested.emit()

    def set_classic(self, result: dict) -> None:
        """Show ``vizapp.explain.convolution.classic_vs_learned``'s maps, two mosaics side by side."""
        self.classic = result
        for label in self._tile_labels:
            label.scene() and label.scene().removeItem(label)
        self._tile_labels = []
        names = ["image", *result["classic"]]
        maps = [result["image"], *result["classic"].values()]
        learned = list(result["learned"])
        tiles = [f"#{k}" for k in result["learned_index"]]
        for view, item, pictures, titles in ((self.classic_view, self.classic_image, maps, names),
                                             (self.learned_view, self.learned_image, learned, tiles)):
            tiled, origins = mosaic(pictures, 3 if view is self.classic_view else 4)
            item.setImage(tiled, levels=(0, 255), autoLevels=False)
            for (x, y), title in zip(origins, titles, strict=True):
                label = pg.TextItem(title, anchor=(0, 1))
                label.setFont(tile_font())
                label.setPos(x, y)
                view.addItem(label)
                self._tile_labels.append(label)
            view.autoRange(padding=0.02)
        self._apply_theme()
        if self.pages.currentIndex() == 1:
            self._classic_caption()

    def _classic_caption(self) -> None:
        r = self.classic
        self.title.setText(f"Classic vs learned: hand-designed filters beside {r['layer']}'s maps")
        self.caption.setText(f"Left: classic filters on the image in grey. Right: the {len(r['learned'])} most active "
                             f"feature maps of {r['layer']} (#channel), the first layer: what the network learned")

    # --- scenes (widgets/controllers/lecture.py) --------------------------------------------------
    def view_options(self) -> dict:
        """Stage, position, page, kernel, input, settings and speed, for a scene."""
        weights = self.editor.weights()
        return {"stage": self._stage, "step": self.stepper.position, "page": self.pages.currentIndex(),
                "kernel": self.kernel.currentData(), "size": self.ksize.currentData(),
                "weights": weights.tolist(), "input": self.input.currentData(), "own": self.own.isChecked(),
                "stride": self.stride.value(), "padding": self.padding.value(),
                "padding_mode": self.padding_mode.currentData(), "dilation": self.dilation.value(),
                "pool": self.pool.currentData(), "speed": self.speed.currentData(),
                "settings": self.settings_button.isChecked()}

    def set_view_options(self, options: dict) -> None:
        """Apply :meth:`view_options`' keys (unknown keys and values are skipped); the position is
        taken once the convolution for the new settings arrives."""
        from widgets.options import set_check, set_combo, set_slider

        blockers = [QSignalBlocker(w) for w in (self.kernel, self.ksize, self.own, self.stride, self.padding,
                                                 self.dilation, self.padding_mode, self.pool, self.input)]
        changed = any([
            set_combo(self.kernel, options.get("kernel")),
            set_data(self.ksize, options.get("size")),
            set_check(self.own, options.get("own")),
            set_slider(self.stride, options.get("stride")), set_slider(self.padding, options.get("padding")),
            set_slider(self.dilation, options.get("dilation")),
            set_combo(self.padding_mode, options.get("padding_mode")), set_combo(self.pool, options.get("pool")),
            set_data(self.input, options.get("input")),
        ])
        del blockers
        set_data(self.speed, options.get("speed"))
        set_check(self.settings_button, options.get("settings"))
        weights = options.get("weights")
        if self.kernel.currentData() == CUSTOM and isinstance(weights, list):
            try:
                grid = np.asarray(weights, np.float32)
            except (TypeError, ValueError):
                grid = None
            if grid is not None and grid.ndim == 2 and grid.shape[0] == grid.shape[1] in (3, 5):
                with QSignalBlocker(self.editor):
                    self.editor.set_weights(grid)
                    set_data(self.ksize, grid.shape[0])
                changed = True
        if options.get("stage") in STAGES and options["stage"] != self._stage:
            self.set_stage(options["stage"])
        step = options.get("step")
        if isinstance(step, int) and not isinstance(step, bool):
            if changed or self.conv is None:
                self._pending_step = step
            else:
                self.go(step)
        if options.get("page") in (0, 1):
            self.pages.setCurrentIndex(options["page"])
        if changed:
            self._kernel_changed()

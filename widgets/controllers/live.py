"""The live controller: the window following a camera or a video file.

A reader job on its own lane (``vizapp-live``) opens the source and runs
:func:`vizapp.inputs.live.pump` into a one-slot :class:`~vizapp.inputs.live.LatestFrame`
(frames are dropped, never queued). The GUI takes the newest frame only when the shared lane
is idle and every result already queued for the previous frame has been delivered (a queued
"settle" signal that runs after them), and hands it to the session as
``session.set_image(ImageRecord(frame, "camera 0 · frame 123"))``: every visible view
follows (the image, the analysis, the explanation docks on screen). Nothing slow runs on the
GUI thread: decoding and mirroring are the reader's, the PNG of "Keep frame" is a job.

Decisions: opening an image (File > Open image, the gallery, paste, drop) stops live; opening
a model does not (the frames follow the new model). A video's end stops live with its last
frame kept as the image, or starts it again with Loop on. Freeze (Space, the live bar) holds
the frame on screen while the source keeps running (a video plays on, as a camera would).
"""

from __future__ import annotations

import io
import re
import threading
import time
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import QApplication, QFileDialog, QLabel, QMenu, QToolBar

from vizapp.session import ImageRecord
from widgets.bridge import SHARED_LANE
from widgets.controllers import Controller, notify
from widgets.theme import bind_font

__all__ = ["LiveController", "VIDEO_FILTER", "keep_frame", "read_live"]

VIDEO_FILTER = "Videos (*.mp4 *.avi *.mov *.mkv *.webm *.m4v *.mpg *.mpeg *.wmv);;All files (*)"
#: The docks that have Space for themselves while the keyboard focus is inside them.
SPACE_OWNERS = ("convolution",)


# --- jobs (Qt-free) -------------------------------------------------------------------------
def read_live(spec: str, slot, opened, mirror, realtime: bool = True, *, progress, cancel) -> str:
    """The reader job: open ``spec`` (``camera:N`` or a video path), tell ``opened(source)``,
    and pump its frames into ``slot`` until cancelled, the end of a video (``"end"``) or a
    lost camera (:class:`~vizapp.inputs.live.LiveError`). Returns why it stopped."""
    from vizapp.inputs.live import open_source, pump

    with open_source(spec) as source:
        opened(source)
        return pump(source, slot, cancel=cancel, realtime=realtime, mirror=mirror)  # no per-frame progress


def find_cameras(*, progress, cancel) -> list[int]:
    """The camera indexes that open (the File > Open camera menu)."""
    from vizapp.inputs.live import cameras

    return cameras()


def keep_frame(pixels, name: str, folder: str | Path, *, progress, cancel) -> ImageRecord:
    """Write ``pixels`` as a PNG into ``folder`` (through :mod:`vizapp.core.files`); the image
    record with that path (so a scene can save it)."""
    from PIL import Image

    from vizapp.core.files import write_bytes

    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, "PNG")
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "frame"
    path = write_bytes(Path(folder) / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}.png", buffer.getvalue())
    return ImageRecord(pixels, path.name, str(path))


def _waking_slot(wake):
    """A :class:`~vizapp.inputs.live.LatestFrame` that calls ``wake()`` after each put (on the
    reader's thread), so the window hears of a frame without polling."""
    from vizapp.inputs.live import LatestFrame

    class WakingSlot(LatestFrame):
        def put(self, frame) -> None:
            super().put(frame)
            wake()

    return WakingSlot()


class _Signals(QObject):
    frame = Signal()  # a frame is in the slot (from the reader's thread: queued)
    opened = Signal(object)  # (spec, source) once the reader opened it (from the reader's thread)
    settle = Signal()  # connected queued to itself: runs after the deliveries already queued


class LiveController(Controller):
    """Live camera and video input: the reader, the frames into the session, the live bar.

    Public: :meth:`start` (``"camera:N"`` or a video path), :meth:`open_camera`,
    :meth:`open_video`, :meth:`stop`, :meth:`set_frozen` / :meth:`toggle_freeze`,
    :meth:`set_mirror`, :meth:`set_loop`, :meth:`keep`, and :attr:`active`, :attr:`shown`,
    :attr:`dropped`, :meth:`readout`. ``attach(window)`` adds the menus and the bar.
    """

    kinds = ("live", "cameras", "keep-frame")
    LANE = "live"

    def __init__(self, *parts) -> None:
        super().__init__(*parts)
        self.window = None
        self.spec: str | None = None
        self.source: tuple | None = None  # (name, fps, (w, h), frames) once opened
        self.slot = None
        self.frozen = False
        self.error = ""  # the reader's failure, if it failed
        self.mirrored = False
        self.loop = False
        self.realtime = True
        self.shown = 0  # frames handed to the session since start
        self.frame: ImageRecord | None = None  # the last frame handed to the session
        self.limit: int | None = None  # stop handing frames after this many (screenshot --frames)
        self.meter = None
        self._dropped_before = self._serial_before = 0  # a looping video's earlier passes
        self._ending = False  # the video ended: show what is left in the slot, then stop
        self._settling = False
        self._waking = threading.Event()  # a frame signal is on its way (coalesces the wake-ups)
        self._signals = _Signals()
        self._signals.frame.connect(self._frame_arrived)
        self._signals.opened.connect(self._opened)
        self._signals.settle.connect(self._settled, Qt.QueuedConnection)
        self.runner.set_lane("live", self.LANE)
        self.runner.set_lane("cameras", "cameras")
        self.runner.sigFinished.connect(lambda *_: self._poke())
        self.runner.sigFailed.connect(lambda *_: self._poke())
        self.runner.sigBusy.connect(self._drained)
        self._said = ""  # a message waiting for the shared lane to drain
        self._timer = QTimer()  # the readout, and a poke when a cancelled job left nothing to deliver
        self._timer.setInterval(250)
        self._timer.timeout.connect(self._tick)
        self.views["image"].sigImageRequested.connect(self._image_requested)

    # --- the window -------------------------------------------------------------------
    def attach(self, window) -> None:
        """File > Open camera / Open video…, and the live bar (hidden until live)."""
        self.window = window
        self._timer.setParent(window)
        self._signals.setParent(window)
        menu = window.file_menu
        paste = next((a for a in menu.actions() if a.text().replace("&", "").startswith("Paste image")), None)
        after = menu.actions()[menu.actions().index(paste) + 1] if paste in menu.actions()[:-1] else None
        self.camera_menu = QMenu("Open &camera", window)
        self.camera_menu.aboutToShow.connect(self._camera_menu_shown)
        self._cameras: list[int] | None = None
        self._fill_camera_menu()
        menu.insertMenu(after, self.camera_menu)
        self.video_action = menu.addAction("Open &video…", self.open_video_dialog)
        menu.insertAction(after, self.video_action)

        bar = self.bar = QToolBar("Live", window)
        bar.setObjectName("live_bar")
        bar.setMovable(False)
        bar.setFloatable(False)
        bar.toggleViewAction().setVisible(False)
        # One short line, the rate first (a projector's width at 2x leaves room for little more).
        self.fps_label = bind_font(QLabel(""), "label", True)
        bar.addWidget(self.fps_label)
        bar.addSeparator()
        self.freeze_action = bar.addAction("Freeze (Space)")
        self.freeze_action.setCheckable(True)
        self.freeze_action.toggled.connect(self.set_frozen)
        self.mirror_action = bar.addAction("Mirror")
        self.mirror_action.setCheckable(True)
        self.mirror_action.setToolTip("Flip left and right (a camera facing the presenter)")
        self.mirror_action.toggled.connect(self.set_mirror)
        self.loop_action = bar.addAction("Loop")
        self.loop_action.setCheckable(True)
        self.loop_action.setToolTip("Play the video again from the start when it ends")
        self.loop_action.toggled.connect(self.set_loop)
        self.keep_action = bar.addAction("Keep frame", self.keep)
        self.keep_action.setToolTip("Stop live and keep this frame as the image (saved as a PNG)")
        self.stop_action = bar.addAction("Stop", self.stop)
        window.addToolBarBreak(Qt.TopToolBarArea)  # its own row, under presentation mode's caption
        window.addToolBar(Qt.TopToolBarArea, bar)
        bar.hide()

    def _camera_menu_shown(self) -> None:
        if self._cameras is None and self.runner.idle("cameras"):
            self.look_for_cameras()

    def look_for_cameras(self) -> None:
        """List the cameras that open, as a job (opening a device can take a second)."""
        self._cameras = None
        self._fill_camera_menu(searching=True)
        self.submit("cameras", find_cameras)

    def _fill_camera_menu(self, searching: bool = False) -> None:
        menu = self.camera_menu
        menu.clear()
        if searching:
            menu.addAction("Looking for cameras…").setEnabled(False)
        elif self._cameras is not None:
            for index in self._cameras:
                menu.addAction(f"Camera {index}", lambda i=index: self.open_camera(i))
            if not self._cameras:
                menu.addAction("No camera found").setEnabled(False)
        menu.addSeparator()
        menu.addAction("Look for cameras again", self.look_for_cameras)

    def open_video_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.window, "Open video", "", VIDEO_FILTER)
        if path:
            self.open_video(path)

    # --- requests ---------------------------------------------------------------------
    @property
    def active(self) -> bool:
        """Live: a source is being followed (frozen or not)."""
        return self.spec is not None

    @property
    def dropped(self) -> int:
        """Frames the reader replaced before the window took them (dropped, never queued)."""
        return self._dropped_before + (0 if self.slot is None else int(self.slot.dropped))

    #: Jobs that still show their progress while live (the user waits on them; the frames' own
    #: jobs would flash the progress bar and status line a dozen times a second).
    LOUD = ("model", "device", "catalog", "image")

    def quiet(self, kind: str) -> bool:
        """Whether the window shows no progress for job ``kind`` now (a frame's job while live)."""
        return self.active and kind not in self.LOUD

    def open_camera(self, index: int = 0) -> None:
        self.start(f"camera:{int(index)}")

    def open_video(self, path: str | Path) -> None:
        self.start(str(path))

    def start(self, spec: str, *, realtime: bool = True, limit: int | None = None) -> None:
        """Follow ``spec`` (``camera``, ``camera:N`` or a video path). ``realtime``: a video plays
        at its own speed (False: as fast as it decodes, for tests); ``limit``: hand at most this
        many frames to the session (the screenshot's ``--frames``)."""
        from vizapp.inputs.live import FpsMeter

        self.stop(quiet=True)
        self.spec, self.realtime, self.limit, self.error = spec, realtime, limit, ""
        self.source, self.shown, self.frame, self._ending = None, 0, None, False
        self._dropped_before = self._serial_before = 0
        self.meter = FpsMeter()
        self._start_reader()
        self._timer.start()
        if self.window is not None:
            self.fps_label.setText(f"● opening {spec}")
            self.bar.show()

    def _start_reader(self) -> None:
        """A new slot (the reader closes its slot when it stops) and the reader job."""
        if self.slot is not None and self.active and self.shown:  # looping: the counts go on
            self._dropped_before += int(self.slot.dropped)
            self._serial_before += int(self.slot.serial)
        self.slot = _waking_slot(self._wake)
        opened = self._signals.opened.emit
        self.submit("live", read_live, self.spec, self.slot, lambda source, spec=self.spec: opened((spec, source)),
                    lambda: self.mirrored, self.realtime)

    def stop(self, message: str | None = None, *, quiet: bool = False) -> None:
        """Stop following the source; the last frame stays the image."""
        if not self.active:
            return
        self.runner.cancel("live")
        if self.slot is not None:
            self.slot.close()
        name = self.source[0] if self.source else self.spec
        self.spec = None
        self._ending = False
        self._timer.stop()
        if self.freeze_action_checked():
            self.freeze_action.setChecked(False)
        self.frozen = False
        if self.window is not None:
            self.bar.hide()
        if not quiet:
            self._announce(message or f"live stopped: {name}; its last frame stays the image")

    def freeze_action_checked(self) -> bool:
        return self.window is not None and self.freeze_action.isChecked()

    def toggle_freeze(self) -> None:
        self.set_frozen(not self.frozen)

    def set_frozen(self, on: bool) -> None:
        """Hold the frame on screen (the source keeps running) or follow it again."""
        self.frozen = bool(on) and self.active
        if self.window is not None and self.freeze_action.isChecked() != self.frozen:
            self.freeze_action.setChecked(self.frozen)
        self._update_readout()
        self._poke()

    def set_mirror(self, on: bool) -> None:
        """Flip the frames left-right (the reader does; a held frame is flipped here)."""
        on = bool(on)
        if on == self.mirrored:
            return
        self.mirrored = on
        if self.window is not None and self.mirror_action.isChecked() != on:
            self.mirror_action.setChecked(on)
        if self.active and self.frozen and self.frame is not None:
            self._hand(self.frame.pixels[:, ::-1].copy(), self.frame.name, count=False)

    def set_loop(self, on: bool) -> None:
        self.loop = bool(on)
        if self.window is not None and self.loop_action.isChecked() != self.loop:
            self.loop_action.setChecked(self.loop)

    def keep(self) -> None:
        """Stop live and keep the frame on screen as the image, written as a PNG in the app's
        frames folder (:func:`vizapp.core.paths.frames_dir`), so it has a path a scene can save."""
        from vizapp.core.paths import frames_dir

        frame = self.frame
        self.stop(quiet=True)
        if frame is None:
            notify("Keep frame: no frame has been shown yet", error=True)
            return
        self.submit("keep-frame", keep_frame, frame.pixels, frame.name, frames_dir())

    def follow(self, spec: str, frames: int, timeout_s: float = 600.0) -> None:
        """Start live on ``spec`` and process events until ``frames`` frames were shown and their
        results are on screen (or the video ended); the reader stops there, the live bar keeps its
        figures and the last frame stays (the headless ``screenshot --video``). A :class:`~vizapp.core.errors.UserError` when the
        source fails."""
        from vizapp.core.errors import UserError

        self.start(spec, limit=frames)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            QApplication.processEvents()
            if self.error:
                raise UserError(self.error)
            done = not self.active or self.shown >= frames
            if done and self.runner.lane_idle(SHARED_LANE):
                QApplication.processEvents()
                self._update_readout()
                self._timer.stop()  # the bar keeps these figures for the picture ...
                self.runner.cancel("live")  # ... and the reader stops counting frames nobody takes
                return
            time.sleep(0.01)
        raise UserError(f"{spec}: {self.shown} of {frames} frames shown in {timeout_s:g} s")

    def cancel(self) -> None:
        """Escape stops what the user waits on; live is not (Stop ends it)."""

    def _image_requested(self, _source) -> None:
        if self.active:  # the user's image wins over the live source
            self.stop("live stopped: opening the image")

    def _announce(self, text: str) -> None:
        """Say ``text`` once the shared lane is idle (the window clears an information message
        when its jobs drain, so one said while the last frame's analysis runs would vanish)."""
        self._said = text
        if self.runner.lane_idle(SHARED_LANE):
            self._say()

    def _drained(self, busy: bool) -> None:
        if not busy and self._said and self.runner.lane_idle(SHARED_LANE):
            QTimer.singleShot(0, self._signals, self._say)  # after the window's own handler cleared it

    def _say(self) -> None:
        text, self._said = self._said, ""
        if text:
            notify(text)

    # --- frames -----------------------------------------------------------------------
    def _wake(self) -> None:
        """On the reader's thread: a frame is in the slot (one signal on its way at a time)."""
        if not self._waking.is_set():
            self._waking.set()
            try:
                self._signals.frame.emit()
            except RuntimeError:  # the window is gone
                pass

    def _frame_arrived(self) -> None:
        self._waking.clear()
        self._poke()

    def _opened(self, opened) -> None:
        spec, source = opened
        if self.active and spec == self.spec:  # (a reader of an earlier source may open late)
            self.source = (source.name, float(source.fps or 0.0), tuple(source.size), source.frames)
            self._update_readout()

    def _wants_frame(self) -> bool:
        return self.active and not self.frozen and (self.limit is None or self.shown < self.limit)

    def _poke(self) -> None:
        """A frame arrived or a job ended: once the shared lane is idle, settle, then hand the
        newest frame over."""
        if self._settling or not self._wants_frame() or not self.runner.lane_idle(SHARED_LANE):
            return
        self._settling = True
        self._signals.settle.emit()  # queued behind the results already on their way

    def _settled(self) -> None:
        self._settling = False
        if not self._wants_frame() or not self.runner.lane_idle(SHARED_LANE) or self.slot is None:
            return
        got = self.slot.take(0)
        if got is None:
            if self._ending:
                self._ended()
            return
        frame, serial = got
        self._hand(frame, f"{self._name()} · frame {self._serial_before + serial}")

    def _name(self) -> str:
        return self.source[0] if self.source else str(self.spec)

    def _hand(self, pixels, name: str, count: bool = True) -> None:
        self.frame = ImageRecord(pixels, name)
        if count:
            self.shown += 1
            self.meter.tick()
        self.session.set_image(self.frame)
        self._update_readout()

    def _tick(self) -> None:
        self._update_readout()
        self._poke()

    def readout(self) -> str:
        """The live bar's line: frames shown per second (the source's), frames dropped, the source."""
        if not self.active:
            return ""
        if self.source is None:
            return f"● opening {self.spec}"
        fps = self.meter.fps if self.meter is not None else 0.0
        rate = f"{fps:.1f} fps" + (f" (source {self.source[1]:.0f})" if self.source[1] > 0 else "")
        state = "FROZEN · " if self.frozen else ""
        return f"● {state}{rate} · {self.dropped} dropped · {self._name()}"

    def _update_readout(self) -> None:
        if self.window is None or not self.active:
            return
        self.fps_label.setText(self.readout())
        self.fps_label.setToolTip(f"{self.shown} frames shown, {self.dropped} dropped (the newest frame wins)")

    def _ended(self) -> None:
        name = self._name()
        self.stop(f"{name} ended: its last frame stays the image", quiet=False)

    # --- results ----------------------------------------------------------------------
    def finished(self, kind: str, result) -> None:
        if kind == "cameras":
            self._cameras = list(result)
            if self.window is not None:
                self._fill_camera_menu()
        elif kind == "keep-frame":
            self.session.set_image(result)
            self._announce(f"kept the frame as {result.path}")
        elif kind == "live" and self.active:
            if result == "end" and self.loop:
                self._start_reader()  # the video again from the start, the counts going on
            else:
                self._ending = True
                self._poke()

    def failed(self, kind: str, message: str) -> None:
        if kind == "live":
            self.error = message
            self.stop(quiet=True)  # a lost camera or an unreadable file: the image on screen stays
            notify(message, error=True)
        else:
            if kind == "cameras":
                self._cameras = []
                if self.window is not None:
                    self._fill_camera_menu()
            notify(message, error=True)

    # --- keys -------------------------------------------------------------------------
    def space_is_ours(self) -> bool:
        """Space freezes while live, except with the focus inside a dock that plays with it
        (the Convolution explainer)."""
        if not self.active or self.window is None:
            return False
        focus = QApplication.focusWidget()
        for key in SPACE_OWNERS:
            dock = self.window.docks.get(key)
            if dock is not None and focus is not None and (focus is dock or dock.isAncestorOf(focus)):
                return False
        return True

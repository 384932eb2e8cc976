"""Recording a view over time as an animated GIF or an MP4 video.

Two ways:

- **live** (:meth:`RecordingController.start_live` / :meth:`~RecordingController.stop`): the
  chosen dock is grabbed at ``fps`` frames a second while the user works or the training lab
  trains, up to a frame cap (and a memory cap), the dock's title saying "● REC" and the frame count;
- **stepped** (:class:`Stepper`): one frame per channel of the layer (in the mosaic's order),
  per layer from the current one, or per attention head, each grabbed once the views have
  caught up with the step; the state on screen before is restored after.

Frames are ``H x W x 3`` uint8 arrays; :func:`encode` makes the file off the GUI thread (on
the window's runner, lane ``vizapp-record``, one job kind per recording; the CLI calls it
directly): a GIF through
imageio's Pillow plugin, an MP4 (H.264) through imageio's ffmpeg plugin and the ffmpeg
binary that ``imageio-ffmpeg`` ships. Both are written by :func:`vizapp.core.files.atomic_write`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QWidget

from vizapp.core.errors import UserError
from vizapp.core.files import atomic_write, write_bytes
from widgets.controllers import Controller, notify
from widgets.docks import row
from widgets.export import content, render

__all__ = ["FORMATS", "STEPS", "MAX_FRAMES", "MEMORY_CAP", "RecordingController", "Stepper",
           "check_target", "encode", "grab", "plan_steps"]

#: The file types a recording can be, by suffix.
FORMATS = (".gif", ".mp4")
#: What a stepped recording steps through.
STEPS = ("channels", "layers", "heads")
#: A live recording stops by itself after this many frames ...
MAX_FRAMES = 600
#: ... or when its frames take this many bytes.
MEMORY_CAP = 768 * 2**20
#: Frames a second of a live recording, and of a stepped one.
LIVE_FPS, STEP_FPS = 5, 2
#: How long a step may wait for the views to catch up (a layer's analysis).
STEP_TIMEOUT_S = 120.0


def check_target(path: str | Path) -> Path:
    """``path`` as a recording's file: it must end in ``.gif`` or ``.mp4``."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise UserError(f"{path}: a recording is a .gif or an .mp4; name the file with one of those")
    if path.is_dir():
        raise UserError(f"{path}: is a folder; name a .gif or .mp4 file")
    return path


def grab(widget: QWidget, scale: float = 1.0) -> np.ndarray:
    """``widget`` rendered at ``scale`` as an ``H x W x 3`` uint8 array."""
    image = render(widget, scale).convertToFormat(QImage.Format_RGB888)
    h, w = image.height(), image.width()
    rows = np.frombuffer(image.constBits(), np.uint8, count=image.bytesPerLine() * h).reshape(h, image.bytesPerLine())
    return rows[:, : w * 3].reshape(h, w, 3).copy()


def _uniform(frames: list[np.ndarray], even: bool) -> np.ndarray:
    """The frames at the first one's size (a resized dock: cropped, or padded with black);
    with ``even`` both sides rounded up to even (H.264's 4:2:0 colour needs it)."""
    h, w = frames[0].shape[:2]
    if even:
        h, w = h + h % 2, w + w % 2
    out = np.zeros((len(frames), h, w, 3), np.uint8)
    for i, frame in enumerate(frames):
        fh, fw = min(h, frame.shape[0]), min(w, frame.shape[1])
        out[i, :fh, :fw] = frame[:fh, :fw, :3]
    return out


def encode(frames: list[np.ndarray], path: str | Path, fps: float, *, progress: Callable | None = None,
           cancel=None) -> Path:
    """Write ``frames`` (``H x W x 3`` uint8) to ``path``, a ``.gif`` or ``.mp4``, at ``fps``.

    A job function (``progress``/``cancel`` keywords) for the window's runner; the file is
    written atomically. Frames of other sizes than the first are cropped or padded to it.
    """
    path = check_target(path)
    if not frames:
        raise UserError(f"{path}: nothing was recorded (no frames); record for longer")
    if progress is not None:
        progress(0, len(frames), f"encoding {len(frames)} frames")
    mp4 = path.suffix.lower() == ".mp4"
    video = _uniform(frames, even=mp4)
    if cancel is not None:
        cancel.check()
    if not mp4:
        import imageio.v3 as iio

        # duration: milliseconds a frame; loop 0: for ever (a slide plays it on repeat)
        data = iio.imwrite("<bytes>", video, extension=".gif", duration=1000.0 / fps, loop=0)
        return write_bytes(path, data)
    try:
        import imageio_ffmpeg  # the ffmpeg binary, and a frame writer that takes any file name
    except ImportError:
        raise UserError(f"{path}: MP4 needs the imageio-ffmpeg package (pip install imageio-ffmpeg); "
                        "or record a .gif") from None

    def write(tmp: str) -> None:
        # The temporary name does not end in .mp4: the container is named for ffmpeg.
        h, w = video.shape[1:3]
        writer = imageio_ffmpeg.write_frames(tmp, (w, h), fps=fps, codec="libx264", quality=8,
                                             pix_fmt_out="yuv420p", macro_block_size=2,
                                             ffmpeg_log_level="error", output_params=["-f", "mp4"])
        writer.send(None)  # start ffmpeg
        try:
            for i, frame in enumerate(video):
                if cancel is not None:
                    cancel.check()
                writer.send(np.ascontiguousarray(frame))
                if progress is not None and i % 10 == 0:
                    progress(i, len(video), f"encoding frame {i + 1} of {len(video)}")
        finally:
            writer.close()

    return atomic_write(path, write)


# --- stepping -----------------------------------------------------------------------------
def plan_steps(window, step: str, count: int | None = None) -> tuple[list[Callable[[], None]], Callable[[], None]]:
    """The steps of a stepped recording and how to put the state back afterwards.

    ``channels``: the layer's channels in the mosaic's order; ``layers``: the layers with
    maps, from the current one; ``heads``: the attention heads of the attention layer on
    screen. At most ``count`` steps (all when ``None``).
    """
    session = window.session
    if step == "channels":
        mosaic = getattr(window.feature_view, "mosaic", None)
        if mosaic is None or not len(mosaic.order):
            raise UserError(f"stepping through channels: layer '{session.layer}' has no channel maps; "
                            "choose a layer with maps")
        before = session.channel
        order = [int(c) for c in mosaic.order][:count]
        return [lambda c=c: session.select_channel(c) for c in order], lambda: session.select_channel(before)
    if step == "layers":
        names = session.steppable_layers()
        if not names:
            raise UserError("stepping through layers: the model has no layers with maps")
        start = names.index(session.layer) if session.layer in names else 0
        before = session.layer
        chosen = names[start:][:count]
        return [lambda n=n: session.select_layer(n) for n in chosen], lambda: session.select_layer(before)
    if step == "heads":
        view = window.attention_view
        result = getattr(view, "result", None)
        if result is None:
            raise UserError("stepping through heads: the Attention dock shows no heads; open a transformer "
                            "(such as vit_digits) and show the Attention dock")
        layer, before = view.layer(), view.head()
        heads = list(range(result.heads))[:count]
        return [lambda h=h: view.set_layer_head(layer, h) for h in heads], lambda: view.set_layer_head(layer, before)
    raise UserError(f"cannot step through '{step}': step through one of {', '.join(STEPS)}")


class Stepper(QObject):
    """Applies the steps one by one and grabs dock ``key`` once the window has caught up with
    each (the shared lane idle, the window ready); ``sigDone(frames)`` at the end, or
    ``sigFailed(message)``. :meth:`run` does the same blocking (the CLI)."""

    sigDone = Signal(object)
    sigFailed = Signal(str)

    def __init__(self, window, key: str, step: str, count: int | None = None, scale: float = 1.0) -> None:
        super().__init__(window)
        self.window, self.key, self.step, self.count, self.scale = window, key, step, count, scale
        self.steps: list[Callable[[], None]] | None = None  # planned once the dock is up to date
        self.restore: Callable[[], None] = lambda: None
        self.frames: list[np.ndarray] = []
        self.done = False
        self._i = 0
        self._since = 0.0
        self._waited = 0
        self._timer = QTimer(self)
        self._timer.setInterval(30)
        self._timer.timeout.connect(self._tick)

    def start(self) -> None:
        """Raise the dock; once its views have caught up, plan the steps and take them."""
        self.window.docks[self.key].raise_()
        self._since, self._waited = time.monotonic(), 0
        self._timer.start()

    def _apply(self) -> None:
        self.steps[self._i]()
        self._since = time.monotonic()
        self._waited = 0

    def _caught_up(self) -> bool:
        w = self.window
        return w.runner.lane_idle() and w.ready

    def _tick(self) -> None:
        self._waited += 1
        if not self._caught_up() or self._waited < 3:  # a few event-loop turns: results drawn
            if time.monotonic() - self._since > STEP_TIMEOUT_S:
                self._finish(f"step {self._i + 1}: the views did not catch up within {STEP_TIMEOUT_S:.0f} s")
            return
        if self.steps is None:  # the raised dock is up to date (an attention dock has its heads)
            try:
                self.steps, self.restore = plan_steps(self.window, self.step, self.count)
            except UserError as exc:
                self._finish(str(exc))
            else:
                self._apply()
            return
        self.frames.append(grab(content(self.window, self.key), self.scale))
        self._i += 1
        if self._i < len(self.steps):
            self._apply()
        else:
            self._finish(None)

    def _finish(self, error: str | None) -> None:
        self._timer.stop()
        self.restore()
        self.done = True
        if error is None:
            self.sigDone.emit(self.frames)
        else:
            self.sigFailed.emit(error)

    def abort(self) -> None:
        """Stop stepping: the state is restored, ``sigFailed`` says so."""
        if not self.done:
            self._finish("the stepped recording was stopped; nothing was saved")

    def run(self, app) -> list[np.ndarray]:
        """Step and grab, blocking (processing ``app``'s events); the frames."""
        failures: list[str] = []
        self.sigFailed.connect(failures.append)
        self.start()
        while not self.done:
            app.processEvents()
            time.sleep(0.01)
        if failures:
            raise UserError(failures[0])
        return self.frames


# --- the window's recordings ---------------------------------------------------------------
class _Signals(QObject):
    sigRecording = Signal(bool)


class RecordingController(Controller):
    """The window's recordings: live (a timer grabs a dock) and stepped (a :class:`Stepper`);
    owns the job kinds ``record:<n>`` (one per recording, so a second one never supersedes
    the first's encoding; all on the lane ``vizapp-record``) and the "● REC" in the recorded
    dock's title."""

    kinds = ("record:",)
    #: The runner's lane of the encodings.
    LANE = "record"

    def __init__(self, *parts) -> None:
        super().__init__(*parts)
        self._signals = _Signals()
        self.sigRecording = self._signals.sigRecording
        self.encodings = 0  # recordings handed to the runner so far (their kinds' numbers)
        self.window = None  # set by attach()
        self.frames: list[np.ndarray] = []
        self.path: Path | None = None
        self.fps = LIVE_FPS
        self.max_frames = MAX_FRAMES
        self.key: str | None = None
        self.indicator = ""  # what the recorded dock's title says while recording
        self.stepper: Stepper | None = None
        self._bytes = 0
        self._timer = QTimer()
        self._timer.timeout.connect(self._grab)

    def attach(self, window) -> None:
        """The window whose docks are recorded (stepping needs its views and readiness); the
        grabbing timer goes with it."""
        self.window = window
        self._timer.setParent(window)

    @property
    def recording(self) -> bool:
        return self._timer.isActive() or (self.stepper is not None and not self.stepper.done)

    # --- live ------------------------------------------------------------------------
    def start_live(self, key: str, path: str | Path, fps: float = LIVE_FPS, max_frames: int = MAX_FRAMES,
                   scale: float = 1.0) -> None:
        """Grab dock ``key`` ``fps`` times a second until :meth:`stop` (or the caps)."""
        if self.recording:
            raise UserError(f"already recording {row(self.key).title}; stop that recording first (File menu)")
        self.path, self.key, self.fps, self.max_frames, self.scale = check_target(path), key, fps, max_frames, scale
        self.frames, self._bytes = [], 0
        self._timer.setInterval(max(1, round(1000 / fps)))
        self._timer.start()
        self._grab()
        self.sigRecording.emit(True)

    def _grab(self) -> None:
        frame = grab(content(self.window, self.key), self.scale)
        self.frames.append(frame)
        self._bytes += frame.nbytes
        self._show_indicator()
        if len(self.frames) >= self.max_frames or self._bytes + frame.nbytes > MEMORY_CAP:
            notify(f"recording stopped at {len(self.frames)} frames (its limit)")
            self.stop()

    def _show_indicator(self, text: str | None = None) -> None:
        """The recorded dock's title says so (``● REC``), not the status bar: a wrapping
        status message would resize the docks, and the frames with them."""
        self.indicator = f"● REC {text or f'{len(self.frames)} frames'}"
        self.window.docks[self.key].setWindowTitle(f"{row(self.key).title}   {self.indicator}")

    def _hide_indicator(self) -> None:
        self.indicator = ""
        self.window.docks[self.key].setWindowTitle(row(self.key).title)

    def stop(self) -> int:
        """End a live recording and encode it (off the GUI thread); the job's serial. A stepped
        recording is abandoned (the state before it is restored, nothing is written)."""
        if self.stepper is not None and not self.stepper.done:
            self.stepper.abort()
            return 0
        if not self._timer.isActive():
            return 0
        self._timer.stop()
        self._hide_indicator()
        self.sigRecording.emit(False)
        frames, self.frames = self.frames, []
        return self._encode(frames, self.path, self.fps)

    def _encode(self, frames: list, path: Path, fps: float) -> int:
        """Encode on the recordings' lane, under a kind of its own; the job's serial."""
        self.encodings += 1
        kind = f"record:{self.encodings}"
        self.runner.set_lane(kind, self.LANE)
        return self.submit(kind, encode, frames, path, fps)

    # --- stepped ---------------------------------------------------------------------
    def start_steps(self, key: str, step: str, path: str | Path, count: int | None = None,
                    fps: float = STEP_FPS, scale: float = 1.0) -> Stepper:
        """Step through ``step`` (:data:`STEPS`) grabbing dock ``key``; encoded when done."""
        if self.recording:
            raise UserError(f"already recording {row(self.key).title}; stop that recording first (File menu)")
        path = check_target(path)
        self.key, self.path = key, path
        self.stepper = Stepper(self.window, key, step, count, scale)
        self.stepper.sigDone.connect(lambda frames: self._stepped(frames, path, fps))
        self.stepper.sigFailed.connect(lambda message: self._stepped_failed(message))
        self._show_indicator(f"stepping through {step}")
        self.sigRecording.emit(True)
        self.stepper.start()
        return self.stepper

    def _stepped(self, frames: list, path: Path, fps: float) -> None:
        self._hide_indicator()
        self.sigRecording.emit(False)
        self._encode(frames, path, fps)

    def _stepped_failed(self, message: str) -> None:
        self._hide_indicator()
        self.sigRecording.emit(False)
        notify(message, error=True)

    # --- results ---------------------------------------------------------------------
    def finished(self, kind: str, result) -> None:
        notify(f"saved {result}")

    def cancel(self) -> None:
        """Escape does not stop a recording (Stop recording does)."""

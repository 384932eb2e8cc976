"""Live pictures: a camera or a video file as a stream of RGB frames (OpenCV, no Qt, no torch).

:func:`open_video`, :func:`open_camera` and :func:`open_source` give a :class:`FrameSource`;
:func:`pump` is the reader loop a worker lane runs, putting each frame into a
:class:`LatestFrame`, a one-slot mailbox where a newer frame replaces one nobody took yet
(frames are dropped, never queued, when the model is slower than the camera);
:class:`FpsMeter` measures frames per second for a readout.

OpenCV (``opencv-python-headless``) is imported on first use, quietened (a missing camera
would print warnings) and kept to one thread (torch has the cores); it decodes in the
calling thread, so a video or camera never touches the GUI thread.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import numpy as np

from vizapp.core.errors import UserError
from vizapp.core.jobs import CancelToken, Progress, no_progress

__all__ = [
    "LiveError",
    "FrameSource",
    "VideoSource",
    "CameraSource",
    "open_video",
    "open_camera",
    "open_source",
    "cameras",
    "opencv_version",
    "LatestFrame",
    "pump",
    "FpsMeter",
]

#: A camera that gives no frame for this long (or this many failed reads in a row, 10 ms apart) is lost.
STALL_SECONDS = 1.0
STALL_READS = 100
#: How long a camera that opened may take to give its first frame before it counts as busy.
FIRST_FRAME_SECONDS = 3.0

_cv2_module = None
_cv2_lock = threading.Lock()


class LiveError(UserError):
    """A camera or video that cannot be opened or stops delivering frames (one line naming it)."""


def _cv2():
    """OpenCV, imported once: its log quietened to errors and its own thread pool to one thread."""
    global _cv2_module
    with _cv2_lock:
        if _cv2_module is None:
            os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
            try:
                import cv2
            except ImportError as exc:  # a broken install: say what is missing
                raise LiveError(
                    f"live input needs OpenCV (pip install opencv-python-headless): {exc}"
                ) from None
            try:
                cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
            except AttributeError:  # builds without the logging module
                pass
            cv2.setNumThreads(1)
            _cv2_module = cv2
        return _cv2_module


def opencv_version() -> str | None:
    """OpenCV's version, or None when it is not installed (for ``vizapp doctor``)."""
    try:
        return _cv2().__version__
    except LiveError:
        return None


def _to_rgb(frame: np.ndarray) -> np.ndarray:
    """OpenCV's BGR (or gray, or BGRA) frame as a new H x W x 3 uint8 RGB array, C-contiguous."""
    cv2 = _cv2()
    if frame.dtype != np.uint8:  # 16-bit sources: keep the top byte
        frame = (frame >> 8).astype(np.uint8) if frame.dtype == np.uint16 else frame.astype(np.uint8)
    if frame.ndim == 2 or frame.shape[2] == 1:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


class FrameSource:
    """A stream of RGB frames; a context manager (``close`` on exit).

    Subclasses implement :meth:`grab` (one raw OpenCV frame, BGR, or None when the device or
    file gave none); :meth:`read` turns it into RGB, ends a video at its first missing frame
    and raises :class:`LiveError` when a live source (a camera) gives none for
    :data:`STALL_SECONDS` or :data:`STALL_READS` reads in a row.
    """

    name: str = "source"
    fps: float = 0.0
    size: tuple[int, int] = (0, 0)
    frames: int | None = None
    #: True for a camera: it delivers at its own pace (``pump`` does not pace it), it cannot
    #: rewind, and a missing frame means it was lost rather than the end.
    live: bool = False

    def __init__(self) -> None:
        self._closed = False
        self._pending: np.ndarray | None = None  # a frame read ahead (the first one, checked on open)
        self.position = 0  # frames read so far

    # -- what a subclass provides -------------------------------------------------------
    def grab(self) -> np.ndarray | None:
        """One raw frame (BGR, BGRA or gray, any dtype OpenCV gives), or None when there was none."""
        raise NotImplementedError

    def _release(self) -> None:
        """Free the device or file."""

    def _restart(self) -> bool:
        """Go back to a video's first frame; False when this source cannot."""
        return False

    # -- the public side ------------------------------------------------------------------
    def read(self) -> np.ndarray | None:
        """The next frame as H x W x 3 uint8 RGB (a new array each call); None at the end of a
        video (or once closed); :class:`LiveError` when a camera stops delivering."""
        if self._closed:
            return None
        if self._pending is not None:
            raw, self._pending = self._pending, None
        else:
            raw = self.grab()
            if raw is None and self.live:
                raw = self._wait_for_frame()
        if raw is None:
            return None
        self.position += 1
        return _to_rgb(raw)

    def _wait_for_frame(self) -> np.ndarray | None:
        """Retry a camera's failed read; None when the source is closed meanwhile (from another thread)."""
        failures, start = 1, time.monotonic()
        while not self._closed:
            if failures >= STALL_READS or time.monotonic() - start > STALL_SECONDS:
                raise LiveError(f"{self.name} stopped delivering frames (unplugged?)")
            time.sleep(0.01)
            raw = self.grab()
            if raw is not None:
                return raw
            failures += 1
        return None

    def rewind(self) -> bool:
        """Start a video again from its first frame (for looping); False for a camera."""
        if self._closed or self.live or not self._restart():
            return False
        self._pending = None
        self.position = 0
        return True

    def close(self) -> None:
        """Release the device or file (from any thread); calling it again does nothing."""
        if not self._closed:
            self._closed = True
            self._pending = None
            self._release()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - never raise from a finaliser
            pass

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self.size[0]}x{self.size[1]} @ {self.fps:g} fps>"


class _Capture(FrameSource):
    """A source over one ``cv2.VideoCapture``. A ``VideoCapture`` is not thread-safe: a lock
    keeps :meth:`close` from another thread (the window) waiting for a read in progress."""

    def __init__(self, capture) -> None:
        super().__init__()
        self._capture = capture
        self._lock = threading.Lock()

    def grab(self) -> np.ndarray | None:
        with self._lock:
            if self._closed:
                return None
            try:
                ok, frame = self._capture.read()
            except Exception:  # noqa: BLE001 - OpenCV raises cv2.error on a device gone bad
                return None
        return frame if ok and frame is not None and frame.size else None

    def _release(self) -> None:
        with self._lock:
            try:
                self._capture.release()
            except Exception:  # noqa: BLE001
                pass

    def _first_frame(self, seconds: float) -> np.ndarray | None:
        deadline = time.monotonic() + seconds
        while True:
            frame = self.grab()
            if frame is not None or time.monotonic() > deadline:
                return frame
            time.sleep(0.02)

    def _start(self, first: np.ndarray, fps: float) -> None:
        self._pending = first
        self.size = (int(first.shape[1]), int(first.shape[0]))
        self.fps = fps if math.isfinite(fps) and 0 < fps <= 1000 else 0.0


class VideoSource(_Capture):
    """A video file (what OpenCV's FFmpeg reads: MJPG .avi, MP4, ...)."""

    def __init__(self, path: Path, capture) -> None:
        super().__init__(capture)
        self.path = path
        self.name = path.name

    def _restart(self) -> bool:
        cv2 = _cv2()
        with self._lock:
            if self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0) and self._capture.get(cv2.CAP_PROP_POS_FRAMES) == 0:
                return True
            self._capture.release()  # a container that cannot seek: open it again
            self._capture = cv2.VideoCapture(str(self.path))
            return bool(self._capture.isOpened())


class CameraSource(_Capture):
    """A camera by OpenCV's index (V4L2 on Linux, Media Foundation on Windows, AVFoundation on macOS)."""

    live = True

    def __init__(self, index: int, capture) -> None:
        super().__init__(capture)
        self.index = index
        self.name = f"camera {index}"


def open_video(path: str | os.PathLike) -> FrameSource:
    """A video file as a :class:`FrameSource`; :class:`LiveError` naming the file when it is
    missing, a folder, not a video OpenCV can read, or has no frame."""
    path = Path(path)
    if not path.exists():
        raise LiveError(f"{path}: no such video file")
    if path.is_dir():
        raise LiveError(f"{path}: is a folder, not a video file")
    if path.stat().st_size == 0:
        raise LiveError(f"{path}: the video file is empty")
    cv2 = _cv2()
    capture = cv2.VideoCapture(str(path))
    source = VideoSource(path, capture)
    if not capture.isOpened():
        source.close()
        raise LiveError(f"{path}: not a video OpenCV can read (try an MP4 or an MJPG .avi)")
    first = source.grab()
    if first is None:
        source.close()
        raise LiveError(f"{path}: the video has no frame that can be decoded")
    source._start(first, capture.get(cv2.CAP_PROP_FPS))
    count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
    source.frames = int(count) if math.isfinite(count) and count > 0 else None
    return source


def _linux_devices() -> list[int] | None:
    """The camera indexes ``/dev/video<N>`` on Linux, or None elsewhere (where OpenCV probes)."""
    if not sys.platform.startswith("linux"):
        return None
    found = []
    for entry in Path("/dev").glob("video*"):
        suffix = entry.name[len("video"):]
        if suffix.isdigit():
            found.append(int(suffix))
    return sorted(found)


def open_camera(index: int = 0) -> FrameSource:
    """Camera ``index`` as a :class:`FrameSource` (it is checked by reading its first frame).

    :class:`LiveError`: "no camera N ..." when there is none at that index, "camera N is busy
    ..." when it is there but gives no picture (another program holds it)."""
    index = int(index)
    if index < 0:
        raise LiveError(f"no camera {index}: camera numbers start at 0")
    missing = (f"no camera {index}: check that it is connected (and that this program may use "
               f"the camera), or pick another camera")
    busy = (f"camera {index} is busy: another program holds it (close that program and try again), "
            f"or it gives no picture (pick another camera)")
    devices = _linux_devices()
    if devices is not None:
        if index not in devices:
            raise LiveError(missing)
        node = f"/dev/video{index}"
        if not os.access(node, os.R_OK | os.W_OK):
            raise LiveError(f"camera {index}: no permission to open {node} "
                            f"(add yourself to its group, often 'video', and log in again)")
    cv2 = _cv2()
    capture = cv2.VideoCapture(index)
    source = CameraSource(index, capture)
    if not capture.isOpened():
        source.close()
        # On Linux the device node exists, so it is there but would not open: someone holds it.
        raise LiveError(busy if devices is not None else missing)
    for prop in ("CAP_PROP_READ_TIMEOUT_MSEC",):  # a lost camera errors out instead of blocking
        if hasattr(cv2, prop):
            try:
                capture.set(getattr(cv2, prop), STALL_SECONDS * 1000)
            except Exception:  # noqa: BLE001 - a backend without the property
                pass
    first = source._first_frame(FIRST_FRAME_SECONDS)
    if first is None:
        source.close()
        raise LiveError(busy)
    source._start(first, capture.get(cv2.CAP_PROP_FPS))
    return source


def open_source(spec: str | os.PathLike) -> FrameSource:
    """``"camera"`` or ``"camera:N"`` opens a camera; anything else is a video file's path."""
    text = os.fspath(spec)
    if isinstance(text, str):
        head, _, tail = text.strip().partition(":")
        if head.lower() == "camera" and (not Path(text).exists()):
            tail = tail.strip()
            if tail and not (tail.isdigit() or (tail[0] == "-" and tail[1:].isdigit())):
                raise LiveError(f"{text}: a camera is 'camera' or 'camera:N' with N a number (0, 1, ...)")
            return open_camera(int(tail) if tail else 0)
    return open_video(text)


def cameras(limit: int = 4) -> list[int]:
    """The camera indexes below ``limit`` that open (for a menu); on Linux only the
    ``/dev/video<N>`` that exist are tried, so it is immediate when there are none."""
    devices = _linux_devices()
    candidates = range(limit) if devices is None else [i for i in devices if i < limit]
    if not candidates:
        return []
    cv2 = _cv2()
    found = []
    for index in candidates:
        capture = cv2.VideoCapture(index)
        try:
            if capture.isOpened():
                found.append(index)
        finally:
            capture.release()
    return found


class LatestFrame:
    """A thread-safe one-slot mailbox: :meth:`put` replaces a frame nobody took yet (counted in
    :attr:`dropped`), :meth:`take` waits for the newest one. Frames are dropped, never queued."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: np.ndarray | None = None
        self._frame_serial = 0
        self._closed = False
        self.serial = 0      # frames put so far (the serial of the newest)
        self.dropped = 0     # frames replaced before anyone took them
        self.delivered = 0   # frames taken

    def put(self, frame: np.ndarray) -> None:
        """Offer ``frame`` (an untaken older one is dropped); ignored once closed."""
        with self._cond:
            if self._closed:
                return
            if self._frame is not None:
                self.dropped += 1
            self.serial += 1
            self._frame, self._frame_serial = frame, self.serial
            self._cond.notify_all()

    def take(self, timeout: float | None = None) -> tuple[np.ndarray, int] | None:
        """``(frame, serial)`` of the newest untaken frame, waiting at most ``timeout`` seconds
        (None: until one comes or the slot closes). None on timeout or when closed and empty
        (a frame put before :meth:`close` is still handed out)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._frame is not None or self._closed, timeout):
                return None
            if self._frame is None:
                return None
            frame, serial = self._frame, self._frame_serial
            self._frame = None
            self.delivered += 1
            return frame, serial

    def close(self) -> None:
        """No more frames: wakes every waiting :meth:`take` (which returns None once empty)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def pending(self) -> bool:
        """Whether a frame waits to be taken."""
        with self._cond:
            return self._frame is not None


def pump(
    source: FrameSource,
    slot: LatestFrame,
    *,
    cancel: CancelToken | None = None,
    realtime: bool = True,
    loop: bool = False,
    mirror: Callable[[], bool] = lambda: False,
    progress: Progress = no_progress,
) -> str:
    """Read ``source`` into ``slot`` until told to stop; returns why it stopped.

    Each frame is read, mirrored left-right while ``mirror()`` is true, and put into ``slot``
    (replacing one not yet taken). With ``realtime`` a video is paced at its ``fps`` (it plays
    at its own speed, as a camera would; a camera paces itself); without it frames come as fast
    as they decode. Stops with ``"cancelled"`` when ``cancel`` is set (polled between frames and
    while waiting), ``"end"`` at the end of a video (``loop=True`` starts it again), ``"closed"``
    when the slot was closed by its reader; a camera lost mid-stream raises :class:`LiveError`.
    The slot is closed when the pump stops, so a waiting reader wakes with None after the last
    frame. ``progress(frames read, video's frame count or 0, source name)`` after each frame.
    """
    interval = 1.0 / source.fps if realtime and not source.live and source.fps > 0 else 0.0
    total = source.frames or 0
    try:
        due = time.monotonic() - interval  # the first frame goes out at once
        count = 0
        while True:
            if cancel is not None and cancel.cancelled:
                return "cancelled"
            if slot.closed:
                return "closed"
            frame = source.read()
            if frame is None:
                if source.closed:
                    return "closed"
                if loop and count and source.rewind():
                    continue
                return "end"
            if mirror():
                frame = np.ascontiguousarray(frame[:, ::-1])
            if interval:
                due += interval
                now = time.monotonic()
                if due < now - interval:  # fell behind by more than a frame: do not burst to catch up
                    due = now
                if not _sleep_until(due, cancel):
                    return "cancelled"
            slot.put(frame)
            count += 1
            progress(count, total, source.name)
    finally:
        slot.close()


def _sleep_until(deadline: float, cancel: CancelToken | None) -> bool:
    """Sleep until ``deadline`` (monotonic), waking every 50 ms for ``cancel``; False if cancelled."""
    while True:
        if cancel is not None and cancel.cancelled:
            return False
        left = deadline - time.monotonic()
        if left <= 0:
            return True
        time.sleep(min(left, 0.05))


class FpsMeter:
    """Frames per second over the last ``window`` seconds: :meth:`tick` once per frame shown."""

    def __init__(self, window: float = 1.0) -> None:
        self.window = window
        self._times: deque[float] = deque()
        self._lock = threading.Lock()

    def tick(self, t: float | None = None) -> None:
        """One frame at time ``t`` (``time.perf_counter()`` seconds when None)."""
        t = time.perf_counter() if t is None else float(t)
        with self._lock:
            self._times.append(t)
            while len(self._times) > 2 and t - self._times[0] > self.window:
                self._times.popleft()

    @property
    def fps(self) -> float:
        """Frames per second between the first and last tick of the window (0 with fewer than two)."""
        with self._lock:
            if len(self._times) < 2:
                return 0.0
            span = self._times[-1] - self._times[0]
            return (len(self._times) - 1) / span if span > 0 else 0.0

    def reset(self) -> None:
        with self._lock:
            self._times.clear()

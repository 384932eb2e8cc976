"""Live input (vizapp/inputs/live.py) and the headless pipeline on generated videos (no Qt)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from tests._video import STEP, make_video
from vizapp.core.jobs import CancelToken
from vizapp.inputs import live
from vizapp.inputs.live import (
    FpsMeter,
    FrameSource,
    LatestFrame,
    LiveError,
    open_camera,
    open_source,
    open_video,
    pump,
)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("live") / "clip.avi", frames=30, size=(96, 64), fps=15)


def _level(frame: np.ndarray) -> int:
    """The gray level of the frame-index quarter (see tests/_video.py)."""
    h, w = frame.shape[:2]
    return int(round(float(frame[h // 2 + 4:h - 4, 4:w // 2 - 4].mean())))


def test_a_video_reads_back_its_frames_in_rgb(video):
    with open_video(video) as source:
        assert source.name == "clip.avi"
        assert source.size == (96, 64)
        assert source.fps == pytest.approx(15)
        assert source.frames == 30
        assert not source.live
        frames = []
        while (frame := source.read()) is not None:
            frames.append(frame)
        assert source.read() is None  # stays at the end
    assert len(frames) == 30
    first = frames[0]
    assert first.shape == (64, 96, 3) and first.dtype == np.uint8 and first.flags.c_contiguous
    red = first[4:28, 4:44].reshape(-1, 3).mean(axis=0)
    assert red[0] > 200 and red[1] < 60 and red[2] < 60  # red stays red (BGR -> RGB)
    green = first[4:28, 52:92].reshape(-1, 3).mean(axis=0)
    assert green[1] > 200 and green[0] < 60
    assert [abs(_level(f) - i * STEP) <= 6 for i, f in enumerate(frames)] == [True] * 30
    assert frames[1] is not frames[0] and not np.shares_memory(frames[0], frames[1])


def test_an_mp4_reads_too(tmp_path):
    path = make_video(tmp_path / "clip.mp4", frames=6, size=(64, 48), fps=10)
    with open_source(str(path)) as source:
        assert source.size == (64, 48)
        count = 0
        while source.read() is not None:
            count += 1
    assert count == 6


def test_a_video_rewinds_and_closes_idempotently(video):
    source = open_video(video)
    for _ in range(5):
        source.read()
    assert source.rewind()
    assert _level(source.read()) <= 6
    source.close()
    source.close()
    assert source.closed and source.read() is None


@pytest.mark.parametrize("content", [None, b"", b"this is not a video\n" * 10, "folder"])
def test_unreadable_videos_are_one_line_naming_the_file(tmp_path, content):
    path = tmp_path / "movie.avi"
    if content == "folder":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(LiveError) as info:
        open_video(path)
    message = str(info.value)
    assert "movie.avi" in message and "\n" not in message


def test_a_missing_camera_is_a_clear_message_without_warnings(capfd):
    with pytest.raises(LiveError, match=r"^no camera 99: check that it is connected"):
        open_camera(99)
    with pytest.raises(LiveError, match="no camera 99"):
        open_source("camera:99")
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert 99 not in live.cameras(limit=4)


def test_open_source_grammar(video):
    with pytest.raises(LiveError, match="camera:x"):
        open_source("camera:x")
    with open_source(video) as source:
        assert source.frames == 30


def test_latest_frame_drops_untaken_frames():
    slot = LatestFrame()
    for i in range(5):
        slot.put(np.full((2, 2, 3), i, np.uint8))
    frame, serial = slot.take()
    assert int(frame[0, 0, 0]) == 4 and serial == 5
    assert (slot.dropped, slot.delivered, slot.serial) == (4, 1, 5)
    assert slot.take(timeout=0.01) is None  # empty: times out
    slot.put(np.zeros((2, 2, 3), np.uint8))
    slot.close()
    assert slot.take()[1] == 6  # a frame put before close is still handed out
    assert slot.take() is None and slot.take(timeout=0) is None
    slot.put(np.zeros((2, 2, 3), np.uint8))  # ignored once closed
    assert slot.serial == 6


def test_close_wakes_a_waiting_taker():
    slot = LatestFrame()
    got = []
    taker = threading.Thread(target=lambda: got.append(slot.take()))
    taker.start()
    time.sleep(0.05)
    slot.close()
    taker.join(5)
    assert not taker.is_alive() and got == [None]


def test_latest_frame_across_threads_never_goes_back():
    slot = LatestFrame()
    total = 400

    def produce():
        for i in range(1, total + 1):
            slot.put(np.full((1, 1, 3), i % 256, np.uint8))
            if i % 50 == 0:
                time.sleep(0.001)
        slot.close()

    producer = threading.Thread(target=produce)
    seen = []
    producer.start()
    while (got := slot.take(timeout=5)) is not None:
        frame, serial = got
        assert int(frame[0, 0, 0]) == serial % 256  # the frame belongs to its serial
        seen.append(serial)
        time.sleep(0.002)  # a slow consumer
    producer.join(5)
    assert seen == sorted(set(seen))  # strictly newer each time
    assert seen[-1] == total
    assert slot.delivered == len(seen) and slot.dropped == total - len(seen)


def test_pump_runs_a_video_to_its_end_and_closes_the_slot(video):
    slot = LatestFrame()
    taken = []
    with open_video(video) as source:
        reader = threading.Thread(target=lambda: [taken.append(s) for _, s in iter(slot.take, None)])
        reader.start()
        reason = pump(source, slot, realtime=False)
        reader.join(5)
    assert reason == "end" and slot.closed and slot.serial == 30
    assert len(taken) + slot.dropped == 30


def test_pump_loops_and_mirrors(video):
    slot = LatestFrame()
    token = CancelToken()
    seen = []

    def progress(done, total, text):
        seen.append(done)
        if done == 45:
            token.cancel()

    with open_video(video) as source:
        reason = pump(source, slot, cancel=token, realtime=False, loop=True, mirror=lambda: True,
                      progress=progress)
    assert reason == "cancelled" and seen[-1] == 45
    frame, serial = slot.take()
    assert serial == 45
    assert abs(_level(frame[:, ::-1]) - (44 % 30) * STEP) <= 6  # frame 14 of the second pass, mirrored
    right = frame[4:28, 4:44].reshape(-1, 3).mean(axis=0)
    assert right[1] > 200  # green now on the left


def test_pump_stops_when_cancelled_while_pacing(video):
    token = CancelToken()
    slot = LatestFrame()
    source = open_video(video)
    source.fps = 0.5  # two seconds a frame: the pump waits
    threading.Timer(0.2, token.cancel).start()
    start = time.monotonic()
    assert pump(source, slot, cancel=token) == "cancelled"
    assert time.monotonic() - start < 30  # it did not sit out the 60 s of video
    source.close()


def test_realtime_pump_plays_at_the_video_speed(tmp_path):
    path = make_video(tmp_path / "fast.avi", frames=10, size=(32, 32), fps=50)
    slot = LatestFrame()
    with open_video(path) as source:
        start = time.monotonic()
        assert pump(source, slot, realtime=True) == "end"
        elapsed = time.monotonic() - start
    assert elapsed >= 9 / 50 * 0.9  # ten frames at 50 fps: at least nine intervals (no upper bound)
    assert slot.serial == 10


class _Failing(FrameSource):
    """A camera-like source that gives ``good`` frames, then none."""

    live = True

    def __init__(self, good: int) -> None:
        super().__init__()
        self.name, self.size, self.fps, self.good = "camera 0", (8, 6), 30.0, good
        self.grabs = 0

    def grab(self):
        self.grabs += 1
        return np.zeros((6, 8, 3), np.uint8) if self.grabs <= self.good else None


def test_a_camera_that_stops_delivering_raises(monkeypatch):
    monkeypatch.setattr(live, "STALL_SECONDS", 0.2)
    source = _Failing(good=3)
    slot = LatestFrame()
    with pytest.raises(LiveError, match=r"^camera 0 stopped delivering frames \(unplugged\?\)$"):
        pump(source, slot)
    assert slot.serial == 3 and slot.closed
    source = _Failing(good=0)
    with pytest.raises(LiveError, match="camera 0 stopped delivering"):
        source.read()


def test_fps_meter():
    meter = FpsMeter()
    assert meter.fps == 0.0
    for i in range(31):
        meter.tick(100 + i / 30)
    assert meter.fps == pytest.approx(30, rel=0.01)
    meter.tick(110)  # a long pause: the old ticks leave the window
    meter.tick(110.5)
    assert meter.fps == pytest.approx(2, rel=0.01)

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


def test_opencv_probing_a_missing_camera_prints_nothing(monkeypatch, capfd):
    """Where there is no /dev to look at (Windows, macOS) OpenCV itself tries the index: quietly."""
    monkeypatch.setattr(live, "_linux_devices", lambda: None)
    with pytest.raises(LiveError, match=r"^no camera 99: "):
        open_camera(99)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


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


# -- the headless pipeline: analysis.live_frames and `vizapp live` ------------------------------

@pytest.fixture(scope="module")
def shapes():
    from vizapp.analysis import open_model

    return open_model("tinyvgg_shapes", device="cpu").model


def _drain(generator):
    records = []
    while True:
        try:
            records.append(next(generator))
        except StopIteration as end:
            return records, end.value


def test_live_frames_match_analyse_image_frame_by_frame(shapes, video):
    from vizapp.analysis import analyse_image, live_frames

    records, summary = _drain(live_frames(shapes, str(video), "conv1_1", 4, topk=3))
    assert [r.index for r in records] == [0, 1, 2, 3] and [r.serial for r in records] == [1, 2, 3, 4]
    for record in records:
        same = analyse_image(shapes, record.as_image(), "conv1_1", topk=3)
        assert record.analysis.predictions == same.predictions
        np.testing.assert_array_equal(record.analysis.mosaic.image, same.mosaic.image)
        assert record.forward_ms > 0 and record.views_ms > 0 and record.decode_ms > 0
        assert record.label == same.predictions[0].label and record.top1 == same.predictions[0].index
    kept = records[2].as_image()  # the frame kept as the image
    assert kept.name == "clip.avi, frame 3" and kept.path is None and kept.pixels is records[2].frame
    assert summary["frames"] == 4 and summary["dropped"] == 0 and summary["fps"] > 0
    assert set(summary["forward_ms"]) == {"mean", "median", "p95"}
    assert summary["forward_ms"]["p95"] >= summary["forward_ms"]["median"] > 0
    # the whole video when no count is given; mirrored frames are flipped
    records, summary = _drain(live_frames(shapes, str(video), None, mirror=True))
    assert summary["frames"] == 30 and records[-1].serial == 30
    assert records[0].frame[4:28, 52:92, 0].mean() > 200  # red is on the right now
    # looping: past the end the video starts again; mirror asked per frame
    flips = iter([False, True] * 40)
    records, summary = _drain(live_frames(shapes, str(video), None, 34, loop=True, mirror=lambda: next(flips)))
    assert summary["frames"] == 34 and [r.serial for r in records[28:]] == [29, 30, 1, 2, 3, 4]
    assert [r.frame[4:28, 4:44, 0].mean() > 200 for r in records[:4]] == [True, False, True, False]


def test_live_frames_realtime_drops_what_the_model_cannot_keep_up_with(shapes, tmp_path):
    from vizapp.analysis import live_frames

    path = make_video(tmp_path / "fast.avi", frames=40, size=(48, 48), fps=200)
    with open_video(path) as source:
        records, summary = _drain(live_frames(shapes, source, "conv1_1", realtime=True))
        assert not source.closed  # a source passed in stays the caller's
    serials = [r.serial for r in records]
    assert serials == sorted(set(serials)) and serials[-1] <= 40
    assert summary["dropped"] == 40 - len(records) == records[-1].dropped
    assert [t.name for t in threading.enumerate() if t.name == "vizapp-live-reader"] == []


def test_live_frames_stop_on_cancel_and_a_lost_camera(shapes, video, monkeypatch):
    from vizapp.analysis import live_frames
    from vizapp.core.errors import Cancelled

    token = CancelToken()
    frames = live_frames(shapes, str(video), None, cancel=token)
    next(frames)
    token.cancel()
    with pytest.raises(Cancelled):
        next(frames)
    monkeypatch.setattr(live, "STALL_SECONDS", 0.2)
    for realtime in (False, True):
        with pytest.raises(LiveError, match="camera 0 stopped delivering"):
            _drain(live_frames(shapes, _Failing(good=2), None, realtime=realtime))


def test_live_frames_check_the_layer_first(shapes, video):
    from vizapp.analysis import live_frames
    from vizapp.core.errors import LayerError

    with pytest.raises(LayerError, match="'nope'"):
        next(live_frames(shapes, "camera:99", "nope"))


def test_cli_live_json(capsys, shapes, video, tmp_path):
    import json

    import main
    from vizapp.analysis import analyse_image

    out_file = tmp_path / "frames.json"
    status = main.main(["live", "--video", str(video), "--model", "tinyvgg_shapes", "--layer", "conv1_1",
                        "--frames", "10", "--json", "--out", str(out_file), "--device", "cpu"])
    out, err = capsys.readouterr()
    assert status == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 11
    frames, summary = lines[:10], lines[10]["summary"]
    assert [f["frame"] for f in frames] == list(range(10))
    for f in frames:
        assert f["decode_ms"] > 0 and f["forward_ms"] > 0 and f["views_ms"] > 0
        assert isinstance(f["label"], str) and f["label"] == f["predictions"][0]["label"]
    assert summary["frames"] == 10 and summary["source"] == "clip.avi" and summary["layer"] == "conv1_1"
    with open_video(video) as source:  # frame 3 decoded again predicts the same
        for _ in range(3):
            source.read()
        from PIL import Image

        same = analyse_image(shapes, Image.fromarray(source.read()), "conv1_1", topk=5)
    assert frames[3]["predictions"] == [p.to_json() for p in same.predictions]
    document = json.loads(out_file.read_text())
    assert document["frames"] == frames and document["summary"] == summary
    # the text form: one line per frame and the summary table
    status = main.main(["live", "--video", str(video), "--model", "tinyvgg_shapes", "--frames", "2", "--realtime",
                        "--device", "cpu"])
    out, _ = capsys.readouterr()
    assert status == 0 and out.startswith("frame     0: decode") and "2 frames in" in out and "p95" in out


@pytest.mark.parametrize(("args", "message"), [
    (["--video", "missing.avi"], "missing.avi: no such video file"),
    (["--camera", "42"], "no camera 42: check that it is connected"),
    (["--video", "{video}", "--layer", "nope"], "layer 'nope' is not in the model"),
    (["--video", "{video}", "--frames", "0"], "argument --frames: must be an integer >= 1"),
    (["--camera", "x"], "argument --camera: must be an integer from 0 to 63"),
    (["--video", "{video}", "--out", "{video}.d/frames.json"], ".d/frames.json: the folder"),
    (["--video", "{video}", "--out", "."], "--out .: is a folder"),
])
def test_cli_live_exit_2_with_one_line(capsys, video, args, message):
    import main

    args = [a.format(video=video) for a in args]
    try:
        status = main.main(["live", *args, "--model", "tinyvgg_shapes", "--device", "cpu"])
    except SystemExit as exit_:  # argparse's errors
        status = exit_.code
    out, err = capsys.readouterr()
    assert status == 2 and out == ""
    assert message in err and err.count("\n") == 1


class _FakeCapture:
    """Stands in for ``cv2.VideoCapture(index)``: opens or not, then gives ``frames`` frames."""

    def __init__(self, opened: bool, frames: int) -> None:
        self.opened, self.left, self.released = opened, frames, False

    def isOpened(self):  # noqa: N802 - OpenCV's name
        return self.opened

    def read(self):
        if self.left <= 0:
            return False, None
        self.left -= 1
        frame = np.zeros((48, 64, 3), np.uint8)
        frame[..., 2] = 255  # red in OpenCV's BGR
        return True, frame

    def set(self, prop, value):
        return True

    def get(self, prop):
        return 30.0

    def release(self):
        self.released = True


@pytest.mark.parametrize(("opened", "frames", "message"), [
    (False, 0, r"^camera 0 is busy: another program holds it"),
    (True, 0, r"^camera 0 is busy: another program holds it"),
])
def test_a_camera_that_is_there_but_gives_nothing_is_busy(monkeypatch, opened, frames, message):
    import cv2

    fake = _FakeCapture(opened, frames)
    monkeypatch.setattr(live, "_linux_devices", lambda: [0])
    monkeypatch.setattr(live.os, "access", lambda *a: True)
    monkeypatch.setattr(live, "FIRST_FRAME_SECONDS", 0.1)
    monkeypatch.setattr(cv2, "VideoCapture", lambda index: fake)
    with pytest.raises(LiveError, match=message):
        open_camera(0)
    assert fake.released


def test_a_camera_streams_unpaced_then_is_lost(monkeypatch):
    import cv2

    made = []
    monkeypatch.setattr(live, "_linux_devices", lambda: [0])
    monkeypatch.setattr(live.os, "access", lambda *a: True)
    monkeypatch.setattr(live, "STALL_SECONDS", 0.2)
    monkeypatch.setattr(cv2, "VideoCapture", lambda index: made.append(_FakeCapture(True, 5)) or made[-1])
    assert live.cameras() == [0] and made[0].released  # probed and let go
    source = open_source("camera")
    fake = made[-1]
    assert (source.name, source.size, source.fps, source.frames, source.live) == ("camera 0", (64, 48), 30.0, None, True)
    slot = LatestFrame()
    with pytest.raises(LiveError, match=r"^camera 0 stopped delivering frames \(unplugged\?\)$"):
        pump(source, slot, realtime=True)
    assert slot.serial == 5 and not source.rewind()
    frame, _ = slot.take()
    assert tuple(frame[0, 0]) == (255, 0, 0)
    source.close()
    assert fake.released


def test_closing_a_waiting_camera_ends_the_pump_quietly(monkeypatch):
    """The window closes the source from its own thread while the reader waits for a frame."""
    monkeypatch.setattr(live, "STALL_SECONDS", 30.0)
    monkeypatch.setattr(live, "STALL_READS", 10**6)
    source = _Failing(good=1)
    slot = LatestFrame()
    threading.Timer(0.3, source.close).start()
    assert pump(source, slot) == "closed"
    assert slot.serial == 1

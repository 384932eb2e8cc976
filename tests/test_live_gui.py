"""The window following a video (widgets/controllers/live.py): frames reach every view, latest
frame wins, freeze, mirror, keep frame, errors; ``--video`` / ``--camera`` and ``screenshot --video``."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt

from tests._video import make_video

pytestmark = pytest.mark.gui

MODEL, IMAGE = "tinyvgg_shapes", "star"


@pytest.fixture
def shapes(make_window):
    from vizapp.inputs.sources import resolve_image_source

    return make_window(MODEL, str(resolve_image_source(IMAGE)), device="cpu")


def decoded(path, serial: int) -> np.ndarray:
    """Frame ``serial`` (1-based, as the live bar names it) of ``path`` as OpenCV decodes it."""
    from vizapp.inputs.live import open_video

    with open_video(path) as source:
        for _ in range(serial):
            frame = source.read()
    return frame


def serial_of(window) -> int:
    return int(window.session.image.name.rsplit("frame ", 1)[1])


def shown_pixels(window) -> np.ndarray:
    """The Image dock's picture (its unscaled pixmap) as H x W x 3."""
    image = window.image_view.original._pixmap.toImage().convertToFormat(
        window.image_view.original._pixmap.toImage().Format.Format_RGB888)
    w, h = image.width(), image.height()
    data = np.frombuffer(image.constBits(), np.uint8, image.sizeInBytes()).reshape(h, image.bytesPerLine())
    return data[:, :w * 3].reshape(h, w, 3).copy()


def settled(window) -> bool:
    return window.runner.lane_idle() and window.runner.idle("live")


def test_a_video_is_followed_to_its_last_frame_by_the_image_and_the_predictions(qtbot, shapes, tmp_path):
    from vizapp import analysis
    from vizapp.core.notifications import notification_manager

    w = shapes
    video = make_video(tmp_path / "clip.avi", frames=12)
    said = []
    hear = lambda n: said.append(n.message)  # noqa: E731
    notification_manager.subscribe(hear)
    try:
        w.live.start(str(video), realtime=False)
        assert w.live.bar.isVisibleTo(w)
        qtbot.waitUntil(lambda: not w.live.active and settled(w), timeout=30_000)
        # said once the last frame's jobs drained (the window shows it until its jobs drain or 8 s pass)
        qtbot.waitUntil(lambda: any("clip.avi ended" in m for m in said), timeout=10_000)
    finally:
        notification_manager.unsubscribe(hear)
    assert w.session.image.name == "clip.avi · frame 12"  # the video ended: its last frame stays
    assert np.array_equal(w.session.image.pixels, decoded(video, 12))
    assert np.array_equal(shown_pixels(w), w.session.image.pixels)
    expected = analysis.analyse_image(w.session.model, w.session.image, w.session.layer).predictions
    assert [(p.label, round(p.prob, 5)) for p in w.session.predictions] == \
           [(p.label, round(p.prob, 5)) for p in expected[:len(w.session.predictions)]]
    assert w.live.shown + w.live.dropped == 12
    assert not w.live.bar.isVisibleTo(w)


def test_frames_are_dropped_not_queued_when_the_analysis_is_slow(qtbot, shapes, tmp_path, monkeypatch):
    import threading

    from vizapp import analysis

    w = shapes
    real, calls, release = analysis.analyse_image, [], threading.Event()

    def slow(*args, **kwargs):
        calls.append(args[1].name)
        release.wait(10)  # held until the reader has put every frame
        return real(*args, **kwargs)

    monkeypatch.setattr(analysis, "analyse_image", slow)
    video = make_video(tmp_path / "many.avi", frames=40)
    w.live.start(str(video), realtime=False)
    qtbot.waitUntil(lambda: w.live.slot is not None and w.live.slot.closed, timeout=30_000)  # all 40 read
    release.set()
    qtbot.waitUntil(lambda: not w.live.active and settled(w), timeout=30_000)
    assert w.live.shown + w.live.dropped == 40
    assert w.live.dropped >= 30 and len(calls) <= w.live.shown  # one analysis per frame shown, no backlog
    assert calls[-1] == "many.avi · frame 40" == w.session.image.name  # the newest frame is the last shown


def test_space_freezes_and_resumes_and_mirror_flips_the_held_frame(qtbot, shapes, tmp_path):
    w = shapes
    video = make_video(tmp_path / "long.avi", frames=300, fps=30)
    w.live.start(str(video))
    qtbot.waitUntil(lambda: w.live.shown >= 2, timeout=30_000)
    qtbot.keyClick(w.feature_view, Qt.Key_Space)
    assert w.live.frozen and w.live.freeze_action.isChecked() and "FROZEN" in w.live.fps_label.text()
    qtbot.waitUntil(w.runner.lane_idle, timeout=30_000)
    held, read = w.session.image, w.live.slot.serial
    qtbot.waitUntil(lambda: w.live.slot.serial >= read + 5, timeout=30_000)  # the video plays on...
    assert w.session.image is held  # ... but the frame on screen is held
    w.live.set_mirror(True)  # a held frame flips at once
    assert np.array_equal(w.session.image.pixels, held.pixels[:, ::-1])
    w.live.set_mirror(False)
    qtbot.keyClick(w.feature_view, Qt.Key_Space)
    assert not w.live.frozen
    qtbot.waitUntil(lambda: serial_of(w) > read, timeout=30_000)
    # Opening an image stops live; the image comes.
    from vizapp.inputs.sources import resolve_image_source

    w.image_view.sigImageRequested.emit(str(resolve_image_source("square")))
    assert not w.live.active and not w.live.bar.isVisibleTo(w)
    qtbot.waitUntil(lambda: w.session.image.name == "square.png" and settled(w), timeout=30_000)


def test_space_is_left_to_the_focused_widget_when_not_live(qtbot, shapes):
    assert not shapes.live.space_is_ours()


def test_mirror_flips_the_frames_the_reader_delivers(qtbot, shapes, tmp_path):
    w = shapes
    video = make_video(tmp_path / "m.avi", frames=6)
    w.live.set_mirror(True)
    w.live.start(str(video), realtime=False)
    qtbot.waitUntil(lambda: not w.live.active and settled(w), timeout=30_000)
    assert np.array_equal(w.session.image.pixels, decoded(video, 6)[:, ::-1])


def test_keep_frame_writes_the_frame_as_a_png_the_image_has_the_path(qtbot, shapes, tmp_path, monkeypatch):
    from PIL import Image

    w = shapes
    monkeypatch.setenv("VIZAPP_FRAMES", str(tmp_path / "frames"))
    video = make_video(tmp_path / "keep.avi", frames=300, fps=30)
    w.live.start(str(video))
    qtbot.waitUntil(lambda: w.live.shown >= 2, timeout=30_000)
    frame = w.live.frame
    w.live.keep_action.trigger()
    assert not w.live.active
    qtbot.waitUntil(lambda: w.session.image.path is not None and settled(w), timeout=30_000)
    path = w.session.image.path
    assert path.startswith(str(tmp_path / "frames")) and path.endswith(".png")
    with Image.open(path) as png:
        assert np.array_equal(np.asarray(png.convert("RGB")), frame.pixels)
    assert np.array_equal(w.session.image.pixels, frame.pixels)
    qtbot.waitUntil(lambda: path in w.message.text(), timeout=10_000)  # said where, once the jobs drained



def test_a_bad_video_gives_one_error_and_the_image_stays(qtbot, shapes, tmp_path):
    from vizapp.core.notifications import Severity, notification_manager

    w = shapes
    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"not a video at all" * 100)
    before = w.session.image
    errors = []
    collect = lambda n: n.severity is Severity.ERROR and errors.append(n.message)  # noqa: E731
    notification_manager.subscribe(collect)
    try:
        w.live.open_video(bad)
        qtbot.waitUntil(lambda: not w.live.active and settled(w), timeout=30_000)
    finally:
        notification_manager.unsubscribe(collect)
    assert len(errors) == 1 and "bad.avi" in errors[0]
    qtbot.waitUntil(lambda: w.last_error == errors[0], timeout=10_000)  # shown once queued to the GUI thread
    assert w.session.image is before


class _Failing:
    """A camera that gives three frames and is then unplugged."""

    def __init__(self) -> None:
        from vizapp.inputs.live import FrameSource

        class Source(FrameSource):
            name, fps, size, live = "camera 7", 30.0, (32, 24), True

            def grab(self):
                if self.position >= 3:
                    return None
                return np.full((24, 32, 3), 40 * (self.position + 1), np.uint8)

        self.source = Source()


def test_a_camera_lost_mid_stream_stops_live_with_its_message(qtbot, shapes, monkeypatch):
    import vizapp.inputs.live as live

    w = shapes
    fake = _Failing().source
    monkeypatch.setattr(live, "STALL_SECONDS", 0.05)
    monkeypatch.setattr(live, "open_source", lambda spec: fake)
    w.live.open_camera(7)
    qtbot.waitUntil(lambda: not w.live.active and settled(w), timeout=30_000)
    qtbot.waitUntil(lambda: w.last_error == "camera 7 stopped delivering frames (unplugged?)", timeout=10_000)
    assert fake.closed and w.runner.idle("live") and not w.live.bar.isVisibleTo(w)
    assert w.session.image.name.startswith("camera 7 · frame ")  # the last frame it gave stays


def test_the_command_line_takes_video_and_camera():
    from vizapp.cli.parser import parse_args

    assert parse_args(["--video", "clip.avi"]).video == "clip.avi"
    assert parse_args(["gui", "--camera"]).camera == 0
    assert parse_args(["--camera", "2"]).camera == 2
    assert parse_args(["--camera", "0", "gui"]).camera == 0
    args = parse_args(["screenshot", "--video", "clip.avi", "--frames", "5", "--out", "x.png"])
    assert (args.video, args.frames) == ("clip.avi", 5)
    for argv in (["--video", "a.avi", "--camera"], ["screenshot", "--frames", "5", "--out", "x.png"],
                 ["--camera", "100"]):
        with pytest.raises(SystemExit):
            parse_args(argv)


def test_screenshot_follows_the_video_then_takes_the_picture(capsys, qapp, settings_file, tmp_path):
    from PIL import Image

    from main import main

    video = make_video(tmp_path / "shot.avi", frames=40, size=(64, 64), fps=30)
    out = tmp_path / "live.png"
    status = main(["screenshot", "--model", MODEL, "--device", "cpu", "--video", str(video), "--frames", "3",
                   "--size", "1280x720", "--out", str(out)])
    printed, err = capsys.readouterr()
    assert status == 0, err
    with Image.open(out) as png:
        assert png.size == (1280, 720)
    bad = main(["screenshot", "--model", MODEL, "--device", "cpu", "--video", str(tmp_path / "none.avi"),
                "--out", str(tmp_path / "no.png")])
    assert bad == 2 and "none.avi: no such video file" in capsys.readouterr().err


def test_the_camera_menu_lists_what_the_scan_job_finds_and_a_busy_camera_is_one_message(qtbot, shapes, monkeypatch):
    import vizapp.inputs.live as live

    w = shapes
    monkeypatch.setattr(live, "cameras", lambda limit=4: [0, 2])
    w.live.camera_menu.aboutToShow.emit()  # the menu opening starts the scan (a job, off the GUI thread)
    qtbot.waitUntil(lambda: "Camera 2" in [a.text() for a in w.live.camera_menu.actions()], timeout=10_000)
    texts = [a.text() for a in w.live.camera_menu.actions() if a.text()]
    assert texts == ["Camera 0", "Camera 2", "Look for cameras again"]

    def busy(spec):
        raise live.LiveError("camera 2 is busy or gives no picture: another program holds it; close that program and try again")

    monkeypatch.setattr(live, "open_source", busy)
    before = w.session.image
    next(a for a in w.live.camera_menu.actions() if a.text() == "Camera 2").trigger()
    assert w.live.spec == "camera:2"
    qtbot.waitUntil(lambda: not w.live.active and settled(w), timeout=10_000)
    qtbot.waitUntil(lambda: w.last_error.startswith("camera 2 is busy"), timeout=10_000)
    assert w.session.image is before

    monkeypatch.setattr(live, "cameras", lambda limit=4: [])
    w.live.look_for_cameras()
    qtbot.waitUntil(lambda: "No camera found" in [a.text() for a in w.live.camera_menu.actions()], timeout=10_000)


def test_opening_a_model_while_live_keeps_live_and_the_frames_go_through_it(qtbot, shapes, tmp_path):
    w = shapes
    video = make_video(tmp_path / "model.avi", frames=300, fps=30)
    w.live.start(str(video))
    qtbot.waitUntil(lambda: w.live.shown >= 2, timeout=30_000)
    assert w.live.quiet("analysis") and not w.live.quiet("model")  # a frame's jobs show no progress bar
    w.open_model("vit_digits")
    qtbot.waitUntil(lambda: w.session.model.title.lower().startswith("vit") and w.ready, timeout=60_000)
    shown = w.live.shown
    qtbot.waitUntil(lambda: w.live.shown >= shown + 2 and w.runner.lane_idle(), timeout=30_000)
    assert w.live.active and w.session.image.name.startswith("model.avi · frame ")
    assert w.session.predictions and w.session.predictions[0].label in w.session.model.class_names
    w.live.stop()
    assert not w.live.active

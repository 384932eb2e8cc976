"""Figures for slides (widgets/export.py, widgets/recording.py, ``vizapp export`` and
``vizapp record``): PNG scales, SVG of the plots, the clipboard, export all with captions,
stepped and live recordings as GIF and MP4, and the commands' one-line errors."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import imageio.v3 as iio
import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QImage

from vizapp.core.errors import UserError
from vizapp.inputs.sources import resolve_image_source

pytestmark = pytest.mark.gui

MODEL, IMAGE = "tinyvgg_shapes", "star"


@pytest.fixture
def shapes(make_window):
    """The window on the small shapes CNN and its star sample, analysed."""
    return make_window(MODEL, str(resolve_image_source(IMAGE)), device="cpu")


def _size(path) -> tuple[int, int]:
    image = QImage(str(path))
    assert not image.isNull()
    return image.width(), image.height()


def test_png_scales_multiply_the_pixels(shapes, tmp_path):
    from widgets.export import content, export_png

    w = shapes
    view = content(w, "features")
    one = _size(export_png(view, tmp_path / "one.png", 1))
    assert one == (view.width(), view.height())
    for scale in (2, 3):
        assert _size(export_png(view, tmp_path / f"x{scale}.png", scale)) == (scale * one[0], scale * one[1])
    # the window's own export keeps its meaning: a dock at 2x, the whole window at 1x, or as asked
    assert _size(w.export_view("features", tmp_path / "dock.png")) == (2 * one[0], 2 * one[1])
    assert _size(w.export_view("features", tmp_path / "dock3.png", scale=3)) == (3 * one[0], 3 * one[1])
    assert _size(w.export_view(None, tmp_path / "window.png")) == (w.width(), w.height())


def _points(element) -> list[tuple[float, float]]:
    text = element.get("points") or element.get("d") or ""
    return [(float(x), float(y)) for x, y in re.findall(r"(-?[\d.e+-]+),(-?[\d.e+-]+)", text)]


def test_svg_of_the_training_curves_holds_their_paths(shapes):
    from PySide6.QtCore import QPointF

    from widgets.export import content, has_svg, svg_bytes

    w = shapes
    w.docks["training"].raise_()
    curves = w.training_panel.board.curves_view
    steps = np.arange(40.0)
    curves.set_data({"step": list(steps), "loss": list(2 * np.exp(-steps / 10)), "acc": list(1 - np.exp(-steps / 10)),
                     "lr": [0.01] * 40}, {"step": [0, 20, 39], "val_loss": [2.0, 0.5, 0.2], "val_acc": [0.1, 0.6, 0.9]}, "adam")
    QGuiApplication.processEvents()
    panel = content(w, "training")
    assert has_svg(panel)
    vb = curves.loss_plot.getPlotItem().vb

    def scene(x, y):
        p = vb.mapViewToScene(QPointF(x, y))
        return p.x(), p.y()

    # where the curves are on screen, then the SVG at once (nothing can move in between)
    val = [scene(0, 2.0), scene(20, 0.5), scene(39, 0.2)]
    loss = 2 * np.exp(-steps / 10)
    train = [scene(x, y) for x, y in zip(steps, loss, strict=True)]
    root = ET.fromstring(svg_bytes(panel))  # valid XML
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    shapes_drawn = [_points(e) for e in root.iter() if e.tag.rpartition("}")[2] in ("polyline", "path")]

    def drawn(points) -> bool:
        return any(len(s) >= len(points) and all(np.hypot(a[0] - b[0], a[1] - b[1]) < 0.6 for a, b in zip(s, points, strict=False))
                   for s in shapes_drawn)

    assert drawn(val)  # the validation loss: one line through its three points
    assert all(drawn(train[i:i + 2]) for i in range(39))  # the training loss, drawn segment by segment
    texts = " ".join("".join(e.itertext()) for e in root.iter() if e.tag.endswith("text"))
    assert "Loss" in texts and "Accuracy" in texts  # the titles stay text


def test_pictures_have_no_svg(shapes):
    from widgets.export import content, has_svg, svg_bytes

    view = content(shapes, "features")
    assert not has_svg(view)
    with pytest.raises(UserError, match="Feature maps dock shows no plot"):
        svg_bytes(view)
    assert has_svg(content(shapes, "embedding"))


def test_copy_puts_the_view_on_the_clipboard(shapes, qtbot):
    from widgets.export import content, raised_dock

    w = shapes
    clipboard = QGuiApplication.clipboard()
    w.figures.copy("features")
    view = content(w, "features")
    assert (clipboard.image().width(), clipboard.image().height()) == (2 * view.width(), 2 * view.height())
    # Ctrl+Shift+C: the dock holding the focus
    clipboard.clear()
    w.predictions_view.setFocusPolicy(Qt.StrongFocus)
    w.predictions_view.setFocus()
    qtbot.waitUntil(lambda: w.predictions_view.hasFocus())
    assert raised_dock(w) == "predictions"
    qtbot.keyClick(w.predictions_view, Qt.Key_C, Qt.ControlModifier | Qt.ShiftModifier)
    pv = w.predictions_view
    assert (clipboard.image().width(), clipboard.image().height()) == (2 * pv.width(), 2 * pv.height())


def test_export_all_writes_each_visible_dock_and_captions(shapes, tmp_path):
    from widgets.export import export_all

    w = shapes
    shown = [key for key in w.docks if w.dock_on_screen(key)]
    assert "features" in shown and "training" not in shown  # a tab behind the feature maps
    files = export_all(w, tmp_path / "figs", scale=1)
    names = sorted(p.name for p in files)
    assert names == sorted([f"{k}.png" for k in shown] + ["captions.json", "captions.txt"])
    captions = json.loads((tmp_path / "figs" / "captions.json").read_text())
    assert captions["scale"] == 1
    by_file = {r["file"]: r for r in captions["files"]}
    assert sorted(by_file) == sorted(f"{k}.png" for k in shown)
    features = by_file["features.png"]
    assert features["title"] == "Feature maps" and features["model"] == w.session.model.title
    assert features["layer"] == w.session.layer == "conv1_1" and features["image"] == "star.png"
    assert features["class"] == f"{w.session.predictions[0].label} (predicted)"
    lines = (tmp_path / "figs" / "captions.txt").read_text().splitlines()
    assert len(lines) == len(shown)
    assert lines[[f"{k}.png" for k in shown].index("features.png")].startswith("features.png: Feature maps: TinyVGG")
    # the training lab raised: its PNG and its SVG
    w.docks["training"].raise_()
    QGuiApplication.processEvents()
    names = {p.name for p in export_all(w, tmp_path / "lab")}
    assert {"training.png", "training.svg"} <= names and "features.png" not in names


def test_stepped_gif_has_a_frame_per_channel(shapes, tmp_path):
    from widgets.recording import Stepper, encode

    w = shapes
    w.session.select_channel(2)
    channels = w.feature_view.channel_count()
    frames = Stepper(w, "features", "channels").run(QGuiApplication.instance())
    assert len(frames) == channels == 10
    assert w.session.channel == 2  # the state before is restored
    path = encode(frames, tmp_path / "channels.gif", fps=2)
    back = iio.imread(path, index=None)
    assert back.shape[:3] == (channels, *frames[0].shape[:2])
    for a, b in zip(back, back[1:], strict=False):
        assert np.abs(a.astype(int) - b.astype(int)).mean() > 0.5  # each channel enlarged differs


def test_stepped_layers_and_a_count(shapes):
    from widgets.recording import Stepper

    w = shapes
    layers = w.session.steppable_layers()
    frames = Stepper(w, "features", "layers", count=3).run(QGuiApplication.instance())
    assert len(frames) == 3 and w.session.layer == layers[0]
    with pytest.raises(UserError, match="stepping through heads: the Attention dock shows no heads"):
        Stepper(w, "attention", "heads").run(QGuiApplication.instance())


def test_the_window_records_steps_and_encodes_them(shapes, qtbot, tmp_path):
    from vizapp.core.notifications import notification_manager

    w = shapes
    path = tmp_path / "steps.gif"
    said: list[str] = []
    listen = lambda n: said.append(n.message)  # noqa: E731 - (the status label's info fades on a timer)
    notification_manager.subscribe(listen)
    try:
        w.recording.start_steps("features", "channels", path, count=3)
        assert w.recording.recording and "● REC stepping through channels" in w.docks["features"].windowTitle()
        qtbot.waitUntil(lambda: path.exists() and w.runner.lane_idle("record") and bool(said), timeout=60_000)
    finally:
        notification_manager.unsubscribe(listen)
    assert not w.recording.recording and w.docks["features"].windowTitle() == "Feature maps"
    assert iio.imread(path, index=None).shape[0] == 3
    assert said[-1] == f"saved {path}"


def test_mp4_reads_back_frame_by_frame(tmp_path):
    import imageio.v2 as iio2

    from widgets.recording import encode

    rng = np.random.default_rng(0)
    frames = [np.full((45, 61, 3), 40 * i, np.uint8) for i in range(6)]
    frames[3] = rng.integers(0, 255, (40, 70, 3), dtype=np.uint8)  # another size: cropped and padded
    path = encode(frames, tmp_path / "clip.mp4", fps=3)
    with iio2.get_reader(path, format="FFMPEG") as reader:
        back = [frame for frame in reader]  # (list() asks its length first: unknown, "inf")
        assert reader.get_meta_data()["fps"] == 3
    assert len(back) == 6 and back[0].shape == (46, 62, 3)  # H.264 4:2:0: sides rounded up to even
    assert abs(float(back[5][:44, :60].mean()) - 200) < 6  # lossy, but the grey level survives
    assert not list(tmp_path.glob(".*.tmp"))  # written through the atomic writer
    with pytest.raises(UserError, match="a recording is a .gif or an .mp4"):
        encode(frames, tmp_path / "clip.avi", fps=3)


def test_live_recording_grabs_until_its_cap_and_encodes_off_the_gui_thread(shapes, qtbot, tmp_path):
    import imageio.v2 as iio2

    w = shapes
    rec = w.recording
    path = tmp_path / "live.mp4"
    pv = w.predictions_view
    size = (pv.height() + pv.height() % 2, pv.width() + pv.width() % 2)  # (a message after it may resize it)
    rec.start_live("predictions", path, fps=20, max_frames=4)
    dock = w.docks["predictions"]
    assert rec.recording and dock.windowTitle().startswith("Predictions   ● REC ") and "frames" in dock.windowTitle()
    with pytest.raises(UserError, match="already recording"):
        rec.start_live("features", tmp_path / "other.gif")
    qtbot.waitUntil(lambda: not rec.recording, timeout=20_000)
    assert dock.windowTitle() == "Predictions"
    assert w.runner.lane_of(f"record:{rec.encodings}") == "record"  # encoded on a lane of its own
    qtbot.waitUntil(lambda: path.exists() and w.runner.lane_idle("record"), timeout=60_000)
    with iio2.get_reader(path, format="FFMPEG") as reader:
        back = [frame for frame in reader]
    assert len(back) == 4 and back[0].shape[:2] == size


# --- the commands --------------------------------------------------------------------------
def _run(capsys, *argv) -> tuple[int, str, str]:
    from main import main

    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("argv, message", [
    (["export", "--out", "x.png"], "one of the arguments --dock --all is required"),
    (["export", "--all", "--format", "svg", "--out", "figs"], "argument --format: only with --dock"),
    (["export", "--dock", "features", "--scale", "4", "--out", "x.png"], "argument --scale: must be an integer from 1 to 3"),
    (["export", "--dock", "nope", "--out", "x.png"], "argument --dock: invalid choice: 'nope'"),
    (["record", "--dock", "features", "--step", "channels", "--out", "x.avi"], "argument --out: must be a .gif or .mp4 file name (got 'x.avi')"),
    (["record", "--dock", "features", "--step", "pixels", "--out", "x.gif"], "argument --step: invalid choice: 'pixels'"),
    (["record", "--dock", "features", "--step", "channels", "--count", "0", "--out", "x.gif"], "--count: must be an integer from 1 to 600"),
    (["record", "--dock", "features", "--step", "channels", "--fps", "0", "--out", "x.gif"], "--fps: must be an integer from 1 to 60"),
])
def test_bad_arguments_are_one_line_and_exit_2(capsys, argv, message):
    status, out, err = _run(capsys, *argv)
    assert status == 2 and out == ""
    assert err.startswith("vizapp: error: ") and err.count("\n") == 1 and message in err, err


def test_the_parser_and_the_recorder_agree():
    from vizapp.cli import parser
    from widgets import recording

    assert parser.RECORD_STEPS == recording.STEPS and parser.MAX_FRAMES == recording.MAX_FRAMES
    assert parser.RECORDING_SUFFIXES == recording.FORMATS


def test_export_and_record_commands(capsys, qapp, settings_file, tmp_path):
    shape = ["--model", MODEL, "--image", IMAGE, "--device", "cpu", "--size", "1280x720"]
    status, out, err = _run(capsys, "export", *shape, "--dock", "features", "--scale", "3", "--out", tmp_path / "f.png")
    assert status == 0, err
    w, h = _size(tmp_path / "f.png")
    assert out == f"saved {tmp_path / 'f.png'} ({w}x{h}, 3x)\n" and w % 3 == 0 and h % 3 == 0
    status, out, err = _run(capsys, "export", *shape, "--dock", "features", "--format", "svg", "--out", tmp_path / "f.svg")
    assert status == 2 and out == "" and not (tmp_path / "f.svg").exists()
    assert [line for line in err.splitlines() if line.startswith("vizapp")] == [
        "vizapp: error: --format svg: the 'features' dock shows no plot; SVG is for the embedding, the attention "
        "dock's distance plot and the training lab (use png)"]
    status, out, err = _run(capsys, "export", *shape, "--dock", "training", "--out", tmp_path / "lab.svg")
    assert status == 0, err
    ET.parse(tmp_path / "lab.svg")
    status, out, err = _run(capsys, "record", *shape, "--dock", "features", "--step", "channels", "--count", "3",
                            "--out", tmp_path / "c.gif")
    assert status == 0, err
    assert out.startswith(f"saved {tmp_path / 'c.gif'} (3 frames")
    assert iio.imread(tmp_path / "c.gif", index=None).shape[0] == 3
    status, out, err = _run(capsys, "record", *shape, "--dock", "attention", "--step", "heads", "--out", tmp_path / "h.gif")
    assert status == 2 and not (tmp_path / "h.gif").exists()
    assert "vizapp: error: stepping through heads: the Attention dock shows no heads" in err


def test_menus_offer_every_dock_and_svg_only_for_plots(shapes):
    w = shapes
    file_menu = next(a.menu() for a in w.menuBar().actions() if a.text() == "&File")
    entries = {a.text(): a for a in file_menu.actions()}
    assert {"&Export view", "Export &all views…", "&Record view", "S&top recording"} <= set(entries)
    export = entries["&Export view"].menu()
    subs = {a.text(): a.menu() for a in export.actions() if a.menu() is not None}
    assert list(subs) == [d.windowTitle() for d in w.docks.values()]
    features = subs["Feature maps"]
    texts = [a.text() for a in features.actions()]
    assert texts == ["Export as PNG 1x…", "Export as PNG 2x…", "Export as PNG 3x…", "Export as SVG…",
                     "Copy to the clipboard"]
    features.aboutToShow.emit()
    assert not features.actions()[3].isEnabled()  # pictures: no SVG
    subs["Training lab"].aboutToShow.emit()
    assert subs["Training lab"].actions()[3].isEnabled()
    record = {a.text(): a.menu() for a in entries["&Record view"].menu().actions()}
    assert [a.text() for a in record["Attention"].actions()] == [
        "Live (until Stop recording)…", "Step through channels…", "Step through layers…", "Step through heads…"]
    # each view's context menu: the same five entries, named for the dock
    assert [a.text() for a in w.feature_view.actions()][-5:] == [
        "Export Feature maps as PNG 1x…", "Export Feature maps as PNG 2x…", "Export Feature maps as PNG 3x…",
        "Export Feature maps as SVG…", "Copy Feature maps to the clipboard"]
    file_menu.aboutToShow.emit()
    assert not entries["S&top recording"].isEnabled()


def test_export_all_refuses_a_file_for_its_folder(shapes, tmp_path):
    from vizapp.core.errors import StorageError
    from widgets.export import export_all

    target = tmp_path / "figs"
    target.write_text("a file")
    with pytest.raises(StorageError, match="is a file; choose a folder"):
        export_all(shapes, target)


def test_the_dialogs_save_where_asked_and_add_the_chosen_suffix(shapes, qtbot, tmp_path, monkeypatch):
    from widgets import export

    w = shapes
    answers = iter([(str(tmp_path / "maps"), "PNG images (*.png)"), (str(tmp_path / "live"), "MP4 video (*.mp4)")])
    monkeypatch.setattr(export.QFileDialog, "getSaveFileName", lambda *a, **k: next(answers))
    w.figures.png_dialog("features", 3)
    view = export.content(w, "features")
    assert _size(tmp_path / "maps.png") == (3 * view.width(), 3 * view.height())
    assert w.message.text() == f"saved {tmp_path / 'maps.png'}"
    w.figures.record_dialog("predictions", None)  # live, until Stop recording
    assert w.recording.recording and w.recording.path == tmp_path / "live.mp4"
    w.recording.stop()
    qtbot.waitUntil(lambda: (tmp_path / "live.mp4").exists() and w.runner.lane_idle("record"), timeout=60_000)


def test_a_second_recording_does_not_cancel_the_first_ones_encoding(shapes, qtbot, tmp_path):
    rec = shapes.recording
    for name in ("one.gif", "two.gif"):
        rec.start_live("predictions", tmp_path / name, fps=10)
        rec.stop()  # (its encoding is queued; the next recording starts at once)
    qtbot.waitUntil(lambda: shapes.runner.lane_idle("record"), timeout=60_000)
    assert (tmp_path / "one.gif").exists() and (tmp_path / "two.gif").exists()

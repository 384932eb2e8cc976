"""pytest-qt tests of the window and each view, offscreen, against the real default model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QImage

from vizapp.inputs.images import sample_images
from vizapp.probing.mosaic import channel_order

pytestmark = pytest.mark.gui

SAMPLES = {s.name: str(s.path) for s in sample_images()}


def wait_ready(qtbot, w, timeout=60_000):
    qtbot.waitUntil(lambda: w.ready and w.runner.idle(), timeout=timeout)


def wait_layer(qtbot, w, layer, timeout=30_000):
    qtbot.waitUntil(
        lambda: w.runner.idle() and w.feature_view.analysis is not None and w.feature_view.analysis.layer == layer,
        timeout=timeout,
    )


def test_default_window_shows_the_offline_model_on_a_cat(started):
    w = started
    s = w.session
    assert s.model.name == "efficientnet_lite0" and s.model.trained
    assert s.image.name == "chelsea.png"
    # Predictions: a cat first, probabilities descending.
    preds = w.predictions_view.predictions()
    assert preds[0].label in {"tiger cat", "Egyptian cat", "tabby"}
    assert [p.prob for p in preds] == sorted((p.prob for p in preds), reverse=True)
    # The layer tree lists every module with output shapes.
    item = w.model_view.item_for("conv_stem")
    assert item is not None and item.text(2) == "32×112×112" and item.text(3) == "864"
    # The default layer is the stem; one mosaic tile per channel.
    assert s.layer == "conv_stem"
    a = w.feature_view.analysis
    assert a.maps.shape == (32, 112, 112)
    m = w.feature_view.mosaic
    assert len(m.order) == 32 and m.rows * m.cols >= 32
    assert w.feature_view.image.image.shape == m.image.shape
    # The model's-eye input is shown; the gallery has the offline samples.
    assert not w.image_view.model_input.pixmap().isNull()
    assert w.image_view.gallery.count() >= 6
    # Kernels of the stem: 32 RGB filters.
    k = w.kernels_view.kernels
    assert k.layer == "conv_stem" and k.mode == "rgb" and len(k.mosaic.order) == 32


def test_selecting_a_layer_in_the_tree_drives_the_views(qtbot, started):
    w = started
    w.model_view.tree.setCurrentItem(w.model_view.item_for("conv_head"))
    wait_layer(qtbot, w, "conv_head")
    assert w.session.layer == "conv_head"
    assert w.feature_view.analysis.maps.shape == (1280, 7, 7)
    assert len(w.feature_view.mosaic.order) == 1280
    assert w.kernels_view.kernels.layer == "conv_head"
    # conv_head is 1x1: the kernels view shows the out x in weight matrix.
    assert w.kernels_view.kernels.mode == "grid"


def test_feature_maps_equal_the_engine_and_sorting_matches_brute_force(qtbot, started):
    from vizapp.probing.inference import run

    w = started
    w.session.select_layer("blocks.2")
    wait_layer(qtbot, w, "blocks.2")
    expected = run(w.session.model, w.session.image.to_pil(), ["blocks.2"]).activations["blocks.2"]
    np.testing.assert_allclose(w.feature_view.analysis.maps, expected, rtol=1e-5, atol=1e-6)
    w.feature_view.sort.setCurrentIndex(w.feature_view.sort.findData("max"))
    w.feature_view._options_changed()
    np.testing.assert_array_equal(w.feature_view.mosaic.order, channel_order(expected, "max"))
    assert w.feature_view.mosaic.order[0] == int(np.argmax(expected.reshape(40, -1).max(axis=1)))


def test_clicking_a_tile_enlarges_that_channel_over_the_input(qtbot, started):
    w = started
    fv = w.feature_view
    m = fv.mosaic
    x, y = m.tile_origin(5)
    scene_pos = fv.view.mapViewToScene(QPointF(x + m.tile_w / 2, y + m.tile_h / 2))
    view_pos = fv.canvas.mapFromScene(scene_pos)
    qtbot.mouseClick(fv.canvas.viewport(), Qt.LeftButton, pos=view_pos)
    qtbot.waitUntil(lambda: w.session.channel == int(m.order[5]), timeout=5000)
    overlay = fv.overlay.image
    np.testing.assert_array_equal(overlay, fv.analysis.maps[w.session.channel])
    rect = fv.overlay.mapRectToParent(fv.overlay.boundingRect())
    assert (round(rect.width()), round(rect.height())) == (224, 224)  # stretched over the input
    assert fv.marker.isVisible()


def test_keys_step_channels_and_layers(qtbot, started):
    w = started
    fv = w.feature_view
    fv.setFocus()
    qtbot.keyClick(fv, Qt.Key_Right)
    assert w.session.channel == int(fv.mosaic.order[0])
    qtbot.keyClick(fv, Qt.Key_Right)
    assert w.session.channel == int(fv.mosaic.order[1])
    qtbot.keyClick(fv, Qt.Key_Left)
    assert w.session.channel == int(fv.mosaic.order[0])
    steps = w.session.steppable_layers()
    qtbot.keyClick(fv, Qt.Key_Down)
    nxt = steps[steps.index("conv_stem") + 1]
    assert w.session.layer == nxt
    wait_layer(qtbot, w, nxt)
    assert fv.analysis.layer == nxt


def test_kernel_hover_reads_the_raw_weight(qtbot, started):
    w = started
    kv = w.kernels_view
    m = kv.kernels.mosaic
    x, y = m.tile_origin(3)
    scene_pos = kv.view.mapViewToScene(QPointF(x + 1.5, y + 0.5))
    kv._mouse_moved((scene_pos,))
    weight = dict(w.session.model.module.named_modules())["conv_stem"].weight.detach()
    expected = float(weight[3, :, 0, 1].abs().max())
    assert "filter 3" in kv.readout.text() and f"{expected:+.4f}" in kv.readout.text()


def test_every_view_exports_a_png(tmp_path, started):
    w = started
    for key in w.docks:
        path = w.export_view(key, tmp_path / f"{key}.png")
        image = QImage(str(path))
        widget = w.docks[key].widget()
        if hasattr(widget, "widgetResizable"):  # a scrolling dock exports all of its content
            widget = widget.widget()
        assert not image.isNull()
        assert image.width() == 2 * widget.width() and image.height() == 2 * widget.height()
    whole = QImage(str(w.export_view(None, tmp_path / "window")))
    assert whole.width() == w.width()


def test_layout_is_remembered_between_runs(make_window, settings_file):
    first = make_window(restore_layout=True, size=None)
    first.docks["kernels"].hide()
    first.docks["predictions"].setFloating(True)
    first.close()
    assert settings_file.exists()
    second = make_window(restore_layout=True, size=None)
    assert second.docks["kernels"].isHidden()
    assert second.docks["predictions"].isFloating()
    second.reset_layout()
    assert not second.docks["kernels"].isHidden() and not second.docks["predictions"].isFloating()


def test_bad_image_gives_a_message_and_keeps_the_current_image(qtbot, tmp_path, started):
    w = started
    bad = tmp_path / "notes.png"
    bad.write_text("not a picture")
    before = w.session.image
    w.open_image(str(bad))
    qtbot.waitUntil(lambda: "notes.png" in w.last_error, timeout=10_000)
    assert "not an image" in w.last_error
    assert w.session.image is before
    # A good image afterwards still works.
    w.open_image(SAMPLES["coffee"])
    qtbot.waitUntil(lambda: w.session.image.name == "coffee.png" and w.runner.idle(), timeout=20_000)
    qtbot.waitUntil(lambda: w.predictions_view.predictions()[0].label in {"espresso", "cup"}, timeout=20_000)


def test_open_a_user_state_dict_and_reject_a_wrong_one(qtbot, tmp_path, started):
    import torchvision

    w = started
    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None, num_classes=10)
    good = tmp_path / "mine.pth"
    torch.save(net.state_dict(), good)
    w.open_model(str(good), "resnet18")
    qtbot.waitUntil(lambda: w.session.model.name == "mine.pth" and w.ready and w.runner.idle(), timeout=30_000)
    assert w.model_view.item_for("layer4") is not None
    assert len(w.predictions_view.predictions()) == 10
    assert w.kernels_view.kernels.layer == "conv1"
    w.open_model(str(good), "resnet34")
    qtbot.waitUntil(lambda: "does not fit" in w.last_error, timeout=30_000)
    assert "missing keys" in w.last_error
    assert w.session.model.name == "mine.pth"  # the loaded model stays


def test_dropped_image_bytes_open(qtbot, started):
    import io

    w = started
    buf = io.BytesIO()
    Image.fromarray(np.full((40, 60, 3), 200, np.uint8)).save(buf, "PNG")
    w.image_view.sigImageRequested.emit(buf.getvalue())
    qtbot.waitUntil(lambda: w.session.image.name == "pasted image", timeout=10_000)
    assert w.session.image.pixels.shape == (40, 60, 3)


def test_screenshot_command_writes_the_window(tmp_path, qapp, settings_file):
    from main import main

    out = tmp_path / "shot.png"
    rc = main(["screenshot", "--out", str(out), "--layer", "blocks.1", "--size", "1200x800"])
    assert rc == 0
    image = QImage(str(out))
    assert (image.width(), image.height()) == (1200, 800)
    # Not a blank window: many distinct colours.
    arr = np.frombuffer(image.convertToFormat(QImage.Format_RGB888).constBits(), np.uint8)
    assert len(np.unique(arr[: arr.size - arr.size % 3].reshape(-1, 3), axis=0)) > 500


def test_download_reports_progress_and_opens_the_model(qtbot, window, tmp_path, monkeypatch):
    import hashlib

    import torchvision

    from models import REGISTRY, ModelSpec, register

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    torch.manual_seed(1)
    net = torchvision.models.resnet18(weights=None).eval()
    staging = tmp_path / "mirror"
    staging.mkdir()
    raw = staging / "raw.pth"
    torch.save(net.state_dict(), raw)
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()[:8]
    served = raw.rename(staging / f"resnet18-{digest}.pth")
    register(ModelSpec("test_download_resnet18", "ResNet-18 (test mirror)", "cnn", "torchvision", "resnet18",
                       "ResNet18_Weights.IMAGENET1K_V1", url=served.as_uri()))
    seen = []
    window.runner.sigProgress.connect(lambda kind, done, total, text: seen.append((kind, done, total, text)))
    try:
        window.open_model("test_download_resnet18")
        qtbot.waitUntil(lambda: window.session.model is not None
                        and window.session.model.name == "test_download_resnet18", timeout=60_000)
    finally:
        REGISTRY.pop("test_download_resnet18", None)
    sized = [s for s in seen if s[0] == "model" and s[2] > 0]
    assert sized and sized[-1][1] == sized[-1][2] == served.stat().st_size
    assert all(a[1] <= b[1] for a, b in zip(sized, sized[1:], strict=False))
    assert (tmp_path / "torch" / "hub" / "checkpoints" / served.name).is_file()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(window.session.model.module(x), net(x))


def test_kernel_options_change_the_layout(qtbot, started):
    w = started
    kv = w.kernels_view
    kv.mode.setCurrentIndex(kv.mode.findData("mean"))
    kv.mode.activated.emit(kv.mode.currentIndex())
    qtbot.waitUntil(lambda: kv.kernels.mode == "mean" and w.runner.idle(), timeout=10_000)
    weight = dict(w.session.model.module.named_modules())["conv_stem"].weight.detach().numpy()
    assert len(kv.kernels.mosaic.order) == 32 and kv.kernels.mosaic.tile_h == 3
    x, y = kv.kernels.mosaic.tile_origin(4)
    assert kv.kernels.value_at(x + 2, y + 1)[-1] == pytest.approx(float(weight[4, :, 1, 2].mean()), rel=1e-5)
    kv.norm.setCurrentIndex(kv.norm.findData("layer"))
    kv.norm.activated.emit(kv.norm.currentIndex())
    qtbot.waitUntil(lambda: kv.kernels.norm == "layer" and w.runner.idle(), timeout=10_000)


def test_ctrl_v_pastes_an_image(qtbot, started):
    from PySide6.QtGui import QGuiApplication

    w = started
    image = QImage(64, 48, QImage.Format_RGB888)
    image.fill(Qt.red)
    QGuiApplication.clipboard().setImage(image)
    w.model_view.tree.setFocus()
    qtbot.keyClick(w.model_view.tree, Qt.Key_V, Qt.ControlModifier)
    qtbot.waitUntil(lambda: w.session.image.name == "pasted image", timeout=10_000)
    assert w.session.image.pixels.shape == (48, 64, 3)
    assert tuple(w.session.image.pixels[0, 0]) == (255, 0, 0)


def test_screenshot_leaves_the_saved_layout_alone(tmp_path, qapp, settings_file):
    from main import main

    settings_file.write_text("[window]\nmarker=kept\n")
    before = settings_file.read_text()
    assert main(["screenshot", "--out", str(tmp_path / "s.png"), "--size", "900x600"]) == 0
    assert settings_file.read_text() == before


def test_device_errors_keep_the_model_where_it_is(qtbot, started):
    w = started
    w.set_device("cuda:7")
    qtbot.waitUntil(lambda: "not available" in w.last_error, timeout=10_000)
    assert w.session.model.device == "cpu"
    assert w.model_view.device.currentText() == "cpu"


def test_failed_model_load_leaves_the_picker_on_the_open_model(qtbot, started):
    w = started
    lite1 = w.model_view.picker.findData("efficientnet_lite1")
    w.model_view.picker.setCurrentIndex(lite1)
    w.open_model(str(w.session.model.source), "resnet18")  # Lite0's weights do not fit ResNet-18
    qtbot.waitUntil(lambda: "does not fit" in w.last_error, timeout=20_000)
    assert w.model_view.picker.currentData() == "efficientnet_lite0"
    assert w.session.model.name == "efficientnet_lite0"


def test_torchscript_model_clears_the_kernels_view(qtbot, tmp_path, started):
    import torchvision

    w = started
    torch.manual_seed(0)
    scripted = torch.jit.script(torchvision.models.resnet18(weights=None).eval())
    path = tmp_path / "r18.ts"
    scripted.save(str(path))
    w.open_model(str(path), trust=True)  # TorchScript is code: it needs trust
    qtbot.waitUntil(lambda: w.session.model.scripted and w.ready and w.runner.idle(), timeout=30_000)
    assert w.kernels_view.kernels is None and "TorchScript" in w.kernels_view.title.text()
    assert w.predictions_view.predictions()  # it still predicts
    assert w.feature_view.mosaic is None


def test_sort_changed_while_the_job_ran_is_honoured(qtbot, started):
    from vizapp.analysis import analyse_image

    w = started
    stale = analyse_image(w.session.model, w.session.image, w.session.layer, "index", "channel")
    w.feature_view.sort.setCurrentIndex(w.feature_view.sort.findData("max"))
    w.feature_view.set_analysis(stale)
    np.testing.assert_array_equal(w.feature_view.mosaic.order, channel_order(stale.maps, "max"))


def test_top_patches_follow_the_channel_and_open_their_image(qtbot, started, tmp_path, monkeypatch):
    monkeypatch.setenv("VIZAPP_CACHE", str(tmp_path / "cache"))
    w = started
    assert w.session.layer == "conv_stem"
    w.set_collection("samples")
    qtbot.waitUntil(lambda: w.session.index is not None and w.runner.idle(), timeout=120_000)
    index = w.session.index
    assert index.layers == ["conv_stem"] and len(index.paths) >= 6 and index.skipped == []
    assert index.manifest["layers"]["conv_stem"]["field"] == "analytic"
    # The overview has one tile per channel; the grid follows the selected channel.
    pv = w.patches_view
    qtbot.waitUntil(lambda: pv.channel_count() == 32, timeout=30_000)
    w.session.select_channel(7)
    qtbot.waitUntil(lambda: w.runner.idle() and "channel 7" in pv.title.text(), timeout=30_000)
    expected = index.top_patches("conv_stem", 7)
    assert len(expected) == 9
    assert pv.grid.channel == 7 and pv.grid.patches == expected
    assert all(t.isVisibleTo(pv) for t in pv.thumbs[: len(expected)])
    # Clicking a patch opens its image everywhere with the unit's box drawn on it.
    best = expected[0]
    pv.sigPatchRequested.emit(best)
    qtbot.waitUntil(lambda: w.session.image.path == best.image and w.runner.idle(), timeout=30_000)
    assert w.image_view.box() == best.box
    h, wd = w.session.image.pixels.shape[:2]
    x0, y0, x1, y1 = best.box
    assert 0 <= x0 < x1 <= wd and 0 <= y0 < y1 <= h


def test_a_folder_collection_counts_unreadable_files(qtbot, started, tmp_path, monkeypatch):
    monkeypatch.setenv("VIZAPP_CACHE", str(tmp_path / "cache"))
    w = started
    folder = tmp_path / "photos"
    for label in ("cats", "cups"):
        (folder / label).mkdir(parents=True)
    Image.open(SAMPLES["chelsea"]).save(folder / "cats" / "a.png")
    Image.open(SAMPLES["coffee"]).save(folder / "cups" / "b.png")
    (folder / "cups" / "broken.jpg").write_text("not a jpeg")
    w.set_collection(str(folder))
    qtbot.waitUntil(lambda: w.session.index is not None and w.runner.idle(), timeout=120_000)
    assert w.session.collection.labels == ["cats", "cups", "cups"]
    assert w.session.index.skipped == [2]
    assert "unreadable" in w.patches_view.status.text()
    empty = tmp_path / "empty"
    empty.mkdir()
    w.set_collection(str(empty))
    qtbot.waitUntil(lambda: "no image files" in w.last_error, timeout=10_000)
    assert w.session.collection.name == "photos"  # the previous collection stays


def test_embedding_of_the_collection(qtbot, started, tmp_path, monkeypatch):
    from vizapp.collection.embedding import nearest

    monkeypatch.setenv("VIZAPP_CACHE", str(tmp_path / "cache"))
    w = started
    w.set_collection("samples")
    ev = w.embedding_view
    qtbot.waitUntil(lambda: ev.embedding is not None and w.runner.idle(), timeout=120_000)
    e = ev.embedding
    index = w.session.index
    assert len(e) == len(index.paths) and e.method == "pca"
    np.testing.assert_allclose(e.features, np.asarray(index.features()), rtol=1e-6)
    # The classifier turns the pooled features into predictions: chelsea's is a cat.
    assert e.predicted[e.paths.index(SAMPLES["chelsea"])] in {"tiger cat", "Egyptian cat", "tabby"}
    # Neighbours of a point: the brute-force cosine nearest, with thumbnails.
    ev.sigNeighboursRequested.emit(0)
    qtbot.waitUntil(lambda: len([b for b in ev.neighbour_buttons if b.isVisibleTo(ev)]) == 8, timeout=20_000)
    expected, _ = nearest(e.features, 0, k=8)
    assert [b.toolTip() for b in ev.neighbour_buttons] == [e.paths[int(i)] for i in expected]
    # Another layout method recomputes; clicking a point opens its image.
    ev.method.setCurrentIndex(ev.method.findData("tsne"))
    ev.sigMethodChanged.emit("tsne")
    qtbot.waitUntil(lambda: ev.embedding.method == "tsne" and w.runner.idle(), timeout=120_000)
    ev.sigImageRequested.emit(e.paths[1])
    qtbot.waitUntil(lambda: w.session.image.path == e.paths[1], timeout=20_000)


# --- issue 9, item 15: suggest what works here; every message whole ----------------------


def _fits(label) -> bool:
    """Whether the label shows all of its text: wrapped into its width, within its height."""
    from PySide6.QtCore import QRect

    room = label.contentsRect()
    needed = label.fontMetrics().boundingRect(QRect(0, 0, room.width(), 100_000),
                                              int(Qt.TextWordWrap | Qt.AlignLeft), label.text())
    return label.wordWrap() and needed.width() <= room.width() and needed.height() <= room.height()


def test_a_long_error_is_shown_whole_and_the_attention_dock_suggests_vit_digits_first(
        qtbot, window, torch_home, monkeypatch):
    import urllib.error
    import urllib.request

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network here (blocked by the test)")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    w = window
    w.start()
    wait_ready(qtbot, w)
    # On a CNN the Attention dock names the shipped, trained ViT first and marks downloads.
    w.docks["attention"].raise_()
    qtbot.waitUntil(lambda: w.runner.idle() and "no self-attention" in w.attention_view.message.text(), timeout=60_000)
    text = w.attention_view.message.text()
    names = ["vit_digits", "vit_tiny_untrained", "vit_b_16", "deit_tiny"]
    at = [text.index(n) for n in names]
    assert at == sorted(at), text  # trained offline, untrained offline, then downloads
    assert "vit_b_16 (download)" in text and "vit_digits (" not in text
    assert "vit_tiny_untrained (untrained)" in text
    # The waiting message (before any result) is computed from the same catalog.
    from widgets.attention_view import AttentionView

    fresh = AttentionView()
    qtbot.addWidget(fresh)
    fresh.set_suggestion("vit_digits, vit_b_16 (download)")
    assert fresh.message.text().endswith("Try vit_digits, vit_b_16 (download)")
    # A download model offline: the whole message, including what to do, is on screen.
    w.docks["features"].raise_()
    w.open_model("vit_b_16")
    qtbot.waitUntil(lambda: "could not be downloaded" in w.last_error, timeout=30_000)
    message = w.last_error
    assert "On an offline machine, copy" in message and message.endswith("--model PATH --arch NAME.")
    assert w.session.model.name == "efficientnet_lite0"
    qtbot.waitUntil(lambda: _fits(w.message), timeout=5_000)  # the status bar grows to the wrapped text
    assert w.message.text() == message and w.message.isVisible() and w.message.toolTip() == message
    assert w.message.fontMetrics().horizontalAdvance(message) > w.message.width()  # it did need to wrap
    # The ✕ beside an error dismisses it.
    assert w.dismiss_button.isVisible()
    qtbot.mouseClick(w.dismiss_button, Qt.LeftButton)
    assert w.message.text() == "" and not w.dismiss_button.isVisible()


# --- issue 9, item 16: a model that ships its own samples shows one of them ------------------


def test_switching_to_the_shapes_model_shows_a_shape_unless_the_box_is_off(qtbot, window, make_window):
    from pathlib import Path

    from vizapp.inputs.images import lab_samples

    lab = {s.name: str(s.path) for s in lab_samples()}
    w = window
    w.start(model="vit_digits", image=lab["digit3"])  # an image given at start stays
    qtbot.waitUntil(lambda: w.session.model is not None and w.session.model.name == "vit_digits"
                    and w.ready and w.runner.idle(), timeout=60_000)
    assert w.session.image.name == "digit3.png"
    assert w.predictions_view.predictions()[0].label == "3"
    qtbot.waitUntil(lambda: w.image_view.gallery.count() >= 18, timeout=30_000)
    assert w.image_view.gallery_paths()[:10] == [lab[f"digit{i}"] for i in range(10)]  # its own first
    # The shapes model: the digit gives way to its first class's held-out sample.
    assert w.image_view.switch_to_own.isChecked()
    w.open_model("tinyvgg_shapes")
    qtbot.waitUntil(lambda: w.session.model.name == "tinyvgg_shapes" and w.ready and w.runner.idle(), timeout=60_000)
    image = w.session.image
    assert image.path == lab["circle"]
    top = w.predictions_view.predictions()[0]
    assert top.label == Path(image.path).stem == "circle"
    classes = w.session.model.class_names
    assert w.image_view.gallery_paths()[: len(classes)] == [lab[c] for c in classes]
    # Another of its own samples stays when the model is opened again.
    w.open_image(lab["star"])
    qtbot.waitUntil(lambda: w.session.image.name == "star.png" and w.ready and w.runner.idle(), timeout=30_000)
    w.open_model("tinyvgg_shapes")
    qtbot.waitUntil(lambda: w.ready and w.runner.idle() and w.session.model.name == "tinyvgg_shapes", timeout=60_000)
    assert w.session.image.name == "star.png" and w.predictions_view.predictions()[0].label == "star"
    # The box off (the user's click, remembered): the digits model keeps the star.
    qtbot.mouseClick(w.image_view.switch_to_own, Qt.LeftButton)
    assert not w.image_view.switch_to_own.isChecked()
    w.open_model("vit_digits")
    qtbot.waitUntil(lambda: w.session.model.name == "vit_digits" and w.ready and w.runner.idle(), timeout=60_000)
    assert w.session.image.name == "star.png"
    assert w.image_view.gallery_paths()[0] == lab["digit0"]  # its samples still come first
    again = make_window(size=None, show=False)
    assert not again.image_view.switch_to_own.isChecked()
    again.close()
    # Ticking it again switches at once.
    qtbot.mouseClick(w.image_view.switch_to_own, Qt.LeftButton)
    qtbot.waitUntil(lambda: w.session.image.name == "digit0.png" and w.ready and w.runner.idle(), timeout=30_000)
    assert w.predictions_view.predictions()[0].label == "0"

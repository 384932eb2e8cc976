"""Scenes and decks in the window: save and reopen, step a deck, a scene with a missing file,
the deck editor, and ``vizapp screenshot --scene``."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtGui import QImage

from vizapp.lecture import Deck, Scene, read_deck, read_scene, write_deck, write_scene
from vizapp.lecture.scene import image_path

pytestmark = pytest.mark.gui


def sample(name: str) -> str:
    return str(image_path(name))


def settle(qtbot, w, timeout=60_000) -> None:
    """Until the scene is on screen, the analysis in and nothing left to run."""
    qtbot.waitUntil(lambda: w.lecture.settled() and w.ready and w.runner.idle(), timeout=timeout)


def pixels(w, path) -> np.ndarray:
    """The window's picture once it has stopped changing (wrapped labels at their lines)."""
    from PySide6.QtWidgets import QApplication

    from widgets.common import WrappingLabel

    w.clear_message()  # the status bar's messages differ ("saved ..."): a blank bar, laid out again

    def grab() -> np.ndarray:
        for _ in range(3):
            for label in w.findChildren(WrappingLabel):
                label._reserve()  # its lines at its width now, whatever widths it went through
            QApplication.processEvents()
        image = QImage(str(w.export_view(None, path))).convertToFormat(QImage.Format_RGB888)
        arr = np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), image.bytesPerLine())
        return arr[:, : image.width() * 3].copy()

    picture = grab()
    for _ in range(20):  # a busy machine delivers the last redraws late
        again = grab()
        if np.array_equal(again, picture):
            break
        picture = again
    return picture


def state(w) -> dict:
    s = w.session
    return {"model": s.model.name, "image": s.image.name, "layer": s.layer, "channel": s.channel,
            "target": s.target, "dock": w.lecture.capture().dock,
            "features": w.feature_view.view_options(), "kernels": w.kernels_view.view_options(),
            "attribution": w.attribution_view.view_options()}


@pytest.fixture
def shapes(make_window):
    """The window on the shapes TinyVGG (small: quick to open and to analyse) and its star."""
    return make_window("tinyvgg_shapes", sample("star"), device="cpu")


def test_a_saved_scene_reopens_to_the_same_picture(qtbot, shapes, tmp_path):
    w = shapes
    w.session.select_layer("conv1_2")
    w.feature_view.set_view_options({"sort": "max", "norm": "layer", "overlay": 80})
    w.kernels_view.set_view_options({"mode": "grid"})
    w.attribution_view.set_view_options({"opacity": 30, "colormap": "viridis", "heat_only": True})
    w.open_image(sample("circle"))
    qtbot.waitUntil(lambda: w.session.image.name == "circle.png" and w.runner.idle() and w.ready, timeout=30_000)
    w.session.select_channel(4)
    w.session.set_target(2)
    w.docks["embedding"].raise_()
    qtbot.waitUntil(w.runner.idle, timeout=30_000)
    before = state(w)
    assert before["dock"] == "embedding" and before["channel"] == 4
    path = w.lecture.save_scene(tmp_path / "one.vizscene")
    # The scene's picture: as it opens (the layout restored, the views drawn for it). Before
    # saving, a wrapped label may still hold a line's height from an earlier, narrower dock.
    w.lecture.open_path(path)
    settle(qtbot, w)
    assert state(w) == before
    picture = pixels(w, tmp_path / "before.png")
    saved = read_scene(path)
    assert (saved.model, saved.image, saved.layer, saved.channel, saved.target) == (
        "tinyvgg_shapes", "circle", "conv1_2", 4, 2)
    assert saved.views["features"] == {"sort": "max", "norm": "layer", "overlay": 80}

    # Change everything the scene holds, then open it.
    w.open_image(sample("star"))
    w.session.select_layer("conv2_1")
    w.feature_view.set_view_options({"sort": "index", "norm": "channel", "overlay": 10})
    w.kernels_view.set_view_options({"mode": "auto"})
    w.attribution_view.set_view_options({"opacity": 90, "colormap": "inferno", "heat_only": False})
    w.docks["features"].raise_()
    qtbot.waitUntil(lambda: w.session.image.name == "star.png" and w.runner.idle() and w.ready, timeout=30_000)
    assert state(w) != before
    w.lecture.open_path(path)
    settle(qtbot, w)
    assert state(w) == before
    after = pixels(w, tmp_path / "after.png")
    assert after.shape == picture.shape
    assert np.mean(after != picture) < 0.001  # the same picture (a caret or cursor may differ)


def test_a_deck_steps_forward_and_back_with_the_next_model_prepared(qtbot, shapes, tmp_path):
    w = shapes
    assert w.step_scene(1) is False  # no deck open
    deck = Deck("week 1", [
        Scene(model="tinyvgg_shapes", image="star", layer="conv1_1", channel=1, title="edges"),
        Scene(model="tinyvgg_shapes", image="ring", layer="conv2_2", channel=7, dock="attribution"),
        Scene(model="vit_digits", image="digit3", layer="blocks.0", title="a ViT"),
    ])
    write_deck(tmp_path / "week1.vizdeck", deck)
    w.lecture.open_path(tmp_path / "week1.vizdeck")
    settle(qtbot, w)

    def where():
        s = w.session
        return s.model.name, s.image.name, s.layer, s.channel

    assert w.lecture.position == 0 and where() == ("tinyvgg_shapes", "star.png", "conv1_1", 1)
    shapes_model = w.session.model
    assert w.step_scene(1) is True
    settle(qtbot, w)
    assert where() == ("tinyvgg_shapes", "ring.png", "conv2_2", 7)
    assert w.lecture.capture().dock == "attribution"
    # Showing scene 2 prepared scene 3's model in the background.
    qtbot.waitUntil(lambda: ("vit_digits", "") in w.lecture.cached_models(), timeout=60_000)
    prepared = w.lecture._models[("vit_digits", "")].model
    assert w.step_scene(1) is True
    settle(qtbot, w)
    assert where() == ("vit_digits", "digit3.png", "blocks.0", None)
    assert w.session.model is prepared  # not loaded again
    assert w.step_scene(1) is True and w.lecture.position == 2  # the last scene stays
    assert w.step_scene(-1) is True
    settle(qtbot, w)
    assert where() == ("tinyvgg_shapes", "ring.png", "conv2_2", 7)
    assert w.session.model is shapes_model  # from the deck's cache
    assert w.step_scene(-1) is True
    settle(qtbot, w)
    assert where() == ("tinyvgg_shapes", "star.png", "conv1_1", 1)


def test_a_scene_with_a_missing_image_loads_the_rest_and_names_it(qtbot, shapes, tmp_path):
    w = shapes
    gone = tmp_path / "pictures" / "gone.png"
    write_scene(tmp_path / "s.vizscene", Scene(model="tinyvgg_shapes", image=str(gone), layer="conv2_1", channel=3))
    w.lecture.open_path(tmp_path / "s.vizscene")
    settle(qtbot, w)
    assert (w.session.layer, w.session.channel, w.session.image.name) == ("conv2_1", 3, "star.png")
    assert w.lecture.missing == [f"image {gone}"]
    assert str(gone) in w.message.text() and "the rest of the scene is shown" in w.message.text()


def test_a_scene_with_a_missing_model_file_keeps_the_model_and_names_it(qtbot, shapes, tmp_path):
    w = shapes
    gone = tmp_path / "nets" / "mine.pt"
    write_scene(tmp_path / "s.vizscene", Scene(model=str(gone), image="ring", layer="conv1_2", channel=99))
    w.lecture.open_path(tmp_path / "s.vizscene")
    settle(qtbot, w)
    assert (w.session.model.name, w.session.image.name, w.session.layer) == ("tinyvgg_shapes", "ring.png", "conv1_2")
    assert w.lecture.missing == [f"model file {gone}", "channel 99 (layer conv1_2 has 10)"]
    assert str(gone) in w.message.text()


def test_the_deck_editor_adds_reorders_renames_deletes_and_saves(qtbot, shapes, tmp_path, monkeypatch):
    from widgets.deck_editor import DeckEditor

    w = shapes
    editor = DeckEditor.show_for(w)
    editor.add_current()
    w.session.select_layer("conv2_2")
    editor.add_current()
    w.session.select_layer("conv1_1")
    editor.list.setCurrentRow(0)
    editor.add_current()  # after the selected one
    assert [s.layer for s in w.lecture.deck.scenes] == ["conv1_1", "conv1_1", "conv2_2"]
    assert editor.names() == ["scene 1", "scene 3", "scene 2"]
    editor.list.item(2).setText("deep")  # an edit in place renames
    editor.list.setCurrentRow(2)
    editor.move(-1)
    assert editor.names() == ["scene 1", "deep", "scene 3"] and editor.list.currentRow() == 1
    editor.list.setCurrentRow(0)
    editor.delete()
    assert editor.names() == ["deep", "scene 3"]
    editor.title.setText("Shapes")
    editor._title_edited("Shapes")
    target = tmp_path / "shapes.vizdeck"
    monkeypatch.setattr("widgets.deck_editor.QFileDialog.getSaveFileName", lambda *a, **k: (str(target), ""))
    editor._save_dialog()
    saved = read_deck(target)
    assert saved.title == "Shapes" and saved.names() == ["deep", "scene 3"]
    assert [s.layer for s in saved.scenes] == ["conv2_2", "conv1_1"]


def test_screenshot_renders_a_scene(capsys, qapp, settings_file, tmp_path):
    from PIL import Image

    from main import main

    scene = tmp_path / "s.vizscene"
    assert main(["scene", "--out", str(scene), "--model", "tinyvgg_shapes", "--image", "ring",
                 "--layer", "conv1_2", "--channel", "5", "--dock", "kernels"]) == 0
    status = main(["screenshot", "--scene", str(scene), "--device", "cpu", "--size", "1280x720",
                   "--out", str(tmp_path / "s.png")])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert out.endswith(f"saved {tmp_path / 's.png'} (1280x720)\n")
    with Image.open(tmp_path / "s.png") as image:
        assert image.size == (1280, 720)


def test_a_scene_never_grants_trust(qtbot, shapes, tmp_path):
    """A scene naming a TorchScript file (even with "trust": true written in it) is refused like
    the file opened by hand; the rest of the scene is shown and nothing in the file runs."""
    import json
    import warnings

    import torch
    from _evil import Evil

    marker = tmp_path / "written_by_the_model_file"
    model = tmp_path / "scripted.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(Evil(str(marker))), str(model))
    (tmp_path / "s.vizscene").write_text(json.dumps(
        {"vizscene": 1, "model": "scripted.pt", "trust": True, "image": "ring", "layer": "conv1_2"}))
    w = shapes
    assert read_scene(tmp_path / "s.vizscene").model == str(model)
    w.lecture.open_path(tmp_path / "s.vizscene")
    settle(qtbot, w)
    assert w.last_error.startswith(f"{model} is a TorchScript archive") and "I trust this file" in w.last_error
    assert not marker.exists()
    assert (w.session.model.name, w.session.image.name, w.session.layer) == ("tinyvgg_shapes", "ring.png", "conv1_2")
    assert w.lecture.missing == [f"model {model} ({w.last_error})"]
    assert w.message.text().startswith(f"s.vizscene: missing model {model} ({model} is a TorchScript archive")


def test_the_deck_editor_shows_a_scene(qtbot, shapes):
    from widgets.deck_editor import DeckEditor

    w = shapes
    editor = DeckEditor.show_for(w)
    w.session.select_layer("conv2_1")
    editor.add_current()
    w.session.select_layer("conv1_1")
    qtbot.waitUntil(lambda: w.runner.idle() and w.ready, timeout=30_000)
    editor.list.setCurrentRow(0)
    editor.show_selected()
    settle(qtbot, w)
    assert w.session.layer == "conv2_1" and w.lecture.position == 0
    editor.list.item(0).setText("  ")  # an empty name falls back to the scene's number
    assert w.lecture.deck.scenes[0].title == "scene 1" and editor.names() == ["scene 1"]


def test_the_file_menu_has_the_scene_entries_and_saves_a_scene(window, tmp_path, monkeypatch):
    w = window
    actions = {a.text().replace("&", ""): a for a in w.file_menu.actions()}
    for text in ("Open scene…", "Save scene…", "Open deck…", "Open deck folder…", "Edit deck…"):
        assert text in actions, text
    assert actions["Next scene"].shortcut().toString() == "Ctrl+PgDown"
    assert actions["Previous scene"].shortcut().toString() == "Ctrl+PgUp"
    actions["Next scene"].trigger()  # no deck: a message, nothing else
    assert w.message.text().startswith("no deck is open")
    monkeypatch.setattr("widgets.deck_editor.QFileDialog.getSaveFileName",
                        lambda *a, **k: (str(tmp_path / "mine"), ""))
    actions["Save scene…"].trigger()
    scene = read_scene(tmp_path / "mine.vizscene")  # the suffix is added
    assert scene.title == "mine" and scene.model is None and scene.layout is not None


def test_attention_and_embedding_options_round_trip(window):
    w = window
    options = {"mode": "rollout", "layer": 3, "head": 1, "query": -1, "opacity": 25, "smooth": True,
               "fusion": "max", "discard": 40, "gradient": False}
    w.attention_view.set_view_options(options)
    assert w.attention_view.view_options() == options
    w.attention_view.set_view_options({"mode": "nonsense", "fusion": 7, "opacity": "x"})  # skipped
    assert w.attention_view.view_options() == options
    w.embedding_view.set_view_options({"method": "umap", "colour_by": "predicted"})
    assert w.embedding_view.view_options() == {"method": "umap", "colour_by": "predicted"}


def test_a_presenting_deck_steps_on_page_down_wherever_the_focus_is(qtbot, shapes, tmp_path):
    """A scene saved in presentation mode at 2x turns the mode on when opened; then the
    clicker's PgDn/PgUp step the deck's scenes (not layers), even with the gallery focused."""
    from PySide6.QtCore import Qt

    from widgets.theme import THEME

    w = shapes
    deck = Deck("week 2", [
        Scene(model="tinyvgg_shapes", image="star", layer="conv1_1", presentation=True, scale=2.0),
        Scene(model="tinyvgg_shapes", image="ring", layer="conv2_2", presentation=True, scale=2.0),
    ])
    write_deck(tmp_path / "week2.vizdeck", deck)
    try:
        w.lecture.open_path(tmp_path / "week2.vizdeck")
        settle(qtbot, w)
        assert w.presenting and THEME.scale == 2.0
        assert w.lecture.capture().presentation is True
        gallery = w.image_view.gallery
        gallery.setFocus()
        qtbot.keyClick(gallery, Qt.Key_PageDown)
        settle(qtbot, w)
        assert w.lecture.position == 1
        assert (w.session.image.name, w.session.layer) == ("ring.png", "conv2_2")
        qtbot.keyClick(gallery, Qt.Key_PageUp)
        settle(qtbot, w)
        assert w.lecture.position == 0
        assert (w.session.image.name, w.session.layer) == ("star.png", "conv1_1")
    finally:
        w.set_presentation(False)
        THEME.set_scale(1.0)
    assert not w.presenting

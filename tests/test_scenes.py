"""Scenes and decks in the engine (``vizapp.lecture``, no Qt) and ``vizapp scene`` on the command line."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from vizapp.lecture import (
    SCENE_VERSION,
    Deck,
    Scene,
    SceneError,
    read_deck,
    read_lecture,
    read_scene,
    write_deck,
    write_scene,
)
from vizapp.lecture.scene import image_path

LAYOUT = Scene.encode_layout(b"\x00\xffsome saveState bytes")


def full_scene(**changes) -> Scene:
    values = dict(model="efficientnet_lite0", image="chelsea", layer="blocks.1", channel=3, head=2, target=281,
                  dock="attention", views={"features": {"sort": "max", "overlay": 40}}, layout=LAYOUT,
                  presentation=True, scale=2.5, theme="light", title="edges")
    values.update(changes)
    return Scene(**values)


def test_a_scene_round_trips_every_field(tmp_path):
    scene = full_scene()
    path = write_scene(tmp_path / "a.vizscene", scene)
    assert read_scene(path) == scene
    data = json.loads(path.read_text())
    assert data["vizscene"] == SCENE_VERSION and data["class"] == 281 and "target" not in data
    assert "trust" not in data  # a scene never grants trust
    assert read_scene(path).layout_bytes() == b"\x00\xffsome saveState bytes"


def test_paths_inside_the_folder_are_relative_and_move_with_it(tmp_path):
    lecture = tmp_path / "lecture"
    (lecture / "pics").mkdir(parents=True)
    (lecture / "pics" / "cat.png").write_bytes(b"png")
    (lecture / "net.pt").write_bytes(b"pt")
    scene = full_scene(model=str(lecture / "net.pt"), arch="resnet18", image=str(lecture / "pics" / "cat.png"))
    write_scene(lecture / "s.vizscene", scene)
    data = json.loads((lecture / "s.vizscene").read_text())
    assert (data["model"], data["image"]) == ("net.pt", "pics/cat.png")
    moved = tmp_path / "moved"
    shutil.move(str(lecture), str(moved))
    back = read_scene(moved / "s.vizscene")
    assert back.model == str(moved / "net.pt") and back.image == str(moved / "pics" / "cat.png")
    assert back.arch == "resnet18"


def test_names_stay_names_and_outside_paths_stay_absolute(tmp_path):
    outside = tmp_path / "elsewhere" / "x.png"
    (tmp_path / "scenes").mkdir()
    write_scene(tmp_path / "scenes" / "a.vizscene", full_scene(image=str(outside)))
    data = json.loads((tmp_path / "scenes" / "a.vizscene").read_text())
    assert data["model"] == "efficientnet_lite0" and data["image"] == str(outside)
    back = read_scene(tmp_path / "scenes" / "a.vizscene")
    assert back.model == "efficientnet_lite0" and back.image == str(outside)
    # A relative path that does not exist (yet) is still a path, resolved against the scene's folder.
    (tmp_path / "scenes" / "b.vizscene").write_text(json.dumps({"vizscene": 1, "image": "gone/y.png"}))
    assert read_scene(tmp_path / "scenes" / "b.vizscene").image == str(tmp_path / "scenes" / "gone" / "y.png")


def test_image_path_finds_files_and_samples(tmp_path):
    assert image_path("chelsea").name.startswith("chelsea")
    assert image_path(str(tmp_path / "missing.png")) is None
    assert image_path("no-such-sample") is None


def test_a_minimal_scene_has_the_defaults(tmp_path):
    (tmp_path / "m.vizscene").write_text('{"vizscene": 1, "layer": "features.0"}')
    assert read_scene(tmp_path / "m.vizscene") == Scene(layer="features.0")


@pytest.mark.parametrize(("content", "expected"), [
    ('{"vizscene": 2}', "written by a newer vizapp (scene format 2; this one reads up to 1); update vizapp"),
    ('{"layer": "x"}', "field 'vizscene' must be the format version"),
    ('[1, 2]', "not a scene"),
    ('{"vizscene": 1, "channel": -1}', "field 'channel' must be an integer >= 0 or null (got -1)"),
    ('{"vizscene": 1, "class": "cat"}', "field 'class' must be an integer >= 0 or null"),
    ('{"vizscene": 1, "scale": 3.5}', "field 'scale' must be a number from 1 to 3 (got 3.5)"),
    ('{"vizscene": 1, "presentation": "yes"}', "field 'presentation' must be true or false"),
    ('{"vizscene": 1, "views": {"features": 3}}', "field 'views' must be an object of one object per dock"),
    ('{"vizscene": 1, "layout": "not base64!"}', "field 'layout' must be the window's layout as base64"),
    ('{"vizscene": 1, "model": ""}', "field 'model' must be a non-empty text or null"),
    ('{"vizscene": 1,', "not valid JSON (line 1, column"),
])
def test_a_bad_scene_is_one_line_naming_file_and_field(tmp_path, content, expected):
    path = tmp_path / "bad.vizscene"
    path.write_text(content)
    with pytest.raises(SceneError) as info:
        read_scene(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and expected in message and "\n" not in message


def test_a_missing_scene_file_is_named(tmp_path):
    with pytest.raises(SceneError, match="no such scene file"):
        read_scene(tmp_path / "none.vizscene")


def test_a_deck_file_takes_inline_scenes_and_scene_files(tmp_path):
    write_scene(tmp_path / "two.vizscene", full_scene(title="", layer="blocks.2"))
    deck_file = tmp_path / "talk.vizdeck"
    deck_file.write_text(json.dumps({"vizdeck": 1, "title": "Week 3", "scenes": [
        {"vizscene": 1, "model": "vit_digits", "title": "attention"}, "two.vizscene"]}))
    deck = read_deck(deck_file)
    assert deck.title == "Week 3" and deck.names() == ["attention", "two"]
    assert deck.scenes[0].model == "vit_digits" and deck.scenes[1].layer == "blocks.2"
    # Written back, scenes are inline and the deck reads the same.
    write_deck(tmp_path / "copy.vizdeck", deck)
    assert read_deck(tmp_path / "copy.vizdeck") == deck


def test_a_folder_is_a_deck_sorted_by_name(tmp_path):
    for name, layer in (("02-later", "b"), ("01-first", "a"), ("10-last", "c")):
        write_scene(tmp_path / f"{name}.vizscene", Scene(layer=layer))
    (tmp_path / "notes.txt").write_text("not a scene")
    deck = read_deck(tmp_path)
    assert [s.layer for s in deck.scenes] == ["a", "b", "c"]
    assert deck.names() == ["01-first", "02-later", "10-last"] and deck.title == tmp_path.name
    assert read_lecture(tmp_path) == deck
    assert read_lecture(tmp_path / "01-first.vizscene").scenes == [deck.scenes[0]]


@pytest.mark.parametrize(("content", "expected"), [
    ('{"vizdeck": 1, "scenes": []}', "field 'scenes' must be a list of one or more scenes"),
    ('{"vizdeck": 1, "scenes": [3]}', "scenes[0]: must be a scene object or a .vizscene path"),
    ('{"vizdeck": 1, "scenes": ["gone.vizscene"]}', "scenes[0]: "),
    ('{"vizdeck": 1, "scenes": [{"vizscene": 1, "head": 1.5}]}', "scenes[0]: field 'head' must be an integer"),
    ('{"vizdeck": 9, "scenes": [{}]}', "written by a newer vizapp (deck format 9"),
])
def test_a_bad_deck_names_the_file_and_scene(tmp_path, content, expected):
    path = tmp_path / "bad.vizdeck"
    path.write_text(content)
    with pytest.raises(SceneError) as info:
        read_deck(path)
    assert str(info.value).startswith(f"{path}: ") and expected in str(info.value)


def test_an_empty_folder_is_not_a_deck(tmp_path):
    with pytest.raises(SceneError, match="a folder without .vizscene files"):
        read_deck(tmp_path)


def test_a_deck_writes_through_the_atomic_writer(tmp_path, monkeypatch):
    import vizapp.core.files as files

    written = []
    real = files.write_text
    monkeypatch.setattr(files, "write_text", lambda p, t: written.append(Path(p)) or real(p, t))
    write_scene(tmp_path / "a.vizscene", Scene())
    write_deck(tmp_path / "d.vizdeck", Deck("t", [Scene()]))
    assert written == [tmp_path / "a.vizscene", tmp_path / "d.vizdeck"]


# --- vizapp scene ------------------------------------------------------------------
def cli(capsys, *argv) -> tuple[int, str, str]:
    import main

    status = main.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_scene_command_round_trip(capsys, tmp_path):
    out_file = tmp_path / "lecture" / "one.vizscene"
    status, out, err = cli(capsys, "scene", "--out", out_file, "--model", "tinyvgg_shapes", "--image", "star",
                           "--layer", "features.0", "--channel", "4", "--dock", "attribution",
                           "--presentation", "--scale", "1.5", "--target", "2", "--title", "stars", "--json")
    assert status == 0, err
    printed = json.loads(out)
    assert printed["path"] == str(out_file) and printed["image"] == "star" and printed["class"] == 2
    assert read_scene(out_file) == Scene(model="tinyvgg_shapes", image="star", layer="features.0", channel=4,
                                         target=2, dock="attribution", presentation=True, scale=1.5,
                                         title="stars")
    status, out, err = cli(capsys, "scene", "--out", tmp_path / "p.vizscene", "--presentation")
    assert status == 0 and out == f"saved {tmp_path / 'p.vizscene'}\n"
    assert read_scene(tmp_path / "p.vizscene").scale == 2.0  # presentation's default scale


def test_scene_command_keeps_an_image_file_relative(capsys, tmp_path):
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "pic.png")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        status, _out, err = cli(capsys, "scene", "--out", "s.vizscene", "--image", "pic.png")
    finally:
        os.chdir(cwd)
    assert status == 0, err
    assert json.loads((tmp_path / "s.vizscene").read_text())["image"] == "pic.png"
    assert read_scene(tmp_path / "s.vizscene").image == str(tmp_path / "pic.png")


@pytest.mark.parametrize(("args", "expected"), [
    (["--model", "no_such_net"], "vizapp: error: --model no_such_net: not a registry model (see 'vizapp models') "
                                 "and no such file or folder"),
    (["--image", "nothere.png"], "vizapp: error: nothere.png: no such image file, and not a sample's name"),
    (["--dock", "bad"], "vizapp: error: argument --dock: invalid choice: 'bad'"),
    (["--scale", "3.5"], "vizapp: error: argument --scale: must be a number from 1 to 3 (got '3.5')"),
    (["--scale", "0.5"], "vizapp: error: argument --scale: must be a number from 1 to 3 (got '0.5')"),
    (["--channel", "-1"], "vizapp: error: argument --channel: must be an integer >= 0"),
    (["--arch", "resnet18"], "vizapp: error: --arch: give the --model file it is the architecture of"),
])
def test_scene_command_errors_exit_2_with_one_line(capsys, tmp_path, args, expected):
    status, out, err = cli(capsys, "scene", "--out", tmp_path / "x.vizscene", *args)
    assert status == 2 and out == ""
    assert err.startswith(expected) and err.count("\n") == 1
    assert not (tmp_path / "x.vizscene").exists()


def test_scene_option_of_the_window_reads_the_file_first(capsys, tmp_path):
    """``vizapp --scene`` with a bad file: one line and exit 2 before any window opens."""
    (tmp_path / "bad.vizscene").write_text('{"vizscene": 1, "scale": 9}')
    status, out, err = cli(capsys, "--scene", tmp_path / "bad.vizscene")
    assert status == 2 and out == ""
    assert err == f"vizapp: error: {tmp_path / 'bad.vizscene'}: field 'scale' must be a number from 1 to 3 (got 9)\n"

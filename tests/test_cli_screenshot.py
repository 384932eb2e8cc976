"""``main.py screenshot``'s checks: the channel against the layer, one error line for a bad image."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.gui

ROOT = Path(__file__).resolve().parents[1]


def shoot(capsys, *argv) -> tuple[int, str, str]:
    from main import main

    status = main(["screenshot", "--model", "tinyvgg_shapes", "--device", "cpu", *map(str, argv)])
    out, err = capsys.readouterr()
    return status, out, err


def test_channel_beyond_the_layer_is_refused(capsys, qapp, settings_file, tmp_path):
    status, out, err = shoot(capsys, "--image", "star", "--layer", "conv1_1", "--channel", "999",
                             "--out", tmp_path / "s.png")
    assert status == 2 and out == ""
    assert err == "vizapp: error: --channel 999: layer 'conv1_1' has channels 0 to 9\n"
    assert not (tmp_path / "s.png").exists()


def test_a_bad_image_is_reported_once(tmp_path):
    """In a real run (no logging set up, unlike under pytest) the window's warning is not printed too."""
    bad = tmp_path / "bad.png"
    bad.write_text("not a picture")
    proc = subprocess.run(
        [sys.executable, "main.py", "screenshot", "--model", "tinyvgg_shapes", "--device", "cpu",
         "--image", str(bad), "--out", str(tmp_path / "s.png")],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, "VIZAPP_SETTINGS": str(tmp_path / "s.ini")})
    assert proc.returncode == 2 and proc.stdout == ""
    ours = [line for line in proc.stderr.splitlines() if "bad.png" in line]
    assert ours == [f"vizapp: error: {bad}: not an image file Pillow can read"], proc.stderr


def test_the_saved_line_gives_the_real_size(capsys, qapp, settings_file, tmp_path):
    """A size below the window's smallest is not silently replaced: the line says what was written."""
    from PIL import Image

    out_file = tmp_path / "small.png"
    status, out, err = shoot(capsys, "--image", "star", "--size", "320x240", "--out", out_file)
    assert status == 0, err
    with Image.open(out_file) as image:
        w, h = image.size
    assert (w, h) != (320, 240)  # the window has a minimum size (about 1125x620)
    assert out == f"saved {out_file} ({w}x{h}; the window's smallest size is {w}x{h})\n"


def test_maximise_needs_a_dock_and_fills_the_window_with_it(capsys, qapp, settings_file, tmp_path):
    import numpy as np
    from PIL import Image

    status, out, err = shoot(capsys, "--image", "star", "--maximise", "--out", tmp_path / "m.png")
    assert status == 2 and out == ""
    assert err == "vizapp: error: --maximise: name the dock to fill the window with --dock\n"
    pictures = {}
    for name, extra in (("plain", ()), ("max", ("--maximise",))):
        path = tmp_path / f"{name}.png"
        status, out, err = shoot(capsys, "--image", "star", "--dock", "predictions", *extra,
                                 "--size", "1024x768", "--out", path)
        assert status == 0, err
        with Image.open(path) as image:
            pictures[name] = np.asarray(image.convert("L"), dtype=np.int16)
    assert pictures["plain"].shape == pictures["max"].shape == (768, 1024)
    # The predictions' bars fill the window: far more of it differs than a status line would.
    assert (np.abs(pictures["plain"] - pictures["max"]) > 30).mean() > 0.2


def test_a_collection_that_cannot_be_indexed_is_one_error_line(capsys, qapp, settings_file, tmp_path):
    gone = tmp_path / "no-such-folder"
    status, out, err = shoot(capsys, "--image", "star", "--collection", gone, "--dock", "patches",
                             "--out", tmp_path / "p.png")
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and str(gone) in err and err.startswith("vizapp: error: ")
    assert not (tmp_path / "p.png").exists()


def test_a_collection_is_indexed_for_the_top_patches(capsys, qapp, settings_file, tmp_path, monkeypatch):
    monkeypatch.setenv("VIZAPP_CACHE", str(tmp_path / "cache"))
    status, out, err = shoot(capsys, "--image", "star", "--layer", "conv2_2", "--collection", "samples",
                             "--dock", "patches", "--size", "1024x768", "--out", tmp_path / "p.png")
    assert status == 0, err
    indexes = list((tmp_path / "cache" / "index").rglob("*"))
    assert indexes, "the samples were not indexed"

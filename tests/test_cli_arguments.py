"""The command line's edge: argument ranges, one-line errors, the window's options without
``gui``, ``--image`` sample names, ``--out`` written exactly where asked, non-UTF-8 names."""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import main
from vizapp import cli
from vizapp.cli.parser import DOCKS, build_parser, parse_args
from vizapp.collection.datasets import ImageCollection
from vizapp.collection.index_store import Index
from vizapp.core.errors import ImageError
from vizapp.inputs.images import lab_samples, sample_images
from vizapp.inputs.sources import resolve_image_source

LAB = {s.name: s.path for s in lab_samples()}


def run_cli(capsys, *argv, **handlers) -> tuple[int, str, str]:
    status = main.main([str(a) for a in argv]) if not handlers else cli.main([str(a) for a in argv], handlers)
    out, err = capsys.readouterr()
    return status, out, err


def one_error_line(err: str) -> str:
    assert err.startswith("vizapp: error: ") and err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err and "usage:" not in err
    return err[len("vizapp: error: "):-1]


# --- every numeric option has a range, checked by argparse -------------------------------------

M = ["--model", "efficientnet_lite0"]
IMG = ["--image", "chelsea"]
#: (command line before the option, option, values it refuses, a value it takes, what the message says)
NUMERIC = [
    (["predict", *M, *IMG], "--top", ["0", "-1", "1001", "1000000000", "x"], "1000", "from 1 to 1000"),
    (["attention", *M, *IMG, "--out", "a.npz"], "--discard", ["1", "1.5", "-0.1", "nan", "inf"], "0.9", "[0, 1)"),
    (["attribute", *M, *IMG, "--method", "saliency", "--out", "a.npz"], "--steps",
     ["0", "100000000", "2.5"], "1000", "from 1 to 1000"),
    (["train", "--out", "r"], "--epochs", ["0", "-3", "1000000000"], "1", "from 1 to 100000"),
    (["train", "--out", "r"], "--seed", ["-1", "4294967296", "x"], "4294967295", "from 0 to 4294967295"),
    (["train", "--out", "r"], "--batch-size", ["0", "1", "100000"], "2", "from 2 to 4096"),
    (["train", "--out", "r"], "--lr", ["0", "-1", "nan", "inf", "x"], "1e-4", "> 0"),
    (["train", "--out", "r"], "--weight-decay", ["-0.5", "nan", "inf"], "0", ">= 0"),
    (["train", "--out", "r"], "--size", ["0", "7", "100000"], "32", "from 8 to 512"),
    (["train", "--out", "r"], "--n", ["0", "-5"], "10", ">= 1"),
    (["train", "--out", "r"], "--margin", ["0", "-1", "nan"], "0.2", "> 0"),
    (["train", "--out", "r"], "--temperature", ["0", "inf"], "0.1", "> 0"),
    (["train", "--out", "r"], "--embed-dim", ["0", "5000"], "32", "from 1 to 4096"),
    (["train", "--out", "r"], "--log-every", ["0"], "1", ">= 1"),
    (["index", *M, "--data", "samples", "--layer", "blocks.1", "--out", "i"], "--topk",
     ["0", "1001", "1000000000"], "1000", "from 1 to 1000"),
    (["index", *M, "--data", "samples", "--layer", "blocks.1", "--out", "i"], "--batch-size",
     ["0", "-1", "5000"], "1", "from 1 to 4096"),
    (["index", *M, "--data", "samples", "--layer", "blocks.1", "--out", "i"], "--workers", ["-1", "65"], "0", "from 0 to 64"),
    (["top-patches", "--index", "i", "--layer", "blocks.1"], "--channel", ["-1", "x"], "0", ">= 0"),
    (["embed", *M, "--data", "samples", "--out", "e.npz"], "--seed", ["-1"], "7", "from 0 to 4294967295"),
    (["embed", *M, "--data", "samples", "--out", "e.npz"], "--batch-size", ["0"], "8", "from 1 to 4096"),
    (["embed", *M, "--data", "samples", "--out", "e.npz"], "--workers", ["-1"], "2", "from 0 to 64"),
    (["convolve", *IMG, "--kernel", "box", "--out", "c.npz"], "--stride", ["0", "65", "x"], "64", "from 1 to 64"),
    (["convolve", *IMG, "--kernel", "box", "--out", "c.npz"], "--padding", ["-1", "65"], "0", "from 0 to 64"),
    (["convolve", *IMG, "--kernel", "box", "--out", "c.npz"], "--dilation", ["0", "65"], "64", "from 1 to 64"),
    (["convolve", *IMG, "--kernel", "box", "--out", "c.npz"], "--kernel-size", ["4", "1", "x"], "5", "3 or 5"),
    (["convolve", *IMG, "--kernel", "box", "--out", "c.npz"], "--size", ["7", "4097"], "4096", "from 8 to 4096"),
    (["convolve", *IMG, *M, "--out", "c.npz"], "--channel", ["-1", "x"], "0", ">= 0"),
    (["convolve", *IMG, *M, "--kernel", "box", "--out", "c.npz"], "--input-channel", ["-1"], "2", ">= 0"),
    (["screenshot", "--out", "s.png"], "--channel", ["-1"], "3", ">= 0"),
    (["scene", "--out", "s.vizscene"], "--channel", ["-1", "x"], "3", ">= 0"),
    (["scene", "--out", "s.vizscene"], "--head", ["-1"], "2", ">= 0"),
    (["scene", "--out", "s.vizscene"], "--target", ["-2"], "281", ">= 0"),
    (["scene", "--out", "s.vizscene"], "--scale", ["0.5", "3.01", "nan", "inf", "x"], "2.5", "from 1 to 3"),
    (["screenshot", "--out", "s.png"], "--size", ["0x0", "100000x100000", "319x240", "7681x4320", "1600", "axb"],
     "320x240", "from 320x240 to 7680x4320"),
    (["screenshot", "--out", "s.png"], "--scale", ["0.5", "3.5", "x"], "2.5", "from 1 to 3"),
    (["gui"], "--scale", ["0", "4"], "1.5", "from 1 to 3"),
    (["gui"], "--camera", ["-1", "100", "x"], "2", "from 0 to 99"),
    (["screenshot", "--video", "v.avi", "--out", "s.png"], "--frames", ["0", "10001", "x"], "5", "from 1 to 10000"),
]
# live: a video (no file is opened before the arguments are checked) or camera N
NUMERIC += [
    (["live", *M, "--video", "v.avi"], "--frames", ["0", "-1", "x"], "1", ">= 1"),
    (["live", *M, "--video", "v.avi"], "--top", ["0", "1001"], "1000", "from 1 to 1000"),
    (["live", *M], "--camera", ["-1", "64", "x"], "63", "from 0 to 63"),
]
# export and record take the window's state as screenshot does, and their own options
for _cmd, _args in (("export", ["--dock", "features", "--out", "f.png"]),
                    ("record", ["--dock", "features", "--step", "channels", "--out", "r.gif"])):
    NUMERIC += [
        ([_cmd, *_args], "--channel", ["-1"], "3", ">= 0"),
        ([_cmd, *_args], "--size", ["319x240", "axb"], "320x240", "from 320x240 to 7680x4320"),
        ([_cmd, *_args], "--scale", ["0", "4", "1.5"], "3", "from 1 to 3"),
    ]
NUMERIC += [
    (["record", "--dock", "features", "--step", "channels", "--out", "r.gif"], "--count", ["0", "601"], "600", "from 1 to 600"),
    (["record", "--dock", "features", "--step", "channels", "--out", "r.gif"], "--fps", ["0", "61", "2.5"], "60", "from 1 to 60"),
]
_VIS = ["visualize", *M, "--layer", "blocks.4", "--out", "v.png"]
NUMERIC += [
    (_VIS, "--channel", ["-1", "x"], "5", ">= 0"),
    (_VIS, "--steps", ["0", "10001", "x"], "10000", "from 1 to 10000"),
    (_VIS, "--size", ["7", "1025"], "1024", "from 8 to 1024"),
    (_VIS, "--seed", ["-1", "4294967296"], "4294967295", "from 0 to 4294967295"),
    (_VIS, "--lr", ["0", "-1", "nan", "inf", "x"], "0.1", "> 0"),
    (_VIS, "--octaves", ["0", "11"], "10", "from 1 to 10"),
]
CASES = [(before, option, bad, wanted) for before, option, bads, _, wanted in NUMERIC for bad in bads]


@pytest.mark.parametrize(("before", "option", "bad", "wanted"), CASES,
                         ids=[f"{b[0]} {o} {v}" for b, o, v, _ in CASES])
def test_a_numeric_option_out_of_range_is_one_line_exit_2(capsys, before, option, bad, wanted):
    status, out, err = run_cli(capsys, *before, option, bad)
    assert status == 2 and out == ""
    line = one_error_line(err)
    assert line.startswith(f"argument {option}: must be ") and wanted in line, line
    assert f"(got {bad!r})" in line or f"(got {bad})" in line, line


@pytest.mark.parametrize(("before", "option", "good"), [(b, o, g) for b, o, _, g, _ in NUMERIC],
                         ids=[f"{b[0]} {o}" for b, o, *_ in NUMERIC])
def test_a_numeric_option_in_range_is_taken(before, option, good):
    args = parse_args([*before, option, good])
    dest = option.lstrip("-").replace("-", "_")
    expected = (320, 240) if good == "320x240" else float(good) if "." in good or "e" in good else int(good)
    assert getattr(args, dest) == expected


def test_every_numeric_option_is_in_the_table():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    typed = {(name, opt) for name, p in sub.choices.items() for a in p._actions
             if a.type is not None for opt in a.option_strings if opt.startswith("--")}
    assert typed == {(before[0], option) for before, option, *_ in NUMERIC}


@pytest.mark.parametrize(("argv", "named"), [
    (["predict", "--model", "efficientnet_lite0"], "the following arguments are required: --image"),
    (["predict", "--model", "efficientnet_lite0", "--image", "chelsea", "--bogus"], "unrecognized arguments: --bogus"),
    (["frobnicate"], "argument command: invalid choice: 'frobnicate'"),
    (["screenshot", "--out", "s.png", "--dock", "nope"], "argument --dock: invalid choice: 'nope'"),
    (["--model", "vit_digits", "layers", "--model", "vit_digits"], "argument --model: the window's options"),
])
def test_every_argument_error_is_one_line(capsys, argv, named):
    status, out, err = run_cli(capsys, *argv)
    assert status == 2 and out == ""
    assert one_error_line(err).startswith(named)


def test_screenshot_docks_are_the_windows(make_window):
    """``--dock`` takes every dock the window has (kernels and training too), nothing else."""
    window = make_window(size=None, show=False)
    assert tuple(window.docks) == DOCKS
    for dock in ("kernels", "training"):
        assert parse_args(["screenshot", "--out", "s.png", "--dock", dock]).dock == dock


# --- the window's options without 'gui' ----------------------------------------------------------


def test_window_options_work_without_gui(capsys):
    seen = []
    status, _, err = run_cli(capsys, "--model", "vit_digits", "--layer", "blocks.0", "--device", "cpu",
                             gui=lambda a: seen.append(a) or 0)
    assert status == 0, err
    (args,) = seen
    assert (args.command, args.model, args.layer, args.device, args.image, args.arch, args.trust) == \
        ("gui", "vit_digits", "blocks.0", "cpu", None, None, False)


def test_window_options_before_and_after_gui():
    args = parse_args(["--arch", "resnet18", "--trust", "gui", "--model", "w.pth"])
    assert (args.command, args.model, args.arch, args.trust) == ("gui", "w.pth", "resnet18", True)
    args = parse_args([])
    assert (args.command, args.model, args.image) == ("gui", None, None)


def test_window_image_takes_a_sample_name(capsys):
    seen = []
    status, _, err = run_cli(capsys, "--image", "digit3", gui=lambda a: seen.append(a) or 0)
    assert status == 0, err
    assert Path(seen[0].image) == LAB["digit3"]
    status, _, err = run_cli(capsys, "--image", "cat.jpg", gui=lambda a: seen.append(a) or 0)
    assert status == 2 and len(seen) == 1
    assert "cat.jpg" in one_error_line(err)


def test_help_lists_the_window_options(capsys):
    status, out, _ = run_cli(capsys, "--help")
    assert status == 0
    for option in ("--model", "--image", "--layer", "--device", "--arch", "--trust"):
        assert f"  {option}" in out, option
    assert "sample's name" in out


# --- --image: a path or a sample's name --------------------------------------------------------


def test_resolve_image_source(tmp_path, monkeypatch):
    photos = {s.name: s.path for s in sample_images()}
    assert resolve_image_source("chelsea") == photos["chelsea"]
    assert resolve_image_source("star") == LAB["star"]
    monkeypatch.chdir(tmp_path)
    shutil.copy(LAB["ring"], tmp_path / "chelsea")  # a file that exists wins over a sample's name
    assert resolve_image_source("chelsea") == Path("chelsea")
    with pytest.raises(ImageError) as info:
        resolve_image_source("photos/cat.jpg")
    text = str(info.value)
    assert "\n" not in text and text.startswith("photos/cat.jpg:") and "chelsea" in text and "digit3" in text


def test_predict_takes_a_sample_name(capsys):
    status, out, err = run_cli(capsys, "predict", "--model", "tinyvgg_shapes", "--image", "star", "--json", "--top", "1")
    assert status == 0, err
    assert json.loads(out)[0]["label"] == "star"


# --- --out is written exactly where asked, and "saved X" names it ---------------------------


@pytest.mark.parametrize("command", [
    ["features", "--model", "tinyvgg_shapes", "--image", "star", "--layer", "conv1_1"],
    ["attention", "--model", "vit_digits", "--image", "digit3"],
    ["attribute", "--model", "tinyvgg_shapes", "--image", "star", "--method", "saliency"],
])
def test_out_is_written_exactly_where_asked(capsys, tmp_path, command):
    target = tmp_path / "result_without_extension"
    status, out, err = run_cli(capsys, *command, "--out", target, "--device", "cpu")
    assert status == 0, err
    assert out.startswith(f"saved {target}: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]
    with np.load(target) as data:
        assert "input" in data.files

    folder = tmp_path / "a_folder"
    folder.mkdir()
    status, out, err = run_cli(capsys, *command, "--out", folder, "--device", "cpu")
    assert status == 2 and out == ""
    assert str(folder) in one_error_line(err) and "folder" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, folder.name])
    assert list(folder.iterdir()) == []


# --- file names that are not UTF-8 -----------------------------------------------------------------


@pytest.fixture
def odd_folder(tmp_path) -> tuple[Path, str]:
    """Two classes of shapes, one file named with the byte 0xff (not UTF-8), one broken file named
    with 0xfe; returns (folder, the 0xff path)."""
    root = tmp_path / "odd"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    shutil.copy(LAB["star"], root / "a" / "star.png")
    shutil.copy(LAB["ring"], root / "b" / "ring.png")
    odd = os.fsencode(root / "a") + b"/bad\xff.png"
    shutil.copy(LAB["square"], odd)
    Path(os.fsdecode(os.fsencode(root / "b") + b"/broken\xfe.png")).write_bytes(b"not a picture")  # skipped, counted
    return root, os.fsdecode(odd)


def test_fingerprint_of_a_non_utf8_name(odd_folder):
    root, odd = odd_folder
    collection = ImageCollection.from_folder(root)
    assert odd in collection.paths
    first = collection.fingerprint()
    assert first == ImageCollection.from_folder(root).fingerprint()
    os.utime(os.fsencode(odd), ns=(1, 1))
    assert ImageCollection.from_folder(root).fingerprint() != first


def test_index_embed_and_top_patches_with_a_non_utf8_name(capsys, tmp_path, odd_folder, monkeypatch):
    root, odd = odd_folder
    status, out, err = run_cli(capsys, "index", "--model", "tinyvgg_shapes", "--data", root, "--layer", "conv1_1",
                               "--topk", "3", "--workers", "0", "--device", "cpu", "--out", tmp_path / "idx")
    assert status == 0, err
    assert "indexed 4 images (1 skipped as unreadable)" in out
    items = json.loads(Index.load(tmp_path / "idx").file("items").read_text(encoding="utf-8"))
    assert odd in items["paths"]

    status, out, err = run_cli(capsys, "top-patches", "--index", tmp_path / "idx", "--layer", "conv1_1",
                               "--channel", "0", "--json")
    assert status == 0, err
    images = [p["image"] for p in json.loads(out)]
    assert sorted(map(os.fsencode, images)) == sorted(map(os.fsencode, [odd, str(root / "a" / "star.png"),
                                                                          str(root / "b" / "ring.png")]))

    # Printed as text to a strict UTF-8 stream, the name comes out as its own bytes.
    stream = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
    monkeypatch.setattr(sys, "stdout", stream)
    status = cli.main(["top-patches", "--index", str(tmp_path / "idx"), "--layer", "conv1_1", "--channel", "0"])
    stream.flush()
    assert status == 0
    assert os.fsencode(odd) in stream.buffer.getvalue()
    monkeypatch.undo()

    status, out, err = run_cli(capsys, "embed", "--model", "tinyvgg_shapes", "--data", root, "--workers", "0",
                               "--device", "cpu", "--cache", tmp_path / "cache", "--out", tmp_path / "emb.npz")
    assert status == 0, err
    with np.load(tmp_path / "emb.npz") as data:
        assert len(data["paths"]) == 3 and odd in data["paths"].tolist()


def test_embed_refuses_a_folder_as_out(capsys, tmp_path):
    folder = tmp_path / "emb"
    folder.mkdir()
    status, out, err = run_cli(capsys, "embed", "--model", "tinyvgg_shapes", "--data", "samples", "--out", folder,
                               "--cache", tmp_path / "cache")
    assert status == 2 and out == ""
    assert one_error_line(err) == f"--out {folder}: is a folder; name the .npz file to write"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb"] and not (tmp_path / "emb.npz").exists()

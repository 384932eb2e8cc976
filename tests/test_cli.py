"""The headless command line, run in-process (plus one real ``python main.py`` run)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import main
from models import REGISTRY, imagenet_classes, load_model
from vizapp.probing.inference import run

ROOT = Path(__file__).resolve().parents[1]


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    status = main.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_models_json(capsys):
    status, out, err = cli(capsys, "models", "--json")
    assert status == 0 and err == ""
    rows = json.loads(out)
    assert [r["name"] for r in rows] == list(REGISTRY)
    lite0 = next(r for r in rows if r["name"] == "efficientnet_lite0")
    assert lite0["offline"] is True and lite0["kind"] == "cnn" and lite0["source"] == "package"
    assert lite0["input_size"] == 224 and "centre crop 224" in lite0["preprocess"]
    assert next(r for r in rows if r["name"] == "efficientnet_lite2")["input_size"] == 260
    assert {r["kind"] for r in rows} == {"cnn", "vit"}


def test_models_text(capsys):
    status, out, _ = cli(capsys, "models")
    assert status == 0
    line = next(x for x in out.splitlines() if x.startswith("efficientnet_lite0"))
    assert "offline" in line and "EfficientNet-Lite0" in line
    assert len(out.splitlines()) == len(REGISTRY)


def test_layers_json(capsys, lite0):
    status, out, _ = cli(capsys, "layers", "--model", "efficientnet_lite0", "--device", "cpu", "--json")
    assert status == 0
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["conv_stem"]["output_shape"] == [32, 112, 112] and rows["conv_stem"]["params"] == 864
    assert rows["conv_stem"]["type"] == "Conv2d"
    assert rows["classifier"]["output_shape"] == [1000]
    assert rows[""]["params"] == lite0.num_parameters and rows[""]["share"] == 1.0


def test_predict_json(capsys, sample_paths):
    status, out, err = cli(capsys, "predict", "--model", "efficientnet_lite0", "--image", sample_paths["coffee"], "--json")
    assert status == 0 and err == ""
    preds = json.loads(out)
    assert isinstance(preds, list) and len(preds) == 5
    assert all(set(p) == {"label", "index", "prob"} for p in preds)
    assert preds[0]["label"] in {"espresso", "cup"}
    probs = [p["prob"] for p in preds]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    classes = imagenet_classes()
    assert all(classes[p["index"]] == p["label"] for p in preds)


def test_predict_text_and_top(capsys, sample_paths):
    status, out, _ = cli(capsys, "predict", "--model", "efficientnet_lite0", "--image", sample_paths["chelsea"],
                         "--top", "2", "--device", "cpu")
    assert status == 0
    lines = out.strip().splitlines()
    assert len(lines) == 2 and lines[0].endswith(")") and "%" in lines[0]
    assert any(cat in lines[0] for cat in ("tiger cat", "Egyptian cat", "tabby"))


def test_features_npz(capsys, tmp_path, lite0, coffee, sample_paths):
    out_file = tmp_path / "sub" / "x.npz"
    status, out, _ = cli(capsys, "features", "--model", "efficientnet_lite0", "--image", sample_paths["coffee"],
                         "--layer", "blocks.2", "--out", out_file, "--device", "cpu")
    assert status == 0 and "saved" in out
    with np.load(out_file) as data:
        assert set(data.files) == {"input", "activation"}
        assert data["input"].shape == (1, 3, 224, 224)
        assert data["activation"].shape == (40, 28, 28)
        expected = run(lite0, coffee, ["blocks.2"])
        np.testing.assert_array_equal(data["input"], expected.input)
        np.testing.assert_allclose(data["activation"], expected.activations["blocks.2"], rtol=1e-5, atol=1e-6)


def test_predict_user_file(capsys, resnet18_pth, resnet18, chelsea, sample_paths):
    status, out, err = cli(capsys, "predict", "--model", resnet18_pth, "--arch", "resnet18",
                           "--image", sample_paths["chelsea"], "--top", "3", "--json", "--device", "cpu")
    assert status == 0, err
    preds = json.loads(out)
    loaded = load_model(str(resnet18_pth), arch="resnet18")
    with torch.no_grad():
        probs = torch.softmax(resnet18(loaded.preprocess.batch(chelsea)), 1)[0]
    top = torch.topk(probs, 3)
    assert [p["index"] for p in preds] == top.indices.tolist()
    np.testing.assert_allclose([p["prob"] for p in preds], top.values.numpy(), rtol=1e-4)


@pytest.fixture
def pickled_model(tmp_path, resnet18):
    path = tmp_path / "whole_model.pt"
    torch.save(resnet18, path)
    return path


@pytest.mark.parametrize("case", ["missing image", "not an image", "unknown model", "unknown layer",
                                  "bare state dict", "untrusted pickle", "registry name with arch",
                                  "wrong arch", "top zero"])
def test_bad_input_exits_2_with_one_line(capsys, tmp_path, sample_paths, resnet18_pth, pickled_model, case):
    coffee = sample_paths["coffee"]
    text_file = tmp_path / "readme_not_image.png"
    text_file.write_text("hello")
    argv, named = {
        "missing image": (["predict", "--model", "efficientnet_lite0", "--image", tmp_path / "no_such.jpg"], "no_such.jpg"),
        "not an image": (["predict", "--model", "efficientnet_lite0", "--image", text_file], text_file.name),
        "unknown model": (["predict", "--model", "resnet19", "--image", coffee], "resnet19"),
        "unknown layer": (["features", "--model", resnet18_pth, "--arch", "resnet18", "--image", coffee,
                           "--layer", "layer9.conv", "--out", tmp_path / "f.npz"], "layer9.conv"),
        "bare state dict": (["predict", "--model", resnet18_pth, "--image", coffee], "--arch"),
        "untrusted pickle": (["predict", "--model", pickled_model, "--image", coffee], "--trust"),
        "registry name with arch": (["predict", "--model", "resnet18", "--arch", "resnet18", "--image", coffee], "--arch"),
        "wrong arch": (["layers", "--model", resnet18_pth, "--arch", "resnet34"], "missing keys"),
        "top zero": (["predict", "--model", "efficientnet_lite0", "--image", coffee, "--top", "0"], "--top"),
    }[case]
    status, out, err = cli(capsys, *argv)
    assert status == 2, err
    assert out == ""
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith("vizapp: error: ") and named in err
    assert "Traceback" not in err
    assert not (tmp_path / "f.npz").exists()


def test_trusted_pickle_predicts(capsys, pickled_model, sample_paths):
    status, out, err = cli(capsys, "predict", "--model", pickled_model, "--trust", "--image", sample_paths["coffee"], "--json")
    assert status == 0, err
    assert len(json.loads(out)) == 5


def test_missing_argument_is_a_usage_error(capsys):
    status, out, err = cli(capsys, "predict", "--model", "efficientnet_lite0")
    assert status == 2 and out == ""
    assert err == "vizapp: error: the following arguments are required: --image\n"


def test_entry_point_subprocess(sample_paths):
    proc = subprocess.run(
        [sys.executable, "main.py", "predict", "--model", "efficientnet_lite0",
         "--image", str(sample_paths["coffee"]), "--json", "--top", "3"],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    preds = json.loads(proc.stdout)
    assert len(preds) == 3 and preds[0]["label"] in {"espresso", "cup"}
    assert [p["prob"] for p in preds] == sorted((p["prob"] for p in preds), reverse=True)

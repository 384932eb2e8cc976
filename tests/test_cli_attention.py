"""The ``attention`` and ``attribute`` commands, run in-process: their .npz files hold
what the engine computes, and bad input exits 2 with one line on stderr."""

from __future__ import annotations

import numpy as np
import pytest

from vizapp.cli import main
from vizapp.explain.attention import analyse_attention
from vizapp.explain.attribution import METHODS, attribute


def cli(capsys, *argv) -> tuple[int, str, str]:
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def one_line_error(err: str, *named: str) -> None:
    assert err.startswith("vizapp: error: ") and err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for text in named:
        assert text in err, (text, err)


def test_attention_npz(capsys, tmp_path, vit_files, deit_tiny, chelsea, sample_paths):
    out_file = tmp_path / "sub" / "attention.npz"
    status, out, err = cli(
        capsys,
        "attention",
        "--model",
        vit_files["deit_tiny_patch16_224"],
        "--arch",
        "deit_tiny_patch16_224",
        "--image",
        sample_paths["chelsea"],
        "--out",
        out_file,
        "--device",
        "cpu",
    )
    assert status == 0, err
    assert err == ""  # a trained-or-not-known file: no UNTRAINED note
    assert (
        str(out_file) in out
        and "(12, 3, 197, 197)" in out
        and "1 prefix token" in out
        and "14x14" in out
    )
    expected = analyse_attention(deit_tiny, chelsea)
    with np.load(out_file) as data:
        assert set(data.files) == {
            "input",
            "attention",
            "rollout",
            "cls_index",
            "prefix_tokens",
            "grid",
            "patch",
            "distance",
            "layers",
        }
        np.testing.assert_array_equal(data["input"], expected.input)
        assert (
            data["attention"].shape == (12, 3, 197, 197) and data["attention"].dtype == np.float32
        )
        np.testing.assert_allclose(data["attention"], expected.attention, rtol=1e-5, atol=1e-6)
        assert data["rollout"].shape == (14, 14)
        np.testing.assert_allclose(
            data["rollout"], expected.rollout("mean", 0.0), rtol=1e-4, atol=1e-7
        )
        assert int(data["cls_index"]) == 0 and int(data["prefix_tokens"]) == 1
        assert data["grid"].tolist() == [14, 14] and int(data["patch"]) == 16
        np.testing.assert_allclose(data["distance"], expected.distance, rtol=1e-4)
        assert data["layers"].tolist() == [f"blocks.{i}.attn" for i in range(12)]


def test_attention_npz_with_target(
    capsys, tmp_path, vit_files, deit_distilled, coffee, sample_paths
):
    """Two prefix tokens (class + distillation), max fusion with discard, and the gradient rollout."""
    out_file = tmp_path / "attention.npz"
    status, out, err = cli(
        capsys,
        "attention",
        "--model",
        vit_files["deit_tiny_distilled_patch16_224"],
        "--arch",
        "deit_tiny_distilled_patch16_224",
        "--image",
        sample_paths["coffee"],
        "--fusion",
        "max",
        "--discard",
        "0.3",
        "--target",
        "espresso",
        "--out",
        out_file,
        "--device",
        "cpu",
    )
    assert status == 0, err
    assert "2 prefix token" in out
    expected = analyse_attention(deit_distilled, coffee, target="espresso", gradient=True)
    with np.load(out_file) as data:
        assert {"gradient_rollout", "target"} <= set(data.files)
        assert (
            int(data["prefix_tokens"]) == 2
            and int(data["cls_index"]) == 0
            and int(data["target"]) == 967
        )
        assert data["attention"].shape == (12, 3, 198, 198)
        np.testing.assert_allclose(data["attention"], expected.attention, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(
            data["rollout"], expected.rollout("max", 0.3), rtol=1e-4, atol=1e-7
        )
        assert not np.allclose(data["rollout"], expected.rollout("mean", 0.0), atol=1e-5)
        np.testing.assert_allclose(
            data["gradient_rollout"], expected.gradient_map(), rtol=1e-4, atol=1e-7
        )


@pytest.mark.parametrize("case", ["cnn", "target out of range", "unknown class", "bad fusion"])
def test_attention_bad_input_exits_2(capsys, tmp_path, vit_files, sample_paths, case):
    deit = ["--model", vit_files["deit_tiny_patch16_224"], "--arch", "deit_tiny_patch16_224"]
    argv, named = {
        "cnn": (["--model", "efficientnet_lite0"], ["EfficientNet-Lite0", "attention"]),
        "target out of range": ([*deit, "--target", "5000"], ["5000", "0-999"]),
        "unknown class": ([*deit, "--target", "no such class"], ["no such class", "0-999"]),
        "bad fusion": ([*deit, "--fusion", "median"], ["median"]),
    }[case]
    out_file = tmp_path / "a.npz"
    full = [
        "attention",
        *argv,
        "--image",
        sample_paths["coffee"],
        "--out",
        out_file,
        "--device",
        "cpu",
    ]
    status, out, err = cli(capsys, *full)  # "bad fusion" is argparse's own error: one line too
    assert status == 2 and out == ""
    one_line_error(err, *named)
    assert not out_file.exists()


def test_attribute_gradcam_npz(capsys, tmp_path, lite0, coffee, sample_paths):
    out_file = tmp_path / "gradcam.npz"
    status, out, err = cli(
        capsys,
        "attribute",
        "--model",
        "efficientnet_lite0",
        "--image",
        sample_paths["coffee"],
        "--method",
        "gradcam",
        "--out",
        out_file,
        "--device",
        "cpu",
    )
    assert status == 0, err
    expected = attribute(lite0, coffee, "gradcam")
    assert "Grad-CAM (bn2)" in out and f"'{expected.target_label}' ({expected.target}" in out
    with np.load(out_file) as data:
        assert {"input", "attribution"} <= set(data.files)
        assert set(data.files) == {"input", "attribution", "map", "target", "method", "layer"}
        np.testing.assert_array_equal(data["input"], expected.input)
        assert data["attribution"].shape == (7, 7)
        np.testing.assert_allclose(
            data["attribution"], expected.raw, rtol=1e-4, atol=1e-6 * expected.raw.max()
        )
        np.testing.assert_allclose(data["map"], expected.map, rtol=1e-4, atol=1e-5)
        assert int(data["target"]) == expected.target and str(data["method"]) == "gradcam"
        assert str(data["layer"]) == "bn2"


def test_attribute_saliency_with_target_name(capsys, tmp_path, lite0, coffee, sample_paths):
    out_file = tmp_path / "saliency.npz"
    status, out, err = cli(
        capsys,
        "attribute",
        "--model",
        "efficientnet_lite0",
        "--image",
        sample_paths["coffee"],
        "--method",
        "saliency",
        "--target",
        "espresso",
        "--out",
        out_file,
        "--device",
        "cpu",
    )
    assert status == 0, err
    expected = attribute(lite0, coffee, "saliency", target=967)
    with np.load(out_file) as data:
        assert "layer" not in data.files and int(data["target"]) == 967
        assert data["attribution"].shape == (3, 224, 224)
        np.testing.assert_allclose(
            data["attribution"], expected.raw, rtol=1e-4, atol=1e-6 * expected.raw.max()
        )


@pytest.mark.parametrize(
    "case",
    ["target out of range", "unknown method", "zero steps", "unknown layer", "layer not run"],
)
def test_attribute_bad_input_exits_2(capsys, tmp_path, sample_paths, vit_files, case):
    lite0 = ["--model", "efficientnet_lite0"]
    deit = ["--model", vit_files["deit_tiny_patch16_224"], "--arch", "deit_tiny_patch16_224"]
    extra, named = {
        "target out of range": (
            [*lite0, "--method", "gradcam", "--target", "5000"],
            ["5000", "0-999"],
        ),
        "unknown method": ([*lite0, "--method", "nope"], ["nope", *METHODS]),
        "zero steps": ([*lite0, "--method", "integrated_gradients", "--steps", "0"], ["--steps"]),
        "unknown layer": ([*lite0, "--method", "gradcam", "--layer", "blocks.99"], ["blocks.99"]),
        # timm's fused attention never calls attn_drop: a layer that exists but does not run.
        "layer not run": (
            [*deit, "--method", "gradcam", "--layer", "blocks.3.attn.attn_drop"],
            ["blocks.3.attn.attn_drop"],
        ),
    }[case]
    out_file = tmp_path / "x.npz"
    argv = [
        "attribute",
        *extra,
        "--image",
        sample_paths["coffee"],
        "--out",
        out_file,
        "--device",
        "cpu",
    ]
    status, out, err = cli(capsys, *argv)
    assert status == 2 and out == "", err
    one_line_error(err, *named)
    assert not out_file.exists()

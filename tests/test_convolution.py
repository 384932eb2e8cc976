"""The convolution explainer's engine: torch's numbers, window by window (no Qt)."""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vizapp.core.errors import LayerError, UserError
from vizapp.explain.convolution import (
    CLASSIC,
    ConvolutionError,
    classic_kernel,
    classic_vs_learned,
    conv_layers,
    convolve,
    effective_kernel,
    explain,
    grayscale,
    output_size,
)


def _torch_conv(x, w, b, stride, padding, mode, dilation):
    t = torch.from_numpy(x)[None]
    k = torch.from_numpy(w)[None]
    bias = torch.tensor([b], dtype=torch.float32)
    if mode == "reflect" and padding:
        return F.conv2d(F.pad(t, (padding,) * 4, mode="reflect"), k, bias, stride=stride, dilation=dilation)[0, 0]
    return F.conv2d(t, k, bias, stride=stride, padding=padding, dilation=dilation)[0, 0]


GRID = [(s, p, m, d, k) for s, p, m, d, k in itertools.product((1, 2, 3), (0, 1, 2), ("zeros", "reflect"), (1, 2, 3),
                                                             (1, 3, 5))
        if (p or m == "zeros")]


@pytest.mark.parametrize("k", (1, 3, 5))
def test_output_equals_conv2d_over_the_settings(k):
    rng = np.random.default_rng(k)
    x = rng.normal(size=(3, 17, 14)).astype(np.float32)
    w = rng.normal(size=(3, k, k)).astype(np.float32)
    checked = 0
    for s, p, m, d, kk in GRID:
        if kk != k:
            continue
        c = convolve(x, w, 0.25, stride=s, padding=p, padding_mode=m, dilation=d)
        expected = _torch_conv(x, w, 0.25, s, p, m, d).numpy()
        assert c.output.shape == expected.shape
        np.testing.assert_allclose(c.output, expected, rtol=1e-5, atol=1e-5)
        assert c.output.shape == (output_size(17, k, p, s, d), output_size(14, k, p, s, d))
        assert c.padded.shape == (3, 17 + 2 * p, 14 + 2 * p)
        checked += 1
    assert checked == 45


def test_every_window_total_is_its_output_pixel():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 9, 8)).astype(np.float32)
    w = rng.normal(size=(3, 3, 3)).astype(np.float32)
    for s, p, m, d in [(1, 1, "zeros", 1), (2, 2, "reflect", 2), (3, 0, "zeros", 1), (1, 2, "reflect", 1)]:
        c = convolve(x, w, -0.5, stride=s, padding=p, padding_mode=m, dilation=d)
        h, wd = c.output.shape
        for i in range(h):
            for j in range(wd):
                win = c.window(i, j)
                assert win.total == pytest.approx(float(c.output[i, j]), abs=1e-4)
                np.testing.assert_array_equal(win.products, win.patch * c.kernel)
                np.testing.assert_allclose(win.channel_sums, win.products.sum(axis=(1, 2)), rtol=1e-5, atol=1e-5)
                assert win.patch.shape == (3, 3, 3)
                np.testing.assert_array_equal(win.rows, i * s + d * np.arange(3))
                np.testing.assert_array_equal(win.cols, j * s + d * np.arange(3))
    with pytest.raises(IndexError):
        c.window(h, 0)


def test_reflect_padding_is_torchs_reflect():
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    c = convolve(x, classic_kernel("identity", 3), padding=2, padding_mode="reflect")
    expected = F.pad(torch.from_numpy(x)[None], (2, 2, 2, 2), mode="reflect")[0].numpy()
    np.testing.assert_array_equal(c.padded, expected)
    assert c.padded[0, 0, 0] == x[0, 2, 2]  # the reflection does not repeat the edge


@pytest.mark.parametrize("pool", ["max", "avg"])
def test_pooled_is_the_pool_of_the_relu(pool):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 11, 13)).astype(np.float32)
    c = convolve(x, rng.normal(size=(2, 3, 3)), 0.1, padding=1, pool=pool)
    np.testing.assert_array_equal(c.relu, np.maximum(c.output, 0))
    t = torch.from_numpy(c.relu)[None, None]
    expected = (F.max_pool2d(t, 2) if pool == "max" else F.avg_pool2d(t, 2))[0, 0].numpy()
    assert c.pooled.shape == (5, 6) == expected.shape
    np.testing.assert_allclose(c.pooled, expected, rtol=1e-6, atol=1e-7)
    for i, j in itertools.product(range(5), range(6)):
        pw = c.pool_window(i, j)
        assert pw.values.shape == (2, 2)
        np.testing.assert_array_equal(pw.values, c.relu[2 * i:2 * i + 2, 2 * j:2 * j + 2])
        assert pw.result == pytest.approx(float(c.pooled[i, j]), abs=1e-6)


def test_output_size_and_the_formula():
    assert output_size(224, 3, 1, 2, 1) == 112
    assert effective_kernel(3, 2) == 5
    assert output_size(10, 3, 0, 1, 2) == 6
    with pytest.raises(ConvolutionError, match="dilation 5"):
        output_size(8, 3, 0, 1, 5)
    c = convolve(np.zeros((3, 224, 224), np.float32), np.zeros((3, 3, 3), np.float32), stride=2, padding=1)
    assert c.formula() == "floor((224 + 2*1 - 3) / 2) + 1 = 112"
    c = convolve(np.zeros((1, 20, 30), np.float32), np.zeros((1, 3, 3), np.float32), stride=3, dilation=2)
    assert c.output.shape == (6, 9)
    assert c.formula() == ("width floor((30 + 2*0 - 5) / 3) + 1 = 9; height floor((20 + 2*0 - 5) / 3) + 1 = 6, "
                           "effective kernel 2*(3 - 1) + 1 = 5")


@pytest.mark.parametrize(("kwargs", "named"), [
    ({"stride": 0}, "stride 0"),
    ({"padding": -1}, "padding -1"),
    ({"dilation": 0}, "dilation 0"),
    ({"padding_mode": "circular"}, "padding mode 'circular'"),
    ({"pool": "median"}, "pool 'median'"),
    ({"padding": 4, "padding_mode": "reflect"}, "padding 4 with reflect"),
    ({"dilation": 3}, "dilation 3"),
    ({"stride": 2.5}, "stride 2.5"),
])
def test_bad_settings_are_one_line_naming_the_setting(kwargs, named):
    with pytest.raises(ConvolutionError) as info:
        convolve(np.zeros((1, 4, 6), np.float32), np.ones((1, 3, 3), np.float32), **kwargs)
    message = str(info.value)
    assert named in message and "\n" not in message


def test_classic_kernels():
    assert list(CLASSIC) == ["identity", "box", "gaussian", "sharpen", "sobel_x", "sobel_y", "prewitt_x",
                             "prewitt_y", "laplacian", "emboss"]
    for name, k in itertools.product(CLASSIC, (3, 5)):
        w = classic_kernel(name, k)
        assert w.shape == (k, k) and w.dtype == np.float32
        np.testing.assert_array_equal(CLASSIC[name](k), w)
    for k in (3, 5):
        assert classic_kernel("box", k).sum() == pytest.approx(1.0)
        assert classic_kernel("gaussian", k).sum() == pytest.approx(1.0)
        assert classic_kernel("sharpen", k).sum() == pytest.approx(1.0)
        assert classic_kernel("emboss", k).sum() == pytest.approx(1.0)
        for name in ("sobel_x", "sobel_y", "prewitt_x", "prewitt_y", "laplacian"):
            assert classic_kernel(name, k).sum() == pytest.approx(0.0)
        np.testing.assert_array_equal(classic_kernel("sobel_y", k), classic_kernel("sobel_x", k).T)
    np.testing.assert_array_equal(classic_kernel("sobel_x"), [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    classic_kernel("box")[0, 0] = 9  # a fresh array: the registry is not changed
    assert classic_kernel("box")[0, 0] == pytest.approx(1 / 9)
    with pytest.raises(ConvolutionError, match="kernel 'blur'"):
        classic_kernel("blur")
    with pytest.raises(ConvolutionError, match="kernel size 4"):
        classic_kernel("box", 4)


def test_sobel_x_is_large_on_a_vertical_edge_and_identity_returns_the_input():
    image = np.zeros((12, 12), np.float32)
    image[:, 6:] = 1.0  # dark left half, bright right half: a vertical edge between columns 5 and 6
    c = convolve(image, classic_kernel("sobel_x"), padding=1)
    response = np.abs(c.output[1:-1])
    assert response[:, 5:7].min() == pytest.approx(4.0)
    assert response[:, 1:4].max() == 0 and response[:, 8:11].max() == 0  # the borders meet the zero padding
    assert np.abs(convolve(image, classic_kernel("sobel_y"), padding=1).output[1:-1]).max() == 0
    for k in (3, 5):
        same = convolve(image, classic_kernel("identity", k), padding=k // 2)
        np.testing.assert_array_equal(same.output, image)
        box = convolve(np.ones((1, 9, 9), np.float32), classic_kernel("box", k))
        np.testing.assert_allclose(box.output, 1.0, rtol=1e-6)


def test_the_module_is_torch_free_until_a_convolution_runs():
    code = ("import sys; from vizapp.explain.convolution import CLASSIC, classic_kernel, output_size; "
            "classic_kernel('sobel_x', 5); output_size(9, 3, 1, 1, 1); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"


# --- from a model -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lite0():
    from models import load_model

    return load_model("efficientnet_lite0")


@pytest.fixture(scope="module")
def cat():
    from vizapp.inputs.images import load_image
    from vizapp.inputs.sources import resolve_image_source

    return load_image(resolve_image_source("chelsea"))


def _layer_output(loaded, image, layer):
    from vizapp.probing.probe import capture

    with torch.inference_mode(), capture(loaded.module, [layer]) as store:
        loaded.module(loaded.preprocess.batch(image))
    return store[layer][0].numpy()


def _layer_input(loaded, image, layer):
    got = []
    handle = dict(loaded.module.named_modules())[layer].register_forward_pre_hook(
        lambda _m, inputs: got.append(inputs[0][0].clone()))
    try:
        with torch.inference_mode():
            loaded.module(loaded.preprocess.batch(image))
    finally:
        handle.remove()
    return got[0].numpy()


def test_the_model_filter_is_the_layers_own_output_channel(lite0, cat):
    out = _layer_output(lite0, cat, "conv_stem")
    for channel in (0, 5, 31):
        c = explain(lite0, cat, "conv_stem", channel)
        assert c.input.shape == (3, 224, 224) and c.kernel.shape == (3, 3, 3)
        assert (c.stride, c.padding, c.dilation, c.padding_mode) == (2, 1, 1, "zeros")
        np.testing.assert_allclose(c.output, out[channel], atol=1e-4)
        np.testing.assert_array_equal(c.kernel, lite0.module.conv_stem.weight[channel].detach().numpy())
    assert c.input_name == "image as efficientnet_lite0 sees it (normalised)"
    assert c.kernel_name == "conv_stem filter 31"
    np.testing.assert_allclose(c.input, lite0.preprocess.batch(cat)[0].numpy(), atol=1e-6)
    assert c.layer_params == sum(p.numel() for p in lite0.module.conv_stem.parameters()) == 864
    assert c.params_formula() == "3*3*3*32 = 864 (no bias)"
    assert c.formula() == "floor((224 + 2*1 - 3) / 2) + 1 = 112"
    win = c.window(40, 50)
    assert win.channel_sums.shape == (3,) and win.total == pytest.approx(float(out[31, 40, 50]), abs=1e-4)


def test_a_depthwise_filter_sees_its_own_channel(lite0, cat):
    layer = "blocks.1.0.conv_dw"
    out = _layer_output(lite0, cat, layer)
    conv = dict(lite0.module.named_modules())[layer]
    for channel in (0, 7, 95):
        c = explain(lite0, cat, layer, channel)
        assert c.kernel.shape == (1, 3, 3) and c.input.shape == (1, 112, 112)
        np.testing.assert_allclose(c.output, out[channel], atol=1e-4)
        assert c.input_name == f"{layer} input, channel {channel}"
    assert c.layer_params == sum(p.numel() for p in conv.parameters()) == 96 * 9
    assert layer in conv_layers(lite0) and conv_layers(lite0)[0] == "conv_stem"


def test_a_classic_kernel_on_the_image_and_on_a_channel(lite0, cat):
    c = explain(lite0, cat, "conv_stem", 0, kernel="identity")
    gray = np.asarray(lite0.preprocess.pixels(cat).permute(1, 2, 0).numpy(), np.float32) / 255 @ np.array(
        [0.299, 0.587, 0.114], np.float32)
    np.testing.assert_allclose(c.output, gray, atol=1e-6)
    assert c.input.shape == (1, 224, 224) and 0 <= c.input.min() and c.input.max() <= 1
    assert c.kernel_name == "identity" and c.layer_params is None
    c = explain(lite0, cat, "blocks.1.0.conv_dw", 3, kernel="sobel_x", kernel_size=5, input_channel=7, stride=2)
    layer_in = _layer_input(lite0, cat, "blocks.1.0.conv_dw")
    ref = F.conv2d(torch.from_numpy(layer_in[7])[None, None], torch.from_numpy(classic_kernel("sobel_x", 5))[None, None],
                   stride=2, padding=2)[0, 0].numpy()
    np.testing.assert_allclose(c.output, ref, atol=1e-4)
    grid = np.arange(9, dtype=np.float32).reshape(3, 3)
    c = explain(lite0, cat, "conv_stem", 0, weights=grid, input_channel=1)
    assert c.kernel_name == "custom 3x3"
    np.testing.assert_array_equal(c.kernel[0], grid)


@pytest.mark.parametrize(("kwargs", "error", "named"), [
    ({"layer": "bn1"}, ConvolutionError, "layer 'bn1' is a BatchNormAct2d, not a Conv2d"),
    ({"layer": "nope"}, LayerError, "layer 'nope'"),
    ({"channel": 32}, ConvolutionError, "channel 32: 'conv_stem' has 32 output channels (0 to 31)"),
    ({"channel": -1}, ConvolutionError, "channel -1"),
    ({"input_channel": 3, "kernel": "box"}, ConvolutionError, "input channel 3"),
    ({"kernel": "blur"}, ConvolutionError, "kernel 'blur'"),
    ({"dilation": 200}, ConvolutionError, "dilation 200"),
    ({"stride": 0}, ConvolutionError, "stride 0"),
    ({"padding": 224, "padding_mode": "reflect"}, ConvolutionError, "padding 224 with reflect"),
])
def test_bad_model_settings_are_one_line(lite0, cat, kwargs, error, named):
    args = {"layer": "conv_stem", "channel": 0, **kwargs}
    with pytest.raises(error) as info:
        explain(lite0, cat, args.pop("layer"), args.pop("channel"), **args)
    assert isinstance(info.value, UserError)
    assert named in str(info.value) and "\n" not in str(info.value)


def test_a_model_in_training_mode_is_put_back(lite0, cat):
    lite0.module.train()
    try:
        c = explain(lite0, cat, "conv_stem", 3)
        assert all(m.training for m in lite0.module.modules())
    finally:
        lite0.module.eval()
    np.testing.assert_allclose(c.output, _layer_output(lite0, cat, "conv_stem")[3], atol=1e-4)


def test_classic_vs_learned(lite0, cat):
    r = classic_vs_learned(lite0, cat, count=8)
    assert r["layer"] == "conv_stem"
    assert r["image"].shape == (224, 224)
    assert list(r["classic"]) == ["sobel_x", "sobel_y", "laplacian", "gaussian", "sharpen", "emboss"]
    assert all(m.shape == (224, 224) for m in r["classic"].values())
    np.testing.assert_allclose(r["classic"]["gaussian"][1:-1, 1:-1].mean(), r["image"][1:-1, 1:-1].mean(), atol=0.01)
    assert r["learned"].shape == (8, 112, 112) and len(r["learned_index"]) == 8
    out = _layer_output(lite0, cat, "conv_stem")
    np.testing.assert_allclose(r["learned"], out[r["learned_index"]], atol=1e-5)
    activity = np.abs(out).mean(axis=(1, 2))
    assert activity[r["learned_index"][0]] == pytest.approx(activity.max())
    assert list(activity[r["learned_index"]]) == sorted(activity[r["learned_index"]], reverse=True)


def test_grayscale_resizes_the_shorter_side(cat):
    g = grayscale(cat, 100)
    w, h = cat.size
    assert g.shape == (100, round(w * 100 / h)) and g.dtype == np.float32
    assert 0 <= g.min() and g.max() <= 1


def test_the_job_functions(lite0, cat):
    from vizapp import analysis
    from vizapp.core.errors import Cancelled
    from vizapp.core.jobs import CancelToken

    seen = []
    c = analysis.convolution(lite0, cat, "conv_stem", 2, progress=lambda *a: seen.append(a), cancel=CancelToken(),
                             kernel="laplacian", stride=2)
    assert c.kernel_name == "laplacian" and c.stride == 2 and c.output.shape == (112, 112) and seen
    r = analysis.classic_vs_learned(lite0, cat, progress=lambda *a: None, cancel=CancelToken())
    assert r["learned"].shape == (16, 112, 112)
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        analysis.convolution(lite0, cat, "conv_stem", 2, cancel=token)


def test_classic_on_image():
    from vizapp.explain.convolution import classic_on_image

    image = np.zeros((40, 60, 3), np.uint8)
    image[:, 30:] = 255
    c = classic_on_image(image, "sobel_x", size=20)
    assert c.input.shape == (1, 20, 30) and c.output.shape == (20, 30) and c.padding == 1
    assert np.abs(c.output[1:-1, 14:16]).min() > 1 and np.abs(c.output[1:-1, 2:12]).max() == 0
    c = classic_on_image(image, "box", kernel_size=5, size=20, dilation=2)
    assert c.padding == 4 and c.output.shape == (20, 30)
    with pytest.raises(ConvolutionError, match="classic kernel or a grid"):
        classic_on_image(image)


# --- vizapp convolve ---------------------------------------------------------------------------


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    import main

    status = main.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def one_error_line(err: str) -> str:
    assert err.startswith("vizapp: error: ") and err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err and "usage:" not in err
    return err[len("vizapp: error: "):-1]


def test_convolve_with_a_classic_kernel_writes_the_npz(capsys, tmp_path, cat):
    import json

    out = tmp_path / "conv.npz"
    status, text, err = run_cli(capsys, "convolve", "--image", "chelsea", "--kernel", "sobel_x", "--stride", "2",
                                "--out", out, "--json")
    assert status == 0, err
    shown = json.loads(text)
    w, h = cat.size
    width = round(w * 224 / h)
    assert shown["input"] == [1, 224, width] and shown["output"] == [112, (width - 1) // 2 + 1]
    assert shown["parameters"] is None and shown["formula"].startswith(f"width floor(({width} + 2*1 - 3) / 2) + 1")
    with np.load(out) as data:
        assert {"input", "kernel", "bias", "output", "relu", "pooled", "stride", "padding", "dilation"} <= set(data.files)
        assert data["kernel"].shape == (1, 3, 3) and data["output"].shape == (112, shown["output"][1])
        assert data["pooled"].shape == (56, shown["output"][1] // 2)
        assert int(data["stride"]) == 2 and int(data["padding"]) == 1 and int(data["dilation"]) == 1
        np.testing.assert_array_equal(data["input"][0], grayscale(cat, 224))
        expected = convolve(data["input"], data["kernel"], stride=2, padding=1).output
        np.testing.assert_array_equal(data["output"], expected)
        np.testing.assert_array_equal(data["relu"], np.maximum(expected, 0))


def test_convolve_with_a_model_filter(capsys, tmp_path, lite0, cat):
    import json

    out = tmp_path / "stem.npz"
    status, text, err = run_cli(capsys, "convolve", "--image", "chelsea", "--model", "efficientnet_lite0",
                                "--layer", "conv_stem", "--channel", "5", "--device", "cpu", "--out", out, "--json")
    assert status == 0, err
    shown = json.loads(text)
    assert shown["parameters"] == 864 and shown["formula"] == "floor((224 + 2*1 - 3) / 2) + 1 = 112"
    with np.load(out) as data:
        assert data["input"].shape == (3, 224, 224) and data["kernel"].shape == (3, 3, 3)
        assert data["output"].shape == (112, 112) and data["pooled"].shape == (56, 56)
        assert float(data["bias"]) == 0.0 and int(data["stride"]) == 2
        np.testing.assert_allclose(data["output"], _layer_output(lite0, cat, "conv_stem")[5], atol=1e-4)


@pytest.mark.parametrize(("argv", "named"), [
    (["--model", "efficientnet_lite0", "--layer", "nope", "--channel", "0"], "layer 'nope' is not in the model"),
    (["--model", "efficientnet_lite0", "--layer", "bn1", "--channel", "0"], "layer 'bn1' is a BatchNormAct2d"),
    (["--model", "efficientnet_lite0", "--layer", "conv_stem", "--channel", "32"], "channel 32: 'conv_stem' has 32"),
    (["--model", "efficientnet_lite0", "--layer", "conv_stem"], "--channel: --model without --kernel"),
    (["--kernel", "blur"], "kernel 'blur' is not a classic kernel"),
    (["--kernel", "box", "--padding", "300"], "argument --padding: must be an integer from 0 to 64"),
    (["--kernel", "box", "--kernel-size", "4"], "argument --kernel-size: must be 3 or 5 (got 4)"),
    (["--kernel", "box", "--dilation", "64", "--padding", "0", "--size", "8"], "padding 0, dilation 64: a 3x3 kernel"),
    (["--kernel", "box", "--padding", "8", "--padding-mode", "reflect", "--size", "8"], "padding 8 with reflect"),
    (["--layer", "conv_stem", "--kernel", "box"], "--layer: needs --model"),
    ([], "give --model M --layer L --channel C"),
])
def test_convolve_bad_input_is_one_line_exit_2(capsys, tmp_path, argv, named):
    status, out, err = run_cli(capsys, "convolve", "--image", "chelsea", *argv, "--device", "cpu", "--json",
                               "--out", tmp_path / "c.npz")
    assert status == 2 and out == ""
    assert named in one_error_line(err)
    assert list(tmp_path.iterdir()) == []


def test_convolve_out_must_be_a_file_in_a_folder_that_exists(capsys, tmp_path):
    status, out, err = run_cli(capsys, "convolve", "--image", "chelsea", "--kernel", "box",
                               "--out", tmp_path / "missing" / "c.npz")
    assert status == 2 and out == ""
    assert one_error_line(err) == f"--out {tmp_path / 'missing' / 'c.npz'}: the folder {tmp_path / 'missing'} " \
                                  "does not exist; create it or name another file"
    assert list(tmp_path.iterdir()) == []
    status, out, err = run_cli(capsys, "convolve", "--image", "chelsea", "--kernel", "box", "--out", tmp_path)
    assert status == 2 and one_error_line(err) == f"--out {tmp_path}: is a folder; name the .npz file to write"
    status, out, err = run_cli(capsys, "convolve", "--image", "chelsea", "--kernel", "box")
    assert status == 2 and one_error_line(err) == "the following arguments are required: --out"


def test_the_hooks_are_removed_even_on_an_error(lite0, cat):
    modules = [m for m in lite0.module.modules() if isinstance(m, torch.nn.Conv2d)]
    explain(lite0, cat, "blocks.1.0.conv_dw", 0)
    classic_vs_learned(lite0, cat, count=2)
    with pytest.raises(ConvolutionError):
        explain(lite0, cat, "conv_stem", 0, stride=0)
    with pytest.raises(ConvolutionError):
        explain(lite0, cat, "conv_stem", 0, kernel="box", input_channel=9)
    assert not any(m._forward_pre_hooks or m._forward_hooks for m in modules)

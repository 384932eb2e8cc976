"""The headless engine: predictions, captured activations, images, layer table, mosaics, kernels."""

from __future__ import annotations

import gc
import io
import os
import tracemalloc

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import vizapp.inputs.images
from vizapp.core.errors import ImageError, LayerError, ModelError
from vizapp.inputs.images import load_image
from vizapp.probing.inference import run
from vizapp.probing.kernels import kernel_layer, kernel_mosaic, kernel_weights
from vizapp.probing.layers import conv_layers, format_table, layer_table
from vizapp.probing.mosaic import as_channel_maps, channel_order, feature_mosaic
from vizapp.probing.probe import capture

CAT_CLASSES = {"tiger cat", "Egyptian cat", "tabby"}


def no_hooks(model: torch.nn.Module) -> bool:
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


# --- predictions on real photographs -------------------------------------------------------


def test_chelsea_is_a_cat(lite0, chelsea):
    result = run(lite0, chelsea)
    assert len(result.predictions) == 5
    assert result.predictions[0].label in CAT_CLASSES
    # The three cat classes share most of the probability mass.
    cat_mass = sum(p.prob for p in result.predictions if p.label in CAT_CLASSES)
    assert cat_mass > 0.5


def test_coffee_is_espresso_or_cup(lite0, coffee):
    result = run(lite0, coffee, topk=3)
    assert len(result.predictions) == 3
    assert result.predictions[0].label in {"espresso", "cup"}


def test_predictions_agree_with_logits(lite0, coffee):
    result = run(lite0, coffee, topk=10)
    probs = torch.softmax(torch.from_numpy(result.logits).double(), 0).numpy()
    best = np.argsort(-probs)[:10]
    assert [p.index for p in result.predictions] == best.tolist()
    np.testing.assert_allclose([p.prob for p in result.predictions], probs[best], rtol=1e-5)
    assert [p.label for p in result.predictions] == [lite0.class_names[i] for i in best]
    # The logits are the model's output on the returned input.
    with torch.inference_mode():
        expected = lite0.module(torch.from_numpy(result.input))[0].numpy()
    np.testing.assert_allclose(result.logits, expected, rtol=1e-4, atol=1e-5)


# --- captured activations equal an independent computation ------------------------------------


def test_conv_stem_equals_conv2d(lite0, chelsea):
    stem = lite0.module.conv_stem
    # timm's efficientnet_lite uses a plain symmetric-padding Conv2d (not Conv2dSame).
    assert type(stem) is torch.nn.Conv2d
    assert stem.stride == (2, 2) and stem.padding == (1, 1) and stem.bias is None
    result = run(lite0, chelsea, ["conv_stem"])
    x = torch.from_numpy(result.input)
    with torch.no_grad():
        expected = F.conv2d(x, stem.weight, stride=2, padding=1)[0].numpy()
    got = result.activations["conv_stem"]
    assert got.shape == (32, 112, 112) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_deep_layers_equal_manual_forward(lite0, chelsea):
    layers = ["bn1", "blocks.3", "conv_head", "bn2"]
    result = run(lite0, chelsea, layers)
    assert set(result.activations) == set(layers)
    m = lite0.module
    with torch.no_grad():
        h = m.conv_stem(torch.from_numpy(result.input))
        stem = m.bn1(h).clone()
        h = stem
        for i, block in enumerate(m.blocks):
            h = block(h)
            if i == 3:
                block3 = h.clone()
        head = m.conv_head(h)
        act = m.bn2(head.clone())
    assert result.activations["blocks.3"].shape == (80, 14, 14)
    assert result.activations["conv_head"].shape == (1280, 7, 7)
    for name, expected in [("bn1", stem), ("blocks.3", block3), ("conv_head", head), ("bn2", act)]:
        np.testing.assert_allclose(result.activations[name], expected[0].numpy(), rtol=1e-4, atol=1e-5, err_msg=name)
    # bn2 ends in a ReLU6: its capture is clipped, conv_head's is not.
    assert result.activations["bn2"].min() >= 0 and result.activations["bn2"].max() <= 6
    assert result.activations["conv_head"].min() < 0


def test_inplace_relu_captures_are_cloned(resnet18_loaded, chelsea):
    """torchvision's ReLU(inplace=True) overwrites bn outputs; the hook's clone keeps them."""
    names = ["conv1", "bn1", "relu", "maxpool", "layer1.0.conv1", "layer1.0.bn1", "layer1.0.bn2", "layer1.0"]
    result = run(resnet18_loaded, chelsea, names)
    m = resnet18_loaded.module
    x = torch.from_numpy(result.input)
    with torch.no_grad():
        conv1 = F.conv2d(x, m.conv1.weight, stride=2, padding=3)
        bn1 = m.bn1(conv1)
        relu = torch.relu(bn1)  # not in place
        pooled = F.max_pool2d(relu, 3, 2, 1)
        blk = m.layer1[0]
        b_conv1 = blk.conv1(pooled)
        b_bn1 = blk.bn1(b_conv1)
        b_bn2 = blk.bn2(blk.conv2(torch.relu(b_bn1)))
        b_out = torch.relu(b_bn2 + pooled)
    expected = {"conv1": conv1, "bn1": bn1, "relu": relu, "maxpool": pooled, "layer1.0.conv1": b_conv1,
                "layer1.0.bn1": b_bn1, "layer1.0.bn2": b_bn2, "layer1.0": b_out}
    for name, tensor in expected.items():
        np.testing.assert_allclose(result.activations[name], tensor[0].numpy(), rtol=1e-4, atol=1e-5, err_msg=name)
    # The batch-norm captures keep their negative values although the ReLU ran in place on them.
    for name in ("bn1", "layer1.0.bn1", "layer1.0.bn2"):
        assert result.activations[name].min() < -0.1, name
    assert result.activations["relu"].min() == 0.0

    # Without the clone, a hook would hold the tensor the in-place ReLU overwrote.
    naive = {}
    handle = m.bn1.register_forward_hook(lambda _m, _i, out: naive.setdefault("bn1", out.detach()))
    try:
        with torch.no_grad():
            m(x)
    finally:
        handle.remove()
    assert naive["bn1"].min() >= 0
    assert not np.allclose(naive["bn1"][0].numpy(), result.activations["bn1"])


def test_input_and_display(lite0, chelsea):
    result = run(lite0, chelsea)
    assert result.input.shape == (1, 3, 224, 224) and result.input.dtype == np.float32
    np.testing.assert_array_equal(result.input, lite0.preprocess.batch(chelsea).numpy())
    assert result.display.dtype == np.uint8 and result.display.shape == (224, 224, 3)
    mean = np.array(lite0.preprocess.mean, np.float32)
    std = np.array(lite0.preprocess.std, np.float32)
    denorm = (result.input[0].transpose(1, 2, 0) * std + mean) * 255
    assert np.abs(result.display.astype(np.float32) - denorm).max() <= 1.0
    # Independently: Pillow resizes the shorter side to 256 (antialiased bilinear), centre crop 224.
    w, h = chelsea.size
    assert (w, h) == (451, 300)
    nw, nh = int(256 * w / h), 256
    resized = np.asarray(chelsea.resize((nw, nh), Image.BILINEAR), np.float32)
    left = round((nw - 224) / 2)
    crop = resized[16:240, left:left + 224]
    diff = np.abs(result.display.astype(np.float32) - crop)
    assert float(diff.mean()) < 0.05 and float(diff.max()) <= 2


# --- hooks never stay behind ---------------------------------------------------------------


def test_hooks_removed_after_run(lite0, chelsea):
    assert no_hooks(lite0.module)
    run(lite0, chelsea, ["conv_stem", "blocks.0", "blocks.3.0.conv_pw", "conv_head"])
    assert no_hooks(lite0.module)


def test_hooks_removed_after_error_in_capture(lite0):
    model = lite0.module
    with pytest.raises(RuntimeError, match="boom"):
        with capture(model, ["conv_stem", "blocks.1"]) as store:
            assert len(model.conv_stem._forward_hooks) == 1 and len(model.blocks[1]._forward_hooks) == 1
            with torch.inference_mode():
                model(torch.zeros(1, 3, 64, 64))
            assert set(store) == {"conv_stem", "blocks.1"}
            raise RuntimeError("boom")
    assert no_hooks(model)


def test_hooks_removed_after_failing_forward(chelsea, make_loaded):
    class Boom(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError("forward failed")

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), Boom())
    with pytest.raises(RuntimeError, match="forward failed"):
        run(make_loaded(model), chelsea, ["0", "1"])
    assert no_hooks(model)


def test_unknown_layer_is_a_layer_error(lite0, chelsea):
    with pytest.raises(LayerError, match="conv_stemm") as info:
        run(lite0, chelsea, ["conv_stem", "conv_stemm"])
    assert "conv_stem" in str(info.value)  # suggests the close name
    assert no_hooks(lite0.module)


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc for RSS")
def test_repeated_runs_do_not_grow_memory(lite0, chelsea):
    layers = ["conv_stem", "bn1", "blocks.0", "blocks.3", "conv_head"]  # about 5 MB of results per run
    for _ in range(3):
        run(lite0, chelsea, layers)
    gc.collect()
    rss0 = _rss()
    tracemalloc.start()
    try:
        for _ in range(30):
            result = run(lite0, chelsea, layers)
        del result
        gc.collect()
        traced, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    grown = _rss() - rss0
    assert traced < 10e6, f"{traced / 1e6:.1f} MB of Python/numpy memory kept after 30 runs"
    assert grown < 60e6, f"RSS grew {grown / 1e6:.1f} MB over 30 runs (a leak keeps ~150 MB)"
    assert no_hooks(lite0.module)


# --- every image mode becomes upright 8-bit RGB ----------------------------------------------


def _load_rgb(path, size):
    image = load_image(path)
    assert image.mode == "RGB"
    assert image.size == size
    return np.asarray(image).astype(int)


def test_rgb_png_is_unchanged(tmp_path):
    a = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(a, "RGB").save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(_load_rgb(tmp_path / "rgb.png", (40, 30)), a)


def test_grey_becomes_three_equal_channels(tmp_path):
    a = np.tile(np.arange(0, 256, 8, dtype=np.uint8), (5, 1))  # 5 x 32
    Image.fromarray(a, "L").save(tmp_path / "grey.png")
    out = _load_rgb(tmp_path / "grey.png", (32, 5))
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], a)


def test_la_composites_on_white(tmp_path):
    a = np.zeros((6, 10, 2), np.uint8)
    a[..., 0] = 50
    a[:, 5:, 1] = 255  # right half opaque, left half transparent
    Image.fromarray(a, "LA").save(tmp_path / "la.png")
    out = _load_rgb(tmp_path / "la.png", (10, 6))
    assert (out[:, :5] == 255).all()
    assert (out[:, 5:] == 50).all()


def test_rgba_composites_on_white(tmp_path):
    a = np.zeros((8, 12, 4), np.uint8)
    a[..., :3] = (200, 10, 30)
    a[:, :4, 3] = 0  # transparent
    a[:, 4:8, 3] = 128  # half
    a[:, 8:, 3] = 255  # opaque
    Image.fromarray(a, "RGBA").save(tmp_path / "rgba.png")
    out = _load_rgb(tmp_path / "rgba.png", (12, 8))
    assert (out[:, :4] == 255).all()
    assert (out[:, 8:] == (200, 10, 30)).all()
    alpha = 128 / 255
    half = np.round(np.array([200, 10, 30]) * alpha + 255 * (1 - alpha))
    assert np.abs(out[:, 4:8] - half).max() <= 1


def test_cmyk_jpeg(tmp_path):
    im = Image.new("CMYK", (16, 8), (0, 255, 255, 0))  # cyan 0, magenta + yellow full: red
    im.paste((255, 0, 0, 0), (8, 0, 16, 8))  # cyan
    im.save(tmp_path / "cmyk.jpg", quality=100)
    assert Image.open(tmp_path / "cmyk.jpg").mode == "CMYK"
    out = _load_rgb(tmp_path / "cmyk.jpg", (16, 8))
    assert np.abs(out[4, 2] - (255, 0, 0)).max() <= 12
    assert np.abs(out[4, 13] - (0, 255, 255)).max() <= 12


def _palette_image() -> Image.Image:
    im = Image.new("P", (9, 3))
    im.putpalette([255, 0, 0, 0, 128, 0, 10, 20, 200] + [0, 0, 0] * 253)
    im.putdata([0, 1, 2] * 9)
    return im


def test_palette_without_transparency(tmp_path):
    _palette_image().save(tmp_path / "p.png")
    out = _load_rgb(tmp_path / "p.png", (9, 3))
    assert (out[0, 0] == (255, 0, 0)).all()
    assert (out[0, 1] == (0, 128, 0)).all()
    assert (out[0, 2] == (10, 20, 200)).all()


@pytest.mark.parametrize("suffix", [".png", ".gif"])
def test_palette_with_transparency(tmp_path, suffix):
    path = tmp_path / f"pt{suffix}"
    _palette_image().save(path, transparency=1)
    with Image.open(path) as raw:
        assert raw.mode == "P" and "transparency" in raw.info
    out = _load_rgb(path, (9, 3))
    assert (out[:, 0::3] == (255, 0, 0)).all()
    assert (out[:, 1::3] == 255).all()  # the transparent index is white
    assert (out[:, 2::3] == (10, 20, 200)).all()


def test_sixteen_bit_png_keeps_its_scale(tmp_path):
    a = (np.arange(64 * 16).reshape(16, 64) * 60).astype(np.uint16)  # up to 61380
    Image.fromarray(a).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as raw:
        assert raw.mode.startswith("I;16") or raw.mode == "I"
    out = _load_rgb(tmp_path / "g16.png", (64, 16))
    expected = np.round(a / 65535 * 255)
    np.testing.assert_array_equal(out[..., 0], expected)
    np.testing.assert_array_equal(out[..., 2], expected)
    assert out.max() == round(61380 / 65535 * 255) < 255  # not stretched to the full range


def test_thirty_two_bit_int_tiff_is_stretched(tmp_path):
    a = np.arange(24 * 16, dtype=np.int32).reshape(16, 24) * 100_000 - 50_000
    Image.fromarray(a, "I").save(tmp_path / "i32.tif")
    with Image.open(tmp_path / "i32.tif") as raw:
        assert raw.mode == "I"
    out = _load_rgb(tmp_path / "i32.tif", (24, 16))
    expected = np.round((a - a.min()) / (a.max() - a.min()) * 255)
    np.testing.assert_array_equal(out[..., 1], expected)
    assert out.min() == 0 and out.max() == 255


def test_float_tiff(tmp_path):
    unit = np.linspace(0, 1, 24 * 16, dtype=np.float32).reshape(16, 24) * 0.5  # in [0, 0.5]
    Image.fromarray(unit, "F").save(tmp_path / "unit.tif")
    with Image.open(tmp_path / "unit.tif") as raw:
        assert raw.mode == "F"
    out = _load_rgb(tmp_path / "unit.tif", (24, 16))
    # Values already in [0, 1] keep their meaning (0.5 is mid grey, not white).
    np.testing.assert_array_equal(out[..., 0], np.round(unit.astype(np.float64) * 255))

    wide = unit * 1000 - 100  # outside [0, 1]: stretched
    Image.fromarray(wide, "F").save(tmp_path / "wide.tif")
    out = _load_rgb(tmp_path / "wide.tif", (24, 16))
    w = wide.astype(np.float64)
    np.testing.assert_array_equal(out[..., 0], np.round((w - w.min()) / (w.max() - w.min()) * 255))


def test_bilevel(tmp_path):
    a = (np.indices((8, 8)).sum(0) % 2).astype(bool)
    Image.fromarray(a).convert("1").save(tmp_path / "bw.png")
    with Image.open(tmp_path / "bw.png") as raw:
        assert raw.mode == "1"
    out = _load_rgb(tmp_path / "bw.png", (8, 8))
    np.testing.assert_array_equal(out[..., 0], np.where(a, 255, 0))


@pytest.mark.parametrize("orientation, corner", [(6, "top-right"), (8, "bottom-left"), (1, "top-left")])
def test_exif_rotation(tmp_path, orientation, corner):
    """Stored 40 x 20 with a red block at the stored top-left corner."""
    im = Image.new("RGB", (40, 20), (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, 8, 8))
    exif = im.getexif()
    exif[0x0112] = orientation
    path = tmp_path / f"exif{orientation}.jpg"
    im.save(path, exif=exif, quality=95)
    size = (40, 20) if orientation == 1 else (20, 40)  # 6 and 8 turn by 90 degrees
    out = _load_rgb(path, size)
    h, w = out.shape[:2]
    corners = {"top-left": out[2, 2], "top-right": out[2, w - 3],
               "bottom-left": out[h - 3, 2], "bottom-right": out[h - 3, w - 3]}
    for name, pixel in corners.items():
        if name == corner:
            assert pixel[0] > 200 and pixel[2] < 60, (name, pixel)
        else:
            assert pixel[0] < 60 and pixel[2] > 200, (name, pixel)


def test_png_bytes(tmp_path):
    a = np.random.default_rng(1).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(a, "RGB").save(buffer, format="PNG")
    image = load_image(buffer.getvalue())
    assert image.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(image), a)
    with pytest.raises(ImageError, match="pasted image"):
        load_image(b"not an image at all")


# --- unreadable images -----------------------------------------------------------------------


def _missing(tmp_path):
    return tmp_path / "missing_photo.png"


def _text(tmp_path):
    path = tmp_path / "notes_file.png"
    path.write_text("this is a text file, not a PNG\n" * 20)
    return path


def _truncated(tmp_path):
    buffer = io.BytesIO()
    a = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(a).save(buffer, format="PNG")
    path = tmp_path / "cut_short.png"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return path


@pytest.mark.parametrize("make, words", [
    (_missing, "no such image"),
    (_text, "not an image"),
    (_truncated, "truncated"),
])
def test_unreadable_images(tmp_path, make, words):
    path = make(tmp_path)
    with pytest.raises(ImageError) as info:
        load_image(path)
    assert path.name in str(info.value)
    assert words in str(info.value)


@pytest.mark.parametrize("limit", [6_000, 1_000])  # above the warning level, and above twice it
def test_decompression_bomb(tmp_path, monkeypatch, limit):
    path = tmp_path / "bomb_100x100.png"
    Image.new("RGB", (100, 100)).save(path)
    before = Image.MAX_IMAGE_PIXELS
    monkeypatch.setattr(vizapp.inputs.images, "MAX_PIXELS", limit)
    with pytest.raises(ImageError, match="too many pixels") as info:
        load_image(path)
    assert path.name in str(info.value)
    assert Image.MAX_IMAGE_PIXELS == before  # the global limit is restored
    monkeypatch.setattr(vizapp.inputs.images, "MAX_PIXELS", 10_000)
    assert load_image(path).size == (100, 100)  # exactly at the limit is fine


# --- the layer table ---------------------------------------------------------------------------


def test_layer_table_resnet18(resnet18_loaded):
    rows = layer_table(resnet18_loaded)
    by_name = {r.name: r for r in rows}
    assert [r.name for r in rows] == [n for n, _ in resnet18_loaded.module.named_modules()]
    assert by_name["layer1"].shape == (64, 56, 56)
    assert by_name["layer4"].shape == (512, 7, 7)
    assert by_name["fc"].shape == (1000,)
    assert by_name["conv1"].shape == (64, 112, 112)
    total = sum(p.numel() for p in resnet18_loaded.module.parameters())
    assert total == 11_689_512
    assert by_name[""].params == total and by_name[""].share == 1.0
    assert by_name["conv1"].params == 9408 == 64 * 3 * 7 * 7
    assert by_name["fc"].params == 512 * 1000 + 1000
    assert by_name["relu"].params == 0 and by_name["relu"].leaf
    assert not by_name["layer1"].leaf and by_name["layer1.0.conv1"].depth == 3
    leaves = [r for r in rows if r.leaf and r.params]
    assert sum(r.share for r in leaves) == pytest.approx(1.0, abs=1e-9)
    assert sum(r.params for r in leaves) == total
    assert no_hooks(resnet18_loaded.module)
    text = format_table(rows)
    assert "layer4" in text and "512x7x7" in text and "9,408" in text


def test_conv_layers(resnet18_loaded):
    names = conv_layers(resnet18_loaded)
    assert names[0] == "conv1" and len(names) == 20
    assert "layer2.0.downsample.0" in names


# --- feature mosaics ---------------------------------------------------------------------------


@pytest.fixture
def activation():
    """11 channels of 5 x 7 (not square, so rows and columns cannot be swapped unnoticed)."""
    rng = np.random.default_rng(3)
    a = rng.normal(size=(11, 5, 7)).astype(np.float32)
    a += rng.normal(size=(11, 1, 1)).astype(np.float32) * 3  # channel means differ
    return a


def _tile(mosaic, slot):
    ox, oy = mosaic.tile_origin(slot)
    return mosaic.image[oy:oy + mosaic.tile_h, ox:ox + mosaic.tile_w].astype(int)


def _scaled(channel, lo=None, hi=None):
    lo = channel.min() if lo is None else lo
    hi = channel.max() if hi is None else hi
    return (channel.astype(np.float64) - lo) / (hi - lo) * 255


def test_feature_mosaic_layout(activation):
    m = feature_mosaic(activation)
    c, h, w = activation.shape
    assert len(m.order) == c and m.rows * m.cols >= c and (m.rows - 1) * m.cols < c
    assert (m.tile_h, m.tile_w, m.gap) == (h, w, 1)
    assert m.image.dtype == np.uint8
    assert m.image.shape == (m.rows * (h + 1) - 1, m.cols * (w + 1) - 1)
    np.testing.assert_array_equal(m.order, np.arange(c))


def test_feature_mosaic_tiles_are_min_max_scaled(activation):
    m = feature_mosaic(activation)
    for ch in (0, 4, 10):
        tile = _tile(m, m.slot_of(ch))
        assert np.abs(tile - _scaled(activation[ch])).max() < 1.01  # float32 scaling, then truncation
        assert tile.min() == 0 and tile.max() >= 254
    layer = feature_mosaic(activation, norm="layer")
    lo, hi = activation.min(), activation.max()
    for ch in (0, 4, 10):
        assert np.abs(_tile(layer, ch) - _scaled(activation[ch], lo, hi)).max() < 1.01


def test_channel_at_maps_pixels_back(activation):
    m = feature_mosaic(activation, sort="mean")
    for slot in range(len(m.order)):
        ox, oy = m.tile_origin(slot)
        for dy, dx in [(0, 0), (m.tile_h - 1, m.tile_w - 1), (2, 3)]:
            assert m.channel_at(ox + dx + 0.5, oy + dy + 0.5) == m.order[slot]
    # Gaps, the empty slot after the last tile, and outside the image are nobody's.
    assert m.channel_at(m.tile_w, 0) is None
    assert m.channel_at(0, m.tile_h) is None
    assert m.channel_at(-1, 0) is None
    assert m.channel_at(m.image.shape[1] + 5, 0) is None
    if m.rows * m.cols > len(m.order):
        ox, oy = m.tile_origin(len(m.order))
        assert m.channel_at(ox, oy) is None


@pytest.mark.parametrize("sort", ["mean", "max"])
def test_sorted_mosaic(activation, sort):
    m = feature_mosaic(activation, sort=sort)
    key = [getattr(activation[c], sort)() for c in range(len(activation))]
    brute = sorted(range(len(activation)), key=lambda c: -key[c])
    assert m.order.tolist() == brute
    np.testing.assert_array_equal(channel_order(activation, sort), np.argsort(-np.array(key), kind="stable"))
    # Slot 0 shows the top channel's pattern.
    assert np.abs(_tile(m, 0) - _scaled(activation[brute[0]])).max() < 1.01
    with pytest.raises(ValueError):
        channel_order(activation, "median")


def test_tokens_become_channel_maps():
    tokens = np.random.default_rng(4).normal(size=(197, 768)).astype(np.float32)
    maps = as_channel_maps(tokens)
    assert maps.shape == (768, 14, 14)
    for d, r, c in [(0, 0, 0), (5, 3, 7), (767, 13, 13)]:
        assert maps[d, r, c] == tokens[1 + r * 14 + c, d]  # the class token is dropped
    no_cls = as_channel_maps(tokens[1:])
    np.testing.assert_array_equal(no_cls, maps)
    assert as_channel_maps(np.arange(10.0)).shape == (10, 1, 1)
    assert as_channel_maps(np.zeros((5, 3))).shape == (3, 2, 2)  # a class token and a 2 x 2 grid
    assert as_channel_maps(np.zeros((7, 3))).shape == (1, 7, 3)  # no square grid: one map
    # DeiT-distilled (class + distillation token) and register ViTs (class + 4 registers).
    for prefix in (2, 5):
        more = np.concatenate([np.full((prefix - 1, 768), 99.0, np.float32), tokens])
        np.testing.assert_array_equal(as_channel_maps(more), maps)


# --- kernels -------------------------------------------------------------------------------------


def test_kernel_mosaic_rgb():
    w = np.random.default_rng(5).normal(size=(8, 3, 5, 5)).astype(np.float32)
    view = kernel_mosaic(w, "stem")
    assert view.mode == "rgb" and view.shown_out == 8 and view.shown_in == 3
    m = view.mosaic
    assert len(m.order) == 8 and m.rows * m.cols >= 8
    assert m.image.ndim == 3 and m.image.shape[2] == 3
    for k in (0, 7):
        ox, oy = m.tile_origin(k)
        tile = m.image[oy:oy + 5, ox:ox + 5].astype(float)
        rgb = w[k].transpose(1, 2, 0)
        expected = (rgb - rgb.min()) / (rgb.max() - rgb.min()) * 255
        assert np.abs(tile - expected).max() < 1.01
        out, inp, ky, kx, value = view.value_at(ox + 2, oy + 3)
        assert (out, inp, ky, kx) == (k, None, 3, 2)
        assert value == pytest.approx(np.abs(w[k, :, 3, 2]).max())


def test_kernel_mosaic_grid_value_at_is_raw_weight():
    w = np.random.default_rng(6).normal(size=(4, 6, 3, 3)).astype(np.float32)
    view = kernel_mosaic(w, "conv", mode="auto")
    assert view.mode == "grid"
    m = view.mosaic
    assert (m.rows, m.cols) == (4, 6)
    for o in range(4):
        for i in range(6):
            ox, oy = m.tile_origin(o * 6 + i)
            for ky in range(3):
                for kx in range(3):
                    assert view.value_at(ox + kx, oy + ky) == (o, i, ky, kx, float(w[o, i, ky, kx]))
    assert view.value_at(3, 0) is None  # a gap column


def test_kernel_mosaic_mean_mode_for_big_layers():
    w = np.random.default_rng(7).normal(size=(200, 130, 3, 3)).astype(np.float32)
    view = kernel_mosaic(w)
    assert view.mode == "mean" and len(view.mosaic.order) == 200
    ox, oy = view.mosaic.tile_origin(17)
    out, inp, ky, kx, value = view.value_at(ox + 1, oy + 2)
    assert (out, inp, ky, kx) == (17, None, 2, 1)
    assert value == pytest.approx(w[17, :, 2, 1].mean(), rel=1e-5)
    with pytest.raises(ValueError):
        kernel_mosaic(w, mode="sideways")


def test_kernel_mosaic_pointwise_is_a_weight_matrix():
    w = np.random.default_rng(8).normal(size=(300, 200, 1, 1)).astype(np.float32)
    view = kernel_mosaic(w)
    assert view.mode == "grid" and view.mosaic.image.shape == (300, 200, 3)
    for o, i in [(0, 0), (299, 199), (123, 45)]:
        assert view.value_at(i, o) == (o, i, 0, 0, float(w[o, i, 0, 0]))


def test_kernel_weights_are_the_modules(resnet18_loaded):
    w = kernel_weights(resnet18_loaded, "conv1")
    assert w.shape == (64, 3, 7, 7)
    np.testing.assert_array_equal(w, resnet18_loaded.module.conv1.weight.detach().numpy())
    with pytest.raises(LayerError):
        kernel_weights(resnet18_loaded, "bn1")


@pytest.mark.parametrize("layer, conv", [
    ("conv1", "conv1"),  # a conv is its own
    ("layer1.0.conv2", "layer1.0.conv2"),
    ("layer1.0", "layer1.0.conv1"),  # first conv inside a block
    ("layer3", "layer3.0.conv1"),
    ("layer2.0.downsample", "layer2.0.downsample.0"),
    ("bn1", "conv1"),  # the last conv before a non-conv layer
    ("maxpool", "conv1"),
    ("layer1.0.bn2", "layer1.0.conv2"),
    ("layer2.0.downsample.1", "layer2.0.downsample.0"),
    ("avgpool", "layer4.1.conv2"),
    ("fc", "layer4.1.conv2"),
    (None, "conv1"),
])
def test_kernel_layer(resnet18_loaded, layer, conv):
    assert kernel_layer(resnet18_loaded, layer) == conv


def test_kernel_layer_edge_cases(resnet18_loaded, make_loaded):
    with pytest.raises(LayerError, match="layer9"):
        kernel_layer(resnet18_loaded, "layer9")
    mlp = make_loaded(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3)))
    assert kernel_layer(mlp, "1") is None


@pytest.mark.filterwarnings("ignore:`torch.jit.*deprecated:FutureWarning")
def test_torchscript_cannot_capture(chelsea, make_loaded):
    scripted = torch.jit.script(torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.Flatten()))
    loaded = make_loaded(scripted)
    with pytest.raises(ModelError, match="TorchScript"):
        run(loaded, chelsea, ["0"])

"""Attributions: every method equals Captum called directly; Grad-CAM on CNNs and ViTs.

The app wraps the model (cancel checks, progress) and picks targets, windows and
layers; these tests call Captum on the bare model with the same input, target and
settings and expect the same numbers. ViT Grad-CAM is checked against a manual
computation (layer output with ``retain_grad``, prefix tokens dropped, the patch grid).
"""

from __future__ import annotations

import copy
import gc
import os
import re
import tracemalloc
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from captum.attr import (
    GuidedBackprop,
    InputXGradient,
    IntegratedGradients,
    LayerGradCam,
    NoiseTunnel,
    Occlusion,
    Saliency,
)
from torch import nn

from vizapp.core.errors import Cancelled, LayerError, UserError
from vizapp.core.jobs import CancelToken
from vizapp.explain.attribution import METHODS, attribute, default_cam_layer, display_map
from vizapp.explain.attribution.occlusion import occlusion_window

TINY_CLASSES = [f"class{i}" for i in range(10)]


def no_hooks(model: nn.Module) -> bool:
    return all(
        not m._forward_hooks
        and not m._forward_pre_hooks
        and not m._backward_hooks
        and not m._backward_pre_hooks
        for m in model.modules()
    )


def no_grads(model: nn.Module) -> bool:
    return all(p.grad is None for p in model.parameters())


def tiny_cnn(seed: int = 3) -> nn.Module:
    """Three conv + ``nn.ReLU`` layers (28 x 28 maps at 224) and a 10-class head."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = nn.Sequential(
            nn.Conv2d(3, 8, 5, stride=4, padding=2),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(16, 10),
        )
    return model.eval()


@pytest.fixture(scope="module")
def tiny(make_loaded):
    return make_loaded(tiny_cnn(), "tiny-cnn", TINY_CLASSES)


def input_of(loaded, image) -> torch.Tensor:
    return loaded.preprocess.batch(image).requires_grad_(True)


def guided_backprop(model: nn.Module, x: torch.Tensor, target: int) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
        return GuidedBackprop(model).attribute(x, target=target)


def captum_reference(model: nn.Module, x: torch.Tensor, method: str, target: int) -> np.ndarray:
    """The same attribution by Captum on the bare model (the app's settings, written out)."""
    if method == "saliency":
        out = Saliency(model).attribute(x, target=target, abs=True)
    elif method == "input_x_gradient":
        out = InputXGradient(model).attribute(x, target=target)
    elif method == "integrated_gradients":
        out = IntegratedGradients(model).attribute(
            x, target=target, n_steps=50, internal_batch_size=8
        )
    elif method == "guided_backprop":
        out = guided_backprop(model, x, target)
    elif method == "occlusion":  # a CNN at 224: windows of 224 // 7 = 32 px, half-overlapping
        out = Occlusion(model).attribute(
            x,
            target=target,
            sliding_window_shapes=(3, 32, 32),
            strides=(3, 16, 16),
            baselines=0.0,
            perturbations_per_eval=13,
        )
    elif method == "smoothgrad":
        # Captum's NoiseTunnel, its noise drawn from a generator seeded with the app's default seed 0.
        sigma = 0.15 * float(x.detach().max() - x.detach().min())
        generator = torch.Generator().manual_seed(0)
        normal = torch.normal

        def seeded_normal(mean, std):
            assert mean == 0
            return std * torch.randn(std.shape, generator=generator)

        torch.normal = seeded_normal
        try:
            out = NoiseTunnel(Saliency(model)).attribute(
                x,
                target=target,
                nt_type="smoothgrad",
                nt_samples=16,
                nt_samples_batch_size=8,
                stdevs=sigma,
                abs=True,
            )
        finally:
            torch.normal = normal
    else:
        raise AssertionError(method)
    model.zero_grad(set_to_none=True)
    return out[0].detach().numpy()


# --- every method equals Captum on the bare model ---------------------------------------------


@pytest.mark.parametrize("method", [m for m in METHODS if m != "gradcam"])
def test_pixel_methods_equal_captum(tiny, chelsea, method):
    model = tiny.module
    x = input_of(tiny, chelsea)
    got = attribute(tiny, chelsea, method, target=3)
    expected = captum_reference(model, x, method, 3)
    assert (
        got.method == method
        and got.target == 3
        and got.target_label == "class3"
        and got.layer is None
    )
    assert got.raw.shape == (3, 224, 224) and got.raw.dtype == np.float32
    scale = float(np.abs(expected).max())
    assert scale > 0
    np.testing.assert_allclose(got.raw, expected, rtol=1e-4, atol=1e-5 * scale)
    with torch.no_grad():
        probs = torch.softmax(model(x), 1)[0]
    assert got.probability == pytest.approx(float(probs[3]), rel=1e-5)
    np.testing.assert_array_equal(got.input, x.detach().numpy())
    assert got.display.shape == (224, 224, 3) and got.display.dtype == np.uint8
    assert got.map.shape == (224, 224) and got.map.dtype == np.float32
    assert got.map.min() >= 0 and got.map.max() == pytest.approx(1.0)
    np.testing.assert_array_equal(got.map, display_map(got.raw, method))
    assert no_hooks(model) and no_grads(model)


def test_integrated_gradients_batching_is_only_float_noise(tiny, chelsea):
    x = input_of(tiny, chelsea)
    app = attribute(tiny, chelsea, "integrated_gradients", target=3).raw
    whole = IntegratedGradients(tiny.module).attribute(
        x, target=3, n_steps=50, internal_batch_size=None
    )[0]
    whole = whole.detach().numpy()
    np.testing.assert_allclose(app, whole, rtol=1e-4, atol=1e-5 * float(np.abs(whole).max()))
    # Completeness (IG's axiom): the attributions add up to f(x) - f(0), up to the path's Riemann error.
    with torch.no_grad():
        gap = float(tiny.module(x)[0, 3] - tiny.module(torch.zeros_like(x))[0, 3])
    assert float(app.sum()) == pytest.approx(gap, rel=0.05, abs=1e-3)
    tiny.module.zero_grad(set_to_none=True)


def test_smoothgrad_depends_on_the_noise(tiny, chelsea):
    a = attribute(tiny, chelsea, "smoothgrad", target=3, seed=11).raw
    b = attribute(tiny, chelsea, "smoothgrad", target=3, seed=12).raw
    plain = attribute(tiny, chelsea, "saliency", target=3).raw
    assert not np.allclose(a, b, rtol=1e-3) and not np.allclose(a, plain, rtol=1e-3)


def test_smoothgrad_is_seeded(tiny, chelsea):
    """The same click gives the same map, whatever torch's global generator holds."""
    torch.manual_seed(1)
    first = attribute(tiny, chelsea, "smoothgrad", target=3)
    torch.manual_seed(2)
    second = attribute(tiny, chelsea, "smoothgrad", target=3)
    np.testing.assert_array_equal(first.raw, second.raw)
    np.testing.assert_array_equal(first.map, second.map)
    np.testing.assert_array_equal(attribute(tiny, chelsea, "smoothgrad", target=3, seed=7).raw,
                                  attribute(tiny, chelsea, "smoothgrad", target=3, seed=7).raw)
    # The global generator is not used (another thread's draws stay its own).
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    attribute(tiny, chelsea, "smoothgrad", target=3)
    assert torch.equal(torch.rand(3), expected)


def test_gradcam_on_a_cnn_equals_layer_gradcam(tiny, chelsea):
    model = tiny.module
    assert default_cam_layer(tiny) == "5"  # the last ReLU: 16 x 28 x 28, before the global pool
    for layer in (None, "2"):
        got = attribute(tiny, chelsea, "gradcam", target=3, layer=layer)
        used = layer or "5"
        assert got.layer == used and got.title == f"Grad-CAM ({used})"
        expected = (
            LayerGradCam(model, dict(model.named_modules())[used])
            .attribute(input_of(tiny, chelsea), target=3, relu_attributions=True)[0, 0]
            .detach()
            .numpy()
        )
        assert got.raw.shape == (28, 28) and expected.max() > 0
        np.testing.assert_allclose(got.raw, expected, rtol=1e-4, atol=1e-6 * float(expected.max()))
        up = F.interpolate(
            torch.from_numpy(expected)[None, None],
            size=(224, 224),
            mode="bilinear",
            align_corners=False,
        )[0, 0].numpy()
        np.testing.assert_allclose(got.map, (up - up.min()) / (up.max() - up.min()), rtol=1e-4, atol=1e-6)
    model.zero_grad(set_to_none=True)
    assert no_hooks(model) and no_grads(model)


def test_lite0_saliency_and_gradcam_equal_captum(lite0, coffee):
    model = lite0.module
    x = input_of(lite0, coffee)
    with torch.no_grad():
        top = int(model(x).argmax())
    sal = attribute(lite0, coffee, "saliency")
    assert sal.target == top
    expected = Saliency(model).attribute(x, target=top, abs=True)[0].detach().numpy()
    np.testing.assert_allclose(sal.raw, expected, rtol=1e-4, atol=1e-6 * float(expected.max()))

    assert default_cam_layer(lite0) == "bn2"
    cam = attribute(lite0, coffee, "gradcam")
    expected = (
        LayerGradCam(model, model.bn2)
        .attribute(x, target=top, relu_attributions=True)[0, 0]
        .detach()
        .numpy()
    )
    assert cam.layer == "bn2" and cam.raw.shape == (7, 7) and expected.max() > 0
    np.testing.assert_allclose(cam.raw, expected, rtol=1e-4, atol=1e-6 * float(expected.max()))
    model.zero_grad(set_to_none=True)
    assert no_hooks(model) and no_grads(model)


class TinyResidual(nn.Module):
    """One ``ReLU(inplace=True)`` module called twice, as in torchvision's ResNet blocks."""

    def __init__(self) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(5)
            self.conv1 = nn.Conv2d(3, 8, 5, stride=4, padding=2)
            self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
            self.fc = nn.Linear(8, 10)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x, relu=None):
        relu = relu or self.relu
        h = relu(self.conv1(x))
        h = relu(self.conv2(h) + h)
        return self.fc(h.mean(dim=(2, 3)))


class _GuidedReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad.clamp(min=0) * (x > 0)


def test_guided_backprop_on_relu_equals_captum(make_loaded, chelsea):
    model = TinyResidual().eval()
    loaded = make_loaded(model, "tiny-residual", TINY_CLASSES)
    got = attribute(loaded, chelsea, "guided_backprop", target=7)
    assert got.notes == []
    expected = guided_backprop(model, input_of(loaded, chelsea), 7)[0].detach().numpy()
    scale = float(np.abs(expected).max())
    np.testing.assert_allclose(got.raw, expected, rtol=1e-4, atol=1e-6 * scale)
    # Written out: every ReLU passes only positive gradients where its input was positive.
    x = input_of(loaded, chelsea)
    (by_hand,) = torch.autograd.grad(model(x, relu=_GuidedReLU.apply)[0, 7], x)
    np.testing.assert_allclose(got.raw, by_hand[0].numpy(), rtol=1e-4, atol=1e-6 * scale)
    (plain,) = torch.autograd.grad(model(x)[0, 7], x)
    assert not np.allclose(got.raw, plain[0].numpy(), rtol=0.1, atol=0.1 * scale)
    assert no_hooks(model) and no_grads(model)


def test_guided_backprop_hooks_relu6(lite0, coffee):
    """EfficientNet-Lite has ReLU6 only: Captum alone would return the plain gradient."""
    model = lite0.module
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    got = attribute(lite0, coffee, "guided_backprop", target=967)
    assert got.notes == []
    # Independently: a copy without in-place activations, every ReLU6 passing only positive gradients.
    guided = copy.deepcopy(model)
    for m in guided.modules():
        if isinstance(m, nn.ReLU6):
            m.inplace = False
            m.register_full_backward_hook(lambda _m, grad_in, _grad_out: (grad_in[0].clamp(min=0),))
    x = input_of(lite0, coffee)
    guided(x)[0, 967].backward()
    expected = x.grad[0].numpy()
    np.testing.assert_allclose(
        got.raw, expected, rtol=1e-4, atol=1e-6 * float(np.abs(expected).max())
    )
    x = input_of(lite0, coffee)
    (plain,) = torch.autograd.grad(model(x)[0, 967], x)
    plain = plain[0].numpy()
    assert not np.allclose(got.raw, plain, rtol=0.1, atol=0.1 * np.abs(plain).max())
    saliency = attribute(lite0, coffee, "saliency", target=967)
    np.testing.assert_allclose(
        saliency.raw, np.abs(plain), rtol=1e-4, atol=1e-6 * np.abs(plain).max()
    )
    assert not np.allclose(got.raw, saliency.raw, rtol=0.1, atol=0.1 * np.abs(plain).max())
    assert no_hooks(model) and no_grads(model)


def test_guided_backprop_on_a_gelu_vit_says_so(deit_tiny, chelsea):
    got = attribute(deit_tiny, chelsea, "guided_backprop", target=1)
    assert len(got.notes) == 1 and "no ReLU modules" in got.notes[0] and "GELU" in got.notes[0]
    x = input_of(deit_tiny, chelsea)
    (plain,) = torch.autograd.grad(deit_tiny.module(x)[0, 1], x)
    np.testing.assert_allclose(
        got.raw, plain[0].numpy(), rtol=1e-4, atol=1e-6 * float(plain.abs().max())
    )
    assert no_hooks(deit_tiny.module) and no_grads(deit_tiny.module)


def test_occlusion_windows(tiny, deit_tiny, tv_vit):
    assert occlusion_window(tiny, 224) == (32, 16)
    assert occlusion_window(deit_tiny, 224) == (16, 16)
    assert occlusion_window(tv_vit, 224) == (32, 32)


def test_occlusion_on_a_vit_uses_patches(tv_vit, chelsea):
    got = attribute(tv_vit, chelsea, "occlusion", target=5)
    assert any("32 px, stride 32 px" in n for n in got.notes)
    expected = (
        Occlusion(tv_vit.module)
        .attribute(
            input_of(tv_vit, chelsea),
            target=5,
            sliding_window_shapes=(3, 32, 32),
            strides=(3, 32, 32),
            baselines=0.0,
        )[0]
        .detach()
        .numpy()
    )
    np.testing.assert_allclose(
        got.raw, expected, rtol=1e-4, atol=1e-6 * float(np.abs(expected).max())
    )
    # One value per patch and colour channel.
    assert np.all(
        got.raw.reshape(3, 7, 32, 7, 32) == got.raw.reshape(3, 7, 32, 7, 32)[:, :, :1, :, :1]
    )


# --- Grad-CAM on Vision Transformers ------------------------------------------------------------


def manual_vit_gradcam(loaded, image, layer: str, prefix: int, target: int) -> np.ndarray:
    """Layer output kept with retain_grad; prefix tokens dropped; tokens on the grid; ReLU(sum w_c A_c)."""
    model = loaded.module
    kept = {}

    def keep(_m, _inputs, output):
        output.retain_grad()
        kept["out"] = output

    handle = dict(model.named_modules())[layer].register_forward_hook(keep)
    try:
        model(input_of(loaded, image))[0, target].backward()
    finally:
        handle.remove()
        model.zero_grad(set_to_none=True)
    act = kept["out"][0, prefix:].detach()  # patches x channels
    grad = kept["out"].grad[0, prefix:]
    side = int(round(act.shape[0] ** 0.5))
    assert side * side == act.shape[0]
    weights = grad.mean(dim=0)  # the mean gradient of each channel over the grid
    return torch.relu((act * weights).sum(dim=1)).reshape(side, side).numpy()


VITS = [  # fixture, default layer, last block's output, prefix tokens, grid side
    ("deit_tiny", "blocks.11.norm1", "blocks.11", 1, 14),
    ("tv_vit", "encoder.layers.encoder_layer_1.ln_1", "encoder.layers.encoder_layer_1", 1, 7),
    ("deit_distilled", "blocks.11.norm1", "blocks.11", 2, 14),
    ("registers", "blocks.1.norm1", "blocks.1", 5, 14),
]


@pytest.mark.parametrize("which, layer, last, prefix, side", VITS, ids=[v[0] for v in VITS])
def test_vit_gradcam_at_the_default_layer(request, chelsea, which, layer, last, prefix, side):
    loaded = request.getfixturevalue(which)
    assert default_cam_layer(loaded) == layer
    got = attribute(loaded, chelsea, "gradcam", target=9)
    assert got.layer == layer
    assert got.raw.shape == (side, side), (
        f"Grad-CAM of {which} is not on its {side} x {side} patch grid"
    )
    expected = manual_vit_gradcam(loaded, chelsea, layer, prefix, 9)
    assert expected.max() > 0 and got.raw.max() > 0
    np.testing.assert_allclose(got.raw, expected, rtol=1e-4, atol=1e-6 * float(expected.max()))
    assert (
        got.map.shape == (224, 224) and got.map.max() == pytest.approx(1.0) and got.map.min() >= 0
    )
    assert no_hooks(loaded.module) and no_grads(loaded.module)


@pytest.mark.parametrize(
    "which, layer, last", [v[:3] for v in VITS[:2]], ids=[v[0] for v in VITS[:2]]
)
def test_vit_gradcam_at_the_last_block_names_the_default(request, chelsea, which, layer, last):
    loaded = request.getfixturevalue(which)
    with pytest.raises(LayerError, match=re.escape(layer)) as info:
        attribute(loaded, chelsea, "gradcam", target=9, layer=last)
    assert last in str(info.value) and "\n" not in str(info.value)
    assert no_hooks(loaded.module) and no_grads(loaded.module) and not loaded.module.training


def test_gradcam_at_an_unknown_layer(tiny, chelsea):
    with pytest.raises(LayerError, match="nope"):
        attribute(tiny, chelsea, "gradcam", layer="nope")


@pytest.mark.parametrize(
    "which, layer, prefix",
    [
        ("deit_tiny", "blocks.5", 1),
        ("deit_tiny", "patch_embed", 0),
        ("tv_vit", "encoder.layers.encoder_layer_0.mlp", 1),
    ],
)
def test_vit_gradcam_at_other_token_layers(request, chelsea, which, layer, prefix):
    """Any token layer works: inside the network (class token dropped) or the patch embedding (no class token)."""
    loaded = request.getfixturevalue(which)
    got = attribute(loaded, chelsea, "gradcam", target=9, layer=layer)
    expected = manual_vit_gradcam(loaded, chelsea, layer, prefix, 9)
    assert got.raw.shape == expected.shape and expected.max() > 0
    np.testing.assert_allclose(got.raw, expected, rtol=1e-4, atol=1e-6 * float(expected.max()))


def test_vit_gradcam_at_the_head_has_no_maps(deit_tiny, chelsea):
    with pytest.raises(LayerError, match="no spatial maps"):
        attribute(deit_tiny, chelsea, "gradcam", layer="head")


def test_gradcam_at_a_module_with_a_tuple_output(tv_vit, chelsea):
    """torchvision's MultiheadAttention returns ``(output, None)``: a map of its output, or a LayerError."""
    layer = "encoder.layers.encoder_layer_0.self_attention"
    try:
        got = attribute(tv_vit, chelsea, "gradcam", target=9, layer=layer)
    except LayerError as exc:
        assert layer in str(exc) and "\n" not in str(exc)
    else:
        module = tv_vit.module.encoder.layers[0].self_attention
        kept = {}

        def keep(_m, _inputs, output):
            output[0].retain_grad()
            kept["out"] = output[0]

        handle = module.register_forward_hook(keep)
        try:
            tv_vit.module(input_of(tv_vit, chelsea))[0, 9].backward()
        finally:
            handle.remove()
            tv_vit.module.zero_grad(set_to_none=True)
        act, grad = kept["out"][0, 1:].detach(), kept["out"].grad[0, 1:]
        expected = torch.relu((act * grad.mean(dim=0)).sum(dim=1)).reshape(7, 7).numpy()
        np.testing.assert_allclose(got.raw, expected, rtol=1e-4, atol=1e-6 * float(expected.max()))
    assert no_hooks(tv_vit.module) and no_grads(tv_vit.module)


def test_gradcam_at_a_module_that_does_not_run(deit_tiny, chelsea):
    """With fused attention, timm never calls ``attn_drop``: a LayerError naming it, not Captum's assertion."""
    layer = "blocks.3.attn.attn_drop"
    with pytest.raises(LayerError) as info:
        attribute(deit_tiny, chelsea, "gradcam", layer=layer)
    assert layer in str(info.value) and "\n" not in str(info.value)
    assert no_hooks(deit_tiny.module) and no_grads(deit_tiny.module)


# --- targets ----------------------------------------------------------------------------------


def test_default_target_is_the_top_class(tiny, lite0, chelsea, coffee):
    for loaded, image in [(tiny, chelsea), (lite0, coffee)]:
        with torch.no_grad():
            logits = loaded.module(loaded.preprocess.batch(image))[0]
        got = attribute(loaded, image, "saliency")
        assert (
            got.target == int(logits.argmax())
            and got.target_label == loaded.class_names[got.target]
        )
        assert got.probability == pytest.approx(float(torch.softmax(logits, 0).max()), rel=1e-5)


def test_target_by_name(lite0, coffee):
    got = attribute(lite0, coffee, "saliency", target="espresso")
    assert got.target == 967 and got.target_label == "espresso"
    assert attribute(lite0, coffee, "saliency", target="Espresso").target == 967
    assert attribute(lite0, coffee, "saliency", target="967").target == 967
    with pytest.raises(UserError, match="Close: espresso") as info:
        attribute(lite0, coffee, "saliency", target="espress")
    assert "0-999" in str(info.value)


@pytest.mark.parametrize("target", [10, -1, "5000", "zebra"])
def test_bad_target_names_the_range(tiny, chelsea, target):
    with pytest.raises(UserError, match="0-9\\b") as info:
        attribute(tiny, chelsea, "saliency", target=target)
    assert "\n" not in str(info.value)
    assert not tiny.module.training and no_grads(tiny.module)


def test_no_classifier_head(make_timm_vit, make_loaded, chelsea):
    features = make_loaded(
        make_timm_vit("deit_tiny_patch16_224", num_classes=0, depth=1), "deit-features"
    )
    with pytest.raises(UserError, match="no classifier head"):
        attribute(features, chelsea, "saliency")
    conv_only = make_loaded(nn.Sequential(nn.Conv2d(3, 4, 3)), "conv-only")
    with pytest.raises(UserError, match="no classifier head"):
        attribute(conv_only, chelsea, "gradcam")


def test_unknown_method(tiny, chelsea):
    with pytest.raises(UserError, match="nope.*saliency"):
        attribute(tiny, chelsea, "nope")


# --- display maps, state, memory, cancel -----------------------------------------------------------


def test_display_map_by_hand():
    raw = np.zeros((3, 10, 10), np.float32)
    raw[0] = np.arange(100, dtype=np.float32).reshape(10, 10) - 50  # |sum| = |i - 50|
    raw[1, 0, 0] = -1000  # one outlier, clipped
    m = display_map(raw, "saliency")
    assert m.shape == (10, 10) and m.dtype == np.float32
    expected = np.abs(raw.sum(0)) / np.percentile(np.abs(raw.sum(0)), 99)
    np.testing.assert_allclose(m, np.clip(expected, 0, 1), rtol=1e-6)
    assert m[0, 0] == 1.0 and m[5, 0] == 0.0  # i = 50
    cam = np.array([[0.0, 1.0], [2.0, 4.0]], np.float32)
    np.testing.assert_array_equal(display_map(cam, "gradcam"), cam / 4)
    # Min-max (pytorch-grad-cam's scale_cam_image): the weakest pixel is 0, no floor is kept.
    floor = np.array([[1.0, 2.0], [3.0, 5.0]], np.float32)
    np.testing.assert_array_equal(display_map(floor, "gradcam"), (floor - 1) / 4)
    np.testing.assert_array_equal(display_map(np.full((4, 4), 3.0), "gradcam"), np.zeros((4, 4)))
    np.testing.assert_array_equal(display_map(np.zeros((3, 4, 4)), "saliency"), np.zeros((4, 4)))
    np.testing.assert_array_equal(display_map(np.zeros((4, 4)), "gradcam"), np.zeros((4, 4)))


def test_training_mode_restored(tiny, chelsea):
    model = tiny.module
    model.train()
    try:
        for method in ("saliency", "gradcam"):
            attribute(tiny, chelsea, method)
            assert model.training and all(m.training for m in model.modules()), method
    finally:
        model.eval()
    assert no_grads(model)


def live_tensors() -> int:
    return sum(issubclass(type(o), torch.Tensor) for o in gc.get_objects())


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc for RSS")
def test_repeated_attributions_do_not_grow_memory(tiny, chelsea):
    """tracemalloc sees numpy and Python objects; torch's own allocations only show as live tensors and RSS."""
    for _ in range(3):
        attribute(tiny, chelsea, "saliency")
    gc.collect()
    tensors, rss0 = live_tensors(), rss()
    tracemalloc.start()
    try:
        for _ in range(20):
            result = attribute(tiny, chelsea, "saliency")  # about 1.2 MB of arrays each
        del result
        gc.collect()
        traced, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert traced < 2e6, f"{traced / 1e6:.1f} MB kept after 20 attributions"
    assert live_tensors() <= tensors, "tensors kept alive by repeated attributions"
    grown = rss() - rss0
    assert grown < 30e6, f"RSS grew {grown / 1e6:.1f} MB over 20 attributions"
    assert no_hooks(tiny.module) and no_grads(tiny.module)


@pytest.mark.parametrize("method, total", [("integrated_gradients", 7), ("occlusion", 23)])
def test_progress_counts_passes(tiny, chelsea, method, total):
    """IG: ceil(50 / 8) batches; occlusion at 224: 13 x 13 windows in batches of 8, plus the unoccluded pass."""
    seen = []
    attribute(tiny, chelsea, method, progress=lambda done, tot, text: seen.append((done, tot)))
    assert seen[-1] == (total, total) and len(seen) == total
    assert [d for d, _ in seen] == list(range(1, total + 1))


@pytest.mark.parametrize("method", ["integrated_gradients", "occlusion"])
def test_cancel_from_progress_stops(tiny, chelsea, method):
    token = CancelToken()
    calls = []

    def progress(done, total, text):
        calls.append(done)
        token.cancel()

    with pytest.raises(Cancelled):
        attribute(tiny, chelsea, method, progress=progress, cancel=token)
    assert calls == [1]  # the next pass checked the token and stopped
    model = tiny.module
    assert not model.training and no_grads(model) and no_hooks(model)


# --- Grad-CAM's overlay scale and all-zero gradients ---------------------------------------------


def reference_gradcam_overlay(model: nn.Module, layer: nn.Module, x: torch.Tensor, target: int) -> np.ndarray:
    """Grad-CAM as pytorch-grad-cam computes it, with plain torch hooks: weights = the
    mean gradient per channel, cam = ReLU(sum w * A), bilinear upsampling to the input,
    then ``scale_cam_image``: ``cam - min``, divided by ``1e-7 + max``."""
    kept = {}

    def hook(_m, _inputs, output):
        kept["a"] = output
        output.register_hook(lambda g: kept.__setitem__("g", g))

    handle = layer.register_forward_hook(hook)
    try:
        score = model(x.detach().clone().requires_grad_(True))[0, target]
        score.backward()
    finally:
        handle.remove()
        model.zero_grad(set_to_none=True)
    a, g = kept["a"].detach()[0], kept["g"][0]
    weights = g.mean(dim=(1, 2))
    cam = torch.relu((weights[:, None, None] * a).sum(dim=0))
    up = F.interpolate(cam[None, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0].numpy()
    up = up - up.min()
    return up / (1e-7 + up.max())


def test_gradcam_overlay_is_min_max_scaled_like_pytorch_grad_cam(resnet18_loaded, chelsea):
    model = resnet18_loaded.module
    x = input_of(resnet18_loaded, chelsea)
    got = attribute(resnet18_loaded, chelsea, "gradcam", target=875, layer="layer4")
    expected = reference_gradcam_overlay(model, model.layer4, x, 875)  # its ReLU map has a floor
    assert got.map.shape == expected.shape == (224, 224)
    np.testing.assert_allclose(got.map, expected, atol=2e-5)
    assert got.map.min() == 0.0 and got.map.max() == 1.0
    # Dividing by the maximum alone kept a floor that differed by this much (0.099 on the ResNet-18).
    up = F.interpolate(torch.from_numpy(got.raw)[None, None], size=(224, 224), mode="bilinear",
                       align_corners=False)[0, 0].numpy()
    assert float(np.abs(up / up.max() - expected).max()) > 0.01
    assert no_hooks(model) and no_grads(model)


def zero_head_vit() -> nn.Module:
    """A seeded small torchvision ViT with the head torchvision builds: all zeros."""
    import torchvision

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(9)
        model = torchvision.models.VisionTransformer(
            image_size=224, patch_size=32, num_layers=2, num_heads=4, hidden_dim=64, mlp_dim=128)
    assert not model.heads.head.weight.any() and not model.heads.head.bias.any()
    return model.eval()


def test_gradcam_on_a_zero_head_says_every_gradient_is_zero(make_loaded, chelsea):
    loaded = make_loaded(zero_head_vit(), "zero-head-vit", [f"class{i}" for i in range(1000)])
    layer = default_cam_layer(loaded)
    with pytest.raises(UserError) as info:
        attribute(loaded, chelsea, "gradcam", target=3)
    message = str(info.value)
    assert message.startswith("gradcam: every gradient is zero for class 3 (class3)"), message
    assert "does not depend on its input" in message and "classifier head all zeros" in message
    assert layer not in message and "\n" not in message  # the layer is not blamed, nor suggested
    assert no_hooks(loaded.module) and no_grads(loaded.module)


class Bypass(nn.Module):
    """Conv maps that never reach the logits (a zero head), plus a path straight from the input."""

    def __init__(self) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(4)
            self.conv = nn.Conv2d(3, 8, 5, stride=4, padding=2)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(8, 10)
        with torch.no_grad():
            self.fc.weight.zero_()
            self.fc.bias.zero_()

    def forward(self, x):
        h = self.relu(self.conv(x))
        return self.fc(h.mean(dim=(2, 3))) + x.mean(dim=(1, 2, 3))[:, None] * torch.arange(10.0)


def test_gradcam_at_a_failing_default_layer_does_not_suggest_it(make_loaded, chelsea):
    loaded = make_loaded(Bypass().eval(), "bypass", TINY_CLASSES)
    layer = default_cam_layer(loaded)
    assert layer == "relu"
    with pytest.raises(LayerError) as info:
        attribute(loaded, chelsea, "gradcam", target=3)
    message = str(info.value)
    assert "zero everywhere" in message and f"use {layer}" not in message and "earlier layer" in message

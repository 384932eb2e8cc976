"""Deconvnet and guided backprop projections (``vizapp.explain.projection``) against Captum's
plain ``Deconvolution`` / ``GuidedBackprop`` on a wrapper returning one unit's activation
(research14.md, section 3), on TinyVGG and on EfficientNet-Lite0 (whose ReLU6 are swapped)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from models import load_model
from vizapp.explain import projection as P
from vizapp.probing.probe import resolve_layers

LITE_LAYER, LITE_UNIT = "blocks.3", (5, 7, 7)
TINY_LAYER, TINY_UNIT = "conv2_1", (3, 5, 5)


@pytest.fixture(scope="module")
def tiny():
    return load_model("tinyvgg_shapes")


@pytest.fixture(scope="module")
def shape_image():
    from vizapp.core.paths import resource

    with Image.open(resource("samples", "star.png")) as im:
        return im.convert("RGB")


class _Unit(nn.Module):
    """The activation of one unit of ``layer`` as a 1-output model (research14.md)."""

    def __init__(self, model: nn.Module, layer: str, unit) -> None:
        super().__init__()
        self.model, self.unit = model, unit
        self.layer = resolve_layers(model, [layer])[layer]

    def forward(self, x):
        out = []
        handle = self.layer.register_forward_hook(lambda _m, _i, o: out.append(o))
        try:
            self.model(x)
        finally:
            handle.remove()
        c, y, xx = self.unit
        return out[0][:, c, y, xx][:, None]


class _ReLU6AsReLU(nn.ReLU):  # written again here, not taken from the module under test
    def forward(self, x):
        return F.relu6(x)


def _swapped(model: nn.Module) -> nn.Module:
    twin = copy.deepcopy(model).eval()
    for parent in twin.modules():
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.ReLU6):
                setattr(parent, name, _ReLU6AsReLU())
    return twin


def _captum(method: str, model: nn.Module, layer: str, unit, x: torch.Tensor) -> np.ndarray:
    from captum.attr import Deconvolution, GuidedBackprop

    klass = Deconvolution if method == "deconvnet" else GuidedBackprop
    a = klass(_Unit(model, layer, unit)).attribute(x.clone().requires_grad_(True), target=0)
    a = a[0].detach().permute(1, 2, 0).numpy()
    return np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a


def _gradient(model: nn.Module, layer: str, unit, x: torch.Tensor) -> np.ndarray:
    xin = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(_Unit(model, layer, unit)(xin).sum(), xin)
    g = g[0].permute(1, 2, 0).numpy()
    return np.repeat(g, 3, axis=2) if g.shape[2] == 1 else g


def _state(model: nn.Module):
    return ([m.training for m in model.modules()],
            [(len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks)) for m in model.modules()],
            [type(m).__name__ for m in model.modules()], [p.requires_grad for p in model.parameters()])


@pytest.mark.parametrize("method", P.METHODS)
def test_tinyvgg_projection_equals_captum_on_the_unit(tiny, shape_image, method):
    x = tiny.preprocess.batch(shape_image)
    got = P.project(tiny, shape_image, TINY_LAYER, TINY_UNIT, method)
    assert got.shape == (32, 32, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, _captum(method, tiny.module, TINY_LAYER, TINY_UNIT, x), rtol=1e-5, atol=1e-6)
    assert np.abs(got - _gradient(tiny.module, TINY_LAYER, TINY_UNIT, x)).max() > 0.1  # a rule, not the gradient


@pytest.mark.parametrize("method", P.METHODS)
def test_lite0_projection_equals_captum_with_relu6_swapped(lite0, chelsea, method):
    before = _state(lite0.module)
    lite0.module.train()  # a shared model left in training mode keeps it
    lite0.module.bn1.eval()  # ... with mixed flags
    mixed = _state(lite0.module)
    try:
        x = lite0.preprocess.batch(chelsea)
        got = P.project(lite0, chelsea, LITE_LAYER, LITE_UNIT, method)
        twin = _swapped(lite0.module)
        np.testing.assert_allclose(got, _captum(method, twin, LITE_LAYER, LITE_UNIT, x), rtol=1e-4, atol=1e-6)
        # The swap is in effect: not the plain input gradient, which Captum gives on the model as loaded.
        plain = _gradient(twin, LITE_LAYER, LITE_UNIT, x)
        assert np.abs(got - plain).max() > 0.1 * np.abs(plain).max()
        np.testing.assert_allclose(_captum(method, copy.deepcopy(lite0.module).eval(), LITE_LAYER, LITE_UNIT, x),
                                   plain, rtol=1e-4, atol=1e-6)
        # The copy computes what the model computes, and the shared model is as it was.
        copy_module, relus, swapped = P.projection_model(lite0.module)
        assert swapped > 0 and relus == swapped
        assert not any(isinstance(m, nn.ReLU6) for m in copy_module.modules())
        assert _state(lite0.module) == mixed
    finally:
        lite0.module.eval()
    assert _state(lite0.module) == before
    with torch.no_grad():
        np.testing.assert_allclose(copy_module(x).numpy(), lite0.module(x).numpy(), rtol=1e-4, atol=1e-4)


def test_lite0_copy_is_cached_and_shares_the_weights(lite0):
    a, _, _ = P.projection_model(lite0.module)
    b, _, _ = P.projection_model(lite0.module)
    assert a is b and a is not lite0.module
    assert all(p is q for p, q in zip(a.parameters(), lite0.module.parameters(), strict=True))


def test_deconvnet_without_max_pooling_ignores_the_image(lite0, chelsea, coffee):
    """No switches: Lite0's deconvnet projection is the same for any image; guided backprop is not."""
    deconv = [P.project(lite0, im, LITE_LAYER, LITE_UNIT, "deconvnet") for im in (chelsea, coffee)]
    guided = [P.project(lite0, im, LITE_LAYER, LITE_UNIT, "guided") for im in (chelsea, coffee)]
    np.testing.assert_allclose(deconv[0], deconv[1], atol=1e-6)
    assert np.abs(guided[0] - guided[1]).max() > 0.1


def test_project_many_batches_crops_and_displays(lite0, chelsea, coffee):
    images = [chelsea, coffee, np.asarray(chelsea)]
    units = [(5, 7, 7), (9, 3, 10), (5, 0, 13)]
    boxes = [(30.0, 40.0, 130.0, 150.0), (0.0, 0.0, 224.0, 224.0), (200.5, 0.0, 224.0, 57.0)]
    shown = P.project_many(lite0, images, LITE_LAYER, units, "guided", boxes)
    assert [s.shape for s in shown] == [(110, 100, 3), (224, 224, 3), (57, 24, 3)]
    for image, unit, box, got in zip(images, units, boxes, shown, strict=True):
        raw = P.project(lite0, image, LITE_LAYER, unit, "guided")
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, P.display(raw, box))
    whole = P.project_many(lite0, [chelsea], LITE_LAYER, [(5, 7, 7)], "deconvnet")[0]
    assert whole.shape == (224, 224, 3)


def test_display_is_signed_around_grey():
    raw = np.zeros((4, 4, 3), np.float32)
    raw[0, 0] = (2.0, -2.0, 0.0)
    shown = P.display(raw, (0, 0, 2, 2))
    assert shown.shape == (2, 2, 3)
    assert tuple(shown[0, 0]) == (255, 1, 128) and (shown[1:, 1:] == 128).all()
    assert (P.display(np.zeros((3, 3, 3))) == 128).all()


def test_bad_method_and_unit(tiny, shape_image):
    from vizapp.core.errors import UserError

    with pytest.raises(UserError, match="projection method 'lrp' is unknown"):
        P.project(tiny, shape_image, TINY_LAYER, TINY_UNIT, "lrp")
    with pytest.raises(UserError, match="outside conv2_1"):
        P.project(tiny, shape_image, TINY_LAYER, (999, 0, 0))


@pytest.fixture(scope="module")
def shapes_index(tmp_path_factory, tiny):
    """TinyVGG's conv2_1 indexed over the shipped shape samples (a folder collection)."""
    import shutil

    from vizapp.collection.datasets import ImageCollection
    from vizapp.collection.indexing import build_index
    from vizapp.core.paths import resource

    folder = tmp_path_factory.mktemp("shapes") / "shapes"
    folder.mkdir()
    for name in ("circle", "cross", "diamond", "hexagon", "ring", "square", "star", "triangle"):
        shutil.copy(resource("samples", f"{name}.png"), folder / f"{name}.png")
    collection = ImageCollection.from_folder(folder)
    index = build_index(tiny, collection, [TINY_LAYER], k=9, out=tmp_path_factory.mktemp("idx"), workers=0)
    return collection, index


def test_top_projections_are_the_channels_top_units_cropped_to_their_boxes(tiny, shapes_index):
    from vizapp import analysis

    collection, index = shapes_index
    seen = []
    result = analysis.top_projections(tiny, collection, index, TINY_LAYER, 3, "deconvnet",
                                      progress=lambda *a: seen.append(a))
    patches = index.top_patches(TINY_LAYER, 3)
    assert result.patches == patches and result.channel == 3 and result.layer == TINY_LAYER
    assert len(result.images) == len(result.boxes) == len(patches) > 0
    for patch, box, image in zip(patches, result.boxes, result.images, strict=True):
        assert image.shape == (int(box[3] - box[1]), int(box[2] - box[0]), 3)
        raw = P.project(tiny, collection.open(patch.index), TINY_LAYER, (3, patch.y, patch.x), "deconvnet")
        np.testing.assert_array_equal(image, P.display(raw, box))
    assert seen[-1][0] == seen[-1][1]  # the progress bar ends full
    assert not result.notes  # TinyVGG has ReLUs and max-pooling


def test_top_projections_cancel(tiny, shapes_index):
    from vizapp import analysis
    from vizapp.core.errors import Cancelled
    from vizapp.core.jobs import CancelToken

    collection, index = shapes_index
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        analysis.top_projections(tiny, collection, index, TINY_LAYER, 3, "guided", cancel=token)


def _centre_of_mass(raw: np.ndarray) -> tuple[float, float]:
    m = np.abs(raw).sum(-1)
    yy, xx = np.mgrid[0 : m.shape[0], 0 : m.shape[1]]
    return float((m * xx).sum() / m.sum()), float((m * yy).sum() / m.sum())


def _registered(loaded, images, layer, units, map_size, method, stride, offset):
    """Each projection is cut from its unit's whole field, centred on the unit (its centre at
    ``offset + stride * (x, y)`` model-input pixels, worked out by hand for the network), the
    projection's energy lies within an eighth of the field of that centre and in the crop's
    middle half, and the crop and the patch beside it are the same region of the full
    projection and of the model-input pixels, pixel for pixel."""
    result = P.project_units(loaded, images, layer, units, map_size, False, method)
    assert len(result.inputs) == len(result.images) == len(units)
    for image, unit, box, shown, patch in zip(images, units, result.boxes, result.images, result.inputs, strict=True):
        _, y, x = unit
        centre = ((box[0] + box[2]) / 2 - 0.5, (box[1] + box[3]) / 2 - 0.5)
        assert centre == pytest.approx((offset + stride * x, offset + stride * y), abs=0.51), (unit, box)
        side = box[2] - box[0]
        raw = P.project(loaded, image, layer, unit, method)
        cx, cy = _centre_of_mass(raw)
        assert np.hypot(cx - centre[0], cy - centre[1]) <= side / 8, (unit, (cx, cy), centre)
        assert box[0] + side / 4 <= cx <= box[2] - side / 4 and box[1] + side / 4 <= cy <= box[3] - side / 4
        x0, y0, x1, y1 = P.pixel_box(box)
        assert shown.shape == patch.shape == (y1 - y0, x1 - x0, 3)
        np.testing.assert_array_equal(shown, P.display(raw, box))
        pixels = loaded.preprocess.batch_and_display(image)[1]
        inside = np.zeros(pixels.shape[:2], bool)
        inside[max(0, y0) : y1, max(0, x0) : x1] = True
        ys, xs = np.nonzero(inside)
        np.testing.assert_array_equal(patch[ys - y0, xs - x0], pixels[ys, xs])  # the patch: model-input pixels
        values, got = raw[ys, xs], shown[ys - y0, xs - x0].astype(int) - 128
        clear = np.abs(values) > 0.01 * np.percentile(np.abs(values), P.CONTRAST)  # the projection under the box
        assert clear.sum() > 0.1 * clear.size
        np.testing.assert_array_equal(np.sign(got[clear]), np.sign(values[clear]))
        outside = np.ones(patch.shape[:2], bool)
        outside[ys - y0, xs - x0] = False
        assert (patch[outside] == P.OUTSIDE).all() and (shown[outside] == P.OUTSIDE).all()


def test_lite0_projections_are_centred_on_their_units_and_line_up_with_their_patches(lite0, chelsea, coffee):
    # blocks.3 (14 x 14, stride 16, same padding: unit x's field is centred on input pixel 16 x);
    # (5, 0, 13) is the top-right unit blocks.3 channel 5 peaks at on most samples: its field
    # runs past the image, and a box clipped to the image put the unit in the crop's corner.
    units = [(5, 0, 13), (5, 7, 7), (9, 5, 4)]
    _registered(lite0, [chelsea, chelsea, coffee], LITE_LAYER, units, (14, 14), "guided", 16, 0)


def test_tinyvgg_projections_are_centred_on_their_units_and_line_up_with_their_patches(tiny, shapes_index):
    # conv2_2 (10 x 10, no padding, after one 2x2 max-pool: unit x sees input pixels 2x .. 2x + 13).
    collection, index = shapes_index
    images = [collection.open(i) for i in (0, 3, 6)]
    units = [(4, 0, 9), (4, 5, 5), (7, 9, 0)]
    _registered(tiny, images, "conv2_2", units, (10, 10), "deconvnet", 2, 6.5)

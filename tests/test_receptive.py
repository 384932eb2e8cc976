"""Receptive-field boxes in original-image pixels cover every pixel that can change the unit,
through the resize filter of the preprocessing (antialiased when shrinking)."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn.functional as tf
from torch import nn

from models import LoadedModel, Preprocess
from vizapp.explain.receptive import analytic_field, gradient_boxes


def _chain(pre: Preprocess) -> LoadedModel:
    """Convolutions and an average pool, no ReLU: every path of the field carries a gradient."""
    torch.manual_seed(7)
    net = nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(3, 4, 3, padding=1)),
        ("conv2", nn.Conv2d(4, 4, 5, stride=2, padding=2)),
        ("pool", nn.AvgPool2d(2)),
        ("conv3", nn.Conv2d(4, 4, 3, padding=1)),
    ])).eval()
    return LoadedModel("chain", "chain", "cnn", net, pre, None, source="tests")


def _original_gradient(pre: Preprocess, net: nn.Module, size: tuple[int, int], unit: tuple[int, int]) -> np.ndarray:
    """Where a unit's gradient lands in the original image, through a differentiable copy of
    the preprocessing (torch's resize with the same filter, then the centre crop)."""
    w, h = size
    rw, rh = pre.resized_size(size)
    left, top = pre.crop_offsets(size)
    original = torch.rand(1, 3, h, w, dtype=torch.float64, generator=torch.Generator().manual_seed(w * h)).requires_grad_(True)
    if pre.interpolation == "nearest":
        resized = tf.interpolate(original, size=(rh, rw), mode="nearest")
    else:
        resized = tf.interpolate(original, size=(rh, rw), mode=pre.interpolation, align_corners=False, antialias=True)
    crop = resized[:, :, top : top + pre.crop, left : left + pre.crop]
    out = net.double()(crop)
    out[0, :, unit[0], unit[1]].sum().backward()
    net.float()
    return (original.grad[0].abs().sum(dim=0) > 0).numpy()


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "nearest"])
@pytest.mark.parametrize("size", [(90, 85), (400, 240), (173, 610), (1000, 750), (40, 30), (33, 70)])
def test_field_boxes_cover_every_original_pixel_that_changes_the_unit(interpolation, size):
    pre = Preprocess(resize=80, crop=64, interpolation=interpolation)
    loaded = _chain(pre)
    field = analytic_field(loaded, "conv3")
    assert field is not None and field.size > 1
    w, h = size
    missed_by_geometry = 0
    for unit in [(0, 0), (3, 5), (7, 7), (0, 7), (5, 1)]:
        mask = _original_gradient(pre, loaded.module, size, unit)
        got = _bbox(mask)
        box = pre.field_to_original(field.box(*unit), size)
        x0, y0, x1, y1 = box
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
        # Every pixel with a gradient lies inside the box ...
        assert x0 <= got[0] and y0 <= got[1] and got[2] <= x1 and got[3] <= y1, (unit, got, box)
        # ... and the box is no wider than that, give or take a tap of zero weight at its edge.
        assert max(got[0] - x0, got[1] - y0, x1 - got[2], y1 - got[3]) <= 1, (unit, got, box)
        geometric = pre.box_to_original(field.box(*unit), size)
        if interpolation == "nearest":  # one pixel read per resized pixel: no wider than the geometry
            assert box[0] >= geometric[0] and box[1] >= geometric[1] and box[2] <= geometric[2] and box[3] <= geometric[3]
        else:
            assert box[0] <= geometric[0] and box[1] <= geometric[1] and box[2] >= geometric[2] and box[3] >= geometric[3]
            gx0, gy0, gx1, gy1 = geometric
            missed_by_geometry += int(mask[gy0:gy1, gx0:gx1].sum() < mask.sum())
    if interpolation == "bicubic" or (interpolation == "bilinear" and max(size) > 200):
        # The geometric box alone leaves out pixels the filter reads (what the widening is for).
        assert missed_by_geometry > 0


def test_fields_to_original_is_field_to_original_for_each_row():
    pre = Preprocess(resize=256, crop=224, interpolation="bicubic")
    rng = np.random.default_rng(0)
    xs, ys = np.sort(rng.uniform(0, 224, (50, 2)), axis=1), np.sort(rng.uniform(0, 224, (50, 2)), axis=1)
    boxes = np.stack([xs[:, 0], ys[:, 0], xs[:, 1], ys[:, 1]], axis=1)  # x0 y0 x1 y1
    sizes = rng.integers(20, 3000, (50, 2))
    table = pre.fields_to_original(boxes, sizes)
    for box, size, row in zip(boxes, sizes, table, strict=True):
        one = pre.field_to_original(tuple(box), (int(size[0]), int(size[1])))
        assert one == tuple(int(v) for v in row)
        geometric = pre.box_to_original(tuple(box), (int(size[0]), int(size[1])))  # bicubic: always wider
        assert one[0] <= geometric[0] and one[1] <= geometric[1] and one[2] >= geometric[2] and one[3] >= geometric[3]


# --- gradient boxes measured on few units --------------------------------------------------


@pytest.fixture
def count_units(monkeypatch):
    """The units each forward/backward pass of ``gradient_boxes`` measured."""
    import vizapp.explain.receptive as receptive

    passes: list[list[tuple[int, int]]] = []
    real = receptive._Measure.__call__

    def counting(self, units, samples, generator):
        passes.append(list(units))
        return real(self, units, samples, generator)

    monkeypatch.setattr(receptive._Measure, "__call__", counting)
    return passes


@pytest.mark.parametrize(("layer", "side"), [("layer1", 16), ("layer2", 8), ("layer3.0.conv1", 4)])
def test_gradient_boxes_from_rows_and_columns_equal_measuring_every_unit(resnet18, layer, side, count_units):
    loaded = LoadedModel("r", "r", "cnn", resnet18, Preprocess(resize=80, crop=64), None, source="tests")
    rng = np.random.default_rng(side)
    units = sorted({(int(y), int(x)) for y, x in rng.integers(0, side, (24, 2))} | {(0, 0), (side - 1, side - 1)})
    fast = gradient_boxes(loaded, layer, units)
    measured_fast = sum(len(p) for p in count_units)
    count_units.clear()
    slow = gradient_boxes(loaded, layer, units, separable=False)
    assert sum(len(p) for p in count_units) == len(units)
    assert fast == slow
    # Rows and columns: at most one unit per needed row or column, plus the check.
    needed = len({y for y, _ in units} | {x for _, x in units})
    assert measured_fast <= needed + 1 < len(units)


def test_a_uniform_field_is_measured_on_three_units(lite0, count_units):
    # EfficientNet-Lite0's conv_head (7 x 7): every unit sees the whole 224 px input; the two
    # corners of the diagonal agree, so the rows and columns between them need no pass.
    units = [(y, x) for y in range(7) for x in range(7)]
    boxes = gradient_boxes(lite0, "conv_head", units)
    assert [len(p) for p in count_units] == [1, 1, 1]
    assert set(boxes.values()) == {(0.0, 0.0, 224.0, 224.0)}
    assert gradient_boxes(lite0, "conv_head", [(3, 2)], separable=False)[(3, 2)] == boxes[(3, 2)]


class _Transposed(nn.Module):
    """Rows become columns half way: a unit's rows depend on its column (no rectangle rule)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, (1, 9), padding=(0, 4))
        self.b = nn.Conv2d(4, 4, 3, stride=2, padding=1)

    def forward(self, x):
        return self.b(self.a(x).transpose(-1, -2).flip(-1))


def test_a_network_without_the_rectangle_rule_is_measured_unit_by_unit(count_units):
    torch.manual_seed(0)
    loaded = LoadedModel("t", "t", "cnn", _Transposed().eval(), Preprocess(resize=32, crop=32), None, source="tests")
    units = [(0, 0), (3, 9), (15, 15), (8, 2), (12, 12), (5, 14)]
    fast = gradient_boxes(loaded, "b", units)
    assert sum(len(p) for p in count_units) > len(units)  # the check failed: every unit measured
    assert fast == gradient_boxes(loaded, "b", units, separable=False)
    assert fast[(0, 0)] != fast[(15, 15)]

"""Training data: shapes, digits, torchvision sets offline, folders, split, augmentations, preview."""

from __future__ import annotations

import math
import struct
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from vizapp.core.errors import Cancelled, UserError
from vizapp.core.jobs import CancelToken
from vizapp.training import shapes
from vizapp.training.augmentations import AUGMENTATIONS, SIMCLR_AUGMENT, build_augment, preview
from vizapp.training.shapes import SHAPE_CLASSES
from vizapp.training.trainsets import (
    TrainSet,
    load_trainset,
    make_shapes,
    mean_std,
    split,
    to_float,
)

# --- shapes --------------------------------------------------------------------------------


def test_shapes_deterministic_balanced_and_sized():
    a = make_shapes(n=203, size=32, seed=7)
    b = make_shapes(n=203, size=32, seed=7)
    c = make_shapes(n=203, size=32, seed=8)
    assert a.images.shape == (203, 3, 32, 32) and a.images.dtype == torch.uint8
    assert a.labels.dtype == torch.int64 and a.classes == list(SHAPE_CLASSES) and len(a.classes) >= 6
    assert a.name == "shapes (32 px)" and a.channels == 3 and a.size == 32 and len(a) == 203
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.images, c.images) and not torch.equal(a.labels, c.labels)
    counts = a.class_counts()
    assert sum(counts) == 203 and max(counts) - min(counts) <= 1
    big = make_shapes(n=40, size=64, seed=7)
    assert big.images.shape == (40, 3, 64, 64) and big.name == "shapes (64 px)"
    assert load_trainset("shapes", n=40, size=64, seed=7).images.equal(big.images)
    # Not a blank canvas: every image has two clearly different colours (shape and background).
    spread = a.images.float().amax(dim=(2, 3)) - a.images.float().amin(dim=(2, 3))
    assert (spread.max(dim=1).values > 40).all()


def _reference_polygon(kind: str, cx: float, cy: float, r: float, theta: float) -> list[tuple[float, float]] | None:
    """The shapes' documented geometry, built here independently: circumradius ``r``,
    rotated by ``theta`` (y down), a vertex (or arm) at angle ``theta``."""

    def polar(points):
        return [(cx + rho * math.cos(a + theta), cy + rho * math.sin(a + theta)) for rho, a in points]

    def regular(k):
        return polar([(r, 2 * math.pi * i / k) for i in range(k)])

    if kind in ("circle", "ring"):
        return None
    if kind == "square":
        return regular(4)
    if kind == "triangle":
        return regular(3)
    if kind == "hexagon":
        return regular(6)
    if kind == "star":
        return polar([(r if i % 2 == 0 else 0.45 * r, math.pi * i / 5) for i in range(10)])
    if kind == "diamond":
        return polar([(r, 0), (0.55 * r, math.pi / 2), (r, math.pi), (0.55 * r, 3 * math.pi / 2)])
    if kind == "cross":
        s = r / math.hypot(1, 0.3)  # arm reach; arms 0.6 reach wide
        w = 0.3 * s
        arm = [(s, -w), (s, w), (w, w), (w, s), (-w, s), (-w, w), (-s, w), (-s, -w), (-w, -w), (-w, -s), (w, -s),
               (w, -w)]
        return polar([(math.hypot(x, y), math.atan2(y, x)) for x, y in arm])
    raise AssertionError(kind)


def _reference_mask(kind: str, cx: float, cy: float, r: float, theta: float, size: int, scale: int = 8) -> np.ndarray:
    """Pillow rasterisation at 8x, averaged down: coverage in [0, 1]."""
    canvas = Image.new("L", (size * scale, size * scale), 0)
    draw = ImageDraw.Draw(canvas)

    def disc(radius, fill):
        draw.ellipse([(cx - radius) * scale, (cy - radius) * scale, (cx + radius) * scale, (cy + radius) * scale],
                     fill=fill)

    polygon = _reference_polygon(kind, cx, cy, r, theta)
    if polygon is None:
        disc(r, 255)
        if kind == "ring":
            disc(0.5 * r, 0)
    else:
        draw.polygon([(x * scale - 0.5, y * scale - 0.5) for x, y in polygon], fill=255)
    big = np.asarray(canvas, dtype=np.float32) / 255
    return big.reshape(size, scale, size, scale).mean(axis=(1, 3))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.minimum(a, b).sum() / np.maximum(a, b).sum())


@pytest.mark.parametrize("size", [32, 64])
def test_each_shape_matches_an_independent_rasterisation(size):
    cx, cy, r, theta = 0.47 * size, 0.52 * size, 0.36 * size, 0.3
    for kind in SHAPE_CLASSES:
        ours = shapes._coverage(kind, [cx], [cy], [r], [theta], size)[0]
        scores = {other: _iou(ours, _reference_mask(other, cx, cy, r, theta, size)) for other in SHAPE_CLASSES}
        assert scores[kind] > 0.93, (kind, scores[kind])
        assert max(scores, key=scores.get) == kind, (kind, scores)
        # The antialiased edge is within a pixel of the reference.
        assert np.abs(ours - _reference_mask(kind, cx, cy, r, theta, size)).sum() < 0.35 * 4 * r


def test_shapes_cover_equal_areas():
    """At the same equal-area radius every class covers about the same pixels, so the
    amount of ink does not give the class away."""
    size, s = 64, 12.0
    areas = {kind: float(shapes._coverage(kind, [32.0], [32.0], [s * shapes._SPAN[kind]], [0.4], size).sum())
             for kind in SHAPE_CLASSES}
    for kind, area in areas.items():
        assert area == pytest.approx(math.pi * s * s, rel=0.04), (kind, areas)


def test_shape_labels_match_the_drawn_images():
    ts = make_shapes(n=48, size=32, seed=5)
    p = shapes._shape_params(48, 32, 5)
    np.testing.assert_array_equal(p["labels"], ts.labels.numpy())
    assert ts.class_counts() == [6] * 8
    for i in range(len(ts)):
        image = ts.images[i].permute(1, 2, 0).double().numpy()
        fg, bg = p["fg"][i], p["bg"][i]
        ink = (np.linalg.norm(image - bg, axis=2) > np.linalg.norm(image - fg, axis=2)).astype(np.float32)
        args = (p["cx"][i], p["cy"][i], p["radius"][i], p["theta"][i], 32)
        scores = {kind: _iou(ink, _reference_mask(kind, *args)) for kind in SHAPE_CLASSES}
        assert max(scores, key=scores.get) == SHAPE_CLASSES[ts.labels[i]], (i, scores)
        assert scores[SHAPE_CLASSES[ts.labels[i]]] > 0.8
        # The shape lies inside the image (nothing cut off at the border).
        assert ink[0].sum() + ink[-1].sum() + ink[:, 0].sum() + ink[:, -1].sum() <= 2
        # Colour alone does not give the class: the background is clearly lighter or darker.
        luma = np.array([0.299, 0.587, 0.114])
        assert abs((fg - bg) @ luma) >= 50


def test_shape_arguments_are_checked():
    with pytest.raises(UserError, match="16 to 512"):
        make_shapes(n=4, size=8)
    with pytest.raises(UserError, match="at least 1"):
        load_trainset("shapes", n=0)
    with pytest.raises(UserError, match="between 8 and 512"):
        load_trainset("shapes", size=4000)


# --- digits --------------------------------------------------------------------------------


def _bilinear(source: np.ndarray, y: int, x: int, size: int) -> float:
    """One output pixel of half-pixel bilinear enlargement, written out by hand."""
    scale = source.shape[0] / size

    def axis(o):
        s = max((o + 0.5) * scale - 0.5, 0.0)
        i0 = min(int(math.floor(s)), source.shape[0] - 1)
        return i0, min(i0 + 1, source.shape[0] - 1), s - i0

    y0, y1, fy = axis(y)
    x0, x1, fx = axis(x)
    top = source[y0, x0] * (1 - fx) + source[y0, x1] * fx
    bottom = source[y1, x0] * (1 - fx) + source[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def test_digits_are_sklearns_enlarged():
    from sklearn.datasets import load_digits

    source = load_digits()
    ts = load_trainset("digits")
    assert ts.name == "digits" and ts.images.shape == (1797, 1, 32, 32) and ts.images.dtype == torch.uint8
    assert ts.classes == [str(d) for d in range(10)]
    np.testing.assert_array_equal(ts.labels.numpy(), source.target)
    assert int(ts.images.max()) == 255 and int(ts.images.min()) == 0
    for i, y, x in [(0, 13, 9), (5, 0, 31), (100, 17, 18), (1796, 30, 2)]:
        expected = _bilinear(source.images[i] * 255 / 16, y, x, 32)
        assert abs(int(ts.images[i, 0, y, x]) - expected) <= 0.5 + 1e-6, (i, y, x)
    raw = load_trainset("digits", size=8)
    np.testing.assert_array_equal(raw.images[:, 0].numpy(), np.rint(source.images * 255 / 16).astype(np.uint8))


# --- subset, n, split ----------------------------------------------------------------------


def test_n_caps_with_a_stratified_deterministic_subset():
    full = load_trainset("digits", size=8)
    small = load_trainset("digits", size=8, n=100, seed=3)
    assert len(small) == 100 and small.classes == full.classes
    counts = np.array(small.class_counts())
    expected = np.array(full.class_counts()) * 100 / len(full)
    assert np.all(np.abs(counts - expected) < 1)
    assert torch.equal(small.images, load_trainset("digits", size=8, n=100, seed=3).images)
    assert not torch.equal(small.images, load_trainset("digits", size=8, n=100, seed=4).images)
    assert len(load_trainset("digits", size=8, n=5000)) == len(full)  # a cap above the size changes nothing
    # subset keeps the classes and picks the rows asked for.
    part = full.subset([5, 0, 5])
    assert len(part) == 3 and part.classes == full.classes
    assert torch.equal(part.images[0], full.images[5]) and torch.equal(part.labels[1], full.labels[0])
    assert torch.equal(full.subset(torch.tensor([7])).images, full.images[7:8])


def test_split_is_stratified_disjoint_complete_and_deterministic():
    ts = make_shapes(n=400, size=16, seed=1)
    ts.images[:, 0, 0, 0] = torch.arange(400) % 256  # tag the images so they can be traced
    ts.images[:, 1, 0, 0] = torch.arange(400) // 256
    train, val = split(ts, 0.25, seed=2)

    def ids(part):
        return (part.images[:, 0, 0, 0].long() + 256 * part.images[:, 1, 0, 0].long()).tolist()

    assert len(train) + len(val) == 400 and len(val) == 100
    assert set(ids(train)).isdisjoint(ids(val)) and set(ids(train)) | set(ids(val)) == set(range(400))
    assert ids(train) == sorted(ids(train)) and ids(val) == sorted(ids(val))  # original order kept
    for c, count in enumerate(ts.class_counts()):
        assert abs(val.class_counts()[c] - 0.25 * count) < 1
    assert torch.equal(torch.tensor(ids(train)), ts.labels.new_tensor(ids(split(ts, 0.25, seed=2)[0])))
    assert ids(split(ts, 0.25, seed=3)[1]) != ids(val)
    for i in ids(val):
        assert val.labels[ids(val).index(i)] == ts.labels[i]
    train_all, none = split(ts, 0.0)
    assert len(train_all) == 400 and len(none) == 0 and none.images.shape[1:] == ts.images.shape[1:]
    with pytest.raises(UserError, match="validation fraction"):
        split(ts, 1.0)
    tiny = TrainSet("tiny", torch.zeros(3, 1, 4, 4, dtype=torch.uint8), torch.tensor([0, 0, 1]), ["a", "b"])
    t, v = split(tiny, 0.2)
    assert len(v) == 1 and len(t) == 2 and v.labels.tolist() == [0]  # a class of one stays in training


def test_trainset_checks_its_tensors():
    with pytest.raises(ValueError, match="uint8"):
        TrainSet("x", torch.zeros(2, 3, 4, 4), torch.tensor([0, 1]), ["a", "b"])
    with pytest.raises(ValueError, match="labels"):
        TrainSet("x", torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.tensor([0]), ["a", "b"])
    with pytest.raises(ValueError, match="0..1"):
        TrainSet("x", torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.tensor([0, 2]), ["a", "b"])
    assert repr(make_shapes(8, 16)) == "TrainSet('shapes (16 px)', 8 x 3 x 16 x 16, 8 classes)"


# --- augmentations -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    return make_shapes(n=16, size=32, seed=11).images


def test_every_augmentation_changes_images_and_keeps_dtype_and_shape(batch):
    assert {"hflip", "crop", "rotate", "jitter", "blur", "grayscale", "erase"} <= set(AUGMENTATIONS)
    grey = batch[:, :1].clone()
    for name in AUGMENTATIONS:
        for images in (batch, grey):
            if name == "grayscale" and images.shape[1] == 1:
                continue
            torch.manual_seed(0)
            out = build_augment([name], 32, images.shape[1], p=1.0)(images)
            assert out.dtype == torch.uint8 and out.shape == images.shape, name
            changed = (out != images).flatten(1).any(dim=1)
            # Most images change (blur at sigma 0.1 leaves uint8 pixels as they are).
            assert changed.float().mean() >= 0.75, (name, images.shape[1], changed.tolist())
            single = build_augment([name], 32, images.shape[1], p=1.0)(images[0])
            assert single.shape == images[0].shape and single.dtype == torch.uint8


def test_flip_is_torch_flip_when_forced_and_grayscale_is_grey(batch):
    assert torch.equal(build_augment(["hflip"], 32, 3, p=1.0)(batch), torch.flip(batch, dims=[-1]))
    assert torch.equal(build_augment(["vflip"], 32, 3, p=1.0)(batch), torch.flip(batch, dims=[-2]))
    grey = build_augment(["grayscale"], 32, 3, p=1.0)(batch)
    assert torch.equal(grey[:, 0], grey[:, 1]) and torch.equal(grey[:, 1], grey[:, 2])
    # At the default probability about half the images flip, each drawn on its own.
    torch.manual_seed(0)
    flipped = build_augment(["hflip"], 32, 3)(batch.repeat(4, 1, 1, 1))
    same = (flipped == torch.flip(batch.repeat(4, 1, 1, 1), dims=[-1])).flatten(1).all(dim=1)
    assert 16 <= int(same.sum()) <= 48


def test_augmentations_are_per_image_and_reproducible(batch):
    augment = build_augment(SIMCLR_AUGMENT + ("rotate", "erase"), 32, 3)
    twins = batch[:1].repeat(8, 1, 1, 1)
    torch.manual_seed(3)
    a = augment(twins)
    assert len({bytes(img.numpy()) for img in a}) == 8  # identical inputs, eight different draws
    torch.manual_seed(3)
    assert torch.equal(augment(twins), a)
    assert augment.names == ("crop", "rotate", "hflip", "jitter", "grayscale", "blur", "erase")  # fixed order
    assert torch.equal(build_augment([], 32, 3)(batch), batch)
    assert build_augment(["erase", "hflip"], 32, 3).names == build_augment(["hflip", "erase"], 32, 3).names
    assert build_augment("erase, hflip", 32, 3).names == ("hflip", "erase")  # the command line's form


def test_bad_augmentation_settings_are_user_errors(batch):
    with pytest.raises(UserError, match="unknown augmentation 'mixup'.*hflip"):
        build_augment(["hflip", "mixup"], 32, 3)
    with pytest.raises(UserError, match="strength"):
        build_augment(["crop"], 32, 3, strength=5)
    with pytest.raises(UserError, match="probability"):
        build_augment(["crop"], 32, 3, p=1.5)
    with pytest.raises(TypeError, match="uint8"):
        build_augment(["crop"], 32, 3)(batch.float())


def test_strength_scales_the_change(batch):
    def change(strength):
        torch.manual_seed(0)
        out = build_augment(["rotate"], 32, 3, strength=strength)(batch)
        return (out.float() - batch.float()).abs().mean().item()

    assert change(0.0) < change(0.3) < change(1.5)


# --- model input and preview ----------------------------------------------------------------


def test_mean_std_and_to_float():
    images = torch.zeros(4, 3, 2, 2, dtype=torch.uint8)
    images[:, 0] = 255  # red: all 1
    images[:2, 1] = 255  # green: half 0, half 1
    images[:, 2, 0, 0] = 51  # blue: one pixel in four at 0.2
    ts = TrainSet("t", images, torch.zeros(4, dtype=torch.int64), ["a"])
    mean, std = mean_std(ts)
    assert mean == pytest.approx((1.0, 0.5, 0.05)) and std == pytest.approx((0.0, 0.5, math.sqrt(0.04 / 4 - 0.05**2)))
    x = to_float(images, (0.5, 0.5, 0.05), (0.25, 0.5, 0.1))
    assert x.dtype == torch.float32 and x.shape == images.shape
    assert torch.allclose(x[:, 0], torch.full((4, 2, 2), 2.0))
    assert x[0, 1, 0, 0].item() == pytest.approx(1.0) and x[3, 1, 0, 0].item() == pytest.approx(-1.0)
    assert x[0, 2, 0, 0].item() == pytest.approx(1.5) and x[0, 2, 1, 1].item() == pytest.approx(-0.5)
    assert to_float(images[0], mean, (1, 1, 1)).shape == (3, 2, 2)
    digits = load_trainset("digits", size=8)
    (m,), (s,) = mean_std(digits)
    pixels = digits.images.double() / 255
    assert m == pytest.approx(pixels.mean().item()) and s == pytest.approx(pixels.std(unbiased=False).item())
    with pytest.raises(TypeError):
        to_float(images.float(), mean, std)


def test_preview_grid(batch):
    ts = make_shapes(n=40, size=32, seed=0)
    grid = preview(ts, k=16, cols=8)
    assert grid.shape == (2 * 32 + 2, 8 * 32 + 7 * 2, 3) and grid.dtype == np.uint8
    assert np.array_equal(grid, preview(ts, k=16, cols=8))
    index = np.random.default_rng(0).choice(40, size=16, replace=False)
    np.testing.assert_array_equal(grid[34:66, 34:66], ts.images[index[9]].permute(1, 2, 0).numpy())
    state = torch.random.get_rng_state()
    augmented = preview(ts, build_augment(["rotate", "jitter"], 32, 3), k=16, cols=8)
    assert torch.equal(torch.random.get_rng_state(), state)  # the training's random stream is untouched
    assert augmented.shape == grid.shape and not np.array_equal(augmented, grid)
    assert np.array_equal(augmented, preview(ts, build_augment(["rotate", "jitter"], 32, 3), k=16, cols=8))
    grey = preview(load_trainset("digits", n=30), k=5, cols=3)
    assert grey.shape == (2 * 32 + 2, 3 * 32 + 2 * 2, 3)
    assert np.array_equal(grey[..., 0], grey[..., 2])


# --- torchvision sets, offline -----------------------------------------------------------


def _write_idx(folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    n, rows, cols = images.shape
    (folder / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">iiii", 2051, n, rows, cols) + images.tobytes())
    labels_bytes = struct.pack(">ii", 2049, n) + labels.astype(np.uint8).tobytes()
    (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(labels_bytes)


def test_mnist_offline_from_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (20, 28, 28), dtype=np.uint8)
    labels = np.arange(20) % 10
    for name in ("MNIST", "FashionMNIST"):
        _write_idx(tmp_path / name / "raw", "train", pixels, labels)
        _write_idx(tmp_path / name / "raw", "t10k", pixels[:2], labels[:2])
    ts = load_trainset("mnist", root=tmp_path)
    assert ts.name == "mnist" and ts.images.shape == (20, 1, 28, 28) and ts.images.dtype == torch.uint8
    np.testing.assert_array_equal(ts.images[:, 0].numpy(), pixels)
    np.testing.assert_array_equal(ts.labels.numpy(), labels)
    assert ts.classes[:2] == ["0 - zero", "1 - one"] and len(ts.classes) == 10
    big = load_trainset("mnist", root=tmp_path, size=32, n=10)
    assert big.images.shape == (10, 1, 32, 32) and big.class_counts() == [1] * 10
    fashion = load_trainset("fashion-mnist", root=tmp_path)
    assert fashion.classes[0] == "T-shirt/top" and torch.equal(fashion.images, ts.images)


def test_torchvision_set_missing_offline_says_where_to_put_it(tmp_path, monkeypatch):
    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("no network here")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(UserError, match="could not be downloaded") as info:
        load_trainset("mnist", root=tmp_path)
    assert str(tmp_path / "MNIST" / "raw") in str(info.value)
    with pytest.raises(UserError, match=r"copy the dataset's files into"):
        load_trainset("cifar10", root=tmp_path)


# --- folders -------------------------------------------------------------------------------


def _png(path: Path, rgb, size=(40, 20)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), rgb, np.uint8)).save(path)


def test_folder_with_two_classes_and_an_unreadable_file(tmp_path):
    root = tmp_path / "pets"
    for i in range(3):
        _png(root / "cats" / f"c{i}.png", (200, 10 * i, 0))
        _png(root / "dogs" / f"d{i}.png", (0, 10 * i, 200))
    # A wide image: the centre crop keeps its middle square.
    wide = np.zeros((20, 60, 3), np.uint8)
    wide[:, 20:40] = 255
    Image.fromarray(wide).save(root / "dogs" / "wide.png")
    (root / "dogs" / "broken.jpg").write_text("not a jpeg")
    calls = []
    ts = load_trainset(str(root), size=16, progress=lambda done, total, text: calls.append((done, total, text)))
    assert ts.name == "pets" and ts.classes == ["cats", "dogs"] and ts.skipped == 1
    assert ts.images.shape == (7, 3, 16, 16) and ts.labels.tolist() == [0, 0, 0, 1, 1, 1, 1]
    assert ts.images[0, :, 8, 8].tolist() == [200, 0, 0]
    assert (ts.images[6, :, :, 1:-1] == 255).all()  # wide.png: only the white middle is left
    assert (ts.images[6, :, :, [0, -1]] > 200).all()  # (the filter reaches just past the crop)
    assert calls[-1][:2] == (8, 8) and "pets" in calls[-1][2]
    assert len(load_trainset(str(root), size=16, n=4)) == 4
    assert load_trainset(str(root)).size == 64  # the default side for folders
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        load_trainset(str(root), cancel=token)


def test_folder_errors_say_how_to_lay_it_out(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no image files found.*one sub-folder per class"):
        load_trainset(str(tmp_path / "empty"))
    _png(tmp_path / "flat" / "a.png", (1, 2, 3))
    with pytest.raises(UserError, match="not in class sub-folders.*one sub-folder per class"):
        load_trainset(str(tmp_path / "flat"))
    _png(tmp_path / "single" / "cats" / "a.png", (1, 2, 3))
    with pytest.raises(UserError, match="only one class \\('cats'\\).*at least two"):
        load_trainset(str(tmp_path / "single"))
    with pytest.raises(UserError, match="neither a built-in set.*shapes, digits"):
        load_trainset(str(tmp_path / "missing"))
    (tmp_path / "bad" / "a").mkdir(parents=True)
    (tmp_path / "bad" / "b").mkdir()
    (tmp_path / "bad" / "a" / "x.png").write_text("no")
    (tmp_path / "bad" / "b" / "y.png").write_text("no")
    with pytest.raises(UserError, match="none of its 2 image files could be read"):
        load_trainset(str(tmp_path / "bad"))

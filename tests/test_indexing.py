"""The collection-indexing engine, checked against independent computations.

* the streaming per-channel top-k (batched, on the device) against a brute-force pass
  that runs every image alone through ``vizapp.probing.inference.run`` (ties broken by image order);
* the receptive-field boxes against back-propagation, and the mapping back to the
  original image by hand;
* the cache key, resume after a cancel, unreadable files, pooled features, the CLI.

Small generated collections and small models keep the module at a few seconds a test.
"""

from __future__ import annotations

import copy
import errno
import json
import os
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn

import main
from models import LoadedModel, Preprocess
from vizapp.collection import indexing
from vizapp.collection.datasets import ImageCollection
from vizapp.collection.index_store import Index, create_features
from vizapp.collection.indexing import build_index
from vizapp.collection.topk import StreamingTopK
from vizapp.core.errors import Cancelled, LayerError, UserError
from vizapp.core.jobs import CancelToken
from vizapp.explain.receptive import (
    ChainField,
    analytic_field,
    gradient_boxes,
    token_box,
    unit_boxes,
)
from vizapp.probing.inference import run

N_GOOD = 28  # readable images in the shared collection (plus 2 unreadable files)
BATCH = 7
K = 4
LAYERS = ["conv1", "relu2"]
DEAD = [0, 1, 2, 3]  # relu2 channels that are always 0: every image ties
SOMETIMES = [4, 5]  # relu2 channels that are 0 for about half of the images
RARE = [6, 7]  # relu2 channels that are positive for two images only: zeros fill the rest of the top-k


# --- helpers ---------------------------------------------------------------------------


def write_images(folder: Path, n: int, seed: int = 0, labels=("cats", "dogs"), sizes=(40, 160),
                 prefix: str = "img", suffix: str = ".png") -> list[Path]:
    """``n`` random RGB images of varying (mostly non-square) sizes, in label sub-folders."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        sub = folder / labels[i % len(labels)] if labels else folder
        sub.mkdir(parents=True, exist_ok=True)
        w, h = (int(v) for v in rng.integers(sizes[0], sizes[1], 2))
        # Blurry blobs plus noise: activations vary a lot between images and positions.
        small = rng.integers(0, 256, (max(2, h // 16), max(2, w // 16), 3), dtype=np.uint8)
        base = np.asarray(Image.fromarray(small).resize((w, h), Image.BILINEAR), dtype=np.int16)
        pixels = np.clip(base + rng.integers(-40, 40, (h, w, 3)), 0, 255).astype(np.uint8)
        path = sub / f"{prefix}{i:03d}{suffix}"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def write_unreadable(cats: Path, dogs: Path) -> tuple[Path, Path]:
    """A text file named .jpg (sorts first in cats/) and a truncated PNG (sorts last in dogs/)."""
    text = cats / "bad00.jpg"
    text.write_text("this is not a JPEG file\n")
    good = dogs / "zz_truncated.png"
    Image.fromarray(np.full((64, 80, 3), 200, np.uint8)).save(good)
    data = good.read_bytes()
    good.write_bytes(data[: len(data) // 2])
    return text, good


def tiny_cnn(seed: int = 0) -> nn.Sequential:
    """A plain chain (so its boxes are analytic) with a linear classifier."""
    torch.manual_seed(seed)
    return nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(3, 8, 5, stride=2, padding=2)), ("relu1", nn.ReLU(inplace=True)),
        ("pool1", nn.MaxPool2d(2)),
        ("conv2", nn.Conv2d(8, 12, 3, padding=1)), ("relu2", nn.ReLU(inplace=True)),
        ("gap", nn.AdaptiveAvgPool2d(1)), ("flat", nn.Flatten()), ("fc", nn.Linear(12, 4)),
    ])).eval()


def tiny_loaded(module: nn.Module, preprocess: Preprocess | None = None) -> LoadedModel:
    return LoadedModel("tiny", "tiny", "cnn", module, preprocess or Preprocess(), None, source="tests")


def brute_force(loaded: LoadedModel, collection: ImageCollection, layer: str, k: int, skip=()):
    """Per-image forward passes: (values, images, positions), each ``k x C``, best first."""
    maxima, argmax = [], []
    for i in range(len(collection)):
        if i in skip:
            continue
        act = run(loaded, collection.open(i), [layer]).activations[layer]
        flat = act.reshape(act.shape[0], -1)
        maxima.append(flat.max(axis=1))
        argmax.append(flat.argmax(axis=1))  # the first position of the maximum
    ids = np.array([i for i in range(len(collection)) if i not in skip])
    maxima, argmax = np.stack(maxima), np.stack(argmax)
    c = maxima.shape[1]
    values = np.zeros((k, c), np.float32)
    images = np.zeros((k, c), np.int64)
    positions = np.zeros((k, c), np.int64)
    for ch in range(c):
        order = np.lexsort((ids, -maxima[:, ch]))[:k]  # value descending, then image order
        values[:, ch], images[:, ch], positions[:, ch] = maxima[order, ch], ids[order], argmax[order, ch]
    return values, images, positions


class ForwardSpy:
    """Counts forward calls and the images they saw (not the receptive-field probes, which
    run on inputs that require a gradient)."""

    def __init__(self, module: nn.Module) -> None:
        self.calls = 0
        self.images = 0
        self.handle = module.register_forward_pre_hook(self._hook)

    def _hook(self, _m, inputs) -> None:
        if inputs[0].requires_grad:
            return
        self.calls += 1
        self.images += int(inputs[0].shape[0])

    def remove(self) -> None:
        self.handle.remove()


# --- the shared collection and index ---------------------------------------------------


@pytest.fixture(scope="module")
def collection_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("collection")
    write_images(root, N_GOOD, seed=1)
    write_unreadable(root / "cats", root / "dogs")
    return root


@pytest.fixture(scope="module")
def collection(collection_dir) -> ImageCollection:
    c = ImageCollection.from_folder(collection_dir)
    assert len(c) == N_GOOD + 2
    return c


@pytest.fixture(scope="module")
def bad_ids(collection) -> list[int]:
    ids = [i for i, p in enumerate(collection.paths) if Path(p).name in ("bad00.jpg", "zz_truncated.png")]
    assert ids == [0, len(collection) - 1]
    return ids


@pytest.fixture(scope="module")
def tiny(collection, bad_ids) -> LoadedModel:
    """The tiny CNN with relu2's channels 0-3 dead, 4-5 alive for half the images, 6-7 for two."""
    module = tiny_cnn()
    loaded = tiny_loaded(module)
    pre = {}
    handle = module.conv2.register_forward_hook(lambda _m, _i, out: pre.__setitem__("x", out.detach().clone()))
    with torch.inference_mode():
        batch = torch.stack([loaded.preprocess(collection.open(i)) for i in range(len(collection)) if i not in bad_ids])
        module(batch)
    handle.remove()
    maxima = pre["x"].amax(dim=(2, 3)).sort(dim=0).values  # N x C, with the current bias, ascending
    half = maxima.shape[0] // 2
    with torch.no_grad():
        module.conv2.bias[DEAD] = -1e3
        # Half-way between two images' maxima: no image's maximum lands near 0.
        module.conv2.bias[SOMETIMES] -= (maxima[half - 1, SOMETIMES] + maxima[half, SOMETIMES]) / 2
        module.conv2.bias[RARE] -= (maxima[-3, RARE] + maxima[-2, RARE]) / 2
    return loaded


@pytest.fixture(scope="module")
def tiny_index(tiny, collection, tmp_path_factory) -> Index:
    out = tmp_path_factory.mktemp("index") / "tiny"
    return build_index(tiny, collection, LAYERS, k=K, out=out, batch_size=BATCH, workers=0)


# --- streaming top-k -------------------------------------------------------------------


def test_streaming_topk_equals_brute_force(tiny, collection, tiny_index, bad_ids):
    assert tiny_index.done and tiny_index.layers == LAYERS
    for layer in LAYERS:
        values, images, positions = brute_force(tiny, collection, layer, K, skip=bad_ids)
        t = tiny_index.topk[layer]
        assert t["values"].shape == (K, values.shape[1])
        np.testing.assert_allclose(t["values"], values, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(t["images"], images)
        np.testing.assert_array_equal(t["positions"], positions)
        assert (np.diff(t["values"], axis=0) <= 0).all(), "best first"


def test_ties_broken_by_image_order(tiny_index, bad_ids):
    t = tiny_index.topk["relu2"]
    first_good = [i for i in range(40) if i not in bad_ids][:K]
    for ch in DEAD:  # every image's maximum is exactly 0: the first K readable images win, at position 0
        assert (t["values"][:, ch] == 0).all()
        assert t["images"][:, ch].tolist() == first_good
        assert (t["positions"][:, ch] == 0).all()
    # Half-dead channels: all winners positive.
    assert (t["values"][:, SOMETIMES] > 0).all()
    # Two images are positive; the other slots are zero-valued ties, the earliest readable images.
    for ch in RARE:
        assert (t["values"][:2, ch] > 0).all() and (t["values"][2:, ch] == 0).all()
        positive = set(t["images"][:2, ch].tolist())
        assert t["images"][2:, ch].tolist() == [i for i in first_good if i not in positive][: K - 2]
        assert (t["positions"][2:, ch] == 0).all()


def _feed(top: StreamingTopK, maps: torch.Tensor, ids: torch.Tensor, batch: int) -> StreamingTopK:
    for s in range(0, len(ids), batch):
        top.update(maps[ids[s: s + batch]], ids[s: s + batch])
    return top


@pytest.mark.parametrize(("world", "k", "batch"), [(2, 5, 4), (3, 5, 1), (5, 8, 3), (4, 30, 7)])
def test_streaming_topk_merge_of_round_robin_shards_equals_one_pass(world, k, batch):
    g = torch.Generator().manual_seed(world * 100 + k)
    n, c = 23, 6
    maps = torch.randint(0, 4, (n, c, 3, 4), generator=g).float()  # small integers: many ties
    maps[:, 0] = 0.0  # a dead channel: all ties
    maps[7, 1, 2, 3] = 9.0  # one clear winner
    one = _feed(StreamingTopK(k, c), maps, torch.arange(n), batch)

    # Brute force on the hand-made tensors.
    flat = maps.reshape(n, c, -1).numpy()
    best, where = flat.max(axis=2), flat.argmax(axis=2)
    kk = min(k, n)
    for ch in range(c):
        order = np.lexsort((np.arange(n), -best[:, ch]))[:kk]
        assert one.images[:kk, ch].tolist() == order.tolist()
        assert one.values[:kk, ch].tolist() == best[order, ch].tolist()
        assert one.positions[:kk, ch].tolist() == where[order, ch].tolist()
    assert one.images[0, 1] == 7 and one.positions[0, 1] == 11
    if k > n:  # empty slots stay empty
        assert (one.images[n:] == -1).all() and torch.isinf(one.values[n:]).all()

    shards = [_feed(StreamingTopK(k, c), maps, torch.arange(rank, n, world), batch) for rank in range(world)]
    # Through the state round trip, as torchrun's gather does.
    merged = StreamingTopK.merge([StreamingTopK.from_state(s.state()) for s in shards])
    for name in ("values", "images", "positions"):
        assert torch.equal(getattr(merged, name), getattr(one, name)), name
    # The order of the parts does not matter either.
    assert torch.equal(StreamingTopK.merge(shards[::-1]).images, one.images)


# --- receptive fields and boxes --------------------------------------------------------


def _chain() -> LoadedModel:
    torch.manual_seed(3)
    net = nn.Sequential(OrderedDict([
        ("conv1", nn.Conv2d(3, 6, 3, padding=1)), ("relu1", nn.ReLU()),
        ("conv2", nn.Conv2d(6, 6, 5, stride=2, padding=2)), ("relu2", nn.ReLU()),
        ("pool1", nn.AvgPool2d(2)),
        ("conv3", nn.Conv2d(6, 6, 3, padding=2, dilation=2)), ("relu3", nn.ReLU()),
        ("pool2", nn.MaxPool2d(3, stride=2, padding=1)),
        ("conv4", nn.Conv2d(6, 6, 3)), ("relu4", nn.ReLU()),
        ("gap", nn.AdaptiveAvgPool2d(1)), ("flat", nn.Flatten()), ("fc", nn.Linear(6, 3)),
    ])).eval()
    return tiny_loaded(net, Preprocess(resize=64, crop=64))


@pytest.mark.parametrize(("layer", "expected"), [
    ("conv1", (1, 3, 0)), ("conv2", (2, 7, 0)), ("pool1", (4, 9, 1)), ("conv3", (4, 25, 1)),
    ("pool2", (8, 33, 1)), ("conv4", (8, 49, 9)), ("relu4", (8, 49, 9)),
])
def test_analytic_field_equals_gradient_boxes_on_a_chain(layer, expected):
    loaded = _chain()
    field = analytic_field(loaded, layer)
    assert field is not None
    assert (field.jump, field.size, field.start) == expected
    with torch.inference_mode():
        t = torch.zeros(1, 3, 64, 64)
        for name, module in loaded.module.named_children():
            t = module(t)
            if name == layer:
                break
    h, w = t.shape[-2:]
    positions = sorted({(0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1), (1, 1), (h // 2, w // 3), (h - 2, w - 2)})
    # Several random inputs: a max-pool passes the gradient to one input per window.
    measured = gradient_boxes(loaded, layer, positions, samples=8)
    for unit in positions:
        box = field.box(*unit)
        assert all(0 <= v <= 64 for v in box)
        if layer == "conv3" and unit in ((1, 1), (h - 2, w - 2)):
            # Next to the border the dilated taps skip the first row/column of units;
            # the analytic box (the span of the taps, clipped) is then a little larger.
            g = measured[unit]
            assert box[0] <= g[0] and box[1] <= g[1] and box[2] >= g[2] and box[3] >= g[3]
            assert max(abs(a - b) for a, b in zip(box, g, strict=True)) <= field.jump
            continue
        assert box == measured[unit], (layer, unit)


def test_resnet_analytic_only_before_the_first_residual(resnet18):
    loaded = tiny_loaded(resnet18)
    conv1 = analytic_field(loaded, "conv1")
    maxpool = analytic_field(loaded, "maxpool")
    assert (conv1.jump, conv1.size, conv1.start) == (2, 7, 0)
    assert (maxpool.jump, maxpool.size, maxpool.start) == (4, 11, 0)
    assert analytic_field(loaded, "layer1") is None  # a residual add merges two paths
    assert analytic_field(loaded, "layer1.0.conv1") == ChainField(4, 19, 0, 224)
    assert analytic_field(loaded, "layer4") is None
    positions = [(0, 0), (0, 111), (111, 111), (55, 3), (1, 0)]
    measured = gradient_boxes(loaded, "conv1", positions)
    assert {p: conv1.box(*p) for p in positions} == measured
    assert measured[(0, 0)] == (0, 0, 4, 4) and measured[(55, 3)] == (3, 107, 10, 114)


def test_box_to_original_by_hand():
    pre = Preprocess(resize=256, crop=224)
    # 400 x 300 (landscape): resized to int(256 * 400 / 300) = 341 x 256; crop offsets
    # left = round((341 - 224) / 2) = round(58.5) = 58 (half to even, as torchvision), top = 16.
    assert pre.resized_size((400, 300)) == (341, 256)
    # The whole crop: x 58..282 and y 16..240 of the resized image, times 400/341 and 300/256.
    # floor(58 * 400/341) = floor(68.04) = 68, floor(16 * 300/256) = floor(18.75) = 18,
    # ceil(282 * 400/341) = ceil(330.79) = 331, ceil(240 * 300/256) = ceil(281.25) = 282.
    assert pre.box_to_original((0, 0, 224, 224), (400, 300)) == (68, 18, 331, 282)
    # A small box: x (10 + 58) * 400/341 = 79.77 -> 79, (30 + 58) * 400/341 = 103.23 -> 104;
    # y (20 + 16) * 300/256 = 42.19 -> 42, (40 + 16) * 300/256 = 65.63 -> 66.
    assert pre.box_to_original((10, 20, 30, 40), (400, 300)) == (79, 42, 104, 66)
    # Portrait 300 x 400: the same numbers with x and y swapped.
    assert pre.resized_size((300, 400)) == (256, 341)
    assert pre.box_to_original((20, 10, 40, 30), (300, 400)) == (42, 79, 66, 104)
    # A small image is scaled up: 100 x 50 -> 512 x 256, left = 144, top = 16.
    # x (0 + 144) * 100/512 = 28.125 -> 28, (224 + 144) * 100/512 = 71.875 -> 72; y 16 * 50/256 = 3.125 -> 3, 240 * 50/256 = 46.875 -> 47.
    assert pre.box_to_original((0, 0, 224, 224), (100, 50)) == (28, 3, 72, 47)

    # Against the real preprocessing: a white square in a 400 x 300 photo lands on the
    # model-input pixels whose box maps back onto it.
    image = np.zeros((300, 400, 3), np.uint8)
    image[100:160, 150:250] = 255
    x = pre(Image.fromarray(image))
    bright = (x.mean(dim=0) > 0).nonzero()
    box = (int(bright[:, 1].min()), int(bright[:, 0].min()), int(bright[:, 1].max()) + 1, int(bright[:, 0].max()) + 1)
    x0, y0, x1, y1 = pre.box_to_original(box, (400, 300))
    assert abs(x0 - 150) <= 2 and abs(y0 - 100) <= 2 and abs(x1 - 250) <= 2 and abs(y1 - 160) <= 2


def test_index_boxes_are_analytic_boxes_mapped_back(tiny, tiny_index, bad_ids):
    for layer in LAYERS:
        assert tiny_index.manifest["layers"][layer]["field"] == "analytic"
        field = analytic_field(tiny, layer)
        t = tiny_index.topk[layer]
        w = tiny_index.manifest["layers"][layer]["map_size"][1]
        for r in range(K):
            for ch in range(t["images"].shape[1]):
                i = int(t["images"][r, ch])
                size = tuple(int(v) for v in tiny_index.sizes[i])
                with Image.open(tiny_index.paths[i]) as im:
                    assert size == im.size
                y, x = divmod(int(t["positions"][r, ch]), w)
                expected = tiny.preprocess.field_to_original(field.box(y, x), size)
                assert tuple(t["boxes"][r, ch]) == expected
                x0, y0, x1, y1 = expected
                assert 0 <= x0 < x1 <= size[0] and 0 <= y0 < y1 <= size[1]
        patches = tiny_index.top_patches(layer, 5)
        assert [p.index for p in patches] == t["images"][:, 5].tolist()
        assert [(p.y, p.x) for p in patches] == [divmod(int(q), w) for q in t["positions"][:, 5]]
        assert all(p.image == tiny_index.paths[p.index] for p in patches)


def test_resnet_index_boxes_equal_gradient_boxes(resnet18, tmp_path):
    folder = tmp_path / "photos"
    write_images(folder, 8, seed=5, labels=("", ), sizes=(60, 200))
    collection = ImageCollection.from_folder(folder)
    loaded = tiny_loaded(resnet18, Preprocess(resize=80, crop=64))
    layer = "layer1"
    index = build_index(loaded, collection, [layer], k=1, out=tmp_path / "index", batch_size=3, workers=0)
    meta = index.manifest["layers"][layer]
    assert meta["field"] == "gradient" and meta["map_size"] == [16, 16]
    t = index.topk[layer]
    units = [divmod(int(p), 16) for p in t["positions"].ravel()]
    # The same unique positions in the same order as the engine asks for (the random inputs
    # of gradient_boxes depend on the chunk a position falls in).
    measured = gradient_boxes(loaded, layer, sorted(set(units)))
    for (r, ch), unit in zip(np.ndindex(t["images"].shape), units, strict=True):
        i = int(t["images"][r, ch])
        with Image.open(collection.paths[i]) as im:
            size = im.size
        assert tuple(int(v) for v in index.sizes[i]) == size
        expected = loaded.preprocess.field_to_original(measured[unit], size)
        assert tuple(t["boxes"][r, ch]) == expected
        x0, y0, x1, y1 = expected
        assert 0 <= x0 < x1 <= size[0] and 0 <= y0 < y1 <= size[1]
    # Away from the border a layer1 unit sees 43 x 43 input pixels: the longest path,
    # conv1 (7) and maxpool (+2 x 2) then four 3 x 3 convs at a jump of 4 (+4 x 2 x 4).
    inner = [u for u in set(units) if 6 <= u[0] <= 10 and 6 <= u[1] <= 10]
    assert inner
    for u in inner:
        x0, y0, x1, y1 = measured[u]
        assert (x1 - x0, y1 - y0) == (43, 43) and (x0 + x1) / 2 == 4 * u[1] + 0.5


def test_vit_token_boxes(tmp_path):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    module = timm.create_model("deit_tiny_patch16_224", pretrained=False).eval()
    module.blocks = module.blocks[:4]  # blocks.3's output is unchanged; the 8 blocks after it cost time only
    loaded = LoadedModel("deit", "deit", "vit", module, Preprocess(interpolation="bicubic"), None, source="tests")
    folder = tmp_path / "photos"
    write_images(folder, 5, seed=9, labels=("",), sizes=(80, 300))
    collection = ImageCollection.from_folder(folder)
    index = build_index(loaded, collection, ["blocks.3"], k=2, out=tmp_path / "index", batch_size=3, workers=0)
    meta = index.manifest["layers"]["blocks.3"]
    assert meta == {"channels": 192, "map_size": [14, 14], "tokens": True, "field": "token"}
    t = index.topk["blocks.3"]
    assert t["positions"].max() < 196
    for r, ch in np.ndindex(t["images"].shape):
        i = int(t["images"][r, ch])
        y, x = divmod(int(t["positions"][r, ch]), 14)
        patch = (x * 16, y * 16, x * 16 + 16, y * 16 + 16)
        assert token_box(224, 14, y, x) == patch
        assert tuple(t["boxes"][r, ch]) == loaded.preprocess.field_to_original(patch, tuple(index.sizes[i]))
    # The values are the token grid's maxima (class token left out), from single-image passes.
    ch = 17
    best = []
    for i in range(len(collection)):
        tokens = run(loaded, collection.open(i), ["blocks.3"]).activations["blocks.3"]  # 197 x 192
        grid = tokens[1:, ch]
        best.append((-grid.max(), i, int(grid.argmax())))
    best.sort()
    assert t["images"][:, ch].tolist() == [b[1] for b in best[:2]]
    assert t["positions"][:, ch].tolist() == [b[2] for b in best[:2]]
    np.testing.assert_allclose(t["values"][:, ch], [-b[0] for b in best[:2]], rtol=1e-4, atol=1e-4)
    assert unit_boxes(loaded, "blocks.3", [(0, 13)], (14, 14), True) == ({(0, 13): (208.0, 0.0, 224.0, 16.0)}, "token")


# --- cache ---------------------------------------------------------------------------


def test_cache_hit_and_invalidation(tmp_path, monkeypatch):
    monkeypatch.setenv("VIZAPP_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "photos"
    paths = write_images(folder, 6, seed=2)
    loaded = tiny_loaded(tiny_cnn())

    def build(layers=("conv1",), k=2, model=loaded):
        spy = ForwardSpy(model.module)
        try:
            index = build_index(model, ImageCollection.from_folder(folder), list(layers), k=k, batch_size=4, workers=0)
        finally:
            spy.remove()
        assert index.done
        return index, spy

    first, spy = build()
    assert spy.images == 6
    assert first.directory.parent == tmp_path / "cache" / "index"
    assert first.directory.name == first.manifest["key"]
    topk_file = first.file("topk", "conv1")
    mtime = topk_file.stat().st_mtime_ns

    again, spy = build()
    assert spy.calls == 0, "an up-to-date index is reused, not recomputed"
    assert again.directory == first.directory and topk_file.stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(again.topk["conv1"]["images"], first.topk["conv1"]["images"])

    keys = {first.manifest["key"]}

    def changed(**kwargs):
        index, spy = build(**kwargs)
        assert spy.calls > 0 and index.manifest["key"] not in keys
        keys.add(index.manifest["key"])
        return index

    st = paths[0].stat()
    os.utime(paths[0], ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))  # touched
    changed()
    write_images(folder, 1, seed=7, labels=("cats",), prefix="new")  # added
    assert len(changed().paths) == 7
    paths[3].unlink()  # removed
    index = changed()
    assert len(index.paths) == 6 and str(paths[3]) not in index.paths
    assert changed(k=3).topk["conv1"]["values"].shape == (3, 8)
    assert changed(layers=("conv1", "relu2")).layers == ["conv1", "relu2"]
    other = tiny_loaded(copy.deepcopy(loaded.module))
    with torch.no_grad():
        other.module.fc.bias.add_(0.5)  # only the weights change
    changed(model=other)
    assert len(keys) == 7
    # The unchanged inputs still hit their own folder.
    _, spy = build(k=3)
    assert spy.calls == 0


def test_rebuild_into_the_same_folder(tmp_path):
    folder = tmp_path / "photos"
    write_images(folder, 5, seed=4)
    collection = ImageCollection.from_folder(folder)
    loaded = tiny_loaded(tiny_cnn())
    out = tmp_path / "index"
    a = build_index(loaded, collection, ["conv1", "relu2"], k=2, out=out, workers=0)
    b = build_index(loaded, collection, ["relu2"], k=3, out=out, workers=0)
    assert a.manifest["key"] != b.manifest["key"]
    reloaded = Index.load(out)
    assert reloaded.layers == ["relu2"] and reloaded.manifest["k"] == 3
    assert reloaded.topk["relu2"]["values"].shape == (3, 12) and set(reloaded.topk) == {"relu2"}


# --- unreadable files and bad input ----------------------------------------------------


def test_unreadable_files_are_skipped_and_counted(tiny_index, bad_ids):
    assert tiny_index.skipped == bad_ids
    assert tiny_index.manifest["skipped"] == bad_ids
    features = np.asarray(tiny_index.features())
    assert features.shape == (N_GOOD + 2, 12)
    assert (features[bad_ids] == 0).all()
    good = [i for i in range(N_GOOD + 2) if i not in bad_ids]
    assert (np.abs(features[good]).sum(axis=1) > 0).all()
    assert (tiny_index.sizes[bad_ids] == 0).all() and (tiny_index.sizes[good] > 0).all()
    for layer in LAYERS:
        images = tiny_index.topk[layer]["images"]
        assert not np.isin(images, bad_ids).any()
        assert (images >= 0).all()


def test_only_unreadable_files(tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "a.jpg").write_text("not an image")
    (folder / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    loaded = tiny_loaded(tiny_cnn())
    with pytest.raises(UserError, match=r"none of the 2 images .* could be read \(2 skipped\)"):
        build_index(loaded, ImageCollection.from_folder(folder), ["conv1"], out=tmp_path / "index", workers=0)


def test_empty_folder(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "notes.txt").write_text("no images here")
    with pytest.raises(UserError, match="no image files found"):
        ImageCollection.from_folder(folder)
    with pytest.raises(UserError, match="no such folder"):
        ImageCollection.from_folder(tmp_path / "missing")


def test_bad_arguments(tiny, collection, tmp_path):
    with pytest.raises(LayerError, match="'nosuch' is not in the model"):
        build_index(tiny, collection, ["nosuch"], out=tmp_path / "a")
    with pytest.raises(UserError, match="at least one layer"):
        build_index(tiny, collection, [], out=tmp_path / "b")
    with pytest.raises(UserError, match="k must be at least 1"):
        build_index(tiny, collection, ["conv1"], k=0, out=tmp_path / "c")


def test_index_queries(tiny_index):
    patches = tiny_index.top_patches("relu2", 9)
    assert len(patches) == K and [p.value for p in patches] == sorted((p.value for p in patches), reverse=True)
    assert patches[0].to_json() == {"image": patches[0].image, "value": patches[0].value, "box": list(patches[0].box)}
    best = tiny_index.best_patches("conv1")
    assert len(best) == 8 and all(b == tiny_index.top_patches("conv1", c)[0] for c, b in enumerate(best))
    with pytest.raises(UserError, match="channel 12 is out of range"):
        tiny_index.top_patches("relu2", 12)
    with pytest.raises(LayerError, match="not in this index"):
        tiny_index.top_patches("conv2", 0)


def test_all_conv_layers(tmp_path):
    folder = tmp_path / "photos"
    write_images(folder, 3, seed=8)
    index = build_index(tiny_loaded(tiny_cnn()), ImageCollection.from_folder(folder), ["all-conv"], k=1,
                        out=tmp_path / "index", workers=0)
    assert index.layers == ["conv1", "conv2"]


# --- resume ------------------------------------------------------------------------------


def test_cancel_then_resume_equals_uninterrupted(tiny, collection, tiny_index, tmp_path, monkeypatch):
    monkeypatch.setattr(indexing, "_CHECKPOINT_SECONDS", 0.0)  # a checkpoint after every batch
    out = tmp_path / "resumed"
    token = CancelToken()
    seen: list[int] = []

    def progress(done, total, _text):
        if total and done >= 2 * BATCH:
            token.cancel()

    original = indexing._Images.__getitem__

    def spy(self, j):
        seen.append(self.indices[j])
        return original(self, j)

    monkeypatch.setattr(indexing._Images, "__getitem__", spy)
    with pytest.raises(Cancelled):
        build_index(tiny, collection, LAYERS, k=K, out=out, batch_size=BATCH, workers=0, progress=progress, cancel=token)
    assert not (out / "manifest.json").exists()  # no complete index yet
    manifest = json.loads((out / "progress.json").read_text())
    assert manifest["done"] is False and manifest["processed"] == 2 * BATCH
    assert manifest["skipped"] == [0]  # the text file named .jpg was in the first batch
    assert manifest["key"] == tiny_index.manifest["key"]
    build = manifest["files"]["build"]
    assert all((out / f"topk-{build}-{layer}.partial.npz").is_file() for layer in LAYERS)

    seen.clear()
    resumed = build_index(tiny, collection, LAYERS, k=K, out=out, batch_size=BATCH, workers=0)
    assert seen == list(range(2 * BATCH, len(collection))), "only the remaining images are processed"
    assert not list(out.glob("*.partial.npz")) and not (out / "progress.json").exists()
    assert resumed.manifest["files"]["build"] == build
    _assert_same_index(resumed, tiny_index)


def _assert_same_index(a: Index, b: Index) -> None:
    assert a.done and b.done and a.skipped == b.skipped and a.layers == b.layers
    for layer in a.layers:
        for key in ("values", "images", "positions", "boxes"):
            np.testing.assert_array_equal(a.topk[layer][key], b.topk[layer][key], err_msg=f"{layer} {key}")
    np.testing.assert_array_equal(np.asarray(a.features()), np.asarray(b.features()))
    np.testing.assert_array_equal(a.sizes, b.sizes)


def test_interrupt_inside_a_batch_keeps_the_last_whole_checkpoint(tiny, collection, tiny_index, tmp_path, monkeypatch):
    """An interrupt between two layers' updates must not save a half-counted batch (it
    would be counted again on resume: the same image twice in a channel's top-k)."""
    monkeypatch.setattr(indexing, "_CHECKPOINT_SECONDS", 0.0)
    out = tmp_path / "interrupted"
    original = StreamingTopK.update
    calls = []

    def update(self, maps, ids):
        calls.append(len(ids))
        original(self, maps, ids)
        if len(calls) == 2 * len(LAYERS) + 1:  # third batch: the first layer updated, the second not
            raise KeyboardInterrupt

    monkeypatch.setattr(StreamingTopK, "update", update)
    with pytest.raises(KeyboardInterrupt):
        build_index(tiny, collection, LAYERS, k=K, out=out, batch_size=BATCH, workers=0)
    monkeypatch.setattr(StreamingTopK, "update", original)
    assert json.loads((out / "progress.json").read_text())["processed"] == 2 * BATCH
    _assert_same_index(build_index(tiny, collection, LAYERS, k=K, out=out, batch_size=BATCH, workers=0), tiny_index)


@pytest.mark.parametrize("damage", ["truncated", "newer than the manifest", "missing"])
def test_damaged_checkpoint_starts_again(tiny, collection, tiny_index, tmp_path, monkeypatch, damage):
    monkeypatch.setattr(indexing, "_CHECKPOINT_SECONDS", 0.0)
    out = tmp_path / "damaged"
    token = CancelToken()
    with pytest.raises(Cancelled):
        build_index(tiny, collection, LAYERS, k=K, out=out, batch_size=BATCH, workers=0, cancel=token,
                    progress=lambda done, total, _t: token.cancel() if total and done >= BATCH else None)
    build = json.loads((out / "progress.json").read_text())["files"]["build"]
    partial = out / f"topk-{build}-{LAYERS[1]}.partial.npz"
    if damage == "truncated":  # killed while writing it
        partial.write_bytes(partial.read_bytes()[:100])
    elif damage == "newer than the manifest":  # killed after the top-k files, before the manifest
        with np.load(partial) as data:
            state = {x: data[x] for x in data.files}
        state["processed"] = np.int64(2 * BATCH)
        np.savez(partial, **state)
    else:
        partial.unlink()
    seen = []
    original = indexing._Images.__getitem__
    monkeypatch.setattr(indexing._Images, "__getitem__", lambda self, j: seen.append(self.indices[j]) or original(self, j))
    index = build_index(tiny, collection, LAYERS, k=K, out=out, batch_size=BATCH, workers=0)
    assert seen == list(range(len(collection))), "started again from the first image"
    _assert_same_index(index, tiny_index)


# --- pooled features ---------------------------------------------------------------------


def test_features_are_the_pooled_classifier_input(lite0, sample_paths, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("chelsea", "coffee"):
        (folder / f"{name}{sample_paths[name].suffix}").symlink_to(sample_paths[name])
    write_images(folder, 1, seed=3, labels=("",), sizes=(150, 220))
    collection = ImageCollection.from_folder(folder)
    index = build_index(lite0, collection, ["conv_stem"], k=1, out=tmp_path / "index", batch_size=2, workers=0)
    assert index.manifest["feature_layer"] == "classifier"
    features = np.asarray(index.features())
    assert features.shape == (3, 1280) and features.dtype == np.float32
    weight = lite0.module.classifier.weight.detach().numpy()
    bias = lite0.module.classifier.bias.detach().numpy()
    for i in range(3):
        result = run(lite0, collection.open(i), ["bn2"])
        pooled = result.activations["bn2"].mean(axis=(1, 2))  # global average pool of bn2 (with its ReLU6)
        np.testing.assert_allclose(features[i], pooled, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(features[i] @ weight.T + bias, result.logits, rtol=1e-3, atol=1e-3)
    chelsea = collection.paths.index(str(folder / f"chelsea{sample_paths['chelsea'].suffix}"))
    assert int(np.argmax(features[chelsea] @ weight.T + bias)) in (281, 282, 285)  # tabby, tiger cat, Egyptian cat
    # Another feature layer: the pooled output of that layer.
    other = build_index(lite0, collection, ["conv_stem"], k=1, feature_layer="blocks.6", out=tmp_path / "i2",
                        batch_size=2, workers=0)
    act = run(lite0, collection.open(1), ["blocks.6"]).activations["blocks.6"]
    np.testing.assert_allclose(np.asarray(other.features())[1], act.mean(axis=(1, 2)), rtol=1e-4, atol=1e-4)


# --- the command line ----------------------------------------------------------------------


def cli(capsys, *argv) -> tuple[int, str, str]:
    status = main.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(scope="module")
def cli_photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cli") / "photos"
    write_images(folder, 6, seed=11, sizes=(60, 260))
    return folder


def test_cli_index_and_top_patches(capsys, cli_photos, tmp_path):
    out = tmp_path / "index"
    status, text, err = cli(capsys, "index", "--model", "efficientnet_lite0", "--device", "cpu", "--data", cli_photos,
                            "--layer", "conv_stem", "--layer", "blocks.0", "--topk", "3", "--workers", "0",
                            "--batch-size", "4", "--out", out)
    assert status == 0, err
    assert "indexed 6 images (0 skipped as unreadable), layers conv_stem, blocks.0" in text
    index = Index.load(out)
    assert index.done and index.topk["blocks.0"]["values"].shape == (3, 16)

    status, text, err = cli(capsys, "top-patches", "--index", out, "--layer", "blocks.0", "--channel", "7", "--json")
    assert status == 0 and err == ""
    patches = json.loads(text)
    assert len(patches) == 3 and all(set(p) == {"image", "value", "box", "dead", "tied_at_k"} for p in patches)
    values = [p["value"] for p in patches]
    assert values == sorted(values, reverse=True)
    assert [p["image"] for p in patches] == [index.paths[i] for i in index.topk["blocks.0"]["images"][:, 7]]
    for p in patches:
        with Image.open(p["image"]) as im:
            w, h = im.size
        x0, y0, x1, y1 = p["box"]
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h

    status, text, _ = cli(capsys, "top-patches", "--index", out, "--layer", "blocks.0", "--channel", "7")
    assert status == 0 and len(text.splitlines()) == 3 and "box (" in text


@pytest.mark.parametrize("case", ["unknown layer", "missing index", "layer not indexed", "channel out of range",
                                  "missing data folder"])
def test_cli_errors(capsys, cli_photos, tmp_path, case):
    out = tmp_path / "index"
    if case in ("layer not indexed", "channel out of range"):
        build_index(tiny_loaded(tiny_cnn()), ImageCollection.from_folder(cli_photos), ["conv1"], k=1, out=out, workers=0)
    argv, expected = {
        "unknown layer": (["index", "--model", "efficientnet_lite0", "--data", cli_photos, "--layer", "nosuch",
                           "--out", out], "'nosuch' is not in the model"),
        "missing index": (["top-patches", "--index", tmp_path / "nowhere", "--layer", "conv1", "--channel", "0"],
                          "not an index folder"),
        "layer not indexed": (["top-patches", "--index", out, "--layer", "conv2", "--channel", "0"], "not in this index"),
        "channel out of range": (["top-patches", "--index", out, "--layer", "conv1", "--channel", "8"], "out of range"),
        "missing data folder": (["index", "--model", "efficientnet_lite0", "--data", tmp_path / "nope", "--layer",
                                 "conv_stem", "--out", out], "no such folder"),
    }[case]
    status, text, err = cli(capsys, *argv)
    assert status == 2 and text.strip() == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("vizapp: error: ") and expected in err


def test_cli_embed(capsys, cli_photos, tmp_path, monkeypatch, resnet18_state):
    pytest.importorskip("vizapp.collection.projection")
    monkeypatch.setenv("VIZAPP_CACHE", str(tmp_path / "cache"))
    # A small torchvision network from a weights file keeps the box post-pass short.
    torch.manual_seed(0)
    weights = tmp_path / "mnv3.pth"
    torch.save(torchvision.models.mobilenet_v3_small(weights=None).eval().state_dict(), weights)
    out = tmp_path / "embedding.npz"
    status, text, err = cli(capsys, "embed", "--model", weights, "--arch", "mobilenet_v3_small", "--data", cli_photos,
                            "--method", "pca", "--workers", "0", "--out", out)
    assert status == 0, err
    with np.load(out, allow_pickle=False) as data:
        assert {"features", "coords", "paths", "labels"} <= set(data.files)
        n = len(data["paths"])
        # The classifier's input: mobilenet_v3_small's last Linear takes 1024 features.
        assert n == 6 and data["features"].shape == (6, 1024) and data["coords"].shape == (6, 2)
        assert len(data["labels"]) == n
        assert sorted(set(data["labels"].tolist())) == ["cats", "dogs"]
        collection = ImageCollection.from_folder(cli_photos)
        assert data["paths"].tolist() == collection.paths and data["labels"].tolist() == collection.labels
        assert np.isfinite(data["coords"]).all() and np.ptp(data["coords"][:, 0]) > 0
    assert "saved" in text and "6 images" in text


# --- full and read-only disks, a shared cache -------------------------------------------


def _main_py(*args) -> subprocess.CompletedProcess:
    root = Path(__file__).resolve().parent.parent
    return subprocess.run([sys.executable, str(root / "main.py"), *map(str, args)], cwd=root, capture_output=True,
                          text=True, timeout=600)


def test_a_full_disk_is_one_line_and_the_previous_index_stays(tmp_path):
    """Features are written through a memory map: without the space reserved first, a full
    disk killed the process with SIGBUS ("Bus error") and left a torn features file."""
    from _disks import fill, tmpfs

    photos, more = tmp_path / "photos", tmp_path / "more"
    write_images(photos, 40, seed=5, sizes=(40, 80))
    write_images(more, 100, seed=6, sizes=(32, 48))
    torch.manual_seed(0)
    weights = tmp_path / "mnv3.pth"
    torch.save(torchvision.models.mobilenet_v3_small(weights=None).eval().state_dict(), weights)
    with tmpfs(tmp_path / "disk", size="2m") as disk:
        out = disk / "index"
        base = ["index", "--model", weights, "--arch", "mobilenet_v3_small", "--workers", "0",
                "--batch-size", "8", "--device", "cpu", "--layer", "features.0.0", "--out", out]
        first = _main_py(*base, "--data", photos)
        assert first.returncode == 0, first.stderr
        before = Index.load(out)
        features = np.array(before.features())
        assert features.shape == (40, 1024)  # 160 kB: more than the disk will have left
        fill(disk, keep=64 * 1024)
        # A rebuild for a larger collection into the same folder: 400 kB of features.
        second = _main_py(*base, "--data", more)
        assert second.returncode == 2, (second.returncode, second.stderr)
        assert "Bus error" not in second.stderr and len(second.stderr.strip().splitlines()) == 1, second.stderr
        assert second.stderr.startswith("vizapp: error: ") and "the disk is full" in second.stderr
        assert str(out) in second.stderr
        after = Index.load(out)
        assert after.manifest == before.manifest
        np.testing.assert_array_equal(np.asarray(after.features()), features)
        np.testing.assert_array_equal(after.topk["features.0.0"]["images"], before.topk["features.0.0"]["images"])
        assert not list(out.glob("features-*.npy"))[1:], "the failed build's features file is gone"


def test_a_killed_build_for_another_layer_leaves_the_shared_cache_right(tmp_path, monkeypatch):
    """``embed --cache C``, then ``embed --layer OTHER --cache C`` killed while writing its
    features, then the first again: it must get its own features, not the other layer's."""
    folder = tmp_path / "photos"
    write_images(folder, 10, seed=6)
    collection = ImageCollection.from_folder(folder)
    loaded = tiny_loaded(tiny_cnn())
    cache = tmp_path / "cache"
    first = build_index(loaded, collection, [], features_only=True, out=cache, batch_size=4, workers=0)
    expected = np.array(first.features())
    assert expected.shape == (10, 12)

    real_pool, calls = indexing._pool, []

    def dying_pool(*args):
        calls.append(1)
        if len(calls) == 2:  # the second batch: the other layer's features file is being written
            raise SystemExit("killed")
        return real_pool(*args)

    monkeypatch.setattr(indexing, "_pool", dying_pool)
    monkeypatch.setattr(indexing, "_CHECKPOINT_SECONDS", 1e9)  # killed: no checkpoint on the way out
    with pytest.raises(SystemExit):
        build_index(loaded, collection, [], features_only=True, feature_layer="conv1", out=cache, batch_size=4,
                    workers=0)
    monkeypatch.undo()

    again = build_index(loaded, collection, [], features_only=True, out=cache, batch_size=4, workers=0)
    assert again.manifest["key"] == first.manifest["key"]
    np.testing.assert_array_equal(np.asarray(again.features()), expected)
    # The other layer, built whole now, replaces it, and only its files stay.
    other = build_index(loaded, collection, [], features_only=True, feature_layer="conv1", out=cache, batch_size=4,
                        workers=0)
    assert np.asarray(other.features()).shape == (10, 8)
    assert sorted(p.name for p in cache.iterdir()) == sorted(["manifest.json", other.file("items").name,
                                                              other.file("features").name])


def test_space_is_reserved_before_the_features_are_mapped(tmp_path):
    """Without fallocate (some file systems), zeros are written in chunks instead."""
    path = tmp_path / "f.npy"
    features = create_features(path, (100, 50))
    assert features.shape == (100, 50) and not features.any()
    assert os.stat(path).st_blocks * 512 >= features.nbytes  # allocated, not sparse

    def unsupported(*_args):
        raise OSError(errno.EOPNOTSUPP, "not supported")

    import unittest.mock

    with unittest.mock.patch.object(os, "posix_fallocate", unsupported):
        path2 = tmp_path / "g.npy"
        features2 = create_features(path2, (100, 50))
    assert os.stat(path2).st_blocks * 512 >= features2.nbytes and not features2.any()


@pytest.mark.parametrize("where", ["under a file", "read-only", "read-only cache"])
def test_an_unwritable_index_folder_is_one_line(capsys, cli_photos, tmp_path, monkeypatch, where):
    from _disks import tmpfs

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    torch.manual_seed(0)
    weights = tmp_path / "mnv3.pth"
    torch.save(torchvision.models.mobilenet_v3_small(weights=None).eval().state_dict(), weights)
    argv = ["index", "--model", weights, "--arch", "mobilenet_v3_small", "--data", cli_photos, "--workers", "0",
            "--layer", "features.0.0", "--device", "cpu"]
    if where == "under a file":
        out = blocker / "index"
        status, text, err = cli(capsys, *argv, "--out", out)
    else:
        with tmpfs(tmp_path / "ro", read_only=True) as ro:
            if where == "read-only":
                out = ro / "index"
                status, text, err = cli(capsys, *argv, "--out", out)
            else:  # embed keeps its features in $VIZAPP_CACHE
                monkeypatch.setenv("VIZAPP_CACHE", str(ro / "cache"))
                out = ro / "cache"
                status, text, err = cli(capsys, "embed", *argv[1:argv.index("--layer")], "--method", "pca",
                                        "--out", tmp_path / "e.npz")
    assert status == 2 and len(err.strip().splitlines()) == 1 and err.startswith("vizapp: error: "), err
    assert str(out) in err and "internal error" not in err

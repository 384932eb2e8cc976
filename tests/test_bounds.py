"""Bounded work for odd image shapes: very long images are refused before decoding, and
preprocessing a long image costs memory in proportion to the crop, not to the resized image."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from models import Preprocess
from models._preprocess import BOUNDED_SIDE
from vizapp.analysis import thumbnails
from vizapp.core.errors import ImageError
from vizapp.inputs.images import MAX_ASPECT, load_image

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("size", [(200_000, 1), (20_000, 1), (1, 20_000), (5100, 100), (5001, 100), (100, 5001)])
def test_very_long_images_are_refused_in_one_line_before_decoding(tmp_path, monkeypatch, size):
    path = tmp_path / f"long-{size[0]}x{size[1]}.png"
    Image.new("RGB", size, (200, 10, 10)).save(path)
    assert path.stat().st_size < 20_000  # a tiny file

    def decode(self):
        raise AssertionError("decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", decode)  # refused from the header alone
    with pytest.raises(ImageError) as info:
        load_image(path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message and f"{size[0]}x{size[1]}" in message
    # The ratio it states is the image's, and over the limit it states (5001 x 100 is 50.01:1, not 50:1).
    stated = float(re.search(r"pixels is ([0-9.]+):1", message).group(1))
    assert stated > MAX_ASPECT and abs(stated - max(size) / min(size)) < 0.01
    assert f"longer than {MAX_ASPECT}:1" in message
    with pytest.raises(ImageError):
        load_image(path.read_bytes())
    # The gallery skips it like any other unreadable file.
    assert thumbnails([("long", path)]) == []


def test_long_images_up_to_the_limit_still_load(tmp_path):
    path = tmp_path / "panorama.png"
    Image.new("RGB", (MAX_ASPECT * 20, 20), (0, 90, 0)).save(path)
    assert load_image(path).size == (MAX_ASPECT * 20, 20)


_MEMORY = """
import json, resource, sys
from PIL import Image
from models import Preprocess

def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux

image = Image.new("RGB", (20_000, 1))
image.paste((255, 255, 255), (10_000, 0, 20_000, 1))
Preprocess()(Image.new("RGB", (300, 300)))  # torch's own start-up allocations, before the baseline
before = peak_mb()
grown = {}
for interpolation in sys.argv[1:]:
    x = Preprocess(interpolation=interpolation)(image)
    assert tuple(x.shape) == (3, 224, 224), x.shape
    grown[interpolation] = peak_mb() - before
print(json.dumps(grown))
"""


def test_preprocessing_a_long_image_takes_memory_of_the_crop_only_in_a_fresh_process():
    # The peak resident size only ever goes up, so it is measured in a process of its own (in
    # this one an earlier test may already have raised it past anything a regression would
    # add). Resizing the whole 20000 x 1 image makes it 5 120 000 x 256: about 4 GB more.
    interpolations = ["bilinear", "bicubic", "nearest"]
    done = subprocess.run([sys.executable, "-c", _MEMORY, *interpolations], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    grown = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(grown) == set(interpolations)
    assert max(grown.values()) < 100, grown


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "nearest"])
def test_preprocessing_a_very_long_image_gives_the_centre_of_its_long_side(interpolation):
    # The old path resized the whole image: 200000 x 1 -> 51 200 000 x 256 (39 GB as float,
    # an allocation failure).
    pre = Preprocess(interpolation=interpolation)
    for size in [(200_000, 1), (1, 200_000), (20_000, 1)]:
        image = Image.new("RGB", size)
        image.paste((255, 255, 255), (size[0] // 2, size[1] // 2, size[0], size[1]))  # right / bottom half white
        x = pre(image)
        assert x.shape == (3, 224, 224)
        shown = pre.to_display(x)
        assert shown.shape == (224, 224, 3)
        # The crop is the centre of the long side: about one original pixel, dark on the left of
        # the middle and white on the right (for a tall image: above and below).
        line = shown[112, :, 0] if size[0] > size[1] else shown[:, 112, 0]
        if interpolation == "nearest":  # one of the two pixels (float32 indices, as torch)
            assert set(line.tolist()) <= {0, 255}
        else:
            assert line[0] < 30 and line[-1] > 225


def _full_resize(pre: Preprocess, image: Image.Image) -> torch.Tensor:
    x = F.pil_to_tensor(image)
    x = F.resize(x, [pre.resize], interpolation=InterpolationMode(pre.interpolation), antialias=True)
    return F.center_crop(x, [pre.crop, pre.crop])


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "nearest"])
@pytest.mark.parametrize("size", [(2000, 100), (100, 2000), (5000, 7), (40, 3001)])
def test_bounded_preprocessing_equals_resizing_the_whole_image(interpolation, size):
    w, h = size
    assert max(Preprocess().resized_size(size)) > BOUNDED_SIDE * 256  # the bounded path
    rng = np.random.default_rng(w + h)
    small = rng.integers(0, 256, (max(2, h // 8), max(2, w // 8), 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC)  # smooth, like a photo
    for pre in (Preprocess(interpolation=interpolation), Preprocess(interpolation=interpolation, mean=(0.5,), std=(0.5,))):
        got = pre(image)
        want = _full_resize(pre, image.convert("L" if pre.channels == 1 else "RGB"))
        pixels = (got * torch.tensor(pre.std).view(-1, 1, 1) + torch.tensor(pre.mean).view(-1, 1, 1)) * 255
        diff = (pixels.round() - want.float()).abs().max().item()
        # Nearest picks the same pixels; bilinear and bicubic are torch's uint8 arithmetic on the
        # pixels under the crop (equal here; a grey level or two where torch resizes in float).
        assert diff <= (0 if interpolation == "nearest" else 2), (interpolation, size, diff)


def _sharp(kind: str, w: int, h: int, seed: int) -> Image.Image:
    """Content that shows every difference of filter, tap or rounding: noise, or stripes one
    pixel wide across the long side (bicubic overshoots on them)."""
    if kind == "noise":
        return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))
    pixels = np.zeros((h, w, 3), np.uint8)
    if w > h:
        pixels[:, ::2] = 255
    else:
        pixels[::2] = 255
    pixels[::3, ::5] //= 3  # and a slower pattern both ways
    return Image.fromarray(pixels)


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "nearest"])
@pytest.mark.parametrize("size", [(1020, 60), (60, 1020), (100, 3000), (3000, 100), (4000, 80), (41, 2050), (333, 11_000)])
def test_bounded_preprocessing_of_sharp_content_equals_resizing_the_whole_image(interpolation, size):
    # Tall images between 16:1 and 50:1 with bicubic once differed by up to 24 grey levels
    # (mean 1.9 on stripes): Pillow resampled rows before columns and rounded differently.
    w, h = size
    assert BOUNDED_SIDE * 256 < max(Preprocess().resized_size(size)) and max(size) <= MAX_ASPECT * min(size)
    for kind in ("stripes", "noise"):
        image = _sharp(kind, w, h, w * h)
        for pre in (Preprocess(interpolation=interpolation), Preprocess(interpolation=interpolation, mean=(0.5,), std=(0.5,))):
            source = image.convert("L") if pre.channels == 1 else image
            got, want = pre.pixels(source).int(), _full_resize(pre, source).int()
            assert got.shape == want.shape == (pre.channels, 224, 224)
            diff = (got - want).abs()
            assert diff.max().item() <= 2, (kind, pre.channels, diff.max().item(), diff.float().mean().item())


@pytest.mark.parametrize("size", [(3000, 100), (100, 3000)])
def test_boxes_map_back_onto_a_long_image(size):
    # A white block in the middle of a long image lands on the model-input pixels whose box
    # maps back onto it (box_to_original is the geometry of the bounded path too).
    w, h = size
    pixels = np.zeros((h, w, 3), np.uint8)
    x0, y0 = (w // 2 - 30, 20) if w > h else (20, h // 2 - 30)
    x1, y1 = (x0 + 60, 80) if w > h else (80, y0 + 60)
    pixels[y0:y1, x0:x1] = 255
    pre = Preprocess()
    x = pre(Image.fromarray(pixels))
    bright = (x.mean(dim=0) > 0).nonzero()
    box = (int(bright[:, 1].min()), int(bright[:, 0].min()), int(bright[:, 1].max()) + 1, int(bright[:, 0].max()) + 1)
    bx0, by0, bx1, by1 = pre.box_to_original(box, size)
    assert abs(bx0 - x0) <= 2 and abs(by0 - y0) <= 2 and abs(bx1 - x1) <= 2 and abs(by1 - y1) <= 2


def test_a_long_image_is_one_line_at_the_command_line_and_skipped_by_an_index(tmp_path, capsys, make_loaded):
    import main
    from vizapp.collection.datasets import ImageCollection
    from vizapp.collection.indexing import build_index

    long_png = tmp_path / "photos" / "long.png"
    long_png.parent.mkdir()
    Image.new("RGB", (200_000, 1), (9, 9, 9)).save(long_png)
    Image.new("RGB", (40, 30), (200, 100, 0)).save(tmp_path / "photos" / "small.png")
    status = main.main(["predict", "--model", "efficientnet_lite0", "--image", str(long_png)])
    out, err = capsys.readouterr()
    assert status == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "200000x1" in err and "Traceback" not in err
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=4), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(4, 2))
    collection = ImageCollection.from_folder(tmp_path / "photos")
    index = build_index(make_loaded(net), collection, ["0"], k=1, out=tmp_path / "index", batch_size=2, workers=0)
    assert index.done
    assert [collection.paths[i] for i in index.skipped] == [str(long_png)]

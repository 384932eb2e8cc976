"""Augmentations for the training lab, and the preview grid that shows them.

Augmentations are ``torchvision.transforms.v2`` transforms applied per image (each
image of a batch draws its own parameters) on uint8 tensors, reproducible under
``torch.manual_seed``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from vizapp.core.errors import UserError
from vizapp.core.jobs import seeded
from vizapp.training.trainsets import TrainSet

__all__ = ["AUGMENTATIONS", "SIMCLR_AUGMENT", "Augment", "build_augment", "preview"]

#: Augmentation keys (in the order they are applied) and what each does at strength 1.
AUGMENTATIONS: dict[str, str] = {
    "crop": "random resized crop: 35-100% of the area, aspect 3:4 to 4:3, back to full size",
    "rotate": "rotation by up to 30 degrees either way, bilinear (corners filled black)",
    "hflip": "horizontal flip, half of the images",
    "vflip": "vertical flip, half of the images",
    "jitter": "colour jitter (80% of the images): brightness, contrast, saturation +-40%, hue +-0.1",
    "grayscale": "grey scale, 20% of the images (colour sets only)",
    "blur": "Gaussian blur (half of the images), kernel a tenth of the side, sigma 0.1-2",
    "erase": "random erasing (half of the images): a black rectangle of 2-33% of the area",
}
#: SimCLR's augmentation recipe (Chen et al. 2020), in our keys.
SIMCLR_AUGMENT = ("crop", "hflip", "jitter", "grayscale", "blur")

_DEFAULT_P = {"crop": 1.0, "rotate": 1.0, "hflip": 0.5, "vflip": 0.5, "jitter": 0.8, "grayscale": 0.2,
              "blur": 0.5, "erase": 0.5}


def _transform(name: str, size: int, channels: int, s: float):
    from torchvision.transforms import v2

    if name == "crop":
        return v2.RandomResizedCrop(size, scale=(max(0.08, 1.0 - 0.65 * s), 1.0), antialias=True)
    if name == "rotate":
        return v2.RandomRotation(30.0 * s, interpolation=v2.InterpolationMode.BILINEAR)
    if name == "hflip":
        return v2.RandomHorizontalFlip(1.0)
    if name == "vflip":
        return v2.RandomVerticalFlip(1.0)
    if name == "jitter":
        if channels == 3:
            return v2.ColorJitter(0.4 * s, 0.4 * s, 0.4 * s, min(0.5, 0.1 * s))
        return v2.ColorJitter(0.4 * s, 0.4 * s)
    if name == "grayscale":
        return v2.Grayscale(num_output_channels=channels)
    if name == "blur":
        kernel = max(3, int(round(size / 10)) | 1)
        return v2.GaussianBlur(kernel, sigma=(0.1, max(0.1, 2.0 * s)))
    if name == "erase":
        return v2.RandomErasing(1.0, scale=(0.02, max(0.02, 0.33 * s)), value=0)
    raise AssertionError(name)


class Augment:
    """A chosen list of augmentations: call it on a uint8 image (``C x H x W``) or batch
    (``N x C x H x W``); each image draws its own random parameters from torch's global
    generator, so ``torch.manual_seed`` reproduces a run.

    torchvision applies one set of parameters to a whole batch tensor, so a batch is
    augmented image by image: on one CPU core at 32 px, about 15 us per image for a flip,
    50-100 us for crop, rotation or blur, 200 us for colour jitter (SimCLR's recipe about
    0.45 ms per image and view).
    """

    def __init__(self, names: tuple[str, ...], transform) -> None:
        self.names = names
        self._transform = transform

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.uint8:
            raise TypeError(f"augmentations take uint8 images, got {x.dtype}")
        if self._transform is None:
            return x
        if x.ndim == 3:
            return self._transform(x)
        if x.ndim != 4:
            raise ValueError(f"expected C x H x W or N x C x H x W, got {tuple(x.shape)}")
        return torch.stack([self._transform(image) for image in x]) if len(x) else x

    def __repr__(self) -> str:
        return f"Augment({', '.join(self.names) or 'none'})"


def build_augment(
    names: Sequence[str] | str, size: int, channels: int, strength: float = 1.0, *, p: float | None = None
) -> Augment:
    """Compose the named augmentations (keys of :data:`AUGMENTATIONS`, or one
    comma-separated string such as ``"crop,hflip"``) for ``size`` px images with
    ``channels`` channels.

    They run in the order of :data:`AUGMENTATIONS` whatever the order of ``names``.
    ``strength`` (0-2) scales the magnitudes (crop area, angle, jitter, blur, erased
    area), not how often each is applied; ``p`` overrides every augmentation's own
    probability (``p=1`` applies all of them to every image).

    Raises
    ------
    UserError
        An unknown name (the message lists the valid ones), or a strength or ``p`` out of range.
    """
    from torchvision.transforms import v2

    if isinstance(names, str):
        names = [name.strip() for name in names.split(",") if name.strip()]
    unknown = [name for name in names if name not in AUGMENTATIONS]
    if unknown:
        raise UserError(f"unknown augmentation {', '.join(map(repr, unknown))}; choose from {', '.join(AUGMENTATIONS)}")
    if not 0.0 <= strength <= 2.0:
        raise UserError(f"augmentation strength {strength} must lie between 0 and 2")
    if p is not None and not 0.0 <= p <= 1.0:
        raise UserError(f"augmentation probability {p} must lie between 0 and 1")
    chosen = tuple(name for name in AUGMENTATIONS if name in names)
    steps = []
    for name in chosen:
        if name == "grayscale" and channels == 1:
            continue
        t = _transform(name, size, channels, strength)
        prob = _DEFAULT_P[name] if p is None else p
        steps.append(t if prob >= 1.0 else v2.RandomApply([t], p=prob))
    return Augment(chosen, v2.Compose(steps) if steps else None)



def preview(
    ts: TrainSet,
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    k: int = 16,
    seed: int = 0,
    cols: int = 8,
) -> np.ndarray:
    """``k`` images chosen by ``seed``, augmented with ``augment`` under ``seed``, tiled
    ``cols`` wide with a 2 px grey gap: an ``H x W x 3`` uint8 array (grey sets repeated
    to RGB). Call it twice with the same seed, with and without ``augment``, to show the
    same images plain and augmented.

    The augmentation draws from torch's global generator seeded with ``seed`` and restored
    afterwards, so the caller's random stream is as it was. That generator is shared by all
    threads: a run that must be reproducible should not be drawing augmentations on
    another thread meanwhile (preview between runs, or on the training thread).
    """
    if len(ts) == 0:
        raise UserError(f"{ts.name}: the set is empty, nothing to preview")
    k = max(1, min(k, len(ts)))
    cols = max(1, min(cols, k))
    index = np.random.default_rng(seed).choice(len(ts), size=k, replace=False)
    batch = ts.images[torch.from_numpy(index)]
    if augment is not None:
        with seeded(seed):
            batch = augment(batch)
    if batch.shape[1] == 1:
        batch = batch.expand(-1, 3, -1, -1)
    tiles = batch.permute(0, 2, 3, 1).numpy()
    h, w, gap = tiles.shape[1], tiles.shape[2], 2
    rows = math.ceil(k / cols)
    grid = np.full((rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap, 3), 96, dtype=np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        grid[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = tile
    return grid

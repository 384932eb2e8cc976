"""Training data for the live lab: small labelled image sets held in memory as uint8
tensors, a stratified train/validation split, augmentations and a preview grid.

Sets (``load_trainset(spec)``):

``shapes``
    Procedural and offline: eight classes (:data:`SHAPE_CLASSES`) drawn in a random
    colour on a random background (at least 50 grey levels lighter or darker, so colour
    alone never gives the class), at a random size, position and rotation, with a little
    pixel noise. Every shape covers the same area as a circle of the drawn radius, so
    the ink count does not give the class either: the network has to look at the outline.
    Deterministic from the seed.
``digits``
    scikit-learn's 1,797 hand-written digits (8x8, 16 grey levels, offline), scaled to
    0-255 and enlarged bilinearly to 32 px by default: LeNet-5's input size and the
    shapes' size, so one model runs on either set, and pooling twice still leaves a map.
``mnist``, ``fashion-mnist``, ``cifar10``
    torchvision's training split, downloaded with progress when missing
    (:func:`vizapp.collection.datasets.torchvision_dataset`; offline, the error names the folder).
a folder
    One sub-folder per class (``DIR/cat/*.jpg``, ``DIR/dog/*.jpg``); images are centre
    cropped to a square and resized to 64 px by default; unreadable files are skipped
    and counted in :attr:`TrainSet.skipped`.

Augmentations are ``torchvision.transforms.v2`` transforms applied per image (each
image of a batch draws its own parameters) on uint8 tensors, reproducible under
``torch.manual_seed``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vizapp.core.errors import ImageError, UserError
from vizapp.core.jobs import CancelToken, Progress, no_progress, seeded

__all__ = [
    "AUGMENTATIONS",
    "DATASETS",
    "SHAPE_CLASSES",
    "SIMCLR_AUGMENT",
    "Augment",
    "TrainSet",
    "build_augment",
    "load_trainset",
    "make_shapes",
    "mean_std",
    "preview",
    "split",
    "to_float",
]

#: The built-in names ``load_trainset`` takes; anything else is a folder path.
DATASETS = ("shapes", "digits", "mnist", "fashion-mnist", "cifar10")

SHAPE_CLASSES = ("circle", "square", "triangle", "star", "cross", "hexagon", "ring", "diamond")

#: Default image sides; torchvision's sets keep their own (28 or 32) unless asked.
_SHAPES_SIZE = 32
_DIGITS_SIZE = 32
_FOLDER_SIZE = 64


# --- the set ------------------------------------------------------------------------------


@dataclass(repr=False)
class TrainSet:
    """A labelled image set in memory.

    Attributes
    ----------
    name : str
        ``"shapes (32 px)"``, ``"digits"``, ``"mnist"``, or the folder's name.
    images : torch.Tensor
        ``N x C x H x W`` uint8, ``C`` 1 or 3, square.
    labels : torch.Tensor
        ``N`` int64, indices into ``classes``.
    classes : list of str
    skipped : int
        Files left out because they could not be read (folders only).
    """

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    skipped: int = 0

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[1] not in (1, 3):
            raise ValueError(f"images must be N x C x H x W uint8 with C 1 or 3, got {tuple(self.images.shape)} "
                             f"{self.images.dtype}")
        if self.images.shape[2] != self.images.shape[3]:
            raise ValueError(f"images must be square, got {self.images.shape[2]} x {self.images.shape[3]}")
        self.labels = torch.as_tensor(self.labels, dtype=torch.int64)
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"{self.images.shape[0]} images but labels of shape {tuple(self.labels.shape)}")
        if len(self.labels) and (int(self.labels.min()) < 0 or int(self.labels.max()) >= len(self.classes)):
            raise ValueError(f"labels must lie in 0..{len(self.classes) - 1}")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __repr__(self) -> str:
        n, c, h, w = self.images.shape
        return f"TrainSet({self.name!r}, {n} x {c} x {h} x {w}, {len(self.classes)} classes)"

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def size(self) -> int:
        """Image side in pixels (images are square)."""
        return int(self.images.shape[2])

    def class_counts(self) -> list[int]:
        """Images per class, in the order of ``classes``."""
        return torch.bincount(self.labels, minlength=len(self.classes)).tolist()

    def subset(self, indices) -> TrainSet:
        """The images at ``indices`` (a sequence, array or tensor of ints), same classes."""
        index = torch.as_tensor(np.asarray(indices, dtype=np.int64).reshape(-1))
        return TrainSet(self.name, self.images[index], self.labels[index], list(self.classes), self.skipped)


# --- loading -------------------------------------------------------------------------------


def load_trainset(
    spec: str | Path,
    *,
    size: int | None = None,
    n: int | None = None,
    seed: int = 0,
    progress: Progress = no_progress,
    cancel: CancelToken | None = None,
    root: str | Path | None = None,
) -> TrainSet:
    """A training set by name (:data:`DATASETS`) or folder path.

    Parameters
    ----------
    spec : str or Path
        ``shapes``, ``digits``, ``mnist``, ``fashion-mnist``, ``cifar10``, or a folder with
        one sub-folder per class (write ``./shapes`` for a folder that shares a set's name).
    size : int, optional
        Image side in pixels. Defaults: shapes and digits 32, torchvision sets their own
        (28 or 32), folders 64.
    n : int, optional
        At most this many images: a stratified subset chosen by ``seed`` (for shapes, the
        number generated; default 6000).
    seed : int
        Seeds the shapes and the ``n`` subset.
    progress, cancel
        For downloads and folder loading.
    root : path, optional
        Where torchvision's sets live (default :func:`vizapp.core.paths.data_dir`: ``$VIZAPP_DATA`` or the cache's ``data``).

    Raises
    ------
    UserError
        A bad size or ``n``, a missing folder or one without class sub-folders, a set that
        is not downloaded and cannot be.
    """
    if size is not None and not 8 <= int(size) <= 512:
        raise UserError(f"image size {size} is out of range; choose a side between 8 and 512 pixels")
    if n is not None and int(n) < 1:
        raise UserError(f"n={n}: the number of images must be at least 1")
    key = spec.strip().lower() if isinstance(spec, str) else spec
    if key == "shapes":
        return make_shapes(n=6000 if n is None else int(n), size=size or _SHAPES_SIZE, seed=seed)
    if key == "digits":
        ts = _load_digits(size or _DIGITS_SIZE)
    elif key in ("mnist", "fashion-mnist", "cifar10"):
        ts = _load_torchvision(key, size, root, progress, cancel)
    else:
        return _load_folder(Path(spec), size or _FOLDER_SIZE, n, seed, progress, cancel)
    if n is not None and n < len(ts):
        ts = ts.subset(_stratified(ts.labels.numpy(), n, seed))
    return ts


def _load_digits(size: int) -> TrainSet:
    from sklearn.datasets import load_digits

    digits = load_digits()
    source = torch.from_numpy(digits.images.astype(np.float32) * (255.0 / 16.0))[:, None]  # N x 1 x 8 x 8
    images = _resize_batch(source, size)
    return TrainSet("digits", images, torch.from_numpy(digits.target.astype(np.int64)), [str(d) for d in range(10)])


def _load_torchvision(name: str, size: int | None, root, progress: Progress, cancel: CancelToken | None) -> TrainSet:
    from vizapp.collection.datasets import torchvision_dataset

    dataset = torchvision_dataset(name, root, train=True, download=True, progress=progress, cancel=cancel)
    if cancel is not None:
        cancel.check()
    data = torch.as_tensor(np.asarray(dataset.data))
    images = data[:, None] if data.ndim == 3 else data.permute(0, 3, 1, 2)  # MNIST N x H x W, CIFAR N x H x W x C
    images = images.contiguous()
    if size is not None and size != images.shape[-1]:
        images = _resize_batch(images, size)
    labels = torch.as_tensor(np.asarray(dataset.targets, dtype=np.int64))
    return TrainSet(name, images, labels, list(dataset.classes))


def _resize_batch(images: torch.Tensor, size: int, chunk: int = 2048) -> torch.Tensor:
    """Square ``N x C x h x h`` images (uint8 or float 0-255) to ``size`` px, bilinear
    (antialiased when shrinking), rounded to uint8."""
    out = torch.empty((images.shape[0], images.shape[1], size, size), dtype=torch.uint8)
    for start in range(0, images.shape[0], chunk):
        part = images[start:start + chunk].float()
        resized = torch.nn.functional.interpolate(part, size=(size, size), mode="bilinear", align_corners=False,
                                                  antialias=size < images.shape[-1])
        out[start:start + chunk] = resized.round_().clamp_(0, 255).to(torch.uint8)
    return out


def _load_folder(root: Path, size: int, n: int | None, seed: int, progress: Progress,
                 cancel: CancelToken | None) -> TrainSet:
    from PIL import Image

    from vizapp.collection.datasets import ImageCollection
    from vizapp.inputs.images import load_image

    layout = f"a training folder holds one sub-folder per class, e.g. {root / 'cat'}/*.jpg and {root / 'dog'}/*.jpg"
    if not root.expanduser().is_dir():
        raise UserError(f"'{root}' is neither a built-in set ({', '.join(DATASETS)}) nor a folder")
    try:
        collection = ImageCollection.from_folder(root)
    except UserError as exc:
        raise UserError(f"{exc}; {layout}") from None
    items = [it for it in collection.items if it.label]
    if not items:
        raise UserError(f"{root}: its images are not in class sub-folders; {layout}")
    classes = sorted({it.label for it in items})
    if len(classes) < 2:
        raise UserError(f"{root}: only one class ('{classes[0]}') found; training needs at least two; {layout}")
    labels = np.array([classes.index(it.label) for it in items], dtype=np.int64)
    if n is not None and n < len(items):
        keep = _stratified(labels, n, seed)
        items, labels = [items[i] for i in keep], labels[keep]
    images = np.empty((len(items), size, size, 3), dtype=np.uint8)
    ok = np.zeros(len(items), dtype=bool)
    every = max(1, len(items) // 200)
    for i, item in enumerate(items):
        if cancel is not None:
            cancel.check()
        try:
            image = load_image(item.key)
        except ImageError:
            pass
        else:
            w, h = image.size
            side = min(w, h)
            box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)  # the centre square
            images[i] = np.asarray(image.resize((size, size), Image.Resampling.BILINEAR, box=box, reducing_gap=2.0))
            ok[i] = True
        if (i + 1) % every == 0 or i + 1 == len(items):
            progress(i + 1, len(items), f"loading {collection.name}: {i + 1}/{len(items)} images")
    skipped = int((~ok).sum())
    if not ok.any():
        raise UserError(f"{root}: none of its {len(items)} image files could be read")
    labels = labels[ok]
    present = sorted(set(labels.tolist()))  # a class whose files were all unreadable drops out
    remap = {old: new for new, old in enumerate(present)}
    labels = np.array([remap[v] for v in labels.tolist()], dtype=np.int64)
    tensor = torch.from_numpy(images[ok]).permute(0, 3, 1, 2).contiguous()
    return TrainSet(collection.name, tensor, torch.from_numpy(labels), [classes[c] for c in present], skipped)


def _allocate(counts: np.ndarray, total: int) -> np.ndarray:
    """Split ``total`` over classes in proportion to ``counts`` (largest remainders, ties
    to the earlier class), so the parts add up to ``total`` exactly."""
    share = counts * (total / max(1, counts.sum()))
    take = np.floor(share).astype(int)
    order = np.argsort(-(share - take), kind="stable")
    take[order[: total - take.sum()]] += 1
    return take


def _stratified(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted indices of ``n`` items keeping the class proportions."""
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    take = _allocate(counts, n)
    picked = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take, strict=True)]
    return np.sort(np.concatenate(picked))


def split(ts: TrainSet, val_fraction: float = 0.2, seed: int = 0) -> tuple[TrainSet, TrainSet]:
    """A stratified, deterministic train / validation split.

    ``round(val_fraction * len(ts))`` images go to validation, shared over the classes in
    proportion to their sizes; every class with two or more images gives at least one
    (when ``val_fraction > 0``) and keeps at least one for training. Both parts keep the
    original order; the same ``seed`` gives the same split.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise UserError(f"validation fraction {val_fraction} must lie in [0, 1)")
    rng = np.random.default_rng(seed)
    labels = ts.labels.numpy()
    counts = np.bincount(labels, minlength=len(ts.classes))
    take = _allocate(counts, int(round(val_fraction * len(ts))))
    if val_fraction > 0:
        take = np.where(counts >= 2, np.maximum(take, 1), take)
    take = np.minimum(take, np.maximum(counts - 1, 0))
    val = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in enumerate(take)]
    val_index = np.sort(np.concatenate(val)) if val else np.zeros(0, np.int64)
    mask = np.ones(len(ts), dtype=bool)
    mask[val_index] = False
    return ts.subset(np.flatnonzero(mask)), ts.subset(val_index)


# --- shapes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Geometry:
    """A shape with circumradius 1: ``k``-fold rotational and mirror symmetry, its outline
    over the half sector ``[0, pi/k]`` as polar vertices, a hole (ring) radius."""

    k: int = 0  # 0: a disc
    outline: tuple[tuple[float, float], ...] = ()  # (radius, angle), from angle 0 to pi/k
    hole: float = 0.0

    def lines(self) -> list[tuple[float, float, float]]:
        """The outline's segments as ``(start angle, distance, normal angle)``: ``r = d / cos(t - psi)``."""
        out = []
        for (r1, a1), (r2, a2) in zip(self.outline, self.outline[1:], strict=False):
            p1 = np.array([r1 * math.cos(a1), r1 * math.sin(a1)])
            p2 = np.array([r2 * math.cos(a2), r2 * math.sin(a2)])
            normal = np.array([p2[1] - p1[1], p1[0] - p2[0]])
            normal /= np.linalg.norm(normal)
            if normal @ p1 < 0:
                normal = -normal
            out.append((a1, float(normal @ p1), math.atan2(normal[1], normal[0])))
        return out

    def area(self) -> float:
        if not self.k:
            return math.pi * (1.0 - self.hole**2)
        fan = sum(0.5 * r1 * r2 * math.sin(a2 - a1)
                  for (r1, a1), (r2, a2) in zip(self.outline, self.outline[1:], strict=False))
        return 2 * self.k * fan


def _regular(k: int) -> _Geometry:
    return _Geometry(k, ((1.0, 0.0), (math.cos(math.pi / k), math.pi / k)))


def _cross(w: float = 0.3) -> _Geometry:
    """A plus sign whose arms reach 1 and are ``2w`` wide, scaled to circumradius 1."""
    reach = math.hypot(1.0, w)
    pts = ((1.0, 0.0), (reach, math.atan(w)), (w * math.sqrt(2.0), math.pi / 4))
    return _Geometry(4, tuple((r / reach, a) for r, a in pts))


#: Star: 5 points, inner radius 0.45; ring: hole 0.5; diamond: diagonals 2 : 1.1; cross: arms 0.6 wide.
_GEOMETRY = {
    "circle": _Geometry(),
    "square": _regular(4),
    "triangle": _regular(3),
    "star": _Geometry(5, ((1.0, 0.0), (0.45, math.pi / 5))),
    "cross": _cross(0.3),
    "hexagon": _regular(6),
    "ring": _Geometry(hole=0.5),
    "diamond": _Geometry(2, ((1.0, 0.0), (0.55, math.pi / 2))),
}
#: Circumradius per unit "equal-area radius": a shape at ``_SPAN[c] * s`` covers ``pi s^2``.
_SPAN = {name: math.sqrt(math.pi / g.area()) for name, g in _GEOMETRY.items()}
_RADIUS = (0.16, 0.26)  # equal-area radius, as a fraction of the image side
_CONTRAST = 50.0  # least luminance difference between shape and background, grey levels
_NOISE = 4.0  # pixel noise, grey levels (standard deviation)


def _coverage(kind: str, cx, cy, radius, theta, size: int) -> np.ndarray:
    """Antialiased masks (``m x size x size`` float32 in [0, 1]) of ``m`` shapes of one kind.

    ``cx, cy`` are centres in pixels (pixel ``j`` spans ``[j, j+1)``), ``radius`` the
    circumradius in pixels, ``theta`` the rotation in radians (clockwise on screen, as y
    points down). Coverage ramps over one pixel across the outline, measured along the ray
    from the centre.
    """
    geometry = _GEOMETRY[kind]
    cx, cy, radius, theta = (np.asarray(v, dtype=np.float32)[:, None, None] for v in (cx, cy, radius, theta))
    grid = np.arange(size, dtype=np.float32) + 0.5
    dx = grid[None, None, :] - cx
    dy = grid[None, :, None] - cy
    rho = np.hypot(dx, dy)
    if geometry.k:
        period = np.float32(2 * math.pi / geometry.k)
        t = np.mod(np.arctan2(dy, dx) - theta, period)
        t = np.minimum(t, period - t)
        lines = geometry.lines()
        _, d, psi = lines[0]
        edge = d / np.cos(t - np.float32(psi))
        with np.errstate(divide="ignore", invalid="ignore"):
            for start, d, psi in lines[1:]:
                edge = np.where(t >= start, d / np.cos(t - np.float32(psi)), edge)
        edge *= radius
    else:
        edge = radius
    cover = np.clip(edge - rho + 0.5, 0.0, 1.0)
    if geometry.hole:
        cover *= np.clip(rho - geometry.hole * radius + 0.5, 0.0, 1.0)
    return cover.astype(np.float32, copy=False)


def _shape_params(n: int, size: int, seed: int) -> dict[str, np.ndarray]:
    """Every random choice of :func:`make_shapes`: labels, centre, circumradius, rotation, colours."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(SHAPE_CLASSES))  # balanced to within one
    span = np.array([_SPAN[c] for c in SHAPE_CLASSES])[labels]
    radius = rng.uniform(*_RADIUS, n) * size * span
    margin = radius + 1.0
    cx = margin + rng.uniform(0, 1, n) * np.maximum(size - 2 * margin, 0)
    cy = margin + rng.uniform(0, 1, n) * np.maximum(size - 2 * margin, 0)
    theta = rng.uniform(0, 2 * math.pi, n)
    fg = rng.uniform(0, 255, (n, 3))
    bg = rng.uniform(0, 255, (n, 3))
    luma = np.array([0.299, 0.587, 0.114])
    bad = np.abs((fg - bg) @ luma) < _CONTRAST
    while bad.any():  # redraw the background until it is clearly lighter or darker
        bg[bad] = rng.uniform(0, 255, (int(bad.sum()), 3))
        bad = np.abs((fg - bg) @ luma) < _CONTRAST
    return {"labels": labels, "cx": cx, "cy": cy, "radius": radius, "theta": theta, "fg": fg, "bg": bg}


def make_shapes(n: int = 6000, size: int = 32, seed: int = 0) -> TrainSet:
    """The procedural shapes set: ``n`` RGB images of ``size`` px, balanced over
    :data:`SHAPE_CLASSES`, identical for the same ``(n, size, seed)``."""
    if n < 1:
        raise UserError(f"n={n}: the number of images must be at least 1")
    if not 16 <= size <= 512:
        raise UserError(f"shapes are drawn at 16 to 512 px (32 or 64 suit the built-in models), not {size}")
    p = _shape_params(n, size, seed)
    noise_rng = np.random.default_rng([seed, 1])
    images = np.empty((n, 3, size, size), dtype=np.uint8)
    chunk = max(1, (1 << 21) // (size * size))
    for start in range(0, n, chunk):
        part = slice(start, min(n, start + chunk))
        labels = p["labels"][part]
        cover = np.empty((len(labels), size, size), dtype=np.float32)
        for c, kind in enumerate(SHAPE_CLASSES):
            (rows,) = np.nonzero(labels == c)
            if len(rows):
                at = rows + start
                cover[rows] = _coverage(kind, p["cx"][at], p["cy"][at], p["radius"][at], p["theta"][at], size)
        fg = p["fg"][part].astype(np.float32)[:, :, None, None]
        bg = p["bg"][part].astype(np.float32)[:, :, None, None]
        pixels = bg + cover[:, None] * (fg - bg)
        pixels += noise_rng.standard_normal(pixels.shape, dtype=np.float32) * np.float32(_NOISE)
        np.clip(np.rint(pixels, out=pixels), 0, 255, out=pixels)
        images[part] = pixels
    return TrainSet(f"shapes ({size} px)", torch.from_numpy(images), torch.from_numpy(p["labels"].astype(np.int64)),
                    list(SHAPE_CLASSES))


# --- augmentation --------------------------------------------------------------------------

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


# --- model input and preview ----------------------------------------------------------------


def mean_std(ts: TrainSet) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of the pixels, on the 0-1 scale."""
    total = torch.zeros(ts.channels, dtype=torch.float64)
    squares = torch.zeros(ts.channels, dtype=torch.float64)
    for start in range(0, len(ts), 4096):
        part = ts.images[start:start + 4096].to(torch.float64).div_(255.0)
        total += part.sum(dim=(0, 2, 3))
        squares += part.square().sum(dim=(0, 2, 3))
    count = max(1, len(ts) * ts.size * ts.size)
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(0).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


def to_float(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """A uint8 image or batch as float32 model input: ``(x / 255 - mean) / std`` per channel,
    on ``x``'s device."""
    if x.dtype != torch.uint8:
        raise TypeError(f"to_float takes uint8 images, got {x.dtype}")
    m = torch.as_tensor(mean, dtype=torch.float32, device=x.device).reshape(-1, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32, device=x.device).reshape(-1, 1, 1)
    return (x.to(torch.float32) / 255.0 - m) / s


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

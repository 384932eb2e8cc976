"""Training data for the live lab: small labelled image sets held in memory as uint8
tensors, a stratified train/validation split, and the model's float input.

Sets (``load_trainset(spec)``):

``shapes``
    Procedural and offline: eight outlines in random colours, sizes, positions and
    rotations, drawn by :mod:`vizapp.training.shapes`. Deterministic from the seed.
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

The augmentations and the preview grid are :mod:`vizapp.training.augmentations`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vizapp.core.errors import ImageError, UserError
from vizapp.core.jobs import CancelToken, Progress, no_progress
from vizapp.training.shapes import SHAPE_CLASSES, draw_shapes

__all__ = [
    "DATASETS",
    "TrainSet",
    "load_trainset",
    "make_shapes",
    "mean_std",
    "split",
    "to_float",
]

#: The built-in names ``load_trainset`` takes; anything else is a folder path.
DATASETS = ("shapes", "digits", "mnist", "fashion-mnist", "cifar10")

#: Default image sides; torchvision's sets keep their own (28 or 32) unless asked.
_SHAPES_SIZE = 32
#: Shapes drawn when ``n`` is not given: 9600 to train on, enough that a short run's
#: held-out accuracy is not capped by overfitting (about 1.5 s to draw on one core).
_SHAPES_N = 12000
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
        number generated; default 12000).
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
        return make_shapes(n=_SHAPES_N if n is None else int(n), size=size or _SHAPES_SIZE, seed=seed)
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


def make_shapes(n: int = _SHAPES_N, size: int = 32, seed: int = 0) -> TrainSet:
    """The procedural shapes set (:mod:`vizapp.training.shapes`): ``n`` RGB images of ``size`` px,
    balanced over :data:`~vizapp.training.shapes.SHAPE_CLASSES`, identical for the same ``(n, size, seed)``."""
    if n < 1:
        raise UserError(f"n={n}: the number of images must be at least 1")
    if not 16 <= size <= 512:
        raise UserError(f"shapes are drawn at 16 to 512 px (32 or 64 suit the built-in models), not {size}")
    images, labels = draw_shapes(n, size, seed)
    return TrainSet(f"shapes ({size} px)", torch.from_numpy(images), torch.from_numpy(labels), list(SHAPE_CLASSES))


# --- model input --------------------------------------------------------------------------------


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

"""Preprocessing as the weights were trained with: resize, centre crop, normalise."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

__all__ = ["Preprocess", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    """Turns a PIL image into the normalised ``C x crop x crop`` tensor a model expects.

    ``C`` is ``len(mean)``: 3 (RGB) for almost every model, 1 for a grey-scale model
    (MNIST-like training sets); the image is converted to that mode first.

    Attributes
    ----------
    resize : int
        Length of the shorter side after resizing.
    crop : int
        Side of the square centre crop (the model's input size).
    mean, std : tuple of float
        Per-channel normalisation, in [0, 1] units.
    interpolation : str
        ``"bilinear"``, ``"bicubic"`` or ``"nearest"``.
    """

    resize: int = 256
    crop: int = 224
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bilinear"

    @property
    def channels(self) -> int:
        return len(self.mean)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        mode = "L" if self.channels == 1 else "RGB"
        if image.mode != mode:
            image = image.convert(mode)
        x = F.pil_to_tensor(image)
        x = F.resize(x, [self.resize], interpolation=InterpolationMode(self.interpolation), antialias=True)
        x = F.center_crop(x, [self.crop, self.crop])
        x = x.float().div_(255.0)
        return F.normalize(x, list(self.mean), list(self.std))

    def batch(self, image: Image.Image) -> torch.Tensor:
        """The ``1 x C x crop x crop`` batch fed to the model."""
        return self(image).unsqueeze(0)

    def to_display(self, tensor: torch.Tensor | np.ndarray) -> np.ndarray:
        """Undo the normalisation: ``H x W x 3`` uint8, what the model actually sees."""
        x = torch.as_tensor(tensor).detach().float().cpu()
        if x.ndim == 4:
            x = x[0]
        mean = torch.tensor(self.mean).view(-1, 1, 1)
        std = torch.tensor(self.std).view(-1, 1, 1)
        x = (x * std + mean).clamp_(0, 1).mul_(255).round_().to(torch.uint8)
        if x.shape[0] == 1:  # grey-scale model: shown as grey RGB
            x = x.expand(3, -1, -1)
        return x.permute(1, 2, 0).contiguous().numpy()

    def resized_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """``(w, h)`` after resizing the shorter side to ``resize`` (torchvision's rounding)."""
        w, h = size
        if w <= h:
            return self.resize, int(self.resize * h / w)
        return int(self.resize * w / h), self.resize

    def box_to_original(self, box: tuple[float, float, float, float], size: tuple[int, int]) -> tuple[int, int, int, int]:
        """Map ``(x0, y0, x1, y1)`` in model-input pixels back to the original ``(w, h)`` image."""
        w, h = size
        rw, rh = self.resized_size(size)
        left = int(round((rw - self.crop) / 2.0))
        top = int(round((rh - self.crop) / 2.0))
        sx, sy = w / rw, h / rh
        x0, y0, x1, y1 = box
        return (
            max(0, int(np.floor((x0 + left) * sx))),
            max(0, int(np.floor((y0 + top) * sy))),
            min(w, int(np.ceil((x1 + left) * sx))),
            min(h, int(np.ceil((y1 + top) * sy))),
        )

    def describe(self) -> str:
        return (
            f"resize {self.resize} ({self.interpolation}), centre crop {self.crop}, "
            f"mean {tuple(round(m, 3) for m in self.mean)}, std {tuple(round(s, 3) for s in self.std)}"
        )

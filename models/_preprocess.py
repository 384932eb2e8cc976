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

#: Past ``BOUNDED_SIDE x resize`` on the longer side, the centre crop is resampled from the
#: original pixels under it instead of resizing the whole image (memory bounded by the crop).
BOUNDED_SIDE = 16


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
        return self._normalise(self.pixels(image))

    def pixels(self, image: Image.Image) -> torch.Tensor:
        """The resized and cropped ``C x crop x crop`` uint8 pixels, before normalisation."""
        mode = "L" if self.channels == 1 else "RGB"
        if image.mode != mode:
            image = image.convert(mode)
        rw, rh = self.resized_size(image.size)
        if max(rw, rh) > BOUNDED_SIDE * self.resize and self.resize >= self.crop:
            return self._crop_then_resize(image)
        x = F.pil_to_tensor(image)
        x = F.resize(x, [self.resize], interpolation=InterpolationMode(self.interpolation), antialias=True)
        return F.center_crop(x, [self.crop, self.crop])

    def _normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels.float().div_(255.0)
        return F.normalize(x, list(self.mean), list(self.std))

    def _crop_then_resize(self, image: Image.Image) -> torch.Tensor:
        """The centre crop of the resized image, computed from the original pixels under it.

        Resizing a very long image whole (shorter side to ``resize``) would take memory in
        proportion to its length (a 20000 x 1 image becomes 5 120 000 x 256); here only the
        ``crop x crop`` output is made, from the original rows and columns its filter taps
        read. It is torch's own arithmetic for the uint8 images torchvision resizes:

        - nearest: ``src = min(floor(dst * float(in) / out), in - 1)`` in float32;
        - bilinear and bicubic (antialiased): the separable kernel of torch's uint8 path,
          re-done for the crop's outputs only. Each output's taps and weights are computed
          as torch does (double precision, normalised, then rounded to int16 fixed point with
          the precision torch picks from the largest weight of the whole axis); columns are
          resampled first and rounded to uint8, then rows.

        So the pixels equal the full resize's crop exactly (checked against torchvision for
        tall and wide images, stripes and noise, 17:1 to 50:1 and beyond). Two bounds, each
        one grey level at most: where torch's bilinear uint8 kernel is not used (x86 without
        AVX2: torchvision then resizes in float32, which the bounded path does not copy), and
        on an axis resized to more than ``_PRECISION_OUTPUTS`` pixels (never for an image
        ``load_image`` accepts: 50:1 makes 50 x ``resize``), whose fixed-point precision is
        taken from its first ``_PRECISION_OUTPUTS`` outputs, its last ones and the crop's
        rather than from all of them.
        """
        w, h = image.size
        rw, rh = self.resized_size((w, h))
        left, top = self.crop_offsets((w, h))
        c = self.crop
        if self.interpolation == "nearest":  # torch: src = min(floor(dst * float(in) / out), in - 1), float32
            cols = np.minimum(np.floor(np.arange(left, left + c, dtype=np.float32) * (np.float32(w) / np.float32(rw))), w - 1)
            rows = np.minimum(np.floor(np.arange(top, top + c, dtype=np.float32) * (np.float32(h) / np.float32(rh))), h - 1)
            pixels = np.asarray(image)[rows.astype(np.int64)][:, cols.astype(np.int64)]
            x = torch.from_numpy(np.array(pixels, dtype=np.uint8, copy=True))
            return x.unsqueeze(0) if x.ndim == 2 else x.permute(2, 0, 1).contiguous()
        xmin, xk, xprec = _aa_taps(w, rw, np.arange(left, left + c), self.interpolation)
        ymin, yk, yprec = _aa_taps(h, rh, np.arange(top, top + c), self.interpolation)
        c0, c1 = int(xmin.min()), int((xmin + xk.shape[1]).max())
        r0, r1 = int(ymin.min()), int((ymin + yk.shape[1]).max())
        c1, r1 = min(c1, w), min(r1, h)
        region = np.asarray(image.crop((c0, r0, c1, r1)), dtype=np.float64)
        if region.ndim == 2:
            region = region[:, :, None]
        # Columns first (torch: horizontal pass, rounded to uint8), then rows.
        cols = _aa_apply(region, xmin - c0, xk, xprec, axis=1) if rw != w else region[:, left - c0:left - c0 + c]
        out = _aa_apply(cols, ymin - r0, yk, yprec, axis=0) if rh != h else cols[top - r0:top - r0 + c]
        x = torch.from_numpy(out.astype(np.uint8))
        return x.permute(2, 0, 1).contiguous()

    def batch(self, image: Image.Image) -> torch.Tensor:
        """The ``1 x C x crop x crop`` batch fed to the model."""
        return self(image).unsqueeze(0)

    def batch_and_display(self, image: Image.Image) -> tuple[torch.Tensor, np.ndarray]:
        """:meth:`batch` and the ``H x W x 3`` uint8 image it was made from (what
        :meth:`to_display` of that batch gives back, without undoing the normalisation)."""
        pixels = self.pixels(image)
        shown = pixels.expand(3, -1, -1) if pixels.shape[0] == 1 else pixels
        return self._normalise(pixels).unsqueeze(0), shown.permute(1, 2, 0).contiguous().numpy()

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

    def crop_offsets(self, size: tuple[int, int]) -> tuple[int, int]:
        """``(left, top)`` of the centre crop in the resized image (torchvision's rounding)."""
        rw, rh = self.resized_size(size)
        return int(round((rw - self.crop) / 2.0)), int(round((rh - self.crop) / 2.0))

    def box_to_original(self, box: tuple[float, float, float, float], size: tuple[int, int]) -> tuple[int, int, int, int]:
        """Map ``(x0, y0, x1, y1)`` in model-input pixels back to the original ``(w, h)`` image.

        The geometric footprint (the box scaled back); :meth:`field_to_original` adds the
        resampling filter's reach.
        """
        w, h = size
        rw, rh = self.resized_size(size)
        left, top = self.crop_offsets(size)
        sx, sy = w / rw, h / rh
        x0, y0, x1, y1 = box
        return (
            max(0, int(np.floor((x0 + left) * sx))),
            max(0, int(np.floor((y0 + top) * sy))),
            min(w, int(np.ceil((x1 + left) * sx))),
            min(h, int(np.ceil((y1 + top) * sy))),
        )

    def field_to_original(self, box: tuple[float, float, float, float], size: tuple[int, int]) -> tuple[int, int, int, int]:
        """The original pixels that can change any model-input pixel of ``box``.

        :meth:`box_to_original` widened by the resize filter's taps: bilinear reaches one
        resized pixel either side, bicubic two, each scaled by the downscale factor when
        shrinking (antialiasing); nearest reads one pixel per resized pixel, so its box is the
        pixels read (within the geometric box). Clipped to the image.
        """
        out = self.fields_to_original(np.asarray([box], np.float64), np.asarray([size], np.int64))[0]
        return tuple(int(v) for v in out)  # type: ignore[return-value]

    def fields_to_original(self, boxes: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        """:meth:`field_to_original` for ``N x 4`` boxes and ``N x 2`` ``(w, h)`` sizes: ``N x 4`` int64."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        sizes = np.asarray(sizes, np.int64).reshape(-1, 2)
        w, h = sizes[:, 0], sizes[:, 1]
        landscape = w > h
        short = np.minimum(w, h)
        long_ = np.trunc(self.resize * np.maximum(w, h) / short).astype(np.int64)  # torchvision's int()
        rw = np.where(landscape, long_, self.resize)
        rh = np.where(landscape, self.resize, long_)
        left = np.round((rw - self.crop) / 2.0).astype(np.int64)  # half to even, as round()
        top = np.round((rh - self.crop) / 2.0).astype(np.int64)
        out = np.empty((len(boxes), 4), np.int64)
        out[:, 0], out[:, 2] = self._axis_taps(boxes[:, 0] + left, boxes[:, 2] + left, w, rw)
        out[:, 1], out[:, 3] = self._axis_taps(boxes[:, 1] + top, boxes[:, 3] + top, h, rh)
        return out

    def _axis_taps(self, b0: np.ndarray, b1: np.ndarray, n: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Original pixels ``[lo, hi)`` read to make resized pixels ``[b0, b1)`` (``n`` -> ``m`` pixels).

        The index rules of torch's kernels: antialiased bilinear/bicubic read
        ``[int(c - support + 0.5), int(c + support + 0.5))`` around ``c = scale * (i + 0.5)``,
        with ``support`` 1 or 2 times ``max(scale, 1)``; nearest reads ``floor(i * scale)``.
        """
        scale = n / m
        i0 = np.clip(np.floor(b0), 0, m - 1)
        i1 = np.clip(np.ceil(b1) - 1, i0, m - 1)
        if self.interpolation == "nearest":
            s32 = n.astype(np.float32) / m.astype(np.float32)
            lo = np.floor(i0.astype(np.float32) * s32)
            hi = np.minimum(np.floor(i1.astype(np.float32) * s32), n - 1) + 1
            return lo.astype(np.int64), hi.astype(np.int64)  # the pixels read: inside the geometric box
        geo_lo = np.maximum(0, np.floor(b0 * scale))
        geo_hi = np.minimum(n, np.ceil(b1 * scale))
        support = (2.0 if self.interpolation == "bicubic" else 1.0) * np.maximum(scale, 1.0)
        lo = np.maximum(np.trunc(scale * (i0 + 0.5) - support + 0.5), 0)
        hi = np.minimum(np.trunc(scale * (i1 + 0.5) + support + 0.5), n)
        return np.minimum(lo, geo_lo).astype(np.int64), np.maximum(hi, geo_hi).astype(np.int64)

    def describe(self) -> str:
        return (
            f"resize {self.resize} ({self.interpolation}), centre crop {self.crop}, "
            f"mean {tuple(round(m, 3) for m in self.mean)}, std {tuple(round(s, 3) for s in self.std)}"
        )


#: Outputs of one axis whose weights set the fixed-point precision exactly (see
#: :meth:`Preprocess._crop_then_resize`); longer axes use these, the last ones and the crop's.
_PRECISION_OUTPUTS = 1 << 17


def _aa_filter(interpolation: str, x: np.ndarray) -> np.ndarray:
    """torch's antialiasing filters (Pillow's): triangle, or Keys cubic with ``a = -0.5``."""
    x = np.abs(x)
    if interpolation == "bilinear":
        return np.where(x < 1.0, 1.0 - x, 0.0)
    a = -0.5
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


def _aa_weights(n: int, m: int, outputs: np.ndarray, interpolation: str) -> tuple[np.ndarray, np.ndarray]:
    """``(xmin, weights)`` of resized pixels ``outputs`` (``n`` -> ``m`` pixels), as torch's
    ``_compute_indices_min_size_weights_aa`` computes them in double: ``weights`` is
    ``len(outputs) x taps``, normalised, zero past each output's own taps."""
    scale = n / m
    half = 2 if interpolation == "bicubic" else 1  # interp_size * 0.5
    support = half * scale if scale >= 1.0 else float(half)
    taps = int(np.ceil(support)) * 2 + 1
    invscale = 1.0 / scale if scale >= 1.0 else 1.0
    center = scale * (outputs.astype(np.float64) + 0.5)
    xmin = np.maximum(np.trunc(center - support + 0.5), 0).astype(np.int64)
    xsize = np.minimum(np.trunc(center + support + 0.5).astype(np.int64), n) - xmin
    xsize = np.clip(xsize, 0, taps)
    j = np.arange(taps)
    w = _aa_filter(interpolation, (((j + xmin[:, None]).astype(np.float64) - center[:, None]) + 0.5) * invscale)
    w = np.where(j < xsize[:, None], w, 0.0)
    total = np.zeros(len(outputs))
    for k in range(taps):  # torch's order of summation
        total += w[:, k]
    w = np.divide(w, total[:, None], out=w, where=total[:, None] != 0.0)
    return xmin, w


def _aa_taps(n: int, m: int, outputs: np.ndarray, interpolation: str) -> tuple[np.ndarray, np.ndarray, int]:
    """``(xmin, int16 weights, precision)`` of resized pixels ``outputs``: torch's uint8
    fixed point (``_compute_index_ranges_int16_weights``)."""
    xmin, w = _aa_weights(n, m, outputs, interpolation)
    if m <= _PRECISION_OUTPUTS:
        probe = np.arange(m)
    else:
        tail = min(m, int(np.ceil(4 * max(n / m, 1.0) * m / n)) + 8)  # the outputs whose taps are clipped at the end
        probe = np.concatenate([np.arange(_PRECISION_OUTPUTS), np.arange(m - tail, m)])
    w_max = 0.0
    for chunk in np.array_split(probe, max(1, len(probe) // 16384)):
        w_max = max(w_max, float(_aa_weights(n, m, chunk, interpolation)[1].max(initial=0.0)))
    w_max = max(w_max, float(w.max(initial=0.0)))
    precision = 0
    while precision < 22 and int(0.5 + w_max * (1 << (precision + 1))) < (1 << 15):
        precision += 1
    v = w * float(1 << precision)
    return xmin, np.trunc(np.where(v < 0, v - 0.5, v + 0.5)), precision


def _aa_apply(x: np.ndarray, xmin: np.ndarray, k: np.ndarray, precision: int, axis: int) -> np.ndarray:
    """One pass of torch's uint8 kernel along ``axis`` (0 rows, 1 columns) of the ``H x W x C``
    float64 array ``x`` of integers: ``clamp((sum(pixel * k) + 2**(p-1)) >> p, 0, 255)``.
    Integer sums this small are exact in float64."""
    lines = np.ascontiguousarray(np.moveaxis(x, axis, 0))  # the resampled axis first: rows gathered whole
    shape = lines.shape
    lines = lines.reshape(shape[0], -1)
    acc = np.full((len(xmin), lines.shape[1]), float(1 << (precision - 1)))
    term = np.empty_like(acc)
    for t in range(k.shape[1]):
        idx = np.minimum(xmin + t, shape[0] - 1)  # past an output's own taps the weight is 0
        np.multiply(lines[idx], k[:, t:t + 1], out=term)
        acc += term
    out = np.clip(np.floor(acc / float(1 << precision)), 0, 255)
    return np.moveaxis(out.reshape((len(xmin),) + shape[1:]), 0, axis)

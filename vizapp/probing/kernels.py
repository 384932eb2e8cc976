"""Convolution kernels as pictures: RGB tiles for the stem, grids for deeper layers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from models import LoadedModel
from vizapp.core.errors import LayerError
from vizapp.probing.mosaic import Mosaic, tile

__all__ = ["KernelView", "KERNEL_MODES", "KERNEL_NORMS", "kernel_layer", "kernel_weights", "kernel_mosaic"]

KERNEL_MODES = ("auto", "rgb", "grid", "mean")
KERNEL_NORMS = ("filter", "layer")
#: At most this many output x input channels in the full grid (the rest are summarised by "mean").
MAX_GRID = 128
#: 1x1 kernels are a weight matrix: show up to this many channels a side as pixels.
MAX_GRID_1X1 = 1024


@dataclass(frozen=True)
class KernelView:
    """Kernels laid out as a mosaic plus the raw weights for hover read-outs.

    In ``rgb`` and ``mean`` mode slot ``i`` is output channel ``order[i]``; in ``grid``
    mode the mosaic has one row per output channel and one column per input channel.
    """

    layer: str
    mode: str
    norm: str
    mosaic: Mosaic
    weights: np.ndarray  # out x in x kh x kw, float32
    shown_out: int
    shown_in: int

    def value_at(self, x: float, y: float) -> tuple[int, int | None, int, int, float] | None:
        """(out channel, in channel or None, ky, kx, value) under mosaic pixel ``(x, y)``."""
        m = self.mosaic
        slot = m.slot_at(x, y)
        if slot is None:
            return None
        ox, oy = m.tile_origin(slot)
        ky, kx = int(y) - oy, int(x) - ox
        if self.mode == "grid":
            out, inp = divmod(slot, m.cols)
            return out, inp, ky, kx, float(self.weights[out, inp, ky, kx])
        out = int(m.order[slot])
        if self.mode == "rgb":
            return out, None, ky, kx, float(np.abs(self.weights[out, :, ky, kx]).max())
        return out, None, ky, kx, float(self.weights[out, :, ky, kx].mean())


def kernel_layer(loaded: LoadedModel, layer: str | None) -> str | None:
    """The conv layer whose kernels to show for a selected layer.

    The layer itself if it is a conv; else the first conv inside it; else the last
    conv before it; ``None`` for a model without convolutions.
    """
    modules = [(n, isinstance(m, torch.nn.Conv2d)) for n, m in loaded.module.named_modules()]
    names = [n for n, is_conv in modules if is_conv]
    if not names:
        return None
    if not layer:
        return names[0]
    inside = [n for n in names if n == layer or n.startswith(layer + ".")]
    if inside:
        return inside[0]
    position = {n: i for i, (n, _) in enumerate(modules)}
    if layer not in position:
        raise LayerError(f"layer '{layer}' is not in {loaded.title}")
    before = [n for n in names if position[n] < position[layer]]
    return before[-1] if before else names[0]


def kernel_weights(loaded: LoadedModel, layer: str) -> np.ndarray:
    module = dict(loaded.module.named_modules()).get(layer)
    if not isinstance(module, torch.nn.Conv2d):
        raise LayerError(f"'{layer}' is not a 2-D convolution in {loaded.title}")
    return module.weight.detach().float().cpu().numpy().copy()


def _diverging(values: np.ndarray) -> np.ndarray:
    """[-1, 1] to blue-white-red uint8 RGB."""
    v = np.clip(values, -1.0, 1.0)[..., None]
    blue = np.array([33, 102, 172], np.float32)
    red = np.array([178, 24, 43], np.float32)
    white = np.array([247, 247, 247], np.float32)
    rgb = np.where(v < 0, white + (blue - white) * -v, white + (red - white) * v)
    return rgb.astype(np.uint8)


def kernel_mosaic(weights: np.ndarray, layer: str = "", mode: str = "auto", norm: str = "filter", gap: int = 1) -> KernelView:
    """Lay out ``out x in x kh x kw`` conv weights.

    Modes: ``rgb`` (3 input channels as colour, one tile per filter: the stem),
    ``grid`` (output x input channels, diverging colours), ``mean`` (one tile per
    output channel, averaged over inputs). ``auto`` picks ``rgb`` for 3 inputs, else
    ``grid`` when it fits (:data:`MAX_GRID`), else ``mean``.
    1x1 kernels in ``grid`` mode are drawn as the ``out x in`` weight matrix, one pixel each.
    Norms: ``filter`` (each output channel's weights scaled on their own) or ``layer``
    (one scale for all).
    """
    if mode not in KERNEL_MODES or norm not in KERNEL_NORMS:
        raise ValueError(f"mode must be in {KERNEL_MODES} and norm in {KERNEL_NORMS}")
    w = np.asarray(weights, dtype=np.float32)
    n_out, n_in, kh, kw = w.shape
    limit = MAX_GRID_1X1 if kh * kw == 1 else MAX_GRID
    if mode == "auto":
        if n_in == 3:
            mode = "rgb"
        elif n_in == 1:  # depthwise: one kernel per channel, a grid would be a one-column strip
            mode = "mean"
        else:
            mode = "grid" if (n_out <= limit and n_in <= limit) or kh * kw == 1 else "mean"
    if mode == "rgb" and n_in != 3:
        mode = "mean"
    order = np.arange(n_out)
    if mode == "rgb":
        t = w.transpose(0, 2, 3, 1)  # out, kh, kw, 3
        axes = (1, 2, 3) if norm == "filter" else (0, 1, 2, 3)
        lo, hi = t.min(axis=axes, keepdims=True), t.max(axis=axes, keepdims=True)
        tiles = ((t - lo) / np.where(hi > lo, hi - lo, 1) * 255).astype(np.uint8)
        image, rows, cols = tile(tiles, gap=gap, gap_value=40)
        shown_out, shown_in = n_out, 3
    elif mode == "grid":
        shown_out, shown_in = min(n_out, limit), min(n_in, limit)
        g = w[:shown_out, :shown_in]
        # A filter is everything one output channel sees: all its inputs and taps.
        scale = np.abs(g).max(axis=(1, 2, 3), keepdims=True) if norm == "filter" else np.abs(g).max()
        tiles = _diverging(g / np.where(scale > 0, scale, 1)).reshape(shown_out * shown_in, kh, kw, 3)
        image, rows, cols = tile(tiles, cols=shown_in, gap=0 if kh * kw == 1 else gap, gap_value=40)
        gap = 0 if kh * kw == 1 else gap
        order = np.arange(shown_out * shown_in)
    else:
        m = w.mean(axis=1)
        scale = np.abs(m).max(axis=(1, 2), keepdims=True) if norm == "filter" else np.abs(m).max()
        tiles = _diverging(m / np.where(scale > 0, scale, 1))
        image, rows, cols = tile(tiles, gap=gap, gap_value=40)
        shown_out, shown_in = n_out, n_in
    mosaic = Mosaic(image, order, rows, cols, kh, kw, gap)
    return KernelView(layer, mode, norm, mosaic, w, shown_out, shown_in)

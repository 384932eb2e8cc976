"""A layer's channels as one image: tiles laid out on a grid, ready to paint.

Everything here is numpy and vectorised; a 1280-channel layer is a handful of
array operations, so the GUI paints one ``uint8`` image instead of 1280 items.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Mosaic", "as_channel_maps", "has_maps", "channel_order", "tile", "feature_mosaic", "SORTS", "NORMS", "token_prefix"]

SORTS = ("index", "mean", "max")
NORMS = ("channel", "layer")


@dataclass(frozen=True)
class Mosaic:
    """A grid of equally sized tiles.

    Attributes
    ----------
    image : ndarray
        ``H x W`` or ``H x W x 3`` uint8; gaps between tiles are 0 (or ``gap_value``).
    order : ndarray
        The channel shown in each tile slot, row-major.
    rows, cols, tile_h, tile_w, gap : int
        The layout.
    """

    image: np.ndarray
    order: np.ndarray
    rows: int
    cols: int
    tile_h: int
    tile_w: int
    gap: int

    def slot_at(self, x: float, y: float) -> int | None:
        """The tile slot under image pixel ``(x, y)``, or ``None`` over a gap or outside."""
        if x < 0 or y < 0:
            return None
        col, dx = divmod(int(x), self.tile_w + self.gap)
        row, dy = divmod(int(y), self.tile_h + self.gap)
        if dx >= self.tile_w or dy >= self.tile_h or row >= self.rows or col >= self.cols:
            return None
        slot = row * self.cols + col
        return slot if slot < len(self.order) else None

    def channel_at(self, x: float, y: float) -> int | None:
        slot = self.slot_at(x, y)
        return None if slot is None else int(self.order[slot])

    def tile_origin(self, slot: int) -> tuple[int, int]:
        row, col = divmod(slot, self.cols)
        return col * (self.tile_w + self.gap), row * (self.tile_h + self.gap)

    def slot_of(self, channel: int) -> int | None:
        hits = np.nonzero(self.order == channel)[0]
        return int(hits[0]) if hits.size else None


def as_channel_maps(activation: np.ndarray) -> np.ndarray:
    """View any layer output as ``C x H x W`` maps.

    ``C x H x W`` stays; a channels-last ``H x W x C`` output (ConvNeXt blocks, Swin)
    is transposed (inputs are square crops, so ``H == W != C`` tells them apart); a
    vector becomes ``C`` one-pixel maps; transformer tokens ``N x D`` on a square grid
    (after a class token, or up to 8 class, distillation or register tokens) become
    ``D`` maps over the patch grid;
    anything else becomes one map.
    """
    a = np.asarray(activation)
    if a.ndim == 3:
        if a.shape[0] == a.shape[1] != a.shape[2]:
            return np.ascontiguousarray(a.transpose(2, 0, 1))
        return a
    if a.ndim == 1:
        return a.reshape(-1, 1, 1)
    if a.ndim == 2:
        n, d = a.shape
        extra = token_prefix(n)
        if extra is not None:
            side = math.isqrt(n - extra)
            return a[extra:].T.reshape(d, side, side)
        return a[None]
    return a.reshape(-1, *a.shape[-2:])


def has_maps(shape: tuple[int, ...] | None) -> bool:
    """Whether a layer output of this shape (batch dropped) shows as spatial maps."""
    if shape is None:
        return False
    if len(shape) == 3:
        return min(shape) > 1 or shape[0] == shape[1] > 1
    if len(shape) == 2:
        return token_prefix(shape[0]) is not None
    return False


#: Most tokens a ViT puts before its patches (class, distillation, register tokens).
MAX_PREFIX = 8


def token_prefix(n: int) -> int | None:
    """How many leading tokens of ``n`` to drop for a square patch grid, or None.

    0 or 1 (a class token) for any grid of side > 1; up to :data:`MAX_PREFIX`
    (distillation and register tokens) for grids of 4 x 4 and up, where the count is
    unambiguous (two squares of side >= 4 differ by at least 9).
    """
    for extra in range(min(MAX_PREFIX, n) + 1):
        side = math.isqrt(n - extra)
        if side * side == n - extra and (side > 1 if extra <= 1 else side >= 4):
            return extra
    return None


def channel_order(maps: np.ndarray, sort: str = "index") -> np.ndarray:
    """Channel indices in display order: as is, or by descending mean or max activation."""
    if sort not in SORTS:
        raise ValueError(f"sort must be one of {SORTS}, not '{sort}'")
    c = maps.shape[0]
    if sort == "index":
        return np.arange(c)
    flat = maps.reshape(c, -1)
    key = flat.mean(axis=1) if sort == "mean" else flat.max(axis=1)
    return np.argsort(-key, kind="stable")


def tile(tiles: np.ndarray, cols: int | None = None, gap: int = 1, gap_value: int = 0) -> tuple[np.ndarray, int, int]:
    """Lay ``N x h x w [x 3]`` uint8 tiles on a grid; returns ``(image, rows, cols)``."""
    n, h, w = tiles.shape[:3]
    extra = tiles.shape[3:]
    cols = cols or max(1, math.ceil(math.sqrt(n * h / max(w, 1))))
    cols = min(cols, n) if n else 1
    rows = max(1, math.ceil(n / cols))
    padded = np.full((rows * cols, h + gap, w + gap, *extra), gap_value, dtype=np.uint8)
    padded[:n, :h, :w] = tiles
    grid = padded.reshape(rows, cols, h + gap, w + gap, *extra).swapaxes(1, 2)
    image = grid.reshape(rows * (h + gap), cols * (w + gap), *extra)
    return np.ascontiguousarray(image[: rows * (h + gap) - gap, : cols * (w + gap) - gap]), rows, cols


def _to_uint8(maps: np.ndarray, norm: str) -> np.ndarray:
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, not '{norm}'")
    maps = maps.astype(np.float32, copy=False)
    if norm == "channel":
        axes = tuple(range(1, maps.ndim))
        lo = maps.min(axis=axes, keepdims=True)
        hi = maps.max(axis=axes, keepdims=True)
    else:
        lo, hi = maps.min(), maps.max()
    span = np.where(hi > lo, hi - lo, 1.0)
    return ((maps - lo) * (255.0 / span) + 0.5).astype(np.uint8)  # rounded: the max is 255


def feature_mosaic(activation: np.ndarray, sort: str = "index", norm: str = "channel", gap: int = 1) -> Mosaic:
    """Every channel of a layer's output as one grey ``uint8`` mosaic.

    ``norm="channel"`` stretches each map to its own range (shows each channel's
    pattern); ``"layer"`` uses one range for all (shows which channels fire most).
    """
    maps = as_channel_maps(activation)
    order = channel_order(maps, sort)
    tiles = _to_uint8(maps[order], norm)
    image, rows, cols = tile(tiles, gap=gap)
    return Mosaic(image, order, rows, cols, maps.shape[1], maps.shape[2], gap)

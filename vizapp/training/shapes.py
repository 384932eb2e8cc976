"""The procedural shapes set's drawing: eight outlines rendered antialiased, numpy only.

Eight classes (:data:`SHAPE_CLASSES`) drawn in a random colour on a random background (at
least 50 grey levels lighter or darker, so colour alone never gives the class), at a
random size, position and rotation, with a little pixel noise. Every shape covers the
same area as a circle of the drawn radius, so the ink count does not give the class
either: the network has to look at the outline. Deterministic from the seed.
:func:`vizapp.training.trainsets.make_shapes` wraps :func:`draw_shapes` into a ``TrainSet``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["SHAPE_CLASSES", "draw_shapes"]

SHAPE_CLASSES = ("circle", "square", "triangle", "star", "cross", "hexagon", "ring", "diamond")


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
    """Every random choice of :func:`draw_shapes`: labels, centre, circumradius, rotation, colours."""
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


def draw_shapes(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(images, labels)``: ``n`` RGB images of ``size`` px (``n x 3 x size x size`` uint8), balanced
    over :data:`SHAPE_CLASSES` (``labels``: int64 indices into it), identical for the same
    ``(n, size, seed)``. :func:`vizapp.training.trainsets.make_shapes` checks ``n`` and ``size``."""
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
    return images, p["labels"].astype(np.int64)


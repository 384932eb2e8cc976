"""Helpers for a run's records: the steady 2-D layout of the ``embedding`` record, and the
JSON line the ``train`` command prints for each ``step`` and ``eval`` record."""

from __future__ import annotations

import json
import math

import numpy as np

__all__ = ["stable_projection", "write_json_line"]


def stable_projection(features: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
    """2-D PCA of ``features``, rotated (and maybe reflected) onto ``previous``.

    Orthogonal Procrustes on the centred coordinates keeps the picture steady between
    refreshes: the points move as the features change instead of the whole cloud
    flipping or spinning, which PCA's arbitrary axis signs would otherwise cause.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # a small SVD; BLAS threads would only fight the training thread
        return _stable_projection(np.asarray(features, dtype=np.float64), previous)


def _stable_projection(x: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
    x = x - x.mean(axis=0, keepdims=True)
    if x.shape[1] == 1:
        coords = np.concatenate([x, np.zeros_like(x)], axis=1)
    elif x.shape[0] < 2:
        coords = np.zeros((x.shape[0], 2))
    else:
        _u, _s, vt = np.linalg.svd(x, full_matrices=False)
        coords = x @ vt[:2].T
        if coords.shape[1] < 2:
            coords = np.concatenate([coords, np.zeros((len(coords), 1))], axis=1)
    scale = np.sqrt((coords**2).sum(axis=1).mean()) or 1.0
    coords = coords / scale
    if previous is not None and previous.shape == coords.shape:
        u, _s, vt = np.linalg.svd(coords.T @ previous)
        coords = coords @ (u @ vt)
    return coords.astype(np.float32)


def write_json_line(record: dict) -> str:
    """A record as one JSON line (arrays summarised by their shape)."""
    out = {}
    for k, v in record.items():
        if isinstance(v, np.ndarray):
            out[k] = v.tolist() if v.ndim == 2 and k == "confusion" else f"array{list(v.shape)}"
        elif isinstance(v, float):
            out[k] = round(v, 6) if math.isfinite(v) else str(v)
        else:
            out[k] = v
    return json.dumps(out)

"""What the metric losses share: batch checks, label masks, distances."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from vizapp.core.errors import UserError

__all__ = ["check_batch", "check_margin", "distances", "label_masks", "mean_or_none", "normalized_sq_distances",
           "zero"]


def check_batch(embeddings: Tensor, labels: Tensor, what: str) -> Tensor:
    """Validate an (N, D) batch and its N labels; return the embeddings in float >= 32 bit."""
    if embeddings.ndim != 2:
        raise ValueError(
            f"{what} takes embeddings of shape (N, D), got {tuple(embeddings.shape)}; "
            "flatten the model's output first (embeddings.flatten(1))."
        )
    if labels.ndim != 1 or labels.shape[0] != embeddings.shape[0]:
        raise ValueError(
            f"{what} takes one label per embedding: got labels of shape "
            f"{tuple(labels.shape)} for {embeddings.shape[0]} embeddings."
        )
    if embeddings.dtype in (torch.float16, torch.bfloat16):
        # Distances of nearby points lose all their digits in half precision.
        embeddings = embeddings.float()
    return embeddings


def check_margin(margin: float, what: str) -> None:
    if not margin >= 0:  # also catches NaN
        raise UserError(f"The {what} margin must be 0 or more, got {margin}.")


def zero(t: Tensor) -> Tensor:
    """A scalar 0 connected to ``t``'s graph (so ``backward`` works and gives zeros)."""
    return t.sum() * 0.0


def label_masks(labels: Tensor) -> tuple[Tensor, Tensor]:
    """(same, different): N x N boolean masks; ``same`` excludes the diagonal."""
    eq = labels[:, None] == labels[None, :]
    eye = torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)
    return eq & ~eye, ~eq


def distances(embeddings: Tensor) -> Tensor:
    """Euclidean N x N distances, exactly 0 (with a 0 gradient) for identical embeddings.

    ``torch.cdist`` without the matrix-product shortcut works on the differences
    themselves, so identical rows give 0 rather than the ~1e-3 left by rounding in
    ``|a|^2 + |b|^2 - 2ab``, and its backward sets the gradient of a zero distance to 0
    instead of dividing by it.
    """
    return torch.cdist(embeddings, embeddings, compute_mode="donot_use_mm_for_euclid_dist")


def normalized_sq_distances(embeddings: Tensor) -> Tensor:
    """Squared Euclidean N x N distances of the L2-normalised embeddings, in [0, 4].

    For unit vectors ``|a - b|^2 = 2 - 2 a.b``: no square root, so no gradient trouble
    at 0. The norms are kept in the formula so an all-zero row (which ``F.normalize``
    leaves at 0) still has distance 0 to itself.
    """
    e = F.normalize(embeddings, dim=1)
    sq = (e * e).sum(dim=1)
    return (sq[:, None] + sq[None, :] - 2.0 * (e @ e.T)).clamp(min=0.0)


def mean_or_none(values: Tensor) -> float | None:
    return float(values.float().mean()) if values.numel() else None

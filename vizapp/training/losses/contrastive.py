"""The contrastive loss: Hadsell, Chopra & LeCun, "Dimensionality Reduction by Learning an
Invariant Mapping", CVPR 2006; all pairs of the batch, vectorised with masks."""

from __future__ import annotations

import torch
from torch import Tensor

from vizapp.training.losses.base import (
    check_batch,
    check_margin,
    distances,
    label_masks,
    mean_or_none,
    zero,
)

#: An embedding per image, one view, a margin (default 1.0); the validation loss in training-sized batches.
EMBEDS = True
VIEWS = 1
OPTIONS = ("margin",)
DEFAULT_MARGIN = 1.0
VALIDATE_IN_BATCHES = True


def contrastive_loss(embeddings: Tensor, labels: Tensor, margin: float = 1.0) -> Tensor:
    """The contrastive loss of Hadsell, Chopra & LeCun (CVPR 2006), over all pairs of a batch.

    For every pair ``i < j`` with Euclidean distance ``D = ||e_i - e_j||_2``::

        L_ij = 1/2 D^2                    if labels[i] == labels[j]   (similar: pull)
        L_ij = 1/2 max(0, margin - D)^2   otherwise                   (dissimilar: push)

    and the loss is the mean of ``L_ij`` over the ``N (N - 1) / 2`` pairs. Dissimilar
    pairs already ``margin`` or more apart contribute nothing. A batch of one label is a
    valid batch here (it only pulls); a batch of fewer than two embeddings gives 0.

    The distance's gradient ``(e_i - e_j) / D`` is undefined at ``D = 0``; it is taken
    as 0 (see ``distances``), so identical embeddings give finite gradients.

    Parameters
    ----------
    embeddings
        (N, D) embeddings, not normalised (the margin is in their units).
    labels
        (N,) integer class labels; equal labels make a similar pair.
    margin
        The radius ``m`` dissimilar pairs are pushed out to.
    """
    embeddings = check_batch(embeddings, labels, "contrastive_loss")
    check_margin(margin, "contrastive")
    n = embeddings.shape[0]
    if n < 2:
        return zero(embeddings)
    dist = distances(embeddings)
    same = labels[:, None] == labels[None, :]
    per_pair = torch.where(same, 0.5 * dist.square(), 0.5 * (margin - dist).clamp(min=0.0).square())
    upper = torch.triu(torch.ones(n, n, dtype=torch.bool, device=dist.device), diagonal=1)
    return per_pair[upper].mean()


def loss(outputs: Tensor, labels: Tensor, *, margin: float = DEFAULT_MARGIN, **_options) -> Tensor:
    return contrastive_loss(outputs, labels, margin)


@torch.no_grad()
def stats(outputs: Tensor, labels: Tensor | None = None, *, margin: float | None = None,
          **_options) -> dict[str, float | None]:
    """``pos_dist`` and ``neg_dist``, the mean Euclidean distance of similar and dissimilar
    pairs; ``inside_margin``, the fraction of dissimilar pairs closer than the margin (those
    still pushed apart). Margin default 1.0."""
    if labels is None:
        raise ValueError("loss_stats('contrastive', ...) needs the labels.")
    emb = check_batch(outputs, labels, "loss_stats")
    m = DEFAULT_MARGIN if margin is None else margin
    dist = distances(emb)
    pos, neg = label_masks(labels)
    upper = torch.triu(torch.ones_like(pos), diagonal=1)
    pos_d, neg_d = dist[pos & upper], dist[neg & upper]
    return {"pos_dist": mean_or_none(pos_d), "neg_dist": mean_or_none(neg_d), "inside_margin": mean_or_none(neg_d < m)}

"""The triplet loss: Schroff, Kalenichenko & Philbin, "FaceNet: A Unified Embedding for Face
Recognition and Clustering", CVPR 2015; batch-all and batch-hard mining from Hermans, Beyer &
Leibe, "In Defense of the Triplet Loss for Person Re-Identification", 2017."""

from __future__ import annotations

import torch
from torch import Tensor

from vizapp.core.errors import UserError
from vizapp.training.losses import MINING
from vizapp.training.losses.base import (
    check_batch,
    check_margin,
    label_masks,
    mean_or_none,
    normalized_sq_distances,
    zero,
)

#: An embedding per image, one view, a margin (default 0.2) and a mining strategy; the
#: validation loss in training-sized batches.
EMBEDS = True
VIEWS = 1
OPTIONS = ("margin", "mining")
DEFAULT_MARGIN = 0.2
VALIDATE_IN_BATCHES = True


def triplet_loss(
    embeddings: Tensor, labels: Tensor, margin: float = 0.2, mining: str = "semihard"
) -> Tensor:
    """The triplet loss of FaceNet (Schroff et al., CVPR 2015), mined inside the batch.

    Embeddings are L2-normalised and ``d(x, y) = ||x - y||_2^2`` (in [0, 4]). A triplet
    is an anchor ``a``, a positive ``p`` (same label, ``p != a``) and a negative ``n``
    (another label); its loss is ``max(0, d(a, p) - d(a, n) + margin)``.

    ``mining`` picks which triplets count:

    ``"all"``
        Batch-all (Hermans et al. 2017's "BA"): the mean over every valid triplet of
        the batch, easy (zero-loss) ones included. Like the other two modes it averages
        over the triplets it selects, so the learning curve falls to 0 as the embedding
        sorts itself out. (Hermans et al.'s variant averaging over the active triplets
        only keeps the gradient large but gives a curve that stays level or rises while
        training works; the panel shows the active fraction from :func:`loss_stats`.)
    ``"hard"``
        Batch-hard (Hermans et al. 2017): for each anchor its farthest positive and its
        nearest negative; the mean over the anchors that have both.
    ``"semihard"``
        FaceNet's semi-hard negatives: for every anchor-positive pair, the nearest
        negative with ``d(a, p) < d(a, n) < d(a, p) + margin`` (strictly, both sides);
        when there is none, the anchor's hardest (nearest) negative. The mean over all
        anchor-positive pairs whose anchor has a negative, zero-loss pairs included.

    A batch without a valid triplet (one label only, or no label seen twice) gives 0,
    still connected to the graph.

    Parameters
    ----------
    embeddings
        (N, D) embeddings (normalised here).
    labels
        (N,) integer class labels.
    margin
        ``alpha`` in FaceNet, in squared-distance units of the unit sphere (0.2 there).
    mining
        One of ``MINING``: ``"all"``, ``"hard"`` or ``"semihard"``.
    """
    embeddings = check_batch(embeddings, labels, "triplet_loss")
    check_margin(margin, "triplet")
    if mining not in MINING:
        raise UserError(f"Unknown triplet mining {mining!r}; choose one of {', '.join(MINING)}.")
    d = normalized_sq_distances(embeddings)
    pos, neg = label_masks(labels)
    has_neg = neg.any(dim=1)

    if mining == "hard":
        anchors = pos.any(dim=1) & has_neg
        if not bool(anchors.any()):
            return zero(d)
        hardest_pos = d.masked_fill(~pos, float("-inf")).amax(dim=1)
        hardest_neg = d.masked_fill(~neg, float("inf")).amin(dim=1)
        losses = (hardest_pos - hardest_neg + margin).clamp(min=0.0)
        return losses[anchors].mean()

    # "all" and "semihard" look at every anchor-positive pair (a, p) against every
    # candidate negative n: a P x N table (P pairs), not an N^3 cube.
    a, p = (pos & has_neg[:, None]).nonzero(as_tuple=True)
    if a.numel() == 0:
        return zero(d)
    d_ap = d[a, p][:, None]  # (P, 1)
    d_an = d[a]  # (P, N)
    is_neg = neg[a]  # (P, N)

    if mining == "all":
        losses = (d_ap - d_an + margin).clamp(min=0.0)
        return losses[is_neg].mean()

    # semihard: one negative per pair, the nearest inside the band, else the nearest.
    semi = is_neg & (d_an > d_ap) & (d_an < d_ap + margin)
    nearest_semi = d_an.masked_fill(~semi, float("inf")).amin(dim=1)
    nearest_neg = d_an.masked_fill(~is_neg, float("inf")).amin(dim=1)
    chosen = torch.where(semi.any(dim=1), nearest_semi, nearest_neg)
    return (d_ap[:, 0] - chosen + margin).clamp(min=0.0).mean()


def loss(outputs: Tensor, labels: Tensor, *, margin: float = DEFAULT_MARGIN, mining: str = "semihard",
         **_options) -> Tensor:
    return triplet_loss(outputs, labels, margin, mining=mining)


@torch.no_grad()
def stats(outputs: Tensor, labels: Tensor | None = None, *, margin: float | None = None,
          **_options) -> dict[str, float | None]:
    """``pos_dist`` and ``neg_dist``, mean squared distances of normalised positive and
    negative pairs; ``active_triplets``, the fraction of all valid triplets with a positive
    loss. Margin default 0.2."""
    if labels is None:
        raise ValueError("loss_stats('triplet', ...) needs the labels.")
    emb = check_batch(outputs, labels, "loss_stats")
    m = DEFAULT_MARGIN if margin is None else margin
    d = normalized_sq_distances(emb)
    pos, neg = label_masks(labels)
    a, p = pos.nonzero(as_tuple=True)
    active = (d[a, p][:, None] - d[a] + m) > 0  # (P, N)
    return {"pos_dist": mean_or_none(d[pos]), "neg_dist": mean_or_none(d[neg]),
            "active_triplets": mean_or_none(active[neg[a]])}

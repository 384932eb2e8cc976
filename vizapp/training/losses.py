"""The losses the training lab offers: cross-entropy and three metric-learning losses.

``LOSSES`` maps each loss's key (the ``--loss`` choice) to the name the panel shows.
Cross-entropy is :func:`torch.nn.functional.cross_entropy` itself; the other three are
written here, vectorised with masks over the batch's pairwise distance matrix:

- :func:`contrastive_loss`: Hadsell, Chopra & LeCun, "Dimensionality Reduction by
  Learning an Invariant Mapping", CVPR 2006.
- :func:`triplet_loss`: Schroff, Kalenichenko & Philbin, "FaceNet: A Unified Embedding
  for Face Recognition and Clustering", CVPR 2015; batch-all and batch-hard mining from
  Hermans, Beyer & Leibe, "In Defense of the Triplet Loss for Person Re-Identification",
  2017.
- :func:`info_nce`: the NT-Xent loss of Chen, Kornblith, Norouzi & Hinton, "A Simple
  Framework for Contrastive Learning of Visual Representations" (SimCLR), ICML 2020;
  InfoNCE after van den Oord, Li & Vinyals, "Representation Learning with Contrastive
  Predictive Coding", 2018.

A batch that holds nothing to compare (a single sample; for the triplet loss no anchor
with both a positive and a negative) gives a loss of exactly 0 that is still connected to
the graph, so ``loss.backward()`` works and nothing turns into NaN.

:func:`loss_stats` gives what the panel shows beside the loss (distances of positive and
negative pairs, the fraction of pairs or triplets still active, InfoNCE's top-1
accuracy). Nothing here imports Qt.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from vizapp.core.errors import UserError

__all__ = [
    "LOSSES",
    "MINING",
    "contrastive_loss",
    "triplet_loss",
    "info_nce",
    "loss_stats",
]

#: Loss key (``--loss``) -> the name shown in the panel, in the order a menu lists them.
LOSSES = {
    "ce": "Cross-entropy",
    "contrastive": "Contrastive (Hadsell, Chopra & LeCun 2006)",
    "triplet": "Triplet (FaceNet, Schroff et al. 2015)",
    "infonce": "InfoNCE / NT-Xent (SimCLR, Chen et al. 2020)",
}

#: Triplet mining strategies accepted by :func:`triplet_loss`.
MINING = ("all", "hard", "semihard")


# --------------------------------------------------------------------------- helpers


def _check_batch(embeddings: Tensor, labels: Tensor, what: str) -> Tensor:
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


def _check_margin(margin: float, what: str) -> None:
    if not margin >= 0:  # also catches NaN
        raise UserError(f"The {what} margin must be 0 or more, got {margin}.")


def _zero(t: Tensor) -> Tensor:
    """A scalar 0 connected to ``t``'s graph (so ``backward`` works and gives zeros)."""
    return t.sum() * 0.0


def _label_masks(labels: Tensor) -> tuple[Tensor, Tensor]:
    """(same, different): N x N boolean masks; ``same`` excludes the diagonal."""
    eq = labels[:, None] == labels[None, :]
    eye = torch.eye(labels.shape[0], dtype=torch.bool, device=labels.device)
    return eq & ~eye, ~eq


def _distances(embeddings: Tensor) -> Tensor:
    """Euclidean N x N distances, exactly 0 (with a 0 gradient) for identical embeddings.

    ``torch.cdist`` without the matrix-product shortcut works on the differences
    themselves, so identical rows give 0 rather than the ~1e-3 left by rounding in
    ``|a|^2 + |b|^2 - 2ab``, and its backward sets the gradient of a zero distance to 0
    instead of dividing by it.
    """
    return torch.cdist(embeddings, embeddings, compute_mode="donot_use_mm_for_euclid_dist")


def _normalized_sq_distances(embeddings: Tensor) -> Tensor:
    """Squared Euclidean N x N distances of the L2-normalised embeddings, in [0, 4].

    For unit vectors ``|a - b|^2 = 2 - 2 a.b``: no square root, so no gradient trouble
    at 0. The norms are kept in the formula so an all-zero row (which ``F.normalize``
    leaves at 0) still has distance 0 to itself.
    """
    e = F.normalize(embeddings, dim=1)
    sq = (e * e).sum(dim=1)
    return (sq[:, None] + sq[None, :] - 2.0 * (e @ e.T)).clamp(min=0.0)


# --------------------------------------------------------------------------- contrastive


def contrastive_loss(embeddings: Tensor, labels: Tensor, margin: float = 1.0) -> Tensor:
    """The contrastive loss of Hadsell, Chopra & LeCun (CVPR 2006), over all pairs of a batch.

    For every pair ``i < j`` with Euclidean distance ``D = ||e_i - e_j||_2``::

        L_ij = 1/2 D^2                    if labels[i] == labels[j]   (similar: pull)
        L_ij = 1/2 max(0, margin - D)^2   otherwise                   (dissimilar: push)

    and the loss is the mean of ``L_ij`` over the ``N (N - 1) / 2`` pairs. Dissimilar
    pairs already ``margin`` or more apart contribute nothing. A batch of one label is a
    valid batch here (it only pulls); a batch of fewer than two embeddings gives 0.

    The distance's gradient ``(e_i - e_j) / D`` is undefined at ``D = 0``; it is taken
    as 0 (see ``_distances``), so identical embeddings give finite gradients.

    Parameters
    ----------
    embeddings
        (N, D) embeddings, not normalised (the margin is in their units).
    labels
        (N,) integer class labels; equal labels make a similar pair.
    margin
        The radius ``m`` dissimilar pairs are pushed out to.
    """
    embeddings = _check_batch(embeddings, labels, "contrastive_loss")
    _check_margin(margin, "contrastive")
    n = embeddings.shape[0]
    if n < 2:
        return _zero(embeddings)
    dist = _distances(embeddings)
    same = labels[:, None] == labels[None, :]
    per_pair = torch.where(same, 0.5 * dist.square(), 0.5 * (margin - dist).clamp(min=0.0).square())
    upper = torch.triu(torch.ones(n, n, dtype=torch.bool, device=dist.device), diagonal=1)
    return per_pair[upper].mean()


# --------------------------------------------------------------------------- triplet


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
    embeddings = _check_batch(embeddings, labels, "triplet_loss")
    _check_margin(margin, "triplet")
    if mining not in MINING:
        raise UserError(f"Unknown triplet mining {mining!r}; choose one of {', '.join(MINING)}.")
    d = _normalized_sq_distances(embeddings)
    pos, neg = _label_masks(labels)
    has_neg = neg.any(dim=1)

    if mining == "hard":
        anchors = pos.any(dim=1) & has_neg
        if not bool(anchors.any()):
            return _zero(d)
        hardest_pos = d.masked_fill(~pos, float("-inf")).amax(dim=1)
        hardest_neg = d.masked_fill(~neg, float("inf")).amin(dim=1)
        losses = (hardest_pos - hardest_neg + margin).clamp(min=0.0)
        return losses[anchors].mean()

    # "all" and "semihard" look at every anchor-positive pair (a, p) against every
    # candidate negative n: a P x N table (P pairs), not an N^3 cube.
    a, p = (pos & has_neg[:, None]).nonzero(as_tuple=True)
    if a.numel() == 0:
        return _zero(d)
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


# --------------------------------------------------------------------------- InfoNCE


def _nt_xent_logits(z1: Tensor, z2: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
    """SimCLR's 2N x 2N similarity logits (self-similarity at -inf) and the positives."""
    if z1.ndim != 2 or z1.shape != z2.shape:
        raise ValueError(
            "info_nce takes the two views' projections as two (N, D) tensors of the same "
            f"shape, got {tuple(z1.shape)} and {tuple(z2.shape)}."
        )
    if not temperature > 0:
        raise UserError(f"The InfoNCE temperature must be above 0, got {temperature}.")
    z = torch.cat([z1, z2], dim=0)
    if z.dtype in (torch.float16, torch.bfloat16):
        z = z.float()
    z = F.normalize(z, dim=1)
    n2 = z.shape[0]
    logits = (z @ z.T) / temperature
    eye = torch.eye(n2, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(eye, float("-inf"))
    n = n2 // 2
    idx = torch.arange(n2, device=z.device)
    targets = (idx + n) % n2  # view 1's i <-> view 2's i
    return logits, targets


def info_nce(z1: Tensor, z2: Tensor, temperature: float = 0.5) -> Tensor:
    """InfoNCE in SimCLR's form, NT-Xent (Chen et al., ICML 2020).

    ``z1[i]`` and ``z2[i]`` are the projections of two augmented views of image ``i``.
    All 2N projections are L2-normalised; ``s(u, v) = u.v / temperature``. For each of
    the 2N projections the positive is the other view of the same image and the
    negatives are the other 2N - 2 projections::

        l(i, j) = -log( exp(s(z_i, z_j)) / sum_{k != i} exp(s(z_i, z_k)) )

    a cross-entropy over the 2N - 1 candidates (self-similarity masked out). The loss is
    the mean of ``l`` over all 2N projections, both directions of every pair. With one
    image (N = 1) the positive is the only candidate and the loss is 0; an empty batch
    gives 0 too.

    Parameters
    ----------
    z1, z2
        (N, D) projection-head outputs of the two views, in the same image order.
    temperature
        ``tau``; SimCLR used 0.5 for CIFAR-10 and 0.1 for ImageNet at large batches.
    """
    logits, targets = _nt_xent_logits(z1, z2, temperature)
    if logits.shape[0] == 0:
        return _zero(z1) + _zero(z2)
    return F.cross_entropy(logits, targets)


# --------------------------------------------------------------------------- statistics


def _mean(values: Tensor) -> float | None:
    return float(values.float().mean()) if values.numel() else None


@torch.no_grad()
def loss_stats(
    loss: str,
    outputs: Tensor,
    labels: Tensor | None = None,
    *,
    z2: Tensor | None = None,
    margin: float | None = None,
    temperature: float = 0.5,
) -> dict[str, float]:
    """What the panel shows beside the loss value, for one batch, as plain floats.

    ``outputs`` is what the loss was given: logits for ``"ce"``, embeddings for
    ``"contrastive"`` and ``"triplet"``, the first view's projections ``z1`` for
    ``"infonce"`` (with ``z2=`` the second view's; ``labels`` unused).

    Keys, by loss (distances as the loss measures them):

    - ``ce``: ``accuracy`` (top-1, in [0, 1]).
    - ``contrastive``: ``pos_dist`` and ``neg_dist``, the mean Euclidean distance of
      similar and dissimilar pairs; ``inside_margin``, the fraction of dissimilar pairs
      closer than the margin (those still pushed apart). Margin default 1.0.
    - ``triplet``: ``pos_dist`` and ``neg_dist``, mean squared distances of normalised
      positive and negative pairs; ``active_triplets``, the fraction of all valid
      triplets with a positive loss. Margin default 0.2.
    - ``infonce``: ``top1``, how often a projection's most similar other projection is
      its other view; ``pos_sim`` and ``neg_sim``, the mean cosine similarity of
      positive and of negative pairs.

    A key whose quantity the batch cannot give (no dissimilar pair, no valid triplet)
    is left out, so logged JSON never holds NaN.
    """
    out: dict[str, float | None]
    if loss == "ce":
        if labels is None:
            raise ValueError("loss_stats('ce', ...) needs the labels.")
        out = {"accuracy": _mean(outputs.argmax(dim=1) == labels)}
    elif loss == "contrastive":
        if labels is None:
            raise ValueError("loss_stats('contrastive', ...) needs the labels.")
        emb = _check_batch(outputs, labels, "loss_stats")
        m = 1.0 if margin is None else margin
        dist = _distances(emb)
        pos, neg = _label_masks(labels)
        upper = torch.triu(torch.ones_like(pos), diagonal=1)
        pos_d, neg_d = dist[pos & upper], dist[neg & upper]
        out = {
            "pos_dist": _mean(pos_d),
            "neg_dist": _mean(neg_d),
            "inside_margin": _mean(neg_d < m),
        }
    elif loss == "triplet":
        if labels is None:
            raise ValueError("loss_stats('triplet', ...) needs the labels.")
        emb = _check_batch(outputs, labels, "loss_stats")
        m = 0.2 if margin is None else margin
        d = _normalized_sq_distances(emb)
        pos, neg = _label_masks(labels)
        a, p = pos.nonzero(as_tuple=True)
        active = (d[a, p][:, None] - d[a] + m) > 0  # (P, N)
        out = {
            "pos_dist": _mean(d[pos]),
            "neg_dist": _mean(d[neg]),
            "active_triplets": _mean(active[neg[a]]),
        }
    elif loss == "infonce":
        if z2 is None:
            raise ValueError("loss_stats('infonce', z1, z2=...) needs the second view.")
        logits, targets = _nt_xent_logits(outputs, z2, temperature)
        sim = logits * temperature
        n2 = logits.shape[0]
        is_pos = torch.zeros_like(logits, dtype=torch.bool)
        is_pos[torch.arange(n2, device=logits.device), targets] = True
        is_neg = ~is_pos & torch.isfinite(logits)
        # A one-image batch has a single candidate: top-1 is trivially right, so skip it.
        top1 = _mean(logits.argmax(dim=1) == targets) if n2 > 2 else None
        out = {"top1": top1, "pos_sim": _mean(sim[is_pos]), "neg_sim": _mean(sim[is_neg])}
    else:
        raise UserError(f"Unknown loss {loss!r}; choose one of {', '.join(LOSSES)}.")
    return {k: v for k, v in out.items() if v is not None}

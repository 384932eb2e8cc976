"""InfoNCE in SimCLR's form, NT-Xent: Chen, Kornblith, Norouzi & Hinton, "A Simple Framework
for Contrastive Learning of Visual Representations", ICML 2020; InfoNCE after van den Oord, Li
& Vinyals, "Representation Learning with Contrastive Predictive Coding", 2018."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from vizapp.core.errors import UserError
from vizapp.training.losses.base import mean_or_none, zero

#: A projection per view, two augmented views of each image (labels unused), a temperature.
EMBEDS = True
VIEWS = 2
OPTIONS = ("temperature",)


def nt_xent_logits(z1: Tensor, z2: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
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
    logits, targets = nt_xent_logits(z1, z2, temperature)
    if logits.shape[0] == 0:
        return zero(z1) + zero(z2)
    return F.cross_entropy(logits, targets)


def loss(z1: Tensor, _labels: Tensor | None = None, *, z2: Tensor, temperature: float = 0.5, **_options) -> Tensor:
    return info_nce(z1, z2, temperature)


@torch.no_grad()
def stats(outputs: Tensor, _labels: Tensor | None = None, *, z2: Tensor | None = None, temperature: float = 0.5,
          **_options) -> dict[str, float | None]:
    """``top1``, how often a projection's most similar other projection is its other view;
    ``pos_sim`` and ``neg_sim``, the mean cosine similarity of positive and of negative pairs."""
    if z2 is None:
        raise ValueError("loss_stats('infonce', z1, z2=...) needs the second view.")
    logits, targets = nt_xent_logits(outputs, z2, temperature)
    sim = logits * temperature
    n2 = logits.shape[0]
    is_pos = torch.zeros_like(logits, dtype=torch.bool)
    is_pos[torch.arange(n2, device=logits.device), targets] = True
    is_neg = ~is_pos & torch.isfinite(logits)
    # A one-image batch has a single candidate: top-1 is trivially right, so skip it.
    top1 = mean_or_none(logits.argmax(dim=1) == targets) if n2 > 2 else None
    return {"top1": top1, "pos_sim": mean_or_none(sim[is_pos]), "neg_sim": mean_or_none(sim[is_neg])}

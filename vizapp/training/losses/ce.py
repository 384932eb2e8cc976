"""Cross-entropy: :func:`torch.nn.functional.cross_entropy` on the class logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from vizapp.training.losses.base import mean_or_none

#: The model outputs class logits (not an embedding); one view per image; no options.
EMBEDS = False
VIEWS = 1
OPTIONS: tuple[str, ...] = ()


def loss(outputs: Tensor, labels: Tensor, **_options) -> Tensor:
    return F.cross_entropy(outputs, labels)


@torch.no_grad()
def stats(outputs: Tensor, labels: Tensor | None = None, **_options) -> dict[str, float | None]:
    """``accuracy`` (top-1, in [0, 1])."""
    if labels is None:
        raise ValueError("loss_stats('ce', ...) needs the labels.")
    return {"accuracy": mean_or_none(outputs.argmax(dim=1) == labels)}

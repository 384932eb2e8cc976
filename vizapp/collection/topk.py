"""Streaming per-channel top-k: the k images whose maximum activation in each channel is highest.

For each chosen layer, a :class:`StreamingTopK` keeps, for every channel at once, the k
images whose maximum activation in that channel is highest, with where the maximum
was. Per batch the running top-k is concatenated with the batch's per-channel maxima
and re-sorted on the device, so memory does not grow with the collection. Ties are
broken by image order, so a sharded (torchrun) index merges to exactly the same result.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from vizapp.core.errors import LayerError
from vizapp.probing.mosaic import token_prefix

__all__ = ["StreamingTopK", "as_maps"]


def as_maps(t: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """A batch of layer outputs as ``B x C x H x W`` maps; True if they were ViT tokens."""
    if t.ndim == 4:
        if t.shape[1] == t.shape[2] != t.shape[3]:  # channels-last (ConvNeXt blocks)
            return t.permute(0, 3, 1, 2), False
        return t, False
    if t.ndim == 3:
        n = t.shape[1]
        extra = token_prefix(n)
        if extra is not None:
            side = math.isqrt(n - extra)
            return t[:, extra:].transpose(1, 2).reshape(t.shape[0], t.shape[2], side, side), True
    if t.ndim == 2:
        return t[:, :, None, None], False
    raise LayerError(f"cannot index a layer output of shape {tuple(t.shape[1:])}")


class StreamingTopK:
    """Running top-k over images, for all channels of one layer at once (on the device).

    Besides the winners it keeps, per channel, what tells noise from signal:

    - ``ties``: how many images that were left out share the k-th value (ReLU6
      saturating at 6.0 in many images, a unit that is 0 almost everywhere). When it is
      above 0 the k shown are not "the top k" but the first in collection order among
      equals. Exact for any batching and for a merge of shards: an image whose value
      is above the k-th is always kept, so only the k-th value's ties are ever left out.
    - ``low``: the smallest value of any unit of the channel (every position of every
      image). ``low == values[0]`` means the channel has one value everywhere: dead.
    """

    def __init__(self, k: int, channels: int, device: torch.device | str = "cpu") -> None:
        self.k = k
        self.values = torch.full((k, channels), -math.inf, device=device)
        self.images = torch.full((k, channels), -1, dtype=torch.int64, device=device)
        self.positions = torch.zeros((k, channels), dtype=torch.int64, device=device)
        self.ties = torch.zeros(channels, dtype=torch.int64, device=device)
        self.low = torch.full((channels,), math.inf, device=device)

    def update(self, maps: torch.Tensor, image_ids: torch.Tensor) -> None:
        """``maps``: ``B x C x H x W`` for images ``image_ids`` (ascending)."""
        b, c = maps.shape[:2]
        flat = maps.reshape(b, c, -1).float()
        values, positions = flat.max(dim=2)
        self.low = torch.minimum(self.low, flat.amin(dim=(0, 2)))
        ids = image_ids.to(self.images.device).view(b, 1).expand(b, c)
        self._select(
            torch.cat([self.values, values]), torch.cat([self.images, ids]), torch.cat([self.positions, positions]),
            [(self.values[-1], self.ties)],
        )

    def _select(self, values: torch.Tensor, images: torch.Tensor, positions: torch.Tensor,
                carried: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Keep the k best rows; ``carried``: ``(k-th value, ties)`` of the states merged here."""
        # Stable descending sort: among equal values the earlier row (earlier image) wins.
        order = torch.sort(values, dim=0, descending=True, stable=True).indices
        keep, rest = order[: self.k], order[self.k:]
        self.values = values.gather(0, keep)
        self.images = images.gather(0, keep)
        self.positions = positions.gather(0, keep)
        kth = self.values[-1]
        ties = ((values.gather(0, rest) == kth) & (images.gather(0, rest) >= 0)).sum(dim=0)
        for old_kth, old_ties in carried:  # ties left out before still tie if the k-th value stayed
            ties = ties + torch.where(old_kth.to(kth.device) == kth, old_ties.to(kth.device), 0)
        self.ties = torch.where(self.images[-1] >= 0, ties, 0)

    @classmethod
    def merge(cls, parts: list[StreamingTopK]) -> StreamingTopK:
        """The top-k of several partial results (e.g. one per torchrun rank)."""
        values = torch.cat([p.values.cpu() for p in parts])
        images = torch.cat([p.images.cpu() for p in parts])
        positions = torch.cat([p.positions.cpu() for p in parts])
        # Order rows by image first (empty slots last) so the stable value sort breaks ties as one pass would.
        key = torch.where(images < 0, torch.iinfo(torch.int64).max, images)
        by_image = torch.sort(key, dim=0, stable=True).indices
        merged = cls(parts[0].k, values.shape[1])
        merged._select(values.gather(0, by_image), images.gather(0, by_image), positions.gather(0, by_image),
                       [(p.values[-1].cpu(), p.ties.cpu()) for p in parts])
        merged.low = torch.stack([p.low.cpu() for p in parts]).amin(dim=0)
        return merged

    def state(self) -> dict[str, np.ndarray]:
        return {"values": self.values.cpu().numpy(), "images": self.images.cpu().numpy(),
                "positions": self.positions.cpu().numpy(), "ties": self.ties.cpu().numpy(),
                "low": self.low.cpu().numpy()}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray], device: torch.device | str = "cpu") -> StreamingTopK:
        """The inverse of :meth:`state` (a ``KeyError`` for a state without its tie counts:
        a checkpoint from before them cannot be resumed exactly)."""
        k, c = state["values"].shape
        t = cls(k, c, device)
        t.values = torch.as_tensor(state["values"], device=device)
        t.images = torch.as_tensor(state["images"], device=device)
        t.positions = torch.as_tensor(state["positions"], device=device)
        t.ties = torch.as_tensor(state["ties"], device=device)
        t.low = torch.as_tensor(state["low"], device=device)
        return t


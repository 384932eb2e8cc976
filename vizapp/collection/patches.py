"""Pixels for the Top patches view: each indexed unit's box cut from its original image.

Jobs (``load_patch_grid``, ``load_layer_overview``) take ``progress`` and ``cancel``
keywords like ``vizapp.analysis``'s and return plain numpy records. Each image is
decoded once per call: patches are grouped by image, so memory holds one decoded
image at a time however many channels share it. No torch here (the index is
already built), so the view can import these records without loading torch.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from vizapp.core.errors import ImageError
from vizapp.core.jobs import CancelToken, Progress, no_progress
from vizapp.inputs.images import load_image
from vizapp.probing.mosaic import Mosaic, tile

if TYPE_CHECKING:
    from vizapp.collection.datasets import ImageCollection
    from vizapp.collection.index_store import Index, Patch

__all__ = [
    "PAD_VALUE",
    "MISSING_VALUE",
    "PatchGrid",
    "LayerOverview",
    "UnitFlags",
    "unit_flags",
    "patch_pixels",
    "crop_patch",
    "load_patch_grid",
    "load_layer_overview",
]

#: Grey that pads a non-square box to a square tile.
PAD_VALUE = 48
#: Grey of a tile whose channel has no patch (or whose image can no longer be read).
MISSING_VALUE = 16
#: Boxes enlarged this much or more are resized with nearest neighbour (shows the few pixels a unit sees).
NEAREST_FROM = 4.0


@dataclass(frozen=True)
class UnitFlags:
    """What tells a channel's top-k from noise (see ``vizapp.collection.topk.StreamingTopK``).

    Attributes
    ----------
    dead : bool
        The channel has one value (``value``) at every position of every image.
    value : float
        The best value (the dead channel's only value).
    tied_at_k : int
        How many images share the k-th value when more share it than fit in the top
        k (0 when none was left out): the patches with that value are the first in
        collection order, not the strongest.
    kth_value : float
    k : int
        The k-th slot's rank (the number of patches kept).
    shown_tied : int
        How many of the kept patches have the k-th value.
    """

    dead: bool = False
    value: float = 0.0
    tied_at_k: int = 0
    kth_value: float = 0.0
    k: int = 0
    shown_tied: int = 0

    @property
    def lines(self) -> list[str]:
        """The sentences the view and the CLI show (none for a unit that is neither)."""
        if self.dead:
            return [f"dead: this unit is {_number(self.value)} for every image (at every position); "
                    f"the {self.k} shown are the first in collection order"]
        if self.tied_at_k:
            shown = (f"the {self.k} shown are" if self.shown_tied == self.k
                     else f"the {self.shown_tied} shown with it are")
            return [f"ties: {self.tied_at_k} images share the {_ordinal(self.k)} value {self.kth_value:.2f}; "
                    f"{shown} the first in collection order"]
        return []

    def to_json(self) -> dict:
        return {"dead": self.dead, "tied_at_k": self.tied_at_k}


def _number(v: float) -> str:
    text = f"{v:.4g}"
    return text if any(ch in text for ch in ".einfa") else f"{text}.0"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def unit_flags(topk: dict[str, np.ndarray], channel: int) -> UnitFlags:
    """:class:`UnitFlags` of ``channel`` from an index's top-k arrays (``Index.topk[layer]``).

    An index written before the counts existed (no ``ties`` / ``low``) gives no flags.
    """
    images = np.asarray(topk["images"])[:, channel]
    values = np.asarray(topk["values"])[:, channel]
    kept = images >= 0
    if not kept.any():
        return UnitFlags()
    k = int(kept.sum())
    best, kth = float(values[0]), float(values[k - 1])
    low = topk.get("low")
    dead = low is not None and float(np.asarray(low)[channel]) == best
    ties = topk.get("ties")
    left_out = 0 if ties is None else int(np.asarray(ties)[channel])
    shown = int((values[:k] == kth).sum())
    return UnitFlags(dead=bool(dead), value=best, tied_at_k=left_out + shown if left_out else 0, kth_value=kth,
                     k=k, shown_tied=shown)


@dataclass
class PatchGrid:
    """The top-k patches of one channel and their square ``size x size x 3`` tiles, best first."""

    layer: str
    channel: int
    patches: list[Patch]
    tiles: list[np.ndarray]
    channels: int = 0  # how many channels the layer has (for stepping)
    images: int = 0  # how many images were indexed
    notes: list[str] = field(default_factory=list)
    flags: UnitFlags = field(default_factory=UnitFlags)  # dead channel, ties at the k-th value


@dataclass
class LayerOverview:
    """Each channel's best patch as one tile of ``mosaic`` (tile ``c`` is channel ``c``)."""

    layer: str
    patches: list[Patch | None]
    mosaic: Mosaic
    images: int = 0
    notes: list[str] = field(default_factory=list)


def _open(collection: ImageCollection | None, patch: Patch) -> Image.Image:
    if collection is not None:
        return collection.open(patch.index)
    if ":" in patch.image and not Path(patch.image).is_file():
        raise ImageError(f"{patch.image}: a dataset item; open its collection to show the patch")
    return load_image(patch.image)


def crop_patch(image: Image.Image, box: tuple[int, int, int, int], size: int = 128) -> np.ndarray:
    """``box`` (x0, y0, x1, y1, half-open) of ``image`` fitted into ``size x size``, aspect kept.

    The longer side fills the tile; the shorter is centred on :data:`PAD_VALUE` grey.
    """
    if size < 1:
        raise ValueError(f"size must be at least 1, not {size}")
    w, h = image.size
    x0, y0 = min(max(0, int(box[0])), w - 1), min(max(0, int(box[1])), h - 1)
    x1, y1 = max(x0 + 1, min(w, int(box[2]))), max(y0 + 1, min(h, int(box[3])))
    bw, bh = x1 - x0, y1 - y0
    scale = size / max(bw, bh)
    nw, nh = max(1, min(size, round(bw * scale))), max(1, min(size, round(bh * scale)))
    resample = Image.Resampling.NEAREST if scale >= NEAREST_FROM else Image.Resampling.LANCZOS
    crop = image.crop((x0, y0, x1, y1)).resize((nw, nh), resample)
    out = np.full((size, size, 3), PAD_VALUE, dtype=np.uint8)
    top, left = (size - nh) // 2, (size - nw) // 2
    out[top : top + nh, left : left + nw] = np.asarray(crop.convert("RGB"))
    return out


def patch_pixels(collection: ImageCollection | None, patch: Patch, size: int = 128) -> np.ndarray:
    """The patch's box cut from its original image as ``size x size x 3`` uint8.

    ``collection`` opens ``patch.index`` (needed for torchvision sets); with ``None``
    ``patch.image`` is read as a file path. Raises :class:`ImageError` if unreadable.
    """
    return crop_patch(_open(collection, patch), patch.box, size)


def _by_image(patches: list[Patch | None]) -> dict[tuple[int, str], list[int]]:
    """Positions in ``patches`` grouped by their image (first-seen order)."""
    groups: dict[tuple[int, str], list[int]] = defaultdict(list)
    for pos, p in enumerate(patches):
        if p is not None:
            groups[(p.index, p.image)].append(pos)
    return groups


def _tiles(
    patches: list[Patch | None],
    collection: ImageCollection | None,
    size: int,
    progress: Progress,
    cancel: CancelToken | None,
    what: str,
) -> tuple[np.ndarray, list[str]]:
    """``N x size x size x 3`` tiles for ``patches``, each image decoded once."""
    tiles = np.full((len(patches), size, size, 3), MISSING_VALUE, dtype=np.uint8)
    notes: list[str] = []
    done, total = 0, sum(p is not None for p in patches)
    for positions in _by_image(patches).values():
        if cancel is not None:
            cancel.check()
        first = patches[positions[0]]
        try:
            image = _open(collection, first)
        except ImageError as exc:
            notes.append(str(exc))
            image = None
        for pos in positions:
            if cancel is not None:
                cancel.check()
            if image is not None:
                tiles[pos] = crop_patch(image, patches[pos].box, size)
            done += 1
            progress(done, total, what)
    return tiles, notes


def _image_count(index: Index) -> int:
    return len(index.paths) - len(index.skipped)


def load_patch_grid(
    index: Index,
    layer: str,
    channel: int,
    collection: ImageCollection | None = None,
    size: int = 128,
    *,
    progress: Progress = no_progress,
    cancel: CancelToken | None = None,
) -> PatchGrid:
    """The top-k patches of ``channel`` in ``layer`` (best first) with their tiles."""
    patches = index.top_patches(layer, channel)
    tiles, notes = _tiles(patches, collection, size, progress, cancel, f"top patches of {layer} channel {channel}")
    return PatchGrid(layer, channel, patches, list(tiles), index.channels(layer), _image_count(index), notes,
                     unit_flags(index.topk[layer], channel))


def load_layer_overview(
    index: Index,
    layer: str,
    collection: ImageCollection | None = None,
    size: int = 48,
    *,
    progress: Progress = no_progress,
    cancel: CancelToken | None = None,
) -> LayerOverview:
    """Every channel's best patch as one ``uint8`` mosaic (channels without one are dark)."""
    patches = index.best_patches(layer)
    tiles, notes = _tiles(patches, collection, size, progress, cancel, f"best patch per channel of {layer}")
    image, rows, cols = tile(tiles, gap=2)
    mosaic = Mosaic(image, np.arange(len(patches)), rows, cols, size, size, 2)
    return LayerOverview(layer, patches, mosaic, _image_count(index), notes)

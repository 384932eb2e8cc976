"""Zeiler & Fergus projections: one unit's activation taken back to the input's pixels.

``deconvnet`` (Zeiler & Fergus 2014) and ``guided`` backprop (Springenberg et al. 2015)
are Captum's ``NeuronDeconvolution`` and ``NeuronGuidedBackprop``, targeted at one unit
``(channel, y, x)`` of a layer (a unit as the feature maps and the index see it: NCHW,
channels-last and ViT token outputs through the same convention as
``vizapp.probing.mosaic.as_channel_maps``). Captum only overrides the backward pass of
``nn.ReLU`` modules, so the methods run on a copy of the model (:func:`projection_model`,
cached per model) whose ``ReLU6`` (EfficientNet-Lite, MobileNet) are an ``nn.ReLU``
subclass computing ``relu6``: the outputs are the model's, and the deconvnet rule applies
(without the swap Captum silently returns the plain gradient). The copy shares the
model's parameter and buffer tensors (no second set of weights; a weight update or a
device move of the shared model is seen), has modules of its own (Captum's temporary
hooks never touch the shared model) and is in eval mode (the shared model's training
flags are never changed).

Registration (:func:`project_units`): each projection is cut from its unit's whole receptive
field (:func:`unit_fields`), centred on the unit and running past the input where the unit sits
at the map's border (dark grey there), and the patch shown beside it is the model-input pixels
(after resize and centre crop) under the same box, so the two line up pixel for pixel. A box
clipped to the input (``receptive.unit_boxes``) put a border unit's centre, and the projection's
energy, in the crop's corner. Display (:func:`display`): the signed reconstruction around
mid-grey, scaled per projection, as Zeiler & Fergus show theirs. A network without max-pooling (EfficientNet-Lite)
has no switches: its deconvnet projection does not depend on the image at all (the
deconvnet's ReLU rule ignores the forward pass; Springenberg et al. 2015), which the notes say;
guided backprop does depend on it.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
import time
import warnings
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from vizapp.core.errors import ModelError, OutOfMemory, UserError
from vizapp.core.jobs import CancelToken
from vizapp.probing.mosaic import token_prefix
from vizapp.probing.probe import first_tensor, resolve_layers

__all__ = [
    "METHODS",
    "OUTSIDE",
    "TITLES",
    "Projections",
    "ReLU6AsReLU",
    "cut",
    "display",
    "project",
    "project_many",
    "project_units",
    "projection_model",
    "pixel_box",
    "raw_many",
    "unit_fields",
]

#: The projection methods, by key (the view's and the job's ``method``).
METHODS = ("deconvnet", "guided")
#: What the view calls them.
TITLES = {"deconvnet": "deconvnet", "guided": "guided backprop"}
#: Percentile of a projection's magnitude shown at full contrast (a few strong pixels
#: would otherwise leave the rest of it grey).
CONTRAST = 99.0
#: Grey of a crop's pixels past the model input's edges (the patches' padding grey).
OUTSIDE = 48
#: Images per backward pass in :func:`project_many` (the top-9 in one).
CHUNK = 9

Box = tuple[float, float, float, float]


class ReLU6AsReLU(nn.ReLU):
    """``relu6`` as an ``nn.ReLU`` (never in place), so Captum's deconvnet and guided
    backprop rules (which hook ``nn.ReLU`` only) apply to it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu6(x)


class _Copy:
    def __init__(self, module: nn.Module, tensors: tuple[int, ...], relus: int, swapped: int) -> None:
        self.module, self.tensors, self.relus, self.swapped = module, tensors, relus, swapped


_copies: weakref.WeakKeyDictionary[nn.Module, _Copy] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def _tensor_ids(model: nn.Module) -> tuple[int, ...]:
    return tuple(id(t) for t in model.parameters()) + tuple(id(t) for t in model.buffers())


def projection_model(model: nn.Module) -> tuple[nn.Module, int, int]:
    """The copy of ``model`` the projections run on, its ``nn.ReLU`` count and how many
    ``ReLU6`` were swapped (cached per model; rebuilt when its tensors were replaced)."""
    ids = _tensor_ids(model)
    with _lock:
        cached = _copies.get(model)
        if cached is not None and cached.tensors == ids:
            return cached.module, cached.relus, cached.swapped
        shared = {id(t): t for t in (*model.parameters(), *model.buffers())}
        twin = copy.deepcopy(model, memo=dict(shared))  # modules of its own, the model's tensors
        swapped = 0
        for parent in twin.modules():
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.ReLU6):
                    setattr(parent, name, ReLU6AsReLU())
                    swapped += 1
                elif isinstance(child, nn.ReLU):
                    child.inplace = False  # the copy's own module: Captum's hooks want outputs of their own
        twin.eval()
        relus = sum(isinstance(m, nn.ReLU) for m in twin.modules())
        _copies[model] = _Copy(twin, ids, relus, swapped)
        return twin, relus, swapped


def _select(act: torch.Tensor, channels: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    """Unit ``(channels[i], ys[i], xs[i])`` of batch row ``i``, as ``as_channel_maps`` maps it."""
    rows = torch.arange(act.shape[0], device=act.device)
    if act.ndim == 4:
        if act.shape[1] == act.shape[2] != act.shape[3]:  # channels-last B x H x W x C
            return act[rows, ys, xs, channels]
        return act[rows, channels, ys, xs]
    if act.ndim == 3:  # tokens B x N x D on a square patch grid
        n = act.shape[1]
        extra = token_prefix(n)
        if extra is None:
            raise ModelError(f"a layer output of {n} tokens has no square patch grid; pick another layer")
        side = int(round((n - extra) ** 0.5))
        return act[rows, extra + ys * side + xs, channels]
    if act.ndim == 2:  # a vector: C one-pixel maps
        return act[rows, channels]
    raise ModelError(f"a layer output of shape {tuple(act.shape)} has no units to project; pick another layer")


def _pil(image) -> Image.Image:
    if hasattr(image, "to_pil"):
        return image.to_pil()
    if isinstance(image, np.ndarray):
        return Image.fromarray(np.asarray(image, np.uint8))
    return image


def raw_many(
    loaded, images: Sequence, layer: str, units: Sequence[tuple[int, int, int]], method: str = "deconvnet",
    cancel: CancelToken | None = None,
) -> np.ndarray:
    """``N x H x W x 3`` float32: each image's projection of its unit, through the model's
    preprocessing (Captum's attribution to the normalised input, channels last; a grey-scale
    model's one channel repeated)."""
    if method not in METHODS:
        raise UserError(f"projection method '{method}' is unknown; use one of {', '.join(METHODS)}")
    if len(images) != len(units):
        raise ValueError(f"{len(images)} images but {len(units)} units")
    if loaded.scripted:
        raise ModelError("a TorchScript model runs as a whole; projections need the eager model (state dict + --arch)")
    from captum.attr import NeuronDeconvolution, NeuronGuidedBackprop

    twin, _relus, _swapped = projection_model(loaded.module)
    target = resolve_layers(twin, [layer])[layer]
    klass = NeuronDeconvolution if method == "deconvnet" else NeuronGuidedBackprop
    attribution = klass(twin, target)
    out = []
    try:
        for i in range(0, len(images), CHUNK):
            if cancel is not None:
                cancel.check()
            part = units[i : i + CHUNK]
            x = torch.cat([loaded.preprocess.batch(_pil(im)) for im in images[i : i + CHUNK]]).to(loaded.device)
            x.requires_grad_(True)
            c, ys, xs = (torch.tensor([u[j] for u in part], device=x.device) for j in range(3))

            def selector(output, c=c, ys=ys, xs=xs):
                return _select(first_tensor(output), c, ys, xs)

            with warnings.catch_warnings(), torch.enable_grad():
                warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")  # removed again by Captum
                a = attribution.attribute(x, neuron_selector=selector)
            a = a.detach().float().cpu()
            if a.shape[1] == 1:
                a = a.expand(-1, 3, -1, -1)
            out.append(a.permute(0, 2, 3, 1).contiguous().numpy())
    except torch.OutOfMemoryError:
        raise OutOfMemory(f"out of {loaded.device} memory projecting {layer} of {loaded.title}; "
                          "switch the device to CPU") from None
    except IndexError as exc:
        raise UserError(f"unit {list(units)} is outside {layer}'s output ({exc})") from None
    if cancel is not None:
        cancel.check()
    return np.concatenate(out) if out else np.zeros((0, loaded.input_size, loaded.input_size, 3), np.float32)


def project(loaded, image, layer: str, unit: tuple[int, int, int], method: str = "deconvnet") -> np.ndarray:
    """``H x W x 3`` float32: the deconvnet (or guided backprop) projection of ``unit``
    ``(channel, y, x)`` of ``layer`` for ``image`` (PIL, ImageRecord or uint8 array)."""
    return raw_many(loaded, [image], layer, [unit], method)[0]


def unit_fields(
    loaded, layer: str, positions: Sequence[tuple[int, int]], map_size: tuple[int, int], tokens: bool,
    cancel: CancelToken | None = None,
) -> dict[tuple[int, int], Box]:
    """Each unit's whole receptive field ``x0, y0, x1, y1`` in model-input pixels, centred on the
    unit and NOT clipped to the input (a unit at the map's border has a field that runs past the
    image; :func:`vizapp.explain.receptive.unit_boxes` clips it, which puts the unit's centre at
    the clipped box's corner). A chain of convs/pools: the analytic field; any other network: the
    gradient box of the map's centre unit shifted by the stride (``input / map`` pixels per unit),
    where that unit's box is inside the input and the shifted box clipped agrees with the
    measured one (else the measured, clipped box); ViT tokens: the token's patch."""
    from vizapp.explain.receptive import analytic_field, gradient_boxes, token_box

    unique = sorted({(int(y), int(x)) for y, x in positions})
    n = loaded.input_size
    if tokens:
        return {p: token_box(n, map_size[0], *p) for p in unique}
    field = analytic_field(loaded, layer)
    if field is not None:
        half = field.size / 2
        return {(y, x): (field.start + x * field.jump - half + 0.5, field.start + y * field.jump - half + 0.5,
                         field.start + x * field.jump + half + 0.5, field.start + y * field.jump + half + 0.5)
                for y, x in unique}
    h, w = map_size
    centre = (h // 2, w // 2)
    measured = gradient_boxes(loaded, layer, sorted(set(unique) | {centre}), cancel=cancel)
    c = measured[centre]

    def axis(lo_c: float, hi_c: float, lo: float, hi: float, steps: int, jump: float) -> tuple[float, float]:
        if not (lo_c > 0 and hi_c < n):
            return lo, hi  # the centre unit sees the whole axis: no unclipped size to take
        a, b = lo_c + steps * jump, hi_c + steps * jump
        if abs(max(0.0, a) - lo) > 1 or abs(min(float(n), b) - hi) > 1:
            return lo, hi  # not a uniform grid of fields (the measured box wins)
        return a, b

    out = {}
    for y, x in unique:
        b = measured[(y, x)]
        x0, x1 = axis(c[0], c[2], b[0], b[2], x - centre[1], n / w)
        y0, y1 = axis(c[1], c[3], b[1], b[3], y - centre[0], n / h)
        out[(y, x)] = (x0, y0, x1, y1)
    return out


def pixel_box(box: Box) -> tuple[int, int, int, int]:
    """``box`` as whole model-input pixels ``x0, y0, x1, y1`` (half-open; may lie past the input)."""
    x0, y0 = int(np.floor(box[0])), int(np.floor(box[1]))
    return x0, y0, max(x0 + 1, int(np.ceil(box[2]))), max(y0 + 1, int(np.ceil(box[3])))


def cut(a: np.ndarray, box: Box, fill=0) -> tuple[np.ndarray, np.ndarray]:
    """The region ``box`` (:func:`pixel_box`) of ``H x W x C`` ``a``, ``fill`` where it lies past
    ``a``'s edges, and the ``h x w`` mask of the pixels inside ``a``."""
    x0, y0, x1, y1 = pixel_box(box)
    h, w = a.shape[:2]
    out = np.full((y1 - y0, x1 - x0, *a.shape[2:]), fill, a.dtype)
    inside = np.zeros((y1 - y0, x1 - x0), bool)
    sx0, sy0, sx1, sy1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = a[sy0:sy1, sx0:sx1]
        inside[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = True
    return out, inside


def display(raw: np.ndarray, box: Box | None = None) -> np.ndarray:
    """``raw`` (cut to ``box``, model-input pixels ``x0, y0, x1, y1``, see :func:`cut`) as uint8:
    zero at mid-grey (128), the :data:`CONTRAST` percentile of the magnitude at 1 or 255 (the
    rare larger ones clipped), all grey when it is zero; the part of ``box`` past the input's
    edges is :data:`OUTSIDE` grey (as the patch beside it)."""
    a = np.asarray(raw, np.float32)
    inside = np.ones(a.shape[:2], bool)
    if box is not None:
        a, inside = cut(a, box)
    values = np.abs(a[inside])
    top = float(np.percentile(values, CONTRAST)) if values.size else 0.0
    if not np.isfinite(top) or top <= 0:
        top = float(np.max(values)) if values.size else 0.0
    if not np.isfinite(top) or top <= 0:
        out = np.full(a.shape, 128, np.uint8)
    else:
        out = np.clip(np.round(128.0 + 127.0 * a / top), 0, 255).astype(np.uint8)
    out[~inside] = OUTSIDE
    return out


def project_many(
    loaded, images: Sequence, layer: str, units: Sequence[tuple[int, int, int]], method: str = "deconvnet",
    boxes: Sequence[Box] | None = None, cancel: CancelToken | None = None,
) -> list[np.ndarray]:
    """The projections of ``units`` (one per image, e.g. a channel's top-9) in one go, as
    display uint8 ``H x W x 3``; cropped to each unit's receptive box (model-input pixels)
    when ``boxes`` are given."""
    if boxes is not None and len(boxes) != len(units):
        raise ValueError(f"{len(units)} units but {len(boxes)} boxes")
    raws = raw_many(loaded, images, layer, units, method, cancel)
    return [display(r, None if boxes is None else boxes[i]) for i, r in enumerate(raws)]


@dataclass
class Projections:
    """A channel's top-k projections, best first (what ``analysis.top_projections`` returns).

    Attributes
    ----------
    images : list of ndarray
        Display uint8 ``h x w x 3``, each cut to its unit's whole receptive field
        (:func:`unit_fields`: centred on the unit; :data:`OUTSIDE` grey past the input).
    boxes : list of tuple
        Those fields, ``x0, y0, x1, y1`` in model-input pixels (half-open; may run past the input).
    inputs : list of ndarray
        The model-input pixels (after resize and centre crop) under the same boxes, the same
        shape: the patch each projection lines up with pixel for pixel.
    patches : list
        The index's ``Patch`` records the projections belong to (same order).
    """

    layer: str
    channel: int
    method: str
    images: list[np.ndarray]
    boxes: list[Box]
    inputs: list[np.ndarray] = field(default_factory=list)
    patches: list = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def title(self) -> str:
        return TITLES[self.method]


def project_units(
    loaded, images: Sequence, layer: str, units: Sequence[tuple[int, int, int]], map_size: tuple[int, int],
    tokens: bool, method: str = "deconvnet", cancel: CancelToken | None = None,
) -> Projections:
    """:func:`project_many` of ``units`` cut to their whole receptive fields (:func:`unit_fields`
    on the projection copy, so the shared model's flags are never touched), the model-input
    pixels under the same boxes, and the notes the view shows."""
    from vizapp.explain.attribution.base import activation_names

    start = time.perf_counter()
    twin, relus, _swapped = projection_model(loaded.module)
    found = unit_fields(_replace_module(loaded, twin), layer, [(u[1], u[2]) for u in units], map_size, tokens,
                        cancel)
    boxes = [found[(u[1], u[2])] for u in units]
    crops = project_many(loaded, images, layer, units, method, boxes, cancel)
    inputs = [cut(loaded.preprocess.batch_and_display(_pil(im))[1], b, OUTSIDE)[0]
              for im, b in zip(images, boxes, strict=True)]
    notes = []
    if not relus:
        notes.append(f"{loaded.title} has no ReLU (it uses {activation_names(loaded.module)}): "
                     f"the {TITLES[method]} projection equals the plain gradient here")
    pools = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool2d)
    if method == "deconvnet" and relus and not any(isinstance(m, pools) for m in twin.modules()):
        notes.append(f"{loaded.title} has no max-pooling, so its deconvnet projection is the same for every image "
                     "(no switches; Springenberg et al. 2015); guided backprop follows the image")
    channel = units[0][0] if units else 0
    return Projections(layer, channel, method, crops, boxes, inputs, notes=notes, seconds=time.perf_counter() - start)


def _replace_module(loaded, module: nn.Module):
    return dataclasses.replace(loaded, module=module)

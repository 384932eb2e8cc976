"""What every attribution method shares: the result record, the run a method computes on,
the model wrapper Captum calls, and the map for overlaying."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from vizapp.core.jobs import CancelToken, Progress
from vizapp.explain.attribution.registry import METHODS
from vizapp.probing.probe import first_tensor

__all__ = ["Attribution", "Forward", "Run", "activation_names", "display_map", "input_gradient_is_zero"]


@dataclass
class Attribution:
    """One method's answer for one image and class, as plain numpy.

    Attributes
    ----------
    raw : ndarray
        What the method returned, batch dropped: ``3 x H x W`` for the pixel
        methods, ``h x w`` (the layer's grid) for Grad-CAM.
    map : ndarray
        ``H x W`` float32 in ``[0, 1]``, ready to overlay on ``display``.
    display : ndarray
        ``H x W x 3`` uint8, the input as the model saw it.
    """

    method: str
    target: int
    target_label: str
    probability: float
    raw: np.ndarray
    map: np.ndarray
    display: np.ndarray
    input: np.ndarray
    layer: str | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def title(self) -> str:
        return METHODS[self.method] + (f" ({self.layer})" if self.layer else "")


@dataclass
class Run:
    """One attribution as a method module sees it.

    ``x`` is the input batch on the CPU, ``xd`` on the model's device (detached), ``xin`` a
    copy of ``xd`` that requires grad; ``forward`` (set after the method's ``passes``) is the
    model as Captum must call it. A method may set ``layer`` (the layer it used) and append to
    ``notes``.
    """

    loaded: object
    x: torch.Tensor
    xd: torch.Tensor
    xin: torch.Tensor
    target: int
    layer: str | None = None
    steps: int = 50
    batch: int = 8
    samples: int = 16
    seed: int = 0
    forward: nn.Module | None = None
    used_layer: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def model(self) -> nn.Module:
        return self.loaded.module


class Forward(nn.Module):
    """The model as Captum calls it: checks the cancel token and counts passes.

    A module (wrapping the model) because Guided Backprop hooks the ReLUs it contains.
    """

    def __init__(self, model: nn.Module, total: int, text: str, progress: Progress, cancel: CancelToken | None):
        super().__init__()
        self.model = model
        self.total, self.text, self.progress, self.cancel = total, text, progress, cancel
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.cancel is not None:
            self.cancel.check()
        self.calls += 1
        self.progress(min(self.calls, self.total), self.total, self.text)
        return first_tensor(self.model(x))


def display_map(raw: np.ndarray, method: str) -> np.ndarray:
    """``H x W`` in ``[0, 1]`` for overlaying.

    Pixel methods: ``|sum over colour channels|`` scaled by its 99th percentile
    (Captum's ``visualize_image_attr`` with ``sign="absolute_value"``, 1% outliers
    clipped). Grad-CAM: ReLU, then min-max to ``[0, 1]`` as pytorch-grad-cam's
    ``scale_cam_image`` (its weakest pixel is 0, so the overlay keeps no floor); a
    constant map is all zero.
    """
    a = np.asarray(raw, dtype=np.float32)
    m = a if a.ndim == 2 else np.abs(a.sum(axis=0))
    if method == "gradcam":
        m = np.maximum(m, 0.0)
        low, high = float(np.min(m)), float(np.max(m))
        if not np.isfinite(high) or not np.isfinite(low) or high <= low:
            return np.zeros(m.shape, np.float32)
        return np.clip((m - low) / (high - low), 0.0, 1.0).astype(np.float32)
    top = float(np.percentile(m, 99))
    if not np.isfinite(top) or top <= 0:
        return np.zeros(m.shape, np.float32)
    return np.clip(m / top, 0.0, 1.0).astype(np.float32)


def input_gradient_is_zero(forward, x: torch.Tensor, target: int) -> bool:
    """Whether ``target``'s score has a zero gradient with respect to every input pixel."""
    xin = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        score = forward(xin)[0, target]
        if not score.requires_grad:
            return True
        (grad,) = torch.autograd.grad(score, xin, allow_unused=True)
    return grad is None or not bool(torch.any(grad != 0))


def activation_names(model: nn.Module) -> str:
    """The activation module types ``model`` uses (``"GELU"``), for notes."""
    acts = sorted({type(m).__name__ for m in model.modules()
                   if type(m).__module__.startswith("torch.nn.modules.activation")
                   and not isinstance(m, nn.MultiheadAttention)})
    return ", ".join(acts) or "no activation modules"

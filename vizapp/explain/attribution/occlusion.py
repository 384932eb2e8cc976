"""Occlusion (Zeiler & Fergus 2014): the score's drop when a window of the image is replaced by a
zero (mean-colour) patch, Captum's ``Occlusion``; one patch per window on a ViT."""

from __future__ import annotations

import math

from vizapp.explain.attention import attention_modules
from vizapp.explain.attribution.base import Run


def occlusion_window(loaded, size: int) -> tuple[int, int]:
    """``(window, stride)`` in pixels: one patch for a ViT, a seventh of the input (half-overlapping) for a CNN."""
    if attention_modules(loaded.module):
        patch = getattr(loaded.module, "patch_size", None)
        pe = getattr(loaded.module, "patch_embed", None)
        if pe is not None and hasattr(pe, "patch_size"):
            patch = pe.patch_size
        if isinstance(patch, (tuple, list)):
            patch = patch[0]
        if patch:
            return int(patch), int(patch)
    window = max(8, size // 7)
    return window, max(4, window // 2)


def passes(run: Run) -> int:
    w, stride = occlusion_window(run.loaded, run.x.shape[-1])
    per_side = (run.x.shape[-1] - w) // stride + 1
    return math.ceil(per_side * per_side / run.batch) + 1


def compute(run: Run):
    from captum.attr import Occlusion

    w, stride = occlusion_window(run.loaded, run.x.shape[-1])
    xin = run.xin
    raw = Occlusion(run.forward).attribute(
        xin, target=run.target, sliding_window_shapes=(xin.shape[1], w, w), strides=(xin.shape[1], stride, stride),
        baselines=0.0, perturbations_per_eval=run.batch)
    run.notes.append(f"occlusion windows of {w} px, stride {stride} px (a zero, i.e. mean-colour, patch)")
    return raw

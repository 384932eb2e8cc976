"""Grad-CAM (Selvaraju et al. 2017) at any layer with maps, CNN or ViT.

Captum gives the layer's gradient (``LayerGradientXActivation`` without the multiplication);
the channels are weighted here, because Captum's ``LayerGradCam`` averages the last axes,
which for ViT tokens (``B x N x D``) are the channels, not the patches. Every layer output is
first viewed as ``C x h x w`` maps exactly as the feature-map view shows it (tokens without the
class token on the patch grid; channels-last outputs transposed); on a plain ``NCHW`` layer the
result equals ``LayerGradCam``.
"""

from __future__ import annotations

import numpy as np

from vizapp.core.errors import LayerError, ModelError
from vizapp.explain.attention import attention_modules
from vizapp.explain.attribution.base import Run, input_gradient_is_zero
from vizapp.probing.layers import PASS_THROUGH, layer_table
from vizapp.probing.mosaic import as_channel_maps, has_maps
from vizapp.probing.probe import capture, resolve_layers

__all__ = ["default_cam_layer", "gradcam"]


def default_cam_layer(loaded) -> str:
    """Where Grad-CAM looks by default.

    ViT: the norm before the last block's attention (``ln_1`` / ``norm1``): the last
    block's output patch tokens never reach the class token, so their gradient is 0.
    CNN: the last module whose output is still a spatial map (before global pooling).
    """
    cached = getattr(loaded, "_default_cam_layer", None)
    if cached is not None:
        return cached
    found = _find_cam_layer(loaded)
    loaded._default_cam_layer = found  # the layer table is a forward pass: once per model
    return found


def _find_cam_layer(loaded) -> str:
    model = loaded.module
    attn = list(attention_modules(model))
    if attn:
        block = attn[-1].rsplit(".", 1)[0]
        modules = dict(model.named_modules())
        for norm in ("ln_1", "norm1"):
            if f"{block}.{norm}" in modules:
                return f"{block}.{norm}"
        return attn[-1]
    rows = [r for r in layer_table(loaded) if r.name and r.type not in PASS_THROUGH and r.shape is not None
            and len(r.shape) == 3 and has_maps(r.shape) and r.run_order is not None]
    if not rows:
        raise LayerError(f"{loaded.title} has no layer with spatial maps for Grad-CAM")
    return max(rows, key=lambda r: r.run_order).name


def passes(run: Run) -> int:
    return 1


def gradcam(loaded, forward, x, target: int, layer: str) -> np.ndarray:
    """The map on ``layer``'s grid: Captum's layer gradient, our channel weighting."""
    from captum.attr import LayerGradientXActivation

    module = resolve_layers(loaded.module, [layer])[layer]
    lg = LayerGradientXActivation(forward, module, multiply_by_inputs=False)
    with capture(loaded.module, [layer]) as store:
        try:
            grads = lg.attribute(x, target=target)
        except AssertionError as exc:  # Captum asserts on layers it cannot hook
            if layer not in store.calls:
                raise LayerError(f"{layer} does not run in {loaded.title}'s forward pass; pick another layer "
                                 f"for Grad-CAM (the default is {default_cam_layer(loaded)})") from None
            raise LayerError(f"Grad-CAM cannot use {layer}: {str(exc).splitlines()[0]}; pick a layer with one "
                             f"tensor output (the default is {default_cam_layer(loaded)})") from None
    if isinstance(grads, tuple):
        grads = grads[0]
    act = store[layer][0].float().cpu().numpy()
    grad = grads[0].detach().float().cpu().numpy()
    if grad.shape != act.shape:
        raise LayerError(f"{layer}: its gradient and output differ in shape; pick another layer for Grad-CAM")
    a_maps, g_maps = as_channel_maps(act), as_channel_maps(grad)
    if a_maps.shape[1] * a_maps.shape[2] <= 1:
        raise LayerError(f"{layer} has no spatial maps (its output is {tuple(act.shape)}); Grad-CAM needs a "
                         "conv layer or a ViT token layer")
    if not np.any(g_maps):
        if input_gradient_is_zero(forward, x, target):
            raise ModelError(
                f"gradcam: every gradient is zero for class {target} ({loaded.label(target)}): {loaded.title}'s output "
                "does not depend on its input (is the classifier head all zeros / untrained?)")
        default = default_cam_layer(loaded)
        hint = f"use {default}" if default != layer else "pick an earlier layer"
        raise LayerError(
            f"Grad-CAM at {layer} is zero everywhere: the class score's gradient does not reach its maps (in a ViT "
            f"the last block's patch tokens never reach the class token); {hint}")
    weights = g_maps.reshape(g_maps.shape[0], -1).mean(axis=1)
    return np.maximum((weights[:, None, None] * a_maps).sum(axis=0), 0.0).astype(np.float32)


def compute(run: Run):
    run.used_layer = run.layer or default_cam_layer(run.loaded)
    return gradcam(run.loaded, run.forward, run.xin, run.target, run.used_layer)

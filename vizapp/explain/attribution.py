"""Which pixels made this prediction: Captum attributions for CNNs and ViTs.

Every method is one call: :func:`attribute` ``(model, image, method, target) ->``
:class:`Attribution`. The methods are Captum's (Saliency, InputXGradient,
IntegratedGradients, GuidedBackprop, Occlusion; SmoothGrad is NoiseTunnel's sum over
Saliency with its noise from a seeded generator of its own); Grad-CAM takes the
layer gradient and activation from Captum and weights the channels itself, because
Captum's ``LayerGradCam`` averages the last axes, which for ViT tokens (``B x N x D``)
are the channels, not the patches. Here every layer output is first viewed as
``C x h x w`` maps exactly as the feature-map view shows it (tokens without the
class token on the patch grid; channels-last outputs transposed), so Grad-CAM works
at any layer with maps, CNN or ViT; on a plain ``NCHW`` layer it equals ``LayerGradCam``.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vizapp.core.errors import LayerError, ModelError, OutOfMemory, UserError
from vizapp.core.jobs import CancelToken, Progress, no_progress

__all__ = [
    "METHODS",
    "Attribution",
    "attribute",
    "default_cam_layer",
    "display_map",
    "resolve_target",
]

#: Method key -> what the views call it.
METHODS = {
    "saliency": "Saliency",
    "input_x_gradient": "Input × Gradient",
    "integrated_gradients": "Integrated Gradients",
    "guided_backprop": "Guided Backprop",
    "occlusion": "Occlusion",
    "gradcam": "Grad-CAM",
    "smoothgrad": "SmoothGrad",
}


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


# --- targets ---------------------------------------------------------------------------


def resolve_target(loaded, logits: torch.Tensor, target: int | str | None) -> int:
    """The class index to explain: ``target`` (an index or a class name) or the top class."""
    from vizapp.probing.inference import has_classifier

    if not has_classifier(loaded, logits):
        raise UserError(f"{loaded.title} has no classifier head, so there is no class to explain")
    n = int(logits.shape[1])
    if target is None:
        return int(logits[0].argmax())
    if isinstance(target, str) and not target.strip().lstrip("-").isdigit():
        names = loaded.class_names or []
        lowered = [c.lower() for c in names]
        if target.lower() in lowered:
            return lowered.index(target.lower())
        close = [c for c in names if target.lower() in c.lower()][:5]
        hint = f" Close: {', '.join(close)}." if close else ""
        raise UserError(f"'{target}' is not one of {loaded.title}'s class names.{hint} Give a name or an index 0-{n - 1}")
    index = int(target)
    if not 0 <= index < n:
        raise UserError(f"class {index} is out of range: {loaded.title} has {n} classes (0-{n - 1})")
    return index


# --- layers --------------------------------------------------------------------------------


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
    from vizapp.explain.attention import attention_modules
    from vizapp.probing.layers import PASS_THROUGH, layer_table
    from vizapp.probing.mosaic import has_maps

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


# --- the methods -------------------------------------------------------------------------


class _Forward(nn.Module):
    """The model as Captum calls it: checks the cancel token and counts passes.

    A module (wrapping the model) because Guided Backprop hooks the ReLUs it contains.
    """

    def __init__(self, model: nn.Module, total: int, text: str, progress: Progress, cancel: CancelToken | None):
        super().__init__()
        self.model = model
        self.total, self.text, self.progress, self.cancel = total, text, progress, cancel
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from vizapp.probing.probe import first_tensor

        if self.cancel is not None:
            self.cancel.check()
        self.calls += 1
        self.progress(min(self.calls, self.total), self.total, self.text)
        return first_tensor(self.model(x))


def _guided_backprop(forward):
    """Captum's GuidedBackprop, also over ``ReLU6`` (EfficientNet-Lite, MobileNet)."""
    from captum.attr import GuidedBackprop
    from captum.attr._core import guided_backprop_deconvnet as gbd  # Captum's own hook helper

    class _Guided(GuidedBackprop):
        def _register_hooks(self, module: nn.Module) -> None:
            if isinstance(module, (nn.ReLU, nn.ReLU6)):
                self.backward_hooks.extend(gbd._register_backward_hook(module, self._backward_hook, self))

    return _Guided(forward)


def _occlusion_window(loaded, size: int) -> tuple[int, int]:
    """``(window, stride)`` in pixels: one patch for a ViT, a seventh of the input (half-overlapping) for a CNN."""
    from vizapp.explain.attention import attention_modules

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


def _gradcam(loaded, forward, x: torch.Tensor, target: int, layer: str) -> tuple[np.ndarray, list[str]]:
    """``(map on the layer's grid, notes)`` at ``layer``: Captum's layer gradient, our channel weighting."""
    from captum.attr import LayerGradientXActivation

    from vizapp.probing.mosaic import as_channel_maps
    from vizapp.probing.probe import capture, resolve_layers

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
        if _input_gradient_is_zero(forward, x, target):
            raise ModelError(
                f"gradcam: every gradient is zero for class {target} ({loaded.label(target)}): {loaded.title}'s output "
                "does not depend on its input (is the classifier head all zeros / untrained?)")
        default = default_cam_layer(loaded)
        hint = f"use {default}" if default != layer else "pick an earlier layer"
        raise LayerError(
            f"Grad-CAM at {layer} is zero everywhere: the class score's gradient does not reach its maps (in a ViT "
            f"the last block's patch tokens never reach the class token); {hint}")
    notes: list[str] = []
    weights = g_maps.reshape(g_maps.shape[0], -1).mean(axis=1)
    cam = np.maximum((weights[:, None, None] * a_maps).sum(axis=0), 0.0).astype(np.float32)
    return cam, notes


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


def _input_gradient_is_zero(forward, x: torch.Tensor, target: int) -> bool:
    """Whether ``target``'s score has a zero gradient with respect to every input pixel."""
    xin = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        score = forward(xin)[0, target]
        if not score.requires_grad:
            return True
        (grad,) = torch.autograd.grad(score, xin, allow_unused=True)
    return grad is None or not bool(torch.any(grad != 0))


def _smoothgrad(forward, x: torch.Tensor, target: int, samples: int, batch: int, sigma: float,
                seed: int) -> torch.Tensor:
    """SmoothGrad (Smilkov et al. 2017) as Captum's ``NoiseTunnel(Saliency)`` computes it
    (the mean of ``|gradient|`` over ``samples`` noisy copies, ``batch`` per pass), with
    the noise drawn from a generator of its own seeded with ``seed``: the same call gives
    the same map, and no other thread's random numbers are touched."""
    from captum.attr import Saliency

    generator = torch.Generator(device=x.device)
    generator.manual_seed(int(seed))
    saliency = Saliency(forward)
    base = x.detach()
    total = torch.zeros_like(base)
    for start in range(0, samples, batch):
        n = min(batch, samples - start)
        noise = torch.randn((n, *base.shape[1:]), generator=generator, device=base.device, dtype=base.dtype)
        noisy = (base + sigma * noise).requires_grad_(True)
        total += saliency.attribute(noisy, target=target, abs=True).detach().sum(dim=0, keepdim=True)
    return total / samples


def attribute(
    loaded,
    image,
    method: str,
    target: int | str | None = None,
    layer: str | None = None,
    *,
    steps: int = 50,
    internal_batch_size: int = 8,
    samples: int = 16,
    seed: int = 0,
    progress: Progress = no_progress,
    cancel: CancelToken | None = None,
) -> Attribution:
    """Attribute ``loaded``'s score for ``target`` (the top class by default) to ``image``.

    Parameters
    ----------
    method : str
        One of :data:`METHODS`.
    target : int or str, optional
        A class index or class name; the predicted class when ``None``.
    layer : str, optional
        Grad-CAM's layer (default :func:`default_cam_layer`).
    steps, internal_batch_size : int
        Integrated Gradients' path steps, evaluated ``internal_batch_size`` at a time
        so memory stays bounded whatever ``steps`` is.
    samples : int
        SmoothGrad's noisy samples (also batched by ``internal_batch_size``).
    seed : int
        SmoothGrad's noise seed (a generator of its own): the same call, the same map.
    """
    from captum.attr import InputXGradient, IntegratedGradients, Occlusion, Saliency

    from vizapp.probing.probe import first_tensor

    if method not in METHODS:
        raise UserError(f"unknown attribution method '{method}'; choose one of {', '.join(METHODS)}")
    if loaded.scripted:
        raise ModelError("a TorchScript model runs as a whole; attributions need the eager model (state dict + --arch)")
    pil = image.to_pil() if hasattr(image, "to_pil") else image
    x = loaded.preprocess.batch(pil)
    model = loaded.module
    was_training = model.training
    model.eval()
    notes: list[str] = []
    start = time.perf_counter()
    try:
        xd = x.to(loaded.device)
        with torch.inference_mode():
            logits = first_tensor(model(xd)).float()
        chosen = resolve_target(loaded, logits.cpu(), target)
        prob = float(torch.softmax(logits[0], 0)[chosen])
        label = METHODS[method]
        if method == "integrated_gradients":
            total = math.ceil(steps / internal_batch_size)
        elif method == "smoothgrad":
            total = math.ceil(samples / internal_batch_size)
        elif method == "occlusion":
            w, stride = _occlusion_window(loaded, x.shape[-1])
            per_side = (x.shape[-1] - w) // stride + 1
            total = math.ceil(per_side * per_side / internal_batch_size) + 1
        else:
            total = 1
        forward = _Forward(model, total, f"{label} for {loaded.label(chosen)}", progress, cancel)
        xin = xd.clone().requires_grad_(True)
        used_layer = None
        with torch.enable_grad():
            if method == "saliency":
                raw = Saliency(forward).attribute(xin, target=chosen, abs=True)
            elif method == "input_x_gradient":
                raw = InputXGradient(forward).attribute(xin, target=chosen)
            elif method == "integrated_gradients":
                raw = IntegratedGradients(forward).attribute(
                    xin, target=chosen, n_steps=steps, internal_batch_size=internal_batch_size)
            elif method == "guided_backprop":
                relus = [m for m in model.modules() if isinstance(m, (nn.ReLU, nn.ReLU6))]
                if not relus:
                    notes.append(f"{loaded.title} has no ReLU modules (it uses {_activation_names(model)}); "
                                 "Guided Backprop equals the plain gradient here")
                with warnings.catch_warnings():  # Captum announces its (removed afterwards) hooks
                    warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
                    raw = _guided_backprop(forward).attribute(xin, target=chosen)
            elif method == "occlusion":
                raw = Occlusion(forward).attribute(
                    xin, target=chosen, sliding_window_shapes=(xin.shape[1], w, w), strides=(xin.shape[1], stride, stride),
                    baselines=0.0, perturbations_per_eval=internal_batch_size)
                notes.append(f"occlusion windows of {w} px, stride {stride} px (a zero, i.e. mean-colour, patch)")
            elif method == "smoothgrad":
                sigma = 0.15 * float(xd.max() - xd.min())
                raw = _smoothgrad(forward, xd, chosen, samples, internal_batch_size, sigma, seed)
            else:  # gradcam
                used_layer = layer or default_cam_layer(loaded)
                cam, cam_notes = _gradcam(loaded, forward, xin, chosen, used_layer)
                notes.extend(cam_notes)
                raw = cam
        if cancel is not None:
            cancel.check()
    except torch.OutOfMemoryError:
        raise OutOfMemory(f"out of {loaded.device} memory computing {METHODS[method]} for {loaded.title}; "
                          "switch the device to CPU") from None
    finally:
        model.train(was_training)
        model.zero_grad(set_to_none=True)
    if isinstance(raw, torch.Tensor):
        raw = raw[0].detach().float().cpu().numpy()
    if method == "gradcam":
        size = x.shape[-2:]
        up = F.interpolate(torch.from_numpy(raw)[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
        heat = display_map(up.numpy(), method)
    else:
        heat = display_map(raw, method)
        if not np.any(raw):
            notes.append(f"the attribution is zero everywhere: {loaded.label(chosen)}'s score does not depend on "
                         "the input here (a classifier head with all-zero weights does this)")
    if not loaded.trained:
        notes.append(f"{loaded.title} is UNTRAINED: this explains random weights")
    return Attribution(
        method=method, target=chosen, target_label=loaded.label(chosen), probability=prob, raw=raw, map=heat,
        display=loaded.preprocess.to_display(x), input=x.numpy(), layer=used_layer,
        seconds=time.perf_counter() - start, notes=notes,
    )


def _activation_names(model: nn.Module) -> str:
    acts = sorted({type(m).__name__ for m in model.modules()
                   if type(m).__module__.startswith("torch.nn.modules.activation")
                   and not isinstance(m, nn.MultiheadAttention)})
    return ", ".join(acts) or "no activation modules"

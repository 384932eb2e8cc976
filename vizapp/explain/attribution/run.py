"""One call for every method: :func:`attribute`."""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from vizapp.core.errors import ModelError, OutOfMemory
from vizapp.core.jobs import CancelToken, Progress, no_progress
from vizapp.explain.attribution.base import Attribution, Forward, Run, display_map
from vizapp.explain.attribution.registry import METHODS, method_module
from vizapp.explain.targets import resolve_target
from vizapp.probing.probe import first_tensor

__all__ = ["attribute"]


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
        One of :data:`~vizapp.explain.attribution.registry.METHODS`.
    target : int or str, optional
        A class index or class name; the predicted class when ``None``.
    layer : str, optional
        Grad-CAM's layer (default :func:`~vizapp.explain.attribution.gradcam.default_cam_layer`).
    steps, internal_batch_size : int
        Integrated Gradients' path steps, evaluated ``internal_batch_size`` at a time
        so memory stays bounded whatever ``steps`` is.
    samples : int
        SmoothGrad's noisy samples (also batched by ``internal_batch_size``).
    seed : int
        SmoothGrad's noise seed (a generator of its own): the same call, the same map.
    """
    impl = method_module(method)
    if loaded.scripted:
        raise ModelError("a TorchScript model runs as a whole; attributions need the eager model (state dict + --arch)")
    pil = image.to_pil() if hasattr(image, "to_pil") else image
    x = loaded.preprocess.batch(pil)
    model = loaded.module
    was_training = model.training
    model.eval()
    start = time.perf_counter()
    try:
        xd = x.to(loaded.device)
        with torch.inference_mode():
            logits = first_tensor(model(xd)).float()
        chosen = resolve_target(loaded, logits.cpu(), target)
        prob = float(torch.softmax(logits[0], 0)[chosen])
        run = Run(loaded, x, xd, xd.clone().requires_grad_(True), chosen, layer=layer, steps=steps,
                  batch=internal_batch_size, samples=samples, seed=seed)
        run.forward = Forward(model, impl.passes(run), f"{METHODS[method]} for {loaded.label(chosen)}", progress, cancel)
        with torch.enable_grad():
            raw = impl.compute(run)
        if cancel is not None:
            cancel.check()
    except torch.OutOfMemoryError:
        raise OutOfMemory(f"out of {loaded.device} memory computing {METHODS[method]} for {loaded.title}; "
                          "switch the device to CPU") from None
    finally:
        model.train(was_training)
        model.zero_grad(set_to_none=True)
    notes = run.notes
    if isinstance(raw, torch.Tensor):
        raw = raw[0].detach().float().cpu().numpy()
    if raw.ndim == 2:  # a map on a layer's grid (Grad-CAM): up to the input's size
        up = F.interpolate(torch.from_numpy(raw)[None, None], size=x.shape[-2:], mode="bilinear", align_corners=False)
        heat = display_map(up[0, 0].numpy(), method)
    else:
        heat = display_map(raw, method)
        if not np.any(raw):
            notes.append(f"the attribution is zero everywhere: {loaded.label(chosen)}'s score does not depend on "
                         "the input here (a classifier head with all-zero weights does this)")
    if not loaded.trained:
        notes.append(f"{loaded.title} is UNTRAINED: this explains random weights")
    return Attribution(
        method=method, target=chosen, target_label=loaded.label(chosen), probability=prob, raw=raw, map=heat,
        display=loaded.preprocess.to_display(x), input=x.numpy(), layer=run.used_layer,
        seconds=time.perf_counter() - start, notes=notes,
    )

"""Which pixels made this prediction: Captum attributions for CNNs and ViTs, one module per method.

Every method is one call: :func:`attribute` ``(model, image, method, target) ->``
:class:`~vizapp.explain.attribution.base.Attribution`. The methods are Captum's (Saliency,
InputXGradient, IntegratedGradients, GuidedBackprop, Occlusion; SmoothGrad is NoiseTunnel's sum
over Saliency with its noise from a seeded generator of its own); Grad-CAM takes the layer
gradient and activation from Captum and weights the channels itself (see :mod:`.gradcam`).

This ``__init__`` is torch-free: the registry (:data:`METHODS`, in :mod:`.registry`) is read by
the CLI's help and by the Attribution view without importing torch. The API (``attribute``,
``Attribution``, ``display_map``, ``default_cam_layer``) is imported on first use.
"""

from __future__ import annotations

import importlib

from vizapp.explain.attribution.registry import METHODS, method_module

__all__ = ["METHODS", "Attribution", "attribute", "default_cam_layer", "display_map", "method_module"]

_LAZY = {"attribute": "run", "Attribution": "base", "display_map": "base", "default_cam_layer": "gradcam"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""The attribution methods, torch-free: key -> title, and where each one lives.

Each method is the module ``vizapp.explain.attribution.<key>``, which defines
``passes(run) -> int`` (the forward passes its progress bar counts) and
``compute(run)`` (the raw attribution; see :class:`~vizapp.explain.attribution.base.Run`).
A new method is that one module plus one line here.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from vizapp.core.errors import UserError

__all__ = ["METHODS", "method_module"]

#: Method key -> what the views call it, in the order the views show them.
METHODS = {
    "saliency": "Saliency",
    "input_x_gradient": "Input × Gradient",
    "integrated_gradients": "Integrated Gradients",
    "guided_backprop": "Guided Backprop",
    "occlusion": "Occlusion",
    "gradcam": "Grad-CAM",
    "smoothgrad": "SmoothGrad",
}


def method_module(key: str) -> ModuleType:
    """The module implementing method ``key``; an unknown key is a one-line :class:`UserError`."""
    if key not in METHODS:
        raise UserError(f"unknown attribution method '{key}'; choose one of {', '.join(METHODS)}")
    return importlib.import_module(f"{__package__}.{key}")

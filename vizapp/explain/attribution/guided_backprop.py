"""Guided Backprop (Springenberg et al. 2015): Captum's ``GuidedBackprop``, also over ``ReLU6``
(EfficientNet-Lite, MobileNet); a model without ReLU modules gets the plain gradient, and a note."""

from __future__ import annotations

import warnings

from torch import nn

from vizapp.explain.attribution.base import Run, activation_names


def passes(run: Run) -> int:
    return 1


def guided(forward):
    """Captum's GuidedBackprop over ``forward``, hooking ``ReLU6`` as well as ``ReLU``."""
    from captum.attr import GuidedBackprop
    from captum.attr._core import guided_backprop_deconvnet as gbd  # Captum's own hook helper

    class _Guided(GuidedBackprop):
        def _register_hooks(self, module: nn.Module) -> None:
            if isinstance(module, (nn.ReLU, nn.ReLU6)):
                self.backward_hooks.extend(gbd._register_backward_hook(module, self._backward_hook, self))

    return _Guided(forward)


def compute(run: Run):
    if not any(isinstance(m, (nn.ReLU, nn.ReLU6)) for m in run.model.modules()):
        run.notes.append(f"{run.loaded.title} has no ReLU modules (it uses {activation_names(run.model)}); "
                         "Guided Backprop equals the plain gradient here")
    with warnings.catch_warnings():  # Captum announces its (removed afterwards) hooks
        warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
        return guided(run.forward).attribute(run.xin, target=run.target)

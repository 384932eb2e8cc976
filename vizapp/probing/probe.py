"""Capture layer outputs with forward hooks, always removed afterwards.

Outputs are detached and cloned inside the hook: torchvision's ``ReLU(inplace=True)``
would otherwise overwrite what was captured.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from vizapp.core.errors import LayerError, ModelError

__all__ = ["Captured", "resolve_layers", "capture", "first_tensor"]


def first_tensor(output: object) -> torch.Tensor | None:
    """The tensor a module produced (the first one, for tuple/list/dict outputs)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        for item in output:
            found = first_tensor(item)
            if found is not None:
                return found
    if isinstance(output, dict):
        for item in output.values():
            found = first_tensor(item)
            if found is not None:
                return found
    return None


def resolve_layers(model: nn.Module, names: Iterable[str]) -> dict[str, nn.Module]:
    """Map ``named_modules()`` names to modules, with a helpful error for a wrong name."""
    if isinstance(model, torch.jit.ScriptModule):
        raise ModelError(
            "a TorchScript model runs as a whole and cannot capture layer outputs; "
            "load its state dict with --arch to see feature maps"
        )
    modules = dict(model.named_modules())
    found = {}
    for name in names:
        if name not in modules:
            close = [n for n in modules if name and name.split(".")[-1] in n][:5]
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise LayerError(
                f"layer '{name}' is not in the model.{hint} List the layers with: python main.py layers --model NAME"
            )
        found[name] = modules[name]
    return found


class Captured(dict):
    """``{layer name: output tensor}``, plus ``calls``: how often each layer ran.

    A module used twice in one forward pass (torchvision's ResNet blocks reuse their
    ReLU) keeps the output of its last call.
    """

    def __init__(self) -> None:
        super().__init__()
        self.calls: dict[str, int] = {}


@contextmanager
def capture(model: nn.Module, names: Iterable[str]) -> Iterator[Captured]:
    """Within the block, every forward pass stores each named layer's output.

    Yields a :class:`Captured` dict that fills as the model runs (detached clones, on
    the model's device). Hooks are removed when the block exits, even on error.
    """
    targets = resolve_layers(model, names)
    store = Captured()
    handles = []
    try:
        for name, module in targets.items():

            def hook(_module, _inputs, output, _name=name):
                tensor = first_tensor(output)
                if tensor is not None:
                    store[_name] = tensor.detach().clone()
                    store.calls[_name] = store.calls.get(_name, 0) + 1

            handles.append(module.register_forward_hook(hook))
        yield store
    finally:
        for handle in handles:
            handle.remove()

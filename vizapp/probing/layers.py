"""The layer table: every module with its type, output shape and parameter count."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from models import LoadedModel
from vizapp.probing.probe import first_tensor

__all__ = ["PASS_THROUGH", "LayerInfo", "layer_table", "conv_layers", "format_table"]

#: Module types whose output repeats their input or their last child's: no picture of their own.
PASS_THROUGH = frozenset({"Identity", "Dropout", "DropPath", "Sequential", "ModuleList", "StochasticDepth"})


@dataclass(frozen=True)
class LayerInfo:
    """One row of the table (``name`` is the ``named_modules()`` name; ``""`` is the model).

    ``params`` counts the module's parameters including its children; ``share`` is
    that count over the whole model's. ``run_order`` is when the module's forward
    pass finished (data-flow order: a block comes after its insides); ``None`` for a
    module the forward pass never called.
    """

    name: str
    type: str
    shape: tuple[int, ...] | None
    params: int
    share: float
    depth: int
    leaf: bool
    run_order: int | None = None

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "type": self.type,
            "output_shape": list(self.shape) if self.shape is not None else None,
            "params": self.params,
            "share": self.share,
        }


def layer_table(loaded: LoadedModel) -> list[LayerInfo]:
    """All modules in ``named_modules()`` order, output shapes for one input image."""
    model = loaded.module
    modules = list(model.named_modules())
    shapes: dict[str, tuple[int, ...]] = {}
    finished: dict[str, int] = {}
    if not loaded.scripted:
        handles = []
        try:
            for name, module in modules:

                def hook(_m, _i, out, _name=name):
                    t = first_tensor(out)
                    if t is not None:
                        shapes[_name] = tuple(t.shape[1:])
                    finished.setdefault(_name, len(finished))

                handles.append(module.register_forward_hook(hook))
            x = torch.zeros(1, loaded.preprocess.channels, loaded.input_size, loaded.input_size, device=loaded.device)
            was_training = model.training
            model.eval()
            try:
                with torch.inference_mode():
                    model(x)
            finally:
                model.train(was_training)
        finally:
            for h in handles:
                h.remove()
    total = max(1, sum(p.numel() for p in model.parameters()))
    rows = []
    for name, module in modules:
        n = sum(p.numel() for p in module.parameters())
        rows.append(
            LayerInfo(
                name=name,
                type=type(module).__name__ if not loaded.scripted else getattr(module, "original_name", "ScriptModule"),
                shape=shapes.get(name),
                params=n,
                share=n / total,
                depth=0 if not name else name.count(".") + 1,
                leaf=not any(True for _ in module.children()),
                run_order=finished.get(name),
            )
        )
    return rows


def conv_layers(loaded: LoadedModel) -> list[str]:
    """Names of the 2-D convolutions, in order (the first one is the RGB stem)."""
    return [n for n, m in loaded.module.named_modules() if isinstance(m, torch.nn.Conv2d)]


def format_table(rows: list[LayerInfo]) -> str:
    """The table as text, like the LeNet table in a lecture."""
    lines = [f"{'layer':<44} {'type':<22} {'output shape':<18} {'params':>12} {'share':>7}"]
    for r in rows:
        shape = "x".join(map(str, r.shape)) if r.shape else "-"
        name = ("  " * max(0, r.depth - 1) + r.name) if r.name else "(model)"
        lines.append(f"{name:<44} {r.type:<22} {shape:<18} {r.params:>12,} {100 * r.share:>6.2f}%")
    return "\n".join(lines)

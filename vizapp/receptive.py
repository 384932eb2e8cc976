"""Which input pixels a unit of a layer sees: its receptive field, as a box.

- ``analytic``: for a plain chain of convolutions and pools (AlexNet, VGG), the
  recurrence ``j_out = j * s``, ``r_out = r + (k - 1) * j``,
  ``start_out = start + ((k - 1) / 2 - p) * j`` over the modules that ran.
- ``gradient``: for any network (ResNet, EfficientNet): back-propagate a unit's
  activation to the input and take the box of pixels with a non-zero gradient (union
  over a few random inputs, so a ReLU or max-pool that blocks one path does not shrink it).
- ``token``: a ViT token's own patch on the grid (after the first block it sees the
  whole image; its patch is what the unit is anchored to).

Boxes are ``(x0, y0, x1, y1)`` in model-input pixels, half-open, clipped to the input.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from models import LoadedModel
from vizapp.jobs import CancelToken
from vizapp.probe import first_tensor, resolve_layers

__all__ = ["ChainField", "analytic_field", "gradient_boxes", "token_box", "unit_boxes"]

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class ChainField:
    """Receptive-field parameters of a layer reached through a chain of convs/pools."""

    jump: float  # input pixels between neighbouring units
    size: float  # receptive field side, in input pixels
    start: float  # centre of unit (0, 0), in input pixel coordinates
    input_size: int

    def box(self, y: int, x: int) -> Box:
        half = self.size / 2
        cy, cx = self.start + y * self.jump, self.start + x * self.jump
        n = self.input_size
        return (max(0.0, cx - half + 0.5), max(0.0, cy - half + 0.5), min(n, cx + half + 0.5), min(n, cy + half + 0.5))


class _Stop(Exception):  # noqa: N818 - control flow, never escapes this module
    pass


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def analytic_field(loaded: LoadedModel, layer: str) -> ChainField | None:
    """The analytic field if ``layer`` is reached through a plain chain, else ``None``.

    The chain is checked on a real forward pass: every leaf module that ran before
    the layer's output must take the previous leaf's output as its input, and every
    leaf other than a conv or pool must keep the spatial size.
    """
    model = loaded.module
    target = resolve_layers(model, [layer])[layer]
    leaves = [(n, m) for n, m in model.named_modules() if not any(True for _ in m.children())]
    ran: list[tuple[nn.Module, torch.Tensor, torch.Tensor]] = []
    handles = []
    target_out: list[torch.Tensor] = []

    def leaf_hook(module, inputs, output):
        x = first_tensor(inputs)
        y = first_tensor(output)
        if x is not None and y is not None:
            ran.append((module, x, y))

    def target_hook(_m, _i, output):
        target_out.append(first_tensor(output))
        raise _Stop

    params = [p for p in model.parameters() if p.requires_grad]
    try:
        for p in params:
            p.requires_grad_(False)  # only input-dependent paths stay in the autograd graph
        for _, m in leaves:
            handles.append(m.register_forward_hook(leaf_hook))
        handles.append(target.register_forward_hook(target_hook))
        n = loaded.input_size
        x = torch.zeros(1, loaded.preprocess.channels, n, n, device=loaded.device, requires_grad=True)
        with torch.enable_grad():
            try:
                model(x)
            except _Stop:
                pass
    finally:
        for h in handles:
            h.remove()
        for p in params:
            p.requires_grad_(True)
    if not target_out or target_out[0] is None or target_out[0].ndim != 4:
        return None
    if _branches(target_out[0]):
        return None
    jump, size, start = 1.0, 1.0, 0.0
    for module, x_in, y in ran:
        if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            k = _pair(module.kernel_size)[0]
            s = _pair(module.stride)[0] if module.stride is not None else k
            d = _pair(getattr(module, "dilation", 1))[0]
            p = module.padding
            if isinstance(p, str):
                p = 0 if p == "valid" else (d * (k - 1)) // 2
            p = _pair(p)[0]
            k_eff = d * (k - 1) + 1
            start = start + ((k_eff - 1) / 2 - p) * jump
            size = size + (k_eff - 1) * jump
            jump = jump * s
        elif x_in.ndim == 4 and x_in.shape[-2:] != y.shape[-2:]:
            return None  # something else changed the spatial size
    return ChainField(jump, size, start, loaded.input_size)


def _branches(output: torch.Tensor) -> bool:
    """Whether two input-dependent paths merge anywhere before ``output`` (a residual add)."""
    seen = set()
    stack = [output.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        parents = [f for f, _ in node.next_functions if f is not None]
        if len(parents) > 1:
            return True
        stack.extend(parents)
    return False


def gradient_boxes(
    loaded: LoadedModel, layer: str, positions: list[tuple[int, int]], samples: int = 2, chunk: int | None = None,
    seed: int = 0, cancel: CancelToken | None = None,
) -> dict[tuple[int, int], Box]:
    """Receptive-field boxes measured by back-propagation, for each ``(y, x)`` unit position.

    Each position gets ``samples`` random inputs in one batch of ``chunk`` positions
    (default: 16 on an accelerator, 1 on the CPU, where bigger batches are slower and
    their autograd graphs take gigabytes); the forward pass stops at ``layer``. The box
    covers every input pixel with a non-zero gradient.
    """
    model = loaded.module
    target = resolve_layers(model, [layer])[layer]
    n = loaded.input_size
    if chunk is None:
        chunk = 1 if torch.device(loaded.device).type == "cpu" else 16
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    boxes: dict[tuple[int, int], Box] = {}
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        for i in range(0, len(positions), chunk):
            if cancel is not None:
                cancel.check()
            part = positions[i : i + chunk]
            x = torch.randn(len(part) * samples, loaded.preprocess.channels, n, n, generator=generator).to(loaded.device).requires_grad_(True)
            captured: list[torch.Tensor] = []

            def hook(_m, _i, output, captured=captured):
                captured.append(first_tensor(output))
                raise _Stop

            handle = target.register_forward_hook(hook)
            try:
                with torch.enable_grad():
                    try:
                        model(x)
                    except _Stop:
                        pass
                    out = captured[0]
                    if out.ndim == 3:  # tokens: no spatial unit grid here
                        raise ValueError(f"{layer} has token outputs; use token boxes")
                    ys = torch.tensor([p[0] for p in part for _ in range(samples)], device=out.device)
                    xs = torch.tensor([p[1] for p in part for _ in range(samples)], device=out.device)
                    rows = torch.arange(out.shape[0], device=out.device)
                    out[rows, :, ys, xs].sum().backward()
            finally:
                handle.remove()
            grad = x.grad.detach().abs().sum(dim=1).reshape(len(part), samples, n, n).sum(dim=1) > 0
            for (y0, x0), mask in zip(part, grad.cpu(), strict=True):
                rows_hit = torch.nonzero(mask.any(dim=1)).flatten()
                cols_hit = torch.nonzero(mask.any(dim=0)).flatten()
                if rows_hit.numel() == 0:
                    boxes[(y0, x0)] = (0.0, 0.0, float(n), float(n))
                else:
                    boxes[(y0, x0)] = (float(cols_hit[0]), float(rows_hit[0]), float(cols_hit[-1] + 1), float(rows_hit[-1] + 1))
    finally:
        for p in params:
            p.requires_grad_(True)
        model.train(was_training)
    return boxes


def token_box(input_size: int, grid: int, y: int, x: int) -> Box:
    """The patch of token ``(y, x)`` on a ``grid x grid`` ViT patch grid."""
    p = input_size / grid
    return (x * p, y * p, (x + 1) * p, (y + 1) * p)


def unit_boxes(
    loaded: LoadedModel, layer: str, positions: list[tuple[int, int]], map_size: tuple[int, int], tokens: bool,
    cancel: CancelToken | None = None,
) -> tuple[dict[tuple[int, int], Box], str]:
    """Boxes for the given unit positions, and the method used."""
    unique = sorted(set(positions))
    if tokens:
        return {p: token_box(loaded.input_size, map_size[0], *p) for p in unique}, "token"
    field = analytic_field(loaded, layer)
    if field is not None:
        return {p: field.box(*p) for p in unique}, "analytic"
    return gradient_boxes(loaded, layer, unique, cancel=cancel), "gradient"



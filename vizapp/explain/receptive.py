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
from vizapp.core.jobs import CancelToken
from vizapp.probing.probe import first_tensor, resolve_layers

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
    seed: int = 0, cancel: CancelToken | None = None, separable: bool = True,
) -> dict[tuple[int, int], Box]:
    """Receptive-field boxes measured by back-propagation, for each ``(y, x)`` unit position.

    A unit's box covers every input pixel with a non-zero gradient of the unit (summed over
    channels), over ``samples`` random inputs of its own; the forward pass stops at ``layer``.
    Units go ``chunk`` at a time through one forward and one backward pass (default 16 on
    an accelerator, 1 on the CPU, where bigger batches are no faster per unit and their
    autograd graphs take gigabytes): each has its own inputs in the batch, and in eval mode
    a sample's input gradient depends on its own output only.

    With ``separable`` (the default), the box is measured on a few units only and put
    together: through convolutions, pools, element-wise ops and residual merges, a unit's
    field is a rectangle whose rows depend only on the unit's row and whose columns only on
    its column, and whose edges never move backwards as the unit moves forwards. So the
    rows of every needed row (columns of every needed column) are measured on a unit of that
    row (column), bisecting between measured ones: two rows with the same span have it for
    every row between them. One unit off the diagonal checks the rectangle rule, and every
    row or column measured twice must agree; any disagreement, an empty gradient or a span
    that moves backwards falls back to measuring every position (as ``separable=False``).
    On EfficientNet-Lite0's ``conv_head`` (7 x 7) that is 3 units instead of up to 49.
    """
    unique = sorted(set(positions))
    if not unique:
        return {}
    if chunk is None:
        chunk = 1 if torch.device(loaded.device).type == "cpu" else 16
    with _gradient_pass(loaded, layer) as measure:
        if separable and len(unique) > 1:
            boxes = _separable_boxes(measure, unique, samples, seed, cancel, per_pass=chunk)
            if boxes is not None:
                return boxes
        generator = torch.Generator().manual_seed(seed)
        boxes = {}
        for i in range(0, len(positions), chunk):
            if cancel is not None:
                cancel.check()
            part = positions[i : i + chunk]
            for unit, box in zip(part, measure(part, samples, generator), strict=True):
                boxes[unit] = box if box is not None else measure.whole
        return boxes


class _Measure:
    """``measure(units, samples, generator)``: one forward and backward pass for ``units``;
    each unit's box, or ``None`` where its gradient is zero everywhere."""

    def __init__(self, loaded: LoadedModel, layer: str, target: nn.Module) -> None:
        self.loaded, self.layer, self.target = loaded, layer, target
        n = loaded.input_size
        self.whole: Box = (0.0, 0.0, float(n), float(n))

    def __call__(self, units: list[tuple[int, int]], samples: int, generator: torch.Generator) -> list[Box | None]:
        loaded = self.loaded
        n = loaded.input_size
        x = torch.randn(len(units) * samples, loaded.preprocess.channels, n, n, generator=generator)
        x = x.to(loaded.device).requires_grad_(True)
        captured: list[torch.Tensor] = []

        def hook(_m, _i, output):
            captured.append(first_tensor(output))
            raise _Stop

        handle = self.target.register_forward_hook(hook)
        try:
            with torch.enable_grad():
                try:
                    loaded.module(x)
                except _Stop:
                    pass
                out = captured[0]
                if out.ndim == 3:  # tokens: no spatial unit grid here
                    raise ValueError(f"{self.layer} has token outputs; use token boxes")
                ys = torch.tensor([p[0] for p in units for _ in range(samples)], device=out.device)
                xs = torch.tensor([p[1] for p in units for _ in range(samples)], device=out.device)
                rows = torch.arange(out.shape[0], device=out.device)
                out[rows, :, ys, xs].sum().backward()
        finally:
            handle.remove()
        grad = x.grad.detach().abs().sum(dim=1).reshape(len(units), samples, n, n).sum(dim=1) > 0
        found: list[Box | None] = []
        for mask in grad.cpu():
            rows_hit = torch.nonzero(mask.any(dim=1)).flatten()
            cols_hit = torch.nonzero(mask.any(dim=0)).flatten()
            if rows_hit.numel() == 0:
                found.append(None)
            else:
                found.append((float(cols_hit[0]), float(rows_hit[0]), float(cols_hit[-1] + 1), float(rows_hit[-1] + 1)))
        return found


class _gradient_pass:  # noqa: N801 - used as a context manager, like a function
    """Eval mode and no parameter gradients for the duration; yields a :class:`_Measure`."""

    def __init__(self, loaded: LoadedModel, layer: str) -> None:
        self.loaded = loaded
        self.measure = _Measure(loaded, layer, resolve_layers(loaded.module, [layer])[layer])

    def __enter__(self) -> _Measure:
        model = self.loaded.module
        self.was_training = model.training
        model.eval()
        self.params = [p for p in model.parameters() if p.requires_grad]
        for p in self.params:
            p.requires_grad_(False)
        return self.measure

    def __exit__(self, *exc) -> None:
        for p in self.params:
            p.requires_grad_(True)
        self.loaded.module.train(self.was_training)


def _separable_boxes(
    measure: _Measure, unique: list[tuple[int, int]], samples: int, seed: int, cancel: CancelToken | None,
    per_pass: int,
) -> dict[tuple[int, int], Box] | None:
    """Boxes from row spans and column spans measured on few units (see :func:`gradient_boxes`);
    ``None`` where the network breaks the rectangle rule."""
    generator = torch.Generator().manual_seed(seed)
    rows = sorted({y for y, _ in unique})
    cols = sorted({x for _, x in unique})
    row_span: dict[int, tuple[float, float]] = {}
    col_span: dict[int, tuple[float, float]] = {}

    def record(spans: dict[int, tuple[float, float]], key: int, span: tuple[float, float]) -> bool:
        if key in spans and spans[key] != span:
            return False
        spans[key] = span
        return True

    def run(units: list[tuple[int, int]]) -> bool:
        for i in range(0, len(units), per_pass):
            if cancel is not None:
                cancel.check()
            part = units[i : i + per_pass]
            for (y, x), box in zip(part, measure(part, samples, generator), strict=True):
                if box is None:
                    return False
                if not (record(col_span, x, (box[0], box[2])) and record(row_span, y, (box[1], box[3]))):
                    return False
        return True

    # First pass: both ends of each axis, and one unit off the diagonal as a check.
    first = [(rows[0], cols[0]), (rows[-1], cols[-1])]
    check = (rows[-1], cols[0])
    units = sorted(set(first + [check]))
    if not run(units):
        return None
    row_todo = [(0, len(rows) - 1)] if len(rows) > 1 else []
    col_todo = [(0, len(cols) - 1)] if len(cols) > 1 else []

    def split(keys: list[int], spans: dict[int, tuple[float, float]], todo: list[tuple[int, int]]):
        """Fill intervals whose ends agree; return the midpoints to measure and the new intervals."""
        mids, later = [], []
        for a, b in todo:
            lo, hi = spans[keys[a]], spans[keys[b]]
            if lo[0] > hi[0] or lo[1] > hi[1]:
                return None
            if lo == hi:
                for j in range(a + 1, b):
                    spans[keys[j]] = lo
            elif b - a > 1:
                m = (a + b) // 2
                mids.append(keys[m])
                later += [(a, m), (m, b)]
        return mids, later

    while row_todo or col_todo:
        r = split(rows, row_span, row_todo)
        c = split(cols, col_span, col_todo)
        if r is None or c is None:
            return None
        (row_mids, row_todo), (col_mids, col_todo) = r, c
        if not row_mids and not col_mids:
            continue
        # Pair the rows and columns to measure; the shorter list is padded with measured ones
        # (a second measurement of a span is one more check).
        n = max(len(row_mids), len(col_mids))
        ys = row_mids + [rows[0]] * (n - len(row_mids))
        xs = col_mids + [cols[0]] * (n - len(col_mids))
        if not run(list(zip(ys, xs, strict=True))):
            return None
    for keys, spans in ((rows, row_span), (cols, col_span)):
        for a, b in zip(keys, keys[1:], strict=False):
            if spans[a][0] > spans[b][0] or spans[a][1] > spans[b][1]:
                return None
    return {(y, x): (col_span[x][0], row_span[y][0], col_span[x][1], row_span[y][1]) for y, x in unique}


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



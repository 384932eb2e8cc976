"""One convolution, step by step: the sliding window, multiply-and-sum, ReLU and a 2x2 pool.

:func:`convolve` runs the convolution with torch (``F.pad`` with zeros or reflect, then
``F.conv2d`` with the stride and dilation), so its ``output`` is exactly what the network
computes; :meth:`Convolution.window` and :meth:`Convolution.pool_window` re-do one output
pixel with numpy from the padded input, as the numbers the explainer shows (patch,
weights, products, the sum per input channel, the total with the bias).

:func:`explain` takes the input from a model: a layer's own input, captured with a forward
pre-hook on the image as the model's preprocessing makes it, and the layer's own filter for
one output channel (a depthwise or grouped conv's filter sees only its group's input
channels), or a classic kernel (:data:`CLASSIC`) on one channel or the grayscale image.

Torch is imported inside the functions that need it: :data:`CLASSIC`, :func:`classic_kernel`,
:func:`output_size` and the records are numpy only, so a menu or the CLI's help can read them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vizapp.core.errors import UserError

__all__ = [
    "CLASSIC",
    "ClassicKernel",
    "Convolution",
    "ConvolutionError",
    "PoolWindow",
    "Window",
    "classic_kernel",
    "classic_on_image",
    "classic_vs_learned",
    "conv_layers",
    "convolve",
    "effective_kernel",
    "explain",
    "grayscale",
    "output_size",
]

PADDING_MODES = ("zeros", "reflect")
POOLS = ("max", "avg")
KERNEL_SIZES = (3, 5)
#: ITU-R 601-2 luma, as Pillow's ``convert("L")``.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


class ConvolutionError(UserError):
    """A convolution setting that cannot work: names the setting and what to do."""


# --- the classic kernels (numpy only) -------------------------------------------------------


def _binomial(k: int) -> np.ndarray:
    row = np.array([1.0]) if k == 1 else np.array([1.0, 1.0])
    while len(row) < k:
        row = np.convolve(row, [1.0, 1.0])
    return row


def _derivative(k: int) -> np.ndarray:  # the central difference smoothed to k taps: [-1, 0, 1], [-1, -2, 0, 2, 1]
    return np.convolve(_binomial(k - 2), [-1.0, 0.0, 1.0])


def _identity(k: int) -> np.ndarray:
    out = np.zeros((k, k))
    out[k // 2, k // 2] = 1.0
    return out


def _box(k: int) -> np.ndarray:
    return np.full((k, k), 1.0 / (k * k))


def _gaussian(k: int) -> np.ndarray:
    b = _binomial(k)
    return np.outer(b, b) / b.sum() ** 2


def _sharpen(k: int) -> np.ndarray:
    if k == 3:
        return np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], dtype=np.float64)
    return 2 * _identity(k) - _gaussian(k)  # unsharp mask: the image plus (image - blur)


def _sobel_x(k: int) -> np.ndarray:
    return np.outer(_binomial(k), _derivative(k))


def _prewitt_x(k: int) -> np.ndarray:
    return np.outer(np.ones(k), np.arange(k) - k // 2)


def _laplacian(k: int) -> np.ndarray:
    if k == 3:
        return np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=np.float64)
    return np.array([[0, 0, 1, 0, 0], [0, 1, 2, 1, 0], [1, 2, -16, 2, 1], [0, 1, 2, 1, 0], [0, 0, 1, 0, 0]],
                    dtype=np.float64)


def _emboss(k: int) -> np.ndarray:
    i, j = np.indices((k, k))
    out = (i + j - (k - 1)) / (k // 2)  # -2 at the top left to 2 at the bottom right
    out[k // 2, k // 2] = 1.0
    return out


@dataclass(frozen=True)
class ClassicKernel:
    """A hand-designed filter: ``kernel(size)`` is its ``size x size`` float32 weights."""

    name: str
    title: str
    note: str
    make: Callable[[int], np.ndarray]

    def __call__(self, size: int = 3) -> np.ndarray:
        return classic_kernel(self.name, size)


def _transposed(make: Callable[[int], np.ndarray]) -> Callable[[int], np.ndarray]:
    return lambda k: make(k).T


#: The classic kernels by name, in menu order; ``CLASSIC[name](size)`` is a fresh ``K x K``
#: float32 array for ``K`` in :data:`KERNEL_SIZES`. Weights are as ``conv2d`` applies them
#: (cross-correlation, not flipped): ``sobel_x`` is positive where the image gets brighter
#: to the right.
CLASSIC: dict[str, ClassicKernel] = {
    k.name: k for k in (
        ClassicKernel("identity", "Identity", "returns the input", _identity),
        ClassicKernel("box", "Box blur", "the mean of the window", _box),
        ClassicKernel("gaussian", "Gaussian blur", "binomial weights, the centre counts most", _gaussian),
        ClassicKernel("sharpen", "Sharpen", "the pixel minus its neighbours: edges stand out", _sharpen),
        ClassicKernel("sobel_x", "Sobel x", "brightness change left to right (vertical edges)", _sobel_x),
        ClassicKernel("sobel_y", "Sobel y", "brightness change top to bottom (horizontal edges)",
                      _transposed(_sobel_x)),
        ClassicKernel("prewitt_x", "Prewitt x", "like Sobel x, without the centre weighting", _prewitt_x),
        ClassicKernel("prewitt_y", "Prewitt y", "like Sobel y, without the centre weighting",
                      _transposed(_prewitt_x)),
        ClassicKernel("laplacian", "Laplacian", "second derivative: edges in every direction, flat areas 0",
                      _laplacian),
        ClassicKernel("emboss", "Emboss", "a diagonal relief", _emboss),
    )
}


def classic_kernel(name: str, size: int = 3) -> np.ndarray:
    """The classic kernel ``name`` as a new ``size x size`` float32 array (``size`` 3 or 5)."""
    if name not in CLASSIC:
        raise ConvolutionError(f"kernel '{name}' is not a classic kernel; choose one of {', '.join(CLASSIC)}")
    if size not in KERNEL_SIZES:
        raise ConvolutionError(f"kernel size {size}: the classic kernels are 3x3 or 5x5")
    return np.ascontiguousarray(CLASSIC[name].make(size), dtype=np.float32)


# --- sizes -------------------------------------------------------------------------------------


def effective_kernel(kernel: int, dilation: int) -> int:
    """How many input pixels a dilated kernel spans: ``D(K - 1) + 1``."""
    return dilation * (kernel - 1) + 1


def output_size(size: int, kernel: int, padding: int, stride: int, dilation: int) -> int:
    """``floor((W + 2P - (D(K - 1) + 1)) / S) + 1``; a :class:`ConvolutionError` when below 1."""
    span = effective_kernel(kernel, dilation)
    out = (size + 2 * padding - span) // stride + 1
    if out < 1:
        raise ConvolutionError(
            f"padding {padding}, dilation {dilation}: a {kernel}x{kernel} kernel spanning {span} pixels does not fit "
            f"an input of {size} pixels padded to {size + 2 * padding}; raise the padding or lower the dilation")
    return out


def _check_settings(stride: int, padding: int, dilation: int, padding_mode: str, pool: str) -> None:
    for name, value, low in (("stride", stride, 1), ("padding", padding, 0), ("dilation", dilation, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ConvolutionError(f"{name} {value!r}: must be an integer >= {low}")
    if padding_mode not in PADDING_MODES:
        raise ConvolutionError(f"padding mode '{padding_mode}': choose zeros or reflect")
    if pool not in POOLS:
        raise ConvolutionError(f"pool '{pool}': choose max or avg")


# --- the records ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """One output position: the dilated patch it reads, the products and their sums."""

    i: int
    j: int
    rows: np.ndarray  # the K input rows it reads, in padded coordinates
    cols: np.ndarray  # the K input columns it reads, in padded coordinates
    patch: np.ndarray  # C x K x K
    products: np.ndarray  # C x K x K, patch * kernel
    channel_sums: np.ndarray  # C
    total: float  # channel_sums.sum() + bias == output[i, j]


@dataclass(frozen=True)
class PoolWindow:
    """One pooled pixel: the 2x2 ReLU values it reads (stride 2) and their max or mean."""

    i: int
    j: int
    rows: np.ndarray  # in relu-map coordinates
    cols: np.ndarray
    values: np.ndarray  # 2 x 2
    result: float  # == pooled[i, j]


@dataclass(frozen=True)
class Convolution:
    """One channel's convolution, its ReLU and its 2x2 pool, as plain numpy.

    ``output`` equals ``torch.nn.functional.conv2d`` of ``input`` with ``kernel`` (one output
    channel), ``bias`` and the settings; ``padded`` is the input with its padding, in which
    :class:`Window` rows and columns count. ``layer_params`` is the parameter count of the
    model layer the kernel came from (``K*K*C_in/groups*C_out`` plus ``C_out`` with a bias),
    ``None`` for a classic or user kernel; ``layer_shape`` is that layer's weight shape
    ``(C_out, C_in/groups, K, K)`` and ``layer_bias`` whether it has a bias.
    """

    input: np.ndarray
    kernel: np.ndarray
    bias: float
    stride: int
    padding: int
    padding_mode: str
    dilation: int
    padded: np.ndarray
    output: np.ndarray
    relu: np.ndarray
    pool: str
    pooled: np.ndarray
    input_name: str = ""
    kernel_name: str = ""
    layer_params: int | None = None
    layer_shape: tuple[int, int, int, int] | None = None
    layer_bias: bool = False
    notes: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        """The kernel's side ``K``."""
        return int(self.kernel.shape[-1])

    @property
    def channels(self) -> int:
        """The input channels the kernel sums over."""
        return int(self.kernel.shape[0])

    def window(self, i: int, j: int) -> Window:
        """Output pixel ``(i, j)`` re-done in numpy: its patch, products and sums."""
        h, w = self.output.shape
        if not (0 <= i < h and 0 <= j < w):
            raise IndexError(f"output position ({i}, {j}) is outside the {h} x {w} output")
        k, s, d = self.size, self.stride, self.dilation
        rows = i * s + d * np.arange(k)
        cols = j * s + d * np.arange(k)
        patch = self.padded[:, rows[:, None], cols[None, :]]
        products = patch * self.kernel
        channel_sums = products.sum(axis=(1, 2), dtype=np.float64)
        return Window(i, j, rows, cols, patch, products, channel_sums.astype(np.float32),
                      float(channel_sums.sum() + self.bias))

    def pool_window(self, i: int, j: int) -> PoolWindow:
        """Pooled pixel ``(i, j)``: the 2x2 ReLU values it reads and their max or mean."""
        h, w = self.pooled.shape
        if not (0 <= i < h and 0 <= j < w):
            raise IndexError(f"pooled position ({i}, {j}) is outside the {h} x {w} pooled map")
        rows, cols = np.arange(2 * i, 2 * i + 2), np.arange(2 * j, 2 * j + 2)
        values = self.relu[2 * i:2 * i + 2, 2 * j:2 * j + 2].copy()
        result = float(values.max() if self.pool == "max" else values.mean(dtype=np.float64))
        return PoolWindow(i, j, rows, cols, values, result)

    def formula(self) -> str:
        """The output size with the current numbers: ``floor((224 + 2*1 - 3) / 2) + 1 = 112``.

        The width's; the height's too when it differs. Under dilation the effective kernel
        ``D(K - 1) + 1`` is spelled out.
        """
        k, p, s, d = self.size, self.padding, self.stride, self.dilation
        span = effective_kernel(k, d)

        def one(size: int, out: int) -> str:
            return f"floor(({size} + 2*{p} - {span}) / {s}) + 1 = {out}"

        h, w = self.input.shape[-2:]
        oh, ow = self.output.shape
        text = one(w, ow) if (h, oh) == (w, ow) else f"width {one(w, ow)}; height {one(h, oh)}"
        if d > 1:
            text += f", effective kernel {d}*({k} - 1) + 1 = {span}"
        return text

    def params_formula(self) -> str:
        """The layer's parameter count with its numbers, ``3*3*3*32 = 864 (no bias)``; "" without a layer."""
        if self.layer_shape is None or self.layer_params is None:
            return ""
        c_out, c_in, kh, kw = self.layer_shape
        text = f"{kh}*{kw}*{c_in}*{c_out}"
        return f"{text} + {c_out} = {self.layer_params}" if self.layer_bias else f"{text} = {self.layer_params} (no bias)"


def _as_chw(array, what: str) -> np.ndarray:
    a = np.asarray(array, dtype=np.float32)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or 0 in a.shape:
        raise ConvolutionError(f"{what}: expected C x H x W numbers, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ConvolutionError(f"{what}: has values that are not finite numbers")
    return np.ascontiguousarray(a)


def convolve(input, kernel, bias: float = 0.0, *, stride: int = 1, padding: int = 0, padding_mode: str = "zeros",
             dilation: int = 1, pool: str = "max", input_name: str = "", kernel_name: str = "",
             layer_params: int | None = None, layer_shape: tuple[int, int, int, int] | None = None,
             layer_bias: bool = False, notes: tuple[str, ...] = ()) -> Convolution:
    """Convolve ``input`` (``C x H x W``, or ``H x W``) with ``kernel`` (``C x K x K``, or ``K x K``).

    Torch pads (``F.pad``: zeros, or reflect, which needs ``padding`` below the input's
    height and width) and convolves (``F.conv2d`` with ``stride`` and ``dilation``); the ReLU
    and the 2x2 stride-2 ``pool`` (``"max"`` or ``"avg"``, floor) follow. Bad settings raise a
    :class:`ConvolutionError` naming the setting.
    """
    import torch
    import torch.nn.functional as F

    _check_settings(stride, padding, dilation, padding_mode, pool)
    x = _as_chw(input, "input")
    w = _as_chw(kernel, "kernel")
    c, h, wd = x.shape
    if w.shape[1] != w.shape[2]:
        raise ConvolutionError(f"kernel: must be square, got {w.shape[1]} x {w.shape[2]}")
    if w.shape[0] != c:
        raise ConvolutionError(f"kernel: has {w.shape[0]} channel(s) but the input has {c}")
    k = w.shape[-1]
    if padding_mode == "reflect" and padding >= min(h, wd):
        raise ConvolutionError(f"padding {padding} with reflect needs an input larger than {padding} pixels "
                               f"(it is {h} x {wd}); lower the padding or pad with zeros")
    out_h = output_size(h, k, padding, stride, dilation)
    out_w = output_size(wd, k, padding, stride, dilation)
    bias = float(bias)
    with torch.inference_mode():
        t = torch.from_numpy(x)[None]
        if padding:
            t = F.pad(t, (padding,) * 4, mode="reflect" if padding_mode == "reflect" else "constant")
        out = F.conv2d(t, torch.from_numpy(w)[None], torch.tensor([bias], dtype=torch.float32),
                       stride=stride, dilation=dilation)[0, 0]
        padded = t[0].numpy().copy()
        output = out.numpy().copy()
    assert output.shape == (out_h, out_w), (output.shape, out_h, out_w)  # the formula is torch's
    relu = np.maximum(output, 0.0)
    ph, pw = out_h // 2, out_w // 2
    quads = relu[:2 * ph, :2 * pw].reshape(ph, 2, pw, 2)
    pooled = quads.max(axis=(1, 3)) if pool == "max" else quads.mean(axis=(1, 3), dtype=np.float64)
    return Convolution(
        input=x, kernel=w, bias=bias, stride=int(stride), padding=int(padding), padding_mode=padding_mode,
        dilation=int(dilation), padded=padded, output=output, relu=relu, pool=pool,
        pooled=np.ascontiguousarray(pooled, dtype=np.float32), input_name=input_name, kernel_name=kernel_name,
        layer_params=layer_params, layer_shape=layer_shape, layer_bias=layer_bias, notes=tuple(notes))


# --- from a model ---------------------------------------------------------------------------


def grayscale(image, size: int | None = None) -> np.ndarray:
    """``H x W`` float32 in [0, 1]: ``image`` (PIL, an ``ImageRecord`` or ``H x W x 3`` uint8) as luma.

    With ``size``, resized first (bilinear, antialiased) so its shorter side is ``size``.
    """
    from PIL import Image

    pil = _to_pil(image)
    if size is not None:
        w, h = pil.size
        scale = size / min(w, h)
        pil = pil.convert("RGB").resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)
    rgb = np.asarray(pil.convert("RGB"), dtype=np.float32) / 255.0
    return np.ascontiguousarray(rgb @ LUMA, dtype=np.float32)


def classic_on_image(image, kernel: str | None = None, *, kernel_size: int = 3, weights: np.ndarray | None = None,
                     size: int = 224, stride: int = 1, padding: int | None = None, padding_mode: str = "zeros",
                     dilation: int = 1, pool: str = "max") -> Convolution:
    """A classic kernel (or a ``K x K`` grid of ``weights``) on ``image`` without a model.

    The input is the image's luma in [0, 1], resized so its shorter side is ``size`` (not
    cropped); ``padding`` defaults to ``K // 2 * dilation``, which keeps the image's size at
    stride 1.
    """
    if (kernel is None) == (weights is None):
        raise ConvolutionError("give a classic kernel or a grid of weights")
    grid, name = _user_kernel(kernel, kernel_size, weights)
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ConvolutionError(f"size {size!r}: must be an integer >= 1")
    gray = grayscale(image, size)
    return convolve(gray, grid, 0.0, stride=stride,
                    padding=_same_padding(grid.shape[0], dilation) if padding is None else padding,
                    padding_mode=padding_mode, dilation=dilation, pool=pool,
                    input_name=f"image in grayscale [0, 1], shorter side {size}", kernel_name=name)


def _user_kernel(kernel: str | None, size: int, weights) -> tuple[np.ndarray, str]:
    """``(K x K float32, its name)``: the classic ``kernel`` at ``size``, or the ``weights`` grid."""
    if weights is None:
        return classic_kernel(kernel, size), kernel
    grid = np.asarray(weights, dtype=np.float32)
    if grid.ndim != 2 or grid.shape[0] != grid.shape[1] or grid.shape[0] < 1:
        raise ConvolutionError(f"weights: expected a square K x K grid, got shape {grid.shape}")
    return grid, f"custom {grid.shape[0]}x{grid.shape[0]}"


def _same_padding(k: int, dilation) -> int:
    """The padding that keeps the size at stride 1 (``dilation`` checked by :func:`convolve`)."""
    d = dilation if isinstance(dilation, (int, np.integer)) and not isinstance(dilation, bool) and dilation > 0 else 1
    return (k // 2) * int(d)


def _to_pil(image):
    from PIL import Image

    if hasattr(image, "to_pil"):
        return image.to_pil()
    if isinstance(image, np.ndarray):
        return Image.fromarray(image)
    return image


def conv_layers(model) -> list[str]:
    """The ``nn.Conv2d`` layers of ``model`` (a ``LoadedModel`` or a module), in ``named_modules()`` order.

    Grouped and depthwise convs are included: their filter has ``C_in / groups`` channels.
    """
    from torch import nn

    module = getattr(model, "module", model)
    return [name for name, m in module.named_modules() if isinstance(m, nn.Conv2d)]


def _conv(model, layer: str):
    from torch import nn

    from vizapp.probing.probe import resolve_layers

    conv = resolve_layers(model.module, [layer])[layer]
    if not isinstance(conv, nn.Conv2d):
        raise ConvolutionError(f"layer '{layer}' is a {type(conv).__name__}, not a Conv2d; "
                               "pick a convolution (see 'vizapp layers')")
    if type(conv).forward is not nn.Conv2d.forward:
        raise ConvolutionError(f"layer '{layer}' ({type(conv).__name__}) pads or changes its input in its own "
                               "forward; the explainer shows plain Conv2d layers")
    if conv.kernel_size[0] != conv.kernel_size[1]:
        raise ConvolutionError(f"layer '{layer}' has a {conv.kernel_size[0]}x{conv.kernel_size[1]} kernel; "
                               "the explainer shows square kernels")
    return conv


def _layer_settings(conv, layer: str) -> tuple[int, int, int, str]:
    """The layer's own ``(stride, padding, dilation, padding mode)`` as single integers."""
    k = conv.kernel_size[0]
    stride, dilation = conv.stride, conv.dilation
    padding = conv.padding
    if isinstance(padding, str):
        total = dilation[0] * (k - 1)
        padding = (0, 0) if padding == "valid" else (total // 2, total // 2)
        if conv.padding == "same" and (total % 2 or dilation[0] != dilation[1]):
            raise ConvolutionError(f"layer '{layer}' pads 'same' unevenly; the explainer pads every side alike")
    for name, pair in (("stride", stride), ("padding", padding), ("dilation", dilation)):
        if pair[0] != pair[1]:
            raise ConvolutionError(f"layer '{layer}' has a {name} of {pair[0]} x {pair[1]}; "
                                   "the explainer shows equal rows and columns")
    mode = conv.padding_mode if conv.padding_mode in PADDING_MODES else None
    if mode is None and padding[0]:
        raise ConvolutionError(f"layer '{layer}' pads in '{conv.padding_mode}' mode; the explainer pads with "
                               "zeros or reflect")
    return stride[0], padding[0], dilation[0], mode or "zeros"


class _Stop(Exception):  # noqa: N818 - control flow, never escapes this module
    pass


def _layer_input(model, conv, image) -> tuple[np.ndarray, bool]:
    """The input ``conv`` receives for ``image`` (``C x H x W`` float32) and whether it is the
    model's own input (the first conv sees the image as the preprocessing makes it).

    A forward pre-hook takes it and stops the pass there; modules in training mode run in
    eval mode for it and are put back.
    """
    import torch

    from vizapp.probing.inference import training_modules
    from vizapp.probing.probe import first_tensor

    x = model.preprocess.batch(_to_pil(image)).to(model.device)
    got: list = []

    def hook(_module, inputs):
        tensor = first_tensor(inputs)
        got.append((tensor.detach()[0].float().cpu().numpy().copy(), tensor is x))
        raise _Stop

    training = training_modules(model.module)
    handle = None
    try:
        if training:
            model.module.eval()
        handle = conv.register_forward_pre_hook(hook)
        with torch.inference_mode():
            try:
                model.module(x)
            except _Stop:
                pass
    finally:
        if handle is not None:
            handle.remove()
        for m in training:
            m.training = True
    if not got:
        raise ConvolutionError("the layer did not run for this image; pick a layer the forward pass uses")
    return got[0]


def _display_gray(model, image) -> np.ndarray:
    """The image as the model sees it (resized and cropped), as luma in [0, 1]."""
    pixels = model.preprocess.pixels(_to_pil(image)).permute(1, 2, 0).numpy()
    rgb = pixels.astype(np.float32) / 255.0
    return rgb[..., 0].copy() if rgb.shape[-1] == 1 else np.ascontiguousarray(rgb @ LUMA, dtype=np.float32)


def explain(model, image, layer: str, channel: int, *, input_channel: int | None = None, kernel: str | None = None,
            kernel_size: int = 3, weights: np.ndarray | None = None, stride: int | None = None,
            padding: int | None = None, padding_mode: str | None = None, dilation: int | None = None,
            pool: str = "max") -> Convolution:
    """Convolution ``layer`` of ``model`` (a ``LoadedModel``) on ``image`` for one output ``channel``.

    With neither ``kernel`` nor ``weights``: the layer's filter ``channel`` over its input
    (the layer's input captured with a forward pre-hook; a grouped conv's filter over its
    group's channels) with the layer's bias, and the layer's own stride, padding, padding
    mode and dilation unless given; ``output`` is then that channel of the layer's output.

    With ``kernel`` (a :data:`CLASSIC` name, ``kernel_size`` 3 or 5) or ``weights`` (a
    ``K x K`` grid): that kernel on one channel, ``input_channel`` of the layer's input, or,
    when ``input_channel`` is None, the image as the model sees it (resized and cropped) in
    grayscale in [0, 1]; stride 1, dilation 1 and ``K // 2 * dilation`` padding (the input's
    size) unless given, zeros padding.
    """
    conv = _conv(model, layer)
    c_out, c_in_g, k, _ = conv.weight.shape
    if isinstance(channel, bool) or not isinstance(channel, (int, np.integer)) or not 0 <= channel < c_out:
        raise ConvolutionError(f"channel {channel}: '{layer}' has {c_out} output channels (0 to {c_out - 1})")
    if kernel is not None and weights is not None:
        raise ConvolutionError("give a classic kernel or a grid of weights, not both")
    own_stride, own_padding, own_dilation, own_mode = _layer_settings(conv, layer)
    has_bias = conv.bias is not None
    params = int(conv.weight.numel() + (conv.bias.numel() if has_bias else 0))
    shape = (int(c_out), int(c_in_g), int(k), int(k))
    layer_info = {"layer_params": params, "layer_shape": shape, "layer_bias": has_bias}
    who = getattr(model, "name", "the model")
    if kernel is None and weights is None:
        data, is_image = _layer_input(model, conv, image)
        group = channel // (c_out // conv.groups)
        first = group * c_in_g
        data = data[first:first + c_in_g]
        if is_image:
            name = f"image as {who} sees it (normalised)"
        else:
            name = f"{layer} input"
        if conv.groups > 1:
            name += f", channel {first}" if c_in_g == 1 else f", channels {first} to {first + c_in_g - 1}"
        w = conv.weight[channel].detach().float().cpu().numpy()
        b = float(conv.bias[channel].detach().float().cpu()) if has_bias else 0.0
        return convolve(
            data, w, b,
            stride=own_stride if stride is None else stride,
            padding=own_padding if padding is None else padding,
            padding_mode=own_mode if padding_mode is None else padding_mode,
            dilation=own_dilation if dilation is None else dilation,
            pool=pool, input_name=name, kernel_name=f"{layer} filter {channel}", **layer_info)
    grid, kname = _user_kernel(kernel, kernel_size, weights)
    if input_channel is None:
        data = _display_gray(model, image)
        name = f"image as {who} sees it, grayscale in [0, 1]"
    else:
        full, is_image = _layer_input(model, conv, image)
        if isinstance(input_channel, bool) or not isinstance(input_channel, (int, np.integer)) \
                or not 0 <= input_channel < full.shape[0]:
            raise ConvolutionError(f"input channel {input_channel}: the input of '{layer}' has {full.shape[0]} "
                                   f"channels (0 to {full.shape[0] - 1})")
        data = full[input_channel]
        name = (f"image as {who} sees it (normalised), channel {input_channel}" if is_image
                else f"{layer} input, channel {input_channel}")
    d = 1 if dilation is None else dilation
    return convolve(
        data, grid, 0.0, stride=1 if stride is None else stride,
        padding=_same_padding(grid.shape[0], d) if padding is None else padding,
        padding_mode="zeros" if padding_mode is None else padding_mode, dilation=d, pool=pool,
        input_name=name, kernel_name=kname)


def classic_vs_learned(model, image, kernels=("sobel_x", "sobel_y", "laplacian", "gaussian", "sharpen", "emboss"),
                       count: int = 16) -> dict:
    """The classic filters on the grayscale image beside the first conv layer's learned maps.

    Returns ``{"image": H x W gray in [0, 1] (the image as the model sees it, resized and
    cropped), "classic": {name: H x W map} (3x3, stride 1, zero padding 1), "layer": the first
    conv that runs, "learned": count x h x w maps of its output (the raw convolution), most
    active first (largest mean absolute response), "learned_index": their channels,
    "kernels": count x C x K x K their filters}``.
    """
    import torch
    from torch import nn

    from vizapp.probing.inference import training_modules
    from vizapp.probing.probe import first_tensor

    gray = _display_gray(model, image)
    classic = {}
    for name in kernels:
        classic[name] = convolve(gray, classic_kernel(name, 3), padding=1).output
    module = model.module
    convs = [(n, m) for n, m in module.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ConvolutionError(f"{getattr(model, 'name', 'the model')} has no Conv2d layer to compare with")
    x = model.preprocess.batch(_to_pil(image)).to(model.device)
    found: list = []

    def hook(m, _inputs, output, _name=""):
        found.append((_name, m, first_tensor(output).detach()[0].float().cpu().numpy().copy()))
        raise _Stop

    handles = []
    training = training_modules(module)
    try:
        if training:
            module.eval()
        for n, m in convs:
            handles.append(m.register_forward_hook(lambda m, i, o, _n=n: hook(m, i, o, _n)))
        with torch.inference_mode():
            try:
                module(x)
            except _Stop:
                pass
    finally:
        for h in handles:
            h.remove()
        for m in training:
            m.training = True
    if not found:
        raise ConvolutionError(f"no Conv2d layer of {getattr(model, 'name', 'the model')} ran for this image")
    layer, conv, maps = found[0]
    order = np.argsort(-np.abs(maps).mean(axis=(1, 2)), kind="stable")[:count]
    return {
        "image": gray,
        "classic": classic,
        "layer": layer,
        "learned": np.ascontiguousarray(maps[order]),
        "learned_index": [int(i) for i in order],
        "kernels": conv.weight.detach().float().cpu().numpy()[order],
    }

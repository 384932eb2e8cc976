"""Feature visualisation by optimisation: an input image optimised to excite a unit.

What the lecture's papers did, for the user's own model:

- **Simonyan et al. 2014** (class model visualisation): raw pixels, gradient ascent, L2 decay;
- **Yosinski et al. 2015** (regularised optimisation): raw pixels with L2 decay, a Gaussian blur
  every few steps, clipping to the valid range, jitter;
- **Olah et al. 2017** ("Feature Visualization", Distill): a Fourier parametrisation with
  decorrelated colour and transformation robustness (pad, jitter, scale, rotate), a diversity
  term over a batch;
- **Mordvintsev et al. 2015** (DeepDream): the L2 norm of a layer, from an image, octave by octave.

The Fourier image, the colour-decorrelation matrix, the transformation list and the diversity
term follow Lucent (``torch-lucent``, Apache-2.0, a port of Lucid; the constants below are its
``color_correlation_svd_sqrt`` and the ``fft_image`` spectrum scale); the library itself is not
used (see ``docs/ARCHITECTURE.md``). Every random draw comes from the run's own
``torch.Generator(seed)``: the same seed and settings give a bit-identical image on the same
device, whatever other threads do with torch's global generator.

The shared model is never changed: gradients are taken with ``torch.autograd.grad`` with
respect to the image's parameters only, a model in training mode runs in eval mode for each
step and gets its modes back, and the one forward hook is registered around each forward pass
and removed in ``finally`` (it stops the pass at the target layer, so a channel of an early
layer costs only the layers up to it).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Generator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from vizapp.core.errors import LayerError, ModelError, UserError
from vizapp.core.jobs import CancelToken, Progress, no_progress
from vizapp.explain.featurevis_settings import (
    CLASS_SCORES,
    MAX_SIZE,
    MAX_STEPS,
    METHODS,
    MIN_SIZE,
    OBJECTIVES,
    PRESET_NAMES,
    PRESET_SIDE,
    PRESETS,
    Settings,
    preset,
)

__all__ = ["CLASS_SCORES", "LR", "MAX_SIZE", "MAX_STEPS", "METHODS", "MIN_SIZE", "OBJECTIVES", "PRESETS",
           "PRESET_NAMES", "PRESET_SIDE", "Settings", "Step", "Visualisation", "activation", "gaussian_blur",
           "preset", "run", "to_uint8", "transform", "visualize"]

#: Default learning rates: Adam on the spectrum (Lucent's 0.05); normalised gradient ascent on
#: pixels in [0, 1] (each step moves a pixel by ``lr`` on average).
LR = {"fourier": 0.05, "pixel": 0.01}

# Lucent's colour_correlation_svd_sqrt (lucent/optvis/param/color.py, Apache-2.0): the square
# root of ImageNet's colour covariance, normalised by its largest column norm.
_COLOR = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
_COLOR = _COLOR / _COLOR.norm(dim=0).max()


@dataclass(frozen=True)
class Step:
    """One optimisation step: what :func:`visualize` yields."""

    step: int
    steps: int
    objective: float
    preview: np.ndarray | None = None


@dataclass(frozen=True)
class Visualisation:
    """The result: ``images`` are ``B x H x W x 3`` uint8 display pixels (before the model's
    normalisation); ``trace`` the objective per step (as maximised); ``pixel_range`` the optimised
    pixels' least and greatest value before they were clipped to uint8 (outside [0, 1]: the
    pixel method ran without ``clip``)."""

    images: np.ndarray
    trace: np.ndarray
    settings: Settings
    model: str
    description: str
    pixel_range: tuple[float, float] = (0.0, 1.0)  # the optimised pixels' min and max (display units, 1 = white)

    @property
    def image(self) -> np.ndarray:
        return self.images[0]


# --- image parametrisations ------------------------------------------------------------------


class _Fourier:
    """Lucent's ``fft_image``: a spectrum scaled by 1/frequency, inverse FFT, colour decorrelated,
    squashed by a sigmoid into [0, 1]. Adam on the spectrum."""

    def __init__(self, batch: int, channels: int, side: int, g: torch.Generator, device, decorrelate: bool,
                 lr: float, decay: float = 1.0, sd: float = 0.01) -> None:
        fy = torch.fft.fftfreq(side)[:, None]
        fx = torch.fft.rfftfreq(side)[None]
        freq = (fx ** 2 + fy ** 2).sqrt()
        self.scale = (1.0 / freq.clamp(min=1.0 / side) ** decay)[None, None].to(device)
        init = torch.randn(batch, channels, side, side // 2 + 1, 2, generator=g) * sd
        self.spec = init.to(device).requires_grad_(True)
        self.side = side
        self.color = _COLOR.to(device) if decorrelate and channels == 3 else None
        self.opt = torch.optim.Adam([self.spec], lr=lr)

    @property
    def leaf(self) -> torch.Tensor:
        return self.spec

    def image(self) -> torch.Tensor:
        x = torch.fft.irfft2(torch.view_as_complex(self.spec) * self.scale, s=(self.side, self.side), norm="ortho") / 4
        if self.color is not None:
            x = torch.einsum("bchw,dc->bdhw", x, self.color)
        return torch.sigmoid(x)

    def ascend(self, grad: torch.Tensor, step: int) -> None:  # noqa: ARG002
        self.spec.grad = -grad  # Adam minimises
        self.opt.step()
        self.spec.grad = None


class _Pixels:
    """Raw pixels in [0, 1] (display units): normalised gradient ascent (each step moves a pixel by
    ``lr`` on average), then L2 decay towards mid-grey, a Gaussian blur every ``blur_every`` steps
    and clipping to [0, 1] as the settings ask."""

    def __init__(self, start: torch.Tensor, s: Settings, lr: float) -> None:
        self.x = start.detach().clone()
        self.s = s
        self.lr = lr
        self.var: torch.Tensor | None = None

    @property
    def leaf(self) -> torch.Tensor:
        self.var = self.x.detach().requires_grad_(True)
        return self.var

    def image(self) -> torch.Tensor:
        return self.var if self.var is not None else self.x

    def ascend(self, grad: torch.Tensor, step: int) -> None:
        s = self.s
        with torch.no_grad():
            norm = grad.abs().mean(dim=(1, 2, 3), keepdim=True).clamp(min=1e-12)
            x = self.x + self.lr * grad / norm
            if s.l2:
                x = 0.5 + (1.0 - s.l2) * (x - 0.5)
            if s.blur_every and (step + 1) % s.blur_every == 0:
                x = gaussian_blur(x, s.blur_sigma)
            if s.clip:
                x = x.clamp(0.0, 1.0)
        self.x = x
        self.var = None


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """``x`` (``B x C x H x W``) blurred by a Gaussian of ``sigma`` pixels, reflected at the edges."""
    if sigma <= 0:
        return x
    radius = max(1, min(int(math.ceil(3 * sigma)), min(x.shape[-2:]) - 1))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    x = F.pad(x, [radius] * 4, mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


# --- transformation robustness ----------------------------------------------------------------


def _draw(g: torch.Generator, lo: int, hi: int) -> int:
    """An integer in ``[lo, hi]`` from ``g``."""
    return int(torch.randint(lo, hi + 1, (1,), generator=g).item())


def transform(x: torch.Tensor, s: Settings, g: torch.Generator, out: int) -> torch.Tensor:
    """Lucent's standard transforms, scaled by ``s.jitter``, as ``out`` x ``out`` images: pad by
    1.5 x jitter with grey, shift by up to ``jitter`` px, a random scale (one of ``s.scales``) and
    rotation (up to ``s.rotate`` degrees), shift by up to half the jitter, resize to ``out``.

    One ``grid_sample``: the five steps compose to one affine map from the output to the image
    (grey outside it), so the step costs one bilinear resampling rather than five copies.
    """
    j = s.jitter
    if not (j or s.scales or s.rotate):
        if x.shape[-1] == out and x.shape[-2] == out:
            return x
        return F.interpolate(x, size=(out, out), mode="bilinear", align_corners=False)
    side = x.shape[-1]
    canvas = side + 2 * (j + (j + 1) // 2 if j else 0)
    first = (_draw(g, -j, j), _draw(g, -j, j)) if j else (0, 0)  # (dx, dy) in canvas pixels
    scale = s.scales[_draw(g, 0, len(s.scales) - 1)] if s.scales else 1.0
    angle = math.radians(float(torch.rand(1, generator=g).item() * 2 - 1) * s.rotate) if s.rotate else 0.0
    half = j // 2
    second = (_draw(g, -half, half), _draw(g, -half, half)) if half else (0, 0)
    # Output coordinates v (normalised, [-1, 1]) -> canvas: undo the second shift t2, the
    # rotation/scale A, the first shift t1; canvas -> image: divide by the image's share of it.
    c, sn = math.cos(angle) / scale, math.sin(angle) / scale
    a = np.array([[c, -sn], [sn, c]])
    t1 = 2.0 * np.array(first, float) / canvas
    t2 = 2.0 * np.array(second, float) / canvas
    share = side / canvas
    theta = np.concatenate([a / share, (-(a @ t2) - t1)[:, None] / share], axis=1)
    theta_t = torch.tensor(theta, dtype=x.dtype, device=x.device).expand(x.shape[0], 2, 3)
    grid = F.affine_grid(theta_t, [x.shape[0], x.shape[1], out, out], align_corners=False)
    return F.grid_sample(x - 0.5, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + 0.5


# --- the model side ---------------------------------------------------------------------------


class _Stop(Exception):  # noqa: N818 - control flow: the target layer was reached
    pass


def _training_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    from vizapp.probing.inference import training_modules

    return training_modules(model)


def has_classifier(model, logits: torch.Tensor) -> bool:
    from vizapp.probing.inference import has_classifier as classifier

    return classifier(model, logits)


class _Probe:
    """Runs the model on a normalised batch and returns the target layer's output (with its
    graph) and, when asked, the logits. The forward hook lives only inside :meth:`__call__`,
    acts only on this thread's pass, and stops the pass at the layer unless the logits are needed."""

    def __init__(self, loaded, layer: str | None) -> None:
        from vizapp.probing.probe import resolve_layers

        self.loaded = loaded
        self.model = loaded.module
        self.layer = layer
        self.module = resolve_layers(self.model, [layer])[layer] if layer else None
        pre = loaded.preprocess
        self.mean = torch.tensor(pre.mean, dtype=torch.float32).view(1, -1, 1, 1).to(loaded.device)
        self.std = torch.tensor(pre.std, dtype=torch.float32).view(1, -1, 1, 1).to(loaded.device)
        self._maps_index: torch.Tensor | None = None

    def __call__(self, pixels: torch.Tensor, logits: bool) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        from vizapp.probing.probe import first_tensor

        x = (pixels - self.mean) / self.std
        store: dict[str, torch.Tensor] = {}
        me = threading.get_ident()

        def hook(_module, _inputs, output):
            if threading.get_ident() != me:
                return
            store["act"] = first_tensor(output)
            if not logits:
                raise _Stop

        handle = self.module.register_forward_hook(hook) if self.module is not None else None
        training = _training_modules(self.model)
        for module in training:
            module.training = False
        out = None
        try:
            out = self.model(x)
        except _Stop:
            pass
        except torch.OutOfMemoryError:
            raise ModelError(f"out of {self.loaded.device} memory visualising {self.loaded.title}; "
                             "use a smaller size or batch, or switch the device to CPU") from None
        finally:
            if handle is not None:
                handle.remove()
            for module in training:
                module.training = True
        if self.module is not None and "act" not in store:
            raise LayerError(f"layer '{self.layer}' produced no tensor output; pick another layer")
        return store.get("act"), (first_tensor(out) if logits else None)

    def maps(self, act: torch.Tensor) -> torch.Tensor:
        """``B x C x H x W``: the layer's output as channel maps, as
        :func:`vizapp.probing.mosaic.as_channel_maps` lays out one image's (tokens -> embedding
        dims over the patch grid; channels-last transposed)."""
        from vizapp.probing.mosaic import as_channel_maps

        b = act.shape[0]
        if self._maps_index is None or self._shape != tuple(act.shape[1:]):
            shape = tuple(act.shape[1:])
            index = as_channel_maps(np.arange(int(np.prod(shape))).reshape(shape))
            self._shape = shape
            self._maps_index = torch.from_numpy(np.ascontiguousarray(index)).to(act.device)
        idx = self._maps_index
        flat = act.reshape(b, -1)
        return flat[:, idx.reshape(-1)].reshape(b, *idx.shape)


def _diversity(act: torch.Tensor) -> torch.Tensor:
    """Lucent's diversity term: the mean cosine similarity of each pair of the batch's Gram
    matrices over the layer's channels (higher: more alike)."""
    b = act.shape[0]
    if b < 2:
        return act.new_zeros(())
    flat = act.reshape(b, act.shape[1], -1)
    grams = flat @ flat.transpose(1, 2)
    grams = F.normalize(grams.reshape(b, -1), p=2, dim=1)
    sim = grams @ grams.T
    return (sim.sum() - sim.diagonal().sum()) / b


# --- settings ---------------------------------------------------------------------------------


def _per_item(value, batch: int, what: str) -> tuple[list[int] | None, int]:
    """A per-image list from an int or a tuple, and the batch it implies."""
    if value is None:
        return None, batch
    if isinstance(value, (tuple, list)):
        items = [int(v) for v in value]
        if not items:
            raise UserError(f"{what}: give at least one value")
        if batch not in (1, len(items)):
            raise UserError(f"{what}: {len(items)} values for a batch of {batch}; give one per image")
        return items, len(items)
    return [int(value)] * batch, batch


def _check(model, s: Settings) -> Settings:
    if s.objective not in OBJECTIVES:
        raise UserError(f"objective '{s.objective}' is not one of: {', '.join(OBJECTIVES)}")
    if s.method not in METHODS:
        raise UserError(f"method '{s.method}' is not one of: {', '.join(METHODS)}")
    if s.class_score not in CLASS_SCORES:
        raise UserError(f"class_score '{s.class_score}' is not one of: {', '.join(CLASS_SCORES)}")
    if not 1 <= s.steps <= MAX_STEPS:
        raise UserError(f"steps: {s.steps} is out of range; give 1 to {MAX_STEPS}")
    if s.size is not None and not MIN_SIZE <= s.size <= MAX_SIZE:
        raise UserError(f"size: {s.size} px is out of range; give {MIN_SIZE} to {MAX_SIZE}")
    if s.batch < 1:
        raise UserError(f"batch: {s.batch}; give 1 or more images")
    if s.octaves < 1 or s.octave_scale <= 1.0:
        raise UserError("octaves: give 1 or more octaves and an octave_scale above 1")
    if s.octaves > 1 and s.method != "pixel":
        raise UserError("octaves: DeepDream's octaves optimise pixels; use method 'pixel'")
    if s.lr is not None and not (s.lr > 0 and math.isfinite(s.lr)):
        raise UserError(f"lr: {s.lr}; give a positive learning rate")
    if s.jitter < 0 or s.rotate < 0 or s.l2 < 0 or s.l2 >= 1 or s.blur_every < 0 or s.diversity < 0:
        raise UserError("jitter, rotate, diversity, blur_every: give values >= 0; l2: from 0 to below 1")
    if any(not (v > 0 and math.isfinite(v)) for v in s.scales):
        raise UserError(f"scales: {s.scales}; give positive factors such as (0.95, 1, 1.05)")
    if s.preview_every < 0:
        raise UserError("preview_every: give 0 (only at the end) or more steps")
    if s.objective == "class":
        if s.target is None:
            raise UserError("target: the class objective needs a class index")
        if s.diversity and not s.layer:
            raise UserError("diversity: the class objective needs a layer to compare the images at")
    else:
        if not s.layer:
            raise UserError(f"layer: the {s.objective} objective needs a layer (see 'vizapp layers')")
        if s.objective in ("channel", "neuron") and s.channel is None:
            raise UserError(f"channel: the {s.objective} objective needs a channel index")
    if model.scripted and s.layer:
        raise ModelError("a TorchScript model runs as a whole; only the class objective (no layer) works on it")
    return s


def _describe(s: Settings, model) -> str:
    def many(v, label):
        if isinstance(v, (tuple, list)):
            return f"{label}{'es' if label.endswith('s') else 's'} {', '.join(str(i) for i in v)}"
        return f"{label} {v}"

    if s.objective == "class":
        t = s.target
        text = f"class {model.label(t)} ({t})" if isinstance(t, int) else many(t, "class")
    elif s.objective == "dream":
        text = f"DeepDream of {s.layer}"
    elif s.objective == "neuron":
        text = f"{s.layer} {many(s.channel, 'channel')} at {s.neuron if s.neuron else 'the centre'}"
    else:
        text = f"{s.layer} {many(s.channel, 'channel')}"
    if s.negative:
        text = "negative " + text
    return text + (f" ({s.name})" if s.name else "")


def _to_pil(image):
    from PIL import Image

    if hasattr(image, "to_pil"):
        return image.to_pil()
    if isinstance(image, np.ndarray):
        return Image.fromarray(np.asarray(image, np.uint8))
    return image


def _start_pixels(loaded, image, side: int) -> torch.Tensor:
    """``1 x C x side x side`` in [0, 1]: ``image`` as the model's preprocessing crops it."""
    pixels = loaded.preprocess.pixels(_to_pil(image)).float().div_(255.0)[None]
    if pixels.shape[-1] != side:
        pixels = F.interpolate(pixels, size=(side, side), mode="bilinear", align_corners=False, antialias=True)
    return pixels


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """``B x H x W x 3`` uint8 from ``B x C x H x W`` in [0, 1] (grey shown as RGB)."""
    x = x.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return x.permute(0, 2, 3, 1).contiguous().numpy()


# --- the job ----------------------------------------------------------------------------------


def visualize(model, settings: Settings, image=None, *, progress: Progress = no_progress,
              cancel: CancelToken | None = None) -> Generator[Step, None, Visualisation]:
    """Optimise an image for ``settings``'s objective on ``model`` (a ``LoadedModel``).

    A generator: yields a :class:`Step` per step (a ``B x H x W x 3`` uint8 preview every
    ``preview_every`` steps and at the last one) and returns a :class:`Visualisation`.
    ``image`` (PIL, an ``ImageRecord`` or ``H x W x 3`` uint8) is the start for
    ``method='pixel'`` (DeepDream's image); the Fourier parametrisation starts from noise and
    ignores it. ``cancel`` is polled every step (:class:`~vizapp.core.errors.Cancelled`).
    """
    s = _check(model, settings)
    channels, batch = _per_item(s.channel, s.batch, "channel")
    targets, batch = _per_item(s.target, batch, "target")
    if channels is not None and targets is not None and len(channels) != len(targets):
        raise UserError("channel and target: give as many of each")
    side = s.size or model.input_size
    probe = _Probe(model, s.layer if s.objective != "class" or s.diversity else None)
    device = model.device
    n_in = model.preprocess.channels
    g = torch.Generator().manual_seed(int(s.seed))
    lr = s.lr if s.lr is not None else LR[s.method]
    # The class objective needs the whole model at its own input size; so does a ViT (its
    # position embedding); a CNN's layer takes the image at any size.
    fixed = s.objective == "class" or model.kind == "vit"
    total = s.steps * (s.octaves if s.method == "pixel" else 1)
    octave_sides = [side] if s.method != "pixel" else [
        max(MIN_SIZE, round(side / s.octave_scale ** (s.octaves - 1 - o))) for o in range(s.octaves)]

    if s.method == "pixel":
        if image is not None:
            base = _start_pixels(model, image, side).expand(batch, -1, -1, -1).contiguous()
        else:
            base = 0.5 + 0.05 * torch.randn(batch, n_in, side, side, generator=g)
        base = base.to(device)
    trace: list[float] = []
    label_index = torch.tensor(targets, device=device) if targets is not None else None
    chan_index = torch.tensor(channels, device=device) if channels is not None else None
    rows = torch.arange(batch, device=device)
    checked = False

    def score(pixels: torch.Tensor) -> tuple[torch.Tensor, float]:
        nonlocal checked
        feed = transform(pixels, s, g, model.input_size if fixed else pixels.shape[-1])
        if fixed and feed.shape[-1] != model.input_size:
            feed = F.interpolate(feed, size=(model.input_size,) * 2, mode="bilinear", align_corners=False)
        act, logits = probe(feed, logits=s.objective == "class")
        if s.objective == "class":
            if logits is None or not has_classifier(model, logits):
                raise ModelError(f"{model.title} has no classifier head; pick a channel objective")
            if not checked and int(label_index.max()) >= logits.shape[1]:
                raise UserError(f"target: class {int(label_index.max())} is out of range; "
                                f"{model.title} has {logits.shape[1]} classes (0 to {logits.shape[1] - 1})")
            z = logits.float()
            values = (torch.log_softmax(z, 1) if s.class_score == "log_softmax" else z)[rows, label_index]
        elif s.objective == "dream":
            values = (act.float() ** 2).reshape(batch, -1).mean(1)
        else:
            maps = probe.maps(act).float()
            if not checked and int(chan_index.max()) >= maps.shape[1]:
                raise UserError(f"channel: {int(chan_index.max())} is out of range; "
                                f"{s.layer} has {maps.shape[1]} channels (0 to {maps.shape[1] - 1})")
            if s.objective == "channel":
                values = maps[rows, chan_index].mean((1, 2))
            else:
                h, w = maps.shape[-2:]
                y, x = s.neuron if s.neuron is not None else (h // 2, w // 2)
                if not checked and not (0 <= y < h and 0 <= x < w):
                    raise UserError(f"neuron: ({y}, {x}) is outside {s.layer}'s {h} x {w} maps")
                values = maps[rows, chan_index, y, x]
        checked = True
        if s.negative:
            values = -values
        total_score = values.sum()
        if s.diversity and batch > 1:
            total_score = total_score - s.diversity * batch * _diversity(act.float())
        return total_score, float(values.detach().mean())

    def climb(param, pixels) -> Generator[Step, None, None]:
        """``s.steps`` steps of gradient ascent on ``param``, a :class:`Step` each (with
        ``pixels()`` as its preview every ``s.preview_every`` steps and at the end)."""
        for i in range(s.steps):
            if cancel is not None:
                cancel.check()
            with torch.enable_grad():  # also on a thread that runs under no_grad
                leaf = param.leaf
                total_score, value = score(param.image())
                (grad,) = torch.autograd.grad(total_score, [leaf])
            param.ascend(grad, i)
            trace.append(value)
            done = len(trace)
            progress(done, total, f"step {done}/{total}: objective {value:.4g}")
            shown = None
            if done == total or (s.preview_every and (i + 1) % s.preview_every == 0):
                with torch.no_grad():
                    shown = to_uint8(pixels())
            yield Step(done, total, value, shown)

    if s.method == "fourier":
        param = _Fourier(batch, n_in, side, g, device, s.decorrelate and n_in == 3, lr)
        yield from climb(param, param.image)
        with torch.no_grad():
            final = param.image()
    else:
        detail = torch.zeros_like(base[:, :, :octave_sides[0], :octave_sides[0]])
        for o_side in octave_sides:
            octave_base = base if o_side == side else F.interpolate(
                base, size=(o_side, o_side), mode="bilinear", align_corners=False, antialias=True)
            if detail.shape[-1] != o_side:
                detail = F.interpolate(detail, size=(o_side, o_side), mode="bilinear", align_corners=False)
            param = _Pixels(octave_base + detail, s, lr)
            yield from climb(param, lambda p=param: p.x)
            detail = param.x - octave_base
        final = param.x
    images = to_uint8(final)
    return Visualisation(images=images, trace=np.asarray(trace, np.float32), settings=s, model=model.title,
                         description=_describe(s, model), pixel_range=(float(final.min()), float(final.max())))


def run(model, settings: Settings, image=None, *, progress: Progress = no_progress,
        cancel: CancelToken | None = None) -> Visualisation:
    """:func:`visualize` to the end; its :class:`Visualisation`."""
    gen = visualize(model, settings, image, progress=progress, cancel=cancel)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


def activation(model, images: np.ndarray, layer: str, channel: int) -> np.ndarray:
    """``B`` floats: the mean activation of ``channel`` at ``layer`` for each of ``images``
    (``B x H x W x 3`` uint8, or a list of them / PIL images). An image already at the model's
    input size is normalised as is; any other goes through the model's preprocessing (resize,
    centre crop) first. ViT tokens are read as :func:`~vizapp.probing.mosaic.as_channel_maps`
    lays them out."""
    batch = []
    side = model.input_size
    for im in (images if not isinstance(images, np.ndarray) or images.ndim == 4 else [images]):
        arr = np.asarray(im) if not hasattr(im, "size") or isinstance(im, np.ndarray) else None
        if arr is not None and arr.ndim == 3 and arr.shape[0] == arr.shape[1] == side:
            x = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).float() / 255.0
            if model.preprocess.channels == 1:
                x = (x * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(0, keepdim=True)
        else:
            x = model.preprocess.pixels(_to_pil(im)).float() / 255.0
        batch.append(x)
    probe = _Probe(model, layer)
    with torch.no_grad():
        act, _ = probe(torch.stack(batch).to(model.device), logits=False)
        maps = probe.maps(act).float()
    if not 0 <= channel < maps.shape[1]:
        raise UserError(f"channel: {channel} is out of range; {layer} has {maps.shape[1]} channels")
    return maps[:, channel].mean((1, 2)).cpu().numpy().astype(np.float64)

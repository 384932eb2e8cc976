"""The settings of a feature visualisation (:mod:`vizapp.explain.featurevis`), torch-free: the
objectives and methods, :class:`Settings`, the presets named after the papers and :func:`preset`.

Kept apart from the optimiser so the command line's help and the views read them without
importing torch; :mod:`vizapp.explain.featurevis` re-exports every name.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from vizapp.core.errors import UserError

__all__ = ["CLASS_SCORES", "MAX_SIZE", "MAX_STEPS", "METHODS", "MIN_SIZE", "OBJECTIVES", "PRESETS", "PRESET_NAMES",
           "PRESET_SIDE", "Settings", "preset"]

OBJECTIVES = ("channel", "neuron", "class", "dream")
METHODS = ("pixel", "fourier")
CLASS_SCORES = ("log_softmax", "logit")
#: The optimised image's side: at least, at most.
MIN_SIZE, MAX_SIZE = 8, 1024
#: The most steps of one run (per octave for DeepDream).
MAX_STEPS = 10_000
#: The side the presets' jitter (in pixels) is given for: :func:`preset` scales it to the image.
PRESET_SIDE = 224


@dataclass(frozen=True)
class Settings:
    """What to optimise and how.

    Attributes
    ----------
    objective : str
        ``"channel"``: the mean activation of ``channel`` at ``layer``; ``"neuron"``: one
        spatial position of it (``neuron`` = (y, x), default the centre); ``"class"``: the
        log-softmax of class ``target`` (``class_score="logit"``: the raw logit, which lets the
        other logits grow too, so the image is often not classified as the target);
        ``"dream"``: the mean squared activation of ``layer`` (DeepDream).
    layer : str
        A ``named_modules()`` name. A ViT block's tokens are read as channel maps
        (:func:`vizapp.probing.mosaic.as_channel_maps`): channel = embedding dimension, neuron =
        a patch token (y, x) on the token grid.
    channel, target : int or tuple of int
        A tuple gives one per image of the batch (the batch is then its length): several
        channels or classes optimised together in one pass.
    negative : bool
        Minimise instead (what a unit hates); the trace is the negated objective, so it rises.
    method : str
        ``"fourier"`` (Olah 2017: a spectrum, colour decorrelated with ``decorrelate``) or
        ``"pixel"`` (raw pixels, the start image if one is given: Simonyan, Yosinski, DeepDream).
    steps : int
        Optimisation steps (per octave for ``octaves > 1``).
    size : int
        The optimised image's side; None: the model's input size. A layer of a CNN sees the
        image at this size; the class objective and a ViT see it resized to the model's input.
    lr : float
        None: :data:`vizapp.explain.featurevis.LR` for the method.
    seed : int
        The run's own ``torch.Generator``: the same seed and settings give the same image.
    batch, diversity : int, float
        Images optimised together; the weight of Lucent's Gram-cosine diversity term over them.
    jitter, scales, rotate : int, tuple of float, float
        Transformation robustness (Olah 2017): pad by 1.5 x ``jitter`` px, jitter by up to
        ``jitter`` px, scale by one of ``scales``, rotate by up to ``rotate`` degrees, jitter by
        half as much; a new draw every step.
    l2, blur_every, blur_sigma, clip : float, int, float, bool
        Pixel regularisers (Simonyan 2014, Yosinski 2015): pixels decay towards grey by ``l2``
        per step, are blurred every ``blur_every`` steps, clipped to the valid range.
    octaves, octave_scale : int, float
        DeepDream: optimised at ``octaves`` sizes, each ``octave_scale`` x the previous, the
        detail carried up.
    preview_every : int
        A preview image every k steps (and at the last); 0: only at the last.
    name : str
        The preset's name (``dataclasses.replace`` keeps it): the description shows it.
    """

    objective: str = "channel"
    layer: str | None = None
    channel: int | tuple[int, ...] | None = None
    neuron: tuple[int, int] | None = None
    target: int | tuple[int, ...] | None = None
    class_score: str = "log_softmax"
    negative: bool = False
    method: str = "fourier"
    decorrelate: bool = True
    steps: int = 256
    size: int | None = None
    lr: float | None = None
    seed: int = 0
    batch: int = 1
    diversity: float = 0.0
    jitter: int = 0
    scales: tuple[float, ...] = ()
    rotate: float = 0.0
    l2: float = 0.0
    blur_every: int = 0
    blur_sigma: float = 0.5
    clip: bool = False
    octaves: int = 1
    octave_scale: float = 1.4
    preview_every: int = 8
    name: str = ""


#: Lucent's standard transforms: scale by 1 + (i - 5) / 50 for i in 0..10.
_LUCENT_SCALES = tuple(1 + (i - 5) / 50 for i in range(11))

PRESETS: dict[str, Settings] = {
    # Class model visualisation: gradient ascent on the pixels with an L2 penalty.
    "Simonyan 2014": Settings(method="pixel", decorrelate=False, l2=0.002, steps=128, name="Simonyan 2014"),
    # Regularised optimisation: L2 decay, Gaussian blur every 4 steps, clipping, jitter.
    "Yosinski 2015": Settings(method="pixel", decorrelate=False, l2=0.004, lr=0.02, blur_every=4, blur_sigma=0.5,
                              clip=True, jitter=8, steps=128, name="Yosinski 2015"),
    # Fourier parametrisation, decorrelated colour, transformation robustness.
    "Olah 2017": Settings(method="fourier", decorrelate=True, jitter=8, scales=_LUCENT_SCALES, rotate=10.0,
                          steps=256, name="Olah 2017"),
    # DeepDream: the layer's L2 from an image, 4 octaves of 1.4x.
    "DeepDream": Settings(objective="dream", method="pixel", decorrelate=False, jitter=8, clip=True,
                          octaves=4, octave_scale=1.4, steps=10, name="DeepDream"),
}


def preset(name: str, model=None, **changes) -> Settings:
    """``PRESETS[name]`` with ``changes``, its jitter scaled from :data:`PRESET_SIDE` to the image
    the run will optimise (``changes['size']``, else ``model``'s input size): 8 px at 224 is
    1 px at 32. An unknown name is a :class:`UserError`."""
    if name not in PRESETS:
        raise UserError(f"preset '{name}' is not one of: {', '.join(PRESETS)}")
    s = replace(PRESETS[name], **changes)
    side = s.size or (model.input_size if model is not None else PRESET_SIDE)
    if "jitter" not in changes and s.jitter:
        s = replace(s, jitter=max(1, round(s.jitter * side / PRESET_SIDE)))
    return s


#: The presets' names, in order (the command line's ``--preset`` choices).
PRESET_NAMES = tuple(PRESETS)

"""The command line's grammar: every command's arguments, their bounds and help, and the
window's start-up options (accepted without a command or after ``gui``).

Arguments are validated here, so a command's implementation (:mod:`vizapp.cli.commands`)
gets values within range; a bad one exits with status 2 and one ``vizapp: error: ...`` line.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterable, Sequence

# The registries are torch-free: the help lists what is registered, without loading torch.
from vizapp.cli.qt_child import QT_COMMAND
from vizapp.explain.attribution.registry import METHODS as ATTRIBUTION_METHODS
from vizapp.explain.convolution import CLASSIC, KERNEL_SIZES, PADDING_MODES, POOLS
from vizapp.explain.featurevis_settings import MAX_SIZE as VIS_MAX_SIZE
from vizapp.explain.featurevis_settings import MAX_STEPS as VIS_MAX_STEPS
from vizapp.explain.featurevis_settings import METHODS as VIS_METHODS
from vizapp.explain.featurevis_settings import MIN_SIZE as VIS_MIN_SIZE
from vizapp.explain.featurevis_settings import OBJECTIVES as VIS_OBJECTIVES
from vizapp.explain.featurevis_settings import PRESET_NAMES as VIS_PRESETS
from vizapp.training.config import TrainConfig
from vizapp.training.losses import LOSSES
from vizapp.training.presets import PRESET_NAMES, SMALL_CNN_LR, TRANSFORMER_LR

__all__ = ["DOCKS", "MAX_SIZE", "MIN_SIZE", "THEMES", "WINDOW_OPTIONS", "build_parser", "parse_args"]

#: The window's docks, in its order: ``screenshot --dock`` raises one of them
#: (``widgets.main_window.MainWindow.docks`` has the same keys; a test checks it).
DOCKS = ("model", "image", "features", "kernels", "predictions", "patches", "embedding",
         "attention", "attribution", "convolution", "featurevis", "training")
#: Commands the program runs itself (``doctor``'s Qt child): no help line, not in error messages.
HIDDEN_COMMANDS = (QT_COMMAND,)
#: ``record --step``, ``--out`` and the most frames of one recording.
RECORD_STEPS = ("channels", "layers", "heads")
RECORDING_SUFFIXES = (".gif", ".mp4")
MAX_FRAMES = 600
#: ``screenshot --size`` bounds: from a small laptop screen to 8K.
MIN_SIZE, MAX_SIZE = (320, 240), (7680, 4320)


class _Parser(argparse.ArgumentParser):
    """Argument errors read like every other error: one line, ``vizapp: error: ...``, exit 2."""

    def error(self, message: str):  # noqa: D102 - argparse's hook
        for name in HIDDEN_COMMANDS:  # not offered in "invalid choice: ... (choose from ...)"
            message = message.replace(f", '{name}'", "")
        self.exit(2, f"vizapp: error: {' '.join(message.split())}\n")



def _one_of(keys: Iterable[str]) -> str:
    """``a, b or c``: a registry's keys for a help text."""
    keys = list(keys)
    return ", ".join(keys[:-1]) + f" or {keys[-1]}" if len(keys) > 1 else "".join(keys)

def _integer(lo: int, hi: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in ``[lo, hi]`` (no upper bound when ``hi`` is None)."""
    wanted = f"an integer >= {lo}" if hi is None else f"an integer from {lo} to {hi}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {wanted} (got {text!r})") from None
        if value < lo or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"must be {wanted} (got {value})")
        return value

    return parse


def _number(lo: float, *, above: bool = False, below: float | None = None) -> Callable[[str], float]:
    """An argparse type: a finite number ``>= lo`` (``> lo`` when ``above``), ``< below`` if given."""
    wanted = f"a number {'>' if above else '>='} {lo:g}" if below is None else f"a number in [{lo:g}, {below:g})"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {wanted} (got {text!r})") from None
        if not math.isfinite(value) or value < lo or (above and value == lo) or (below is not None and value >= below):
            raise argparse.ArgumentTypeError(f"must be {wanted} (got {text})")
        return value

    return parse


def _kernel_size(text: str) -> int:
    """An argparse type: a classic kernel's side, one of :data:`KERNEL_SIZES`."""
    wanted = " or ".join(str(k) for k in KERNEL_SIZES)
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {wanted} (got {text!r})") from None
    if value not in KERNEL_SIZES:
        raise argparse.ArgumentTypeError(f"must be {wanted} (got {value})")
    return value


def _window_size(text: str) -> tuple[int, int]:
    """An argparse type: ``WxH`` within :data:`MIN_SIZE` .. :data:`MAX_SIZE`."""
    (w0, h0), (w1, h1) = MIN_SIZE, MAX_SIZE
    wanted = f"WxH from {w0}x{h0} to {w1}x{h1}"
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {wanted}, like 1600x1000 (got {text!r})") from None
    if not (w0 <= w <= w1 and h0 <= h <= h1):
        raise argparse.ArgumentTypeError(f"must be {wanted} (got {text})")
    return w, h


def _ui_scale(text: str) -> float:
    """An argparse type: the window's UI scale, a number from 1 to 3."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number from 1 to 3, like 2 or 1.5 (got {text!r})") from None
    if not 1.0 <= value <= 3.0:
        raise argparse.ArgumentTypeError(f"must be a number from 1 to 3 (got {text!r})")
    return value


#: The window's colour themes (``widgets.theme.THEMES``; a test checks they are the same).
THEMES = ("default", "light", "dark")


def _add_presentation_args(p: argparse.ArgumentParser | argparse._ArgumentGroup, dest: str = "") -> None:
    """``--presentation``, ``--scale`` and ``--theme``: the window as projected in a lecture."""
    p.add_argument("--presentation", dest=f"{dest}presentation", action="store_true",
                   help="presentation mode: full screen, menus and dock titles hidden, a large caption line")
    p.add_argument("--scale", dest=f"{dest}scale", type=_ui_scale, metavar="S",
                   help="UI scale from 1 to 3 (text, tiles, markers, lines; presentation mode's default: 2)")
    p.add_argument("--theme", dest=f"{dest}theme", choices=THEMES,
                   help="colours: default, light (high contrast, bright rooms) or dark (high contrast)")


SEED = _integer(0, 2**32 - 1)
#: ``export --scale`` and ``record --scale``: pixels per screen pixel.
SCALE = _integer(1, 3)
BATCH = _integer(1, 4096)
WORKERS = _integer(0, 64)
#: The most top-k rows anything keeps per channel (``predict --top``, ``index --topk``).
MAX_TOP = 1000
#: The highest camera index ``live --camera`` takes.
MAX_CAMERA = 63
#: The most Integrated Gradients path steps (each is a forward and backward pass).
MAX_STEPS = 1000
#: ``convolve --stride``, ``--padding`` and ``--dilation`` at most; ``--size``'s default.
MAX_CONV = 64
CONV_SIZE = 224
#: The window's options, accepted without a command (``python main.py --model vit_digits``) or after ``gui``.
WINDOW_OPTIONS = ("model", "arch", "image", "layer", "device", "trust", "scene", "presentation", "scale", "theme",
                  "video", "camera")
#: ``screenshot --frames``: the most frames of a video the window follows before the picture.
MAX_FOLLOW = 10_000
#: ``--camera N``: camera numbers (OpenCV's indexes).
CAMERA = _integer(0, 99)


def _add_model_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--model", required=required, help="registry name (see 'models') or path to a weights file")
    p.add_argument("--arch", help="architecture of a bare state dict (registry, torchvision or timm name)")
    p.add_argument("--trust", action="store_true", help="allow loading a pickled or TorchScript model file (runs its code)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 or mps (default: the best available)")


IMAGE_HELP = "an image file, or a sample's name (chelsea, coffee, astronaut, digit3, star, ...)"


def _add_window_args(p: argparse.ArgumentParser | argparse._ArgumentGroup, dest: str = "") -> None:
    """The window's start-up options; ``dest`` prefixes their names (the top level keeps them apart)."""
    p.add_argument("--model", dest=f"{dest}model", metavar="MODEL", help="model to open (default: the machine config's default_model, else efficientnet_lite0)")
    p.add_argument("--arch", dest=f"{dest}arch", metavar="ARCH", help="architecture of a bare state dict")
    p.add_argument("--image", dest=f"{dest}image", metavar="IMAGE", help=IMAGE_HELP + " (default: the machine config's default_image, else chelsea)")
    p.add_argument("--layer", dest=f"{dest}layer", metavar="LAYER", help="layer to select (a named_modules() name)")
    p.add_argument("--trust", dest=f"{dest}trust", action="store_true",
                   help="allow loading a pickled or TorchScript model file (runs its code)")
    p.add_argument("--device", dest=f"{dest}device", metavar="DEVICE", help="cpu, cuda, cuda:1 or mps (default: the best available)")
    p.add_argument("--scene", dest=f"{dest}scene", metavar="FILE",
                   help="open on a saved scene (.vizscene); a .vizdeck or a folder of scenes opens its first")
    p.add_argument("--video", dest=f"{dest}video", metavar="FILE",
                   help="follow a video file live: every view follows its frames (Space freezes)")
    p.add_argument("--camera", dest=f"{dest}camera", metavar="N", nargs="?", const=0, type=CAMERA,
                   help="follow camera N live (default 0): every view follows its frames (Space freezes)")
    _add_presentation_args(p, dest)


def _add_shot_args(p: argparse.ArgumentParser) -> None:
    """The window's state for a headless render, as ``screenshot`` takes it."""
    _add_model_args(p, required=False)
    p.add_argument("--image", help=IMAGE_HELP)
    p.add_argument("--layer")
    p.add_argument("--channel", type=_integer(0), help="channel to select (0-based)")
    p.add_argument("--size", type=_window_size, default=(1600, 1000),
                   help=f"window size WxH, {MIN_SIZE[0]}x{MIN_SIZE[1]} to {MAX_SIZE[0]}x{MAX_SIZE[1]} (default 1600x1000)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="vizapp", description="See inside vision networks. Without a command, open the app.",
        epilog="Each command has its own --help, e.g. 'python main.py predict --help'.")
    _add_window_args(parser.add_argument_group("the app's window (without a command, or after 'gui')"),
                     dest="window_")
    sub = parser.add_subparsers(dest="command", metavar="command")

    gui = sub.add_parser("gui", help="open the app (the default)")
    _add_window_args(gui)

    p = sub.add_parser("models", help="list the model registry")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("layers", help="every module: type, output shape, parameters")
    _add_model_args(p)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("predict", help="top-k classes for an image")
    _add_model_args(p)
    p.add_argument("--image", required=True, help=IMAGE_HELP)
    p.add_argument("--top", type=_integer(1, MAX_TOP), default=5, help=f"how many classes (1 to {MAX_TOP})")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("features", help="save a layer's activation for an image (.npz)")
    _add_model_args(p)
    p.add_argument("--image", required=True, help=IMAGE_HELP)
    p.add_argument("--layer", required=True, help="a named_modules() name, see 'layers'")
    p.add_argument("--out", required=True)

    p = sub.add_parser("attention", help="every head's attention, rollout and attention distance of a ViT (.npz)")
    _add_model_args(p)
    p.add_argument("--image", required=True, help=IMAGE_HELP)
    p.add_argument("--fusion", choices=("mean", "max", "min"), default="mean", help="rollout head fusion")
    p.add_argument("--discard", type=_number(0.0, below=1.0), default=0.0, help="rollout: fraction of the lowest weights to drop")
    p.add_argument("--target", help="also save the gradient-weighted rollout for this class (index or name)")
    p.add_argument("--out", required=True)

    p = sub.add_parser("attribute", help="which pixels made a prediction: a Captum attribution (.npz)")
    _add_model_args(p)
    p.add_argument("--image", required=True, help=IMAGE_HELP)
    p.add_argument("--method", required=True, help=_one_of(ATTRIBUTION_METHODS))
    p.add_argument("--target", help="class index or name (default: the predicted class)")
    p.add_argument("--layer", help="Grad-CAM's layer (default: the last maps; a ViT's last pre-attention norm)")
    p.add_argument("--steps", type=_integer(1, MAX_STEPS), default=50,
                   help=f"Integrated Gradients path steps (1 to {MAX_STEPS})")
    p.add_argument("--out", required=True)

    p = sub.add_parser("convolve", help="one convolution step by step: input, kernel, output, ReLU and 2x2 pool (.npz)")
    _add_model_args(p, required=False)
    p.add_argument("--image", required=True, help=IMAGE_HELP)
    p.add_argument("--layer", help="with --model: a Conv2d (see 'layers'; default with --kernel: the first conv)")
    p.add_argument("--channel", type=_integer(0), metavar="C", help="with --model: the output channel whose filter to apply")
    p.add_argument("--kernel", metavar="NAME", help=f"a classic kernel instead of the model's filter: {_one_of(CLASSIC)}")
    p.add_argument("--input-channel", type=_integer(0), metavar="I",
                   help="with --model --kernel: the channel of the layer's input to convolve (default: the image in grayscale)")
    p.add_argument("--kernel-size", type=_kernel_size, metavar="K", help="the classic kernel's size, 3 or 5 (default 3)")
    p.add_argument("--stride", type=_integer(1, MAX_CONV), metavar="S", help=f"1 to {MAX_CONV} (default: the layer's own, else 1)")
    p.add_argument("--padding", type=_integer(0, MAX_CONV), metavar="P",
                   help=f"0 to {MAX_CONV} (default: the layer's own, else K // 2 * dilation: the input's size)")
    p.add_argument("--padding-mode", choices=PADDING_MODES, help="zeros or reflect (default: the layer's own, else zeros)")
    p.add_argument("--dilation", type=_integer(1, MAX_CONV), metavar="D", help=f"1 to {MAX_CONV} (default: the layer's own, else 1)")
    p.add_argument("--pool", choices=POOLS, default="max", help="the 2x2 pool after the ReLU: max or avg (default max)")
    p.add_argument("--size", type=_integer(8, 4096), metavar="N", help="without --model: the image's shorter side in pixels, "
                   f"8 to 4096 (default {CONV_SIZE}); with --model its preprocessing sizes the image")
    p.add_argument("--json", action="store_true", help="print the shapes, the output-size formula and the parameter count")
    p.add_argument("--out", required=True, help="the .npz file to write (its folder must exist)")

    p = sub.add_parser("visualize", help="an image optimised to excite a channel, a neuron or a class, or DeepDream (.png)")
    _add_model_args(p)
    p.add_argument("--layer", help="a named_modules() name, see 'layers' (channel, neuron and dream objectives)")
    p.add_argument("--channel", type=_integer(0), metavar="C", help="the channel (0-based; a ViT block: the embedding dimension)")
    p.add_argument("--class", dest="target", metavar="K", help="a class index or name: the class objective")
    p.add_argument("--objective", choices=VIS_OBJECTIVES,
                   help="channel (mean activation), neuron (the centre position), class (log-softmax) or dream "
                        "(the layer's L2, DeepDream); default: class with --class, else channel")
    p.add_argument("--method", choices=VIS_METHODS, help="pixel (raw pixels) or fourier (decorrelated Fourier "
                   "parametrisation); default: the preset's")
    p.add_argument("--preset", choices=VIS_PRESETS, metavar="NAME",
                   help=f"{_one_of(repr(n) for n in VIS_PRESETS)} (default: 'DeepDream' for dream, else 'Olah 2017')")
    p.add_argument("--steps", type=_integer(1, VIS_MAX_STEPS), metavar="N",
                   help=f"optimisation steps, 1 to {VIS_MAX_STEPS} (per octave for DeepDream; default: the preset's)")
    p.add_argument("--size", type=_integer(VIS_MIN_SIZE, VIS_MAX_SIZE), metavar="S",
                   help=f"the image's side in pixels, {VIS_MIN_SIZE} to {VIS_MAX_SIZE} (default: the model's input size)")
    p.add_argument("--seed", type=SEED, default=0, help="the same seed and settings give the same image (default 0)")
    p.add_argument("--lr", type=_number(0.0, above=True), help="learning rate (default: the method's)")
    p.add_argument("--octaves", type=_integer(1, 10), metavar="N", help="DeepDream's octaves, 1 to 10 (default: the preset's)")
    p.add_argument("--negative", action="store_true", help="minimise instead: what the unit hates")
    p.add_argument("--image", help=IMAGE_HELP + " (the start image: DeepDream, --method pixel)")
    p.add_argument("--out", required=True, help="the .png file to write (its folder must exist)")
    p.add_argument("--npz", help="also write image and objective_trace to this .npz file")
    p.add_argument("--json", action="store_true", help="print a summary: the objective's first and last value, the time")

    p = sub.add_parser("train", help="train a small CNN/ViT (or fine-tune a hub model) and save a checkpoint + card")
    # Options left out take the preset's value (with --preset), else TrainConfig's default.
    d = TrainConfig()
    p.add_argument("--preset", choices=PRESET_NAMES,
                   help="start from a named set of settings for the dataset (lecture: a 20-30 s CPU run that "
                        "learns visibly); the options given here override it")
    p.add_argument("--dataset", help=f"shapes, digits, mnist, fashion-mnist, cifar10 or a folder (default {d.dataset})")
    p.add_argument("--model", help=f"mlp, lenet, tinyvgg, resnet, vit, or hub:NAME to fine-tune (default {d.model})")
    p.add_argument("--loss", help=f"{_one_of(LOSSES)} (default {d.loss})")
    p.add_argument("--epochs", type=_integer(1, 100_000), help=f"default {d.epochs}")
    p.add_argument("--seed", type=SEED, help=f"default {d.seed}")
    p.add_argument("--batch-size", type=_integer(2, 4096), help=f"default {d.batch_size}")
    p.add_argument("--lr", type=_number(0.0, above=True),
                   help=f"Adam's or SGD's learning rate (default {SMALL_CNN_LR:g} for mlp, lenet, tinyvgg and "
                        f"resnet, {TRANSFORMER_LR:g} for vit and hub models)")
    p.add_argument("--optimizer", choices=("adam", "sgd"), help=f"default {d.optimizer}")
    p.add_argument("--weight-decay", type=_number(0.0), help=f"default {d.weight_decay:g}")
    p.add_argument("--augment", action="append", help="augmentation (repeat): hflip, crop, rotate, ...")
    p.add_argument("--size", type=_integer(8, 512), help="image size in pixels, 8 to 512 (default: the dataset's)")
    p.add_argument("--n", type=_integer(1), help="use at most this many images (quick runs)")
    p.add_argument("--margin", type=_number(0.0, above=True), help="contrastive (default 1.0) or triplet (default 0.2) margin")
    p.add_argument("--temperature", type=_number(0.0, above=True), help=f"InfoNCE temperature (default {d.temperature:g})")
    p.add_argument("--embed-dim", type=_integer(1, 4096), help=f"embedding size for the metric losses (default {d.embed_dim})")
    p.add_argument("--freeze", choices=("all", "some", "none"), help=f"hub:NAME: frozen backbone part (default {d.freeze})")
    p.add_argument("--log-every", type=_integer(1), help=f"steps between JSON lines (default {d.log_every})")
    p.add_argument("--device", help="cpu, cuda, cuda:1 or mps (default: the best available)")
    p.add_argument("--resume", help="a checkpoint folder of this run to continue from")
    p.add_argument("--out", required=True, help="checkpoint folder (model.safetensors + card.json)")

    p = sub.add_parser("index", help="top-k patches per channel (and pooled features) over an image collection")
    _add_model_args(p)
    p.add_argument("--data", required=True, help="a folder (sub-folders are labels), 'samples', mnist, fashion-mnist or cifar10")
    p.add_argument("--layer", action="append", required=True, help="layer to index (repeat; 'all-conv' for every conv)")
    p.add_argument("--topk", type=_integer(1, MAX_TOP), default=9, help=f"images kept per channel (1 to {MAX_TOP})")
    p.add_argument("--feature-layer", help="layer whose pooled output is the image feature (default: the classifier's input)")
    p.add_argument("--batch-size", type=BATCH, default=32)
    p.add_argument("--workers", type=WORKERS, help="DataLoader worker processes (default: cores - 1, at most 4)")
    p.add_argument("--amp", action="store_true", help="float16 autocast on CUDA")
    p.add_argument("--out", required=True, help="the index folder (reused when up to date)")

    p = sub.add_parser("top-patches", help="the top patches of one channel, from an index")
    p.add_argument("--index", required=True)
    p.add_argument("--layer", required=True)
    p.add_argument("--channel", type=_integer(0), required=True)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("embed", help="per-image features of a collection projected to 2-D (.npz)")
    _add_model_args(p)
    p.add_argument("--data", required=True)
    p.add_argument("--layer", help="feature layer (default: the classifier's input)")
    p.add_argument("--method", choices=("pca", "tsne", "umap"), default="pca")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--batch-size", type=BATCH, default=32)
    p.add_argument("--workers", type=WORKERS, help="DataLoader worker processes")
    p.add_argument("--cache", help="index folder to reuse (default: the user cache)")
    p.add_argument("--out", required=True)

    p = sub.add_parser("screenshot", help="render the main window headless and save a PNG")
    _add_model_args(p, required=False)
    p.add_argument("--image", help=IMAGE_HELP)
    p.add_argument("--layer")
    p.add_argument("--channel", type=_integer(0), help="channel to select (0-based)")
    p.add_argument("--dock", choices=DOCKS, metavar="DOCK", help=f"raise this dock first: {', '.join(DOCKS)}")
    p.add_argument("--maximise", action="store_true", help="the --dock fills the window, as Z does in the app")
    p.add_argument("--video", metavar="FILE", help="follow this video live first (--frames frames), then take the picture")
    p.add_argument("--frames", type=_integer(1, MAX_FOLLOW),
                   help=f"with --video: frames to follow before the picture, 1 to {MAX_FOLLOW} (default 30)")
    p.add_argument("--collection", help="index this folder of images (or 'samples') at the layer first, for the Top patches dock")
    p.add_argument("--scene", help="a .vizscene file to render (its model, image, layer, ... ; the options above override)")
    p.add_argument("--view-option", action="append", metavar="DOCK.KEY=VALUE",
                   help="set one of a view's options, as a scene keeps them (repeat), e.g. convolution.kernel=sobel_x "
                        "convolution.step=40")
    p.add_argument("--size", type=_window_size, default=(1600, 1000),
                   help=f"window size WxH, {MIN_SIZE[0]}x{MIN_SIZE[1]} to {MAX_SIZE[0]}x{MAX_SIZE[1]} (default 1600x1000)")
    _add_presentation_args(p)  # with --presentation, --size is the projector's screen
    p.add_argument("--out", required=True)

    p = sub.add_parser("scene", help="write a scene (.vizscene) for the window: model, image, layer, ... (a deck is a folder of them)")
    p.add_argument("--model", help="registry name (see 'models') or path to a weights file or checkpoint folder")
    p.add_argument("--arch", help="architecture of a bare state dict")
    p.add_argument("--image", dest="scene_image", metavar="IMAGE", help=IMAGE_HELP)
    p.add_argument("--layer", help="layer to select (a named_modules() name, see 'layers')")
    p.add_argument("--channel", type=_integer(0), help="channel to select (0-based)")
    p.add_argument("--head", type=_integer(0), help="the Attention dock's head (0-based)")
    p.add_argument("--target", type=_integer(0), help="class index to explain (default: the predicted class)")
    p.add_argument("--dock", choices=DOCKS, metavar="DOCK", help=f"the dock raised: {', '.join(DOCKS)}")
    p.add_argument("--presentation", action="store_true", help="open in presentation mode")
    p.add_argument("--scale", type=_ui_scale, help="UI scale, 1 to 3 (default 1; 2 with --presentation)")
    p.add_argument("--title", default="", help="the scene's name in a deck")
    p.add_argument("--json", action="store_true", help="print the written scene as JSON")
    p.add_argument("--out", required=True, help="the .vizscene file to write")

    p = sub.add_parser("export", help="render the window headless and save one dock as PNG or SVG, or every visible dock with captions")
    _add_shot_args(p)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--dock", choices=DOCKS, metavar="DOCK", help=f"the dock to save: {', '.join(DOCKS)}")
    which.add_argument("--all", action="store_true",
                       help="every visible dock into the --out folder (PNG, SVG where it has plots, captions.json/.txt)")
    p.add_argument("--scale", type=SCALE, default=2, help="PNG pixels per screen pixel: 1, 2 or 3 (default 2)")
    p.add_argument("--format", choices=("png", "svg"),
                   help="png, or svg for a dock with plots (embedding, attention distance, training); default: --out's suffix, else png")
    p.add_argument("--out", required=True, help="the file (--dock) or folder (--all)")

    p = sub.add_parser("record", help="render the window headless and record a dock stepping through channels, layers or heads (GIF or MP4)")
    _add_shot_args(p)
    p.add_argument("--dock", choices=DOCKS, metavar="DOCK", required=True, help=f"the dock to record: {', '.join(DOCKS)}")
    p.add_argument("--step", choices=RECORD_STEPS, required=True, help="one frame per channel of the layer, per layer from --layer, or per attention head")
    p.add_argument("--count", type=_integer(1, MAX_FRAMES), help=f"at most this many frames (1 to {MAX_FRAMES}; default: all)")
    p.add_argument("--fps", type=_integer(1, 60), default=2, help="frames a second, 1 to 60 (default 2)")
    p.add_argument("--scale", type=SCALE, default=1, help="pixels per screen pixel: 1, 2 or 3 (default 1)")
    p.add_argument("--out", required=True, help="a .gif or .mp4 file")

    p = sub.add_parser("live", help="run a video or a camera through a model headless: per-frame timings (decode, forward, views)")
    _add_model_args(p)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--video", metavar="FILE", help="a video file (MP4, MJPG .avi, ... : what OpenCV reads)")
    source.add_argument("--camera", nargs="?", const=0, type=_integer(0, MAX_CAMERA), metavar="N",
                        help=f"camera N (0 to {MAX_CAMERA}; default 0)")
    p.add_argument("--layer", help="also draw this layer's feature mosaic per frame (a named_modules() name, see 'layers')")
    p.add_argument("--frames", type=_integer(1), metavar="N",
                   help="stop after N frames (default: the whole video; a camera runs until Ctrl+C)")
    p.add_argument("--realtime", action="store_true",
                   help="play the source at its own speed and drop the frames the model cannot keep up with")
    p.add_argument("--mirror", action="store_true", help="flip each frame left-right (a camera facing you)")
    p.add_argument("--top", type=_integer(1, MAX_TOP), default=5, help=f"classes per frame (1 to {MAX_TOP})")
    p.add_argument("--json", action="store_true",
                   help="one JSON line per frame, then a line {\"summary\": ...} (mean, median, p95 per stage, fps, dropped)")
    p.add_argument("--out", metavar="FILE", help="also write every frame's record and the summary as one JSON document")

    p = sub.add_parser("doctor", help="check this machine: Qt window, GPU, offline models, folders, disk; exit 1 on a failure")
    p.add_argument("--json", action="store_true", help="a list of {check, status, detail} for scripts")
    sub.add_parser(QT_COMMAND)  # no help: hidden; the Qt part of 'doctor', run in a child process
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse a command line; no command means the window (``gui``), whose options may come first.

    Raises ``SystemExit(2)`` after one ``vizapp: error: ...`` line for a bad argument.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    given = [name for name in WINDOW_OPTIONS if getattr(args, f"window_{name}") is not None
             and getattr(args, f"window_{name}") is not False]
    if args.command not in (None, "gui") and given:
        parser.error(f"argument --{given[0]}: the window's options go without a command or after 'gui'; "
                     f"for '{args.command}' put --{given[0]} after the command's name")
    if args.command is None:
        args = parser.parse_args(["gui"], namespace=args)
    if args.command == "gui":
        for name in WINDOW_OPTIONS:  # gui's own option wins over one given before it
            if getattr(args, name) is None or getattr(args, name) is False:  # (--camera 0 is given)
                setattr(args, name, getattr(args, f"window_{name}"))
        if args.video and args.camera is not None:
            parser.error("argument --camera: not with --video (the window follows one live source)")
    for name in WINDOW_OPTIONS:
        delattr(args, f"window_{name}")
    if args.command == "screenshot":
        if args.frames is not None and args.video is None:
            parser.error("argument --frames: only with --video (the frames of the video to follow)")
        args.frames = args.frames or 30
    if args.command == "export":
        if args.all and args.format:
            parser.error("argument --format: only with --dock (--all writes a PNG of each dock and an SVG where it has plots)")
        if args.dock:
            args.format = args.format or ("svg" if args.out.lower().endswith(".svg") else "png")
    if args.command == "record" and not args.out.lower().endswith(RECORDING_SUFFIXES):
        parser.error(f"argument --out: must be a .gif or .mp4 file name (got {args.out!r})")
    return args

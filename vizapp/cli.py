"""Headless commands: ``python main.py models|layers|predict|features|attention|attribute ...``.

Every picture the GUI shows can be computed from here. Bad input exits with status
2 and one line on stderr naming the file, model or layer; never a traceback.
GUI commands (``gui``, ``screenshot``) are parsed here and run by handlers that
``main.py`` passes in, so this module never imports Qt.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from vizapp.core.errors import UserError

__all__ = ["DOCKS", "build_parser", "main", "parse_args"]

Handler = Callable[[argparse.Namespace], int]

#: The window's docks, in its order: ``screenshot --dock`` raises one of them
#: (``widgets.main_window.MainWindow.docks`` has the same keys; a test checks it).
DOCKS = ("model", "image", "features", "kernels", "predictions", "patches", "embedding",
         "attention", "attribution", "training")
#: ``screenshot --size`` bounds: from a small laptop screen to 8K.
MIN_SIZE, MAX_SIZE = (320, 240), (7680, 4320)


class _Parser(argparse.ArgumentParser):
    """Argument errors read like every other error: one line, ``vizapp: error: ...``, exit 2."""

    def error(self, message: str):  # noqa: D102 - argparse's hook
        self.exit(2, f"vizapp: error: {' '.join(message.split())}\n")


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


SEED = _integer(0, 2**32 - 1)
BATCH = _integer(1, 4096)
WORKERS = _integer(0, 64)
#: The most top-k rows anything keeps per channel (``predict --top``, ``index --topk``).
MAX_TOP = 1000
#: The most Integrated Gradients path steps (each is a forward and backward pass).
MAX_STEPS = 1000
#: The window's options, accepted without a command (``python main.py --model vit_digits``) or after ``gui``.
WINDOW_OPTIONS = ("model", "arch", "image", "layer", "device", "trust")


def _add_model_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--model", required=required, help="registry name (see 'models') or path to a weights file")
    p.add_argument("--arch", help="architecture of a bare state dict (registry, torchvision or timm name)")
    p.add_argument("--trust", action="store_true", help="allow loading a pickled or TorchScript model file (runs its code)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 or mps (default: the best available)")


IMAGE_HELP = "an image file, or a sample's name (chelsea, coffee, astronaut, digit3, star, ...)"


def _add_window_args(p: argparse.ArgumentParser | argparse._ArgumentGroup, dest: str = "") -> None:
    """The window's start-up options; ``dest`` prefixes their names (the top level keeps them apart)."""
    p.add_argument("--model", dest=f"{dest}model", metavar="MODEL", help="model to open (default: efficientnet_lite0)")
    p.add_argument("--arch", dest=f"{dest}arch", metavar="ARCH", help="architecture of a bare state dict")
    p.add_argument("--image", dest=f"{dest}image", metavar="IMAGE", help=IMAGE_HELP + " (default: chelsea)")
    p.add_argument("--layer", dest=f"{dest}layer", metavar="LAYER", help="layer to select (a named_modules() name)")
    p.add_argument("--trust", dest=f"{dest}trust", action="store_true",
                   help="allow loading a pickled or TorchScript model file (runs its code)")
    p.add_argument("--device", dest=f"{dest}device", metavar="DEVICE", help="cpu, cuda, cuda:1 or mps (default: the best available)")


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
    p.add_argument("--method", required=True, help="saliency, input_x_gradient, integrated_gradients, "
                   "guided_backprop, occlusion, gradcam or smoothgrad")
    p.add_argument("--target", help="class index or name (default: the predicted class)")
    p.add_argument("--layer", help="Grad-CAM's layer (default: the last maps; a ViT's last pre-attention norm)")
    p.add_argument("--steps", type=_integer(1, MAX_STEPS), default=50,
                   help=f"Integrated Gradients path steps (1 to {MAX_STEPS})")
    p.add_argument("--out", required=True)

    p = sub.add_parser("train", help="train a small CNN/ViT (or fine-tune a hub model) and save a checkpoint + card")
    p.add_argument("--dataset", default="shapes", help="shapes, digits, mnist, fashion-mnist, cifar10 or a folder")
    p.add_argument("--model", default="tinyvgg", help="mlp, lenet, tinyvgg, resnet, vit, or hub:NAME to fine-tune")
    p.add_argument("--loss", default="ce", help="ce, contrastive, triplet or infonce")
    p.add_argument("--epochs", type=_integer(1, 100_000), default=5)
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--batch-size", type=_integer(2, 4096), default=64)
    p.add_argument("--lr", type=_number(0.0, above=True), default=1e-3)
    p.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    p.add_argument("--weight-decay", type=_number(0.0), default=0.0)
    p.add_argument("--augment", action="append", default=[], help="augmentation (repeat): hflip, crop, rotate, ...")
    p.add_argument("--size", type=_integer(8, 512), help="image size in pixels, 8 to 512 (default: the dataset's)")
    p.add_argument("--n", type=_integer(1), help="use at most this many images (quick runs)")
    p.add_argument("--margin", type=_number(0.0, above=True), help="contrastive (default 1.0) or triplet (default 0.2) margin")
    p.add_argument("--temperature", type=_number(0.0, above=True), default=0.5, help="InfoNCE temperature")
    p.add_argument("--embed-dim", type=_integer(1, 4096), default=32, help="embedding size for the metric losses")
    p.add_argument("--freeze", choices=("all", "some", "none"), default="all", help="hub:NAME: frozen backbone part")
    p.add_argument("--log-every", type=_integer(1), default=10, help="steps between JSON lines")
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
    p.add_argument("--size", type=_window_size, default=(1600, 1000),
                   help=f"window size WxH, {MIN_SIZE[0]}x{MIN_SIZE[1]} to {MAX_SIZE[0]}x{MAX_SIZE[1]} (default 1600x1000)")
    p.add_argument("--out", required=True)
    return parser


def _save_npz(path: str, **arrays) -> Path:
    from vizapp.core.files import write_npz

    return write_npz(path, **arrays)


def _load(args: argparse.Namespace):
    from models import load_model
    from vizapp.probing.device import check_device, default_device, move_model

    device = check_device(args.device) if args.device else default_device()
    loaded = load_model(args.model, arch=args.arch, trust=args.trust)
    if device != "cpu":
        message = move_model(loaded, device)
        if message:
            print(f"vizapp: {message}", file=sys.stderr)
    return loaded


def _cmd_models(args: argparse.Namespace) -> int:
    from models import is_cached, list_specs
    from models._loaders import _preprocess_for

    rows = []
    for spec in list_specs():
        pre = _preprocess_for(spec)
        rows.append({
            "name": spec.name, "title": spec.title, "kind": spec.kind, "source": spec.source,
            "offline": is_cached(spec), "input_size": pre.crop, "preprocess": pre.describe(),
            "description": spec.description,
        })
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            flag = "offline" if r["offline"] else "download"
            print(f"{r['name']:<20} {r['kind']:<4} {flag:<9} {r['title']}")
    return 0


def _cmd_layers(args: argparse.Namespace) -> int:
    from vizapp.probing.layers import format_table, layer_table

    rows = layer_table(_load(args))
    print(json.dumps([r.to_json() for r in rows], indent=1) if args.json else format_table(rows))
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from vizapp.inputs.images import load_image
    from vizapp.probing.inference import run

    image = load_image(args.image)
    result = run(_load(args), image, topk=args.top)
    if not result.predictions:
        raise UserError(f"{args.model} has no classifier head, so it makes no class predictions")
    if args.json:
        print(json.dumps([p.to_json() for p in result.predictions]))
    else:
        for p in result.predictions:
            print(f"{100 * p.prob:6.2f}%  {p.label} ({p.index})")
    return 0


def _cmd_features(args: argparse.Namespace) -> int:

    from vizapp.inputs.images import load_image
    from vizapp.probing.inference import run

    image = load_image(args.image)
    result = run(_load(args), image, [args.layer])
    if args.layer not in result.activations:
        raise UserError(f"layer '{args.layer}' produced no tensor output for this image")
    out = _save_npz(args.out, input=result.input, activation=result.activations[args.layer])
    print(f"saved {out}: input {result.input.shape}, activation {result.activations[args.layer].shape}")
    return 0


def _cmd_attention(args: argparse.Namespace) -> int:
    import numpy as np

    from vizapp.explain.attention import analyse_attention
    from vizapp.inputs.images import load_image

    image = load_image(args.image)
    r = analyse_attention(_load(args), image, target=args.target, gradient=args.target is not None)
    extra = {} if r.gradient is None else {"gradient_rollout": r.gradient_map(), "target": np.int64(r.target)}
    out = _save_npz(
        args.out, input=r.input, attention=r.attention, rollout=r.rollout(args.fusion, args.discard),
        cls_index=np.int64(0 if r.has_class_token else -1), prefix_tokens=np.int64(r.layout.prefix),
        grid=np.array(r.layout.grid),
        patch=np.int64(r.layout.patch), distance=r.distance, layers=np.array(r.layers), **extra)
    print(f"saved {out}: attention {r.attention.shape} (layers x heads x tokens x tokens), "
          f"{'class token 0' if r.has_class_token else 'no class token (rollout of the mean patch)'}, "
          f"{r.layout.prefix} prefix token(s), rollout {r.layout.grid[0]}x{r.layout.grid[1]}")
    for note in r.notes:
        print(f"vizapp: {note}", file=sys.stderr)
    return 0


def _cmd_attribute(args: argparse.Namespace) -> int:
    import numpy as np

    from vizapp.explain.attribution import attribute
    from vizapp.inputs.images import load_image

    image = load_image(args.image)
    a = attribute(_load(args), image, args.method, target=args.target, layer=args.layer, steps=args.steps,
                  progress=_stderr_progress)
    out = _save_npz(args.out, input=a.input, attribution=a.raw, map=a.map, target=np.int64(a.target),
                    method=np.array(a.method), **({"layer": np.array(a.layer)} if a.layer else {}))
    print(f"saved {out}: {a.title} for '{a.target_label}' ({a.target}, p={a.probability:.3f}), "
          f"attribution {a.raw.shape}, {a.seconds:.2f} s")
    for note in a.notes:
        print(f"vizapp: {note}", file=sys.stderr)
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from vizapp.training.config import TrainConfig
    from vizapp.training.records import write_json_line
    from vizapp.training.trainer import Trainer

    config = TrainConfig(
        dataset=args.dataset, model=args.model, loss=args.loss, epochs=args.epochs, seed=args.seed,
        batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer, weight_decay=args.weight_decay,
        augment=[a.strip() for arg in args.augment for a in arg.split(",") if a.strip()], size=args.size, n=args.n, margin=args.margin, temperature=args.temperature,
        embed_dim=args.embed_dim, freeze=args.freeze, log_every=args.log_every, device=args.device,
        resume=args.resume, out=args.out)
    trainer = Trainer(config, progress=_stderr_progress)
    for record in trainer.run():
        if record["type"] in ("step", "eval"):
            print(write_json_line(record), flush=True)
        elif record["type"] == "checkpoint" and record["why"] in ("finished", "stopped"):
            card = trainer.card()
            print(f"saved {record['path']}: {card['title']}, validation accuracy {card['metrics']['val_acc']}",
                  file=sys.stderr)
    return 0


def _stderr_progress(done: int, total: int, text: str) -> None:
    if sys.stderr.isatty():
        print(f"\r{text[:100]:<100}", end="", file=sys.stderr, flush=True)


def _distributed_init() -> int:
    """Join a torchrun group when launched by torchrun; returns this process's rank."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if os.environ.get("VIZAPP_DIST_BACKEND") == "nccl" else "gloo")
    return dist.get_rank()


def _distributed_done() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def _cmd_index(args: argparse.Namespace) -> int:
    from vizapp.collection.datasets import open_collection
    from vizapp.collection.indexing import build_index

    rank = _distributed_init()
    try:
        collection = open_collection(args.data)
        index = build_index(_load(args), collection, args.layer, k=args.topk, feature_layer=args.feature_layer,
                            out=args.out, batch_size=args.batch_size, workers=args.workers, amp=args.amp,
                            progress=_stderr_progress)
    finally:
        _distributed_done()
    if rank == 0:
        print(f"\nindexed {len(index.paths)} images ({len(index.skipped)} skipped as unreadable), "
              f"layers {', '.join(index.layers)}, into {index.directory}")
    return 0


def _cmd_top_patches(args: argparse.Namespace) -> int:
    from vizapp.collection.index_store import Index
    from vizapp.collection.patches import unit_flags

    index = Index.load(args.index)
    patches = index.top_patches(args.layer, args.channel)
    flags = unit_flags(index.topk[args.layer], args.channel)  # dead channel, ties at the k-th value
    if args.json:
        print(json.dumps([{**p.to_json(), **flags.to_json()} for p in patches]))
    else:
        for p in patches:
            print(f"{p.value:10.4f}  {p.image}  box {p.box}")
        for line in flags.lines:
            print(f"vizapp: {line}", file=sys.stderr)
    return 0


def _cmd_embed(args: argparse.Namespace) -> int:
    import numpy as np

    from vizapp.collection.datasets import open_collection
    from vizapp.collection.embedding import Embedding
    from vizapp.collection.indexing import build_index
    from vizapp.collection.projection import project

    if Path(args.out).is_dir():
        raise UserError(f"--out {args.out}: is a folder; name the .npz file to write")
    rank = _distributed_init()
    try:
        collection = open_collection(args.data)
        # The features come from the indexing pass (cached), without any layer's top-k.
        index = build_index(_load(args), collection, [], features_only=True, feature_layer=args.layer,
                            out=args.cache, batch_size=args.batch_size, workers=args.workers,
                            progress=_stderr_progress)
    finally:
        _distributed_done()
    if rank != 0:
        return 0
    keep = np.setdiff1d(np.arange(len(index.paths)), np.asarray(index.skipped, dtype=np.int64))
    features = np.asarray(index.features())[keep]
    coords = project(features, args.method, seed=args.seed)
    embedding = Embedding(features, coords, [index.paths[i] for i in keep], [index.labels[i] for i in keep], args.method)
    out = embedding.save(args.out)  # the path it wrote is the one we name
    print(f"\nsaved {out}: {len(keep)} images, features {features.shape}, {args.method} coords")
    return 0


_COMMANDS: dict[str, Handler] = {
    "models": _cmd_models,
    "layers": _cmd_layers,
    "predict": _cmd_predict,
    "features": _cmd_features,
    "attention": _cmd_attention,
    "attribute": _cmd_attribute,
    "train": _cmd_train,
    "index": _cmd_index,
    "top-patches": _cmd_top_patches,
    "embed": _cmd_embed,
}


def _names_as_bytes(stream) -> None:
    """File names that are not UTF-8 (``bad\\xff.png``) print as their own bytes, not a crash."""
    if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
        stream.reconfigure(errors="surrogateescape")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse a command line; no command means the window (``gui``), whose options may come first.

    Raises ``SystemExit(2)`` after one ``vizapp: error: ...`` line for a bad argument.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    given = [name for name in WINDOW_OPTIONS if getattr(args, f"window_{name}") not in (None, False)]
    if args.command not in (None, "gui") and given:
        parser.error(f"argument --{given[0]}: the window's options go without a command or after 'gui'; "
                     f"for '{args.command}' put --{given[0]} after the command's name")
    if args.command is None:
        args = parser.parse_args(["gui"], namespace=args)
    if args.command == "gui":
        for name in WINDOW_OPTIONS:  # gui's own option wins over one given before it
            if getattr(args, name) in (None, False):
                setattr(args, name, getattr(args, f"window_{name}"))
    for name in WINDOW_OPTIONS:
        delattr(args, f"window_{name}")
    return args


def main(argv: Sequence[str] | None = None, gui_handlers: dict[str, Handler] | None = None) -> int:
    """Run one command; returns the exit status (2 and one line on stderr for bad input)."""
    _names_as_bytes(sys.stdout)
    try:
        args = parse_args(argv)
    except SystemExit as exc:  # --help (0) or a bad argument (2, its line already printed)
        return exc.code if isinstance(exc.code, int) else 2
    handler = dict(_COMMANDS, **(gui_handlers or {})).get(args.command)
    try:
        if handler is None:
            raise UserError(f"the '{args.command}' command needs the GUI; run it through main.py")
        if getattr(args, "image", None) is not None:
            from vizapp.inputs.images import resolve_image_source

            args.image = str(resolve_image_source(args.image))
        return handler(args)
    except UserError as exc:
        print(f"vizapp: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, not a traceback
        if os.environ.get("VIZAPP_DEBUG"):
            raise
        print(f"vizapp: internal error: {type(exc).__name__}: {exc} (set VIZAPP_DEBUG=1 for details)", file=sys.stderr)
        return 1

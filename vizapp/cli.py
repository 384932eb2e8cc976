"""Headless commands: ``python main.py models|layers|predict|features|attention|attribute ...``.

Every picture the GUI shows can be computed from here. Bad input exits with status
2 and one line on stderr naming the file, model or layer; never a traceback.
GUI commands (``gui``, ``screenshot``) are parsed here and run by handlers that
``main.py`` passes in, so this module never imports Qt.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from vizapp.errors import UserError

__all__ = ["build_parser", "main"]

Handler = Callable[[argparse.Namespace], int]


def _add_model_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--model", required=required, help="registry name (see 'models') or path to a weights file")
    p.add_argument("--arch", help="architecture of a bare state dict (registry, torchvision or timm name)")
    p.add_argument("--trust", action="store_true", help="allow loading a pickled model file (runs its code)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 or mps (default: the best available)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vizapp", description="See inside vision networks.")
    sub = parser.add_subparsers(dest="command")

    gui = sub.add_parser("gui", help="open the app (the default)")
    gui.add_argument("--model", default=None)
    gui.add_argument("--arch")
    gui.add_argument("--image")
    gui.add_argument("--layer")
    gui.add_argument("--trust", action="store_true", help="allow loading a pickled model file (runs its code)")
    gui.add_argument("--device", help="cpu, cuda, cuda:1 or mps (default: the best available)")

    p = sub.add_parser("models", help="list the model registry")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("layers", help="every module: type, output shape, parameters")
    _add_model_args(p)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("predict", help="top-k classes for an image")
    _add_model_args(p)
    p.add_argument("--image", required=True)
    p.add_argument("--top", type=int, default=5)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("features", help="save a layer's activation for an image (.npz)")
    _add_model_args(p)
    p.add_argument("--image", required=True)
    p.add_argument("--layer", required=True, help="a named_modules() name, see 'layers'")
    p.add_argument("--out", required=True)

    p = sub.add_parser("attention", help="every head's attention, rollout and attention distance of a ViT (.npz)")
    _add_model_args(p)
    p.add_argument("--image", required=True)
    p.add_argument("--fusion", choices=("mean", "max", "min"), default="mean", help="rollout head fusion")
    p.add_argument("--discard", type=float, default=0.0, help="rollout: fraction of the lowest weights to drop")
    p.add_argument("--target", help="also save the gradient-weighted rollout for this class (index or name)")
    p.add_argument("--out", required=True)

    p = sub.add_parser("attribute", help="which pixels made a prediction: a Captum attribution (.npz)")
    _add_model_args(p)
    p.add_argument("--image", required=True)
    p.add_argument("--method", required=True, help="saliency, input_x_gradient, integrated_gradients, "
                   "guided_backprop, occlusion, gradcam or smoothgrad")
    p.add_argument("--target", help="class index or name (default: the predicted class)")
    p.add_argument("--layer", help="Grad-CAM's layer (default: the last maps; a ViT's last pre-attention norm)")
    p.add_argument("--steps", type=int, default=50, help="Integrated Gradients path steps")
    p.add_argument("--out", required=True)

    p = sub.add_parser("train", help="train a small CNN/ViT (or fine-tune a hub model) and save a checkpoint + card")
    p.add_argument("--dataset", default="shapes", help="shapes, digits, mnist, fashion-mnist, cifar10 or a folder")
    p.add_argument("--model", default="tinyvgg", help="mlp, lenet, tinyvgg, resnet, vit, or hub:NAME to fine-tune")
    p.add_argument("--loss", default="ce", help="ce, contrastive, triplet or infonce")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--augment", action="append", default=[], help="augmentation (repeat): hflip, crop, rotate, ...")
    p.add_argument("--size", type=int, help="image size in pixels (default: the dataset's)")
    p.add_argument("--n", type=int, help="use at most this many images (quick runs)")
    p.add_argument("--margin", type=float, help="contrastive (default 1.0) or triplet (default 0.2) margin")
    p.add_argument("--temperature", type=float, default=0.5, help="InfoNCE temperature")
    p.add_argument("--embed-dim", type=int, default=32, help="embedding size for the metric losses")
    p.add_argument("--freeze", choices=("all", "some", "none"), default="all", help="hub:NAME: frozen backbone part")
    p.add_argument("--log-every", type=int, default=10, help="steps between JSON lines")
    p.add_argument("--device", help="cpu, cuda, cuda:1 or mps (default: the best available)")
    p.add_argument("--resume", help="a checkpoint folder of this run to continue from")
    p.add_argument("--out", required=True, help="checkpoint folder (model.safetensors + card.json)")

    p = sub.add_parser("index", help="top-k patches per channel (and pooled features) over an image collection")
    _add_model_args(p)
    p.add_argument("--data", required=True, help="a folder (sub-folders are labels), 'samples', mnist, fashion-mnist or cifar10")
    p.add_argument("--layer", action="append", required=True, help="layer to index (repeat; 'all-conv' for every conv)")
    p.add_argument("--topk", type=int, default=9)
    p.add_argument("--feature-layer", help="layer whose pooled output is the image feature (default: the classifier's input)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, help="DataLoader worker processes (default: cores - 1, at most 4)")
    p.add_argument("--amp", action="store_true", help="float16 autocast on CUDA")
    p.add_argument("--out", required=True, help="the index folder (reused when up to date)")

    p = sub.add_parser("top-patches", help="the top patches of one channel, from an index")
    p.add_argument("--index", required=True)
    p.add_argument("--layer", required=True)
    p.add_argument("--channel", type=int, required=True)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("embed", help="per-image features of a collection projected to 2-D (.npz)")
    _add_model_args(p)
    p.add_argument("--data", required=True)
    p.add_argument("--layer", help="feature layer (default: the classifier's input)")
    p.add_argument("--method", choices=("pca", "tsne", "umap"), default="pca")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int)
    p.add_argument("--cache", help="index folder to reuse (default: the user cache)")
    p.add_argument("--out", required=True)

    p = sub.add_parser("screenshot", help="render the main window headless and save a PNG")
    _add_model_args(p, required=False)
    p.add_argument("--image")
    p.add_argument("--layer")
    p.add_argument("--channel", type=int)
    p.add_argument("--dock", help="raise this dock first: features, patches, embedding, attention, attribution")
    p.add_argument("--size", default="1600x1000", help="WxH")
    p.add_argument("--out", required=True)
    return parser


def _save_npz(path: str, **arrays) -> Path:
    from vizapp.files import write_npz

    return write_npz(path, **arrays)


def _load(args: argparse.Namespace):
    from models import load_model
    from vizapp.device import check_device, default_device, move_model

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
    from vizapp.layers import format_table, layer_table

    rows = layer_table(_load(args))
    print(json.dumps([r.to_json() for r in rows], indent=1) if args.json else format_table(rows))
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from vizapp.images import load_image
    from vizapp.inference import run

    if args.top < 1:
        raise UserError("--top must be at least 1")
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

    from vizapp.images import load_image
    from vizapp.inference import run

    image = load_image(args.image)
    result = run(_load(args), image, [args.layer])
    if args.layer not in result.activations:
        raise UserError(f"layer '{args.layer}' produced no tensor output for this image")
    out = _save_npz(args.out, input=result.input, activation=result.activations[args.layer])
    print(f"saved {out}: input {result.input.shape}, activation {result.activations[args.layer].shape}")
    return 0


def _cmd_attention(args: argparse.Namespace) -> int:
    import numpy as np

    from vizapp.attention import analyse_attention
    from vizapp.images import load_image

    if not 0.0 <= args.discard < 1.0:
        raise UserError(f"--discard must be in [0, 1), not {args.discard}")
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

    from vizapp.attribution import attribute
    from vizapp.images import load_image

    if args.steps < 1:
        raise UserError("--steps must be at least 1")
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
    from vizapp.training import TrainConfig, Trainer, write_json_line

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
    from vizapp.datasets import open_collection
    from vizapp.indexing import build_index

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
    from vizapp.indexing import Index
    from vizapp.patches import unit_flags

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

    from vizapp.datasets import open_collection
    from vizapp.embedding import Embedding, project
    from vizapp.indexing import build_index

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
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    embedding.save(out)
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


def main(argv: Sequence[str] | None = None, gui_handlers: dict[str, Handler] | None = None) -> int:
    """Run one command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = dict(_COMMANDS, **(gui_handlers or {}))
    command = args.command or "gui"
    if command == "gui" and args.command is None:
        args = parser.parse_args(["gui"])
    handler = handlers.get(command)
    if handler is None:
        parser.error(f"the '{command}' command needs the GUI; run it through main.py")
    try:
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

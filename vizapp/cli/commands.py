"""What each headless command does: ``models``, ``layers``, ``predict``, ``features``,
``attention``, ``attribute``, ``convolve``, ``visualize``, ``train``, ``index``, ``top-patches``, ``embed``, ``live`` and ``doctor``
(:mod:`vizapp.cli.doctor`).

Each takes the parsed arguments (:mod:`vizapp.cli.parser`) and returns the exit status; bad
input is a :class:`~vizapp.core.errors.UserError`, which :func:`vizapp.cli.main` prints as
one line. :data:`COMMANDS` maps a command's name to its function.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from vizapp.core.errors import UserError

__all__ = ["COMMANDS", "Handler"]

Handler = Callable[[argparse.Namespace], int]


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
    from models.catalog import model_catalog
    from models.loading import preprocess_for
    from vizapp.core.config import machine_config

    rows = []
    for entry in model_catalog():
        spec, pre = entry.spec, preprocess_for(entry.spec)
        rows.append({
            "name": spec.name, "title": spec.title, "kind": spec.kind, "source": spec.source,
            "offline": entry.offline, "input_size": pre.crop, "preprocess": pre.describe(),
            "description": spec.description, "shown": entry.shown, "hidden": entry.hidden,
        })
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            if r["shown"]:
                flag = "offline" if r["offline"] else "download"
                print(f"{r['name']:<20} {r['kind']:<4} {flag:<9} {r['title']}")
        hidden = [r["name"] for r in rows if not r["shown"]]
        if hidden:
            print(f"vizapp: {len(hidden)} model(s) hidden by {machine_config().where}: {', '.join(hidden)} "
                  "(--json says why)", file=sys.stderr)
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


def _convolution(args: argparse.Namespace):
    """The :class:`~vizapp.explain.convolution.Convolution` ``convolve``'s options ask for."""
    from vizapp.cli.parser import CONV_SIZE
    from vizapp.explain import convolution as cv
    from vizapp.inputs.images import load_image

    if args.kernel_size is not None and args.kernel is None:
        raise UserError("--kernel-size: only with --kernel NAME (a model's filter has its layer's size)")
    if args.kernel is not None:
        cv.classic_kernel(args.kernel, args.kernel_size or 3)  # a bad name fails before the model loads
    settings = {"stride": args.stride, "padding": args.padding, "padding_mode": args.padding_mode,
                "dilation": args.dilation, "pool": args.pool}
    if args.model is None:
        for option, value in (("--layer", args.layer), ("--channel", args.channel),
                              ("--input-channel", args.input_channel), ("--arch", args.arch)):
            if value is not None:
                raise UserError(f"{option}: needs --model (without one, --kernel NAME convolves the image in grayscale)")
        if args.kernel is None:
            raise UserError("give --model M --layer L --channel C (the model's filter) or --kernel NAME (a classic one)")
        return cv.classic_on_image(
            load_image(args.image), args.kernel, kernel_size=args.kernel_size or 3, size=args.size or CONV_SIZE,
            stride=args.stride or 1, padding=args.padding, padding_mode=args.padding_mode or "zeros",
            dilation=args.dilation or 1, pool=args.pool)
    if args.size is not None:
        raise UserError("--size: only without --model (the model's preprocessing sizes the image)")
    if args.kernel is None:
        missing = [option for option, value in (("--layer", args.layer), ("--channel", args.channel)) if value is None]
        if missing:
            raise UserError(f"{' and '.join(missing)}: --model without --kernel applies one filter of a layer; "
                            "give --layer L --channel C (see 'vizapp layers')")
        if args.input_channel is not None:
            raise UserError("--input-channel: only with --kernel NAME (a model's filter reads all its input channels)")
    loaded = _load(args)
    layer = args.layer
    if layer is None:
        layers = cv.conv_layers(loaded)
        if not layers:
            raise UserError(f"{args.model} has no Conv2d layer to convolve with")
        layer = layers[0]
    return cv.explain(loaded, load_image(args.image), layer, args.channel or 0, input_channel=args.input_channel,
                      kernel=args.kernel, kernel_size=args.kernel_size or 3, **settings)


def _check_out(option: str, path: str, suffix: str, *, named: bool = False) -> None:
    """Refuse an output ``path`` before any work is done: a folder, a folder that does not exist,
    and (``named``) a file not ending in ``suffix``."""
    p = Path(path)
    if p.is_dir():
        raise UserError(f"{option} {path}: is a folder; name the {suffix} file to write")
    if named and p.suffix.lower() != suffix:
        raise UserError(f"{option} {path}: name a {suffix} file")
    if not p.absolute().parent.is_dir():
        raise UserError(f"{option} {path}: the folder {p.parent} does not exist; create it or name another file")


def _cmd_convolve(args: argparse.Namespace) -> int:
    import numpy as np

    from vizapp.explain.convolution import effective_kernel

    _check_out("--out", args.out, ".npz")
    c = _convolution(args)
    path = _save_npz(
        args.out, input=c.input, kernel=c.kernel, bias=np.float32(c.bias), output=c.output, relu=c.relu,
        pooled=c.pooled, stride=np.int64(c.stride), padding=np.int64(c.padding), dilation=np.int64(c.dilation),
        padding_mode=np.array(c.padding_mode), pool=np.array(c.pool), formula=np.array(c.formula()),
        input_name=np.array(c.input_name), kernel_name=np.array(c.kernel_name),
        layer_params=np.int64(-1 if c.layer_params is None else c.layer_params))
    if args.json:
        print(json.dumps({
            "out": str(path), "input_name": c.input_name, "kernel_name": c.kernel_name,
            "input": list(c.input.shape), "kernel": list(c.kernel.shape), "bias": c.bias,
            "output": list(c.output.shape), "relu": list(c.relu.shape), "pooled": list(c.pooled.shape),
            "stride": c.stride, "padding": c.padding, "padding_mode": c.padding_mode, "dilation": c.dilation,
            "effective_kernel": effective_kernel(c.size, c.dilation), "pool": c.pool, "formula": c.formula(),
            "parameters": c.layer_params, "parameters_formula": c.params_formula() or None,
        }, indent=1))
    else:
        print(f"saved {path}: {c.kernel_name} on {c.input_name}: input {c.input.shape}, kernel {c.kernel.shape}, "
              f"output {c.output.shape}, pooled {c.pooled.shape}; {c.formula()}")
    return 0


def _visualize_settings(args: argparse.Namespace, loaded):
    """``visualize``'s :class:`~vizapp.explain.featurevis.Settings`: the preset with the options given."""
    from vizapp.explain.featurevis import preset

    objective = args.objective or ("class" if args.target is not None else "channel")
    name = args.preset or ("DeepDream" if objective == "dream" else "Olah 2017")
    changes: dict = {"objective": objective, "layer": args.layer, "seed": args.seed, "negative": args.negative}
    if objective == "class":
        changes["target"] = _class_index(loaded, args.target)
    elif objective in ("channel", "neuron"):
        changes["channel"] = args.channel
    for option in ("method", "steps", "size", "lr", "octaves"):
        if getattr(args, option) is not None:
            changes[option] = getattr(args, option)
    if changes.get("method") == "fourier" and args.octaves is None:
        changes["octaves"] = 1  # DeepDream's octaves are a pixel method's
    return preset(name, loaded, **changes)


def _class_index(loaded, text: str) -> int:
    names = loaded.class_names or []
    n = len(names)
    if text.strip().lstrip("-").isdigit():
        index = int(text)
        if n and not 0 <= index < n:
            raise UserError(f"--class {index}: out of range; {loaded.title} has {n} classes (0 to {n - 1})")
        return index
    lowered = [c.lower() for c in names]
    if text.lower() in lowered:
        return lowered.index(text.lower())
    close = [c for c in names if text.lower() in c.lower()][:5]
    hint = f" Close: {', '.join(close)}." if close else ""
    raise UserError(f"--class '{text}': not one of {loaded.title}'s class names.{hint} Give a name or an index")


def _cmd_visualize(args: argparse.Namespace) -> int:
    import io

    from PIL import Image

    from vizapp.core.files import write_bytes
    from vizapp.explain.featurevis import PRESETS, activation, run
    from vizapp.inputs.images import load_image

    for option, path, suffix in (("--out", args.out, ".png"), ("--npz", args.npz, ".npz")):
        if path is not None:
            _check_out(option, path, suffix, named=True)
    objective = args.objective or ("class" if args.target is not None else "channel")
    if objective == "class":
        if args.target is None:
            raise UserError("--class K: the class objective needs a class (an index or a name)")
        if args.channel is not None:
            raise UserError("--channel: not with the class objective (it optimises the class's score)")
    else:
        if args.target is not None:
            raise UserError(f"--class: only with the class objective, not {objective}")
        if args.layer is None:
            raise UserError(f"--layer: the {objective} objective needs a layer (see 'vizapp layers')")
        if objective != "dream" and args.channel is None:
            raise UserError(f"--channel: the {objective} objective needs a channel")
        if objective == "dream" and args.channel is not None:
            raise UserError("--channel: not with dream (it raises the whole layer's L2)")
    name = args.preset or ("DeepDream" if objective == "dream" else "Olah 2017")
    if args.image is not None and (args.method or PRESETS[name].method) != "pixel":
        raise UserError("--image: a start image needs --method pixel (the Fourier parametrisation starts from noise)")
    image = load_image(args.image) if args.image is not None else None
    loaded = _load(args)
    settings = _visualize_settings(args, loaded)
    start = time.perf_counter()
    vis = run(loaded, settings, image, progress=_stderr_progress)
    seconds = time.perf_counter() - start
    if sys.stderr.isatty():
        print(file=sys.stderr)
    buffer = io.BytesIO()
    Image.fromarray(vis.image).save(buffer, format="PNG")
    out = write_bytes(args.out, buffer.getvalue())
    npz = _save_npz(args.npz, image=vis.image, objective_trace=vis.trace) if args.npz else None
    trace = vis.trace
    if args.json:
        summary = {
            "out": str(out), "npz": str(npz) if npz else None, "model": vis.model, "description": vis.description,
            "objective": settings.objective, "method": settings.method, "preset": settings.name,
            "steps": int(len(trace)), "size": list(vis.image.shape[:2]), "seed": settings.seed,
            "objective_first": float(trace[0]), "objective_last": float(trace[-1]),
            "objective_final": float(trace[-1]), "seconds": round(seconds, 3),
        }
        if settings.objective == "channel":
            summary["activation"] = float(activation(loaded, vis.images, settings.layer, settings.channel)[0])
        print(json.dumps(summary, indent=1))
    else:
        print(f"saved {out}{f' and {npz}' if npz else ''}: {vis.description} on {vis.model}, {len(trace)} steps "
              f"in {seconds:.1f} s, objective {trace[0]:.4g} -> {trace[-1]:.4g}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from vizapp.training.records import write_json_line
    from vizapp.training.trainer import Trainer

    config = train_config(args)
    trainer = Trainer(config, progress=_stderr_progress)
    for record in trainer.run():
        if record["type"] in ("step", "eval"):
            print(write_json_line(record), flush=True)
        elif record["type"] == "checkpoint" and record["why"] in ("finished", "stopped"):
            card = trainer.card()
            print(f"saved {record['path']}: {card['title']}, validation accuracy {card['metrics']['val_acc']}",
                  file=sys.stderr)
    return 0


#: ``train``'s options, each named as the TrainConfig field it sets (``--augment`` aside).
TRAIN_FIELDS = ("dataset", "model", "loss", "epochs", "seed", "batch_size", "lr", "optimizer", "weight_decay",
                "size", "n", "margin", "temperature", "embed_dim", "freeze", "log_every", "device", "resume", "out")


def train_config(args: argparse.Namespace):
    """The run ``train``'s arguments describe: TrainConfig's defaults, then ``--preset`` for the
    dataset (if given), then every option given on the command line."""
    from vizapp.training.config import TrainConfig
    from vizapp.training.presets import apply_preset

    config = TrainConfig()
    if args.dataset is not None:
        config.dataset = args.dataset
    if args.preset:
        config = apply_preset(config, args.preset)
    given = {name: getattr(args, name) for name in TRAIN_FIELDS if getattr(args, name) is not None}
    if args.augment is not None:
        given["augment"] = [a.strip() for arg in args.augment for a in arg.split(",") if a.strip()]
    return replace(config, **given)


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


def _scene_model(text: str) -> str:
    """``scene --model``: a registry name as is, else an existing file or folder (absolute)."""
    from models import REGISTRY

    if text in REGISTRY:
        return text
    path = Path(text).expanduser()
    if path.exists():
        return str(path.absolute())
    raise UserError(f"--model {text}: not a registry model (see 'vizapp models') and no such file or folder")


def _scene_image(text: str) -> str:
    """``scene --image``: an existing file (absolute), else a shipped sample's name, as a name."""
    from vizapp.inputs.sources import resolve_image_source

    path = Path(text).expanduser()
    if path.is_file():
        return str(path.absolute())
    resolve_image_source(text)  # not a file: a sample's name, or the one-line "no such image" error
    return text


def _cmd_scene(args: argparse.Namespace) -> int:
    from vizapp.lecture import SCENE_SUFFIX, Scene, write_scene
    from vizapp.lecture.scene import scene_to_json

    out = Path(args.out)
    if out.is_dir():
        raise UserError(f"--out {args.out}: is a folder; name the {SCENE_SUFFIX} file to write")
    if args.arch and not args.model:
        raise UserError("--arch: give the --model file it is the architecture of")
    scale = args.scale if args.scale is not None else (2.0 if args.presentation else 1.0)
    scene = Scene(model=_scene_model(args.model) if args.model else None, arch=args.arch or None,
                  image=_scene_image(args.scene_image) if args.scene_image else None,
                  layer=args.layer or None, channel=args.channel, head=args.head, target=args.target,
                  dock=args.dock, presentation=args.presentation, scale=scale, title=args.title)
    path = write_scene(out, scene)
    if args.json:
        print(json.dumps({"path": str(path), **scene_to_json(scene, path.absolute().parent)}, indent=1))
    else:
        print(f"saved {path}")
    return 0


def _cmd_live(args: argparse.Namespace) -> int:
    from array import array

    from vizapp.analysis import LIVE_STAGES, live_frames, live_summary
    from vizapp.core.files import write_json
    from vizapp.inputs.live import open_camera, open_video

    if args.out:  # a wrong --out is reported before any frame runs, as convolve and visualize do
        _check_out("--out", args.out, ".json")
    model = _load(args)
    if args.layer and not model.scripted:  # a wrong layer is reported before the camera opens
        from vizapp.probing.probe import resolve_layers

        resolve_layers(model.module, [args.layer])
    source = open_camera(args.camera) if args.video is None else open_video(args.video)
    # Every frame's record only for --out; otherwise just the stage timings (8 bytes a stage a
    # frame: a camera left running for hours stays flat).
    records: list[dict] = []
    timings = {stage: array("d") for stage in LIVE_STAGES}
    dropped = 0
    start = time.perf_counter()
    with source:
        frames = live_frames(model, source, args.layer, args.frames, realtime=args.realtime,
                             mirror=args.mirror, topk=args.top)
        try:
            while True:
                try:
                    record = next(frames)
                except StopIteration as end:
                    summary = end.value
                    break
                row = record.to_json()
                if args.out:
                    records.append(row)
                for stage in LIVE_STAGES:
                    timings[stage].append(row[stage])
                dropped = row["dropped"]
                if args.json:
                    print(json.dumps(row), flush=True)
                else:
                    top = f"{row['label']} ({100 * row['prob']:.1f}%)" if row["label"] is not None else "no classes"
                    print(f"frame {row['frame']:>5}: decode {row['decode_ms']:7.2f} ms  "
                          f"forward {row['forward_ms']:7.2f} ms  views {row['views_ms']:7.2f} ms  {top}", flush=True)
        except KeyboardInterrupt:  # a camera runs until Ctrl+C: still report what was measured
            frames.close()
            summary = live_summary(timings, time.perf_counter() - start, dropped)
    summary = {"source": source.name, "model": args.model, "layer": args.layer, "realtime": args.realtime,
               **summary}
    if args.json:
        print(json.dumps({"summary": summary}), flush=True)
    else:
        print(_live_table(summary))
    if args.out:
        write_json(args.out, {"frames": records, "summary": summary}, indent=1)
    return 0


def _live_table(summary: dict) -> str:
    lines = [f"{summary['frames']} frames in {summary['seconds']:.2f} s: {summary['fps']:.2f} fps, "
             f"{summary['dropped']} dropped"]
    for stage in ("decode_ms", "forward_ms", "views_ms", "total_ms"):
        s = summary.get(stage)
        if s:
            lines.append(f"  {stage[:-3]:<8} mean {s['mean']:8.2f} ms  median {s['median']:8.2f} ms  p95 {s['p95']:8.2f} ms")
    return "\n".join(lines)


def _cmd_doctor(args: argparse.Namespace) -> int:
    from vizapp.cli.doctor import cmd_doctor

    return cmd_doctor(args)


#: The headless commands by name (the GUI ones, ``gui``, ``screenshot`` and doctor's hidden Qt
#: child ``_doctor-qt``, come from ``main.py``).
COMMANDS: dict[str, Handler] = {
    "models": _cmd_models,
    "layers": _cmd_layers,
    "predict": _cmd_predict,
    "features": _cmd_features,
    "attention": _cmd_attention,
    "attribute": _cmd_attribute,
    "convolve": _cmd_convolve,
    "train": _cmd_train,
    "index": _cmd_index,
    "top-patches": _cmd_top_patches,
    "embed": _cmd_embed,
    "scene": _cmd_scene,
    "live": _cmd_live,
    "visualize": _cmd_visualize,
    "doctor": _cmd_doctor,
}

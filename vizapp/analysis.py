"""The jobs behind the views: open a model, look at a layer for an image, read kernels.

Each is a plain function taking ``progress`` and ``cancel`` keywords and returning
plain numpy records; the GUI runs them on its worker thread, tests call them directly.
"""

from __future__ import annotations

import threading
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from vizapp.core.errors import OutOfMemory, UserError
from vizapp.core.jobs import CancelToken, Progress, no_progress

__all__ = [
    "OpenedModel",
    "attention",
    "attribution",
    "LayerAnalysis",
    "analyse_image",
    "analyse_kernels",
    "catalog",
    "classic_vs_learned",
    "convolution",
    "decode_image",
    "embed_index",
    "feature_vis",
    "index_layer",
    "LiveFrame",
    "live_frames",
    "live_summary",
    "neighbours",
    "move_to_device",
    "open_collection",
    "open_collection_item",
    "open_model",
    "thumbnail",
    "thumbnails",
    "top_projections",
]


@dataclass
class OpenedModel:
    model: object  # LoadedModel
    layers: list
    notes: list[str] = field(default_factory=list)


@dataclass
class LayerAnalysis:
    """One image through the model with one layer captured.

    ``maps`` is the layer's output as ``C x H x W`` (see ``vizapp.probing.mosaic.as_channel_maps``).
    """

    display: np.ndarray
    predictions: list
    layer: str | None
    maps: np.ndarray | None
    mosaic: object | None  # Mosaic
    shape: tuple[int, ...] | None
    notes: list[str] = field(default_factory=list)
    sort: str = "index"
    norm: str = "channel"


def open_model(
    name: str,
    arch: str | None = None,
    trust: bool = False,
    device: str | None = None,
    *,
    progress: Progress = no_progress,
    cancel: CancelToken | None = None,
) -> OpenedModel:
    from models import load_model
    from vizapp.probing.device import check_device, default_device, move_model
    from vizapp.probing.layers import layer_table

    target = check_device(device) if device else default_device()
    loaded = load_model(name, arch=arch, trust=trust, progress=progress, cancel=cancel)
    notes = list(loaded.notes)
    if target != "cpu":
        message = move_model(loaded, target)
        if message:
            notes.append(message)
    progress(0, 0, f"reading the layers of {loaded.title}")
    return OpenedModel(loaded, layer_table(loaded), notes)


def analyse_image(
    model,
    image,
    layer: str | None,
    sort: str = "index",
    norm: str = "channel",
    topk: int = 10,
    *,
    progress: Progress = no_progress,
    cancel: CancelToken | None = None,
) -> LayerAnalysis:
    """Predictions, the model's-eye input, and ``layer``'s maps and mosaic for ``image``."""
    pil = image.to_pil() if hasattr(image, "to_pil") else image
    progress(0, 0, f"running {model.title}")
    result, notes = _forward(model, pil, layer, topk, cancel)
    return _layer_views(model, result, layer, sort, norm, notes)


def _forward(model, pil, layer: str | None, topk: int, cancel: CancelToken | None):
    """``analyse_image``'s forward pass (falling back to the CPU when the device runs out of
    memory): ``(InferenceResult, notes)``."""
    from vizapp.probing.device import move_model
    from vizapp.probing.inference import run

    layers = [layer] if layer and not model.scripted else []
    notes = []
    try:
        result = run(model, pil, layers, topk=topk, cancel=cancel)
    except OutOfMemory:
        notes.append(f"{model.device} ran out of memory: {model.title} moved to the CPU")
        move_model(model, "cpu")
        result = run(model, pil, layers, topk=topk, cancel=cancel)
    return result, notes


def _layer_views(model, result, layer: str | None, sort: str, norm: str, notes: list[str]) -> LayerAnalysis:
    """``analyse_image``'s views after the forward pass: the layer's maps and mosaic."""
    from vizapp.probing.mosaic import as_channel_maps, feature_mosaic

    if layer and model.scripted:
        notes.append("TorchScript model: feature maps need the eager model")
    calls = result.calls.get(layer, 1) if layer else 1
    if calls > 1:
        notes.append(f"{layer} runs {calls} times per forward pass (a shared module); showing its last call")
    activation = result.activations.get(layer) if layer else None
    maps = mosaic = None
    if activation is not None:
        maps = as_channel_maps(activation)
        mosaic = feature_mosaic(maps, sort=sort, norm=norm)
    return LayerAnalysis(
        display=result.display,
        predictions=result.predictions,
        layer=layer,
        maps=maps,
        mosaic=mosaic,
        shape=None if activation is None else tuple(activation.shape),
        notes=notes,
        sort=sort,
        norm=norm,
    )


@dataclass
class LiveFrame:
    """One frame of a camera or video through the model (:func:`live_frames`): what
    :func:`analyse_image` gives for it, and how long each stage took (milliseconds)."""

    index: int                 # frames analysed before this one
    serial: int                # the source's frame number (1-based; gaps where frames were dropped)
    frame: np.ndarray          # H x W x 3 uint8 RGB, as read (mirrored when asked)
    analysis: LayerAnalysis
    decode_ms: float           # reading and decoding the frame (on the reader thread when realtime)
    forward_ms: float          # preprocessing and the forward pass with the layer captured, top-k
    views_ms: float            # the layer's maps and feature mosaic
    dropped: int = 0           # frames dropped so far (realtime: the model was slower than the source)
    source: str = ""           # the source's name ("camera 0", the video's file name)

    def as_image(self):
        """This frame as an :class:`~vizapp.session.ImageRecord` (to keep it as the image)."""
        from vizapp.session import ImageRecord

        return ImageRecord(self.frame, f"{self.source}, frame {self.serial}", None)

    @property
    def total_ms(self) -> float:
        return self.decode_ms + self.forward_ms + self.views_ms

    @property
    def top1(self) -> int | None:
        """The most probable class's index (None for a model without a classifier head)."""
        return self.analysis.predictions[0].index if self.analysis.predictions else None

    @property
    def label(self) -> str | None:
        return self.analysis.predictions[0].label if self.analysis.predictions else None

    def to_json(self) -> dict:
        """The record ``vizapp live --json`` prints (no arrays)."""
        return {
            "frame": self.index, "serial": self.serial,
            "decode_ms": round(self.decode_ms, 3), "forward_ms": round(self.forward_ms, 3),
            "views_ms": round(self.views_ms, 3), "total_ms": round(self.total_ms, 3),
            "top1": self.top1, "label": self.label,
            "prob": self.analysis.predictions[0].prob if self.analysis.predictions else None,
            "predictions": [p.to_json() for p in self.analysis.predictions],
            "dropped": self.dropped,
        }


#: The stages :func:`live_summary` reports, as :class:`LiveFrame` attributes.
LIVE_STAGES = ("decode_ms", "forward_ms", "views_ms", "total_ms")


def live_summary(records, seconds: float, dropped: int = 0) -> dict:
    """Mean, median and 95th percentile of each stage over ``records`` (:class:`LiveFrame` records,
    their ``to_json()`` dicts, or ``{stage: [milliseconds, ...]}`` for every stage of
    :data:`LIVE_STAGES`), with the frames analysed per second of ``seconds`` and ``dropped``."""
    if isinstance(records, dict):
        return _summary(records, len(records[LIVE_STAGES[0]]), seconds, dropped)
    rows = [r.to_json() if isinstance(r, LiveFrame) else r for r in records]
    return _summary({stage: [r[stage] for r in rows] for stage in LIVE_STAGES}, len(rows), seconds, dropped)


def _summary(stages: dict, count: int, seconds: float, dropped: int) -> dict:
    out: dict = {"frames": count, "dropped": int(dropped), "seconds": round(seconds, 3),
                 "fps": round(count / seconds, 2) if seconds > 0 else 0.0}
    for stage in LIVE_STAGES:
        values = np.asarray(stages[stage], dtype=float)
        out[stage] = ({"mean": round(float(values.mean()), 3), "median": round(float(np.median(values)), 3),
                       "p95": round(float(np.percentile(values, 95)), 3)} if values.size else None)
    return out


class _TimedReads:
    """A frame source whose reads are timed (for the realtime reader thread): what ``pump``
    reads, with each read's milliseconds kept by the serial ``LatestFrame.put`` will give it."""

    def __init__(self, source) -> None:
        self._source = source
        self.reads = 0
        self.times: dict[int, float] = {}
        self._lock = threading.Lock()

    def __getattr__(self, name):
        return getattr(self._source, name)

    def read(self):
        start = time.perf_counter()
        frame = self._source.read()
        if frame is not None:
            with self._lock:
                self.reads += 1
                self.times[self.reads] = 1000 * (time.perf_counter() - start)
                if len(self.times) > 64:  # frames nobody took: forget their times
                    for key in sorted(self.times)[:-32]:
                        del self.times[key]
        return frame

    def time_of(self, serial: int) -> float:
        with self._lock:
            return self.times.pop(serial, 0.0)


def live_frames(
    model,
    source,
    layer: str | None,
    frames: int | None = None,
    *,
    realtime: bool = False,
    loop: bool = False,
    mirror: bool | Callable[[], bool] = False,
    sort: str = "index",
    norm: str = "channel",
    topk: int = 5,
    progress: Progress = no_progress,
    cancel: CancelToken | None = None,
):
    """A camera or video through ``model``, frame by frame: a generator of :class:`LiveFrame`
    (each what :func:`analyse_image` gives for that frame, with its stages timed) whose return
    value is :func:`live_summary`'s dict.

    ``source`` is a :class:`vizapp.inputs.live.FrameSource` (left open) or a spec for
    :func:`~vizapp.inputs.live.open_source` (``"camera"``, ``"camera:1"``, a video's path; opened
    and closed here). Stops after ``frames`` frames, at the end of a video, or on ``cancel``
    (:class:`~vizapp.core.errors.Cancelled`). Without ``realtime`` every frame is analysed, as
    fast as the model goes; with it a reader thread plays the source at its own speed through a
    :class:`~vizapp.inputs.live.LatestFrame` and the frames the model cannot keep up with are
    dropped (counted in ``dropped``). ``loop`` starts a video again at its end; ``mirror`` (a
    bool, or a callable asked per frame, for a window's toggle) flips frames left-right. A camera
    lost mid-stream raises :class:`~vizapp.inputs.live.LiveError`.
    """
    import os

    from PIL import Image

    from vizapp.inputs.live import FrameSource, LatestFrame, open_source, pump

    if layer and not model.scripted:
        from vizapp.probing.probe import resolve_layers

        resolve_layers(model.module, [layer])  # a wrong name fails before the source opens
    owned = not isinstance(source, FrameSource)
    if owned:
        source = open_source(source if isinstance(source, str) else os.fspath(source))
    total = frames or (0 if loop else source.frames) or 0
    mirrored = mirror if callable(mirror) else (lambda: bool(mirror))
    # Only the stage times are kept (8 bytes each): a camera left running for hours stays flat.
    stages = {stage: array("d") for stage in LIVE_STAGES}
    count = 0
    slot = reader = timed = None
    stop = CancelToken()
    failure: list[BaseException] = []
    start = time.perf_counter()
    try:
        if realtime:
            slot, timed = LatestFrame(), _TimedReads(source)

            def read_all() -> None:
                try:
                    pump(timed, slot, cancel=stop, realtime=True, loop=loop, mirror=mirrored)
                except BaseException as exc:  # noqa: BLE001 - handed to the consumer below
                    failure.append(exc)
                    slot.close()

            reader = threading.Thread(target=read_all, name="vizapp-live-reader", daemon=True)
            reader.start()
        while frames is None or count < frames:
            if cancel is not None:
                cancel.check()
            if realtime:
                got = slot.take(timeout=0.1)
                if got is None:
                    if slot.closed:
                        break
                    continue
                t0 = time.perf_counter()
                frame, serial = got
                decode_ms = timed.time_of(serial)
            else:
                t0 = time.perf_counter()
                frame = source.read()
                if frame is None and loop and count and source.rewind():
                    frame = source.read()
                if frame is None:
                    break
                if mirrored():
                    frame = np.ascontiguousarray(frame[:, ::-1])
                serial = source.position
                decode_ms = 0.0
            pil = Image.fromarray(frame, "RGB")
            t1 = time.perf_counter()
            result, notes = _forward(model, pil, layer, topk, cancel)
            t2 = time.perf_counter()
            analysis = _layer_views(model, result, layer, sort, norm, notes)
            t3 = time.perf_counter()
            record = LiveFrame(count, serial, frame, analysis, decode_ms + 1000 * (t1 - t0),
                               1000 * (t2 - t1), 1000 * (t3 - t2), slot.dropped if slot is not None else 0,
                               source.name)
            for stage in LIVE_STAGES:
                stages[stage].append(getattr(record, stage))
            count += 1
            progress(count, total, f"{source.name}: frame {count}")
            yield record
        if failure:
            raise failure[0]
    finally:
        stop.cancel()
        if reader is not None:
            reader.join(timeout=10)
        if owned:
            source.close()
    dropped = slot.dropped if slot is not None else 0
    return _summary(stages, count, time.perf_counter() - start, dropped)


def attention(model, image, target=None, gradient: bool = False, *, progress: Progress = no_progress,
              cancel: CancelToken | None = None):
    """Every head's attention for ``image`` (see :func:`vizapp.explain.attention.analyse_attention`)."""
    from vizapp.explain.attention import analyse_attention

    return analyse_attention(model, image, target, gradient, progress=progress, cancel=cancel)


def attribution(model, image, method: str, target=None, layer: str | None = None, *,
                progress: Progress = no_progress, cancel: CancelToken | None = None):
    """One attribution method's map for ``image`` (see :func:`vizapp.explain.attribution.attribute`)."""
    from vizapp.explain.attribution import attribute

    return attribute(model, image, method, target, layer, progress=progress, cancel=cancel)


def convolution(model, image, layer: str, channel: int, *, progress: Progress = no_progress,
                cancel: CancelToken | None = None, **options):
    """One output channel of conv ``layer`` for ``image``, step by step (a
    :class:`~vizapp.explain.convolution.Convolution`; ``options`` are
    :func:`~vizapp.explain.convolution.explain`'s: ``input_channel``, ``kernel``, ``kernel_size``,
    ``weights``, ``stride``, ``padding``, ``padding_mode``, ``dilation``, ``pool``)."""
    from vizapp.explain.convolution import explain

    progress(0, 0, f"convolving {layer}, channel {channel}")
    if cancel is not None:
        cancel.check()
    result = explain(model, image, layer, channel, **options)
    if cancel is not None:
        cancel.check()
    return result


def classic_vs_learned(model, image, *, progress: Progress = no_progress, cancel: CancelToken | None = None,
                       **options) -> dict:
    """The classic filters on ``image`` beside the first conv layer's maps (see
    :func:`vizapp.explain.convolution.classic_vs_learned`; ``options``: ``kernels``, ``count``)."""
    from vizapp.explain import convolution as conv

    progress(0, 0, f"classic filters and {model.title}'s first layer")
    if cancel is not None:
        cancel.check()
    result = conv.classic_vs_learned(model, image, **options)
    if cancel is not None:
        cancel.check()
    return result


def feature_vis(model, settings, image=None, *, progress: Progress = no_progress,
                cancel: CancelToken | None = None):
    """An image optimised to excite a unit, step by step (a generator job: yields
    :class:`~vizapp.explain.featurevis.Step` with a preview every few steps, returns the
    :class:`~vizapp.explain.featurevis.Visualisation`; see
    :func:`vizapp.explain.featurevis.visualize`). ``image`` is DeepDream's start image."""
    from vizapp.explain.featurevis import visualize

    progress(0, settings.steps, "feature visualisation")
    return (yield from visualize(model, settings, image, progress=progress, cancel=cancel))


def move_to_device(model, device: str, *, progress: Progress = no_progress, cancel: CancelToken | None = None) -> str:
    """Move ``model`` to ``device``; returns a message if it fell back to the CPU."""
    from vizapp.probing.device import check_device, move_model

    device = check_device(device)
    if device == model.device:
        return ""
    progress(0, 0, f"moving {model.title} to {device}")
    return move_model(model, device) or ""


def catalog(*, progress: Progress = no_progress, cancel: CancelToken | None = None):
    """``([(spec, usable offline)], devices)`` for the model picker (checks caches on disk): the
    models this machine shows (its config's ``models`` list; on an offline-only machine, only
    those whose weights are here)."""
    from models.catalog import model_catalog
    from vizapp.probing.device import available_devices

    return [(e.spec, e.offline) for e in model_catalog() if e.shown], available_devices()


def analyse_kernels(model, layer: str | None, mode: str = "auto", norm: str = "filter", *,
                    progress: Progress = no_progress, cancel: CancelToken | None = None):
    """The kernels to show for ``layer`` (see ``vizapp.probing.kernels.kernel_layer``), or None."""
    from vizapp.probing.kernels import kernel_layer, kernel_mosaic, kernel_weights

    conv = kernel_layer(model, layer)
    if conv is None:
        return None
    return kernel_mosaic(kernel_weights(model, conv), conv, mode=mode, norm=norm)


def decode_image(source, *, progress: Progress = no_progress, cancel: CancelToken | None = None):
    """Read a file path (or bytes) into an :class:`~vizapp.session.ImageRecord`."""
    from pathlib import Path

    from vizapp.inputs.images import load_image
    from vizapp.session import ImageRecord

    image = load_image(source)
    if isinstance(source, bytes):
        return ImageRecord(np.asarray(image), "pasted image", None)
    return ImageRecord(np.asarray(image), Path(source).name, str(source))


def thumbnails(paths, size: int = 96, *, progress: Progress = no_progress, cancel: CancelToken | None = None):
    """Square-ish uint8 thumbnails for a gallery, skipping unreadable files."""
    from vizapp.core.errors import ImageError
    from vizapp.inputs.images import load_image

    out = []
    for i, (name, path) in enumerate(paths):
        if cancel is not None:
            cancel.check()
        try:
            im = load_image(path)
        except ImageError:
            continue
        im.thumbnail((size, size))
        out.append((name, str(path), np.asarray(im).copy()))
        progress(i + 1, len(paths), "thumbnails")
    return out


def open_collection(spec: str, *, progress: Progress = no_progress, cancel: CancelToken | None = None):
    """A folder, ``samples`` or a torchvision set name, as an ImageCollection."""
    from vizapp.collection.datasets import open_collection as _open

    progress(0, 0, f"reading {spec}")
    return _open(spec, progress=progress, cancel=cancel) if spec in ("mnist", "fashion-mnist", "cifar10") else _open(spec)


def index_layer(model, collection, layer: str, k: int = 9, *, progress: Progress = no_progress,
                cancel: CancelToken | None = None):
    """The collection's index for one layer (from the cache when up to date).

    In the GUI the DataLoader runs in this thread (``workers=0``): forking worker
    processes from a threaded Qt app is not safe.
    """
    from vizapp.collection.indexing import build_index

    return build_index(model, collection, [layer], k=k, workers=0, batch_size=16, progress=progress, cancel=cancel)


def top_projections(model, collection, index, layer: str, channel: int, method: str = "deconvnet", *,
                    progress: Progress = no_progress, cancel: CancelToken | None = None):
    """The deconvnet (or guided backprop) projections of ``channel``'s top-k units in the index,
    best first, each cropped to its unit's receptive box (a
    :class:`~vizapp.explain.projection.Projections`; see :mod:`vizapp.explain.projection`)."""
    from vizapp.explain.projection import TITLES, project_units
    from vizapp.inputs.images import load_image

    patches = index.top_patches(layer, channel)
    meta = index.manifest["layers"][layer]
    what = f"{TITLES.get(method, method)} projections of {layer} channel {channel}"
    images, opened = [], {}
    for i, p in enumerate(patches):
        if cancel is not None:
            cancel.check()
        progress(i, len(patches) + 1, what)
        if p.index not in opened:
            opened[p.index] = collection.open(p.index) if collection is not None else load_image(p.image)
        images.append(opened[p.index])
    progress(len(patches), len(patches) + 1, what)
    result = project_units(model, images, layer, [(channel, p.y, p.x) for p in patches],
                           tuple(meta["map_size"]), bool(meta["tokens"]), method, cancel)
    result.channel, result.patches = channel, patches
    progress(len(patches) + 1, len(patches) + 1, what)
    return result


def open_collection_item(collection, key: str, *, progress: Progress = no_progress, cancel: CancelToken | None = None):
    """A dataset item (``<set>:<split>:<index>``) as an :class:`~vizapp.session.ImageRecord`."""
    from vizapp.session import ImageRecord

    return ImageRecord(np.asarray(collection.open_key(key)), key, None)


def embed_index(model, index, method: str = "pca", seed: int = 0, *, progress: Progress = no_progress,
                cancel: CancelToken | None = None):
    """The collection's embedding from an index's pooled features, with predicted classes.

    When the features are the classifier's input (the default), the classifier turns
    them into each image's predicted class, so the scatter can be coloured by it.
    """
    import torch

    from vizapp.collection.embedding import Embedding
    from vizapp.collection.projection import project

    features = index.features()
    if features is None:
        raise UserError("this index has no per-image features; index the collection again")
    keep = np.setdiff1d(np.arange(len(index.paths)), np.asarray(index.skipped, dtype=np.int64))
    feats = np.asarray(features[keep], dtype=np.float32)
    predicted = None
    head = dict(model.module.named_modules()).get(index.manifest.get("feature_layer", ""))
    if isinstance(head, torch.nn.Linear) and head.in_features == feats.shape[1]:
        with torch.inference_mode():
            logits = head(torch.as_tensor(feats, device=model.device))
        predicted = [model.label(int(i)) for i in logits.argmax(dim=1).cpu()]
    coords = project(feats, method, seed=seed, progress=progress, cancel=cancel)
    return Embedding(feats, coords, [index.paths[i] for i in keep], [index.labels[i] for i in keep], method, predicted)


def thumbnail(collection, key: str, size: int = 128, *, progress: Progress = no_progress,
              cancel: CancelToken | None = None) -> np.ndarray:
    """A small picture of one collection image (path or dataset key)."""
    from vizapp.inputs.images import load_image

    image = collection.open_key(key) if collection is not None else load_image(key)
    image.thumbnail((size, size))
    return np.asarray(image).copy()


def neighbours(embedding, i: int, collection, k: int = 8, *, progress: Progress = no_progress,
               cancel: CancelToken | None = None):
    """``(i, indices, cosine similarities, thumbnails)`` of image ``i``'s nearest neighbours."""
    from vizapp.collection.embedding import nearest
    from vizapp.core.errors import ImageError

    indices, sims = nearest(embedding.features, i, k=min(k, len(embedding) - 1))
    thumbs = []
    for j in indices:
        if cancel is not None:
            cancel.check()
        try:
            thumbs.append(thumbnail(collection, embedding.paths[int(j)], 96))
        except ImageError:
            thumbs.append(np.full((96, 96, 3), 16, np.uint8))
    return i, indices, sims, thumbs

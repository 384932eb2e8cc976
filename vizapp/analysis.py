"""The jobs behind the views: open a model, look at a layer for an image, read kernels.

Each is a plain function taking ``progress`` and ``cancel`` keywords and returning
plain numpy records; the GUI runs them on its worker thread, tests call them directly.
"""

from __future__ import annotations

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
    "index_layer",
    "neighbours",
    "move_to_device",
    "open_collection",
    "open_collection_item",
    "open_model",
    "thumbnail",
    "thumbnails",
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
    from vizapp.probing.device import move_model
    from vizapp.probing.inference import run
    from vizapp.probing.mosaic import as_channel_maps, feature_mosaic

    pil = image.to_pil() if hasattr(image, "to_pil") else image
    layers = [layer] if layer and not model.scripted else []
    notes = []
    progress(0, 0, f"running {model.title}")
    try:
        result = run(model, pil, layers, topk=topk, cancel=cancel)
    except OutOfMemory:
        notes.append(f"{model.device} ran out of memory: {model.title} moved to the CPU")
        move_model(model, "cpu")
        result = run(model, pil, layers, topk=topk, cancel=cancel)
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

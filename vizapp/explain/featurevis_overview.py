"""The layer overview: every channel's feature visualisation of one layer, kept on disk.

:func:`overview` optimises each channel's image with :mod:`vizapp.explain.featurevis`, ``settings.batch``
channels at once (the engine's per-image channel objective: ``Settings(channel=(c0, c1, ...))``),
and yields ``(channel, image)`` as each group is done. Every group is written to the cache as soon as
it is finished (``<cache>/featurevis/<key>/c<first>-<last>.npz``, atomically through
:mod:`vizapp.core.files`), so a cancelled overview keeps what it finished and the next one reads those
groups back and computes only the rest; a second overview of the same layer and settings computes
nothing. The key is a hash of the model's weights, its preprocessing and device type, the layer
and the settings (the channel left out, the steps, size, seed, regularisers and batch in), as the
collection index is keyed (``vizapp/collection/index_store.py``): other weights or settings, another
folder. The groups are always the same (``batch`` consecutive channels of the layer), so a resumed
overview gives the same images as one that was never stopped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Generator, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from vizapp.core.errors import UserError
from vizapp.core.files import write_json, write_npz
from vizapp.core.jobs import CancelToken, Progress, no_progress
from vizapp.explain import featurevis
from vizapp.explain.featurevis import Settings

__all__ = ["FORMAT_VERSION", "Overview", "cache_folder", "layer_channels", "overview", "overview_key"]

#: Bumped when the files or what a key covers change (older folders are then not read).
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Overview:
    """Every channel's visualisation of ``layer``: ``images`` is ``C x H x W x 3`` uint8 (image ``c``
    is channel ``c``); ``cached`` channels were read from ``folder``, ``computed`` were optimised now."""

    layer: str
    images: np.ndarray
    settings: Settings
    model: str
    folder: Path
    cached: int = 0
    computed: int = 0


def weights_hash(module: torch.nn.Module) -> str:
    """SHA-256 of the state dict (names and bytes), as the collection index keys its folders."""
    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _keyed(settings: Settings, layer: str) -> Settings:
    """The settings as the cache sees them: a channel objective of ``layer``, whatever channel; the
    preview rate and the preset's name (which change no pixel) left out."""
    return replace(settings, objective="channel", layer=layer, channel=None, target=None, neuron=None,
                   preview_every=0, name="")


def overview_key(model, layer: str, settings: Settings) -> str:
    """What an overview depends on: format, weights, preprocessing, device type, layer, settings."""
    parts = [f"v{FORMAT_VERSION}", weights_hash(model.module), repr(model.preprocess),
             torch.device(model.device).type, layer, repr(_keyed(settings, layer))]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def cache_folder(model, layer: str, settings: Settings) -> Path:
    """``<cache>/featurevis/<key>``: where this overview's groups are kept."""
    from vizapp.core.paths import cache_dir

    return cache_dir() / "featurevis" / overview_key(model, layer, settings)


def layer_channels(model, layer: str) -> int:
    """How many channels ``layer``'s output has as maps (``vizapp.probing.mosaic.as_channel_maps``):
    one forward pass of a blank input, modules in training mode switched to eval for it and back."""
    from vizapp.probing.inference import training_modules
    from vizapp.probing.mosaic import as_channel_maps
    from vizapp.probing.probe import capture

    side, module = model.input_size, model.module
    x = torch.zeros(1, model.preprocess.channels, side, side, device=model.device)
    training = training_modules(module)
    for m in training:
        m.training = False
    try:
        with torch.no_grad(), capture(module, [layer]) as got:
            module(x)
    finally:
        for m in training:
            m.training = True
    if got.get(layer) is None:
        raise UserError(f"layer '{layer}' produced no tensor output; pick another layer")
    return int(as_channel_maps(got[layer][0].float().cpu().numpy()).shape[0])


def _groups(channels: list[int], batch: int) -> list[tuple[int, ...]]:
    return [tuple(channels[i:i + batch]) for i in range(0, len(channels), batch)]


def _group_file(folder: Path, group: tuple[int, ...]) -> Path:
    return folder / f"c{group[0]:05d}-{group[-1]:05d}-{len(group)}.npz"


def _read_group(path: Path, group: tuple[int, ...]) -> np.ndarray | None:
    """The group's images from the cache, or None (missing, unreadable, another group)."""
    if not path.is_file():
        return None
    try:
        with np.load(path) as f:
            if tuple(int(c) for c in f["channels"]) != group:
                return None
            images = np.asarray(f["images"])
    except (OSError, ValueError, KeyError):
        return None  # a damaged file is computed again (and replaced)
    return images if images.ndim == 4 and images.shape[0] == len(group) and images.dtype == np.uint8 else None


def overview(model, layer: str, settings: Settings, channels: Iterable[int] | None = None, *,
             progress: Progress = no_progress, cancel: CancelToken | None = None,
             ) -> Generator[tuple[int, np.ndarray], None, Overview]:
    """Every channel's visualisation of ``layer`` on ``model`` (a ``LoadedModel``), ``settings.batch``
    channels at once, read from the cache where done before.

    A generator: yields ``(channel, H x W x 3 uint8)`` as each is ready (cached ones first, at once)
    and returns an :class:`Overview` of the channels asked for (``channels``: default all, in order).
    ``settings`` is taken as a channel objective of ``layer`` (its objective, channel and class are
    ignored). ``cancel`` is polled every optimisation step; the groups finished stay on disk.
    """
    if not layer:
        raise UserError("layer: the overview needs a layer (see 'vizapp layers')")
    n = layer_channels(model, layer)
    wanted = list(range(n)) if channels is None else [int(c) for c in channels]
    bad = [c for c in wanted if not 0 <= c < n]
    if bad:
        raise UserError(f"channel: {bad[0]} is out of range; {layer} has {n} channels (0 to {n - 1})")
    if not wanted:
        raise UserError("channels: give at least one channel")
    s = _keyed(settings, layer)
    batch = max(1, int(s.batch))
    folder = cache_folder(model, layer, s)
    groups = _groups(list(range(n)) if channels is None else wanted, batch)
    found: dict[int, np.ndarray] = {}
    todo = []
    for group in groups:
        images = _read_group(_group_file(folder, group), group)
        if images is None:
            todo.append(group)
            continue
        for c, image in zip(group, images, strict=True):
            found[c] = image
    cached = len(found)
    for c in wanted:
        if c in found:
            yield c, found[c]
    if todo:
        write_json(folder / "manifest.json", {
            "version": FORMAT_VERSION, "model": model.title, "layer": layer, "channels": n, "batch": batch,
            "settings": repr(s)})
    done = cached
    for group in todo:
        if cancel is not None:
            cancel.check()

        def step_progress(i: int, total: int, _text: str, group=group, done=done) -> None:
            progress(done, len(wanted), f"{layer}: channels {group[0]}-{group[-1]}, step {i}/{total}")

        vis = featurevis.run(model, replace(s, channel=group, batch=len(group)), progress=step_progress,
                             cancel=cancel)
        write_npz(_group_file(folder, group), images=vis.images, channels=np.asarray(group, np.int64),
                  trace=vis.trace)
        for c, image in zip(group, vis.images, strict=True):
            found[c] = image
            done += 1
            yield c, image
        progress(done, len(wanted), f"{layer}: {done} of {len(wanted)} channels")
    images = np.stack([found[c] for c in wanted])
    return Overview(layer, images, s, model.title, folder, cached=cached, computed=len(wanted) - cached)

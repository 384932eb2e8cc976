"""One batched pass over an image collection: per-channel top-k units and pooled features.

For each chosen layer, a streaming top-k keeps, for every channel at once, the k
images whose maximum activation in that channel is highest, with where the maximum
was. Per batch the running top-k is concatenated with the batch's per-channel maxima
and re-sorted on the device, so memory does not grow with the collection. Ties are
broken by image order, so a sharded (torchrun) index merges to exactly the same result.

At the end each winner's unit is mapped to the box of the original image it sees
(``vizapp.explain.receptive``), and the index is written to a folder that is reused when the
model weights, collection, layers and preprocessing are unchanged.

A folder holds one complete index and at most one build in progress. Every build
writes files of its own (``items-<build>.json``, ``features-<build>.npy``,
``topk-<build>-<layer>.npz``; its checkpoints go to ``progress.json`` and
``*.partial.npz``), and ``manifest.json``, replaced atomically when the build is
complete, names the files of the complete index: a kill, a full disk or another
build into the same folder (a shared ``embed --cache``) never pairs a manifest with
data it does not describe, and the previous index stays usable until the new one
replaces it. The features file's space is reserved before it is memory-mapped, so a
full disk is a :class:`~vizapp.core.errors.StorageError` up front, not a SIGBUS mid-write.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models import LoadedModel, Preprocess
from vizapp.collection.datasets import ImageCollection
from vizapp.core.errors import ImageError, LayerError, StorageError, UserError
from vizapp.core.files import storage_errors, write_npz, write_text
from vizapp.core.jobs import CancelToken, Progress, no_progress
from vizapp.probing.mosaic import token_prefix
from vizapp.probing.probe import capture, first_tensor, resolve_layers

__all__ = ["StreamingTopK", "Index", "Patch", "build_index", "index_key", "default_cache_dir", "ALL_CONV"]

FORMAT_VERSION = 1  # manifests without "files" (the first layout) still load
MANIFEST = "manifest.json"
PROGRESS = "progress.json"
ALL_CONV = "all-conv"
_CHECKPOINT_SECONDS = 20.0


# --- streaming top-k ----------------------------------------------------------


def _as_maps(t: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """A batch of layer outputs as ``B x C x H x W`` maps; True if they were ViT tokens."""
    if t.ndim == 4:
        if t.shape[1] == t.shape[2] != t.shape[3]:  # channels-last (ConvNeXt blocks)
            return t.permute(0, 3, 1, 2), False
        return t, False
    if t.ndim == 3:
        n = t.shape[1]
        extra = token_prefix(n)
        if extra is not None:
            side = math.isqrt(n - extra)
            return t[:, extra:].transpose(1, 2).reshape(t.shape[0], t.shape[2], side, side), True
    if t.ndim == 2:
        return t[:, :, None, None], False
    raise LayerError(f"cannot index a layer output of shape {tuple(t.shape[1:])}")


class StreamingTopK:
    """Running top-k over images, for all channels of one layer at once (on the device).

    Besides the winners it keeps, per channel, what tells noise from signal:

    - ``ties``: how many images that were left out share the k-th value (ReLU6
      saturating at 6.0 in many images, a unit that is 0 almost everywhere). When it is
      above 0 the k shown are not "the top k" but the first in collection order among
      equals. Exact for any batching and for a merge of shards: an image whose value
      is above the k-th is always kept, so only the k-th value's ties are ever left out.
    - ``low``: the smallest value of any unit of the channel (every position of every
      image). ``low == values[0]`` means the channel has one value everywhere: dead.
    """

    def __init__(self, k: int, channels: int, device: torch.device | str = "cpu") -> None:
        self.k = k
        self.values = torch.full((k, channels), -math.inf, device=device)
        self.images = torch.full((k, channels), -1, dtype=torch.int64, device=device)
        self.positions = torch.zeros((k, channels), dtype=torch.int64, device=device)
        self.ties = torch.zeros(channels, dtype=torch.int64, device=device)
        self.low = torch.full((channels,), math.inf, device=device)

    def update(self, maps: torch.Tensor, image_ids: torch.Tensor) -> None:
        """``maps``: ``B x C x H x W`` for images ``image_ids`` (ascending)."""
        b, c = maps.shape[:2]
        flat = maps.reshape(b, c, -1).float()
        values, positions = flat.max(dim=2)
        self.low = torch.minimum(self.low, flat.amin(dim=(0, 2)))
        ids = image_ids.to(self.images.device).view(b, 1).expand(b, c)
        self._select(
            torch.cat([self.values, values]), torch.cat([self.images, ids]), torch.cat([self.positions, positions]),
            [(self.values[-1], self.ties)],
        )

    def _select(self, values: torch.Tensor, images: torch.Tensor, positions: torch.Tensor,
                carried: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Keep the k best rows; ``carried``: ``(k-th value, ties)`` of the states merged here."""
        # Stable descending sort: among equal values the earlier row (earlier image) wins.
        order = torch.sort(values, dim=0, descending=True, stable=True).indices
        keep, rest = order[: self.k], order[self.k:]
        self.values = values.gather(0, keep)
        self.images = images.gather(0, keep)
        self.positions = positions.gather(0, keep)
        kth = self.values[-1]
        ties = ((values.gather(0, rest) == kth) & (images.gather(0, rest) >= 0)).sum(dim=0)
        for old_kth, old_ties in carried:  # ties left out before still tie if the k-th value stayed
            ties = ties + torch.where(old_kth.to(kth.device) == kth, old_ties.to(kth.device), 0)
        self.ties = torch.where(self.images[-1] >= 0, ties, 0)

    @classmethod
    def merge(cls, parts: list[StreamingTopK]) -> StreamingTopK:
        """The top-k of several partial results (e.g. one per torchrun rank)."""
        values = torch.cat([p.values.cpu() for p in parts])
        images = torch.cat([p.images.cpu() for p in parts])
        positions = torch.cat([p.positions.cpu() for p in parts])
        # Order rows by image first (empty slots last) so the stable value sort breaks ties as one pass would.
        key = torch.where(images < 0, torch.iinfo(torch.int64).max, images)
        by_image = torch.sort(key, dim=0, stable=True).indices
        merged = cls(parts[0].k, values.shape[1])
        merged._select(values.gather(0, by_image), images.gather(0, by_image), positions.gather(0, by_image),
                       [(p.values[-1].cpu(), p.ties.cpu()) for p in parts])
        merged.low = torch.stack([p.low.cpu() for p in parts]).amin(dim=0)
        return merged

    def state(self) -> dict[str, np.ndarray]:
        return {"values": self.values.cpu().numpy(), "images": self.images.cpu().numpy(),
                "positions": self.positions.cpu().numpy(), "ties": self.ties.cpu().numpy(),
                "low": self.low.cpu().numpy()}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray], device: torch.device | str = "cpu") -> StreamingTopK:
        """The inverse of :meth:`state` (a ``KeyError`` for a state without its tie counts:
        a checkpoint from before them cannot be resumed exactly)."""
        k, c = state["values"].shape
        t = cls(k, c, device)
        t.values = torch.as_tensor(state["values"], device=device)
        t.images = torch.as_tensor(state["images"], device=device)
        t.positions = torch.as_tensor(state["positions"], device=device)
        t.ties = torch.as_tensor(state["ties"], device=device)
        t.low = torch.as_tensor(state["low"], device=device)
        return t


# --- the index on disk --------------------------------------------------------


@dataclass(frozen=True)
class Patch:
    """One top-activating unit: the image, its activation, and the box it sees."""

    image: str
    index: int
    value: float
    box: tuple[int, int, int, int]  # original-image pixels, x0, y0, x1, y1 (half-open)
    y: int
    x: int

    def to_json(self) -> dict:
        return {"image": self.image, "value": self.value, "box": list(self.box)}


def _safe(layer: str) -> str:
    return layer.replace("/", "_") or "model"


@dataclass
class Index:
    """A finished (or partial) index folder."""

    directory: Path
    manifest: dict
    paths: list[str]
    labels: list[str]
    sizes: np.ndarray  # N x 2 (w, h) of the original images; 0 for skipped ones
    topk: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    @property
    def layers(self) -> list[str]:
        return list(self.manifest["layers"])

    @property
    def skipped(self) -> list[int]:
        return list(self.manifest.get("skipped", []))

    @property
    def done(self) -> bool:
        return bool(self.manifest.get("done"))

    def file(self, what: str, layer: str | None = None) -> Path | None:
        """The file holding ``what`` (``"items"``, ``"features"``, ``"topk"`` of ``layer``)."""
        return _index_file(self.directory, self.manifest, what, layer)

    def features(self) -> np.ndarray | None:
        path = self.file("features")
        return np.load(path, mmap_mode="r") if path is not None and path.is_file() else None

    def channels(self, layer: str) -> int:
        return int(self.manifest["layers"][self._layer(layer)]["channels"])

    def _layer(self, layer: str) -> str:
        if layer not in self.manifest["layers"]:
            raise LayerError(f"layer '{layer}' is not in this index; it has: {', '.join(self.manifest['layers'])}")
        return layer

    def top_patches(self, layer: str, channel: int) -> list[Patch]:
        """The top-k units of ``channel`` in ``layer``, best first."""
        t = self.topk[self._layer(layer)]
        c = self.channels(layer)
        if not 0 <= channel < c:
            raise UserError(f"channel {channel} is out of range: {layer} has {c} channels (0-{c - 1})")
        w = int(self.manifest["layers"][layer]["map_size"][1])
        out = []
        for r in range(t["values"].shape[0]):
            i = int(t["images"][r, channel])
            if i < 0:
                continue
            pos = int(t["positions"][r, channel])
            box = tuple(int(v) for v in t["boxes"][r, channel])
            out.append(Patch(self.paths[i], i, float(t["values"][r, channel]), box, pos // w, pos % w))
        return out

    def best_patches(self, layer: str) -> list[Patch | None]:
        """Each channel's best patch (the layer overview)."""
        return [next(iter(self.top_patches(layer, c)), None) for c in range(self.channels(layer))]

    @classmethod
    def load(cls, directory: str | Path) -> Index:
        directory = Path(directory)
        manifest_path = directory / MANIFEST
        if not manifest_path.is_file():
            raise UserError(f"{directory}: not an index folder (no manifest.json); build one with 'python main.py index'")
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UserError(f"{manifest_path}: the index is damaged ({exc}); build it again") from None
        if not isinstance(manifest, dict) or manifest.get("version") != FORMAT_VERSION:
            raise UserError(f"{directory}: an index from another vizapp version; build it again")
        items_path = _index_file(directory, manifest, "items")
        try:
            items = json.loads(items_path.read_text())
            index = cls(directory, manifest, items["paths"], items["labels"],
                        np.asarray(items["sizes"], dtype=np.int64).reshape(-1, 2))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise UserError(f"{items_path}: the index is damaged ({exc}); build it again") from None
        for layer in manifest["layers"]:
            path = _index_file(directory, manifest, "topk", layer)
            if path.is_file():
                try:
                    with np.load(path) as data:
                        index.topk[layer] = {key: data[key] for key in data.files}
                except (OSError, ValueError, KeyError) as exc:
                    raise UserError(f"{path}: the index is damaged ({exc}); build it again") from None
        return index


def _index_file(directory: Path, manifest: dict, what: str, layer: str | None = None) -> Path | None:
    files = manifest.get("files")
    if files is None:  # the first layout: fixed names
        legacy = {"items": "items.json", "features": "features.npy"}
        name = f"topk-{_safe(layer)}.npz" if what == "topk" else legacy[what]
    elif what == "topk":
        name = files["topk"].get(layer)
    else:
        name = files.get(what)
    return directory / name if name else None


def _build_files(build: str, layers: list[str], features: bool) -> dict:
    """The names of one build's files (see the module's docstring)."""
    return {"build": build, "items": f"items-{build}.json", "features": f"features-{build}.npy" if features else None,
            "topk": {layer: f"topk-{build}-{_safe(layer)}.npz" for layer in layers}}


def _partial_name(build: str, layer: str) -> str:
    return f"topk-{build}-{_safe(layer)}.partial.npz"


_INDEX_FILE = re.compile(r"^(?:items(?:-\w+)?\.json|features(?:-\w+)?\.npy|topk-.+\.npz|progress\.json)$")


def _remove_other_builds(directory: Path, keep: dict) -> None:
    """Delete index files that ``keep`` (the complete index's files) does not name: earlier
    builds, their checkpoints, the first layout's fixed names. Other files are left alone."""
    from vizapp.core.files import remove_leftovers

    wanted = {keep["items"], keep.get("features"), *keep["topk"].values()}
    for entry in directory.iterdir():
        if entry.name not in wanted and _INDEX_FILE.match(entry.name):
            try:
                entry.unlink()
            except OSError:
                pass
    remove_leftovers(directory)


def create_features(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """A zeroed ``float32`` ``.npy`` memory map at ``path`` whose disk space is reserved first.

    Writing through a map into a sparse file that the disk cannot back is a SIGBUS (the
    process dies with "Bus error"); with the blocks allocated up front (``posix_fallocate``,
    or zeros written in chunks where the file system cannot), a full disk is an ``OSError``
    here, turned into a :class:`StorageError` naming the file, and the file is removed.
    """
    with storage_errors(path):
        try:
            features = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape)
            with open(path, "r+b") as f:
                _reserve(f.fileno(), features.offset, features.nbytes)
        except BaseException:
            try:
                path.unlink()
            except OSError:
                pass
            raise
    return features


def _reserve(fd: int, offset: int, length: int) -> None:
    if length <= 0:
        return
    fallocate = getattr(os, "posix_fallocate", None)
    if fallocate is not None:
        try:
            fallocate(fd, offset, length)
            return
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL, getattr(errno, "ENOTSUP", -1)):
                raise
    chunk = 1 << 20
    zeros = bytes(chunk)
    done = 0
    while done < length:
        n = min(chunk, length - done)
        written = os.pwrite(fd, zeros[:n], offset + done) if hasattr(os, "pwrite") else _seek_write(fd, zeros[:n],
                                                                                                   offset + done)
        done += written
    os.fsync(fd)


def _seek_write(fd: int, data: bytes, at: int) -> int:  # pragma: no cover - no pwrite (Windows)
    os.lseek(fd, at, os.SEEK_SET)
    return os.write(fd, data)


# --- building -----------------------------------------------------------------


def _weights_hash(model: nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def index_key(loaded: LoadedModel, collection: ImageCollection, layers: list[str], k: int, feature_layer: str | None,
              amp: bool = False) -> str:
    """What an index depends on: weights, collection contents, layers, k, preprocessing, precision."""
    parts = [
        "float16" if amp and torch.device(loaded.device).type == "cuda" else "float32",
        f"v{FORMAT_VERSION}",
        _weights_hash(loaded.module),
        collection.fingerprint(),
        ",".join(layers),
        str(k),
        str(feature_layer),
        repr(loaded.preprocess),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def default_cache_dir() -> Path:
    """Where indexes are kept: :func:`vizapp.core.paths.index_dir` (``$VIZAPP_CACHE``/index)."""
    from vizapp.core.paths import index_dir

    return index_dir()


class _Images(torch.utils.data.Dataset):
    def __init__(self, collection: ImageCollection, preprocess: Preprocess, indices: list[int]) -> None:
        self.collection, self.preprocess, self.indices = collection, preprocess, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, j: int):
        i = self.indices[j]
        try:
            image = self.collection.open(i)
        except ImageError:
            n = self.preprocess.crop
            return torch.zeros(self.preprocess.channels, n, n), i, 0, 0, False
        return self.preprocess(image), i, image.size[0], image.size[1], True


def _feature_module(model: nn.Module, feature_layer: str | None) -> tuple[str, nn.Module, bool]:
    """(name, module, use its input) for pooled features: the classifier's input by default."""
    if feature_layer:
        return feature_layer, resolve_layers(model, [feature_layer])[feature_layer], False
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise UserError("the model has no Linear classifier; choose the feature layer with --layer")
    name, module = linears[-1]
    return name, module, True


def _pool(t: torch.Tensor, tokens: tuple[int, bool] | None = None) -> torch.Tensor:
    """``B x D`` features; ViT tokens: the class token when there is one, else the mean of the
    patch tokens (never a register). ``tokens``: the model's own ``(prefix, has a class token)``."""
    if t.ndim == 4:
        return t.float().mean(dim=(2, 3))
    if t.ndim == 3:
        prefix = token_prefix(t.shape[1]) or 0
        has_cls = prefix > 0
        if tokens is not None and tokens[0] == prefix:  # the model's prefix tokens: it knows if one is a class token
            has_cls = tokens[1]
        return t[:, 0].float() if has_cls else t[:, prefix:].float().mean(dim=1)
    return t.float().reshape(t.shape[0], -1)


def _expand_layers(loaded: LoadedModel, layers: list[str], features_only: bool = False) -> list[str]:
    if ALL_CONV in layers:
        convs = [n for n, m in loaded.module.named_modules() if isinstance(m, nn.Conv2d)]
        layers = [x for x in layers if x != ALL_CONV] + [c for c in convs if c not in layers]
    if features_only and layers:
        raise UserError("a features-only index takes no layers")
    if not layers and not features_only:
        raise UserError("choose at least one layer to index (--layer NAME, or --layer all-conv)")
    resolve_layers(loaded.module, layers)
    return layers


def _distributed() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def build_index(
    loaded: LoadedModel,
    collection: ImageCollection,
    layers: list[str],
    *,
    k: int = 9,
    feature_layer: str | None = None,
    out: str | Path | None = None,
    batch_size: int = 32,
    workers: int | None = None,
    amp: bool = False,
    features_only: bool = False,
    progress: Progress = no_progress,
    cancel: CancelToken | None = None,
) -> Index:
    """Index ``collection`` for ``layers`` (or reuse an up-to-date index in ``out``).

    Parameters
    ----------
    layers : list of str
        ``named_modules()`` names; ``"all-conv"`` adds every Conv2d.
    k : int
        How many top images to keep per channel.
    feature_layer : str, optional
        Layer whose pooled output is the per-image feature (default: the classifier's input).
    out : path, optional
        The index folder (default: a folder per key under :func:`default_cache_dir`).
    amp : bool
        float16 autocast on CUDA (faster; values may differ in the last bits).
    features_only : bool
        Only the per-image features (``layers`` must be empty): what an embedding needs.
    """
    if k < 1:
        raise UserError("k must be at least 1")
    if loaded.scripted:
        raise UserError("a TorchScript model cannot be indexed (no layer hooks); load its state dict with --arch")
    layers = _expand_layers(loaded, layers, features_only)
    rank, world = _distributed()
    key = index_key(loaded, collection, layers, k, feature_layer, amp)
    directory = Path(out) if out else default_cache_dir() / key
    existing = _read_manifest(directory / MANIFEST)
    if existing and existing.get("key") == key and existing.get("done"):
        progress(len(collection), len(collection), "index up to date: reused")
        return Index.load(directory)
    if rank == 0:
        with storage_errors(directory):
            directory.mkdir(parents=True, exist_ok=True)
    started = _read_manifest(directory / PROGRESS)
    resume = started if started and started.get("key") == key and started.get("files") and world == 1 else None
    files = resume["files"] if resume else _build_files(uuid.uuid4().hex[:12], layers, True)

    model = loaded.module
    device = torch.device(loaded.device)
    model.eval()
    feat_name, feat_module, feat_input = _feature_module(model, feature_layer)
    n_total = len(collection)
    shard = list(range(rank, n_total, world))
    start = int(resume["processed"]) if resume else 0
    sizes = np.zeros((n_total, 2), dtype=np.int64)
    skipped: list[int] = list(resume.get("skipped", [])) if resume else []
    tops: dict[str, StreamingTopK] = {}
    meta: dict[str, dict] = {}
    features: np.ndarray | None = None
    if resume:
        partial = _read_partial(directory, files, layers, start, n_total, device)
        if partial is None:  # missing, damaged or torn (killed mid-checkpoint): start again
            resume, start, skipped = None, 0, []
            files = _build_files(uuid.uuid4().hex[:12], layers, True)
        else:
            sizes[:], tops, features = partial
            meta = resume["layers"]

    workers = (max(0, min(4, (os.cpu_count() or 1) - 1)) if workers is None else workers)
    loader = torch.utils.data.DataLoader(
        _Images(collection, loaded.preprocess, shard[start:]), batch_size=batch_size, shuffle=False,
        num_workers=workers, pin_memory=device.type == "cuda", persistent_workers=False,
    )
    pooled: list[torch.Tensor] = []
    store_feat: dict[str, torch.Tensor] = {}

    from vizapp.explain.attention import _model_tokens

    declared = _model_tokens(model)  # a register ViT without a class token pools its patches

    def feat_hook(_m, inputs, output=None):
        t = first_tensor(inputs) if output is None else first_tensor(output)
        store_feat["x"] = _pool(t.detach(), declared)

    handle = (feat_module.register_forward_pre_hook(lambda m, i: feat_hook(m, i)) if feat_input
              else feat_module.register_forward_hook(feat_hook))
    done = start
    consistent = True  # tops, sizes and skipped describe exactly the first `done` images
    t0 = time.monotonic()
    last_checkpoint = t0
    progress(done, len(shard), f"indexing {len(shard)} images")
    try:
        with capture(model, layers) as store, torch.inference_mode():
            for batch, ids, widths, heights, ok in loader:
                if cancel is not None:
                    cancel.check()
                consistent = False
                keep = ok.nonzero().flatten()
                skipped.extend(int(i) for i in ids[~ok])
                sizes[ids.numpy(), 0] = widths.numpy()
                sizes[ids.numpy(), 1] = heights.numpy()
                if keep.numel():
                    x = batch[keep].to(device, non_blocking=True)
                    kept_ids = ids[keep]
                    with torch.autocast("cuda", dtype=torch.float16, enabled=amp and device.type == "cuda"):
                        model(x)
                    for layer in layers:
                        maps, tokens = _as_maps(store[layer])
                        if layer not in tops:
                            tops[layer] = StreamingTopK(k, maps.shape[1], device)
                            meta[layer] = {"channels": int(maps.shape[1]), "map_size": [int(maps.shape[2]), int(maps.shape[3])],
                                           "tokens": tokens}
                        tops[layer].update(maps, kept_ids)
                    f = store_feat["x"].float().cpu()
                    if features is None and world == 1:
                        features = create_features(directory / files["features"], (n_total, f.shape[1]))
                    if features is not None:
                        features[kept_ids.numpy()] = f.numpy()
                    else:
                        pooled.append(torch.cat([kept_ids[:, None].float(), f], dim=1))
                done += len(ids)
                consistent = True
                elapsed = time.monotonic() - t0
                rate = (done - start) / max(elapsed, 1e-6)
                left = (len(shard) - done) / max(rate, 1e-6)
                progress(done, len(shard), f"indexing: {done}/{len(shard)} images, {rate:.0f}/s, {left:.0f} s left")
                if world == 1 and time.monotonic() - last_checkpoint > _CHECKPOINT_SECONDS:
                    _checkpoint(directory, files, key, collection, loaded, layers, k, feat_name, meta, tops, sizes,
                                skipped, done, features)
                    last_checkpoint = time.monotonic()
    except BaseException:
        # Not in the middle of a batch: a resume would count its images twice (the last
        # periodic checkpoint, if any, still holds).
        if world == 1 and tops and done > start and consistent:
            try:
                _checkpoint(directory, files, key, collection, loaded, layers, k, feat_name, meta, tops, sizes,
                            skipped, done, features)
            except StorageError:
                pass  # a full disk: the error being raised says so; the last checkpoint still holds
        raise
    finally:
        handle.remove()

    if world > 1:
        tops, meta, sizes, skipped, features = _gather(tops, meta, sizes, skipped, pooled, layers, n_total, rank, world,
                                                       directory / files["features"])
        if rank != 0:
            return None  # type: ignore[return-value]
    if (features is None) if features_only else not meta:
        raise UserError(f"none of the {n_total} images in {collection.name} could be read ({len(skipped)} skipped)")
    if features is not None and hasattr(features, "flush"):
        with storage_errors(directory / files["features"]):
            features.flush()
    progress(0, 0, "locating receptive fields")
    boxes = _boxes(loaded, layers, meta, tops, sizes, cancel)
    for layer in layers:
        state = tops[layer].state()
        state["boxes"] = boxes[layer]
        write_npz(directory / files["topk"][layer], **state)
    if features is None:
        files = {**files, "features": None}
    # The commit: the manifest names this build's files; only then are the others removed.
    _write_manifest(directory, files, key, collection, loaded, layers, k, feat_name, meta, sizes, skipped, n_total,
                    done=True)
    _remove_other_builds(directory, files)
    return Index.load(directory)


def _read_manifest(path: Path) -> dict | None:
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _write_manifest(directory, files, key, collection, loaded, layers, k, feat_name, meta, sizes, skipped, processed,
                    done) -> None:
    """``manifest.json`` when ``done`` (the complete index), else ``progress.json`` (a checkpoint)."""
    items = {"paths": collection.paths, "labels": collection.labels, "sizes": sizes.tolist()}
    write_text(directory / files["items"], json.dumps(items))
    manifest = {
        "version": FORMAT_VERSION, "key": key, "done": done, "processed": int(processed),
        "files": files,
        "model": {"name": loaded.name, "title": loaded.title, "source": loaded.source},
        "collection": {"name": collection.name, "kind": collection.kind, "size": len(collection),
                       "fingerprint": collection.fingerprint()},
        "preprocess": loaded.preprocess.__dict__, "k": k, "feature_layer": feat_name,
        "layers": {layer: meta[layer] for layer in layers if layer in meta},
        "skipped": sorted(set(int(i) for i in skipped)),
    }
    write_text(directory / (MANIFEST if done else PROGRESS), json.dumps(manifest, indent=1))


def _checkpoint(directory, files, key, collection, loaded, layers, k, feat_name, meta, tops, sizes, skipped, processed,
                features) -> None:
    for layer in layers:
        if layer in tops:  # stamped with the count, so a resume can tell them from a torn checkpoint
            write_npz(directory / _partial_name(files["build"], layer), processed=np.int64(processed),
                      **tops[layer].state())
    if features is not None and hasattr(features, "flush"):
        with storage_errors(directory / files["features"]):
            features.flush()
    _write_manifest(directory, files, key, collection, loaded, layers, k, feat_name, meta, sizes, skipped, processed,
                    done=False)


def _read_partial(directory: Path, files: dict, layers, processed: int, n_total: int, device):
    """(sizes, top-k per layer, features) saved by the last checkpoint, or None if they do
    not all belong to a checkpoint of ``processed`` images."""
    import zipfile

    try:
        items = json.loads((directory / files["items"]).read_text())
        sizes = np.asarray(items["sizes"], dtype=np.int64).reshape(-1, 2)
        tops = {}
        for layer in layers:
            with np.load(directory / _partial_name(files["build"], layer)) as data:
                state = {x: data[x] for x in data.files}
            if int(state.pop("processed", -1)) != processed:
                return None
            tops[layer] = StreamingTopK.from_state(state, device)
        features = np.load(directory / files["features"], mmap_mode="r+")
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, json.JSONDecodeError):
        return None
    if len(sizes) != n_total or features.shape[0] != n_total:
        return None
    return sizes, tops, features


def _gather(tops, meta, sizes, skipped, pooled, layers, n_total, rank, world, features_path):
    """Merge every rank's partial results on rank 0 (torch.distributed, any backend)."""
    import torch.distributed as dist

    local = {
        "tops": {layer: tops[layer].state() for layer in tops},
        "meta": meta,
        "sizes": sizes,
        "skipped": skipped,
        "pooled": torch.cat(pooled).numpy() if pooled else np.zeros((0, 0), np.float32),
    }
    gathered: list = [None] * world
    dist.all_gather_object(gathered, local)
    if rank != 0:
        return None, None, None, None, None
    merged_meta: dict = {}
    for part in gathered:
        merged_meta.update(part["meta"])
    merged = {
        layer: StreamingTopK.merge([StreamingTopK.from_state(p["tops"][layer]) for p in gathered if layer in p["tops"]])
        for layer in layers if layer in merged_meta
    }
    all_sizes = np.zeros((n_total, 2), dtype=np.int64)
    for part in gathered:
        all_sizes = np.maximum(all_sizes, part["sizes"])
    all_skipped = sorted(i for part in gathered for i in part["skipped"])
    rows = [p["pooled"] for p in gathered if p["pooled"].size]
    features = None
    if rows:
        table = np.concatenate(rows)
        features = create_features(features_path, (n_total, table.shape[1] - 1))
        features[table[:, 0].astype(np.int64)] = table[:, 1:]
    return merged, merged_meta, all_sizes, all_skipped, features


def _boxes(loaded: LoadedModel, layers, meta, tops, sizes, cancel: CancelToken | None = None) -> dict[str, np.ndarray]:
    """``k x C x 4`` boxes in original-image pixels for every winner of every layer: the unit's
    receptive field mapped back through the crop and the resize, widened by the resize filter's
    reach (``Preprocess.fields_to_original``)."""
    from vizapp.explain.receptive import unit_boxes

    result = {}
    sizes = np.asarray(sizes, np.int64).reshape(-1, 2)
    for layer in layers:
        t = tops[layer]
        images = t.images.cpu().numpy()
        positions = t.positions.cpu().numpy()
        h, w = meta[layer]["map_size"]
        ys, xs = positions // w, positions % w
        valid = images >= 0
        wanted = [(int(y), int(x)) for y, x in zip(ys[valid], xs[valid], strict=True)]
        found, _method = unit_boxes(loaded, layer, wanted, (h, w), bool(meta[layer]["tokens"]), cancel)
        meta[layer]["field"] = _method
        out = np.zeros((*images.shape, 4), dtype=np.int64)
        if wanted:
            model_boxes = np.asarray([found[p] for p in wanted], np.float64)
            out[valid] = loaded.preprocess.fields_to_original(model_boxes, sizes[images[valid]])
        result[layer] = out
    return result

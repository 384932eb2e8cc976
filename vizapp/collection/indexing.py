"""One batched pass over an image collection: per-channel top-k units and pooled features.

:func:`build_index` streams the collection once through the model: for each chosen layer
a :class:`~vizapp.collection.topk.StreamingTopK` keeps every channel's best images, and
the pooled output of the feature layer is each image's feature vector. At the end each
winner's unit is mapped to the box of the original image it sees
(:mod:`vizapp.collection.boxes`), and the index is written to a folder
(:mod:`vizapp.collection.index_store`) that is reused when the model weights,
collection, layers and preprocessing are unchanged.

A long build checkpoints itself every ``_CHECKPOINT_SECONDS`` (and when it is cancelled
between batches); a later build of the same key resumes from the last checkpoint. Under
torchrun every rank indexes a shard and rank 0 merges them (:func:`_gather`).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models import LoadedModel, Preprocess
from vizapp.collection.boxes import winner_boxes
from vizapp.collection.datasets import ImageCollection
from vizapp.collection.index_store import (
    FORMAT_VERSION,
    MANIFEST,
    PROGRESS,
    Index,
    build_files,
    create_features,
    partial_name,
    read_manifest,
    remove_other_builds,
    write_manifest,
)
from vizapp.collection.topk import StreamingTopK, as_maps
from vizapp.core.errors import ImageError, StorageError, UserError
from vizapp.core.files import storage_errors, write_npz
from vizapp.core.jobs import CancelToken, Progress, no_progress
from vizapp.probing.mosaic import token_prefix
from vizapp.probing.probe import capture, first_tensor, resolve_layers

__all__ = ["build_index", "index_key", "default_cache_dir", "ALL_CONV"]

ALL_CONV = "all-conv"
_CHECKPOINT_SECONDS = 20.0


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
    existing = read_manifest(directory / MANIFEST)
    if existing and existing.get("key") == key and existing.get("done"):
        progress(len(collection), len(collection), "index up to date: reused")
        return Index.load(directory)
    if rank == 0:
        with storage_errors(directory):
            directory.mkdir(parents=True, exist_ok=True)
    started = read_manifest(directory / PROGRESS)
    resume = started if started and started.get("key") == key and started.get("files") and world == 1 else None
    files = resume["files"] if resume else build_files(uuid.uuid4().hex[:12], layers, True)

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
            files = build_files(uuid.uuid4().hex[:12], layers, True)
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

    from vizapp.explain.attention import model_tokens

    declared = model_tokens(model)  # a register ViT without a class token pools its patches

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
                        maps, tokens = as_maps(store[layer])
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
    boxes = winner_boxes(loaded, layers, meta, tops, sizes, cancel)
    for layer in layers:
        state = tops[layer].state()
        state["boxes"] = boxes[layer]
        write_npz(directory / files["topk"][layer], **state)
    if features is None:
        files = {**files, "features": None}
    # The commit: the manifest names this build's files; only then are the others removed.
    write_manifest(directory, files, key, collection, loaded, layers, k, feat_name, meta, sizes, skipped, n_total,
                    done=True)
    remove_other_builds(directory, files)
    return Index.load(directory)



def _checkpoint(directory, files, key, collection, loaded, layers, k, feat_name, meta, tops, sizes, skipped, processed,
                features) -> None:
    for layer in layers:
        if layer in tops:  # stamped with the count, so a resume can tell them from a torn checkpoint
            write_npz(directory / partial_name(files["build"], layer), processed=np.int64(processed),
                      **tops[layer].state())
    if features is not None and hasattr(features, "flush"):
        with storage_errors(directory / files["features"]):
            features.flush()
    write_manifest(directory, files, key, collection, loaded, layers, k, feat_name, meta, sizes, skipped, processed,
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
            with np.load(directory / partial_name(files["build"], layer)) as data:
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


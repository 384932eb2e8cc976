"""An index folder on disk: the manifest, each build's files, and the features' memory map.

A folder holds one complete index and at most one build in progress. Every build
writes files of its own (``items-<build>.json``, ``features-<build>.npy``,
``topk-<build>-<layer>.npz``; its checkpoints go to ``progress.json`` and
``*.partial.npz``), and ``manifest.json``, replaced atomically when the build is
complete, names the files of the complete index: a kill, a full disk or another
build into the same folder (a shared ``embed --cache``) never pairs a manifest with
data it does not describe, and the previous index stays usable until the new one
replaces it. The features file's space is reserved before it is memory-mapped, so a
full disk is a :class:`~vizapp.core.errors.StorageError` up front, not a SIGBUS mid-write.

:class:`Index` reads a folder back; the build pass that writes one is
:func:`vizapp.collection.indexing.build_index`.
"""

from __future__ import annotations

import errno
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vizapp.core.errors import LayerError, UserError
from vizapp.core.files import remove_leftovers, storage_errors, write_text

__all__ = ["Index", "Patch", "MANIFEST", "PROGRESS", "FORMAT_VERSION", "build_files", "create_features",
           "index_file", "partial_name", "read_manifest", "remove_other_builds", "write_manifest"]

FORMAT_VERSION = 1  # manifests without "files" (the first layout) still load
MANIFEST = "manifest.json"
PROGRESS = "progress.json"


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
        return index_file(self.directory, self.manifest, what, layer)

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
        items_path = index_file(directory, manifest, "items")
        try:
            items = json.loads(items_path.read_text())
            index = cls(directory, manifest, items["paths"], items["labels"],
                        np.asarray(items["sizes"], dtype=np.int64).reshape(-1, 2))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise UserError(f"{items_path}: the index is damaged ({exc}); build it again") from None
        for layer in manifest["layers"]:
            path = index_file(directory, manifest, "topk", layer)
            if path.is_file():
                try:
                    with np.load(path) as data:
                        index.topk[layer] = {key: data[key] for key in data.files}
                except (OSError, ValueError, KeyError) as exc:
                    raise UserError(f"{path}: the index is damaged ({exc}); build it again") from None
        return index


def index_file(directory: Path, manifest: dict, what: str, layer: str | None = None) -> Path | None:
    files = manifest.get("files")
    if files is None:  # the first layout: fixed names
        legacy = {"items": "items.json", "features": "features.npy"}
        name = f"topk-{_safe(layer)}.npz" if what == "topk" else legacy[what]
    elif what == "topk":
        name = files["topk"].get(layer)
    else:
        name = files.get(what)
    return directory / name if name else None


def build_files(build: str, layers: list[str], features: bool) -> dict:
    """The names of one build's files (see the module's docstring)."""
    return {"build": build, "items": f"items-{build}.json", "features": f"features-{build}.npy" if features else None,
            "topk": {layer: f"topk-{build}-{_safe(layer)}.npz" for layer in layers}}


def partial_name(build: str, layer: str) -> str:
    return f"topk-{build}-{_safe(layer)}.partial.npz"


_INDEX_FILE = re.compile(r"^(?:items(?:-\w+)?\.json|features(?:-\w+)?\.npy|topk-.+\.npz|progress\.json)$")


def remove_other_builds(directory: Path, keep: dict) -> None:
    """Delete index files that ``keep`` (the complete index's files) does not name: earlier
    builds, their checkpoints, the first layout's fixed names. Other files are left alone."""
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



def read_manifest(path: Path) -> dict | None:
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return manifest if isinstance(manifest, dict) else None


def write_manifest(directory, files, key, collection, loaded, layers, k, feat_name, meta, sizes, skipped, processed,
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


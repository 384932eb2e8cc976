"""Image collections: a folder (sub-folder names are labels), the offline samples,
or torchvision's MNIST / Fashion-MNIST / CIFAR-10.

A collection is a list of items (a path, or a dataset key such as ``mnist:train:12``)
with labels, a fingerprint that changes when its contents change, and ``open(i)``.
Unreadable files are skipped by the indexer and counted, never fatal.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from vizapp.core.errors import UserError
from vizapp.core.jobs import CancelToken, Progress, no_progress
from vizapp.inputs.images import load_image, sample_images, to_rgb

__all__ = [
    "IMAGE_EXTENSIONS",
    "Item",
    "ImageCollection",
    "open_collection",
    "TORCHVISION_SETS",
    "data_root",
    "torchvision_dataset",
]

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
#: ``--data`` names for torchvision's sets; their files go to ``$VIZAPP_DATA`` (default ~/.cache/vizapp/data).
TORCHVISION_SETS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST", "cifar10": "CIFAR10"}


@dataclass(frozen=True)
class Item:
    key: str  # a file path, or "<set>:<split>:<index>"
    label: str


class ImageCollection:
    """An ordered list of images with labels.

    Attributes
    ----------
    name : str
    items : list of Item
    kind : str
        ``"folder"``, ``"samples"`` or ``"torchvision"``.
    """

    def __init__(self, name: str, items: list[Item], kind: str, dataset=None, signature: str = "") -> None:
        self.name = name
        self.items = items
        self.kind = kind
        self._dataset = dataset
        self._signature = signature

    def __len__(self) -> int:
        return len(self.items)

    @property
    def paths(self) -> list[str]:
        return [it.key for it in self.items]

    @property
    def labels(self) -> list[str]:
        return [it.label for it in self.items]

    def open(self, i: int) -> Image.Image:
        """Image ``i`` as upright 8-bit RGB; :class:`ImageError` if unreadable."""
        return self.open_key(self.items[i].key)

    def open_key(self, key: str) -> Image.Image:
        """An image by its key: a file path, or ``<set>:<split>:<index>`` of this dataset."""
        if self._dataset is not None:
            image, _ = self._dataset[int(key.rsplit(":", 1)[1])]
            return to_rgb(image)
        return load_image(key)

    def fingerprint(self) -> str:
        """Changes when a file is added, removed, renamed or modified (size or mtime)."""
        # Names are hashed as the file system's bytes (os.fsencode): a name that is not
        # UTF-8 (``bad\xff.png``, decoded with surrogateescape) hashes like any other.
        h = hashlib.sha256(os.fsencode(f"{self.kind}:{self._signature}:{len(self.items)}"))
        if self._dataset is None:
            for it in self.items:
                try:
                    st = os.stat(it.key)
                    h.update(os.fsencode(f"{it.key}\0{it.label}\0{st.st_size}\0{st.st_mtime_ns}\n"))
                except OSError:
                    h.update(os.fsencode(f"{it.key}\0missing\n"))
        return h.hexdigest()[:24]

    # --- constructors ------------------------------------------------------------
    @classmethod
    def from_folder(cls, folder: str | Path) -> ImageCollection:
        """Every image under ``folder`` (recursive); the first sub-folder names the label."""
        root = Path(folder).expanduser()
        if not root.is_dir():
            raise UserError(f"{root}: no such folder")
        items = []
        visited = set()  # (device, inode): a symlink to a folder already listed (a loop) is not followed again
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
            try:
                st = os.stat(dirpath)
            except OSError:
                dirnames[:] = []
                continue
            if (st.st_dev, st.st_ino) in visited:
                dirnames[:] = []
                continue
            visited.add((st.st_dev, st.st_ino))
            dirnames.sort()
            rel = Path(dirpath).relative_to(root)
            label = rel.parts[0] if rel.parts else ""
            for name in sorted(filenames):
                if Path(name).suffix.lower() in IMAGE_EXTENSIONS and not name.startswith("."):
                    items.append(Item(str(Path(dirpath) / name), label))
        if not items:
            raise UserError(
                f"{root}: no image files found (looked for {', '.join(sorted(IMAGE_EXTENSIONS))} in it and its sub-folders)"
            )
        return cls(root.name or str(root), items, "folder", signature=str(root.resolve()))

    @classmethod
    def samples(cls) -> ImageCollection:
        """scikit-image's sample photographs (offline)."""
        found = sample_images()
        if not found:
            raise UserError("scikit-image's sample images are not installed: pip install scikit-image")
        return cls("samples", [Item(str(s.path), s.name) for s in found], "samples")

    @classmethod
    def torchvision(
        cls,
        name: str,
        root: str | Path | None = None,
        train: bool = True,
        download: bool = True,
        progress: Progress = no_progress,
        cancel: CancelToken | None = None,
    ) -> ImageCollection:
        """MNIST, Fashion-MNIST or CIFAR-10 (downloaded with progress when missing)."""
        dataset = torchvision_dataset(name, root, train=train, download=download, progress=progress, cancel=cancel)
        classes = list(getattr(dataset, "classes", []))
        targets = [int(t) for t in dataset.targets]
        split = "train" if train else "test"
        items = [Item(f"{name}:{split}:{i}", classes[t] if t < len(classes) else str(t)) for i, t in enumerate(targets)]
        return cls(f"{name} ({split})", items, "torchvision", dataset=dataset, signature=f"{name}:{split}")


def data_root(root: str | Path | None = None) -> Path:
    """Where torchvision's sets live: ``root``, else :func:`vizapp.core.paths.data_dir` (``$VIZAPP_DATA``)."""
    from vizapp.core.paths import data_dir

    return Path(root) if root else data_dir()


def torchvision_dataset(
    name: str,
    root: str | Path | None = None,
    *,
    train: bool = True,
    download: bool = True,
    progress: Progress = no_progress,
    cancel: CancelToken | None = None,
):
    """torchvision's MNIST / Fashion-MNIST / CIFAR-10 dataset object for ``name`` (a key of
    :data:`TORCHVISION_SETS`), downloaded with progress and cancel when missing.

    Raises
    ------
    UserError
        An unknown name; the files are missing and ``download`` is off; or the download
        failed (the message names the folder to copy the files into by hand).
    """
    import torchvision.datasets as tvd

    if name not in TORCHVISION_SETS:
        raise UserError(f"unknown dataset '{name}'; choose one of {', '.join(TORCHVISION_SETS)}")
    root = data_root(root)
    klass = getattr(tvd, TORCHVISION_SETS[name])
    try:
        return klass(str(root), train=train, download=False)
    except RuntimeError:
        if not download:
            raise UserError(f"{name} is not in {root}; download it first") from None
        _download_torchvision(klass, root, name, progress, cancel)
        try:
            return klass(str(root), train=train, download=True)
        except (RuntimeError, OSError) as exc:
            raise UserError(f"{name} could not be prepared in {root}: {exc}") from None


def _download_torchvision(klass, root: Path, name: str, progress: Progress, cancel: CancelToken | None) -> None:
    """Fetch the dataset's archives with our progress reporting; torchvision then verifies and extracts."""
    import urllib.error
    import urllib.request

    if hasattr(klass, "resources"):  # MNIST family: per-file resources and mirrors
        folder = root / klass.__name__ / "raw"
        files = [(m + f, f, md5) for f, md5 in klass.resources for m in klass.mirrors[:1]]
    else:  # CIFAR
        folder = root
        files = [(klass.url, klass.filename, klass.tgz_md5)]
    from vizapp.core.files import storage_errors

    with storage_errors(folder):  # $VIZAPP_DATA read-only or under a file: one line naming it
        folder.mkdir(parents=True, exist_ok=True)
    for url, filename, _md5 in files:
        dest = folder / filename
        if dest.is_file():
            continue
        part = dest.with_suffix(dest.suffix + ".part")
        try:
            with urllib.request.urlopen(url, timeout=30) as response, open(part, "wb") as out:  # noqa: S310
                total = int(response.headers.get("Content-Length") or 0)
                done = 0
                while chunk := response.read(1 << 20):
                    if cancel is not None:
                        cancel.check()
                    out.write(chunk)
                    done += len(chunk)
                    progress(done, total, f"downloading {name}: {filename} {done / 1e6:.1f} MB")
            part.replace(dest)
        except (urllib.error.URLError, OSError) as exc:
            raise UserError(
                f"{name} is not in {root} and could not be downloaded from {url} "
                f"({getattr(exc, 'reason', exc)}). On an offline machine, copy the dataset's files into {folder}."
            ) from None
        finally:
            if part.exists():
                part.unlink()


def open_collection(spec: str, **kwargs) -> ImageCollection:
    """``samples``, a torchvision set name (``mnist``, ``fashion-mnist``, ``cifar10``), or a folder."""
    if spec == "samples":
        return ImageCollection.samples()
    if spec in TORCHVISION_SETS:
        return ImageCollection.torchvision(spec, **kwargs)
    return ImageCollection.from_folder(spec)



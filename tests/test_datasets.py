"""Image collections: folders (labels, order, fingerprint), the samples, torchvision sets offline."""

from __future__ import annotations

import os
import struct
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vizapp.collection.datasets import ImageCollection, open_collection
from vizapp.core.errors import ImageError, UserError


def _png(path: Path, value: int = 0, size=(8, 6)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path)
    return path


@pytest.fixture
def tree(tmp_path) -> Path:
    root = tmp_path / "pets"
    _png(root / "zebra.png")  # root level: no label
    _png(root / "alpha.PNG")  # extension case does not matter
    _png(root / "dogs" / "b.png")
    _png(root / "dogs" / "a.png")
    _png(root / "dogs" / "puppies" / "tiny.png")  # nested: the first sub-folder names the label
    _png(root / "cats" / "z.bmp")
    _png(root / "cats" / "m.png")
    (root / "cats" / "notes.txt").write_text("not an image")
    (root / "cats" / "meta.json").write_text("{}")
    _png(root / "cats" / ".hidden.png")
    (root / "empty").mkdir()
    return root


def test_from_folder_labels_and_order(tree):
    c = ImageCollection.from_folder(tree)
    rel = [str(Path(p).relative_to(tree)) for p in c.paths]
    assert rel == ["alpha.PNG", "zebra.png", "cats/m.png", "cats/z.bmp", "dogs/a.png", "dogs/b.png",
                   "dogs/puppies/tiny.png"]
    assert c.labels == ["", "", "cats", "cats", "dogs", "dogs", "dogs"]
    assert c.kind == "folder" and c.name == "pets" and len(c) == 7
    assert [it.key for it in c.items] == c.paths and all(Path(p).is_absolute() for p in c.paths)
    # Deterministic: a second listing is identical, whatever order the file system returns.
    again = ImageCollection.from_folder(str(tree))
    assert again.paths == c.paths and again.labels == c.labels and again.fingerprint() == c.fingerprint()
    image = c.open(3)
    assert image.mode == "RGB" and image.size == (8, 6)


def test_from_folder_errors(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("x")
    with pytest.raises(UserError, match="no image files found"):
        ImageCollection.from_folder(tmp_path / "docs")
    with pytest.raises(UserError, match="no such folder"):
        ImageCollection.from_folder(tmp_path / "missing")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "x.jpg").write_text("not a jpeg")
    c = ImageCollection.from_folder(tmp_path / "broken")  # listed: unreadable files are skipped when indexed
    with pytest.raises(ImageError, match="x.jpg"):
        c.open(0)


def test_fingerprint_changes_with_contents(tree):
    def fp() -> str:
        return ImageCollection.from_folder(tree).fingerprint()

    base = fp()
    assert fp() == base
    target = tree / "cats" / "m.png"
    st = target.stat()
    _png(target, value=255)  # same size, new pixels, new mtime
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    modified = fp()
    assert modified != base
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))  # touched only
    touched = fp()
    assert touched != modified
    _png(tree / "cats" / "new.png")
    added = fp()
    assert added not in (base, modified, touched)
    (tree / "cats" / "new.png").unlink()
    assert fp() == touched  # removing the added file restores the listing
    (tree / "dogs" / "a.png").unlink()
    removed = fp()
    assert removed not in (base, modified, touched, added)
    (tree / "dogs" / "b.png").rename(tree / "dogs" / "c.png")
    assert fp() != removed
    # Non-image files do not count.
    before = fp()
    (tree / "cats" / "notes.txt").write_text("changed")
    assert fp() == before
    # A file that vanished after listing still gives a fingerprint (and a different one).
    c = ImageCollection.from_folder(tree)
    ok = c.fingerprint()
    Path(c.paths[0]).unlink()
    assert c.fingerprint() != ok


def test_samples():
    c = ImageCollection.samples()
    assert c.kind == "samples" and len(c) >= 2
    assert "chelsea" in c.labels and "coffee" in c.labels
    i = c.labels.index("chelsea")
    image = c.open(i)
    assert image.mode == "RGB" and image.size == (451, 300)
    assert open_collection("samples").paths == c.paths


# --- torchvision sets, offline -----------------------------------------------------------


def _write_idx(folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    n, rows, cols = images.shape
    (folder / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">iiii", 2051, n, rows, cols) + images.tobytes())
    (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">ii", 2049, n) + labels.astype(np.uint8).tobytes())


@pytest.fixture
def mnist_root(tmp_path) -> tuple[Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    train_labels = np.array([3, 0, 9, 3, 1])
    test = rng.integers(0, 256, (2, 28, 28), dtype=np.uint8)
    for name in ("MNIST", "FashionMNIST"):
        _write_idx(tmp_path / name / "raw", "train", train, train_labels)
        _write_idx(tmp_path / name / "raw", "t10k", test, np.array([7, 2]))
    return tmp_path, train, train_labels


def test_mnist_offline(mnist_root):
    root, pixels, labels = mnist_root
    c = ImageCollection.torchvision("mnist", root=root, download=False)
    assert c.kind == "torchvision" and c.name == "mnist (train)" and len(c) == 5
    assert c.labels == ["3 - three", "0 - zero", "9 - nine", "3 - three", "1 - one"]
    assert c.paths == [f"mnist:train:{i}" for i in range(5)]
    for i in (0, 2, 4):
        image = c.open(i)
        assert image.mode == "RGB" and image.size == (28, 28)
        rgb = np.asarray(image)
        for ch in range(3):
            np.testing.assert_array_equal(rgb[:, :, ch], pixels[i])
    test = ImageCollection.torchvision("mnist", root=root, train=False, download=False)
    assert test.labels == ["7 - seven", "2 - two"] and test.paths == ["mnist:test:0", "mnist:test:1"]
    assert test.fingerprint() != c.fingerprint()
    assert ImageCollection.torchvision("mnist", root=root, download=False).fingerprint() == c.fingerprint()
    via = open_collection("mnist", root=root, download=False)
    assert via.labels == c.labels
    fashion = ImageCollection.torchvision("fashion-mnist", root=root, download=False)
    assert fashion.labels[:3] == ["Dress", "T-shirt/top", "Ankle boot"]


def test_mnist_from_the_environment(mnist_root, monkeypatch):
    root, _, _ = mnist_root
    monkeypatch.setenv("VIZAPP_DATA", str(root))
    assert len(ImageCollection.torchvision("mnist", download=False)) == 5


def test_torchvision_missing_and_offline(tmp_path, monkeypatch):
    calls = []

    def offline(url, *args, **kwargs):
        calls.append(url)
        raise urllib.error.URLError("no network here")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(UserError, match="download it first"):
        ImageCollection.torchvision("mnist", root=tmp_path, download=False)
    assert calls == []
    with pytest.raises(UserError) as info:
        ImageCollection.torchvision("mnist", root=tmp_path, download=True)
    message = str(info.value)
    assert "could not be downloaded" in message and "no network here" in message
    assert str(tmp_path / "MNIST" / "raw") in message  # where to copy the files by hand
    assert len(calls) == 1 and calls[0].endswith(".gz")
    assert not list((tmp_path / "MNIST" / "raw").glob("*.part"))
    with pytest.raises(UserError, match="could not be downloaded"):
        ImageCollection.torchvision("cifar10", root=tmp_path, download=True)
    with pytest.raises(UserError, match="unknown dataset 'svhn'"):
        ImageCollection.torchvision("svhn", root=tmp_path)


def test_symlinked_folders_are_listed_once(tree, tmp_path):
    (tree / "dogs" / "up").symlink_to("..")  # a loop: pets/dogs/up -> pets
    outside = tmp_path / "birds"
    _png(outside / "owl.png")
    (tree / "birds").symlink_to(outside)  # a linked label folder is followed
    c = ImageCollection.from_folder(tree)
    rel = [str(Path(p).relative_to(tree)) for p in c.paths]
    assert rel == ["alpha.PNG", "zebra.png", "birds/owl.png", "cats/m.png", "cats/z.bmp", "dogs/a.png", "dogs/b.png",
                   "dogs/puppies/tiny.png"]
    assert c.labels[2] == "birds"

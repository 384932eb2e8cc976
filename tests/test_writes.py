"""Every file the app writes goes through the one atomic writer, ``vizapp/core/files.py``.

A write straight to its target (``np.savez(path)``, ``pixmap.save(path)``,
``Path.write_text``, ``torch.save(obj, path)``, ``open(path, "w")``) leaves a truncated
file when the disk fills or the process is killed, and destroys the file it replaces.
This test reads the source of ``vizapp``, ``models`` and ``widgets`` and fails on any
such call outside ``vizapp/core/files.py``, except the few listed below with their reason.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Calls that write a file (or may: ``.save(`` of a numpy, PIL, Qt or torch object).
WRITES = re.compile(
    r"np\.savez(_compressed)?\(|np\.save\(|\.tofile\(|torch\.save\(|save_file\(|json\.dump\(|"
    r"\.write_text\(|\.write_bytes\(|\.save\(|open_memmap\(|os\.fdopen\(|"
    r"\bopen\([^)]*['\"][wax]b?\+?['\"]|\bopen\([^)]*['\"][ra]\+b?['\"]|\bopen\([^)]*['\"]r?b\+['\"]"
)

#: (file, text on the line, why it is not a direct write).
ALLOWED = [
    ("vizapp/training/checkpoints.py", "torch.save(state, buffer)", "serialised in memory, then write_bytes"),
    ("vizapp/training/checkpoints.py", 'open(self.path, "a+b", buffering=0)', "the run's lock file, not data"),
    ("vizapp/training/trainer.py", "self.save()", "Trainer.save: write_bytes and save_checkpoint"),
    ("vizapp/cli/commands.py", "embedding.save(args.out)", "Embedding.save: write_npz"),
    ("vizapp/cli/commands.py", 'Image.fromarray(vis.image).save(buffer, format="PNG")', "encoded in memory, then write_bytes"),
    ("vizapp/collection/index_store.py", 'open_memmap(path, mode="w+"', "create_features: space reserved before the map"),
    ("vizapp/collection/index_store.py", 'open(path, "r+b")', "create_features: reserving the space"),
    ("widgets/export.py", "image.save(buffer, fmt)", "encoded in memory, then write_bytes"),
    ("widgets/image_view.py", 'image.save(buffer, "PNG")', "encoded in memory (drag and drop)"),
    ("widgets/controllers/live.py", 'Image.fromarray(pixels, "RGB").save(buffer, "PNG")', "encoded in memory, then write_bytes"),
    ("models/checkpoint.py", "atomic_write(", "the write goes to atomic_write's temporary file"),
    ("models/checkpoint.py", "save_file(state, tmp,", "write_weights, called by atomic_write with its temporary file"),
    ("models/_download.py", 'os.fdopen(fd, "wb")', "a streamed download: its own temporary file, hash-checked, "
                                                    "then renamed"),
    ("vizapp/collection/datasets.py", 'open(part, "wb")', "a streamed download: a .part file, then renamed"),
]


def direct_writes() -> list[str]:
    found = []
    for folder in ("vizapp", "models", "widgets"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel == "vizapp/core/files.py":
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                code = line.split("#", 1)[0]
                if not WRITES.search(code):
                    continue
                if any(rel == f and text in code for f, text, _why in ALLOWED):
                    continue
                found.append(f"{rel}:{number}: {line.strip()}")
    return found


def test_every_write_goes_through_the_atomic_writer():
    assert direct_writes() == [], "write through vizapp.core.files (atomic_write, write_npz, write_json, ...)"


@pytest.mark.parametrize("line", ["np.savez(path, **arrays)", "Path(p).write_text(text)", "pixmap.save(str(path), 'PNG')",
                                  "torch.save(state, path)", "with open(path, 'w') as f:", "open(p, \"wb\")"])
def test_the_check_finds_direct_writes(line):
    assert WRITES.search(line)


def test_an_embedding_save_over_a_file_on_a_full_disk_keeps_the_earlier_file(tmp_path):
    """``features``/``embed --out`` over an existing file: a failed write leaves the earlier file whole."""
    from _disks import fill, tmpfs

    from vizapp.collection.embedding import Embedding
    from vizapp.core.errors import StorageError

    with tmpfs(tmp_path / "disk", size="1m") as disk:
        path = disk / "e.npz"
        small = Embedding(np.ones((10, 4), np.float32), np.zeros((10, 2), np.float32), [f"{i}" for i in range(10)],
                          ["a"] * 10, "pca")
        small.save(path)
        before = path.read_bytes()
        fill(disk, keep=4096)
        big = Embedding(np.ones((1000, 64), np.float32), np.zeros((1000, 2), np.float32),
                        [f"{i}" for i in range(1000)], ["a"] * 1000, "pca")
        with pytest.raises(StorageError, match="the disk is full"):
            big.save(path)
        assert path.read_bytes() == before
        assert sorted(p.name for p in disk.iterdir()) == ["e.npz", "filler"]


# --- storage folders that cannot be created or written ------------------------------------------------


def _storage_case(tmp_path, where: str, kind: str) -> Path:
    """A folder that cannot be created: under a regular file, or on a read-only tmpfs."""
    if kind == "under a file":
        blocker = tmp_path / "a-file"
        blocker.write_text("not a folder")
        return blocker / where.lower()
    return tmp_path / "ro" / where.lower()


@pytest.mark.parametrize("kind", ["under a file", "read-only"])
@pytest.mark.parametrize(("variable", "command"), [
    ("TORCH_HOME", ["predict", "--model", "resnet18", "--image", str(ROOT / "resources" / "samples" / "circle.png")]),
    ("VIZAPP_DATA", ["train", "--dataset", "mnist", "--epochs", "1"]),
    ("HOME", ["predict", "--model", "resnet18", "--image", str(ROOT / "resources" / "samples" / "circle.png")]),
    ("HOME", ["train", "--dataset", "mnist", "--epochs", "1"]),
])
def test_an_unwritable_storage_folder_is_one_line_naming_it(tmp_path, monkeypatch, capsys, variable, command, kind):
    from contextlib import nullcontext

    from _disks import tmpfs

    from vizapp import cli

    for name in ("TORCH_HOME", "VIZAPP_DATA", "VIZAPP_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    folder = _storage_case(tmp_path, variable, kind)
    monkeypatch.setenv(variable, str(folder))
    if command[0] == "train":
        command = [*command, "--out", str(tmp_path / "run")]
    with tmpfs(tmp_path / "ro", size="64k", read_only=True) if kind == "read-only" else nullcontext():
        status = cli.main(command)
    stdout, stderr = capsys.readouterr()
    assert status == 2 and stderr.startswith("vizapp: error: ") and stderr.count("\n") == 1, stderr
    assert str(folder) in stderr and "internal error" not in stderr and "cannot write" in stderr

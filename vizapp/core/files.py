"""The one way the app writes a file: beside the target, flushed, then renamed over it.

Every file vizapp writes (npz, json, png, checkpoints, index parts) goes through
:func:`atomic_write`, so a crash, a kill or a full disk leaves the previous file (or
none), never a truncated one. File-system failures (a full disk, a read-only folder, a
missing permission) become a :class:`~vizapp.core.errors.StorageError` that names the path
and says what to do, which the CLI prints as its one line and the GUI as a message.
Qt-free and torch-free: ``models`` and every engine module may import it.
"""

from __future__ import annotations

import errno
import json
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from vizapp.core.errors import StorageError

__all__ = [
    "atomic_write",
    "write_bytes",
    "write_json",
    "write_npz",
    "write_text",
    "storage_errors",
    "storage_error",
    "TMP_PREFIX",
    "remove_leftovers",
]

#: Temporary files start with this and end with ``.tmp``; :func:`remove_leftovers` finds them.
TMP_PREFIX = "."


def storage_error(exc: OSError, path: str | os.PathLike, doing: str = "write") -> StorageError:
    """A one-line :class:`StorageError` for ``exc`` that names ``path`` and the fix."""
    where = os.fspath(path)
    code = exc.errno
    if code == errno.ENOSPC or code == errno.EDQUOT:
        why = "the disk is full; free some space or choose another folder"
    elif code == errno.EROFS:
        why = "the file system is read-only; choose a writable folder"
    elif code in (errno.EACCES, errno.EPERM):
        why = "permission denied; choose a folder you can write to"
    elif code == errno.ENOTDIR:
        why = "a part of the path is a file, not a folder"
    elif code == errno.EISDIR:
        why = "that is a folder; name a file"
    elif code == errno.ENAMETOOLONG:
        why = "the name is too long"
    else:
        why = exc.strerror or str(exc) or type(exc).__name__
    return StorageError(f"{where}: cannot {doing} ({why})")


@contextmanager
def storage_errors(path: str | os.PathLike, doing: str = "write") -> Iterator[None]:
    """Turn an ``OSError`` inside the block into a :class:`StorageError` naming ``path``."""
    try:
        yield
    except StorageError:
        raise
    except OSError as exc:
        raise storage_error(exc, getattr(exc, "filename", None) or path, doing) from None


def _tmp_name(path: Path) -> Path:
    return path.with_name(f"{TMP_PREFIX}{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def _sync_folder(folder: Path) -> None:
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot sync a folder; the rename is still atomic
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[str], None], *, mkdir: bool = True) -> Path:
    """``write(temp_path)`` in ``path``'s folder, flushed to disk, then renamed over ``path``.

    The temporary file is removed on any failure, the previous ``path`` is left as it
    was, and an ``OSError`` (full disk, read-only folder) becomes a
    :class:`StorageError` naming ``path``. ``path`` must not be an existing folder.
    Returns ``path`` as a :class:`Path`.
    """
    path = Path(path)
    if path.is_dir():
        raise StorageError(f"{path}: is a folder; name a file to write")
    with storage_errors(path):
        if mkdir:
            path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _tmp_name(path)
        try:
            write(str(tmp))
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            if os.name == "posix":  # the writer may create it private; what we write is shared like any file
                mask = os.umask(0)
                os.umask(mask)
                os.chmod(tmp, 0o666 & ~mask)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    _sync_folder(path.parent)
    return path


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_json(path: str | os.PathLike, obj: object, **dumps) -> Path:
    """Serialise first (a bad value raises before anything is written), then write."""
    text = json.dumps(obj, **dumps)
    return write_text(path, text + "\n")


def write_npz(path: str | os.PathLike, **arrays) -> Path:
    """``numpy.savez`` to exactly ``path`` (no ``.npz`` appended), atomically."""
    import numpy as np

    def save(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: numpy appends no suffix
            np.savez(f, **arrays)

    return atomic_write(path, save)


def remove_leftovers(folder: str | os.PathLike, name: str | None = None) -> int:
    """Delete temporary files an interrupted :func:`atomic_write` left in ``folder``.

    Only files of this module's naming scheme (``.<name>.<pid>.<hex>.tmp``) whose
    process is gone are removed; with ``name``, only those for that file. Returns the
    number removed.
    """
    removed = 0
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return 0
    for entry in entries:
        n = entry.name
        if not (n.startswith(TMP_PREFIX) and n.endswith(".tmp")):
            continue
        parts = n[len(TMP_PREFIX):-len(".tmp")].rsplit(".", 2)
        if len(parts) != 3 or not parts[1].isdigit():
            continue
        if name is not None and parts[0] != name:
            continue
        pid = int(parts[1])
        if pid == os.getpid() or _alive(pid):
            continue  # a live process (this one too: another thread) is writing it
        try:
            entry.unlink()
            removed += 1
        except OSError:
            pass
    return removed


def _alive(pid: int) -> bool:
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

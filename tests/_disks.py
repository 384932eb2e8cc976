"""Small real file systems for the full-disk and read-only tests: a tmpfs mounted for the
test (root only: CI runs as root; elsewhere the test is skipped with the reason)."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def tmpfs(path: Path, size: str = "1m", *, read_only: bool = False) -> Iterator[Path]:
    """Mount a ``size`` tmpfs on ``path`` (created) for the block; unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size},mode=1777" + (",ro" if read_only else "")
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot mount a tmpfs here ({exc})")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


def fill(folder: Path, name: str = "filler", keep: int = 0) -> int:
    """Fill the file system of ``folder`` to the last byte, then free ``keep`` bytes again;
    returns the filler's size."""
    written = 0
    with open(folder / name, "wb", buffering=0) as f:
        for block in (1 << 16, 1 << 12, 1 << 9, 1):
            chunk = b"\0" * block
            while True:
                try:
                    f.write(chunk)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
                written += block
        written = os.fstat(f.fileno()).st_size  # a write may have stored less than it was given
        if keep:
            written = max(0, written - keep)
            f.truncate(written)
        os.fsync(f.fileno())
    return written

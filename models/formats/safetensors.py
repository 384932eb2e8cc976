"""Safetensors files: read with safetensors only (never pickle or TorchScript)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from models.weights import first_line
from vizapp.core.errors import ModelError

__all__ = ["read", "read_safetensors", "sniff"]


def sniff(path: Path) -> bool:
    """Whether ``path`` starts like a safetensors file: a little-endian header length, then ``{``."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
        size = path.stat().st_size
    except OSError:
        return False
    return len(head) == 9 and 2 <= int.from_bytes(head[:8], "little") <= size - 8 and head[8:] == b"{"


def read_safetensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, read with safetensors only (never pickle or TorchScript);
    a file that is not one (truncated, garbage, a zip) is a one-line :class:`ModelError` naming it."""
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - SafetensorError, OSError, a header that is not JSON, ...
        raise ModelError(f"{path}: not a readable safetensors file ({first_line(exc)})") from None


def read(path: Path, trust: bool = False) -> dict[str, torch.Tensor]:
    return read_safetensors(path)

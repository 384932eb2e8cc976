"""Files ``torch.save`` writes (a zip archive, or a legacy pickle), TorchScript archives, and the
last word on anything else: read with ``weights_only=True``; TorchScript and pickled objects only
when trusted. This format claims every file the others did not."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from models.weights import (
    first_line,
    is_torchscript,
    jit_load,
    torchscript_refusal,
    untrusted,
    zip_members,
)
from vizapp.core.errors import ModelError

__all__ = ["read", "sniff"]


def sniff(path: Path) -> bool:
    return True


def _saved_by_torch(path: Path) -> bool:
    """Whether ``path`` has a layout ``torch.save`` writes: a zip archive or a protocol 2+ pickle."""
    if zipfile.is_zipfile(path):
        return True
    with open(path, "rb") as f:
        return f.read(1) == b"\x80"


def read(path: Path, trust: bool) -> object:
    """A file ``torch.save`` (or ``torch.jit.save``) wrote, or one that is no weights file at all.

    The zip is checked once (:func:`~models.weights.zip_members`) before anything inflates;
    TorchScript (told by its members) and pickled objects need ``trust``.
    """
    names = zip_members(path)
    if is_torchscript(names):
        if not trust:
            raise torchscript_refusal(path)
        return jit_load(path)
    if path.suffix == ".safetensors":
        what = "a zip archive" if names is not None else "no safetensors header"
        raise ModelError(f"{path}: not a readable safetensors file ({what}); save the weights with "
                         "safetensors.torch.save_file, or give the file its real suffix")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        if not _saved_by_torch(path):
            raise ModelError(f"{path}: not a PyTorch weights file (neither a zip archive nor a pickle)") from None
        if not trust:
            raise untrusted(path, "holds pickled Python objects (a whole model, not just weights)") from None
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign file fails inside the unpickler in many ways
        raise ModelError(f"{path}: not a PyTorch weights file ({first_line(exc)})") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - arbitrary pickles fail arbitrarily
        raise ModelError(f"{path}: the trusted pickle could not be loaded ({type(exc).__name__}: {exc})") from None

"""Where models run: CUDA or MPS when present, else the CPU; falls back on out-of-memory."""

from __future__ import annotations

import os

import torch

from models import LoadedModel
from vizapp.core.errors import UserError

__all__ = ["available_devices", "check_device", "default_device", "move_model", "configure_threads"]


def available_devices() -> list[str]:
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices = [f"cuda:{i}" for i in range(torch.cuda.device_count())] + devices
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.insert(0, "mps")
    return devices


def check_device(device: str) -> str:
    """``device`` as torch names it (``cuda`` means ``cuda:0``), or a UserError saying what exists."""
    name = "cuda:0" if device == "cuda" else device
    devices = available_devices()
    if name not in devices:
        raise UserError(f"device '{device}' is not available here; choose one of: {', '.join(devices)}")
    return name


def default_device() -> str:
    return available_devices()[0]


def configure_threads(leave_for_gui: int = 1) -> int:
    """Use all cores but ``leave_for_gui`` for torch (the setting is process-wide)."""
    n = max(1, (os.cpu_count() or 1) - leave_for_gui)
    torch.set_num_threads(n)
    return n


def move_model(loaded: LoadedModel, device: str) -> str | None:
    """Move ``loaded`` to ``device`` in place; returns a message if it fell back to the CPU."""
    try:
        loaded.module.to(device)
        loaded.device = device
        return None
    except torch.OutOfMemoryError:
        loaded.module.to("cpu")
        loaded.device = "cpu"
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return f"{loaded.title} does not fit in {device} memory; it runs on the CPU instead"

"""A training run's folder: the run lock, and the resumable state saved beside the weights.

A save writes the weights and the card (``models.small.save_checkpoint``), then
``train_state.pt``, the commit: it holds everything a resume needs (the weights, the
optimizer state, the step, the history), written in one atomic rename after the weights
and the card. A kill at any moment leaves either the previous state or the new one whole,
so the run resumes from the last complete save (:func:`restore_run` takes the weights from
the state, not from a ``model.safetensors`` that may already be one save ahead).
:class:`RunLock` keeps a second run from writing into the same folder meanwhile.
"""

from __future__ import annotations

import io
import json
import math
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vizapp.core.errors import UserError
from vizapp.training.config import RESUME_KEYS

__all__ = ["STATE_FORMAT", "STATE_NAME", "RunLock", "finite", "read_state", "restore_run", "save_run"]

STATE_NAME = "train_state.pt"
STATE_FORMAT = 2  # 2: the state holds the weights and history it belongs to


class RunLock:
    """An ``fcntl.flock`` on ``<folder>/.vizapp-train.lock``, held while a run may write there.

    The kernel drops the lock when its holder dies, so a killed run never blocks the next
    one; the file holds the holder's pid for the message and is removed on release. Where
    ``fcntl`` does not exist (Windows) no lock is taken.
    """

    NAME = ".vizapp-train.lock"

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / self.NAME
        self._file = None
        self._created = False

    def acquire(self) -> RunLock:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return self
        from vizapp.core.files import storage_errors

        self._created = not self.folder.exists()
        with storage_errors(self.folder):
            self.folder.mkdir(parents=True, exist_ok=True)
        while True:
            with storage_errors(self.path):
                f = open(self.path, "a+b", buffering=0)  # noqa: SIM115 - held open for the run; unbuffered
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                f.seek(0)
                holder = f.read().decode(errors="replace").strip() or "unknown"
                f.close()
                raise UserError(f"{self.folder}: another training run (pid {holder}) is writing there; "
                                "wait for it to end, or choose another --out") from None
            try:  # a run that just ended may have removed the file we opened: lock the one on disk
                same = os.stat(self.path).st_ino == os.fstat(f.fileno()).st_ino
            except OSError:
                same = False
            if same:
                break
            f.close()
        self._file = f
        try:
            with storage_errors(self.folder):  # a full disk fails here, before any training
                f.seek(0)
                f.truncate()
                f.write(f"{os.getpid()}\n".encode())
        except BaseException:
            self.release()
            raise
        return self

    def release(self) -> None:
        f, self._file = self._file, None
        if f is None:
            return
        try:
            self.path.unlink()
            if self._created:  # a run that failed before writing anything leaves no empty folder
                self.folder.rmdir()
        except OSError:
            pass
        f.close()



def save_run(target: Path, module: nn.Module, card: dict, optimizer: torch.optim.Optimizer, step: int,
             history: list[dict], previous_coords: np.ndarray | None) -> Path:
    """Weights + card (``models.small.save_checkpoint``), then ``train_state.pt``, into ``target``;
    returns the weights' path.

    ``train_state.pt`` is the commit (see the module's docstring). Leftover temporary files
    of killed writers are removed first. A full or read-only disk is a
    :class:`~vizapp.core.errors.StorageError` naming the file.
    """
    from models import save_checkpoint
    from vizapp.core.files import remove_leftovers, storage_errors, write_bytes

    with storage_errors(target):
        target.mkdir(parents=True, exist_ok=True)
    remove_leftovers(target)
    inner = getattr(module, "_orig_mod", module)
    state = {"format": STATE_FORMAT, "optimizer": optimizer.state_dict(), "step": step,
             "model": {k: v.detach().to("cpu", copy=True).contiguous() for k, v in inner.state_dict().items()},
             "history": json.dumps([{k: finite(v) for k, v in h.items()} for h in history[-2000:]]),
             "previous_coords": torch.from_numpy(previous_coords) if previous_coords is not None
             else torch.zeros(0)}
    buffer = io.BytesIO()  # serialised first: a full disk is then an OSError of the write, not torch's
    torch.save(state, buffer)
    path = save_checkpoint(module, card, target)  # a full disk: StorageError
    write_bytes(target / STATE_NAME, buffer.getvalue())
    return path


def restore_run(directory: Path, module: nn.Module, model_card: dict, settings: dict,
                optimizer: torch.optim.Optimizer) -> tuple[int, list[dict], np.ndarray | None]:
    """``(step, history, previous embedding coords)`` of the run saved in ``directory``, with its
    weights loaded into ``module`` and its optimizer state into ``optimizer``.

    Its card must describe this model (``model_card``) and these ``settings`` (a
    :meth:`TrainConfig.to_json <vizapp.training.config.TrainConfig.to_json>`); the weights,
    optimizer state, step and history come from ``train_state.pt``. A damaged or foreign
    file is a one-line :class:`UserError` naming it.
    """
    from models import read_card

    if not directory.is_dir():
        raise UserError(f"{directory}: no such checkpoint folder to resume from")
    card = read_card(directory)
    if _plain(card.get("model")) != _plain(model_card):
        raise UserError(f"{directory} holds a different model ({card.get('model')}); resume with its settings")
    saved, now = _plain(card.get("settings", {})), _plain(settings)
    changed = [k for k in RESUME_KEYS if k in saved and saved[k] != now.get(k)]
    if changed:
        was = ", ".join(f"--{k.replace('_', '-')} {saved[k]}" for k in changed)
        raise UserError(f"{directory} was trained with other settings ({was}); resume with the same data and "
                        "settings (only --epochs may grow), or start a new run")
    weights_path = directory / "model.safetensors"
    _load_weights(module, _read_safetensors(weights_path), weights_path)  # this model's weights, readable
    state_path = directory / STATE_NAME
    if not state_path.is_file():
        raise UserError(f"{directory} has no {STATE_NAME}, so its optimizer state is gone; start a new run")
    state = read_state(state_path)
    try:
        step = int(state["step"])
        if "model" in state:
            _load_weights(module, state["model"], state_path)
            history = json.loads(state["history"])
        else:  # a state from before the weights were kept in it: the card's weights must be its step's
            if step != card.get("metrics", {}).get("step"):
                raise UserError(f"{directory}: {STATE_NAME} is from step {step} but the weights from step "
                                f"{card.get('metrics', {}).get('step')} (a save was interrupted); start a new run")
            history = list(card.get("history", []))
        optimizer.load_state_dict(state["optimizer"])
        prev = state.get("previous_coords")
    except UserError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:
        raise UserError(f"{state_path}: not this run's training state ({_first_line(exc)}); "
                        "start a new run") from None
    return step, history, (prev.numpy() if isinstance(prev, torch.Tensor) and prev.numel() else None)


def _load_weights(module: nn.Module, weights: dict, path: Path) -> None:
    inner = getattr(module, "_orig_mod", module)
    try:
        inner.load_state_dict(weights)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise UserError(f"{path}: these weights are not this model's ({_first_line(exc)}); "
                        "resume with the settings it was trained with, or start a new run") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def _read_safetensors(path: Path) -> dict:
    from safetensors.torch import load_file

    if not path.is_file():
        raise UserError(f"{path}: missing; the folder is not a complete checkpoint, start a new run")
    try:
        return load_file(str(path))
    except OSError as exc:
        from vizapp.core.files import storage_error

        raise storage_error(exc, path, "read") from None
    except Exception as exc:  # noqa: BLE001 - safetensors' own error for a truncated or foreign file
        raise UserError(f"{path}: damaged weights ({_first_line(exc)}); start a new run") from None


def read_state(path: Path) -> dict:
    import pickle
    import zipfile

    from models.weights import zip_members

    zip_members(path)  # a zip bomb, or a zip whose two readers see different directories, never reaches torch.load
    try:
        with warnings.catch_warnings():  # a garbage file: the error below says it, not a warning too
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as exc:
        from vizapp.core.files import storage_error

        raise storage_error(exc, path, "read") from None
    except (RuntimeError, EOFError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile, KeyError,
            AttributeError, TypeError) as exc:
        raise UserError(f"{path}: damaged training state ({_first_line(exc)}); start a new run") from None
    if not isinstance(state, dict):
        raise UserError(f"{path}: not a training state; start a new run")
    return state


def _plain(value: object) -> object:
    """JSON's view of a value (tuples become lists), for comparing with a card."""
    return json.loads(json.dumps(value, default=str))


def finite(value: object) -> object:
    """Non-finite floats as None: a card is strict JSON."""
    return None if isinstance(value, float) and not math.isfinite(value) else value

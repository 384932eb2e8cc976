"""Checkpoints the training lab writes and the model hub opens.

A checkpoint is a folder with ``model.safetensors`` (the state dict) and ``card.json``
(format ``vizapp-card-1``: the model entry that rebuilds the architecture, class names,
preprocessing, the ``trained`` flag, a title, and how it was trained). Both files are
written atomically; loading builds the architecture from the card (no pretrained
download: the state dict holds every weight) and reads the weights with safetensors.
The one home of the checkpoint API (``models`` re-exports it).
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
import re
from pathlib import Path

import torch
from torch import nn

from models._preprocess import Preprocess
from models.architectures import build_architecture
from models.formats.safetensors import read_safetensors
from models.loaded import LoadedModel
from models.small import SMALL_MODELS, build_small, replace_head
from models.weights import first_line, load_state_dict
from vizapp.core.errors import ModelError
from vizapp.core.files import atomic_write
from vizapp.core.jobs import RNG_LOCK, Progress, no_progress

__all__ = ["CARD_FORMAT", "CARD_NAME", "WEIGHTS_NAME", "card_preprocess", "is_checkpoint", "load_checkpoint",
           "read_card", "save_checkpoint"]

CARD_FORMAT = "vizapp-card-1"
CARD_NAME = "card.json"
WEIGHTS_NAME = "model.safetensors"


def _jsonable(value: object) -> object:
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()  # numpy / torch scalars
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (Path, os.PathLike)):
        return os.fspath(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"card value of type {type(value).__name__} is not JSON serialisable")


def save_checkpoint(module: nn.Module, card: dict, directory: str | os.PathLike) -> Path:
    """Write ``directory/model.safetensors`` (the state dict) and ``directory/card.json``.

    Each file is written to a temporary file beside it and renamed into place, weights
    first and the card last, so a crash mid-save leaves the previous checkpoint (or
    none), never a half-written file; the two files are replaced one after the other, so
    only a crash between the two renames can pair new weights with the previous card
    (of the same run: the weights still fit it).

    The card needs ``"model"`` (default: the module's ``model_entry``) and
    ``"preprocess"`` (a dict or a :class:`Preprocess`); ``"classes"``, ``"trained"``
    (default true), ``"title"`` and anything else (data, loss, settings, metrics, seed)
    are optional and kept as given; numpy numbers and arrays are converted. A card that
    would not load again raises before anything is written. Returns the folder.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    head = {"format": card.get("format", CARD_FORMAT)}
    if "model" in card or hasattr(module, "model_entry"):
        head["model"] = card.get("model", getattr(module, "model_entry", None))
    card = {**head, **card}  # format and model first, for a reader of the file
    if isinstance(card.get("preprocess"), Preprocess):
        card["preprocess"] = dataclasses.asdict(card["preprocess"])
    _check_card(card, folder / CARD_NAME, saving=True)
    text = json.dumps(card, indent=2, default=_jsonable)
    from safetensors.torch import save_file

    inner = getattr(module, "_orig_mod", module)  # torch.compile wraps the module
    state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in inner.state_dict().items()}
    def write_weights(tmp: str) -> None:
        try:
            save_file(state, tmp, metadata={"format": CARD_FORMAT})
        except OSError:
            raise
        except Exception as exc:  # safetensors reports a failed write (a full disk) as its own error
            found = re.search(r"os error (\d+)", str(exc))
            if not found:
                raise
            code = int(found.group(1))
            raise OSError(code, os.strerror(code)) from None  # atomic_write names the file

    atomic_write(folder / WEIGHTS_NAME, write_weights)
    atomic_write(folder / CARD_NAME, lambda tmp: Path(tmp).write_text(text + "\n", encoding="utf-8"))
    return folder


def _checkpoint_files(path: str | os.PathLike) -> tuple[Path, Path]:
    """``(card.json, model.safetensors)`` for a checkpoint folder, its card or its weights."""
    p = Path(path).expanduser()
    if p.is_dir():
        folder = p
    elif p.name == WEIGHTS_NAME or p.suffix == ".json":
        folder = p.parent
    else:
        raise ModelError(f"{p}: not a checkpoint (a folder with {CARD_NAME} and {WEIGHTS_NAME})")
    card = p if p.suffix == ".json" else folder / CARD_NAME
    weights = p if p.suffix == ".safetensors" else folder / WEIGHTS_NAME
    if not card.is_file():
        raise ModelError(f"{folder}: no {CARD_NAME} here; a vizapp checkpoint folder holds {CARD_NAME} and {WEIGHTS_NAME}")
    return card, weights


def is_checkpoint(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a checkpoint folder, its card, or weights with a card beside them."""
    p = Path(path).expanduser()
    if p.is_dir():
        return (p / CARD_NAME).is_file()
    if p.suffix == ".json":
        return p.is_file()
    return p.name == WEIGHTS_NAME and (p.parent / CARD_NAME).is_file()


#: Bounds a card's numbers must keep: far beyond what the training lab writes (28-64 px, a few
#: hundred classes), far below what would exhaust memory while the architecture is built.
MAX_IMAGE_SIZE = 1024
MAX_RESIZE = 4096
MAX_CLASSES = 100_000
MAX_WIDTH = 65_536
_INTERPOLATIONS = ("nearest", "nearest-exact", "bilinear", "bicubic", "box", "hamming", "lanczos")


def _is_int(value: object, low: int, high: int) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and low <= value <= high


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _option_problem(value: object) -> str | None:
    """What is wrong with a small model's option value (``None`` when it is usable)."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        if len(value) <= 64 and all(_is_int(v, 1, MAX_WIDTH) for v in value):
            return None
        return f"a list of at most 64 integers from 1 to {MAX_WIDTH}"
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return None if _is_int(value, 1, MAX_WIDTH) else f"an integer from 1 to {MAX_WIDTH}"
    if _is_real(value) and 0 < value <= 1024:
        return None
    return f"a number above 0 and at most 1024, or an integer from 1 to {MAX_WIDTH}"


def _check_card(card: object, path: Path, saving: bool = False) -> dict:
    """``card`` if it is a usable card, else a one-line :class:`ModelError` naming ``path`` and the field."""
    def bad(what: str) -> ModelError:
        why = "nothing was written" if saving else "the card was not written by vizapp's trainer or is damaged"
        return ModelError(f"{path}: {what}; {why}")

    def _shown(value: object) -> str:
        text = json.dumps(value, default=repr)
        return text if len(text) <= 40 else text[:37] + "..."

    if not isinstance(card, dict):
        raise bad("not a JSON object")
    if card.get("format") != CARD_FORMAT:
        raise bad(f"format is {card.get('format')!r}, expected '{CARD_FORMAT}'")
    model = card.get("model")
    if not isinstance(model, dict):
        raise bad("no 'model' entry")
    kind = model.get("kind")
    if kind == "small":
        if not isinstance(model.get("name"), str) or model["name"] not in SMALL_MODELS:
            raise bad(f"unknown small model {model.get('name')!r} (known: {', '.join(SMALL_MODELS)})")
        for key in ("in_channels", "image_size", "num_classes"):
            if not isinstance(model.get(key), numbers.Integral) or isinstance(model.get(key), bool):
                raise bad(f"model entry needs an integer '{key}', not {_shown(model.get(key))}")
        if model["in_channels"] not in (1, 3):
            raise bad(f"model 'in_channels' must be 1 (grey) or 3 (RGB), not {model['in_channels']}")
        if not _is_int(model["image_size"], 16, MAX_IMAGE_SIZE):
            raise bad(f"model 'image_size' must be from 16 to {MAX_IMAGE_SIZE} px, not {model['image_size']}")
        if not _is_int(model["num_classes"], 0, MAX_CLASSES):
            raise bad(f"model 'num_classes' must be from 0 to {MAX_CLASSES}, not {model['num_classes']}")
        embed = model.get("embed_dim")
        if embed is not None and not _is_int(embed, 1, MAX_WIDTH):
            raise bad(f"model 'embed_dim' must be empty (null) or from 1 to {MAX_WIDTH}, not {_shown(embed)}")
        options = model.get("options", {})
        if not isinstance(options, dict):
            raise bad("model 'options' is not an object")
        for key, value in options.items():
            if (problem := _option_problem(value)) is not None:
                raise bad(f"model option '{key}' must be {problem}, not {_shown(value)}")
    elif kind == "transfer":
        if not isinstance(model.get("hub"), str) or not isinstance(model.get("num_classes"), numbers.Integral):
            raise bad("a transfer model entry needs 'hub' (a model name) and 'num_classes'")
        if not _is_int(model["num_classes"], 0, MAX_CLASSES):
            raise bad(f"model 'num_classes' must be from 0 to {MAX_CLASSES}, not {model['num_classes']}")
    else:
        raise bad(f"unknown model kind {kind!r} (expected 'small' or 'transfer')")
    classes = card.get("classes")
    if classes is not None and not (isinstance(classes, list) and all(isinstance(c, str) for c in classes)):
        raise bad("'classes' is not a list of names")
    if not isinstance(card.get("trained", True), bool):
        raise bad(f"'trained' must be true or false, not {_shown(card['trained'])}")
    if not isinstance(card.get("title", ""), (str, type(None))):
        raise bad(f"'title' must be a string, not {_shown(card['title'])}")
    pre = card.get("preprocess")
    if not isinstance(pre, dict):
        raise bad("no 'preprocess' entry")
    missing = [k for k in ("resize", "crop", "mean", "std") if k not in pre]
    if missing:
        raise bad(f"'preprocess' needs resize, crop, mean and std (missing: {', '.join(missing)})")
    if not _is_int(pre["resize"], 1, MAX_RESIZE):
        raise bad(f"preprocess 'resize' must be an integer from 1 to {MAX_RESIZE} px, not {_shown(pre['resize'])}")
    if not _is_int(pre["crop"], 1, MAX_IMAGE_SIZE):
        raise bad(f"preprocess 'crop' must be an integer from 1 to {MAX_IMAGE_SIZE} px, not {_shown(pre['crop'])}")
    for key in ("mean", "std"):
        values = pre[key]
        if not (isinstance(values, (list, tuple)) and len(values) in (1, 3) and all(map(_is_real, values))):
            raise bad(f"preprocess '{key}' must be 1 or 3 finite numbers, not {_shown(values)}")
    if len(pre["mean"]) != len(pre["std"]) or not all(s > 0 for s in pre["std"]):
        raise bad(f"preprocess 'std' must be positive, one per channel of 'mean', not {_shown(pre['std'])}")
    if pre.get("interpolation", "bilinear") not in _INTERPOLATIONS:
        raise bad(f"preprocess 'interpolation' must be one of {', '.join(_INTERPOLATIONS)}, "
                  f"not {_shown(pre.get('interpolation'))}")
    return card


def read_card(path: str | os.PathLike) -> dict:
    """The card of a checkpoint (its folder, ``card.json``, or ``model.safetensors`` beside one),
    checked: a :class:`~vizapp.core.errors.ModelError` names the file and what is wrong."""
    card_path, _ = _checkpoint_files(path)
    try:
        data = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ModelError(f"{card_path}: not a readable JSON card ({first_line(exc)})") from None
    return _check_card(data, card_path)


def card_preprocess(card: dict) -> Preprocess:
    p = card["preprocess"]
    return Preprocess(int(p["resize"]), int(p["crop"]), tuple(float(m) for m in p["mean"]),
                      tuple(float(s) for s in p["std"]), str(p.get("interpolation", "bilinear")))


def _architecture(entry: dict, card_path: Path) -> tuple[nn.Module, str]:
    """The untrained module a card describes, and its kind (``"cnn"`` or ``"vit"``)."""
    if entry["kind"] == "small":
        try:
            module = build_small(entry["name"], in_channels=entry["in_channels"], image_size=entry["image_size"],
                                 num_classes=entry["num_classes"], embed_dim=entry.get("embed_dim"),
                                 **entry.get("options", {}))
        except (ModelError, TypeError, ValueError) as exc:
            raise ModelError(f"{card_path}: the model entry cannot be built ({first_line(exc)})") from None
        return module, "vit" if entry["name"] == "vit" else "cnn"
    try:
        module, spec = build_architecture(entry["hub"])
    except ModelError as exc:
        raise ModelError(f"{card_path}: {exc}") from None
    replace_head(module, int(entry["num_classes"]))
    module.model_entry = dict(entry)
    attention = any(isinstance(m, nn.MultiheadAttention) or hasattr(m, "qkv") for m in module.modules())
    return module, spec.kind if spec is not None else ("vit" if attention else "cnn")


def load_checkpoint(path: str | os.PathLike, *, progress: Progress = no_progress):
    """A checkpoint as a :class:`~models.LoadedModel` (CPU, eval mode); ``models.load_model``
    calls this for a checkpoint folder, its ``card.json`` or its ``model.safetensors``.

    Everything that can be checked is checked before the architecture is built: the card's
    fields and their agreement (classes, channels, crop), the weights file (read with safetensors
    only), then a build on the meta device (no memory) whose names and shapes must match the
    file's. Every failure is a one-line
    :class:`~vizapp.core.errors.ModelError` naming the card or the weights file.
    """
    card_path, weights_path = _checkpoint_files(path)
    card = read_card(card_path)
    folder = card_path.parent
    progress(0, 0, f"loading {folder.name}")
    if not weights_path.is_file():
        raise ModelError(f"{folder}: {CARD_NAME} is here but {weights_path.name} is missing")
    entry = card["model"]
    n = int(entry["num_classes"])
    classes = card.get("classes")
    if n == 0:
        classes = None
    elif classes is None:
        classes = [f"class {i}" for i in range(n)]
    elif len(classes) != n:
        raise ModelError(f"{card_path}: {len(classes)} class names for a {n}-way head; fix 'classes' in the card")
    preprocess = card_preprocess(card)
    channels = entry.get("in_channels", 3)
    if preprocess.channels != channels:
        raise ModelError(f"{card_path}: preprocess has {preprocess.channels} channels (mean/std) but the model "
                         f"takes {channels}; fix 'preprocess' in the card")
    if entry["kind"] == "small" and preprocess.crop != entry["image_size"]:
        raise ModelError(f"{card_path}: preprocess crops {preprocess.crop} px but the model was built for "
                         f"{entry['image_size']} px; fix 'crop' in the card")
    state = read_safetensors(weights_path)  # a damaged file is named before the card is blamed
    what = entry.get("name") or entry.get("hub")
    hint = (f"The weights do not belong to the model {CARD_NAME} describes ({entry['kind']} '{what}'); "
            "save the checkpoint again or fix the card.")
    with RNG_LOCK, torch.random.fork_rng(devices=[]):  # building draws initial weights: leave others' RNG alone
        try:
            with torch.device("meta"):  # shapes only: an absurd entry costs no memory here
                shell, _ = _architecture(entry, card_path)
        except ModelError:
            raise
        except Exception as exc:  # noqa: BLE001 - a constructor given odd numbers fails in many ways
            raise ModelError(f"{card_path}: the model entry cannot be built ({first_line(exc)})") from None
        # Every name and shape must match the file before the real module (no bigger than the
        # weights the file holds) is built.
        load_state_dict(shell, state, weights_path, hint=hint, check_only=True)
        del shell
        module, kind = _architecture(entry, card_path)
    load_state_dict(module, state, weights_path, hint=hint)
    module.eval()
    notes = []
    if n == 0:
        notes.append(f"an embedding network: its output is a {getattr(module, 'feature_dim', '?')}-d embedding, "
                     "not class scores")
    title = str(card.get("title") or folder.name)
    return LoadedModel(folder.name, title, kind, module, preprocess, classes, str(weights_path), None,
                       trained=bool(card.get("trained", True)), notes=notes)

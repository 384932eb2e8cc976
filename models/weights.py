"""What every weights reader shares: the zip-bomb checks, the trust refusals, and fitting a state dict.

A safetensors file is read with safetensors only; a zip is checked for a zip bomb (declared
sizes as ``zipfile`` and torch's own reader see them, and a central directory where its end
record says) before anything inflates; TorchScript archives and pickled objects are code and
are read only when the caller trusts the file. Every failure is a one-line
:class:`~vizapp.core.errors.ModelError` or :class:`~vizapp.core.errors.UntrustedModelError`
naming the file. Which reader a file gets is :mod:`models.formats`'s business.
"""

from __future__ import annotations

import struct
import warnings
import zipfile
from pathlib import Path

import torch
from torch import nn

from vizapp.core.errors import ModelError, UntrustedModelError

__all__ = ["first_line", "is_torchscript", "jit_load", "load_state_dict", "torchscript_refusal", "untrusted",
           "unwrap_state_dict", "zip_members"]


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type when the message is empty)."""
    lines = str(exc).strip().splitlines()
    return lines[0][:160] if lines else type(exc).__name__


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
        raise ModelError(f"{path}: a damaged zip archive ({first_line(exc)})") from None


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
        raise ModelError(f"{path}: a damaged zip archive ({first_line(exc)})") from None
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


def is_torchscript(names: list[str] | None) -> bool:
    """Whether a zip's members are a TorchScript program (``<archive>/constants.pkl``, ``code/``)."""
    for name in names or ():
        parts = name.split("/")
        if parts[-1] in ("constants.pkl", "bytecode.pkl") or name.endswith(".debug_pkl") or "code" in parts[1:-1]:
            return True
    return False


def untrusted(path: Path, what: str) -> UntrustedModelError:
    return UntrustedModelError(
        f"{path} {what}. Loading it runs code from the file: only if you trust its source, load it "
        "again with --trust (in the app: tick 'I trust this file')."
    )


def torchscript_refusal(path: Path) -> UntrustedModelError:
    return untrusted(path, "is a TorchScript archive (a program, not just weights; told by its content, "
                            "whatever its name says)")


def jit_load(path: Path) -> nn.Module:
    """A trusted TorchScript file, without torch's deprecation warning on stderr."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=FutureWarning)
            return torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - a damaged archive fails inside the importer in many ways
        raise ModelError(f"{path}: a TorchScript archive that cannot be loaded ({first_line(exc)})") from None


def unwrap_state_dict(obj: object, path: Path) -> dict[str, torch.Tensor]:
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


def load_state_dict(
    module: nn.Module,
    state: object,
    path: Path,
    hint: str = "Check --arch, or that the file was saved from this architecture.",
    check_only: bool = False,
) -> None:
    """Load ``state`` into ``module``; a :class:`ModelError` names ``path`` and every name or
    shape that does not fit. ``check_only`` compares without loading (a module on the meta device)."""
    state = unwrap_state_dict(state, path)
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
        raise ModelError(f"{path} does not fit architecture {type(module).__name__}: {first_line(exc)}") from None

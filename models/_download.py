"""Download a weights file into torch's standard cache, with progress and cancel.

The file lands where torchvision and ``torch.hub`` look for it
(``$TORCH_HOME/hub/checkpoints``), so a lab machine can pre-seed that folder and a
download made here is reused by every other torch program. Before that, each weights
folder (:func:`vizapp.core.paths.weights_dirs`: ``$VIZAPP_WEIGHTS``, the machine's config,
a frozen bundle's ``weights/``) is searched for ``<dir>/hub/checkpoints/<file>``; on an
offline-only machine (the config's ``offline_only``) a file found nowhere is an error,
never a download.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import torch.hub

from vizapp.core.errors import ModelError
from vizapp.core.files import storage_errors
from vizapp.core.jobs import CancelToken, Progress, no_progress

__all__ = ["checkpoint_dir", "cached_path", "download_path", "fetch", "not_offline", "searched_dirs"]

_CHUNK = 1 << 20


def checkpoint_dir() -> Path:
    """``$TORCH_HOME/hub/checkpoints`` (re-read each call, so tests can move it)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def download_path(url: str) -> Path:
    """Where a download of ``url`` goes: ``$TORCH_HOME/hub/checkpoints/<its file name>``."""
    return checkpoint_dir() / os.path.basename(urllib.request.urlparse(url).path)


def searched_dirs() -> list[Path]:
    """The torch hub folders searched for a weights file, in order (the weights folders', then torch's)."""
    from vizapp.core.paths import weights_dirs

    return [*(d / "hub" / "checkpoints" for d in weights_dirs()), checkpoint_dir()]


def cached_path(url: str) -> Path:
    """The local file for ``url``: the first weights folder holding it, else the torch cache's path
    (which may not exist: ``cached_path(url).is_file()`` says whether the file is here)."""
    name = download_path(url).name
    for folder in searched_dirs():
        if (folder / name).is_file():
            return folder / name
    return download_path(url)


def not_offline(what: str, files: str, searched: list) -> ModelError:
    """The offline-only machine's one-line refusal: which model, which files, which folders."""
    from vizapp.core.config import machine_config

    return ModelError(
        f"{what} is not available offline on this machine (offline_only is set in "
        f"{machine_config().where}): {files} is in none of {', '.join(map(str, searched))}; "
        "ask the admin to add it to a weights folder, or pick an offline model"
    )


def fetch(
    url: str,
    *,
    what: str,
    progress: Progress = no_progress,
    cancel: CancelToken | None = None,
) -> Path:
    """Return the cached file for ``url``, downloading it first if needed.

    The file name's hash prefix (torchvision's ``name-<sha256 prefix>.pth``
    convention) is checked after download; a partial file never reaches the cache.
    """
    from vizapp.core.config import machine_config

    found = cached_path(url)
    if found.is_file():
        return found
    dest = download_path(url)
    if machine_config().offline_only:
        raise not_offline(what, dest.name, searched_dirs())
    with storage_errors(dest.parent):  # $TORCH_HOME read-only or under a file: one line naming it
        dest.parent.mkdir(parents=True, exist_ok=True)
    match = torch.hub.HASH_REGEX.search(dest.name)
    prefix = match.group(1) if match else None
    sha = hashlib.sha256()
    progress(0, 0, f"downloading {what} from {url}")
    try:
        with urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - URLs come from the registry
            total = int(response.headers.get("Content-Length") or 0)
            fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name, suffix=".part")
            try:
                with os.fdopen(fd, "wb") as out:
                    done = 0
                    while chunk := response.read(_CHUNK):
                        if cancel is not None:
                            cancel.check()
                        out.write(chunk)
                        sha.update(chunk)
                        done += len(chunk)
                        progress(done, total, f"downloading {what}: {done / 1e6:.1f} MB")
                if prefix and not sha.hexdigest().startswith(prefix):
                    raise ModelError(
                        f"the download of {what} from {url} is corrupt (its SHA-256 does not start "
                        f"with {prefix}); try again or copy the file into {dest.parent}"
                    )
                os.replace(tmp, dest)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
    except (urllib.error.URLError, OSError) as exc:
        raise ModelError(
            f"{what} needs its weights file {dest.name}, which is not in {dest.parent} and could "
            f"not be downloaded from {url} ({getattr(exc, 'reason', exc)}). On an offline machine, "
            f"copy {dest.name} into {dest.parent}, or open a local weights file with --model PATH --arch NAME."
        ) from None
    return dest

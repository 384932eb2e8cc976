"""Where vizapp reads its shipped resources and keeps its own folders: the one paths module.

Resources (the trained models, the sample images, the icon) are package data of the
top-level ``resources`` package, read through :mod:`importlib.resources`, so a source
checkout, an installed wheel and an installer all find them the same way:
:func:`resource` is the only function that locates them.

The app's own folders, each with the environment variable that overrides it (tests and
users set these; the overrides win exactly as before), then the per-machine config file's
key (:mod:`vizapp.core.config`, a lab admin's), then the default:

=========  ====================  ================  =====================================================================================
folder     override              config key        default
=========  ====================  ================  =====================================================================================
cache      ``$VIZAPP_CACHE``     ``cache_dir``     platformdirs' user cache folder (``~/.cache/vizapp`` on Linux)
indexes    (the cache's)         ``index_dir``     ``<cache>/index``
data sets  ``$VIZAPP_DATA``      ``data_dir``      ``<config cache_dir or default cache>/data`` (not under ``$VIZAPP_CACHE``, as before)
runs       ``$VIZAPP_RUNS``      ``runs_dir``      ``<user data>/vizapp/vizapp/runs``
frames     ``$VIZAPP_FRAMES``    (none)            ``<user data>/vizapp/vizapp/frames`` (live frames kept as images)
settings   ``$VIZAPP_SETTINGS``  (none)            Qt's per-user ini store (``QSettings`` decides; see below)
weights    ``$VIZAPP_WEIGHTS``   ``weights_dirs``  a frozen bundle's own ``weights/`` (all three are searched)
=========  ====================  ================  =====================================================================================

``$VIZAPP_CACHE`` set also wins over the config's ``index_dir`` (the indexes follow the cache
the user or a test chose).

Why these defaults: none of them moves an existing user's files.

- The cache was ``~/.cache/vizapp`` everywhere. platformdirs gives that same folder on
  Linux (and honours ``$XDG_CACHE_HOME``); on macOS and Windows it gives the platform's
  cache folder, but when the old ``~/.cache/vizapp`` already exists there it is kept, so
  nobody loses a built index or a downloaded data set.
- Runs were Qt's ``AppDataLocation`` (``<user data>/<organisation>/<application>``, both
  "vizapp"); the folder here is that same place on every platform (platformdirs' roaming
  user data folder, then ``vizapp/vizapp``), so trained runs stay where they are.
- Settings stay in Qt's own per-user ini file: this module is Qt-free, so it only
  answers the override (:func:`settings_file`); the window asks ``QSettings`` otherwise.

Torch's and Hugging Face's caches (``$TORCH_HOME``, ``$HF_HOME``) are theirs: not here.
Nothing here creates a folder; the code that writes in one does so through
:func:`vizapp.core.files.storage_errors`, so a failure is a :class:`~vizapp.core.errors.StorageError`.
Qt-free and torch-free: ``models`` and every engine module may import it.
"""

from __future__ import annotations

import atexit
import contextlib
import os
from importlib import resources as _resources
from pathlib import Path

from vizapp.core.config import bundle_dir, machine_config

__all__ = ["cache_dir", "data_dir", "frames_dir", "index_dir", "resource", "runs_dir", "settings_file",
           "weights_dirs"]

APP = "vizapp"

_extracted = contextlib.ExitStack()
atexit.register(_extracted.close)


def resource(*parts: str) -> Path:
    """The path of a shipped resource, e.g. ``resource("samples")`` or ``resource("icon.png")``.

    Read through ``importlib.resources.files("resources")``: a real folder in a checkout or
    an installed wheel; extracted to a temporary folder (kept until exit) when the package
    lives in a zip.
    """
    traversable = _resources.files("resources").joinpath(*parts)
    if isinstance(traversable, Path):
        return traversable
    return _extracted.enter_context(_resources.as_file(traversable))  # pragma: no cover - zipped installs


def _override(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value).expanduser() if value else None


def _default_cache() -> Path:
    import platformdirs

    legacy = Path.home() / ".cache" / APP
    current = platformdirs.user_cache_path(APP, appauthor=False)
    if legacy != current and legacy.is_dir() and not current.exists():
        return legacy
    return current


def cache_dir() -> Path:
    """The app's cache: ``$VIZAPP_CACHE``, else the config's ``cache_dir``, else the user cache folder."""
    return _override("VIZAPP_CACHE") or machine_config().cache_dir or _default_cache()


def index_dir() -> Path:
    """Where feature indexes are kept: ``$VIZAPP_CACHE/index``, else the config's ``index_dir``,
    else ``<cache>/index``."""
    if (cache := _override("VIZAPP_CACHE")) is not None:
        return cache / "index"
    return machine_config().index_dir or cache_dir() / "index"


def data_dir() -> Path:
    """Where torchvision's data sets are downloaded: ``$VIZAPP_DATA``, else the config's
    ``data_dir``, else ``<config cache_dir or default cache>/data``."""
    config = machine_config()
    return _override("VIZAPP_DATA") or config.data_dir or (config.cache_dir or _default_cache()) / "data"


def runs_dir() -> Path:
    """Where the training lab's runs go: ``$VIZAPP_RUNS``, else the config's ``runs_dir``,
    else Qt's old app data folder's ``runs``."""
    import platformdirs

    return (_override("VIZAPP_RUNS") or machine_config().runs_dir
            or platformdirs.user_data_path(roaming=True) / APP / APP / "runs")


def frames_dir() -> Path:
    """Where the window keeps a live camera or video frame as an image ("Keep frame"):
    ``$VIZAPP_FRAMES``, else the app's data folder's ``frames`` (beside the runs)."""
    import platformdirs

    return _override("VIZAPP_FRAMES") or platformdirs.user_data_path(roaming=True) / APP / APP / "frames"


def weights_dirs() -> list[Path]:
    """The weights folders searched before a download, in order (existing or not).

    ``$VIZAPP_WEIGHTS`` (``os.pathsep``-separated), the config's ``weights_dirs``, then a
    frozen bundle's own ``weights/`` folder next to the executable (none when run from
    Python). Each has the layout ``packaging/build.py --with-weights`` writes:
    ``<dir>/hub/checkpoints/<file>`` (as ``$TORCH_HOME/hub/checkpoints``) and
    ``<dir>/huggingface/hub/models--<org>--<name>/...`` (a copied Hugging Face cache).
    """
    found: list[Path] = []
    env = [Path(p).expanduser() for p in os.environ.get("VIZAPP_WEIGHTS", "").split(os.pathsep) if p]
    bundle = bundle_dir()
    for path in [*env, *machine_config().weights_dirs, *([bundle / "weights"] if bundle else [])]:
        if path not in found:
            found.append(path)
    return found


def settings_file() -> Path | None:
    """The settings ini file named by ``$VIZAPP_SETTINGS``; ``None``: Qt's per-user store."""
    return _override("VIZAPP_SETTINGS")

"""Where vizapp reads its shipped resources and keeps its own folders: the one paths module.

Resources (the trained models, the sample images, the icon) are package data of the
top-level ``resources`` package, read through :mod:`importlib.resources`, so a source
checkout, an installed wheel and an installer all find them the same way:
:func:`resource` is the only function that locates them.

The app's own folders, each with the environment variable that overrides it (tests and
users set these; the overrides win exactly as before):

============  ====================  ==========================================================
folder        override              default
============  ====================  ==========================================================
cache         ``$VIZAPP_CACHE``     platformdirs' user cache folder (``~/.cache/vizapp`` on Linux)
indexes       (the cache's)         ``<cache>/index``
data sets     ``$VIZAPP_DATA``      ``<default cache>/data`` (not under ``$VIZAPP_CACHE``, as before)
runs          ``$VIZAPP_RUNS``      ``<user data>/vizapp/vizapp/runs``
settings      ``$VIZAPP_SETTINGS``  Qt's per-user ini store (``QSettings`` decides; see below)
============  ====================  ==========================================================

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

__all__ = ["cache_dir", "data_dir", "index_dir", "resource", "runs_dir", "settings_file"]

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
    """The app's cache: ``$VIZAPP_CACHE``, else the user cache folder (see the module notes)."""
    return _override("VIZAPP_CACHE") or _default_cache()


def index_dir() -> Path:
    """Where feature indexes are kept: ``<cache>/index``."""
    return cache_dir() / "index"


def data_dir() -> Path:
    """Where torchvision's data sets are downloaded: ``$VIZAPP_DATA``, else ``<default cache>/data``."""
    return _override("VIZAPP_DATA") or _default_cache() / "data"


def runs_dir() -> Path:
    """Where the training lab's runs go: ``$VIZAPP_RUNS``, else Qt's old app data folder's ``runs``."""
    import platformdirs

    return _override("VIZAPP_RUNS") or platformdirs.user_data_path(roaming=True) / APP / APP / "runs"


def settings_file() -> Path | None:
    """The settings ini file named by ``$VIZAPP_SETTINGS``; ``None``: Qt's per-user store."""
    return _override("VIZAPP_SETTINGS")

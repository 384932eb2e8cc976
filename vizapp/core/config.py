"""The per-machine configuration a lab admin sets once: one TOML file, read-only for the app.

Which file (the first that applies; one file, never merged):

1. ``$VIZAPP_CONFIG``, a file path (an error if that file is missing);
2. the site config file, ``platformdirs.site_config_path("vizapp") / "config.toml"``
   (``/etc/xdg/vizapp/config.toml`` on Linux, honouring ``$XDG_CONFIG_DIRS``);
3. ``config.toml`` next to a frozen executable (:func:`bundle_dir`), so an installer can
   ship one.

No file: every setting has its default. The keys (all optional; :data:`KEYS`):

``offline_only`` (bool)
    Models that need a download are hidden from the picker and ``vizapp models``, and
    opening one is an error instead of a download.
``default_model``, ``default_image`` (str)
    What the window opens at launch (``--model``/``--image`` win); a registry name or an
    absolute path, a sample's name or an absolute path.
``models`` (list of registry names)
    The models shown to students (the picker, ``vizapp models``); empty: all of them.
``cache_dir``, ``index_dir``, ``runs_dir``, ``data_dir`` (absolute paths)
    The app's folders (:mod:`vizapp.core.paths`; its environment variables win over these).
``weights_dirs`` (list of absolute paths)
    Site-wide weights folders, e.g. on a network drive, searched before any download
    (:func:`vizapp.core.paths.weights_dirs` says the layout).

A bad file (not TOML, an unknown key, a wrong type, a relative path) is a
:class:`~vizapp.core.errors.ConfigError` naming the file and the key. The file is read once
per process (per file: pointing ``$VIZAPP_CONFIG`` elsewhere reads the other one);
:func:`reset_machine_config` forgets it (tests). Qt-free and torch-free.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from vizapp.core.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10: the same parser, from PyPI
    import tomli as tomllib

__all__ = ["KEYS", "MachineConfig", "bundle_dir", "config_candidates", "config_file", "machine_config",
           "read_config", "reset_machine_config"]

APP = "vizapp"
FILE_NAME = "config.toml"

_PATH_KEYS = ("cache_dir", "index_dir", "runs_dir", "data_dir")
#: Every key the file may hold, with the type it must have.
KEYS: dict[str, str] = {
    "offline_only": "a boolean (true or false)",
    "default_model": "a string (a registry name or an absolute path)",
    "default_image": "a string (a sample's name or an absolute path)",
    "models": "a list of registry names",
    **{key: "an absolute path" for key in _PATH_KEYS},
    "weights_dirs": "a list of absolute paths",
}


@dataclass(frozen=True)
class MachineConfig:
    """The settings of this machine; ``path`` is the file they came from (``None``: no file)."""

    path: Path | None = None
    offline_only: bool = False
    default_model: str | None = None
    default_image: str | None = None
    models: tuple[str, ...] = ()
    cache_dir: Path | None = None
    index_dir: Path | None = None
    runs_dir: Path | None = None
    data_dir: Path | None = None
    weights_dirs: tuple[Path, ...] = ()

    @property
    def where(self) -> str:
        """How a message names the file: its path, or "no config file"."""
        return str(self.path) if self.path is not None else "no config file"


def bundle_dir() -> Path | None:
    """The folder of a frozen executable (PyInstaller: ``sys.frozen``); ``None`` when run from Python."""
    if getattr(sys, "frozen", False):
        return Path(sys.executable).resolve().parent
    return None


def config_candidates() -> list[Path]:
    """Where the file is looked for, in order (``$VIZAPP_CONFIG`` first when set)."""
    import platformdirs

    found = []
    if value := os.environ.get("VIZAPP_CONFIG"):
        found.append(Path(value).expanduser())
    found.append(platformdirs.site_config_path(APP, appauthor=False) / FILE_NAME)
    if (bundle := bundle_dir()) is not None:
        found.append(bundle / FILE_NAME)
    return found


def config_file() -> Path | None:
    """The file that applies: ``$VIZAPP_CONFIG`` (even if missing), else the first that exists."""
    candidates = config_candidates()
    if os.environ.get("VIZAPP_CONFIG"):
        return candidates[0]
    return next((path for path in candidates if path.is_file()), None)


def _path(file: Path, key: str, value: object) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{file}: {key} must be {KEYS[key]} (got {value!r}); fix or remove the key")
    path = Path(value).expanduser()
    if not path.is_absolute():
        raise ConfigError(f"{file}: {key} must be an absolute path (got {value!r}); "
                          "a relative one would differ per user and folder")
    return path


def _check(file: Path, key: str, value: object, kind: type) -> None:
    if not isinstance(value, kind) or (kind is str and not value):
        raise ConfigError(f"{file}: {key} must be {KEYS[key]} (got {value!r}); fix or remove the key")


def read_config(file: Path) -> MachineConfig:
    """Read and check one config file (not cached); :class:`ConfigError` names the file and key."""
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such config file ($VIZAPP_CONFIG names it); create it or unset "
                          "VIZAPP_CONFIG") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read the config file ({exc}); check its permissions") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not a valid TOML file ({exc}); fix it, e.g. offline_only = true") from None
    unknown = [key for key in data if key not in KEYS]
    if unknown:
        raise ConfigError(f"{file}: unknown key {unknown[0]!r}; the keys are {', '.join(KEYS)}")
    values: dict[str, object] = {}
    if "offline_only" in data:
        _check(file, "offline_only", data["offline_only"], bool)
        values["offline_only"] = data["offline_only"]
    for key in ("default_model", "default_image"):
        if key in data:
            _check(file, key, data[key], str)
            values[key] = data[key]
    if "models" in data:
        names = data["models"]
        if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
            raise ConfigError(f"{file}: models must be {KEYS['models']} (got {names!r}); fix or remove the key")
        values["models"] = tuple(names)
    for key in _PATH_KEYS:
        if key in data:
            values[key] = _path(file, key, data[key])
    if "weights_dirs" in data:
        dirs = data["weights_dirs"]
        if not isinstance(dirs, list):
            raise ConfigError(f"{file}: weights_dirs must be {KEYS['weights_dirs']} (got {dirs!r}); "
                              "fix or remove the key")
        values["weights_dirs"] = tuple(_path(file, "weights_dirs", d) for d in dirs)
    return MachineConfig(path=file, **values)


_cache: dict[Path | None, MachineConfig] = {}


def machine_config() -> MachineConfig:
    """This machine's configuration (read once per file and process; defaults when there is none)."""
    file = config_file()
    if file not in _cache:
        _cache[file] = read_config(file) if file is not None else MachineConfig()
    return _cache[file]


def reset_machine_config() -> None:
    """Forget what was read (tests that rewrite a config file)."""
    _cache.clear()

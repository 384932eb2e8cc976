"""The models this machine shows: the registry, filtered by the per-machine config.

The config's ``models`` list (empty: all) says which registry models students see, and on an
``offline_only`` machine a model whose weights are not here is hidden too. The model picker
(through ``vizapp.analysis.catalog``) lists only the shown entries; ``vizapp models --json``
lists every entry with ``shown`` and, for a hidden one, ``hidden`` (why). Opening a hidden
model by name still works unless it needs a download on an offline-only machine
(:mod:`models._download` refuses that).
"""

from __future__ import annotations

from dataclasses import dataclass

from models._registry import REGISTRY, ModelSpec, list_specs
from models.loading import is_cached
from vizapp.core.config import machine_config
from vizapp.core.errors import ConfigError

__all__ = ["ModelEntry", "model_catalog"]

NOT_LISTED = "not in the machine's model list"
NOT_OFFLINE = "not offline (offline-only machine)"


@dataclass(frozen=True)
class ModelEntry:
    """One registry model on this machine: usable ``offline``, and ``hidden`` (why) or shown."""

    spec: ModelSpec
    offline: bool
    hidden: str | None = None

    @property
    def shown(self) -> bool:
        return self.hidden is None


def model_catalog() -> list[ModelEntry]:
    """Every registry model, in the config's ``models`` order when it has one, then the rest
    (hidden); a name in ``models`` that is not in the registry is a :class:`ConfigError`."""
    config = machine_config()
    unknown = [name for name in config.models if name not in REGISTRY]
    if unknown:
        raise ConfigError(f"{config.where}: models names {unknown[0]!r}, which is not a registry model; "
                          f"the models are {', '.join(REGISTRY)}")
    listed = [REGISTRY[name] for name in dict.fromkeys(config.models)]
    specs = listed + [spec for spec in list_specs() if spec not in listed] if listed else list_specs()
    entries = []
    for spec in specs:
        offline = is_cached(spec)
        hidden = (NOT_LISTED if listed and spec not in listed
                  else NOT_OFFLINE if config.offline_only and not offline else None)
        entries.append(ModelEntry(spec, offline, hidden))
    return entries

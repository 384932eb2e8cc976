"""Which registry models to suggest, what works on this machine first.

The Attention dock and the attention error on a CNN name Vision Transformers to open;
the list comes from the registry and the caches here, never from a hard-coded list:
trained models that load offline first (the shipped ``vit_digits``), then untrained
offline ones, then those that need a download, marked so.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Suggestion", "suggest_models", "suggestion_text"]


@dataclass(frozen=True)
class Suggestion:
    name: str
    title: str
    offline: bool
    trained: bool

    def label(self) -> str:
        """``vit_digits``, ``vit_tiny_untrained (untrained)``, ``vit_b_16 (download)``."""
        marks = [] if self.trained else ["untrained"]
        if not self.offline:
            marks.append("download")
        return f"{self.name} ({', '.join(marks)})" if marks else self.name


def _trained(spec) -> bool:
    return spec.source != "random"  # the one source whose weights are known to be random


def suggest_models(kind: str = "vit", entries: Iterable | None = None) -> list[Suggestion]:
    """Registry models of ``kind``, best first: trained offline, untrained offline, downloads.

    ``entries`` is the model picker's catalog, ``[(spec, usable offline)]``; without it
    the caches are checked here (a second or so the first time: call it off the GUI thread).
    Within a group the registry's order is kept.
    """
    if entries is None:
        from models import is_cached, list_specs

        entries = [(spec, is_cached(spec)) for spec in list_specs() if spec.kind == kind]
    found = [Suggestion(spec.name, spec.title, bool(offline), _trained(spec))
             for spec, offline in entries if spec.kind == kind]
    rank = {s.name: (not s.offline, not s.trained) for s in found}
    return sorted(found, key=lambda s: rank[s.name])  # sorted() is stable: registry order within a group


def suggestion_text(kind: str = "vit", entries: Iterable | None = None) -> str:
    """``vit_digits, vit_tiny_untrained (untrained), vit_b_16 (download) or deit_tiny (download)``."""
    labels = [s.label() for s in suggest_models(kind, entries)]
    if len(labels) <= 1:
        return "".join(labels)
    return f"{', '.join(labels[:-1])} or {labels[-1]}"

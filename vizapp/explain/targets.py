"""Which class an explanation is for: an index, a class name, or the predicted class."""

from __future__ import annotations

import torch

from vizapp.core.errors import UserError
from vizapp.probing.inference import has_classifier

__all__ = ["resolve_target"]


def resolve_target(loaded, logits: torch.Tensor, target: int | str | None) -> int:
    """The class index to explain: ``target`` (an index or a class name) or the top class."""
    if not has_classifier(loaded, logits):
        raise UserError(f"{loaded.title} has no classifier head, so there is no class to explain")
    n = int(logits.shape[1])
    if target is None:
        return int(logits[0].argmax())
    if isinstance(target, str) and not target.strip().lstrip("-").isdigit():
        names = loaded.class_names or []
        lowered = [c.lower() for c in names]
        if target.lower() in lowered:
            return lowered.index(target.lower())
        close = [c for c in names if target.lower() in c.lower()][:5]
        hint = f" Close: {', '.join(close)}." if close else ""
        raise UserError(f"'{target}' is not one of {loaded.title}'s class names.{hint} Give a name or an index 0-{n - 1}")
    index = int(target)
    if not 0 <= index < n:
        raise UserError(f"class {index} is out of range: {loaded.title} has {n} classes (0-{n - 1})")
    return index

"""Transfer learning: a pretrained hub model with a new classifier head, its backbone frozen
as far as asked."""

from __future__ import annotations

from torch import nn

from models._preprocess import Preprocess
from models.loading import load_model
from models.small import FREEZE, replace_head, set_freeze
from vizapp.core.errors import ModelError
from vizapp.core.jobs import CancelToken, Progress, no_progress

__all__ = ["transfer_model"]


def transfer_model(
    hub_name: str,
    num_classes: int,
    freeze: str = "all",
    *,
    progress: Progress = no_progress,
    cancel: CancelToken | None = None,
) -> tuple[nn.Module, Preprocess]:
    """A pretrained hub model with a new ``num_classes``-way ``nn.Linear`` head.

    ``freeze``: ``"all"`` trains only the new head; ``"some"`` also the backbone's last
    stage and everything after it in parameter order (a ResNet's ``layer4``, a ViT's last
    block and final norm, an EfficientNet's last block stage and ``conv_head``); ``"none"``
    trains everything. Returns the module (eval mode; ``model_entry`` set for the card)
    and the hub model's own preprocessing (resizing it to the data set is the trainer's
    choice). Frozen BatchNorm layers still update their statistics in train mode: use
    :func:`train_mode` to keep them fixed.
    """
    if freeze not in FREEZE:
        raise ModelError(f"freeze must be one of {', '.join(FREEZE)}, not '{freeze}'")
    if num_classes < 1:
        raise ModelError(f"transfer learning needs at least one class, not {num_classes}")
    loaded = load_model(hub_name, progress=progress, cancel=cancel)
    module = loaded.module
    head = replace_head(module, int(num_classes))
    set_freeze(module, freeze, head)
    module.model_entry = {"kind": "transfer", "hub": hub_name, "num_classes": int(num_classes), "freeze": freeze}
    return module, loaded.preprocess

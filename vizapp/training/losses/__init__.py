"""The losses the training lab offers, one module per loss, and their torch-free registry.

:data:`LOSSES` maps each loss's key (the ``--loss`` choice; the module
``vizapp.training.losses.<key>``) to the name the panel shows. A loss module defines:

- ``EMBEDS`` (the model outputs an embedding, not class logits), ``VIEWS`` (2: two augmented
  views of each image, labels unused), ``OPTIONS`` (the :class:`~vizapp.training.config.TrainConfig`
  fields it reads: ``margin``, ``mining``, ``temperature``; the panel shows those rows),
  optionally ``DEFAULT_MARGIN`` and ``VALIDATE_IN_BATCHES`` (its validation loss is computed in
  training-sized batches: pairs and triplets grow with the batch);
- ``loss(outputs, labels, *, z2=None, margin=, mining=, temperature=)``, a scalar tensor;
- ``stats(...)``, the same arguments, what the panel shows beside the loss as plain floats
  (a quantity the batch cannot give is ``None`` and left out, so logged JSON never holds NaN).

A new loss is one module here plus one line in :data:`LOSSES`. Cross-entropy is
:func:`torch.nn.functional.cross_entropy` itself; the metric losses are written here,
vectorised with masks over the batch's pairwise distances; a batch that holds nothing to
compare gives a loss of exactly 0 still connected to the graph, so ``backward`` works and
nothing turns into NaN. Nothing here imports Qt, and this ``__init__`` not even torch.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from vizapp.core.errors import UserError

__all__ = ["LOSSES", "MINING", "contrastive_loss", "info_nce", "loss_module", "loss_stats", "triplet_loss"]

#: Loss key (``--loss``) -> the name shown in the panel, in the order a menu lists them.
LOSSES = {
    "ce": "Cross-entropy",
    "contrastive": "Contrastive (Hadsell, Chopra & LeCun 2006)",
    "triplet": "Triplet (FaceNet, Schroff et al. 2015)",
    "infonce": "InfoNCE / NT-Xent (SimCLR, Chen et al. 2020)",
}

#: Triplet mining strategies (``vizapp.training.losses.triplet``).
MINING = ("all", "hard", "semihard")

_FUNCTIONS = {"contrastive_loss": "contrastive", "triplet_loss": "triplet", "info_nce": "infonce"}


def loss_module(key: str) -> ModuleType:
    """The module implementing loss ``key``; an unknown key is a one-line :class:`UserError`."""
    if key not in LOSSES:
        raise UserError(f"unknown loss {key!r}; choose one of {', '.join(LOSSES)}")
    return importlib.import_module(f"{__name__}.{key}")


def loss_stats(loss: str, outputs, labels=None, *, z2=None, margin: float | None = None,
               temperature: float = 0.5) -> dict[str, float]:
    """What the panel shows beside the loss value, for one batch, as plain floats.

    ``outputs`` is what the loss was given: logits for ``"ce"``, embeddings for
    ``"contrastive"`` and ``"triplet"``, the first view's projections ``z1`` for
    ``"infonce"`` (with ``z2=`` the second view's; ``labels`` unused). The keys are each
    module's ``stats`` (``accuracy``; ``pos_dist``/``neg_dist``/``inside_margin``;
    ``pos_dist``/``neg_dist``/``active_triplets``; ``top1``/``pos_sim``/``neg_sim``).
    """
    out = loss_module(loss).stats(outputs, labels, z2=z2, margin=margin, temperature=temperature)
    return {k: v for k, v in out.items() if v is not None}


def __getattr__(name: str):
    if name in _FUNCTIONS:
        return getattr(loss_module(_FUNCTIONS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

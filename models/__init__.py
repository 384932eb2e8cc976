"""The model zoo: registry, loaders, checkpoints and preprocessing (no Qt here).

Floors inside the package (each imports only those below it): ``_preprocess``, ``_registry``,
``_download`` -> ``loaded`` (the record every loader returns), ``small`` (the training lab's
architectures), ``weights`` (the zip-bomb checks and trust refusals every reader shares) ->
``formats`` (one module per weight file format, told by content) -> ``architectures`` ->
``checkpoint`` -> ``loading`` -> ``transfer`` and ``catalog`` (the models this machine shows,
after its per-machine config).
"""

from models._preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from models._registry import REGISTRY, ModelSpec, get_spec, list_specs, register
from models.architectures import build_architecture
from models.catalog import ModelEntry, model_catalog
from models.checkpoint import is_checkpoint, load_checkpoint, read_card, save_checkpoint
from models.loaded import LoadedModel, imagenet_classes
from models.loading import is_cached, load_model
from models.small import SMALL_MODELS, build_small, count_parameters
from models.transfer import transfer_model

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "REGISTRY",
    "SMALL_MODELS",
    "LoadedModel",
    "ModelEntry",
    "ModelSpec",
    "Preprocess",
    "build_architecture",
    "build_small",
    "count_parameters",
    "get_spec",
    "imagenet_classes",
    "is_cached",
    "is_checkpoint",
    "list_specs",
    "load_checkpoint",
    "load_model",
    "model_catalog",
    "read_card",
    "register",
    "save_checkpoint",
    "transfer_model",
]

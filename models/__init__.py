"""The model zoo: registry, loaders and preprocessing (no Qt here)."""

from models._loaders import LoadedModel, build_architecture, imagenet_classes, is_cached, load_model
from models._preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from models._registry import REGISTRY, ModelSpec, get_spec, list_specs, register
from models.small import (
    SMALL_MODELS,
    build_small,
    count_parameters,
    read_card,
    save_checkpoint,
    transfer_model,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "REGISTRY",
    "SMALL_MODELS",
    "LoadedModel",
    "ModelSpec",
    "Preprocess",
    "build_architecture",
    "build_small",
    "count_parameters",
    "get_spec",
    "imagenet_classes",
    "is_cached",
    "list_specs",
    "load_model",
    "read_card",
    "register",
    "save_checkpoint",
    "transfer_model",
]

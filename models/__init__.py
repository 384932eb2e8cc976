"""The model zoo: registry, loaders and preprocessing (no Qt here)."""

from models._loaders import LoadedModel, build_architecture, imagenet_classes, is_cached, load_model
from models._preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from models._registry import REGISTRY, ModelSpec, get_spec, list_specs, register

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "REGISTRY",
    "LoadedModel",
    "ModelSpec",
    "Preprocess",
    "build_architecture",
    "get_spec",
    "imagenet_classes",
    "is_cached",
    "list_specs",
    "load_model",
    "register",
]

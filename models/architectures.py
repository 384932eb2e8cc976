"""Untrained networks by name: the registry's, torchvision's and timm's builders, and the
preprocessing a torchvision or timm architecture outside the registry expects."""

from __future__ import annotations

import math

from torch import nn

from models._preprocess import Preprocess
from models._registry import REGISTRY, ModelSpec
from vizapp.core.errors import ModelError

__all__ = ["build_architecture", "preprocess_for_arch"]


def build_architecture(arch: str, num_classes: int | None = None) -> tuple[nn.Module, ModelSpec | None]:
    """An untrained network for a registry name, a torchvision builder or a timm model name."""
    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    spec = REGISTRY.get(arch)
    if spec is not None:
        if spec.source == "torchvision":
            import torchvision.models as tvm

            return tvm.get_model(spec.builder, weights=None, **kwargs), spec
        import timm

        if spec.source == "timm" and num_classes is None:
            kwargs["num_classes"] = 1000 if spec.weights != "dino" else 0
        return timm.create_model(spec.builder, pretrained=False, **kwargs), spec
    import torchvision.models as tvm

    if arch in tvm.list_models(module=tvm):
        return tvm.get_model(arch, weights=None, **kwargs), None
    import timm

    if timm.is_model(arch):
        return timm.create_model(arch, pretrained=False, **kwargs), None
    raise ModelError(
        f"unknown architecture '{arch}'; use a registry name ({', '.join(REGISTRY)}), "
        "a torchvision builder (e.g. resnet34) or a timm model name (e.g. vit_tiny_patch16_224)"
    )


def preprocess_for_arch(arch: str, module: nn.Module) -> Preprocess:
    """Preprocessing for a torchvision or timm architecture outside the registry."""
    import torchvision.models as tvm

    if arch in tvm.list_models(module=tvm):
        t = tvm.get_model_weights(arch).DEFAULT.transforms()
        return Preprocess(int(t.resize_size[0]), int(t.crop_size[0]), tuple(t.mean), tuple(t.std), t.interpolation.value)
    from timm.data import resolve_data_config

    cfg = resolve_data_config({}, model=module)
    size = int(cfg["input_size"][-1])
    return Preprocess(math.floor(size / float(cfg.get("crop_pct", 0.875))), size, tuple(cfg["mean"]),
                      tuple(cfg["std"]), cfg.get("interpolation", "bicubic"))

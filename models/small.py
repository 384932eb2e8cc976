"""The networks the training lab trains, transfer learning from the hub, and checkpoints.

The convention every small model follows (and every view relies on):

- ``forward(x)`` returns ``head(features(x))``: the class logits, ``B x num_classes``.
- ``features(x)`` returns the penultimate vector, ``B x feature_dim``: what the live
  embedding view projects and what the contrastive losses compare. With ``embed_dim``
  it is the output of a linear ``embed`` layer (``B x embed_dim``) on top of the
  backbone's vector; without, the backbone's vector itself.
- ``head`` is the ``nn.Linear`` classifier; a pure embedding net (``num_classes == 0``)
  has ``nn.Identity`` there, so ``forward`` returns the embedding.
- ``feature_dim`` and ``num_classes`` are attributes; ``model_entry`` is the dict that
  goes into a checkpoint card's ``"model"`` (enough to rebuild the architecture).
- Activations are ``nn.ReLU`` modules (never functional, never in place), one module per
  use, so Guided Backprop and the feature-map view see each of them; modules are named
  for the layer tree (``conv1``, ``pool1``, ``layer2.0.conv1``).
- Building a model after ``torch.manual_seed(s)`` gives the same weights. Convolution and
  linear biases start at zero (see ``_SmallNet._finish``).

A checkpoint is a folder holding ``model.safetensors`` (the state dict) and
``card.json`` (what the model is, its classes and preprocessing, how it was trained);
:func:`save_checkpoint` writes both atomically and ``models.load_model(folder)`` opens
it like any hub model (the checkpoint code lives in :mod:`models.checkpoint`).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

import torch
from torch import nn

from vizapp.core.errors import ModelError

__all__ = [
    "FREEZE",
    "SMALL_MODELS",
    "build_small",
    "count_parameters",
    "find_head",
    "replace_head",
    "set_freeze",
    "train_mode",
]

SMALL_MODELS: dict[str, str] = {
    "mlp": "Multi-layer perceptron: flatten, two hidden layers of 256 with ReLU, a linear head. "
           "Every pixel gets its own weight: compare its parameter count with the CNNs'.",
    "lenet": "LeNet-5 (LeCun et al. 1998): conv 6@5x5, pool, conv 16@5x5, pool, fc 120, fc 84, head; "
             "ReLU and max pooling; about 62k parameters at 32 px.",
    "tinyvgg": "TinyVGG as in CNN Explainer: two blocks of conv3x3(10)-ReLU-conv3x3(10)-ReLU-maxpool, "
               "flatten, a linear head.",
    "resnet": "A CIFAR-style ResNet (He et al. 2016): 3 stages of basic blocks with 16/32/64 channels, "
              "global average pooling; depth 8 (option depth=6n+2, e.g. 20).",
    "vit": "A small Vision Transformer (timm's VisionTransformer): patch 4 at 32 px or 8 at 64 px, "
           "width 96, 6 blocks of 3 heads, class token.",
}

FREEZE = ("all", "some", "none")


# --- the common frame ------------------------------------------------------------------------


class _SmallNet(nn.Module):
    """A backbone vector (``_trunk``), an optional ``embed`` projection and a ``head``."""

    def _finish(self, trunk_dim: int, num_classes: int, embed_dim: int | None) -> None:
        self.embed = nn.Linear(trunk_dim, embed_dim) if embed_dim else None
        self.feature_dim = embed_dim or trunk_dim
        self.num_classes = num_classes
        self.head = nn.Linear(self.feature_dim, num_classes) if num_classes else nn.Identity()
        # Biases start at zero (the weights keep torch's default draw). torch's default bias,
        # uniform in +-1/sqrt(fan_in), outweighs the input's share of a deep layer's
        # pre-activation in these unnormalised ReLU stacks (it shrinks about 2x per layer):
        # in TinyVGG a fifth of the last block's channels started dead on every image and the
        # rest nearly constant, so the first hundreds of steps learnt nothing (shapes stayed
        # at chance for a whole epoch of the old defaults).
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def _trunk(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate vector, ``B x feature_dim``."""
        v = self._trunk(x)
        return v if self.embed is None else self.embed(v)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class MLP(_SmallNet):
    """Flatten, ``hidden`` fully connected layers with ReLU (``fc1``, ``relu1``, ...), head."""

    def __init__(self, in_channels: int, image_size: int, num_classes: int, embed_dim: int | None = None,
                 hidden: tuple[int, ...] | list[int] = (256, 256)) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.depth = len(hidden)
        width = in_channels * image_size * image_size
        for i, h in enumerate(hidden, start=1):
            setattr(self, f"fc{i}", nn.Linear(width, int(h)))
            setattr(self, f"relu{i}", nn.ReLU())
            width = int(h)
        self._finish(width, num_classes, embed_dim)

    def _trunk(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flatten(x)
        for i in range(1, self.depth + 1):
            x = getattr(self, f"relu{i}")(getattr(self, f"fc{i}")(x))
        return x


class LeNet5(_SmallNet):
    """LeNet-5 with ReLU and max pooling.

    At 28 px ``conv1`` pads by 2 (the classic way MNIST met a 32 px network); other sizes
    reach the 16 x 5 x 5 the fully connected layers expect through ``adapt`` (adaptive
    average pooling, a no-op at 28 and 32 px), so the parameter count does not depend on
    the image size.
    """

    def __init__(self, in_channels: int, image_size: int, num_classes: int, embed_dim: int | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 6, 5, padding=2 if image_size < 32 else 0)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.adapt = nn.AdaptiveAvgPool2d((5, 5))
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(120, 84)
        self.relu4 = nn.ReLU()
        self._finish(84, num_classes, embed_dim)

    def _trunk(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = self.flatten(self.adapt(x))
        return self.relu4(self.fc2(self.relu3(self.fc1(x))))


class TinyVGG(_SmallNet):
    """CNN Explainer's TinyVGG: ``conv1_1``-``relu1_1``-``conv1_2``-``relu1_2``-``pool1``, the
    same again as block 2 (3x3 convolutions without padding), flatten, head."""

    def __init__(self, in_channels: int, image_size: int, num_classes: int, embed_dim: int | None = None,
                 channels: int = 10) -> None:
        super().__init__()
        c = int(channels)
        self.conv1_1 = nn.Conv2d(in_channels, c, 3)
        self.relu1_1 = nn.ReLU()
        self.conv1_2 = nn.Conv2d(c, c, 3)
        self.relu1_2 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2_1 = nn.Conv2d(c, c, 3)
        self.relu2_1 = nn.ReLU()
        self.conv2_2 = nn.Conv2d(c, c, 3)
        self.relu2_2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        side = ((image_size - 4) // 2 - 4) // 2
        self._finish(c * side * side, num_classes, embed_dim)

    def _trunk(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1_2(self.conv1_2(self.relu1_1(self.conv1_1(x)))))
        x = self.pool2(self.relu2_2(self.conv2_2(self.relu2_1(self.conv2_1(x)))))
        return self.flatten(x)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers and a shortcut (a 1x1 conv-BN projection when the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        else:
            self.shortcut = nn.Identity()
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(y + self.shortcut(x))


class ResNet(_SmallNet):
    """``conv1``-``bn1``-``relu1``, ``layer1..3`` of ``(depth - 2) / 6`` basic blocks each (16, 32,
    64 channels; stages 2 and 3 halve the resolution), ``pool`` (global average), head."""

    def __init__(self, in_channels: int, image_size: int, num_classes: int, embed_dim: int | None = None,
                 depth: int = 8, width: int = 16) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ModelError(f"resnet depth must be 6n + 2 (8, 14, 20, 32, ...), not {depth}")
        n = (depth - 2) // 6
        w = int(width)
        self.conv1 = nn.Conv2d(in_channels, w, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        self.relu1 = nn.ReLU()
        cin = w
        for stage, (cout, stride) in enumerate([(w, 1), (2 * w, 2), (4 * w, 2)], start=1):
            blocks = []
            for i in range(n):
                blocks.append(BasicBlock(cin, cout, stride if i == 0 else 1))
                cin = cout
            setattr(self, f"layer{stage}", nn.Sequential(*blocks))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        self._finish(cin, num_classes, embed_dim)

    def _trunk(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.flatten(self.pool(x))


@functools.cache
def _vit_class() -> type:
    """``SmallViT``, a subclass of timm's VisionTransformer (timm is imported on first use)."""
    from timm.models.vision_transformer import VisionTransformer

    class SmallViT(VisionTransformer):
        """timm's VisionTransformer (class token, final norm) with the small-model convention:
        ``features`` is the class token after the final norm (then ``embed`` if asked)."""

        def __init__(self, in_channels: int, image_size: int, num_classes: int, embed_dim: int | None = None,
                     patch_size: int | None = None, width: int = 96, depth: int = 6, heads: int = 3,
                     mlp_ratio: float = 2.0) -> None:
            patch = int(patch_size or (4 if image_size <= 32 else 8))
            if image_size % patch:
                raise ModelError(f"vit: image size {image_size} is not a multiple of the patch size {patch}")
            if width % heads:
                raise ModelError(f"vit: width {width} does not split into {heads} heads")
            super().__init__(img_size=image_size, patch_size=patch, in_chans=in_channels, num_classes=0,
                             embed_dim=width, depth=depth, num_heads=heads, mlp_ratio=mlp_ratio,
                             class_token=True, global_pool="token")
            self.embed = nn.Linear(width, embed_dim) if embed_dim else None
            self.feature_dim = embed_dim or width
            self.num_classes = num_classes
            self.head = nn.Linear(self.feature_dim, num_classes) if num_classes else nn.Identity()

        def features(self, x: torch.Tensor) -> torch.Tensor:
            v = self.forward_head(self.forward_features(x), pre_logits=True)
            return v if self.embed is None else self.embed(v)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.features(x))

    SmallViT.__module__ = __name__
    SmallViT.__qualname__ = "SmallViT"
    return SmallViT


def _builders() -> dict[str, Callable[..., nn.Module]]:
    return {"mlp": MLP, "lenet": LeNet5, "tinyvgg": TinyVGG, "resnet": ResNet, "vit": _vit_class()}


def build_small(
    name: str,
    *,
    in_channels: int,
    image_size: int,
    num_classes: int,
    embed_dim: int | None = None,
    **options,
) -> nn.Module:
    """A freshly initialised small model (train mode); see the module docstring for its shape.

    Parameters
    ----------
    name : str
        One of :data:`SMALL_MODELS`.
    in_channels : int
        1 (grey) or 3 (RGB).
    image_size : int
        Side of the square input, at least 16 (28, 32 and 64 are the usual ones).
    num_classes : int
        Logits of the head; 0 for a pure embedding net (``forward`` returns ``features``).
    embed_dim : int, optional
        Add a linear ``embed`` layer so that ``features`` is ``embed_dim`` wide.
    **options
        Per model: mlp ``hidden``; tinyvgg ``channels``; resnet ``depth``, ``width``;
        vit ``patch_size``, ``width``, ``depth``, ``heads``, ``mlp_ratio``.
    """
    if name not in SMALL_MODELS:
        raise ModelError(f"unknown small model '{name}'; choose one of {', '.join(SMALL_MODELS)}")
    if in_channels not in (1, 3):
        raise ModelError(f"{name}: in_channels must be 1 or 3, not {in_channels}")
    if image_size < 16:
        raise ModelError(f"{name}: image size must be at least 16 px, not {image_size}")
    if num_classes < 0 or (embed_dim is not None and embed_dim <= 0):
        raise ModelError(f"{name}: num_classes must be >= 0 and embed_dim > 0 (got {num_classes}, {embed_dim})")
    cls = _builders()[name]
    known = [p for p in inspect.signature(cls.__init__).parameters
             if p not in ("self", "in_channels", "image_size", "num_classes", "embed_dim")]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ModelError(f"{name} has no option {', '.join(unknown)}; its options are {', '.join(known) or 'none'}")
    module = cls(int(in_channels), int(image_size), int(num_classes), embed_dim, **options)
    module.model_entry = {
        "kind": "small", "name": name, "in_channels": int(in_channels), "image_size": int(image_size),
        "num_classes": int(num_classes), "embed_dim": embed_dim, "options": dict(options),
    }
    return module


def count_parameters(module: nn.Module) -> tuple[int, int]:
    """``(total, trainable)`` parameter counts."""
    total = trainable = 0
    for p in module.parameters():
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return total, trainable


# --- transfer learning ---------------------------------------------------------------------------


def find_head(module: nn.Module) -> list[str]:
    """The names of the classifier module(s): ``head`` for a small model, timm's
    ``pretrained_cfg["classifier"]`` (two for DeiT-distilled), else the last ``nn.Linear``."""
    if isinstance(getattr(module, "head", None), nn.Linear) and hasattr(module, "model_entry"):
        return ["head"]
    cfg = getattr(module, "pretrained_cfg", None) or {}
    names = cfg.get("classifier") if isinstance(cfg, dict) else None
    if names:
        names = [names] if isinstance(names, str) else list(names)
        mods = dict(module.named_modules())
        if all(isinstance(mods.get(n), nn.Linear) for n in names):
            return names
    linears = [n for n, m in module.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ModelError(f"{type(module).__name__} has no nn.Linear classifier to replace")
    return [linears[-1]]


def replace_head(module: nn.Module, num_classes: int) -> list[str]:
    if hasattr(module, "reset_classifier") and hasattr(module, "pretrained_cfg"):
        module.reset_classifier(num_classes)  # timm: a fresh Linear (or Identity for 0)
        names = find_head(module)
        mods = dict(module.named_modules())
        if all(isinstance(mods[n], nn.Linear) and mods[n].out_features == num_classes for n in names):
            return names
        raise ModelError(f"{type(module).__name__}: reset_classifier did not give a {num_classes}-way Linear head")
    (name,) = find_head(module)
    parent_name, _, attr = name.rpartition(".")
    parent = module.get_submodule(parent_name)
    old = getattr(parent, attr)
    setattr(parent, attr, nn.Linear(old.in_features, num_classes, bias=old.bias is not None))
    return [name]


def _under(name: str, prefixes: list[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _last_stage(module: nn.Module, head: list[str]) -> str:
    """The name of the backbone's last stage (heuristic, see :func:`transfer_model`)."""

    def size(prefix: str, m: nn.Module) -> int:
        pre = f"{prefix}." if prefix else ""
        return sum(p.numel() for n, p in m.named_parameters() if not _under(pre + n, head))

    def param_children(prefix: str, m: nn.Module) -> list[tuple[str, nn.Module, int]]:
        pre = f"{prefix}." if prefix else ""
        out = [(pre + n, c, size(pre + n, c)) for n, c in m.named_children()]
        return [t for t in out if t[2] > 0]

    total = size("", module)
    top = param_children("", module)
    if top and total and 0.2 <= top[-1][2] / total <= 0.8:
        return top[-1][0]  # the root's children are the stages (a ResNet's layer1..4)
    queue = [("", module)]
    while queue:
        prefix, m = queue.pop(0)
        kids = param_children(prefix, m)
        if isinstance(m, (nn.Sequential, nn.ModuleList)) and len(kids) >= 3 and size(prefix, m) >= 0.5 * total:
            return kids[-1][0]  # the main sequence of blocks: its last one
        queue.extend((n, c) for n, c, _ in kids)
    return top[-1][0] if top else ""


def set_freeze(module: nn.Module, freeze: str, head: list[str] | None = None) -> None:
    """``requires_grad`` per policy: ``"all"`` trains the head only, ``"some"`` the last stage,
    everything after it and the head, ``"none"`` everything."""
    if freeze not in FREEZE:
        raise ModelError(f"freeze must be one of {', '.join(FREEZE)}, not '{freeze}'")
    head = head or find_head(module)
    names = [n for n, _ in module.named_parameters()]
    start = len(names)
    if freeze == "none":
        start = 0
    elif freeze == "some":
        stage = _last_stage(module, head)
        start = next((i for i, n in enumerate(names) if _under(n, [stage]) and not _under(n, head)), len(names))
    for i, (n, p) in enumerate(module.named_parameters()):
        p.requires_grad_(i >= start or _under(n, head))


def train_mode(module: nn.Module, mode: bool = True) -> nn.Module:
    """``module.train(mode)``, but batch-norm layers whose parameters are all frozen stay in eval
    mode (their running statistics stay the pretrained ones)."""
    module.train(mode)
    if mode:
        for m in module.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                params = list(m.parameters(recurse=False))
                if params and not any(p.requires_grad for p in params):
                    m.eval()
    return module

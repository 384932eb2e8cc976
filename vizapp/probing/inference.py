"""Run a model on one image: predictions, the input it saw, and captured activations."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from models import LoadedModel
from vizapp.core.errors import OutOfMemory
from vizapp.core.jobs import CancelToken
from vizapp.probing.probe import Captured, capture, first_tensor

__all__ = ["Prediction", "InferenceResult", "has_classifier", "run", "top_predictions", "training_modules"]


@dataclass(frozen=True)
class Prediction:
    label: str
    index: int
    prob: float

    def to_json(self) -> dict:
        return {"label": self.label, "index": self.index, "prob": self.prob}


@dataclass
class InferenceResult:
    """Plain numpy, safe to hand to another thread.

    Attributes
    ----------
    input : ndarray
        The normalised ``1 x 3 x H x W`` float32 tensor fed to the model.
    display : ndarray
        ``H x W x 3`` uint8: that input with the normalisation undone.
    predictions : list of Prediction
        Best first; empty for a model without a classifier head.
    activations : dict of str to ndarray
        Each captured layer's output for the image, batch dimension dropped.
    """

    input: np.ndarray
    display: np.ndarray
    predictions: list[Prediction]
    activations: dict[str, np.ndarray] = field(default_factory=dict)
    logits: np.ndarray | None = None
    calls: dict[str, int] = field(default_factory=dict)


def training_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The modules of ``model`` in training mode (none for a model in eval mode).

    A plain walk of ``_modules``: ``model.eval()`` and ``model.train()`` set an attribute
    on every module through ``nn.Module.__setattr__`` (about 1.2 ms for EfficientNet-Lite0's
    273 modules, 5 % of its forward pass), which a model already in eval mode does not need.
    """
    found = []
    stack: list[torch.nn.Module | None] = [model]
    while stack:
        module = stack.pop()
        if module is None:
            continue
        if module.training:
            found.append(module)
        stack += module._modules.values()
    return found


def has_classifier(loaded: LoadedModel, logits: torch.Tensor) -> bool:
    """Whether ``logits`` (a model's output for a batch) are class scores, not features."""
    return logits.ndim == 2 and logits.shape[1] >= 2 and getattr(loaded.module, "num_classes", None) != 0


def top_predictions(loaded: LoadedModel, logits: torch.Tensor, k: int) -> list[Prediction]:
    """The ``k`` most probable classes; none for a model without a classifier head."""
    if not has_classifier(loaded, logits):
        return []
    probs = torch.softmax(logits.float(), dim=1)[0]
    values, indices = torch.topk(probs, min(k, probs.numel()))
    return [Prediction(loaded.label(int(i)), int(i), float(v)) for v, i in zip(values, indices, strict=True)]


def run(
    loaded: LoadedModel,
    image: Image.Image,
    layers: Sequence[str] = (),
    *,
    topk: int = 5,
    cancel: CancelToken | None = None,
) -> InferenceResult:
    """One forward pass of ``image`` through ``loaded`` with ``layers`` captured."""
    x, display = loaded.preprocess.batch_and_display(image)
    if cancel is not None:
        cancel.check()
    model = loaded.module
    training = training_modules(model)
    if training:
        model.eval()
    try:
        with torch.inference_mode():
            xd = x.to(loaded.device)
            if layers:
                with capture(model, layers) as store:
                    out = model(xd)
            else:
                store, out = Captured(), model(xd)
            if cancel is not None:
                cancel.check()
            logits = first_tensor(out)
            activations = {name: t[0].float().cpu().numpy() for name, t in store.items()}
    except torch.OutOfMemoryError:
        raise OutOfMemory(
            f"out of {loaded.device} memory running {loaded.title}; switch the device to CPU"
        ) from None
    finally:
        for module in training:  # exactly the modes it had: a model in eval mode is not walked twice
            module.training = True
    preds = top_predictions(loaded, logits.cpu(), topk) if logits is not None else []
    return InferenceResult(
        input=x.numpy(),
        display=display,
        predictions=preds,
        activations=activations,
        logits=logits[0].float().cpu().numpy() if logits is not None and logits.ndim == 2 else None,
        calls=dict(store.calls),
    )

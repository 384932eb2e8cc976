"""Named sets of training settings: the "Lecture demo" run per built-in dataset (torch-free).

A preset is a dict of :class:`~vizapp.training.config.TrainConfig` fields chosen so that
a run on a two-core CPU (one torch thread, the app's setting there) finishes in about
20-30 s and learns visibly: the curves rise, the validation embedding separates into
classes, the confusion matrix fills its diagonal. ``shapes`` and ``digits`` are measured
(``benchmarks/bench_lecture_demo.py``, the figures in ``benchmarks/README.md``); the
torchvision sets cannot be measured offline and are sized from those two (steps of 32
images, the per-image cost of the model at that size).

The lab's form fills itself from :func:`apply_preset` (its *Lecture demo* button), and
``vizapp train --preset lecture`` starts from it, explicit options winning. The seed,
the device and where the run is written are never part of a preset.
"""

from __future__ import annotations

from dataclasses import fields, replace

from vizapp.core.errors import UserError
from vizapp.training.config import TrainConfig

__all__ = ["PRESETS", "PRESET_NAMES", "apply_preset", "default_lr", "preset"]

#: Adam's learning rate when a run does not set one (``TrainConfig.lr`` None): 2e-3 suits the
#: small CNNs and the MLP (TinyVGG on shapes: 85% held out after 1500 steps, against 76-82%
#: at 1e-3); the ViT (no warm-up) and fine-tuned hub models learn better at 1e-3 (the ViT
#: on digits: 58% after 4 epochs at 1e-3, 34% at 2e-3).
SMALL_CNN_LR = 2e-3
TRANSFORMER_LR = 1e-3


def default_lr(model: str) -> float:
    """The learning rate a run of ``model`` gets when none is given."""
    name = str(model)
    return TRANSFORMER_LR if name == "vit" or name.startswith("hub:") else SMALL_CNN_LR


#: What every lecture run shares: a plain classifier, Adam at 2e-3 on batches of 32 (many
#: small steps: what a short CPU run needs), no augmentation, the held-out evaluation
#: (curves, confusion matrix) once per epoch and the validation embedding redrawn every 100
#: steps as well (600 points: cheap, where a full evaluation of 2400 images every 150 steps
#: added a sixth to the shapes run), so the classes are seen pulling apart.
_LECTURE_COMMON = {
    "loss": "ce", "optimizer": "adam", "lr": SMALL_CNN_LR, "momentum": 0.9, "weight_decay": 0.0, "batch_size": 32,
    "augment": [], "freeze": "all", "val_fraction": 0.2, "eval_every": 0, "embed_every": 100, "options": {},
}

#: ``PRESETS[name][dataset]``: the TrainConfig fields of a preset for a built-in dataset.
PRESETS: dict[str, dict[str, dict]] = {
    "lecture": {
        # CNN Explainer's network on the procedural outlines: 9600 training images, 5 epochs of
        # 300 steps; held-out accuracy climbs from 12.5% (chance) past 80%.
        "shapes": {**_LECTURE_COMMON, "model": "tinyvgg", "size": 32, "n": 12000, "epochs": 5},
        # 1438 training digits: 44 steps an epoch (the embedding with each evaluation), 15
        # epochs; above 90% within the first few.
        "digits": {**_LECTURE_COMMON, "model": "tinyvgg", "size": 32, "n": None, "epochs": 15, "embed_every": 0},
        # LeNet-5 on 12 000 of the 60 000 (28 px, padded like 1998's): 4 epochs of 300 steps.
        "mnist": {**_LECTURE_COMMON, "model": "lenet", "size": None, "n": 12000, "epochs": 4},
        "fashion-mnist": {**_LECTURE_COMMON, "model": "lenet", "size": None, "n": 12000, "epochs": 4},
        # TinyVGG in colour on 10 000 of the 50 000: 4 epochs of 250 steps (chance is 10%).
        "cifar10": {**_LECTURE_COMMON, "model": "tinyvgg", "size": None, "n": 10000, "epochs": 4},
    },
}

#: The preset names (``vizapp train --preset``).
PRESET_NAMES = tuple(PRESETS)

_FIELDS = {f.name for f in fields(TrainConfig)}
for _table in PRESETS.values():  # a typo in a field name would only show as a TypeError mid-lecture
    for _dataset, _settings in _table.items():
        if not set(_settings) <= _FIELDS:
            raise AssertionError(f"preset for {_dataset}: unknown fields {sorted(set(_settings) - _FIELDS)}")


def preset(name: str, dataset: str) -> dict:
    """A copy of the fields preset ``name`` sets for ``dataset`` (``dataset`` included).

    Raises
    ------
    UserError
        An unknown preset, or a dataset it has no entry for (a folder: its size and
        difficulty are unknown).
    """
    table = PRESETS.get(str(name).strip().lower())
    if table is None:
        raise UserError(f"unknown preset '{name}'; choose one of {', '.join(PRESET_NAMES)}")
    key = str(dataset).strip().lower()
    settings = table.get(key)
    if settings is None:
        raise UserError(f"the '{name}' preset covers the built-in sets ({', '.join(table)}), not '{dataset}'; "
                        "choose one of them or set the options yourself")
    out = {k: (list(v) if isinstance(v, list) else dict(v) if isinstance(v, dict) else v) for k, v in settings.items()}
    out["dataset"] = key
    return out


def apply_preset(config: TrainConfig, name: str, dataset: str | None = None) -> TrainConfig:
    """``config`` with preset ``name`` for ``dataset`` (default ``config.dataset``) applied;
    the seed, device, output, resume and logging fields stay as they are."""
    return replace(config, **preset(name, config.dataset if dataset is None else dataset))

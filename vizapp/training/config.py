"""What defines a training run: :class:`TrainConfig`, and the settings a resumed run must share."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

__all__ = ["RESUME_KEYS", "TrainConfig"]



@dataclass
class TrainConfig:
    """Everything that defines a run (written into the checkpoint's card).

    ``model`` is a small model name (``mlp``, ``lenet``, ``tinyvgg``, ``resnet``, ``vit``)
    or ``hub:<registry name>`` for transfer learning (``freeze`` says how much of the
    backbone stays fixed). ``margin`` defaults per loss (1.0 contrastive, 0.2 triplet).

    ``lr`` defaults per model (:func:`vizapp.training.presets.default_lr`: 2e-3 for the small
    CNNs and the MLP, 1e-3 for the ViT and hub models), resolved when the run is built.

    The defaults are a run that learns within a lecture's patience on a two-core CPU: TinyVGG
    on the shapes set (12 000 drawn), Adam at 2e-3 on batches of 32 for 5 epochs (1500
    steps) ends above 80% held out (``benchmarks/bench_lecture_demo.py``). The former 64 at
    1e-3 gave 75 steps an epoch, and one epoch ended at chance.
    :mod:`vizapp.training.presets` holds the per-dataset "Lecture demo" settings.
    """

    dataset: str = "shapes"
    size: int | None = None
    n: int | None = None
    val_fraction: float = 0.2
    model: str = "tinyvgg"
    freeze: str = "all"
    loss: str = "ce"
    margin: float | None = None
    temperature: float = 0.5
    mining: str = "semihard"
    embed_dim: int = 32
    optimizer: str = "adam"
    lr: float | None = None  # None: default_lr(model)
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 32
    epochs: int = 5
    augment: list[str] = field(default_factory=list)
    seed: int = 0
    device: str | None = None
    log_every: int = 10
    eval_every: int = 0  # steps; 0: once per epoch
    kernels_every: int = 25
    embed_every: int = 0  # steps; 0: with every evaluation
    embed_points: int = 600
    checkpoint_every: float = 60.0  # seconds of training between automatic checkpoints; 0: never
    out: str | None = None
    resume: str | None = None
    options: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


#: Settings a resumed run must share with the checkpoint (``epochs`` may grow; where the
#: output goes, the device and how often it logs may change).
RESUME_KEYS = ("dataset", "size", "n", "val_fraction", "model", "freeze", "loss", "margin", "temperature",
               "mining", "embed_dim", "optimizer", "lr", "momentum", "weight_decay", "batch_size", "augment",
               "seed", "options")

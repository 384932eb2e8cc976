"""The training lab's engine: a run is a generator of plain records.

``Trainer(config).run(control)`` trains step by step and yields dicts the panel and
the CLI show: ``step`` (loss, learning rate, samples/s), ``eval`` (validation loss,
accuracy, confusion matrix), ``kernels`` (first-layer weights), ``embedding`` (the
validation set's features in 2-D) and ``checkpoint``. It never touches Qt: the panel
runs the generator on a thread of its own and maps pause / resume / stop / checkpoint
to a :class:`TrainControl`.

Reproducible: for a seed, the weights, the batch order (a permutation per epoch from
``(seed, epoch)``) and the augmentations are the same on the CPU; a checkpoint holds
the optimizer and RNG states, so a run resumed from it continues the same sequence.
"""

from __future__ import annotations

import io
import json
import math
import os
import threading
import time
import types
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vizapp.core.errors import UserError
from vizapp.core.jobs import CancelToken, Progress, no_progress

__all__ = ["TrainConfig", "TrainControl", "Trainer", "OwnGenerator", "stable_projection"]

METRIC_LOSSES = ("contrastive", "triplet", "infonce")
STATE_NAME = "train_state.pt"
STATE_FORMAT = 2  # 2: the state holds the weights and history it belongs to


@dataclass
class TrainConfig:
    """Everything that defines a run (written into the checkpoint's card).

    ``model`` is a small model name (``mlp``, ``lenet``, ``tinyvgg``, ``resnet``, ``vit``)
    or ``hub:<registry name>`` for transfer learning (``freeze`` says how much of the
    backbone stays fixed). ``margin`` defaults per loss (1.0 contrastive, 0.2 triplet).
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
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 64
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


class OwnGenerator(torch.overrides.TorchFunctionMode):
    """Inside the block, this thread's random draws come from a generator of its own.

    torch's process-wide generator is shared by every thread, and not every user of it
    takes :data:`vizapp.core.jobs.RNG_LOCK` (an unseeded ``torch.rand`` anywhere in the
    process), so seeding it, even under the lock, does not make a run reproducible. A
    torch function mode is per thread: every draw this thread makes inside the block
    (``torch.rand`` / ``randint`` / ``randperm`` / ``bernoulli``, ``Tensor.uniform_`` /
    ``normal_`` / ``bernoulli_``..., which is what ``nn.init``, timm's ``DropPath`` and
    torchvision's transforms call) gets ``generator=`` this block's generator, and
    dropout is drawn from it too. Other threads are not affected. A CPU generator seeded
    with ``seed`` gives the same numbers as ``torch.manual_seed(seed)`` would.
    """

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.seed = int(seed) % (2**63)
        self._generators: dict[torch.device, torch.Generator] = {}

    def generator(self, device: torch.device | str | None = None) -> torch.Generator:
        device = torch.device(device if device is not None else "cpu")
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        g = self._generators.get(device)
        if g is None:
            g = self._generators[device] = torch.Generator(device=device).manual_seed(self.seed)
        return g

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 - torch's protocol
        kwargs = dict(kwargs or {})
        if func in _DRAWS_INTO or func in _DRAWS_FROM:  # t.uniform_(...), torch.bernoulli(t): t's device
            if kwargs.get("generator") is None:
                kwargs["generator"] = self.generator(_device_of(args, kwargs))
        elif func in _DRAWS_NEW:  # torch.rand(..., device=)
            if kwargs.get("generator") is None:
                kwargs["generator"] = self.generator(kwargs.get("device"))
        elif func in _LIKE:
            x = args[0]
            new = _LIKE[func]
            return new(*((x.shape,) if new is not torch.randint else (*args[1:], x.shape)),
                       dtype=kwargs.get("dtype") or x.dtype, device=kwargs.get("device") or x.device,
                       generator=self.generator(kwargs.get("device") or x.device))
        elif func in _DROPOUTS:
            return self._dropout(func, *args, **kwargs)
        elif _takes_generator(func):  # nn.init.kaiming_uniform_(tensor, ..., generator=None)
            tensor = next((a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)), None)
            if kwargs.get("generator") is None and tensor is not None:
                kwargs["generator"] = self.generator(tensor.device)
        elif func in _UNCOVERED:  # draws we cannot redirect: at least seeded and alone
            from vizapp.core.jobs import seeded

            seed = int(torch.randint(2**62, (1,), generator=self.generator()))
            with seeded(seed):
                return func(*args, **kwargs)
        return func(*args, **kwargs)

    def _dropout(self, func, input, p=0.5, training=True, inplace=False):  # noqa: A002, ANN001
        if not training or p == 0:
            return input
        if func is torch.dropout or func is torch.nn.functional.dropout:
            shape = input.shape
        else:  # the feature (channel) variants drop whole maps
            shape = (*input.shape[:2], *([1] * (input.ndim - 2)))
        if p >= 1:
            mask = torch.zeros(shape, dtype=input.dtype, device=input.device)
        else:
            mask = torch.empty(shape, dtype=input.dtype, device=input.device)
            mask.bernoulli_(1 - p, generator=self.generator(input.device)).div_(1 - p)
        return input.mul_(mask) if inplace else input * mask


def _device_of(args: tuple, kwargs: dict) -> torch.device | str | None:
    """The device of the first tensor argument (else ``device=``, else the CPU)."""
    tensor = next((a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)), None)
    return tensor.device if tensor is not None else kwargs.get("device")


def _takes_generator(func, _known: dict = {}) -> bool:  # noqa: B006 - a cache
    """Whether a Python-level torch function (``nn.init.*``) has a ``generator`` parameter."""
    found = _known.get(func)
    if found is None:
        import inspect

        try:
            found = "generator" in inspect.signature(func).parameters
        except (TypeError, ValueError):  # a builtin
            found = False
        _known[func] = found
    return found


_T = torch.Tensor
_DRAWS_INTO = {_T.uniform_, _T.normal_, _T.bernoulli_, _T.random_, _T.exponential_, _T.geometric_,
               _T.log_normal_, _T.cauchy_}
_DRAWS_NEW = {torch.rand, torch.randn, torch.randint, torch.randperm}
_DRAWS_FROM = {torch.bernoulli, _T.bernoulli, torch.multinomial, _T.multinomial, torch.poisson, torch.normal}
_LIKE = {torch.rand_like: torch.rand, torch.randn_like: torch.randn, torch.randint_like: torch.randint}
_DROPOUTS = {torch.dropout, F.dropout, F.dropout1d, F.dropout2d, F.dropout3d}
_UNCOVERED = {F.alpha_dropout, F.feature_alpha_dropout, torch.alpha_dropout, torch.feature_alpha_dropout,
              F.rrelu, torch.rrelu, F.gumbel_softmax}


class RunLock:
    """An ``fcntl.flock`` on ``<folder>/.vizapp-train.lock``, held while a run may write there.

    The kernel drops the lock when its holder dies, so a killed run never blocks the next
    one; the file holds the holder's pid for the message and is removed on release. Where
    ``fcntl`` does not exist (Windows) no lock is taken.
    """

    NAME = ".vizapp-train.lock"

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / self.NAME
        self._file = None
        self._created = False

    def acquire(self) -> RunLock:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return self
        from vizapp.core.files import storage_errors

        self._created = not self.folder.exists()
        with storage_errors(self.folder):
            self.folder.mkdir(parents=True, exist_ok=True)
        while True:
            with storage_errors(self.path):
                f = open(self.path, "a+b", buffering=0)  # noqa: SIM115 - held open for the run; unbuffered
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                f.seek(0)
                holder = f.read().decode(errors="replace").strip() or "unknown"
                f.close()
                raise UserError(f"{self.folder}: another training run (pid {holder}) is writing there; "
                                "wait for it to end, or choose another --out") from None
            try:  # a run that just ended may have removed the file we opened: lock the one on disk
                same = os.stat(self.path).st_ino == os.fstat(f.fileno()).st_ino
            except OSError:
                same = False
            if same:
                break
            f.close()
        self._file = f
        try:
            with storage_errors(self.folder):  # a full disk fails here, before any training
                f.seek(0)
                f.truncate()
                f.write(f"{os.getpid()}\n".encode())
        except BaseException:
            self.release()
            raise
        return self

    def release(self) -> None:
        f, self._file = self._file, None
        if f is None:
            return
        try:
            self.path.unlink()
            if self._created:  # a run that failed before writing anything leaves no empty folder
                self.folder.rmdir()
        except OSError:
            pass
        f.close()


class TrainControl:
    """What the user can do to a running run, from any thread."""

    def __init__(self) -> None:
        self._run = threading.Event()
        self._run.set()
        self._stop = threading.Event()
        self._checkpoint = threading.Event()

    def pause(self) -> None:
        if not self._stop.is_set():  # a stopping run never waits again
            self._run.clear()

    def resume(self) -> None:
        self._run.set()

    def stop(self) -> None:
        self._stop.set()
        self._run.set()

    def checkpoint(self) -> None:
        self._checkpoint.set()

    @property
    def paused(self) -> bool:
        return not self._run.is_set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def wait_if_paused(self, timeout: float | None = None) -> bool:
        """Block while paused (at most ``timeout`` seconds); True when running."""
        return self._run.wait(timeout)

    def take_checkpoint_request(self) -> bool:
        if self._checkpoint.is_set():
            self._checkpoint.clear()
            return True
        return False


def stable_projection(features: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
    """2-D PCA of ``features``, rotated (and maybe reflected) onto ``previous``.

    Orthogonal Procrustes on the centred coordinates keeps the picture steady between
    refreshes: the points move as the features change instead of the whole cloud
    flipping or spinning, which PCA's arbitrary axis signs would otherwise cause.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # a small SVD; BLAS threads would only fight the training thread
        return _stable_projection(np.asarray(features, dtype=np.float64), previous)


def _stable_projection(x: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
    x = x - x.mean(axis=0, keepdims=True)
    if x.shape[1] == 1:
        coords = np.concatenate([x, np.zeros_like(x)], axis=1)
    elif x.shape[0] < 2:
        coords = np.zeros((x.shape[0], 2))
    else:
        _u, _s, vt = np.linalg.svd(x, full_matrices=False)
        coords = x @ vt[:2].T
        if coords.shape[1] < 2:
            coords = np.concatenate([coords, np.zeros((len(coords), 1))], axis=1)
    scale = np.sqrt((coords**2).sum(axis=1).mean()) or 1.0
    coords = coords / scale
    if previous is not None and previous.shape == coords.shape:
        u, _s, vt = np.linalg.svd(coords.T @ previous)
        coords = coords @ (u @ vt)
    return coords.astype(np.float32)


class Trainer:
    """One training run. Build it (data and model load here), then iterate :meth:`run`."""

    def __init__(self, config: TrainConfig, *, progress: Progress = no_progress,
                 cancel: CancelToken | None = None) -> None:
        from vizapp.training.losses import LOSSES

        self.config = c = config
        if c.loss not in LOSSES:
            raise UserError(f"unknown loss '{c.loss}'; choose one of {', '.join(LOSSES)}")
        if c.epochs < 1 or c.batch_size < 2 or c.lr <= 0:
            raise UserError("epochs must be >= 1, batch size >= 2 and the learning rate > 0")
        if c.margin is None:
            c.margin = 1.0 if c.loss == "contrastive" else 0.2
        if c.log_every < 1:
            raise UserError("--log-every must be at least 1")
        # One run per output folder: a second one would silently replace this one's files.
        self._lock = RunLock(Path(c.out)).acquire() if c.out else None
        try:
            self._setup(progress, cancel)
        except BaseException:
            self.close()
            raise

    def _setup(self, progress: Progress, cancel: CancelToken | None) -> None:
        from vizapp.probing.device import check_device, default_device
        from vizapp.training.trainsets import load_trainset, mean_std, split

        c = self.config
        self.device = check_device(c.device) if c.device else default_device()
        data = load_trainset(c.dataset, size=c.size, n=c.n, seed=c.seed, progress=progress, cancel=cancel)
        self.train_set, self.val_set = split(data, c.val_fraction, seed=c.seed)
        if len(self.train_set) < c.batch_size:
            raise UserError(f"{data.name} has {len(self.train_set)} training images, fewer than a batch of "
                            f"{c.batch_size}; lower the batch size")
        self.classes = data.classes
        self.data_name = data.name
        self.mean, self.std = mean_std(self.train_set)
        self.metric = c.loss in METRIC_LOSSES
        with OwnGenerator(c.seed):  # the initial weights depend on the seed alone, whatever other threads draw
            self.module, self.preprocess, self.model_card = self._build_model(progress, cancel)
        self.module.to(self.device)
        self.augment = self._augment()
        params = [p for p in self.module.parameters() if p.requires_grad]
        if c.optimizer == "sgd":
            self.optimizer = torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)
        elif c.optimizer == "adam":
            self.optimizer = torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay)
        else:
            raise UserError(f"unknown optimizer '{c.optimizer}'; choose sgd or adam")
        self.steps_per_epoch = len(self.train_set) // c.batch_size
        self.total_steps = self.steps_per_epoch * c.epochs
        self.step = 0
        self.history: list[dict] = []
        self._previous_coords: np.ndarray | None = None
        self.last_checkpoint: Path | None = None
        if c.resume:
            self._restore(Path(c.resume))

    def close(self) -> None:
        """Let another run write to this run's folder (done when :meth:`run` ends)."""
        lock, self._lock = getattr(self, "_lock", None), None
        if lock is not None:
            lock.release()

    # --- building ------------------------------------------------------------------
    def _build_model(self, progress: Progress, cancel: CancelToken | None) -> tuple[nn.Module, object, dict]:
        from models import Preprocess
        from models.small import build_small, transfer_model

        c = self.config
        channels, size = self.train_set.channels, self.train_set.size
        num_classes = 0 if self.metric else len(self.classes)
        if c.model.startswith("hub:"):
            hub = c.model[4:]
            if self.metric:
                raise UserError("transfer learning trains a classifier: use the ce loss with a hub model")
            module, hub_pre = transfer_model(hub, len(self.classes), c.freeze, progress=progress, cancel=cancel)
            # The trainer stretches each (small, square) image to the hub's input size; the
            # card must say the same, or the app would crop what the model never saw cropped.
            preprocess = Preprocess(hub_pre.crop, hub_pre.crop, hub_pre.mean, hub_pre.std, hub_pre.interpolation)
            card = {"kind": "transfer", "hub": hub, "num_classes": len(self.classes), "freeze": c.freeze}
            return module, preprocess, card
        module = build_small(c.model, in_channels=channels, image_size=size, num_classes=num_classes,
                             embed_dim=c.embed_dim if self.metric else None, **c.options)
        preprocess = Preprocess(size, size, tuple(self.mean), tuple(self.std), "bilinear")
        card = {"kind": "small", "name": c.model, "in_channels": channels, "image_size": size,
                "num_classes": num_classes, "embed_dim": c.embed_dim if self.metric else None, "options": c.options}
        return module, preprocess, card

    def _augment(self):
        from vizapp.training.augmentations import build_augment

        names = list(self.config.augment)
        if self.config.loss == "infonce" and not names:
            names = ["crop", "hflip", "jitter"]  # SimCLR needs two different views of each image
        if not names:
            return None
        return build_augment(names, self.train_set.size, self.train_set.channels)

    def _inputs(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``B x C x H x W`` -> the model's normalised float input on the device."""
        x = images.to(self.device).float().div_(255.0)
        p = self.preprocess
        if x.shape[1] != p.channels:
            x = x.expand(-1, p.channels, -1, -1) if x.shape[1] == 1 else x.mean(dim=1, keepdim=True)
        if x.shape[-1] != p.crop:
            x = F.interpolate(x, size=(p.crop, p.crop), mode="bilinear", align_corners=False)
        mean = torch.tensor(p.mean, device=self.device).view(1, -1, 1, 1)
        std = torch.tensor(p.std, device=self.device).view(1, -1, 1, 1)
        return (x - mean) / std

    # --- the loop ------------------------------------------------------------------
    def _loss(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(loss, logits or None)`` for one batch of uint8 images."""
        from vizapp.training.losses import contrastive_loss, info_nce, triplet_loss

        c = self.config
        y = labels.to(self.device)
        if c.loss == "infonce":
            with OwnGenerator(self._step_seed()):
                v1, v2 = self.augment(images), self.augment(images)
            with OwnGenerator(self._step_seed() + 1):  # dropout, drop-path
                z = self.module(self._inputs(torch.cat([v1, v2])))
            z1, z2 = z.chunk(2)
            self._last_batch = (z1.detach(), None, z2.detach())
            return info_nce(z1, z2, c.temperature), None
        if self.augment is not None:
            with OwnGenerator(self._step_seed()):
                images = self.augment(images)
        with OwnGenerator(self._step_seed() + 1):  # dropout, drop-path
            out = self.module(self._inputs(images))
        self._last_batch = (out.detach(), y, None)
        if c.loss == "ce":
            return F.cross_entropy(out, y), out
        if c.loss == "contrastive":
            return contrastive_loss(out, y, c.margin), None
        return triplet_loss(out, y, c.margin, mining=c.mining), None

    def _step_seed(self) -> int:
        """The augmentations (and dropout) of each step draw from a generator of their own
        (:class:`OwnGenerator`) seeded from the step: a run is the same whatever other threads
        do with torch's generator, and a resumed run needs no RNG state."""
        return (self.config.seed * 1000003 + self.step * 7919) % (2**63)

    def _order(self, epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.config.seed * 1000003 + epoch)
        return torch.randperm(len(self.train_set), generator=g)

    def run(self, control: TrainControl | None = None) -> Iterator[dict]:
        """Train, yielding records; returns after the last epoch or a stop (checkpointing both)."""

        try:
            yield from self._run(control)
        finally:
            self.close()

    def _run(self, control: TrainControl | None) -> Iterator[dict]:
        from models.small import train_mode
        from vizapp.training.losses import loss_stats

        c = self.config
        control = control or TrainControl()
        yield self._kernels()
        if self.step == 0:
            yield from self._evaluate(epoch=0)
        last_save = time.monotonic()
        window_start, window_samples = time.perf_counter(), 0
        while self.step < self.total_steps:
            epoch, within = divmod(self.step, self.steps_per_epoch)
            order = self._order(epoch)
            for b in range(within, self.steps_per_epoch):
                if control.paused and not control.stopped:
                    while not control.stopped and control.paused:
                        control.wait_if_paused(0.1)
                        if control.take_checkpoint_request():  # "checkpoint now" works while paused
                            yield self._checkpoint_record("saved")
                    window_start, window_samples = time.perf_counter(), 0  # paused time is not training
                    last_save = time.monotonic()
                if control.stopped:
                    yield from self._final_kernels()
                    yield self._checkpoint_record("stopped")
                    return
                idx = order[b * c.batch_size:(b + 1) * c.batch_size]
                images, labels = self.train_set.images[idx], self.train_set.labels[idx]
                train_mode(self.module)  # frozen batch-norm layers of a transfer backbone stay in eval
                loss, logits = self._loss(images, labels)
                if not torch.isfinite(loss):
                    # The last good checkpoint stays as it is: these weights are already lost.
                    yield {"type": "checkpoint", "step": self.step, "why": "diverged",
                           "path": str(self.last_checkpoint) if self.last_checkpoint else None}
                    raise UserError(f"the loss became {float(loss.detach())} at step {self.step + 1}; "
                                    "lower the learning rate")
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                loss_value = float(loss.detach())
                self.step += 1
                window_samples += len(idx)
                if self.step % c.log_every == 0 or self.step == self.total_steps:
                    now = time.perf_counter()
                    record = {"type": "step", "step": self.step, "epoch": self.step / self.steps_per_epoch,
                              "loss": loss_value, "lr": self.optimizer.param_groups[0]["lr"],
                              "samples_per_s": window_samples / max(now - window_start, 1e-9)}
                    if logits is not None:
                        record["acc"] = float((logits.argmax(1).cpu() == labels).float().mean())
                    else:  # what the metric loss does to this batch: pulled-in pairs, pushed-out ones
                        out, y, z2 = self._last_batch
                        record.update(loss_stats(c.loss, out, y, z2=z2, margin=c.margin,
                                                 temperature=c.temperature))
                    window_start, window_samples = now, 0
                    self.history.append(record)
                    yield record
                if c.kernels_every and self.step % c.kernels_every == 0:
                    yield self._kernels()
                end_of_epoch = (b + 1) == self.steps_per_epoch
                if (c.eval_every and self.step % c.eval_every == 0) or end_of_epoch:
                    yield from self._evaluate(epoch=self.step / self.steps_per_epoch)
                    window_start, window_samples = time.perf_counter(), 0
                elif c.embed_every and self.step % c.embed_every == 0:
                    yield self._embedding()
                    window_start, window_samples = time.perf_counter(), 0
                due = c.checkpoint_every and time.monotonic() - last_save >= c.checkpoint_every
                if control.take_checkpoint_request() or due:
                    yield self._checkpoint_record("saved")
                    last_save = time.monotonic()
                    window_start, window_samples = time.perf_counter(), 0
        yield from self._final_kernels()
        yield self._checkpoint_record("finished")

    # --- what the panel shows --------------------------------------------------------
    def first_layer(self) -> tuple[str, nn.Module] | None:
        for name, m in self.module.named_modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                return name, m
        return None

    def _final_kernels(self) -> Iterator[dict]:
        """The last weights' kernels, unless the last step already sent them."""
        c = self.config
        if not (c.kernels_every and self.step % c.kernels_every == 0):
            yield self._kernels()

    def _kernels(self) -> dict:
        found = self.first_layer()
        if found is None:
            return {"type": "kernels", "step": self.step, "layer": None, "weights": None}
        name, m = found
        w = m.weight.detach().float().cpu().numpy().copy()
        if isinstance(m, nn.Linear):  # an MLP's first layer: each unit's weights as an image
            c, s = self.train_set.channels, self.train_set.size
            if w.shape[1] == c * s * s:
                w = w.reshape(-1, c, s, s)
        return {"type": "kernels", "step": self.step, "layer": name, "weights": w}

    @torch.no_grad()
    def _features(self, images: torch.Tensor, batch: int = 256) -> tuple[np.ndarray, np.ndarray | None]:
        """(penultimate features, model outputs) for uint8 images, in eval mode."""
        self.module.eval()
        # The small models define features() (the penultimate vector) as a method;
        # torchvision's `features` attribute (a conv stack) is not that.
        small = isinstance(getattr(type(self.module), "features", None), types.FunctionType)
        feats, outs = [], []
        for i in range(0, len(images), batch):
            x = self._inputs(images[i:i + batch])
            if small:  # forward(x) == head(features(x)): one pass gives both
                f = self.module.features(x)
                out = self.module.head(f)
            else:
                out = self.module(x)
                f = out
            feats.append(f.float().flatten(1).cpu())
            outs.append(out.float().cpu())
        return torch.cat(feats).numpy(), torch.cat(outs).numpy()

    def _evaluate(self, epoch: float) -> Iterator[dict]:
        from vizapp.training.losses import contrastive_loss, triplet_loss

        c = self.config
        val = self.val_set
        feats, outs = self._features(val.images)
        y = val.labels.numpy()
        record = {"type": "eval", "step": self.step, "epoch": epoch}
        out_t, y_t = torch.from_numpy(outs), torch.from_numpy(y)
        if not self.metric:
            record["val_loss"] = float(F.cross_entropy(out_t, y_t))
            pred = outs.argmax(1)
        else:
            # Metric losses: nearest class centre, centres from a fixed random sample of the
            # training set (folders come sorted by class: a slice would miss classes).
            sample = self._sample("centres", len(self.train_set), 2000)
            train_feats = self._features(self.train_set.images[sample])[1]
            train_y = self.train_set.labels[sample].numpy()
            centres = np.stack([train_feats[train_y == k].mean(0) if np.any(train_y == k) else
                                np.full(train_feats.shape[1], np.inf) for k in range(len(self.classes))])
            d = ((outs[:, None, :] - centres[None]) ** 2).sum(-1)
            pred = d.argmin(1)
            if c.loss in ("contrastive", "triplet"):
                # In batches like the training loss: pairs and triplets grow with the batch,
                # and mining over the whole set would find harder negatives than training sees.
                order = self._sample("val-batches", len(out_t), len(out_t))
                losses = []
                for i in range(0, len(order) - 1, c.batch_size):
                    part = order[i:i + c.batch_size]
                    if c.loss == "contrastive":
                        losses.append(float(contrastive_loss(out_t[part], y_t[part], c.margin)))
                    else:
                        losses.append(float(triplet_loss(out_t[part], y_t[part], c.margin, mining=c.mining)))
                record["val_loss"] = float(np.mean(losses)) if losses else float("nan")
        k = len(self.classes)
        confusion = np.zeros((k, k), dtype=np.int64)
        np.add.at(confusion, (y, pred), 1)
        record["val_acc"] = float((pred == y).mean())
        record["confusion"] = confusion
        self.history.append({k2: v for k2, v in record.items() if k2 != "confusion"})
        yield record
        yield self._embedding(feats)

    def _sample(self, what: str, n: int, k: int) -> torch.Tensor:
        """The same random ``k`` of ``n`` indices on every call (per ``what``)."""
        cache = self.__dict__.setdefault("_samples", {})
        if what not in cache:
            g = torch.Generator().manual_seed(self.config.seed * 31 + len(what))
            cache[what] = torch.randperm(n, generator=g)[: min(n, k)]
        return cache[what]

    def _embedding(self, feats: np.ndarray | None = None) -> dict:
        """The validation points shown: a fixed random sample (every class; folders come sorted)."""
        pick = self._sample("embedding", len(self.val_set), self.config.embed_points)
        feats = self._features(self.val_set.images[pick])[0] if feats is None else feats[pick.numpy()]
        coords = stable_projection(feats, self._previous_coords)
        self._previous_coords = coords
        return {"type": "embedding", "step": self.step, "coords": coords,
                "labels": self.val_set.labels[pick].numpy().copy(), "classes": list(self.classes)}

    # --- checkpoints -----------------------------------------------------------------
    def card(self) -> dict:
        c = self.config
        p = self.preprocess
        evals = [h for h in self.history if "val_acc" in h]
        return {
            "format": "vizapp-card-1",
            "title": f"{c.model.removeprefix('hub:')} on {self.data_name} ({c.loss})",
            "model": self.model_card,
            "classes": list(self.classes),
            "preprocess": {"resize": p.resize, "crop": p.crop, "mean": list(p.mean), "std": list(p.std),
                           "interpolation": p.interpolation},
            "trained": self.step > 0,
            "data": {"dataset": c.dataset, "name": self.data_name, "train": len(self.train_set),
                     "validation": len(self.val_set), "size": self.train_set.size, "augment": list(c.augment)},
            "loss": {"name": c.loss, "margin": c.margin, "temperature": c.temperature, "mining": c.mining},
            "settings": c.to_json(),
            "metrics": {"step": self.step, "epoch": self.step / max(self.steps_per_epoch, 1),
                        "val_acc": _finite(evals[-1]["val_acc"]) if evals else None,
                        "val_loss": _finite(evals[-1].get("val_loss")) if evals else None},
            "history": [{k: _finite(v) for k, v in h.items()} for h in self.history[-2000:]],
            "seed": c.seed,
        }

    def save(self, directory: str | Path | None = None) -> Path:
        """Weights + card (``models.small.save_checkpoint``), then ``train_state.pt``.

        ``train_state.pt`` is the commit: it holds everything a resume needs (the
        weights, the optimizer state, the step, the history), written in one atomic
        rename after the weights and the card. A kill at any moment leaves either the
        previous state or the new one whole, so the run resumes from the last complete
        save (:meth:`_restore` takes the weights from the state, not from a
        ``model.safetensors`` that may already be one save ahead). Leftover temporary
        files of killed writers are removed first. A full or read-only disk is a
        :class:`~vizapp.core.errors.StorageError` naming the file.
        """
        from models.small import save_checkpoint
        from vizapp.core.files import remove_leftovers, storage_errors, write_bytes

        out = directory or self.config.out
        if not out:
            raise UserError("no output folder for the checkpoint; give --out")
        target = Path(out)
        with storage_errors(target):
            target.mkdir(parents=True, exist_ok=True)
        remove_leftovers(target)
        inner = getattr(self.module, "_orig_mod", self.module)
        state = {"format": STATE_FORMAT, "optimizer": self.optimizer.state_dict(), "step": self.step,
                 "model": {k: v.detach().to("cpu", copy=True).contiguous() for k, v in inner.state_dict().items()},
                 "history": json.dumps([{k: _finite(v) for k, v in h.items()} for h in self.history[-2000:]]),
                 "previous_coords": torch.from_numpy(self._previous_coords) if self._previous_coords is not None
                 else torch.zeros(0)}
        buffer = io.BytesIO()  # serialised first: a full disk is then an OSError of the write, not torch's
        torch.save(state, buffer)
        path = save_checkpoint(self.module, self.card(), target)  # a full disk: StorageError
        write_bytes(target / STATE_NAME, buffer.getvalue())
        self.last_checkpoint = target
        return path

    def _checkpoint_record(self, why: str) -> dict:
        record = {"type": "checkpoint", "step": self.step, "why": why, "path": None}
        if self.config.out:
            record["path"] = str(self.save())
        return record

    def _restore(self, directory: Path) -> None:
        """Continue the run saved in ``directory``: its card must describe this model and these
        settings; the weights, optimizer state, step and history come from ``train_state.pt``.
        A damaged or foreign file is a one-line :class:`UserError` naming it."""
        from models.small import read_card

        if not directory.is_dir():
            raise UserError(f"{directory}: no such checkpoint folder to resume from")
        card = read_card(directory)
        if _plain(card.get("model")) != _plain(self.model_card):
            raise UserError(f"{directory} holds a different model ({card.get('model')}); resume with its settings")
        saved, now = _plain(card.get("settings", {})), _plain(self.config.to_json())
        changed = [k for k in RESUME_KEYS if k in saved and saved[k] != now.get(k)]
        if changed:
            was = ", ".join(f"--{k.replace('_', '-')} {saved[k]}" for k in changed)
            raise UserError(f"{directory} was trained with other settings ({was}); resume with the same data and "
                            "settings (only --epochs may grow), or start a new run")
        weights_path = directory / "model.safetensors"
        self._load_weights(_read_safetensors(weights_path), weights_path)  # this model's weights, readable
        state_path = directory / STATE_NAME
        if not state_path.is_file():
            raise UserError(f"{directory} has no {STATE_NAME}, so its optimizer state is gone; start a new run")
        state = _read_state(state_path)
        try:
            step = int(state["step"])
            if "model" in state:
                self._load_weights(state["model"], state_path)
                history = json.loads(state["history"])
            else:  # a state from before the weights were kept in it: the card's weights must be its step's
                if step != card.get("metrics", {}).get("step"):
                    raise UserError(f"{directory}: {STATE_NAME} is from step {step} but the weights from step "
                                    f"{card.get('metrics', {}).get('step')} (a save was interrupted); start a new run")
                history = list(card.get("history", []))
            self.optimizer.load_state_dict(state["optimizer"])
            prev = state.get("previous_coords")
        except UserError:
            raise
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:
            raise UserError(f"{state_path}: not this run's training state ({_first_line(exc)}); "
                            "start a new run") from None
        self.step = step
        self._previous_coords = prev.numpy() if isinstance(prev, torch.Tensor) and prev.numel() else None
        self.history = history

    def _load_weights(self, weights: dict, path: Path) -> None:
        inner = getattr(self.module, "_orig_mod", self.module)
        try:
            inner.load_state_dict(weights)
        except (RuntimeError, TypeError, ValueError) as exc:
            raise UserError(f"{path}: these weights are not this model's ({_first_line(exc)}); "
                            "resume with the settings it was trained with, or start a new run") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def _read_safetensors(path: Path) -> dict:
    from safetensors.torch import load_file

    if not path.is_file():
        raise UserError(f"{path}: missing; the folder is not a complete checkpoint, start a new run")
    try:
        return load_file(str(path))
    except OSError as exc:
        from vizapp.core.files import storage_error

        raise storage_error(exc, path, "read") from None
    except Exception as exc:  # noqa: BLE001 - safetensors' own error for a truncated or foreign file
        raise UserError(f"{path}: damaged weights ({_first_line(exc)}); start a new run") from None


def _read_state(path: Path) -> dict:
    import pickle
    import zipfile

    from models._loaders import zip_members

    zip_members(path)  # a zip bomb, or a zip whose two readers see different directories, never reaches torch.load
    try:
        with warnings.catch_warnings():  # a garbage file: the error below says it, not a warning too
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as exc:
        from vizapp.core.files import storage_error

        raise storage_error(exc, path, "read") from None
    except (RuntimeError, EOFError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile, KeyError,
            AttributeError, TypeError) as exc:
        raise UserError(f"{path}: damaged training state ({_first_line(exc)}); start a new run") from None
    if not isinstance(state, dict):
        raise UserError(f"{path}: not a training state; start a new run")
    return state


#: Settings a resumed run must share with the checkpoint (``epochs`` may grow; where the
#: output goes, the device and how often it logs may change).
RESUME_KEYS = ("dataset", "size", "n", "val_fraction", "model", "freeze", "loss", "margin", "temperature",
               "mining", "embed_dim", "optimizer", "lr", "momentum", "weight_decay", "batch_size", "augment",
               "seed", "options")


def _plain(value: object) -> object:
    """JSON's view of a value (tuples become lists), for comparing with a card."""
    return json.loads(json.dumps(value, default=str))


def _finite(value: object) -> object:
    """Non-finite floats as None: a card is strict JSON."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def write_json_line(record: dict) -> str:
    """A record as one JSON line (arrays summarised by their shape)."""
    out = {}
    for k, v in record.items():
        if isinstance(v, np.ndarray):
            out[k] = v.tolist() if v.ndim == 2 and k == "confusion" else f"array{list(v.shape)}"
        elif isinstance(v, float):
            out[k] = round(v, 6) if math.isfinite(v) else str(v)
        else:
            out[k] = v
    return json.dumps(out)

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

import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vizapp.core.errors import UserError
from vizapp.core.jobs import CancelToken, JobControl, Progress, no_progress
from vizapp.training.checkpoints import RunLock, finite, restore_run, save_run
from vizapp.training.config import TrainConfig
from vizapp.training.determinism import OwnGenerator
from vizapp.training.records import stable_projection

__all__ = ["TrainControl", "Trainer"]


class TrainControl(JobControl):
    """What the user can do to a running run, from any thread: pause, resume, stop, and
    "checkpoint now" (honoured at the next step, or at once while paused)."""

    def __init__(self) -> None:
        super().__init__()
        self._checkpoint = threading.Event()

    def checkpoint(self) -> None:
        self._checkpoint.set()

    def take_checkpoint_request(self) -> bool:
        if self._checkpoint.is_set():
            self._checkpoint.clear()
            return True
        return False


class Trainer:
    """One training run. Build it (data and model load here), then iterate :meth:`run`."""

    def __init__(self, config: TrainConfig, *, progress: Progress = no_progress,
                 cancel: CancelToken | None = None) -> None:
        from vizapp.training.losses import loss_module

        self.config = c = config
        self.loss = loss_module(c.loss)  # an unknown loss is one line naming the choices
        if c.lr is None:
            from vizapp.training.presets import default_lr

            c.lr = default_lr(c.model)
        if c.epochs < 1 or c.batch_size < 2 or c.lr <= 0:
            raise UserError("epochs must be >= 1, batch size >= 2 and the learning rate > 0")
        if c.margin is None:
            c.margin = getattr(self.loss, "DEFAULT_MARGIN", 0.2)
        # What every loss call takes (each loss reads the options it declares).
        self.loss_options = {"margin": c.margin, "mining": c.mining, "temperature": c.temperature}
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
        self.metric = self.loss.EMBEDS
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
        from models import Preprocess, build_small, transfer_model

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
        if self.loss.VIEWS == 2 and not names:
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
        y = labels.to(self.device)
        if self.loss.VIEWS == 2:  # two augmented views of each image, labels unused (SimCLR)
            with OwnGenerator(self._step_seed()):
                v1, v2 = self.augment(images), self.augment(images)
            with OwnGenerator(self._step_seed() + 1):  # dropout, drop-path
                z = self.module(self._inputs(torch.cat([v1, v2])))
            z1, z2 = z.chunk(2)
            self._last_batch = (z1.detach(), None, z2.detach())
            return self.loss.loss(z1, None, z2=z2, **self.loss_options), None
        if self.augment is not None:
            with OwnGenerator(self._step_seed()):
                images = self.augment(images)
        with OwnGenerator(self._step_seed() + 1):  # dropout, drop-path
            out = self.module(self._inputs(images))
        self._last_batch = (out.detach(), y, None)
        return self.loss.loss(out, y, **self.loss_options), (None if self.loss.EMBEDS else out)

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
        c = self.config
        val = self.val_set
        feats, outs = self._features(val.images)
        y = val.labels.numpy()
        record = {"type": "eval", "step": self.step, "epoch": epoch}
        out_t, y_t = torch.from_numpy(outs), torch.from_numpy(y)
        if not self.metric:
            record["val_loss"] = float(self.loss.loss(out_t, y_t, **self.loss_options))
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
            if getattr(self.loss, "VALIDATE_IN_BATCHES", False):
                # In batches like the training loss: pairs and triplets grow with the batch,
                # and mining over the whole set would find harder negatives than training sees.
                order = self._sample("val-batches", len(out_t), len(out_t))
                losses = []
                for i in range(0, len(order) - 1, c.batch_size):
                    part = order[i:i + c.batch_size]
                    losses.append(float(self.loss.loss(out_t[part], y_t[part], **self.loss_options)))
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
                        "val_acc": finite(evals[-1]["val_acc"]) if evals else None,
                        "val_loss": finite(evals[-1].get("val_loss")) if evals else None},
            "history": [{k: finite(v) for k, v in h.items()} for h in self.history[-2000:]],
            "seed": c.seed,
        }

    def save(self, directory: str | Path | None = None) -> Path:
        """Weights + card, then ``train_state.pt``, the commit a resume starts from
        (:func:`~vizapp.training.checkpoints.save_run`); into ``directory``, default the run's ``out``.
        A full or read-only disk is a :class:`~vizapp.core.errors.StorageError` naming the file."""
        out = directory or self.config.out
        if not out:
            raise UserError("no output folder for the checkpoint; give --out")
        target = Path(out)
        path = save_run(target, self.module, self.card(), self.optimizer, self.step, self.history,
                        self._previous_coords)
        self.last_checkpoint = target
        return path

    def _checkpoint_record(self, why: str) -> dict:
        record = {"type": "checkpoint", "step": self.step, "why": why, "path": None}
        if self.config.out:
            record["path"] = str(self.save())
        return record

    def _restore(self, directory: Path) -> None:
        """Continue the run saved in ``directory`` (:func:`~vizapp.training.checkpoints.restore_run`)."""
        self.step, self.history, self._previous_coords = restore_run(
            directory, self.module, self.model_card, self.config.to_json(), self.optimizer)

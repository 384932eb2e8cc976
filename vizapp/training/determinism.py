"""Reproducible randomness on one thread: :class:`OwnGenerator`.

A training run's weights, augmentations and dropout draw from generators of their own,
seeded from the run's seed (and step), so the run is the same whatever other threads do
with torch's process-wide generator.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["OwnGenerator"]


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

"""SmoothGrad (Smilkov et al. 2017) as Captum's ``NoiseTunnel(Saliency)`` computes it: the mean
of ``|gradient|`` over ``samples`` noisy copies (noise 15% of the input's range), ``batch`` per
pass, with the noise from a generator of its own seeded with ``seed``: the same call gives the
same map, and no other thread's random numbers are touched."""

from __future__ import annotations

import math

import torch

from vizapp.explain.attribution.base import Run


def passes(run: Run) -> int:
    return math.ceil(run.samples / run.batch)


def smoothgrad(forward, x: torch.Tensor, target: int, samples: int, batch: int, sigma: float,
               seed: int) -> torch.Tensor:
    from captum.attr import Saliency

    generator = torch.Generator(device=x.device)
    generator.manual_seed(int(seed))
    saliency = Saliency(forward)
    base = x.detach()
    total = torch.zeros_like(base)
    for start in range(0, samples, batch):
        n = min(batch, samples - start)
        noise = torch.randn((n, *base.shape[1:]), generator=generator, device=base.device, dtype=base.dtype)
        noisy = (base + sigma * noise).requires_grad_(True)
        total += saliency.attribute(noisy, target=target, abs=True).detach().sum(dim=0, keepdim=True)
    return total / samples


def compute(run: Run):
    sigma = 0.15 * float(run.xd.max() - run.xd.min())
    return smoothgrad(run.forward, run.xd, run.target, run.samples, run.batch, sigma, run.seed)

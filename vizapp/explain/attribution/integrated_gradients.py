"""Integrated Gradients (Sundararajan et al. 2017), Captum's: ``steps`` path points from a black
image, evaluated ``batch`` at a time so memory stays bounded whatever ``steps`` is."""

from __future__ import annotations

import math

from vizapp.explain.attribution.base import Run


def passes(run: Run) -> int:
    return math.ceil(run.steps / run.batch)


def compute(run: Run):
    from captum.attr import IntegratedGradients

    return IntegratedGradients(run.forward).attribute(
        run.xin, target=run.target, n_steps=run.steps, internal_batch_size=run.batch)

"""Saliency (Simonyan et al. 2014): the absolute gradient of the class score per pixel (Captum's ``Saliency``)."""

from __future__ import annotations

from vizapp.explain.attribution.base import Run


def passes(run: Run) -> int:
    return 1


def compute(run: Run):
    from captum.attr import Saliency

    return Saliency(run.forward).attribute(run.xin, target=run.target, abs=True)

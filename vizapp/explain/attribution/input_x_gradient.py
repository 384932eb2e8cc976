"""Input × Gradient (Shrikumar et al. 2016): the pixel times its gradient (Captum's ``InputXGradient``)."""

from __future__ import annotations

from vizapp.explain.attribution.base import Run


def passes(run: Run) -> int:
    return 1


def compute(run: Run):
    from captum.attr import InputXGradient

    return InputXGradient(run.forward).attribute(run.xin, target=run.target)

"""The shipped samples by name: scikit-image's photographs (``chelsea``) and the training sets'
held-out images in ``resources/samples`` (``digit3``, ``star``)."""

from __future__ import annotations

from pathlib import Path

from vizapp.inputs.images import lab_samples, sample_images


def resolve(text: str | Path) -> Path | None:
    samples = {s.name: s.path for s in [*sample_images(), *lab_samples()]}
    return samples.get(str(text))


def examples() -> list[str]:
    known = {s.name for s in [*sample_images(), *lab_samples()]}
    return [n for n in ("chelsea", "coffee", "astronaut", "rocket", "digit3", "star", "ring") if n in known]

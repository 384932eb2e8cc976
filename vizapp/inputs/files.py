"""Image files: a path that exists (``~`` expanded); decoding is :func:`vizapp.inputs.images.load_image`."""

from __future__ import annotations

from pathlib import Path


def resolve(text: str | Path) -> Path | None:
    path = Path(text).expanduser()
    return path if path.exists() else None


def examples() -> list[str]:
    return []

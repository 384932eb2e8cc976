"""The image sources ``--image`` and the window accept, tried in order.

Each source is a module of this package with ``resolve(text) -> Path | None`` (what ``text``
names, or ``None`` when the text is not for this source) and ``examples()`` (a few valid names
for the error message). A file that exists wins over a sample of the same name. A new source
is one module here plus one line in :data:`SOURCES` (live frames, a camera or a video, are
:mod:`vizapp.inputs.live`'s, with their own menu).
"""

from __future__ import annotations

import importlib
from pathlib import Path

from vizapp.core.errors import ImageError

__all__ = ["SOURCES", "resolve_image_source"]

#: Module names, in the order ``text`` is offered to them.
SOURCES = (
    "files",
    "samples",
)


def resolve_image_source(text: str | Path) -> Path:
    """What ``--image`` names: an existing path, else a sample's name (``chelsea``, ``digit3``).

    Raises :class:`ImageError` (one line listing a few valid names) when no source claims it.
    """
    examples: list[str] = []
    for name in SOURCES:
        source = importlib.import_module(f"{__package__}.{name}")
        found = source.resolve(text)
        if found is not None:
            return found
        examples.extend(source.examples())
    listed = f" (samples: {', '.join(examples)}, ...)" if examples else ""
    raise ImageError(f"{text}: no such image file, and not a sample's name{listed}")

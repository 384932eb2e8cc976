"""Weight file formats, told by content (never by suffix), tried in order.

Each format is a module of this package with ``sniff(path) -> bool`` (the file starts like
one of its files) and ``read(path, trust) -> state dict or nn.Module`` (a module only from a
trusted file: TorchScript or a pickled model; a ``torch.jit.ScriptModule`` runs as a whole).
The last format takes every file the others do not claim and names what it is not. A new
format is one module here plus one line in :data:`FORMATS`.
"""

from __future__ import annotations

import importlib
from pathlib import Path

__all__ = ["FORMATS", "read_weights"]

#: Module names, in the order a file is offered to them.
FORMATS = (
    "safetensors",
    "pytorch",
)


def read_weights(path: Path, trust: bool):
    """A state dict (or, if ``trust``, a TorchScript or pickled module) from ``path``.

    What the file is comes from its content: a safetensors file is read with safetensors
    only; a file named ``.safetensors`` that is not one is refused; a zip is checked for a
    zip bomb before anything inflates; TorchScript and pickled objects need ``trust``.
    """
    for name in FORMATS:
        fmt = importlib.import_module(f"{__name__}.{name}")
        if fmt.sniff(path):
            return fmt.read(path, trust)
    raise AssertionError("the last format claims every file")  # pragma: no cover

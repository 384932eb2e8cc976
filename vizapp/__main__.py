"""``python -m vizapp``: the same entry point as ``python main.py`` and the ``vizapp`` command.

With no arguments it opens the window. The GUI handlers are wired in one place, the
top-level ``main`` module (the composition root, shipped in the wheel as a py-module);
this file only hands over to it, and no engine module imports this one, so the engine
stays Qt-free (the import-linter contract in pyproject.toml).
"""

from __future__ import annotations

import sys

from main import main

if __name__ == "__main__":
    sys.exit(main())

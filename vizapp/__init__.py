"""vizapp's engine: models in, numpy out. No Qt widgets here (see docs/ARCHITECTURE.md)."""

__version__ = "0.1.0"

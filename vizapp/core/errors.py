"""The one family of errors a user can cause: each message names the file, model
or layer involved and says what to do next. The CLI prints them as one line; the
GUI shows them in its notifier."""

from __future__ import annotations

__all__ = [
    "UserError",
    "ImageError",
    "ModelError",
    "UntrustedModelError",
    "LayerError",
    "StorageError",
    "ConfigError",
    "OutOfMemory",
    "Cancelled",
]


class UserError(ValueError):
    """Bad input from the user: shown as a message, never as a traceback."""


class ImageError(UserError):
    """An image file that cannot be read or is not safe to decode."""


class ModelError(UserError):
    """A model that cannot be found, downloaded, loaded or probed."""


class UntrustedModelError(ModelError):
    """A file holding pickled code, refused until the user trusts it."""


class OutOfMemory(ModelError):  # noqa: N818
    """The accelerator ran out of memory; the CPU is the fallback."""


class LayerError(UserError):
    """A layer name that is not in the model."""


class StorageError(UserError):
    """A file or folder the app cannot write or read: full disk, read-only, no permission."""


class ConfigError(UserError):
    """The per-machine config file (``vizapp.core.config``) is not valid: names the file and key."""


class Cancelled(Exception):  # noqa: N818 - reads better at the raise site
    """A job stopped because the user (or a newer request) cancelled it."""

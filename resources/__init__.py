"""vizapp's shipped resources as package data: the trained models, the samples, the icon.

Read them through :func:`vizapp.core.paths.resource` (``importlib.resources``), never by path arithmetic.
"""

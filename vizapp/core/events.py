"""A tiny Qt-free signal: the session's views subscribe with ``connect``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["Event"]


class Event:
    """Callbacks called in connection order, on the thread that emits."""

    def __init__(self, name: str = "") -> None:
        self.name = name
        self._callbacks: list[Callable[..., Any]] = []

    def connect(self, callback: Callable[..., Any]) -> None:
        if callback not in self._callbacks:
            self._callbacks.append(callback)

    def disconnect(self, callback: Callable[..., Any]) -> None:
        if callback in self._callbacks:
            self._callbacks.remove(callback)

    def emit(self, *args: Any) -> None:
        for callback in list(self._callbacks):
            callback(*args)

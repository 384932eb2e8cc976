"""A TorchScript module that runs code as it loads, shared by the model-file trust tests."""

from __future__ import annotations

import torch


class Evil(torch.nn.Module):
    """A scripted module whose ``__setstate__`` creates a file while the archive loads."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.path = target
        self.t = torch.zeros(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    @torch.jit.export
    def __getstate__(self) -> tuple[str, bool]:
        return (self.path, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, bool]) -> None:
        self.path = state[0]
        self.training = state[1]
        self.t = torch.from_file(state[0], shared=True, size=16, dtype=torch.uint8)

"""The window asks for trust like the command line: a TorchScript file opened from the Model
dock without "I trust this file" is refused with the loader's one line, and nothing runs."""

from __future__ import annotations

import warnings

import pytest
import torch
from _evil import Evil

pytestmark = pytest.mark.gui


def _open_from_the_dock(w, monkeypatch, path) -> None:
    """Press "Open weights…", pick ``path`` and leave the architecture empty."""
    from PySide6.QtWidgets import QFileDialog, QInputDialog

    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(path), ""))
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("", True))
    w.model_view.open_file.click()


def test_the_window_refuses_torchscript_until_the_user_trusts_it(qtbot, window, tmp_path, monkeypatch):
    marker = tmp_path / "written_by_the_model_file"
    path = tmp_path / "weights.safetensors"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(Evil(str(marker))), str(path))
    w = window
    assert not w.model_view.trust.isChecked()
    _open_from_the_dock(w, monkeypatch, path)
    qtbot.waitUntil(lambda: bool(w.last_error) and w.runner.idle(), timeout=60_000)
    assert w.last_error.startswith(f"{path} is a TorchScript archive")
    assert "I trust this file" in w.last_error and "\n" not in w.last_error
    assert w.message.text() == w.last_error  # shown in the status bar
    assert w.session.model is None and not marker.exists()
    w.model_view.trust.setChecked(True)  # the user trusts it: it loads (and its code runs)
    _open_from_the_dock(w, monkeypatch, path)
    qtbot.waitUntil(lambda: w.session.model is not None and w.runner.idle(), timeout=60_000)
    assert w.session.model.scripted and marker.exists()
    assert not w.model_view.trust.isChecked()  # trust is given per file, never left on

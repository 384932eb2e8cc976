"""Engine fixtures for the headless tests (no Qt here; the GUI tests bring their own).

Expensive things are built once per session: the offline default model, the sample
photographs and a seeded ResNet-18 state dict (and its file). Tests that change
anything get a fresh copy.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image

from models import LoadedModel, Preprocess, load_model
from vizapp.images import load_image, sample_images

SEED = 1234


def seeded_resnet18(seed: int = SEED, num_classes: int = 1000) -> torch.nn.Module:
    """A ResNet-18 with random weights *and* random batch-norm statistics, in eval mode.

    Non-trivial running statistics make every tensor of the state dict matter, so a
    loader that drops or mixes up a buffer changes the outputs.
    """
    torch.manual_seed(seed)
    model = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def loaded_from(module: torch.nn.Module, name: str = "test-net", classes: list[str] | None = None) -> LoadedModel:
    """Wrap a module the way a loader would (ImageNet preprocessing, 224 input)."""
    return LoadedModel(name, name, "cnn", module.eval(), Preprocess(), classes, source="tests")


@pytest.fixture(scope="session")
def make_loaded():
    """``make_loaded(module, name="test-net", classes=None)``: wrap a module as a LoadedModel."""
    return loaded_from


@pytest.fixture(scope="session")
def make_resnet18():
    """``make_resnet18(seed=..., num_classes=1000)``: a seeded ResNet-18 with random BN statistics."""
    return seeded_resnet18


@pytest.fixture(scope="session")
def lite0() -> LoadedModel:
    """The offline default, loaded once (tests must not change its weights)."""
    return load_model("efficientnet_lite0")


@pytest.fixture(scope="session")
def sample_paths() -> dict[str, Path]:
    paths = {s.name: s.path for s in sample_images()}
    assert {"chelsea", "coffee"} <= set(paths), f"scikit-image samples missing: {sorted(paths)}"
    return paths


@pytest.fixture(scope="session")
def chelsea(sample_paths) -> Image.Image:
    return load_image(sample_paths["chelsea"])


@pytest.fixture(scope="session")
def coffee(sample_paths) -> Image.Image:
    return load_image(sample_paths["coffee"])


@pytest.fixture(scope="session")
def resnet18_state() -> dict[str, torch.Tensor]:
    """The seeded ResNet-18's state dict (read-only: copy before changing it)."""
    return seeded_resnet18().state_dict()


@pytest.fixture
def resnet18(resnet18_state) -> torch.nn.Module:
    """A fresh seeded ResNet-18 (eval mode) for each test."""
    model = torchvision.models.resnet18(weights=None)
    model.load_state_dict(resnet18_state)
    return model.eval()


@pytest.fixture
def resnet18_loaded(resnet18) -> LoadedModel:
    return loaded_from(resnet18, "resnet18-test")


@pytest.fixture(scope="session")
def resnet18_pth(tmp_path_factory, resnet18_state) -> Path:
    """The seeded state dict saved with ``torch.save`` (a bare state dict)."""
    path = tmp_path_factory.mktemp("weights") / "resnet18_seeded.pth"
    torch.save(resnet18_state, path)
    return path


@pytest.fixture
def torch_home(tmp_path, monkeypatch) -> Path:
    """An empty ``$TORCH_HOME``; returns its ``hub/checkpoints`` folder (not created)."""
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # a set_dir() elsewhere would win over the env
    assert Path(torch.hub.get_dir()) == home / "hub"
    return home / "hub" / "checkpoints"

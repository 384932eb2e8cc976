"""Engine fixtures for the headless tests (no Qt here), and the one place Qt is set up.

``QT_QPA_PLATFORM=offscreen`` is set here, before any test module imports Qt, for every
test and every subprocess a test starts. The window fixtures (``make_window``, ``window``,
``started``, ``settings_file``) live in the ``gui_plugin`` plugin loaded below.

Expensive things are built once per session: the offline default model, the sample
photographs and a seeded ResNet-18 state dict (and its file). Tests that change
anything get a fresh copy.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before anything imports Qt

# A machine's own config (/etc/xdg/vizapp/config.toml: offline-only, another default model)
# must not change what the tests see: they run on an empty one unless a test sets its own.
import tempfile  # noqa: E402

_EMPTY_CONFIG = os.path.join(tempfile.mkdtemp(prefix="vizapp-tests-"), "config.toml")
open(_EMPTY_CONFIG, "w").close()  # noqa: SIM115 - an empty file, before anything reads the config
os.environ["VIZAPP_CONFIG"] = _EMPTY_CONFIG

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402
from PIL import Image  # noqa: E402

from models import LoadedModel, Preprocess, load_model  # noqa: E402
from vizapp.inputs.images import load_image, sample_images  # noqa: E402

pytest_plugins = ["gui_plugin"]

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


# --- random-weight Vision Transformers (attention, attribution and their commands) -----------


def random_timm_vit(
    arch: str = "deit_tiny_patch16_224", seed: int = SEED, **kwargs
) -> torch.nn.Module:
    """A seeded timm ViT (eval mode) whose attention is far from uniform.

    timm initialises ``qkv`` with std 0.02, which leaves every softmax almost flat;
    std 0.1 gives peaked, head-specific attention, so a wrong head, token or layer
    shows. The head keeps timm's non-zero initialisation (the logits differ per class).
    """
    import timm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = timm.create_model(arch, pretrained=False, **kwargs)
        with torch.no_grad():
            for block in model.blocks:
                block.attn.qkv.weight.normal_(0.0, 0.1)
    return model.eval()


def small_torchvision_vit(seed: int = SEED) -> torch.nn.Module:
    """torchvision's VisionTransformer, 2 layers x 4 heads, patch 32 (7 x 7 grid) at 224.

    torchvision zeroes the classifier head; here it is re-drawn so that the logits,
    the predicted class and every gradient are non-trivial.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = torchvision.models.VisionTransformer(
            image_size=224, patch_size=32, num_layers=2, num_heads=4, hidden_dim=64, mlp_dim=128
        )
        with torch.no_grad():
            model.heads.head.weight.normal_(0.0, 0.5)
            model.heads.head.bias.normal_(0.0, 0.1)
    return model.eval()


@pytest.fixture(scope="session")
def make_timm_vit():
    """``make_timm_vit(arch="deit_tiny_patch16_224", seed=..., **timm_kwargs)``: a seeded random timm ViT."""
    return random_timm_vit


@pytest.fixture(scope="session")
def vit_files(tmp_path_factory) -> dict[str, Path]:
    """State dicts of seeded random DeiT-Tiny (1 prefix token) and DeiT-Tiny distilled (2), by timm name."""
    folder = tmp_path_factory.mktemp("vit_weights")
    paths = {}
    for arch in ("deit_tiny_patch16_224", "deit_tiny_distilled_patch16_224"):
        paths[arch] = folder / f"{arch}_random.pth"
        torch.save(random_timm_vit(arch).state_dict(), paths[arch])
    return paths


@pytest.fixture(scope="session")
def deit_tiny(vit_files) -> LoadedModel:
    """The random DeiT-Tiny loaded through the app's loader (``--arch deit_tiny_patch16_224``); read-only."""
    return load_model(str(vit_files["deit_tiny_patch16_224"]), arch="deit_tiny_patch16_224")


@pytest.fixture(scope="session")
def deit_distilled(vit_files) -> LoadedModel:
    """The random DeiT-Tiny distilled (class + distillation token) through the loader; read-only."""
    return load_model(
        str(vit_files["deit_tiny_distilled_patch16_224"]), arch="deit_tiny_distilled_patch16_224"
    )


@pytest.fixture(scope="session")
def tv_vit() -> LoadedModel:
    """:func:`small_torchvision_vit` as a LoadedModel with the ImageNet class names; read-only."""
    from models import imagenet_classes

    return loaded_from(small_torchvision_vit(), "tv-vit-small", imagenet_classes())


@pytest.fixture(scope="session")
def registers() -> LoadedModel:
    """A seeded 2-block ViT-Tiny with 4 register tokens (5 prefix tokens), ImageNet names; read-only."""
    from models import imagenet_classes

    model = random_timm_vit("vit_tiny_patch16_224", reg_tokens=4, depth=2)
    assert model.num_prefix_tokens == 5
    return loaded_from(model, "vit-tiny-reg4", imagenet_classes())

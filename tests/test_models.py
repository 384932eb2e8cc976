"""The model hub: registry, user files, TorchScript, pickles, the download cache, devices."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import socket
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file

import models
from models import REGISTRY, ModelSpec, get_spec, is_cached, list_specs, load_model
from models._download import checkpoint_dir, fetch
from models.loading import _package_weights
from vizapp.core.errors import Cancelled, ModelError, UntrustedModelError
from vizapp.core.jobs import CancelToken
from vizapp.probing.device import available_devices, default_device, move_model
from vizapp.probing.inference import run

JIT_DEPRECATED = pytest.mark.filterwarnings("ignore:`torch.jit.*deprecated:FutureWarning")


def _outputs(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return module.eval()(x)


@pytest.fixture(scope="module")
def x():
    """A small input: ResNets take any size, and 64 x 64 keeps the comparisons fast."""
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(7))


# --- the registry ------------------------------------------------------------------------------


def test_untrained_vit_is_offline_seeded_and_marked_untrained():
    assert is_cached(get_spec("vit_tiny_untrained"))
    a, b = load_model("vit_tiny_untrained"), load_model("vit_tiny_untrained")
    assert a.kind == "vit" and not a.trained and b.source == "random weights, seed 0"
    for (name, x), y in zip(a.module.state_dict().items(), b.module.state_dict().values(), strict=True):
        assert torch.equal(x, y), name  # the same weights on every machine
    state = torch.random.get_rng_state()
    load_model("vit_tiny_untrained")
    assert torch.equal(state, torch.random.get_rng_state())  # the seed does not leak into the caller's RNG


def test_shipped_models_load_offline_with_their_held_out_accuracy():
    import json
    from pathlib import Path

    for name, kind, classes, floor in (("tinyvgg_shapes", "cnn", 8, 0.9), ("vit_digits", "vit", 10, 0.9)):
        assert is_cached(get_spec(name))
        loaded = load_model(name)
        assert loaded.kind == kind and loaded.trained and len(loaded.class_names) == classes
        card = json.loads((Path(loaded.source).parent / "card.json").read_text())
        assert card["metrics"]["val_acc"] >= floor and card["seed"] == 0
        assert card["data"]["validation"] > 0


def test_every_spec_is_well_formed():
    specs = list_specs()
    assert len(specs) >= 10
    for spec in specs:
        assert REGISTRY[spec.name] is spec
        assert spec.kind in ("cnn", "vit"), spec.name
        assert spec.source in ("package", "torchvision", "timm", "random", "resources"), spec.name
        assert spec.title and spec.builder, spec.name
        if spec.source == "package":
            assert spec.package and spec.weights is None
        else:
            assert spec.weights, spec.name
    assert get_spec("vit_b_16").kind == "vit" and get_spec("resnet50").kind == "cnn"
    assert {"efficientnet_lite0", "resnet18", "deit_tiny"} <= set(REGISTRY)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ModelError, match="unknown model 'resnet19'") as info:
        get_spec("resnet19")
    assert "efficientnet_lite0" in str(info.value)
    with pytest.raises(ModelError, match="unknown model 'resnet19'"):
        load_model("resnet19")


def test_offline_default_loads_without_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the offline default must not touch the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    spec = get_spec("efficientnet_lite0")
    assert spec.source == "package" and is_cached(spec)
    loaded = load_model("efficientnet_lite0")
    assert loaded.name == "efficientnet_lite0" and loaded.kind == "cnn" and loaded.trained
    assert loaded.num_parameters == 4_652_008
    assert not loaded.module.training
    assert len(loaded.class_names) == 1000 and loaded.label(285) == "Egyptian cat"
    assert (loaded.preprocess.resize, loaded.preprocess.crop) == (256, 224)
    assert loaded.preprocess.mean == (0.5, 0.5, 0.5) and loaded.preprocess.std == (0.5, 0.5, 0.5)


def test_lite0_package_weights_zip_with_timm(lite0):
    path = _package_weights(get_spec("efficientnet_lite0"))
    assert lite0.source == str(path)
    theirs = torch.load(path, map_location="cpu", weights_only=True)
    ours = timm.create_model("efficientnet_lite0", pretrained=False).state_dict()
    assert len(theirs) == len(ours)
    assert [tuple(t.shape) for t in theirs.values()] == [tuple(t.shape) for t in ours.values()]
    loaded = lite0.module.state_dict()
    assert list(loaded) == list(ours)
    for key, tensor in zip(ours, theirs.values(), strict=True):
        assert torch.equal(loaded[key], tensor), key
    assert float(loaded["conv_stem.weight"].abs().sum()) > 0


# --- user files: round trips ---------------------------------------------------------------------


def test_pth_round_trip(resnet18, resnet18_pth, x):
    loaded = load_model(str(resnet18_pth), arch="resnet18")
    assert loaded.name == resnet18_pth.name and loaded.title == f"{resnet18_pth.name} (resnet18)"
    assert loaded.source == str(resnet18_pth) and loaded.kind == "cnn" and not loaded.scripted
    assert loaded.spec is get_spec("resnet18")
    assert (loaded.preprocess.resize, loaded.preprocess.crop) == (256, 224)
    assert len(loaded.class_names) == 1000 and loaded.class_names[0] == "tench"
    assert not loaded.module.training
    assert torch.equal(_outputs(loaded.module, x), _outputs(resnet18, x))


def test_safetensors_round_trip(resnet18, resnet18_state, tmp_path, x):
    path = tmp_path / "net.safetensors"
    save_file({k: v.contiguous() for k, v in resnet18_state.items()}, str(path))
    loaded = load_model(str(path), arch="resnet18")
    assert torch.equal(_outputs(loaded.module, x), _outputs(resnet18, x))


def test_wrapped_state_dict_with_module_prefix(resnet18, resnet18_state, tmp_path, x):
    path = tmp_path / "checkpoint.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in resnet18_state.items()}}, path)
    loaded = load_model(str(path), arch="resnet18")
    assert torch.equal(_outputs(loaded.module, x), _outputs(resnet18, x))


def test_ten_classes_are_inferred(make_resnet18, tmp_path, chelsea, x):
    ten = make_resnet18(seed=5, num_classes=10)
    path = tmp_path / "ten.pt"
    torch.save(ten.state_dict(), path)
    loaded = load_model(str(path), arch="resnet18")
    assert loaded.module.fc.out_features == 10
    assert loaded.class_names is None
    assert torch.equal(_outputs(loaded.module, x), _outputs(ten, x))
    result = run(loaded, chelsea, topk=3)
    assert [p.label for p in result.predictions] == [f"class {p.index}" for p in result.predictions]
    assert all(0 <= p.index < 10 for p in result.predictions)

    names = [f"flower {i}" for i in range(10)]
    (tmp_path / "ten.json").write_text(json.dumps({"classes": names}))
    loaded = load_model(str(path), arch="resnet18")
    assert loaded.class_names == names
    result = run(loaded, chelsea, topk=10)
    assert [p.label for p in result.predictions] == [names[p.index] for p in result.predictions]
    assert sorted(p.index for p in result.predictions) == list(range(10))


def test_sidecar_that_is_not_a_class_list_is_ignored(resnet18_state, tmp_path):
    path = tmp_path / "net.pth"
    torch.save(resnet18_state, path)
    (tmp_path / "net.json").write_text("{not json")
    assert len(load_model(str(path), arch="resnet18").class_names) == 1000
    (tmp_path / "net.json").write_text(json.dumps({"classes": [1, 2]}))
    assert len(load_model(str(path), arch="resnet18").class_names) == 1000


# --- user files: the wrong file ---------------------------------------------------------------------


def test_state_dict_for_another_architecture(resnet18_pth, tmp_path):
    with pytest.raises(ModelError) as info:
        load_model(str(resnet18_pth), arch="resnet34")
    message = str(info.value)
    assert resnet18_pth.name in message and "missing keys" in message and "layer1.2.conv1.weight" in message
    assert "--arch" in message

    torch.manual_seed(0)
    path = tmp_path / "resnet34.pth"
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), path)
    with pytest.raises(ModelError) as info:
        load_model(str(path), arch="resnet18")
    assert "unexpected keys" in str(info.value) and "layer1.2.conv1.weight" in str(info.value)
    assert "more" in str(info.value)  # long key lists are cut short


def test_bare_state_dict_needs_arch(resnet18_pth):
    with pytest.raises(ModelError, match="--arch") as info:
        load_model(str(resnet18_pth))
    assert resnet18_pth.name in str(info.value) and "122 tensors" in str(info.value)


# Leading bytes that send torch's unpickler down different failure paths (UnpicklingError,
# IndexError, KeyError, UnicodeDecodeError): all must end as a ModelError naming the file.
@pytest.mark.parametrize("first", [0x00, 0x2E, 0x41, 0x63, 0x7D, 0x9C, 0xFF, 85, 239])
@pytest.mark.parametrize("trust", [False, True])
def test_random_bytes_are_not_weights(tmp_path, first, trust):
    path = tmp_path / f"garbage_{first}.pth"
    path.write_bytes(bytes([first]) + random.Random(first).randbytes(4096))
    with pytest.raises(ModelError) as info:
        load_model(str(path), trust=trust)
    assert not isinstance(info.value, UntrustedModelError)
    assert path.name in str(info.value) and "not a PyTorch weights file" in str(info.value)


def test_random_bytes_safetensors(tmp_path):
    path = tmp_path / "garbage.safetensors"
    path.write_bytes(random.Random(1).randbytes(4096))
    with pytest.raises(ModelError, match="garbage.safetensors"):
        load_model(str(path), arch="resnet18")


def test_unknown_architecture(resnet18_pth):
    with pytest.raises(ModelError, match="unknown architecture 'resnet_nineteen'"):
        load_model(str(resnet18_pth), arch="resnet_nineteen")


def test_missing_file():
    with pytest.raises(ModelError, match="no such model file"):
        load_model("/nonexistent/folder/weights.pth", arch="resnet18")


def test_registry_name_with_arch_is_a_model_error():
    # Used to fail with AssertionError('unreachable').
    with pytest.raises(ModelError, match="--arch is only for a weights file"):
        load_model("resnet18", arch="resnet18")


# --- TorchScript -------------------------------------------------------------------------------------


class TinyNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.features = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=4), torch.nn.ReLU())
        self.head = torch.nn.Linear(8, 6)

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(2, 3)))


@JIT_DEPRECATED
@pytest.mark.parametrize("how", ["script", "trace"])
def test_torchscript(tmp_path, chelsea, how):
    net = TinyNet().eval()
    scripted = torch.jit.script(net) if how == "script" else torch.jit.trace(net, torch.zeros(1, 3, 32, 32))
    path = tmp_path / f"tiny_{how}.pt"
    torch.jit.save(scripted, str(path))
    with pytest.raises(UntrustedModelError, match="TorchScript archive .*--trust"):
        load_model(str(path))  # TorchScript is a program: like a pickle, it needs trust
    loaded = load_model(str(path), trust=True)
    assert loaded.scripted and loaded.class_names is None and "TorchScript" in loaded.title
    result = run(loaded, chelsea)
    with torch.no_grad():
        expected = net(loaded.preprocess.batch(chelsea))[0]
    assert torch.allclose(torch.from_numpy(result.logits), expected, rtol=1e-5, atol=1e-6)
    probs = torch.softmax(expected, 0)
    assert [p.index for p in result.predictions] == torch.argsort(probs, descending=True)[:5].tolist()
    assert result.predictions[0].label == f"class {result.predictions[0].index}"
    with pytest.raises(ModelError, match="TorchScript"):
        run(loaded, chelsea, layers=["features"])


@JIT_DEPRECATED
def test_torchscript_sidecar_classes(tmp_path, chelsea):
    path = tmp_path / "tiny.pt"
    torch.jit.save(torch.jit.script(TinyNet().eval()), str(path))
    names = ["a", "b", "c", "d", "e", "f"]
    path.with_suffix(".json").write_text(json.dumps({"classes": names}))
    result = run(load_model(str(path), trust=True), chelsea, topk=6)
    assert {p.label for p in result.predictions} == set(names)


# --- pickled models ---------------------------------------------------------------------------------


def test_pickled_module_needs_trust(resnet18, tmp_path, x):
    path = tmp_path / "whole_model.pt"
    torch.save(resnet18, path)
    with pytest.raises(UntrustedModelError, match="--trust") as info:
        load_model(str(path))
    assert isinstance(info.value, ModelError) and path.name in str(info.value)
    loaded = load_model(str(path), trust=True)
    assert isinstance(loaded.module, torchvision.models.ResNet)
    assert len(loaded.class_names) == 1000
    assert torch.equal(_outputs(loaded.module, x), _outputs(resnet18, x))


# --- the download cache ----------------------------------------------------------------------------


def test_preseeded_cache(torch_home, resnet18_pth, resnet18, x):
    spec = get_spec("resnet18")
    assert checkpoint_dir() == torch_home
    assert not is_cached(spec)
    torch_home.mkdir(parents=True)
    shutil.copy(resnet18_pth, torch_home / "resnet18-f37072fd.pth")
    assert is_cached(spec)
    loaded = load_model("resnet18")
    assert loaded.source == str(torch_home / "resnet18-f37072fd.pth")
    assert loaded.trained and loaded.spec is spec and loaded.class_names[1] == "goldfish"
    assert torch.equal(_outputs(loaded.module, x), _outputs(resnet18, x))


def _sha8(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:8]


@pytest.fixture
def file_spec():
    """Register a torchvision ResNet-18 spec whose weights come from a file:// URL; removed after."""
    added = []

    def make(url: str) -> ModelSpec:
        spec = models.register(ModelSpec(
            name="test_resnet18_file", title="ResNet-18 (test mirror)", kind="cnn", source="torchvision",
            builder="resnet18", weights="ResNet18_Weights.IMAGENET1K_V1", url=url,
        ))
        added.append(spec.name)
        return spec

    yield make
    for name in added:
        REGISTRY.pop(name, None)


def test_download_from_file_url(torch_home, tmp_path, resnet18_pth, resnet18, file_spec, x):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    source = mirror / f"resnet18-{_sha8(resnet18_pth)}.pth"
    shutil.copy(resnet18_pth, source)
    spec = file_spec(source.as_uri())
    assert not is_cached(spec)
    calls = []
    loaded = load_model(spec.name, progress=lambda done, total, text: calls.append((done, total, text)))
    cached = torch_home / source.name
    assert cached.is_file() and cached.read_bytes() == source.read_bytes()
    assert loaded.source == str(cached) and is_cached(spec)
    assert torch.equal(_outputs(loaded.module, x), _outputs(resnet18, x))
    size = source.stat().st_size
    dones = [done for done, total, _ in calls if total == size]
    assert len(dones) >= 2 and dones == sorted(set(dones)) and dones[-1] == size
    assert any("downloading" in text for *_, text in calls)
    assert list(torch_home.glob("*.part")) == []
    # A second load uses the cache: the mirror can go away.
    source.unlink()
    assert torch.equal(_outputs(load_model(spec.name).module, x), _outputs(resnet18, x))


def test_download_hash_mismatch_leaves_nothing(torch_home, tmp_path, resnet18_pth, file_spec):
    real = _sha8(resnet18_pth)
    wrong = "0123abcd" if not real.startswith("0123abcd") else "fedc4321"
    source = tmp_path / f"resnet18-{wrong}.pth"
    shutil.copy(resnet18_pth, source)
    spec = file_spec(source.as_uri())
    with pytest.raises(ModelError, match="corrupt") as info:
        load_model(spec.name)
    assert wrong in str(info.value)
    assert list(torch_home.iterdir()) == []  # no cached file, no partial file
    assert not is_cached(spec)


def test_download_cancel_leaves_nothing(torch_home, tmp_path, resnet18_pth):
    source = tmp_path / f"resnet18-{_sha8(resnet18_pth)}.pth"
    shutil.copy(resnet18_pth, source)
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        fetch(source.as_uri(), what="ResNet-18", cancel=token)
    assert list(torch_home.iterdir()) == []


def test_unreachable_url_names_the_checkpoints_folder(torch_home, tmp_path, file_spec):
    spec = file_spec((tmp_path / "gone" / "resnet18-12345678.pth").as_uri())
    with pytest.raises(ModelError) as info:
        load_model(spec.name)
    message = str(info.value)
    assert str(torch_home) in message and "resnet18-12345678.pth" in message
    assert "--model PATH --arch" in message
    assert not (torch_home / "resnet18-12345678.pth").exists()


# --- timm models offline -----------------------------------------------------------------------------


@pytest.fixture
def offline(monkeypatch, tmp_path, torch_home):
    """No Hugging Face cache, HF_HUB_OFFLINE set, an empty torch cache, and no network at all."""
    import huggingface_hub.constants as hf

    def unreachable(*args, **kwargs):
        raise OSError(101, "Network is unreachable (blocked by the test)")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", True)  # huggingface_hub reads the variable at import
    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr(socket.socket, "connect", unreachable)
    monkeypatch.setattr(socket, "create_connection", unreachable)
    return torch_home


def test_timm_offline_is_a_clear_model_error(offline):
    spec = get_spec("deit_tiny")
    assert not is_cached(spec)
    start = time.monotonic()
    with pytest.raises(ModelError) as info:
        load_model("deit_tiny")
    assert time.monotonic() - start < 10
    message = str(info.value)
    assert message.startswith("DeiT-Tiny/16 needs its weights")
    assert "Hugging Face" in message and "--model PATH --arch deit_tiny" in message
    assert str(offline) in message and "deit_tiny_patch16_224-" in message  # where to copy the file
    assert "\n" not in message and "Traceback" not in message
    assert list(offline.glob("*")) == []  # nothing half-downloaded


@pytest.mark.parametrize("content", [b"", b"\x00" + random.Random(0).randbytes(2000)])
def test_timm_damaged_cached_file(offline, content):
    """A damaged file in the torch cache is reported with its path (an empty one raised EOFError)."""
    from models.loading import _timm_cfg

    spec = get_spec("deit_tiny")
    cached = offline / Path(_timm_cfg(spec)["url"]).name
    offline.mkdir(parents=True)
    cached.write_bytes(content)
    assert is_cached(spec)
    with pytest.raises(ModelError, match="does not hold deit_tiny_patch16_224.fb_in1k weights") as info:
        load_model("deit_tiny")
    assert str(cached) in str(info.value)


# --- devices ---------------------------------------------------------------------------------------


def test_devices(resnet18_loaded):
    devices = available_devices()
    assert "cpu" in devices and devices[-1] == "cpu"
    assert default_device() == devices[0]
    assert move_model(resnet18_loaded, "cpu") is None
    assert resnet18_loaded.device == "cpu"
    assert all(p.device.type == "cpu" for p in resnet18_loaded.module.parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_round_trip(resnet18_loaded, chelsea):
    cpu = run(resnet18_loaded, chelsea, ["layer1"])
    assert move_model(resnet18_loaded, "cuda:0") is None and resnet18_loaded.device == "cuda:0"
    gpu = run(resnet18_loaded, chelsea, ["layer1"])
    assert all(p.device.type == "cuda" for p in resnet18_loaded.module.parameters())
    assert gpu.predictions[0].index == cpu.predictions[0].index
    np.testing.assert_allclose(gpu.activations["layer1"], cpu.activations["layer1"], rtol=1e-2, atol=1e-2)
    assert move_model(resnet18_loaded, "cpu") is None

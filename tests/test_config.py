"""The per-machine config (vizapp.core.config): the file's place, its checks, the folders it
sets (environment > config > default), the weights folders searched before any download, and
the offline-only machine's model list (engine and CLI; the window's picker: test_config_gui.py)."""

from __future__ import annotations

import json
import shutil
import socket
import sys
import urllib.request
from pathlib import Path

import pytest
import torch

import models
from models import REGISTRY, ModelSpec, get_spec, is_cached, load_model
from vizapp.cli import main as cli_main
from vizapp.core import config, paths
from vizapp.core.errors import ConfigError, ModelError

FOLDER_VARS = ("VIZAPP_CONFIG", "VIZAPP_CACHE", "VIZAPP_DATA", "VIZAPP_RUNS", "VIZAPP_WEIGHTS")


@pytest.fixture(autouse=True)
def no_machine(monkeypatch, tmp_path):
    """No config file anywhere (an empty site folder), no folder overrides; nothing remembered."""
    for name in FOLDER_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_DIRS", str(tmp_path / "etc-xdg"))
    config.reset_machine_config()
    yield tmp_path / "etc-xdg" / "vizapp" / "config.toml"
    config.reset_machine_config()


@pytest.fixture
def machine(monkeypatch, tmp_path):
    """``machine(text)``: write ``text`` as the config file ``$VIZAPP_CONFIG`` names; returns its path."""
    def write(text: str) -> Path:
        path = tmp_path / "machine" / "config.toml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        monkeypatch.setenv("VIZAPP_CONFIG", str(path))
        config.reset_machine_config()
        return path

    return write


@pytest.fixture
def no_network(monkeypatch):
    """Any download attempt fails the test (urllib, sockets, the Hugging Face hub)."""
    import huggingface_hub.constants as hf

    tried = []

    def blocked(*args, **kwargs):
        tried.append(args[:1])
        raise OSError(101, "Network is unreachable (blocked by the test)")

    monkeypatch.setattr(urllib.request, "urlopen", blocked)
    monkeypatch.setattr(socket.socket, "connect", blocked)
    monkeypatch.setattr(socket, "create_connection", blocked)
    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(Path(hf.HF_HUB_CACHE).parent / "empty-hub-for-tests"))
    return tried


# --- the file ---------------------------------------------------------------------------------


def test_no_file_means_the_defaults(no_machine):
    assert config.config_file() is None
    cfg = config.machine_config()
    assert cfg == config.MachineConfig()
    assert (cfg.offline_only, cfg.models, cfg.weights_dirs, cfg.where) == (False, (), (), "no config file")
    assert paths.weights_dirs() == []  # not frozen, nothing set: no weights folder


def test_site_file_is_read_with_every_key(no_machine, tmp_path):
    no_machine.parent.mkdir(parents=True)
    no_machine.write_text(f"""
offline_only = true
default_model = "vit_digits"
default_image = "digit3"
models = ["vit_digits", "efficientnet_lite0"]
cache_dir = "{tmp_path}/cache"
index_dir = "{tmp_path}/index"
runs_dir = "{tmp_path}/runs"
data_dir = "{tmp_path}/data"
weights_dirs = ["{tmp_path}/w1", "~/w2"]
""")
    assert config.config_file() == no_machine
    cfg = config.machine_config()
    assert cfg.path == no_machine and cfg.where == str(no_machine)
    assert cfg.offline_only is True
    assert (cfg.default_model, cfg.default_image) == ("vit_digits", "digit3")
    assert cfg.models == ("vit_digits", "efficientnet_lite0")
    assert (cfg.cache_dir, cfg.index_dir, cfg.runs_dir, cfg.data_dir) == (
        tmp_path / "cache", tmp_path / "index", tmp_path / "runs", tmp_path / "data")
    assert cfg.weights_dirs == (tmp_path / "w1", Path.home() / "w2")


def test_read_once_per_process_until_reset(machine):
    path = machine("offline_only = true\n")
    first = config.machine_config()
    path.write_text("offline_only = false\n")
    assert config.machine_config() is first and first.offline_only
    config.reset_machine_config()
    assert config.machine_config().offline_only is False


@pytest.mark.parametrize("text, key, why", [
    ('offline_only = "yes"\n', "offline_only", "must be a boolean"),
    ("colour = 1\n", "'colour'", "unknown key"),
    ('cache_dir = "relative/cache"\n', "cache_dir", "must be an absolute path"),
    ("runs_dir = 3\n", "runs_dir", "must be an absolute path"),
    ('weights_dirs = "/one/folder"\n', "weights_dirs", "must be a list of absolute paths"),
    ('weights_dirs = ["/ok", "not/absolute"]\n', "weights_dirs", "must be an absolute path"),
    ("models = [1, 2]\n", "models", "must be a list of registry names"),
    ("default_model = 3\n", "default_model", "must be a string"),
    ('default_image = ""\n', "default_image", "must be a string"),
    ("offline_only = \n", "not a valid TOML file", "line 1"),
])
def test_a_bad_file_is_one_line_naming_file_and_key(machine, text, key, why):
    path = machine(text)
    with pytest.raises(ConfigError) as info:
        config.machine_config()
    message = str(info.value)
    assert message.startswith(f"{path}: ") and key in message and why in message
    assert "\n" not in message


def test_a_missing_vizapp_config_file_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv("VIZAPP_CONFIG", str(tmp_path / "nowhere.toml"))
    with pytest.raises(ConfigError, match="nowhere.toml: no such config file"):
        config.machine_config()


def test_the_cli_turns_a_bad_file_into_exit_2(machine, capsys):
    path = machine('cache_dir = "cache"\n')
    assert cli_main(["models"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{path}: cache_dir must be an absolute path" in err


# --- the folders: environment > config > default ----------------------------------------------


def test_environment_wins_over_config_which_wins_over_the_default(machine, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in ("XDG_CACHE_HOME", "XDG_DATA_HOME"):
        monkeypatch.delenv(name, raising=False)
    machine(f'cache_dir = "{tmp_path}/c"\nindex_dir = "{tmp_path}/i"\nruns_dir = "{tmp_path}/r"\n'
            f'data_dir = "{tmp_path}/d"\n')
    assert (paths.cache_dir(), paths.index_dir(), paths.runs_dir(), paths.data_dir()) == (
        tmp_path / "c", tmp_path / "i", tmp_path / "r", tmp_path / "d")
    for name, value in (("VIZAPP_CACHE", "ec"), ("VIZAPP_RUNS", "er"), ("VIZAPP_DATA", "ed")):
        monkeypatch.setenv(name, str(tmp_path / value))
    assert (paths.cache_dir(), paths.index_dir(), paths.runs_dir(), paths.data_dir()) == (
        tmp_path / "ec", tmp_path / "ec" / "index", tmp_path / "er", tmp_path / "ed")
    # Only the cache in the config: the indexes and data sets go under it.
    for name in ("VIZAPP_CACHE", "VIZAPP_RUNS", "VIZAPP_DATA"):
        monkeypatch.delenv(name)
    machine(f'cache_dir = "{tmp_path}/c"\n')
    assert (paths.index_dir(), paths.data_dir()) == (tmp_path / "c" / "index", tmp_path / "c" / "data")
    if sys.platform == "linux":  # no config key: the platform defaults (test_paths.py has them all)
        machine("")
        assert paths.cache_dir() == tmp_path / "home" / ".cache" / "vizapp"
        assert paths.runs_dir() == tmp_path / "home" / ".local" / "share" / "vizapp" / "vizapp" / "runs"


def test_weights_dirs_environment_then_config_then_bundle(machine, monkeypatch, tmp_path):
    import os

    monkeypatch.setenv("VIZAPP_WEIGHTS", os.pathsep.join([str(tmp_path / "a"), "", str(tmp_path / "b")]))
    machine(f'weights_dirs = ["{tmp_path}/c", "{tmp_path}/a"]\n')
    assert paths.weights_dirs() == [tmp_path / "a", tmp_path / "b", tmp_path / "c"]
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "bundle" / "vizapp"))
    assert paths.weights_dirs()[-1] == tmp_path / "bundle" / "weights"


def test_a_frozen_bundle_reads_its_own_config(no_machine, monkeypatch, tmp_path):
    bundle = tmp_path / "opt" / "vizapp"
    bundle.mkdir(parents=True)
    (bundle / "config.toml").write_text('default_model = "vit_digits"\n')
    assert config.bundle_dir() is None and config.config_file() is None  # not frozen: not looked at
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", str(bundle / "vizapp"))
    assert config.bundle_dir() == bundle
    assert config.config_candidates() == [no_machine, bundle / "config.toml"]
    assert config.config_file() == bundle / "config.toml"
    assert config.machine_config().default_model == "vit_digits"
    assert paths.weights_dirs() == [bundle / "weights"]
    # The admin's site file wins over the one the installer shipped.
    no_machine.parent.mkdir(parents=True)
    no_machine.write_text('default_model = "tinyvgg_shapes"\n')
    assert config.machine_config().default_model == "tinyvgg_shapes"


# --- weights folders before any download --------------------------------------------------------


@pytest.fixture
def tv_spec():
    """A torchvision ResNet-18 whose weights URL goes nowhere (any download fails); removed after."""
    spec = models.register(ModelSpec(
        name="test_resnet18_weights_dir", title="ResNet-18 (weights folder test)", kind="cnn",
        source="torchvision", builder="resnet18", weights="ResNet18_Weights.IMAGENET1K_V1",
        url="file:///nowhere/at/all/resnet18-0badc0de.pth"))
    yield spec
    REGISTRY.pop(spec.name, None)


def _out(module, x):
    with torch.no_grad():
        return module(x)


@pytest.mark.parametrize("how", ["environment", "config"])
def test_torchvision_weights_load_from_a_weights_folder(how, machine, monkeypatch, tmp_path, torch_home,
                                                        tv_spec, resnet18_pth, resnet18, no_network):
    folder = tmp_path / "network-drive" / "weights"
    (folder / "hub" / "checkpoints").mkdir(parents=True)
    shutil.copy(resnet18_pth, folder / "hub" / "checkpoints" / "resnet18-0badc0de.pth")
    if how == "environment":
        monkeypatch.setenv("VIZAPP_WEIGHTS", str(folder))
    else:
        machine(f'weights_dirs = ["{folder}"]\noffline_only = true\n')
    assert is_cached(tv_spec)
    loaded = load_model(tv_spec.name)
    assert loaded.source == str(folder / "hub" / "checkpoints" / "resnet18-0badc0de.pth")
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert torch.equal(_out(loaded.module, x), _out(resnet18, x))
    assert tried_nothing(no_network) and not torch_home.exists()  # nothing downloaded or copied


def tried_nothing(tried: list) -> bool:
    return tried == []


def _fake_hf_cache(hub: Path, repo: str, state: dict) -> Path:
    """The Hugging Face cache's layout for one repo's ``model.safetensors`` (as a copied cache has it)."""
    from safetensors.torch import save_file

    root = hub / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text("0123456789abcdef")
    snapshot = root / "snapshots" / "0123456789abcdef"
    snapshot.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in state.items()}, snapshot / "model.safetensors")
    return snapshot / "model.safetensors"


def test_timm_weights_load_from_a_weights_folders_hugging_face_cache(machine, tmp_path, torch_home,
                                                                     make_timm_vit, no_network):
    spec = get_spec("deit_tiny")
    assert not is_cached(spec)
    vit = make_timm_vit("deit_tiny_patch16_224")
    folder = tmp_path / "weights"
    file = _fake_hf_cache(folder / "huggingface" / "hub", "timm/deit_tiny_patch16_224.fb_in1k", vit.state_dict())
    machine(f'weights_dirs = ["{folder}"]\n')
    assert is_cached(spec)
    loaded = load_model("deit_tiny")
    assert Path(loaded.source) == file and loaded.trained
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(_out(loaded.module, x), _out(vit, x), atol=1e-6)
    assert no_network == []


# --- offline-only -------------------------------------------------------------------------------


def test_offline_only_refuses_a_download_in_one_line(machine, tmp_path, torch_home, tv_spec, no_network):
    path = machine(f'offline_only = true\nweights_dirs = ["{tmp_path}/w"]\n')
    with pytest.raises(ModelError) as info:
        load_model(tv_spec.name)
    message = str(info.value)
    assert message.startswith("ResNet-18 (weights folder test) is not available offline on this machine")
    assert str(path) in message and "resnet18-0badc0de.pth" in message
    assert str(tmp_path / "w" / "hub" / "checkpoints") in message and str(torch_home) in message
    assert "\n" not in message and no_network == [] and not torch_home.exists()
    with pytest.raises(ModelError, match="DeiT-Tiny/16 is not available offline on this machine") as info:
        load_model("deit_tiny")
    assert "timm/deit_tiny_patch16_224.fb_in1k" in str(info.value) and no_network == []


def test_models_json_marks_hidden_models(machine, capsys, torch_home, no_network):
    path = machine('offline_only = true\nmodels = ["vit_digits", "resnet18", "efficientnet_lite0"]\n')
    assert cli_main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows[:3]] == ["vit_digits", "resnet18", "efficientnet_lite0"]
    assert len(rows) == len(REGISTRY)
    by_name = {r["name"]: r for r in rows}
    assert [r["name"] for r in rows if r["shown"]] == ["vit_digits", "efficientnet_lite0"]
    assert by_name["resnet18"]["hidden"] == "not offline (offline-only machine)"
    assert by_name["resnet18"]["offline"] is False and by_name["vit_digits"]["hidden"] is None
    assert by_name["alexnet"]["hidden"] == "not in the machine's model list"
    assert cli_main(["models"]) == 0
    out, err = capsys.readouterr()
    assert [line.split()[0] for line in out.splitlines()] == ["vit_digits", "efficientnet_lite0"]
    assert f"hidden by {path}" in err and "resnet18" in err
    from vizapp.analysis import catalog

    entries, devices = catalog()
    assert [spec.name for spec, _ in entries] == ["vit_digits", "efficientnet_lite0"] and "cpu" in devices


def test_offline_only_without_a_list_hides_the_downloads(machine, capsys, torch_home, no_network):
    machine("offline_only = true\n")
    assert cli_main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == list(REGISTRY)  # the registry's order
    assert all(r["shown"] == r["offline"] for r in rows)
    assert {"efficientnet_lite0", "vit_digits", "vit_tiny_untrained"} <= {r["name"] for r in rows if r["shown"]}


def test_an_unknown_model_in_the_list_names_the_key(machine, capsys):
    path = machine('models = ["vit_digits", "resnet1000"]\n')
    assert cli_main(["models"]) == 2
    err = capsys.readouterr().err
    assert f"{path}: models names 'resnet1000', which is not a registry model" in err and err.count("\n") == 1

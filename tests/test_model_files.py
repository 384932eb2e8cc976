"""Model files that could run code or exhaust memory, and damaged checkpoint folders (issue 9).

TorchScript is a program: like a pickle it is refused unless trusted, told by its content
whatever the file is called. A zip whose members would inflate far beyond the file is
refused before anything inflates. A checkpoint card with absurd numbers, and a checkpoint
whose weights are damaged or belong to another model, are one line naming the file.
"""

from __future__ import annotations

import functools
import json
import os
import re
import struct
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import pytest
import safetensors.torch
import torch
from _evil import Evil

import main
import models.formats.pytorch
import models.weights
from models import build_small, load_model, read_card, save_checkpoint
from vizapp.core.errors import ModelError, UntrustedModelError

ROOT = Path(__file__).resolve().parents[1]
JIT_DEPRECATED = pytest.mark.filterwarnings("ignore:`torch.jit.*deprecated:FutureWarning")


class Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, stride=4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean(dim=(2, 3))


@pytest.fixture
def evil(tmp_path) -> tuple[Path, Path]:
    """``(a TorchScript archive named .safetensors, the file its loading would create)``."""
    marker = tmp_path / "written_by_the_model_file"
    path = tmp_path / "evil.safetensors"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(Evil(str(marker))), str(path))
    assert not marker.exists()
    return path, marker


@pytest.fixture
def no_torch_load(monkeypatch) -> list[str]:
    """Record every call of torch.load / torch.jit.load (a refusal must come before them)."""
    calls: list[str] = []
    real_load, real_jit = torch.load, torch.jit.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append("torch.load") or real_load(*a, **k))
    monkeypatch.setattr(torch.jit, "load", lambda *a, **k: calls.append("torch.jit.load") or real_jit(*a, **k))
    return calls


# --- TorchScript is code -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["evil.safetensors", "evil.pt", "evil.bin", "model.pth", "evil"])
def test_torchscript_is_refused_unless_trusted_whatever_its_name(evil, name, no_torch_load):
    path, marker = evil
    path = path.rename(path.with_name(name))
    for arch in ("resnet18", None):
        with pytest.raises(UntrustedModelError) as info:
            load_model(str(path), arch=arch)
        text = str(info.value)
        assert str(path) in text and "TorchScript" in text and "--trust" in text and "I trust this file" in text
        assert "\n" not in text
    assert not marker.exists() and no_torch_load == []


def test_trusted_torchscript_runs_its_code(evil):
    path, marker = evil
    loaded = load_model(str(path), trust=True)  # the user said so: it loads, and its code runs
    assert loaded.scripted and marker.is_file()


def test_cli_refuses_torchscript_named_safetensors(evil, capsys):
    path, marker = evil
    status = main.main(["layers", "--model", str(path), "--arch", "resnet18"])
    out, err = capsys.readouterr()
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("vizapp: error: ") and "--trust" in err
    assert not marker.exists()


def test_trusted_torchscript_loads_without_deprecation_warnings(tmp_path):
    path = tmp_path / "tiny.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(Tiny().eval()), str(path))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = load_model(str(path), trust=True)
    assert loaded.scripted
    assert [str(w.message) for w in caught if issubclass(w.category, FutureWarning)] == []
    # and on the command line: nothing at all on stderr
    done = subprocess.run([sys.executable, "main.py", "layers", "--model", str(path), "--trust"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONWARNINGS": ""})
    assert done.returncode == 0 and "(model)" in done.stdout
    assert done.stderr == ""


def test_a_real_safetensors_file_never_meets_pickle_or_torchscript(tmp_path, resnet18_state, no_torch_load):
    for name in ("r18.safetensors", "r18.pt"):  # by content: a safetensors file called .pt too
        path = tmp_path / name
        safetensors.torch.save_file(resnet18_state, str(path))
        loaded = load_model(str(path), arch="resnet18", trust=True)
        own = loaded.module.state_dict()
        assert all(torch.equal(own[k], v) for k, v in resnet18_state.items())
    assert no_torch_load == []


@pytest.mark.parametrize("how", ["pickle", "zip", "garbage"])
def test_a_safetensors_name_on_something_else_is_not_read_as_it(tmp_path, how, no_torch_load):
    path = tmp_path / "weights.safetensors"
    if how == "garbage":
        path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!" + bytes(100))
    else:
        torch.save(Tiny().state_dict(), path, _use_new_zipfile_serialization=how == "zip")
    no_torch_load.clear()
    for trust in (False, True):
        with pytest.raises(ModelError, match="not a readable safetensors file") as info:
            load_model(str(path), arch="resnet18", trust=trust)
        assert not isinstance(info.value, UntrustedModelError) and str(path) in str(info.value)
    assert no_torch_load == []


# --- zip bombs -------------------------------------------------------------------------------------------


def _deflated_zeros(path: Path, members: dict[str, int]) -> Path:
    """A zip of deflated zeros, written in 1 MiB pieces (the test never holds the inflated data)."""
    chunk = bytes(1 << 20)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, size in members.items():
            with zf.open(name, "w", force_zip64=True) as f:
                for start in range(0, size, len(chunk)):
                    f.write(chunk[: min(len(chunk), size - start)])
    return path


@pytest.mark.parametrize("trust", [False, True])
def test_a_zip_bomb_is_refused_before_anything_inflates(tmp_path, trust, no_torch_load):
    path = _deflated_zeros(tmp_path / "bomb.pt", {"archive/data.pkl": 256 << 20})
    assert path.stat().st_size < 2 << 20  # a small file ...
    with pytest.raises(ModelError) as info:
        load_model(str(path), arch="resnet18", trust=trust)
    text = str(info.value)
    assert not isinstance(info.value, UntrustedModelError) and "--trust" not in text
    assert text.startswith(f"{path}: a member (archive/data.pkl) inflates to 256.0 MiB from ")
    assert text.endswith("; refusing a likely zip bomb") and "\n" not in text
    assert no_torch_load == []  # ... refused from its declared sizes: nothing was inflated


def test_many_small_members_add_up_to_a_bomb(tmp_path, monkeypatch, no_torch_load):
    monkeypatch.setattr(models.weights, "ZIP_FLOOR", 1 << 20)  # each member stays under the floor
    path = _deflated_zeros(tmp_path / "many.pt", {f"archive/data/{i}": 1 << 20 for i in range(8)})
    with pytest.raises(ModelError, match=r"its 8 members inflate to 8\.0 MiB from a .* file .*zip bomb"):
        load_model(str(path), arch="resnet18")
    assert no_torch_load == []


def test_a_zip_torch_would_open_but_zipfile_cannot_check_is_refused(tmp_path, no_torch_load):
    """Cut off before its central directory: its sizes cannot be checked, so torch.load never sees it."""
    path = tmp_path / "cut.pt"
    torch.save(Tiny().state_dict(), path)
    path.write_bytes(path.read_bytes()[:-200])
    for trust in (False, True):
        with pytest.raises(ModelError, match=r"cut\.pt: a damaged zip archive \(no readable central directory\)"):
            load_model(str(path), arch="resnet18", trust=trust)
    assert no_torch_load == []


def _two_directory_bomb(path: Path, size: int = 256 << 20) -> Path:
    """A deflated bomb with two central directories (issue 9 review): the real one, then a copy
    whose sizes say every member is stored, then the original end record. ``zipfile`` reads the
    copy just before the end record (a harmless 256 KiB file); torch's reader (miniz) the real
    one at the offset the end record declares (``size`` bytes of ``data.pkl``)."""
    chunk = bytes(1 << 20)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("archive/version", b"3\n", compress_type=zipfile.ZIP_STORED)
        zf.writestr("archive/byteorder", b"little", compress_type=zipfile.ZIP_STORED)
        with zf.open("archive/data.pkl", "w") as f:  # streamed: the test never holds the inflated data
            for _ in range(size >> 20):
                f.write(chunk)
    data = path.read_bytes()
    eocd = data.rindex(b"PK\x05\x06")
    cd_size, cd_offset = struct.unpack("<II", data[eocd + 12:eocd + 20])
    cd = bytearray(data[cd_offset:cd_offset + cd_size])
    i = 0
    while i < len(cd):
        assert cd[i:i + 4] == b"PK\x01\x02"
        n, m, k = struct.unpack("<HHH", cd[i + 28:i + 34])
        extra = i + 46 + n
        if cd[extra:extra + 2] == b"\x01\x00":  # zip64 sizes: uncompressed, then compressed
            cd[extra + 4:extra + 12] = cd[extra + 12:extra + 20]
        else:
            cd[i + 24:i + 28] = cd[i + 20:i + 24]
        i += 46 + n + m + k
    path.write_bytes(data[:eocd] + bytes(cd) + data[eocd:])
    return path


@pytest.fixture
def no_zip_reader(monkeypatch) -> list[str]:
    """Record every PyTorchFileReader torch (or the check) opens: its constructor inflates a record."""
    opened: list[str] = []
    real = torch._C.PyTorchFileReader
    monkeypatch.setattr(torch._C, "PyTorchFileReader", lambda *a: opened.append(str(a[0])) or real(*a))
    return opened


def test_a_zip_whose_readers_see_different_directories_is_refused(tmp_path, no_torch_load, no_zip_reader):
    path = _two_directory_bomb(tmp_path / "twocd.pt")
    assert path.stat().st_size < 2 << 20
    with zipfile.ZipFile(path) as zf:  # zipfile is shown the small copy ...
        assert [i.file_size for i in zf.infolist()] == [i.compress_size for i in zf.infolist()]
    for trust in (False, True):
        with pytest.raises(ModelError) as info:
            load_model(str(path), arch="resnet18", trust=trust)
        assert str(info.value) == f"{path}: inconsistent zip directory; refusing"
        assert not isinstance(info.value, UntrustedModelError)
    assert no_torch_load == [] and no_zip_reader == []  # ... and torch never opened it


def test_cli_refuses_a_two_directory_bomb_in_one_line(tmp_path, capsys, no_torch_load, no_zip_reader):
    path = _two_directory_bomb(tmp_path / "twocd.pt")
    status = main.main(["layers", "--model", str(path), "--arch", "resnet18"])
    out, err = capsys.readouterr()
    assert status == 2 and out == ""
    assert err == f"vizapp: error: {path}: inconsistent zip directory; refusing\n"
    assert no_torch_load == [] and no_zip_reader == []


def test_the_sizes_torch_would_inflate_are_checked_too(tmp_path, monkeypatch, no_torch_load):
    """Behind the directory check: if zipfile is fooled, torch's own record sizes still refuse the file."""
    path = _two_directory_bomb(tmp_path / "twocd.pt")
    monkeypatch.setattr(models.weights, "_directory_is_consistent", lambda path: True)
    with pytest.raises(ModelError) as info:
        load_model(str(path), arch="resnet18", trust=True)
    text = str(info.value)
    assert text.startswith(f"{path}: torch's zip reader would inflate its 3 records to 256.0 MiB (data.pkl: 256.0 MiB)")
    assert text.endswith("refusing a likely zip bomb") and "--trust" not in text and "\n" not in text
    assert no_torch_load == []


def test_resuming_from_a_bomb_state_file_never_reaches_torch_load(tmp_path, no_torch_load, no_zip_reader):
    from vizapp.core.errors import UserError
    from vizapp.training.checkpoints import read_state

    path = _two_directory_bomb(tmp_path / "train_state.pt")
    with pytest.raises(UserError, match=f"^{re.escape(str(path))}: inconsistent zip directory; refusing$"):
        read_state(path)
    assert no_torch_load == [] and no_zip_reader == []


def test_a_file_is_checked_once(tmp_path, monkeypatch, resnet18_state):
    path = tmp_path / "plain.pt"
    torch.save(resnet18_state, path)
    calls = []
    real = models.formats.pytorch.zip_members
    monkeypatch.setattr(models.formats.pytorch, "zip_members", lambda p: calls.append(p) or real(p))
    load_model(str(path), arch="resnet18")
    assert calls == [path]


def test_a_deflated_real_checkpoint_still_loads(tmp_path, resnet18_state):
    """torch.save stores members (1:1); a checkpoint someone re-zipped with deflate is about 1.1:1."""
    plain = tmp_path / "plain.pt"
    torch.save(resnet18_state, plain)
    deflated = tmp_path / "deflated.pt"
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(deflated, "w", compression=zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    loaded = load_model(str(deflated), arch="resnet18")
    for k, v in resnet18_state.items():
        assert torch.equal(loaded.module.state_dict()[k], v), k


# --- checkpoint cards with absurd values, damaged checkpoint weights -------------------------------------


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    torch.manual_seed(0)
    model = build_small("tinyvgg", in_channels=3, image_size=32, num_classes=4)
    card = {"model": model.model_entry, "classes": ["a", "b", "c", "d"],
            "preprocess": {"resize": 32, "crop": 32, "mean": [0.5] * 3, "std": [0.25] * 3}}
    return save_checkpoint(model, card, tmp_path / "run")


def _edit(folder: Path, change) -> None:
    card = json.loads((folder / "card.json").read_text())
    change(card)
    (folder / "card.json").write_text(json.dumps(card))


@pytest.mark.parametrize(("change", "field"), [
    (lambda c: c["model"].update(image_size=200000), "'image_size' must be from 16 to 1024 px, not 200000"),
    (lambda c: c["model"].update(in_channels=-5), "'in_channels' must be 1 (grey) or 3 (RGB), not -5"),
    (lambda c: c["model"]["options"].update(channels=-5), "option 'channels' must be an integer from 1"),
    (lambda c: c["model"]["options"].update(channels="many"), "option 'channels' must be a number above 0"),
    (lambda c: c["model"]["options"].update(channels=True), "option 'channels' must be a number above 0"),
    (lambda c: c["model"].update(image_size="32"), "needs an integer 'image_size', not \"32\""),
    (lambda c: c["model"].update(image_size=32.5), "needs an integer 'image_size', not 32.5"),
    (lambda c: c["model"].update(num_classes=10**11), "'num_classes' must be from 0 to 100000"),
    (lambda c: c["model"].update(embed_dim=0), "'embed_dim' must be empty (null) or from 1"),
    (lambda c: c["model"].update(kind="transfer", hub="resnet18", num_classes=-1), "'num_classes' must be from 0"),
    (lambda c: c["preprocess"].update(crop=200000), "preprocess 'crop' must be an integer from 1 to 1024"),
    (lambda c: c["preprocess"].update(resize=-3), "preprocess 'resize' must be an integer from 1"),
    (lambda c: c["preprocess"].update(mean=[0.5, "x", 0.5]), "preprocess 'mean' must be 1 or 3 finite numbers"),
    (lambda c: c["preprocess"].update(std=[0.0, 0.2, 0.2]), "preprocess 'std' must be positive"),
    (lambda c: c["preprocess"].update(interpolation="magic"), "preprocess 'interpolation' must be one of"),
    (lambda c: c.update(trained="yes"), "'trained' must be true or false"),
    (lambda c: c["model"].update(name=["tinyvgg"]), "unknown small model ['tinyvgg']"),
])
def test_absurd_card_values_are_refused_before_building(checkpoint, monkeypatch, change, field):
    _edit(checkpoint, change)
    built = []
    monkeypatch.setattr("models.checkpoint.build_small", lambda *a, **k: built.append(a))
    monkeypatch.setattr("models.checkpoint.build_architecture", lambda *a, **k: built.append(a))
    for call in (lambda: load_model(str(checkpoint)), lambda: read_card(checkpoint)):
        with pytest.raises(ModelError) as info:
            call()
        text = str(info.value)
        assert text.startswith(f"{checkpoint / 'card.json'}: ") and field in text and "\n" not in text
    assert built == []


def test_a_nan_in_the_card_is_refused(checkpoint):
    text = (checkpoint / "card.json").read_text().replace("0.25", "NaN", 1)
    (checkpoint / "card.json").write_text(text)
    with pytest.raises(ModelError, match=r"card\.json: preprocess 'std' must be 1 or 3 finite numbers"):
        load_model(str(checkpoint))


def test_a_deeply_nested_card_is_a_clear_error(checkpoint):
    (checkpoint / "card.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ModelError, match=r"card\.json: not a readable JSON card"):
        read_card(checkpoint)


def test_a_card_bigger_than_its_weights_is_refused_before_building(checkpoint, monkeypatch):
    """In range, but the model the card describes could never come from this weights file."""
    _edit(checkpoint, lambda c: c["model"]["options"].update(channels=4096))
    import models.small

    built, real = [], models.small.TinyVGG.__init__

    @functools.wraps(real)  # build_small reads the options from the signature
    def init(self, *args, **kwargs):
        built.append(torch.empty(0).device.type)  # the device new tensors go to
        real(self, *args, **kwargs)

    monkeypatch.setattr(models.small.TinyVGG, "__init__", init)
    with pytest.raises(ModelError) as info:
        load_model(str(checkpoint))
    text = str(info.value)
    assert text.startswith(f"{checkpoint / 'model.safetensors'} does not fit architecture TinyVGG: shape mismatches: ")
    assert "(4096, 3, 3, 3) vs" not in text and "(10, 3, 3, 3) vs (4096, 3, 3, 3)" in text
    assert "do not belong to the model card.json describes (small 'tinyvgg')" in text and "\n" not in text
    assert built == ["meta"]  # built once, on the meta device: the real model never was


def _garbage(path: Path) -> None:
    path.write_bytes(os.urandom(4096))


def _truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _header_only(path: Path) -> None:
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    path.write_bytes(data[: 8 + n])


def _pickled(path: Path) -> None:
    torch.save(build_small("tinyvgg", in_channels=3, image_size=32, num_classes=4).state_dict(), path)


def _torchscript(path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(Evil(str(path.with_name("written")))), str(path))


def _another_model(path: Path) -> None:
    safetensors.torch.save_file(build_small("lenet", in_channels=3, image_size=32, num_classes=4).state_dict(),
                                str(path))


@pytest.mark.parametrize(("damage", "message"), [
    (_garbage, "not a readable safetensors file"),
    (_truncated, "not a readable safetensors file"),
    (_header_only, "not a readable safetensors file"),
    (_pickled, "not a readable safetensors file"),
    (_torchscript, "not a readable safetensors file"),
    (_another_model, "does not fit architecture"),
])
def test_damaged_checkpoint_weights_are_one_line_naming_the_file(checkpoint, damage, message, no_torch_load):
    weights = checkpoint / "model.safetensors"
    damage(weights)
    no_torch_load.clear()
    for trust in (False, True):
        with pytest.raises(ModelError) as info:
            load_model(str(checkpoint), trust=trust)
        text = str(info.value)
        assert not isinstance(info.value, UntrustedModelError)
        assert str(weights) in text and message in text and "\n" not in text
    assert no_torch_load == [] and not (checkpoint / "written").exists()

"""The training lab's models, transfer learning, and checkpoints that open in the model hub.

Qt-free and fast: the small models are built at 28-64 px; the only pretrained model is
the offline EfficientNet-Lite0.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import safetensors.torch
import torch
from PIL import Image
from torch import nn

from models import (
    SMALL_MODELS,
    LoadedModel,
    Preprocess,
    build_small,
    count_parameters,
    load_model,
    read_card,
    save_checkpoint,
    transfer_model,
)
from models.small import find_head, train_mode
from vizapp.core.errors import ModelError, StorageError

NAMES = list(SMALL_MODELS)


def _x(channels: int, size: int, batch: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(seed))


def _build(name: str, channels: int = 3, size: int = 32, classes: int = 6, seed: int = 0, **kw) -> nn.Module:
    torch.manual_seed(seed)
    return build_small(name, in_channels=channels, image_size=size, num_classes=classes, **kw).eval()


def _image(size: int = 40, seed: int = 0) -> Image.Image:
    g = torch.Generator().manual_seed(seed)
    return Image.fromarray(torch.randint(0, 256, (size, size, 3), generator=g, dtype=torch.uint8).numpy())


# --- the architectures ------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [28, 32, 64])
def test_shapes_features_and_head(name, channels, size):
    model = _build(name, channels, size, classes=7)
    x = _x(channels, size)
    with torch.no_grad():
        logits, feats = model(x), model.features(x)
        assert logits.shape == (3, 7)
        assert feats.shape == (3, model.feature_dim)
        assert isinstance(model.head, nn.Linear) and model.head.out_features == 7
        torch.testing.assert_close(model.head(feats), logits, rtol=0, atol=0)
    assert model.num_classes == 7
    assert model.model_entry == {"kind": "small", "name": name, "in_channels": channels, "image_size": size,
                                 "num_classes": 7, "embed_dim": None, "options": {}}


@pytest.mark.parametrize("name", NAMES)
def test_embedding_mode(name):
    x = _x(1, 28, batch=2)
    net = _build(name, 1, 28, classes=0, embed_dim=16)
    assert isinstance(net.head, nn.Identity) and isinstance(net.embed, nn.Linear)
    with torch.no_grad():
        out = net(x)
        assert out.shape == (2, 16)
        torch.testing.assert_close(out, net.features(x), rtol=0, atol=0)
    both = _build(name, 1, 28, classes=5, embed_dim=16)
    assert both.feature_dim == 16 and both.head.in_features == 16
    with torch.no_grad():
        assert both(x).shape == (2, 5) and both.features(x).shape == (2, 16)


def test_lenet5_parameter_count_by_hand():
    # conv1: 6 filters of 1x5x5 + bias; conv2: 16 of 6x5x5 + bias; fc 400->120->84->10.
    by_hand = 6 * (1 * 5 * 5 + 1) + 16 * (6 * 5 * 5 + 1) + (16 * 5 * 5 + 1) * 120 + (120 + 1) * 84 + (84 + 1) * 10
    assert by_hand == 61706
    for size in (28, 32, 64):  # the same network at every input size
        total, trainable = count_parameters(_build("lenet", 1, size, classes=10))
        assert total == trainable == by_hand
    lenet = _build("lenet", 1, 32, classes=10)
    assert [n for n, m in lenet.named_modules() if isinstance(m, nn.Conv2d)] == ["conv1", "conv2"]
    assert lenet.conv1.kernel_size == (5, 5) and lenet.conv2.out_channels == 16
    assert [lenet.fc1.out_features, lenet.fc2.out_features] == [120, 84]


def test_mlp_against_tinyvgg_parameter_counts():
    mlp = _build("mlp", 3, 32, classes=10)
    vgg = _build("tinyvgg", 3, 32, classes=10)
    # MLP: every one of the 3 x 32 x 32 inputs has its own weight to each of 256 units.
    mlp_by_hand = (3 * 32 * 32 + 1) * 256 + (256 + 1) * 256 + (256 + 1) * 10
    # TinyVGG: four 3x3 convs of 10 filters; 32 -> 30 -> 28 -> 14 -> 12 -> 10 -> 5: 10 x 5 x 5 to the head.
    vgg_by_hand = (3 * 9 + 1) * 10 + 3 * (10 * 9 + 1) * 10 + (10 * 5 * 5 + 1) * 10
    assert count_parameters(mlp) == (mlp_by_hand, mlp_by_hand) == (855050, 855050)
    assert count_parameters(vgg) == (vgg_by_hand, vgg_by_hand) == (5520, 5520)
    assert mlp_by_hand > 100 * vgg_by_hand
    assert vgg.feature_dim == 250 and _build("tinyvgg", 3, 64).feature_dim == 10 * 13 * 13  # CNN Explainer's 64 px


def test_tinyvgg_layers_for_the_views():
    vgg = _build("tinyvgg")
    relus = [n for n, m in vgg.named_modules() if isinstance(m, nn.ReLU)]
    assert relus == ["relu1_1", "relu1_2", "relu2_1", "relu2_2"]
    convs = [n for n, m in vgg.named_modules() if isinstance(m, nn.Conv2d)]
    assert convs == ["conv1_1", "conv1_2", "conv2_1", "conv2_2"]
    assert vgg.conv1_1.weight.shape == (10, 3, 3, 3)  # RGB 3x3 kernels for the kernels view
    from vizapp.probing.kernels import kernel_layer, kernel_mosaic, kernel_weights

    loaded = LoadedModel("tinyvgg", "TinyVGG", "cnn", vgg, Preprocess(32, 32), None, "tests")
    assert kernel_layer(loaded, None) == "conv1_1"
    assert kernel_mosaic(kernel_weights(loaded, "conv1_1"), "conv1_1").mode == "rgb"


@pytest.mark.parametrize("name", NAMES)
def test_every_activation_module_is_called_once_and_not_in_place(name):
    model = _build(name)
    relus = {n: m for n, m in model.named_modules() if isinstance(m, nn.ReLU)}
    assert all(not m.inplace for m in relus.values())
    calls = dict.fromkeys(relus, 0)
    handles = [m.register_forward_hook(lambda *_, n=n: calls.__setitem__(n, calls[n] + 1)) for n, m in relus.items()]
    try:
        with torch.no_grad():
            model(_x(3, 32, batch=1))
    finally:
        for h in handles:
            h.remove()
    assert all(c == 1 for c in calls.values()), calls


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_weights(name):
    a, b, c = _build(name, seed=5), _build(name, seed=5), _build(name, seed=6)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa if sa[k].is_floating_point())


def test_resnet_stages_and_depth():
    r8, r20 = _build("resnet"), _build("resnet", depth=20)
    assert [len(r8.layer1), len(r20.layer1)] == [1, 3]
    assert [r20.layer1[0].conv1.out_channels, r20.layer2[0].conv1.out_channels, r20.layer3[0].conv1.out_channels] == [16, 32, 64]
    assert r8.feature_dim == 64 and 0.26e6 < count_parameters(r20)[0] < 0.28e6  # ResNet-20's 0.27M
    with pytest.raises(ModelError, match="6n"):
        _build("resnet", depth=10)


def test_bad_names_and_options_are_model_errors():
    with pytest.raises(ModelError, match="unknown small model 'alexnet'.*tinyvgg"):
        _build("alexnet")
    with pytest.raises(ModelError, match="tinyvgg has no option depth; its options are channels"):
        _build("tinyvgg", depth=3)
    with pytest.raises(ModelError, match="not a multiple of the patch size 5"):
        _build("vit", patch_size=5)
    with pytest.raises(ModelError, match="in_channels must be 1 or 3"):
        _build("lenet", channels=4)


# --- the ViT and the attention views ---------------------------------------------------------------


@pytest.mark.parametrize(("size", "patch", "grid"), [(32, 4, 8), (64, 8, 8), (28, 4, 7)])
def test_vit_attention_is_captured_by_the_app(size, patch, grid):
    from timm.layers import Attention

    from vizapp.explain.attention import analyse_attention, attention_modules

    vit = _build("vit", 3, size, classes=4)
    found = attention_modules(vit)
    assert list(found) == [f"blocks.{i}.attn" for i in range(6)]
    assert all(isinstance(m, Attention) for m in found.values())
    assert vit.patch_embed.patch_size == (patch, patch) and vit.num_prefix_tokens == 1
    loaded = LoadedModel("vit", "small ViT", "vit", vit, Preprocess(size, size, (0.5,) * 3, (0.5,) * 3),
                         ["a", "b", "c", "d"], "tests", trained=False)
    result = analyse_attention(loaded, _image(size + 8), gradient=True)
    assert result.attention.shape == (6, 3, 1 + grid * grid, 1 + grid * grid)
    assert result.layout.grid == (grid, grid) and result.layout.patch == patch and result.layout.prefix == 1
    torch.testing.assert_close(torch.from_numpy(result.attention.sum(-1)), torch.ones(6, 3, 1 + grid * grid))
    assert result.gradient is not None and result.target_label in loaded.class_names
    with torch.no_grad():  # features: the class token after the final norm
        x = _x(3, size, batch=2)
        tokens = vit.forward_features(x)
        torch.testing.assert_close(vit.features(x), tokens[:, 0])


# --- transfer learning -------------------------------------------------------------------------------


def test_transfer_lite0_freeze_policies(lite0):
    counts = {}
    for freeze in ("all", "some", "none"):
        torch.manual_seed(0)
        module, pre = transfer_model("efficientnet_lite0", 6, freeze)
        total, trainable = count_parameters(module)
        counts[freeze] = trainable
        assert find_head(module) == ["classifier"]
        assert isinstance(module.classifier, nn.Linear) and module.classifier.out_features == 6
        assert pre == lite0.preprocess
        assert module.model_entry == {"kind": "transfer", "hub": "efficientnet_lite0", "num_classes": 6,
                                      "freeze": freeze}
        # The backbone keeps the pretrained weights.
        torch.testing.assert_close(module.conv_stem.weight, lite0.module.conv_stem.weight, rtol=0, atol=0)
        with torch.no_grad():
            assert module.eval()(_x(3, 64, batch=1)).shape == (1, 6)
        trainable_names = {n for n, p in module.named_parameters() if p.requires_grad}
        if freeze == "all":
            assert trainable_names == {"classifier.weight", "classifier.bias"}
            assert trainable == 1280 * 6 + 6
        elif freeze == "some":
            assert any(n.startswith("blocks.6.") for n in trainable_names)
            assert {"conv_head.weight", "classifier.weight"} <= trainable_names
            assert not any(n.startswith(("blocks.5.", "conv_stem")) for n in trainable_names)
        else:
            assert trainable == total
    assert counts["all"] < counts["some"] < counts["none"]


def test_train_mode_keeps_frozen_batch_norm_statistics():
    module, _ = transfer_model("efficientnet_lite0", 3, "all")
    train_mode(module)
    assert module.training and module.classifier.training
    assert not module.bn1.training and not module.blocks[6][0].bn1.training
    module, _ = transfer_model("efficientnet_lite0", 3, "none")
    assert train_mode(module).bn1.training


def test_transfer_argument_errors():
    with pytest.raises(ModelError, match="freeze must be one of all, some, none"):
        transfer_model("efficientnet_lite0", 3, "most")
    with pytest.raises(ModelError, match="unknown model"):
        transfer_model("efficientnet_lite9", 3)


# --- checkpoints -------------------------------------------------------------------------------------------

CLASSES = ["circle", "square", "triangle", "star", "cross", "heart"]


def _card(model: nn.Module, size: int = 32, channels: int = 3, **extra) -> dict:
    mean = (0.5,) * channels
    return {
        "model": model.model_entry, "classes": CLASSES,
        "preprocess": {"resize": size, "crop": size, "mean": list(mean), "std": list(mean),
                       "interpolation": "bilinear"},
        "trained": True, "title": "TinyVGG on shapes", "data": {"dataset": "shapes", "size": size},
        "loss": {"name": "ce"}, "settings": {"lr": 1e-3}, "metrics": {"val_accuracy": 0.9}, "seed": 0, **extra,
    }


def _scramble_batch_norm(model: nn.Module) -> None:
    """Non-trivial running statistics, so that a dropped buffer changes the outputs."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


@pytest.mark.parametrize(("name", "channels", "size"), [("tinyvgg", 3, 32), ("resnet", 1, 28), ("vit", 3, 64)])
def test_checkpoint_round_trip(tmp_path, name, channels, size):
    model = _build(name, channels, size, seed=3)
    _scramble_batch_norm(model)
    card = _card(model, size, channels, title=f"{name} on shapes")
    folder = save_checkpoint(model, card, tmp_path / "run")
    assert folder == tmp_path / "run"
    assert sorted(p.name for p in folder.iterdir()) == ["card.json", "model.safetensors"]
    assert read_card(folder)["format"] == "vizapp-card-1" and read_card(folder)["metrics"] == {"val_accuracy": 0.9}
    x = _x(channels, size, batch=2)
    with torch.no_grad():
        expected = model.eval()(x)
    rng = torch.random.get_rng_state()
    for path in (folder, folder / "card.json", folder / "model.safetensors"):
        loaded = load_model(str(path))
        assert loaded.title == f"{name} on shapes" and loaded.name == "run"
        assert loaded.class_names == CLASSES and loaded.trained and not loaded.module.training
        assert loaded.kind == ("vit" if name == "vit" else "cnn")
        assert loaded.preprocess == Preprocess(size, size, (0.5,) * channels, (0.5,) * channels, "bilinear")
        assert loaded.source == str(folder / "model.safetensors")
        with torch.no_grad():
            torch.testing.assert_close(loaded.module(x), expected, rtol=0, atol=0)
    assert torch.equal(rng, torch.random.get_rng_state())  # loading leaves the caller's RNG alone
    with_arch = load_model(str(folder / "model.safetensors"), arch="resnet18")  # the card wins over --arch
    assert with_arch.title == f"{name} on shapes" and "--arch resnet18 was ignored" in with_arch.notes[-1]


def test_checkpoint_opens_in_the_other_views(tmp_path):
    from vizapp.explain.attribution import attribute
    from vizapp.probing.inference import run
    from vizapp.probing.layers import layer_table

    save_checkpoint(_build("tinyvgg"), _card(_build("tinyvgg")), tmp_path)
    loaded = load_model(str(tmp_path))
    image = _image(48)
    result = run(loaded, image, ["relu1_1"])
    assert result.activations["relu1_1"].shape == (10, 30, 30)
    assert result.predictions[0].label in CLASSES
    rows = {r.name: r for r in layer_table(loaded)}
    assert rows["conv1_1"].shape == (10, 30, 30) and rows["head"].shape == (6,)
    assert attribute(loaded, image, "guided_backprop").map.shape[-2:] == (32, 32)


def test_untrained_flag_and_saving_again_replaces(tmp_path):
    model = _build("lenet", 1, 28)
    save_checkpoint(model, _card(model, 28, 1, trained=False, title="LeNet-5 before training"), tmp_path)
    loaded = load_model(str(tmp_path))
    assert not loaded.trained and loaded.title == "LeNet-5 before training"
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    save_checkpoint(model, _card(model, 28, 1), tmp_path)  # the next checkpoint of the same run
    again = load_model(str(tmp_path))
    assert again.trained and torch.equal(again.module.fc1.weight, model.fc1.weight)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["card.json", "model.safetensors"]


def test_embedding_net_checkpoint(tmp_path):
    model = _build("tinyvgg", classes=0, embed_dim=8)
    card = _card(model, classes=[])
    save_checkpoint(model, card, tmp_path)
    loaded = load_model(str(tmp_path))
    assert loaded.class_names is None and "embedding" in loaded.notes[0]
    with torch.no_grad():
        assert loaded.module(_x(3, 32, batch=1)).shape == (1, 8)


def test_transfer_checkpoint_round_trip(tmp_path, lite0):
    torch.manual_seed(0)
    module, pre = transfer_model("efficientnet_lite0", 6, "some")
    with torch.no_grad():
        module.classifier.weight.mul_(3.0)
    card = {"model": module.model_entry, "classes": CLASSES, "preprocess": Preprocess(64, 64, pre.mean, pre.std),
            "title": "Lite0 on shapes"}
    save_checkpoint(module, card, tmp_path / "lite")
    loaded = load_model(str(tmp_path / "lite"))
    assert loaded.kind == "cnn" and loaded.title == "Lite0 on shapes" and loaded.trained
    assert loaded.preprocess == Preprocess(64, 64, (0.5,) * 3, (0.5,) * 3, "bilinear")
    assert all(p.requires_grad for p in loaded.module.parameters())  # gradient views need the whole graph
    x = _x(3, 64, batch=2)
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(x), module.eval()(x), rtol=0, atol=0)


def test_save_fills_defaults_and_serialises_numbers(tmp_path):
    import numpy as np

    model = _build("mlp", 1, 28)
    card = _card(model, 28, 1, metrics={"accuracy": np.float32(0.5), "curve": np.arange(3)}, out=tmp_path)
    del card["model"]  # taken from the module
    save_checkpoint(model, card, tmp_path)
    saved = json.loads((tmp_path / "card.json").read_text())
    assert saved["model"]["name"] == "mlp" and saved["metrics"] == {"accuracy": 0.5, "curve": [0, 1, 2]}
    assert saved["out"] == str(tmp_path)


# --- damaged checkpoints -------------------------------------------------------------------------------------


@pytest.fixture
def saved(tmp_path) -> Path:
    model = _build("tinyvgg")
    return save_checkpoint(model, _card(model), tmp_path / "ckpt")


def _edit_card(folder: Path, change) -> None:
    card = json.loads((folder / "card.json").read_text())
    change(card)
    (folder / "card.json").write_text(json.dumps(card))


def test_damaged_card_is_a_clear_error(saved):
    (saved / "card.json").write_text('{"format": "vizapp-card-1", "model": ')
    with pytest.raises(ModelError, match=r"card\.json: not a readable JSON card") as info:
        load_model(str(saved))
    assert str(saved / "card.json") in str(info.value)


@pytest.mark.parametrize(("change", "message"), [
    (lambda c: c["model"].update(name="googlenet"), "unknown small model 'googlenet'"),
    (lambda c: c["model"].update(kind="sklearn"), "unknown model kind 'sklearn'"),
    (lambda c: c.update(format="other-2"), "format is 'other-2', expected 'vizapp-card-1'"),
    (lambda c: c.pop("preprocess"), "no 'preprocess' entry"),
    (lambda c: c["model"]["options"].update(layers=3), "the model entry cannot be built .*no option layers"),
    (lambda c: c.update(classes=["a", "b"]), "2 class names for a 6-way head"),
    (lambda c: c["preprocess"].update(mean=[0.5], std=[0.5]), "preprocess has 1 channels"),
    (lambda c: c["preprocess"].update(crop=64), "crops 64 px but the model was built for 32 px"),
])
def test_wrong_card_entries(saved, change, message):
    _edit_card(saved, change)
    with pytest.raises(ModelError, match=message) as info:
        load_model(str(saved / "card.json"))
    assert "card.json" in str(info.value)


def test_weights_that_do_not_match_the_card(saved):
    _edit_card(saved, lambda c: c["model"].update(num_classes=5, name="tinyvgg"))
    _edit_card(saved, lambda c: c.update(classes=CLASSES[:5]))
    with pytest.raises(ModelError) as info:
        load_model(str(saved))
    text = str(info.value)
    assert str(saved / "model.safetensors") in text and "head.weight (6, 250) vs (5, 250)" in text
    assert "do not belong to the model card.json describes (small 'tinyvgg')" in text
    _edit_card(saved, lambda c: c["model"].update(name="lenet", num_classes=6))
    _edit_card(saved, lambda c: c.update(classes=CLASSES))
    with pytest.raises(ModelError, match="missing keys: conv1.weight"):
        load_model(str(saved))


def test_missing_or_garbage_weights(saved):
    (saved / "model.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(ModelError, match="not a readable safetensors file"):
        load_model(str(saved))
    (saved / "model.safetensors").unlink()
    with pytest.raises(ModelError, match="card.json is here but model.safetensors is missing"):
        load_model(str(saved))


def test_folders_and_bare_safetensors_without_a_card(tmp_path, saved):
    with pytest.raises(ModelError, match="folder without a card.json"):
        load_model(str(tmp_path))
    bare = tmp_path / "bare"
    bare.mkdir()
    safetensors.torch.save_file(_build("tinyvgg").state_dict(), str(bare / "model.safetensors"))
    with pytest.raises(ModelError, match="bare state dict .* --arch"):
        load_model(str(bare / "model.safetensors"))
    other = saved / "other.safetensors"  # beside a card, but not the checkpoint's weights file
    safetensors.torch.save_file(_build("tinyvgg").state_dict(), str(other))
    with pytest.raises(ModelError, match="bare state dict .* --arch"):
        load_model(str(other))


def test_a_crash_mid_save_keeps_the_last_checkpoint(saved, monkeypatch):
    before = {p.name: p.read_bytes() for p in saved.iterdir()}
    model = _build("tinyvgg", seed=9)

    def crash(state, path, metadata=None):
        Path(path).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", crash)
    with pytest.raises(StorageError, match=r"model\.safetensors: cannot write \(disk full\)"):
        save_checkpoint(model, _card(model), saved)
    assert {p.name: p.read_bytes() for p in saved.iterdir()} == before  # no temp files, nothing changed
    monkeypatch.undo()
    with pytest.raises(TypeError, match="not JSON serialisable"):
        save_checkpoint(model, _card(model, metrics={"bad": object()}), saved)
    assert {p.name: p.read_bytes() for p in saved.iterdir()} == before
    with pytest.raises(ModelError, match="unknown model kind .*nothing was written"):
        save_checkpoint(model, {**_card(model), "model": {"kind": "?"}}, saved)
    assert load_model(str(saved)).title == "TinyVGG on shapes"

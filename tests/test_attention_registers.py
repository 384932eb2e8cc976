"""Register ViTs with and without a class token: which token the pictures explain.

A ViT with register tokens and global average pooling (timm's
``vit_medium_patch16_reg4_gap_256``) has 4 prefix tokens and no class token: token 0
is register 0. Its "class token" maps, rollout and gradient rollout must be read from
the mean of the patch queries (what its pooled output sees), and ``cls_index`` is -1.
With a class token (``reg_tokens=4, class_token=True``) they are token 0's row. The
expected maps are written out here with loops over the captured attention.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models import LoadedModel, Preprocess, imagenet_classes
from vizapp.cli import main
from vizapp.explain.attention import (
    AttentionResult,
    TokenLayout,
    analyse_attention,
    rollout,
    token_layout,
)

SIDE = 64  # 4 x 4 patches of 16 px: quick, and a grid where a wrong row shows


def register_vit(arch: str, seed: int = 5, **kwargs) -> torch.nn.Module:
    """A seeded 2-block timm ViT at 64 px with peaked attention (``qkv`` std 0.1)."""
    import timm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = timm.create_model(arch, pretrained=False, img_size=SIDE, depth=2, **kwargs)
        with torch.no_grad():
            for block in model.blocks:
                block.attn.qkv.weight.normal_(0.0, 0.1)
            model.head.weight.normal_(0.0, 0.1)
    return model.eval()


def as_loaded(model: torch.nn.Module, name: str) -> LoadedModel:
    return LoadedModel(name, name, "vit", model, Preprocess(resize=SIDE, crop=SIDE), imagenet_classes(),
                       source="tests")


@pytest.fixture(scope="module")
def gap_reg4():
    """timm's ViT-Medium reg4 GAP: 4 registers, average pooling, no class token."""
    model = register_vit("vit_medium_patch16_reg4_gap_256")
    assert model.num_prefix_tokens == 4 and model.num_reg_tokens == 4 and model.cls_token is None
    return as_loaded(model, "vit-medium-reg4-gap")


@pytest.fixture(scope="module")
def small_reg4():
    """ViT-Small with 4 registers and no class token (average pooling)."""
    model = register_vit("vit_small_patch16_224", reg_tokens=4, class_token=False, global_pool="avg")
    assert model.num_prefix_tokens == 4 and model.cls_token is None
    return as_loaded(model, "vit-small-reg4-avg")


@pytest.fixture(scope="module")
def small_cls_reg4():
    """ViT-Small with a class token and 4 registers (5 prefix tokens)."""
    model = register_vit("vit_small_patch16_224", reg_tokens=4, class_token=True, global_pool="token")
    assert model.num_prefix_tokens == 5 and model.cls_token is not None
    return as_loaded(model, "vit-small-cls-reg4")


def mean_patch_query(att: np.ndarray, prefix: int, side: int) -> np.ndarray:
    """``layers x heads x side x side``: each key patch's attention averaged over the patch queries, by loops."""
    layers, heads = att.shape[:2]
    n = side * side
    out = np.zeros((layers, heads, side, side))
    for layer in range(layers):
        for h in range(heads):
            for k in range(n):
                out[layer, h, k // side, k % side] = sum(float(att[layer, h, prefix + q, prefix + k])
                                                         for q in range(n)) / n
    return out


def test_layouts_come_from_the_model(gap_reg4, small_reg4, small_cls_reg4):
    tokens_gap, tokens_cls = 4 + 16, 5 + 16
    assert token_layout(gap_reg4.module, tokens_gap, SIDE) == TokenLayout(4, (4, 4), 16, class_token=False)
    assert token_layout(small_reg4.module, tokens_gap, SIDE) == TokenLayout(4, (4, 4), 16, class_token=False)
    assert token_layout(small_cls_reg4.module, tokens_cls, SIDE) == TokenLayout(5, (4, 4), 16, class_token=True)
    assert TokenLayout(4, (4, 4), 16, class_token=False).cls_index is None
    assert TokenLayout(5, (4, 4), 16).cls_index == 0  # default: token 0 is a class token
    assert TokenLayout(0, (4, 4), 16).class_token is False
    with pytest.raises(ValueError):
        TokenLayout(0, (4, 4), 16, class_token=True)
    # A ViT wrapped in another module is still asked, not guessed from the count.
    wrapped = torch.nn.Sequential(gap_reg4.module)
    assert token_layout(wrapped, tokens_gap, SIDE).class_token is False


@pytest.mark.parametrize("which", ["gap_reg4", "small_reg4"])
def test_without_a_class_token_the_maps_are_the_mean_patch_query(request, which, chelsea):
    loaded = request.getfixturevalue(which)
    r = analyse_attention(loaded, chelsea, gradient=True)
    assert r.attention.shape[-1] == 20 and r.layout == TokenLayout(4, (4, 4), 16, class_token=False)
    assert not r.has_class_token
    expected = mean_patch_query(r.attention, 4, 4)
    cls = r.cls_maps()
    assert cls.shape == (2, r.heads, 4, 4)
    np.testing.assert_allclose(cls, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(r.cls_maps(1), expected[1], rtol=1e-5, atol=1e-7)
    # Register 0's row is something else (the bug drew it).
    assert not np.allclose(cls, r.token_maps(0), rtol=1e-2)
    # Rollout and gradient rollout: the mean of the patch rows over the patch columns.
    joint = rollout(r.attention, "mean", 0.0, 4)
    np.testing.assert_allclose(r.rollout(), joint[4:, 4:].mean(axis=0).reshape(4, 4), rtol=1e-5, atol=1e-7)
    assert r.gradient is not None
    np.testing.assert_allclose(r.gradient_map(), r.gradient[4:, 4:].mean(axis=0).reshape(4, 4), rtol=1e-5,
                               atol=1e-7)


def test_with_a_class_token_the_maps_are_row_0(small_cls_reg4, chelsea):
    r = analyse_attention(small_cls_reg4, chelsea, gradient=True)
    assert r.layout == TokenLayout(5, (4, 4), 16, class_token=True) and r.has_class_token
    layers, heads = r.attention.shape[:2]
    for layer in range(layers):
        for h in range(heads):
            for k in range(16):
                assert r.cls_maps()[layer, h, k // 4, k % 4] == r.attention[layer, h, 0, 5 + k]
    joint = rollout(r.attention, "mean", 0.0, 5)
    np.testing.assert_allclose(r.rollout(), joint[0, 5:].reshape(4, 4), rtol=1e-6)
    np.testing.assert_allclose(r.gradient_map(), r.gradient[0, 5:].reshape(4, 4), rtol=1e-6)


def test_a_hand_made_result_without_a_class_token():
    rng = np.random.default_rng(0)
    att = rng.random((1, 2, 6, 6)).astype(np.float32)
    att /= att.sum(-1, keepdims=True)
    r = AttentionResult(input=None, display=None, attention=att, layers=["a"],
                        layout=TokenLayout(2, (2, 2), 16, class_token=False), distance=None)
    np.testing.assert_allclose(r.cls_maps(), mean_patch_query(att, 2, 2), rtol=1e-6)


def test_cli_cls_index_of_a_register_gap_vit(capsys, tmp_path, gap_reg4, small_cls_reg4, sample_paths, chelsea,
                                             monkeypatch):
    import models

    for loaded, cls_index, prefix in ((gap_reg4, -1, 4), (small_cls_reg4, 0, 5)):
        monkeypatch.setattr(models, "load_model", lambda *_a, _l=loaded, **_k: _l)
        out_file = tmp_path / f"{loaded.name}.npz"
        status = main(["attention", "--model", "x", "--image", str(sample_paths["chelsea"]), "--out", str(out_file),
                       "--device", "cpu"])
        out, err = capsys.readouterr()
        assert status == 0, err
        assert ("no class token" in out) == (cls_index < 0)
        with np.load(out_file) as data:
            assert int(data["cls_index"]) == cls_index and int(data["prefix_tokens"]) == prefix
            r = analyse_attention(loaded, chelsea)
            np.testing.assert_allclose(data["rollout"], r.rollout(), rtol=1e-4, atol=1e-7)



def test_gradient_rollout_of_a_zero_head_says_why(make_loaded, chelsea):
    import torchvision

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(9)
        model = torchvision.models.VisionTransformer(
            image_size=224, patch_size=32, num_layers=2, num_heads=4, hidden_dim=64, mlp_dim=128)
    assert not model.heads.head.weight.any()  # torchvision builds its head as zeros
    loaded = make_loaded(model.eval(), "zero-head-vit", [f"class{i}" for i in range(1000)])
    r = analyse_attention(loaded, chelsea, target=3, gradient=True)
    assert any(n.startswith("every attention gradient is zero for class 3 (class3)") and "classifier head" in n
               for n in r.notes), r.notes
    plain = analyse_attention(loaded, chelsea)
    assert not any("gradient" in n for n in plain.notes)


def test_pooled_token_features_of_a_register_vit(gap_reg4, small_cls_reg4, tmp_path):
    """``index``/``embed`` features of a token layer: the class token's, else the mean of the
    patch tokens (not register 0, not the registers' mean with the patches)."""
    from vizapp.collection.datasets import ImageCollection
    from vizapp.collection.indexing import build_index

    collection = ImageCollection.samples()
    for loaded, reads in ((gap_reg4, "patches"), (small_cls_reg4, "class token")):
        index = build_index(loaded, collection, [], features_only=True, feature_layer="blocks.1",
                            out=tmp_path / loaded.name, workers=0)
        features = np.asarray(index.features())
        seen = []
        handle = loaded.module.blocks[1].register_forward_hook(lambda _m, _i, out, _s=seen: _s.append(out.detach()))
        try:
            with torch.inference_mode():
                for i in range(len(collection)):
                    loaded.module(loaded.preprocess(collection.open(i))[None])
        finally:
            handle.remove()
        tokens = torch.cat(seen)
        prefix = loaded.module.num_prefix_tokens
        expected = tokens[:, prefix:].mean(dim=1) if reads == "patches" else tokens[:, 0]
        np.testing.assert_allclose(features, expected.numpy(), rtol=1e-4, atol=1e-5)

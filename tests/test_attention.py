"""Attention inside Vision Transformers: capture, rollout, gradient rollout, distance.

Every number is checked against an independent computation: the captured weights
against a softmax recomputed from the attention module's own ``qkv`` / ``in_proj``
weights, and against the module's output (``attention @ v``); rollout, gradient
rollout and attention distance against direct loops; attention gradients against
``retain_grad``, a hand-written torchvision ViT forward and finite differences.
The ViTs have seeded random weights (no pretrained ViT can be downloaded here); the
DeiTs and ViT-B/16 go through the app's loader from state-dict files.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from models import imagenet_classes, load_model
from vizapp.core.errors import ModelError, UserError
from vizapp.explain.attention import (
    FUSIONS,
    AttentionResult,
    TokenLayout,
    _graph_gradients,
    analyse_attention,
    attention_distance,
    attention_modules,
    capture_attention,
    gradient_rollout,
    rollout,
    rollout_map,
    token_layout,
)


def no_hooks(model: nn.Module) -> bool:
    return all(
        not m._forward_hooks
        and not m._forward_pre_hooks
        and not m._forward_hooks_with_kwargs
        and not m._forward_pre_hooks_with_kwargs
        for m in model.modules()
    )


def fused_state(model: nn.Module) -> list[bool]:
    return [bool(b.attn.fused_attn) for b in model.blocks]


def set_fused(model: nn.Module, values: list[bool]) -> None:
    for block, value in zip(model.blocks, values, strict=True):
        block.attn.fused_attn = value


def batch_of(loaded, *images) -> torch.Tensor:
    return torch.cat([loaded.preprocess.batch(im) for im in images])


def record_inputs(modules: dict[str, nn.Module]) -> tuple[dict[str, torch.Tensor], list]:
    """Forward pre-hooks keeping each module's first input (the query for an MHA)."""
    seen: dict[str, torch.Tensor] = {}
    handles = []
    for name, m in modules.items():

        def pre(_m, args, kwargs, _name=name):
            seen[_name] = (args[0] if args else kwargs["query"]).detach().clone()

        handles.append(m.register_forward_pre_hook(pre, with_kwargs=True))
    return seen, handles


def record_outputs(modules: dict[str, nn.Module]) -> tuple[dict[str, torch.Tensor], list]:
    seen: dict[str, torch.Tensor] = {}
    handles = []
    for name, m in modules.items():

        def post(_m, _inputs, output, _name=name):
            out = output[0] if isinstance(output, tuple) else output
            seen[_name] = out.detach().clone()

        handles.append(m.register_forward_hook(post))
    return seen, handles


def remove(handles) -> None:
    for h in handles:
        h.remove()


def timm_qkv(m: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(softmax attention, v)`` of a timm ``Attention`` recomputed from its input ``x``."""
    assert isinstance(m.q_norm, nn.Identity) and isinstance(m.k_norm, nn.Identity)
    b, n, c = x.shape
    h = m.num_heads
    q, k, v = (
        F.linear(x, m.qkv.weight, m.qkv.bias).reshape(b, n, 3, h, c // h).permute(2, 0, 3, 1, 4)
    )
    a = torch.softmax((q @ k.transpose(-2, -1)) * (c // h) ** -0.5, dim=-1)
    return a, v


def mha_qkv(m: nn.MultiheadAttention, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(softmax attention, v)`` per head of a batch-first ``nn.MultiheadAttention`` on ``x``."""
    assert m.batch_first and m._qkv_same_embed_dim
    b, t, d = x.shape
    h = m.num_heads
    q, k, v = (
        p.reshape(b, t, h, d // h).transpose(1, 2)
        for p in F.linear(x, m.in_proj_weight, m.in_proj_bias).chunk(3, dim=-1)
    )
    return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d // h), dim=-1), v


def mha_output(m: nn.MultiheadAttention, a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Heads concatenated, through ``out_proj``."""
    b, h, t, hd = v.shape
    return F.linear(
        (a @ v).transpose(1, 2).reshape(b, t, h * hd), m.out_proj.weight, m.out_proj.bias
    )


@pytest.fixture(scope="module")
def vit_b_16(tmp_path_factory):
    """torchvision's real ViT-B/16 with random weights, saved as a state dict and loaded with --arch vit_b_16."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        model = torchvision.models.vit_b_16(weights=None)
        with torch.no_grad():
            assert not model.heads.head.weight.any()  # torchvision zeroes the head
            model.heads.head.weight.normal_(0.0, 0.05)
    path = tmp_path_factory.mktemp("vit_b_16") / "vit_b_16_random.pth"
    torch.save(model.state_dict(), path)
    del model
    loaded = load_model(str(path), arch="vit_b_16")
    yield loaded
    path.unlink()


# --- finding the modules and the token layout ---------------------------------------------


@pytest.mark.parametrize(
    "which, prefix, layers, heads",
    [
        ("deit_tiny", 1, 12, 3),
        ("deit_distilled", 2, 12, 3),
        ("registers", 5, 2, 3),
    ],
)
def test_timm_layouts(request, which, prefix, layers, heads):
    loaded = request.getfixturevalue(which)
    found = attention_modules(loaded.module)
    assert list(found) == [f"blocks.{i}.attn" for i in range(layers)]
    assert all(m is loaded.module.blocks[i].attn for i, m in enumerate(found.values()))
    tokens = prefix + 14 * 14
    assert token_layout(loaded.module, tokens, 224) == TokenLayout(prefix, (14, 14), 16)
    assert TokenLayout(prefix, (14, 14), 16).tokens == tokens


def test_torchvision_layout(tv_vit):
    found = attention_modules(tv_vit.module)
    assert list(found) == [
        "encoder.layers.encoder_layer_0.self_attention",
        "encoder.layers.encoder_layer_1.self_attention",
    ]
    assert all(isinstance(m, nn.MultiheadAttention) for m in found.values())
    assert token_layout(tv_vit.module, 50, 224) == TokenLayout(1, (7, 7), 32)


def test_layout_of_an_unknown_family():
    plain = nn.Identity()
    assert token_layout(plain, 49, 224) == TokenLayout(0, (7, 7), 32)
    assert token_layout(plain, 50, 224) == TokenLayout(1, (7, 7), 32)
    assert token_layout(plain, 201, 224) == TokenLayout(5, (14, 14), 16)
    with pytest.raises(ModelError, match="square"):
        token_layout(torchvision.models.VisionTransformer(224, 32, 1, 1, 8, 8), 52, 224)


def test_cnn_has_no_attention(lite0, chelsea):
    assert attention_modules(lite0.module) == {}
    with pytest.raises(UserError, match="no (self-)?attention layers") as info:
        analyse_attention(lite0, chelsea)
    assert "\n" not in str(info.value) and lite0.title in str(info.value)
    assert no_hooks(lite0.module)


# --- capture reproduces the modules' own computation ------------------------------------------


@pytest.mark.parametrize("which", ["deit_tiny", "deit_distilled", "registers"])
def test_timm_capture_reproduces_attention_output(request, which, chelsea, coffee):
    loaded = request.getfixturevalue(which)
    model = loaded.module
    attn = {f"blocks.{i}": b.attn for i, b in enumerate(model.blocks)}
    original = fused_state(model)
    x = batch_of(loaded, chelsea, coffee)
    with torch.no_grad():
        plain = model(x)
    inputs, h1 = record_inputs(attn)
    proj_in, h2 = record_inputs({n: m.proj for n, m in attn.items()})
    mixed = [
        i % 2 == 0 for i in range(len(attn))
    ]  # so that "restored" means each block's own value
    try:
        set_fused(model, mixed)
        with torch.no_grad(), capture_attention(model) as store:
            assert not any(m.fused_attn for m in attn.values())
            assert all(len(m.attn_drop._forward_hooks) == 1 for m in attn.values())
            out = model(x)
        assert fused_state(model) == mixed
    finally:
        remove(h1 + h2)
        set_fused(model, original)
    assert no_hooks(model)
    torch.testing.assert_close(out, plain, rtol=1e-4, atol=1e-5)

    t = model.num_prefix_tokens + 196
    assert list(store) == [f"{n}.attn" for n in attn]
    for name, m in attn.items():
        a = store[f"{name}.attn"]
        assert a.shape == (2, 3, t, t) and a.dtype == torch.float32
        torch.testing.assert_close(a.sum(-1), torch.ones(2, 3, t), rtol=0, atol=1e-5)
        expected, v = timm_qkv(m, inputs[name])
        torch.testing.assert_close(a, expected, rtol=1e-4, atol=1e-5, msg=name)
        b, n, c = inputs[name].shape
        torch.testing.assert_close(
            (a @ v).transpose(1, 2).reshape(b, n, c), proj_in[name], rtol=1e-4, atol=1e-5, msg=name
        )
    # Two images, two different attention patterns.
    assert not torch.allclose(store["blocks.0.attn"][0], store["blocks.0.attn"][1], atol=1e-3)


@pytest.mark.parametrize("grad", [False, True], ids=["inference", "grad"])
def test_mha_capture_reproduces_output(tv_vit, chelsea, coffee, grad):
    model = tv_vit.module
    mhas = attention_modules(model)
    x = batch_of(tv_vit, chelsea, coffee)
    with torch.inference_mode():
        plain = model(x)
    inputs, h1 = record_inputs(mhas)
    outputs, h2 = record_outputs(mhas)
    try:
        with torch.set_grad_enabled(grad), capture_attention(model, grad=grad) as store:
            if grad:
                out = model(x)
                assert set(store.graph) == set(mhas)
                for name, g in store.graph.items():  # the softmax the model multiplied with V
                    assert g.requires_grad and g.shape == (2 * 4, 50, 50)
                    torch.testing.assert_close(g.detach().reshape(2, 4, 50, 50), store[name])
            else:
                with torch.inference_mode():
                    out = model(x)
                assert store.graph == {}
    finally:
        remove(h1 + h2)
    assert no_hooks(model)
    torch.testing.assert_close(out.detach(), plain, rtol=1e-4, atol=1e-5)
    assert list(store) == list(mhas)
    for name, m in mhas.items():
        a = store[name]
        assert a.shape == (2, 4, 50, 50) and a.dtype == torch.float32
        torch.testing.assert_close(a.sum(-1), torch.ones(2, 4, 50), rtol=0, atol=1e-5)
        with torch.no_grad():
            expected, v = mha_qkv(m, inputs[name])
            torch.testing.assert_close(a, expected, rtol=1e-4, atol=1e-5, msg=name)
            torch.testing.assert_close(
                mha_output(m, a, v), outputs[name], rtol=1e-4, atol=1e-5, msg=name
            )


def test_capture_cleans_up_after_an_error(deit_tiny, tv_vit):
    timm_model, tv_model = deit_tiny.module, tv_vit.module
    original = fused_state(timm_model)
    with pytest.raises(RuntimeError, match="boom"):
        with capture_attention(timm_model), capture_attention(tv_model):
            assert not timm_model.blocks[0].attn.fused_attn
            mha = tv_model.encoder.layers[0].self_attention
            assert len(mha._forward_pre_hooks) == 1 and len(mha._forward_hooks) == 1
            raise RuntimeError("boom")
    assert no_hooks(timm_model) and no_hooks(tv_model)
    assert fused_state(timm_model) == original


def test_vit_b_16_through_the_loader(vit_b_16, chelsea):
    """The real torchvision family: 12 layers x 12 heads, 197 tokens, loaded from a state dict."""
    model = vit_b_16.module
    assert vit_b_16.preprocess.crop == 224 and vit_b_16.class_names == imagenet_classes()
    mhas = attention_modules(model)
    assert len(mhas) == 12
    x = vit_b_16.preprocess.batch(chelsea)
    inputs, h1 = record_inputs(mhas)
    outputs, h2 = record_outputs(mhas)
    try:
        with torch.inference_mode(), capture_attention(model) as store:
            logits = model(x)
    finally:
        remove(h1 + h2)
    assert no_hooks(model)
    for name, m in mhas.items():
        with torch.no_grad():
            expected, v = mha_qkv(m, inputs[name])
            torch.testing.assert_close(store[name], expected, rtol=1e-4, atol=1e-5, msg=name)
            torch.testing.assert_close(
                mha_output(m, store[name], v), outputs[name], rtol=1e-4, atol=1e-4, msg=name
            )

    result = analyse_attention(vit_b_16, chelsea)
    assert result.attention.shape == (12, 12, 197, 197)
    assert result.layout == TokenLayout(1, (14, 14), 16)
    np.testing.assert_allclose(
        result.attention, torch.stack([store[n][0] for n in mhas]).numpy(), atol=1e-5
    )
    top = torch.topk(torch.softmax(logits[0], 0), 5)
    assert [p.index for p in result.predictions] == top.indices.tolist()
    np.testing.assert_allclose([p.prob for p in result.predictions], top.values.numpy(), rtol=1e-4)
    assert result.rollout().shape == (14, 14) and result.distance.shape == (12, 12)


# --- rollout, gradient rollout and distance against direct loops -------------------------------


def fixed_attention(
    prefix: int, layers: int = 3, heads: int = 4, side: int = 3, seed: int = 0
) -> np.ndarray:
    """Peaked softmax rows whose prefix columns hold some of the smallest weights."""
    t = prefix + side * side
    rng = np.random.default_rng(seed)
    a = np.exp(2.0 * rng.normal(size=(layers, heads, t, t)))
    a[..., :prefix] *= 0.01
    return (a / a.sum(-1, keepdims=True)).astype(np.float32)


def direct_rollout(att: np.ndarray, fusion: str, discard: float, prefix: int) -> np.ndarray:
    layers, heads, t, _ = att.shape
    fused = []
    for layer in range(layers):
        w = np.zeros((t, t))
        for i in range(t):
            for j in range(t):
                values = [float(att[layer, h, i, j]) for h in range(heads)]
                w[i, j] = {"mean": sum(values) / heads, "max": max(values), "min": min(values)}[
                    fusion
                ]
        entries = sorted((w[i, j], i, j) for i in range(t) for j in range(prefix, t))
        for _value, i, j in entries[: int(len(entries) * discard)]:
            w[i, j] = 0.0
        a = np.zeros((t, t))
        for i in range(t):
            row = [(w[i, j] + (i == j)) / 2 for j in range(t)]
            a[i] = np.array(row) / sum(row)
        fused.append(a)
    joint = fused[0]
    for a in fused[1:]:
        joint = a @ joint
    return joint


@pytest.mark.parametrize("prefix", [1, 2])
@pytest.mark.parametrize("discard", [0.0, 0.5])
@pytest.mark.parametrize("fusion", FUSIONS)
def test_rollout_equals_direct_loop(fusion, discard, prefix):
    att = fixed_attention(prefix)
    got = rollout(att, fusion, discard, prefix)
    expected = direct_rollout(att, fusion, discard, prefix)
    assert got.shape == (prefix + 9, prefix + 9) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-5)
    layout = TokenLayout(prefix, (3, 3), 16)
    np.testing.assert_array_equal(rollout_map(got, layout), got[0, prefix:].reshape(3, 3))
    np.testing.assert_array_equal(
        rollout_map(got, layout, token=prefix + 4), got[prefix + 4, prefix:].reshape(3, 3)
    )
    result = AttentionResult(
        input=None, display=None, attention=att, layers=[], layout=layout, distance=None
    )
    np.testing.assert_allclose(
        result.rollout(fusion, discard), expected[0, prefix:].reshape(3, 3), rtol=1e-5, atol=1e-7
    )


def test_rollout_fusions_and_discard_matter():
    att = fixed_attention(1)
    maps = {(f, d): rollout(att, f, d, 1) for f in FUSIONS for d in (0.0, 0.5)}
    for a in maps:
        for b in maps:
            if a < b:
                assert not np.allclose(maps[a], maps[b], atol=1e-4), (a, b)
    with pytest.raises(ValueError, match="fusion"):
        rollout(att, "median")
    with pytest.raises(ValueError, match="discard"):
        rollout(att, "mean", 1.0)


def test_rollout_of_a_single_identity_layer_is_the_identity():
    eye = np.eye(10, dtype=np.float32)[None, None].repeat(2, axis=1)
    np.testing.assert_allclose(rollout(eye), np.eye(10), atol=1e-7)


def test_attention_result_maps():
    att = fixed_attention(2, layers=2, heads=3)
    layout = TokenLayout(2, (3, 3), 16)
    result = AttentionResult(
        input=None, display=None, attention=att, layers=["a", "b"], layout=layout, distance=None
    )
    assert result.heads == 3
    assert result.patch_token(1, 2) == 2 + 1 * 3 + 2
    cls = result.cls_maps()
    tok = result.token_maps(result.patch_token(1, 2))
    assert cls.shape == tok.shape == (2, 3, 3, 3)
    for layer in range(2):
        for h in range(3):
            for r in range(3):
                for c in range(3):
                    assert cls[layer, h, r, c] == att[layer, h, 0, 2 + 3 * r + c]
                    assert tok[layer, h, r, c] == att[layer, h, 7, 2 + 3 * r + c]
    assert result.gradient_map() is None


def test_gradient_rollout_equals_direct_loop():
    rng = np.random.default_rng(1)
    att = fixed_attention(1, layers=3, heads=4, side=3)
    grads = rng.normal(size=att.shape).astype(np.float32)
    layers, heads, t, _ = att.shape
    r = np.eye(t)
    for layer in range(layers):
        bar = np.zeros((t, t))
        for h in range(heads):
            for i in range(t):
                for j in range(t):
                    bar[i, j] += (
                        max(float(grads[layer, h, i, j]) * float(att[layer, h, i, j]), 0.0) / heads
                    )
        r = r + bar @ r
    got = gradient_rollout(att, grads)
    assert got.shape == (t, t) and got.dtype == np.float32
    np.testing.assert_allclose(got, r, rtol=1e-5, atol=1e-7)
    # Negative gradients everywhere: nothing passes the clamp, the relevance is the identity.
    np.testing.assert_array_equal(gradient_rollout(att, -np.abs(grads) - 1e-3), np.eye(t))


@pytest.mark.parametrize("prefix", [1, 2])
def test_attention_distance_equals_double_loop(prefix):
    att = fixed_attention(prefix, layers=2, heads=3)
    layout = TokenLayout(prefix, (3, 3), 16)
    expected = np.zeros((2, 3))
    for layer in range(2):
        for h in range(3):
            total = 0.0
            for q in range(9):
                qr, qc = divmod(q, 3)
                # Attention to prefix tokens has no place: each query's patch weights are renormalised.
                mass = sum(float(att[layer, h, prefix + q, prefix + k]) for k in range(9))
                for k in range(9):
                    kr, kc = divmod(k, 3)
                    w = att[layer, h, prefix + q, prefix + k] / mass
                    total += w * math.hypot(qr - kr, qc - kc) * 16
            expected[layer, h] = total / 9
    got = attention_distance(att, layout)
    assert got.shape == (2, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_attention_distance_by_hand():
    layout = TokenLayout(1, (2, 2), 10)
    # Every patch attends a quarter to each of the four patches (the class token column is ignored).
    uniform = np.full((1, 1, 5, 5), 0.25, np.float32)
    # Each query: distances 0, 10, 10, 10*sqrt(2) to the four patches, a quarter each.
    np.testing.assert_allclose(
        attention_distance(uniform, layout), [[(20 + 10 * math.sqrt(2)) / 4]], rtol=1e-6
    )
    self_only = np.eye(5, dtype=np.float32)[None, None]
    np.testing.assert_array_equal(attention_distance(self_only, layout), [[0.0]])
    # A head giving 90% to the class token and the rest uniformly is as global as a uniform one.
    mostly_cls = np.full((1, 1, 5, 5), 0.025, np.float32)
    mostly_cls[..., 0] = 0.9
    np.testing.assert_allclose(attention_distance(mostly_cls, layout), attention_distance(uniform, layout), rtol=1e-6)


def test_a_vit_without_class_token_is_read_from_the_mean_patch():
    layout = TokenLayout(0, (2, 2), 16)
    joint = np.arange(16, dtype=np.float32).reshape(4, 4)
    np.testing.assert_allclose(rollout_map(joint, layout), joint.mean(axis=0).reshape(2, 2))
    np.testing.assert_allclose(rollout_map(joint, layout, token=2), joint[2].reshape(2, 2))


# --- the analysis job ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def deit_result(deit_tiny, chelsea):
    return analyse_attention(deit_tiny, chelsea)


def test_analyse_attention_on_timm(deit_tiny, deit_result, chelsea):
    r = deit_result
    model = deit_tiny.module
    assert r.attention.shape == (12, 3, 197, 197) and r.attention.dtype == np.float32
    assert r.layers == [f"blocks.{i}.attn" for i in range(12)]
    assert r.layout == TokenLayout(1, (14, 14), 16) and r.heads == 3
    np.testing.assert_array_equal(r.input, deit_tiny.preprocess.batch(chelsea).numpy())
    assert r.display.shape == (224, 224, 3) and r.display.dtype == np.uint8
    np.testing.assert_allclose(r.attention.sum(-1), 1.0, atol=1e-5)
    # The weights, recomputed from every block's qkv on its input in a plain (fused) forward.
    inputs, handles = record_inputs({b: blk.attn for b, blk in enumerate(model.blocks)})
    try:
        with torch.no_grad():
            logits = model(torch.from_numpy(r.input))
            expected = torch.cat(
                [timm_qkv(blk.attn, inputs[b])[0] for b, blk in enumerate(model.blocks)]
            ).numpy()
    finally:
        remove(handles)
    np.testing.assert_allclose(r.attention, expected, rtol=1e-4, atol=1e-5)
    # Predictions are the model's top five.
    top = torch.topk(torch.softmax(logits[0], 0), 5)
    assert [p.index for p in r.predictions] == top.indices.tolist()
    assert [p.label for p in r.predictions] == [imagenet_classes()[i] for i in top.indices]
    np.testing.assert_allclose([p.prob for p in r.predictions], top.values.numpy(), rtol=1e-4)
    # Distance: every query patch's attention-weighted distance to every key patch, averaged.
    rows, cols = np.indices((14, 14)).reshape(2, -1)
    dist = np.hypot(rows[:, None] - rows[None], cols[:, None] - cols[None]) * 16
    np.testing.assert_allclose(
        r.distance, (r.attention[..., 1:, 1:] / r.attention[..., 1:, 1:].sum(-1, keepdims=True) * dist)
        .sum(-1).mean(-1), rtol=1e-4
    )
    assert r.gradient is None and r.target is None and r.gradient_map() is None
    assert r.trained and r.notes == []
    assert r.rollout().shape == (14, 14)
    np.testing.assert_allclose(r.cls_maps()[3, 1], r.attention[3, 1, 0, 1:].reshape(14, 14))
    assert no_hooks(model)


def test_analyse_attention_layouts(deit_distilled, registers, tv_vit, chelsea):
    for loaded, shape, layout in [
        (deit_distilled, (12, 3, 198, 198), TokenLayout(2, (14, 14), 16)),
        (registers, (2, 3, 201, 201), TokenLayout(5, (14, 14), 16)),
        (tv_vit, (2, 4, 50, 50), TokenLayout(1, (7, 7), 32)),
    ]:
        r = analyse_attention(loaded, chelsea)
        assert r.attention.shape == shape, loaded.name
        assert r.layout == layout, loaded.name
        assert len(r.predictions) == 5
        p = layout.prefix
        np.testing.assert_array_equal(
            r.rollout("max", 0.2), rollout(r.attention, "max", 0.2, p)[0, p:].reshape(layout.grid)
        )
        assert no_hooks(loaded.module)


def test_analyse_attention_restores_training_mode(tv_vit, chelsea):
    model = tv_vit.module
    model.train()
    try:
        analyse_attention(tv_vit, chelsea, gradient=True)
        assert model.training and all(m.training for m in model.modules())
    finally:
        model.eval()
    assert all(p.grad is None for p in model.parameters())


def timm_attention_grads(model: nn.Module, x: torch.Tensor, target: int) -> np.ndarray:
    """d logit / d attention by ``retain_grad`` on every block's softmax, ``L x heads x T x T``."""
    kept: dict[int, torch.Tensor] = {}
    handles = []
    original = fused_state(model)
    for i, block in enumerate(model.blocks):
        block.attn.fused_attn = False

        def keep(_m, _inputs, output, _i=i):
            output.retain_grad()
            kept[_i] = output

        handles.append(block.attn.attn_drop.register_forward_hook(keep))
    try:
        with torch.enable_grad():
            model(x)[0, target].backward()
    finally:
        remove(handles)
        set_fused(model, original)
        model.zero_grad(set_to_none=True)
    return torch.stack([kept[i].grad[0] for i in range(len(model.blocks))]).numpy()


def test_timm_attention_gradients_match_retain_grad(deit_tiny, chelsea):
    model = deit_tiny.module
    x = deit_tiny.preprocess.batch(chelsea)
    target = 281
    with torch.enable_grad(), capture_attention(model, grad=True) as store:
        out = model(x)
        grads = _graph_gradients(store, out[0, target])
    assert list(grads) == [f"blocks.{i}.attn" for i in range(12)]
    got = torch.stack([grads[n][0] for n in grads]).numpy()
    expected = timm_attention_grads(model, x, target)
    assert got.shape == (12, 3, 197, 197)
    assert np.abs(expected).max() > 1e-4
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-7 * np.abs(expected).max())
    assert all(p.grad is None for p in model.parameters())


def test_timm_attention_gradients_match_finite_differences(registers, chelsea):
    """Central differences in float64 on the 2-block register ViT: bump one attention weight, rerun."""
    model = copy.deepcopy(registers.module).double()
    x = registers.preprocess.batch(chelsea).double()
    with torch.enable_grad(), capture_attention(model, grad=True) as store:
        out = model(x)
        target = int(out[0].argmax())
        grads = _graph_gradients(store, out[0, target])
    for block in model.blocks:
        block.attn.fused_attn = False

    def score(layer: int, index: tuple[int, int, int], eps: float) -> float:
        def bump(_m, _inputs, output):
            output = output.clone()
            output[(0, *index)] += eps
            return output

        handle = model.blocks[layer].attn.attn_drop.register_forward_hook(bump)
        try:
            with torch.no_grad():
                return float(model(x)[0, target])
        finally:
            handle.remove()

    rng = np.random.default_rng(0)
    for layer in (0, 1):
        g = grads[f"blocks.{layer}.attn"][0].numpy()
        assert g.shape == (3, 201, 201)
        # Entries that matter (in the last layer only the class token's row does).
        sizable = np.argwhere(np.abs(g) > 1e-2 * np.abs(g).max())
        picks = [
            np.unravel_index(np.abs(g).argmax(), g.shape),
            *map(tuple, sizable[rng.integers(len(sizable), size=2)]),
        ]
        for index in picks:
            eps = 1e-4
            fd = (score(layer, index, eps) - score(layer, index, -eps)) / (2 * eps)
            assert fd == pytest.approx(
                float(g[index]), rel=1e-4, abs=1e-6 * float(np.abs(g).max())
            ), (layer, index)
    # In the last block only the class token's row reaches the logits.
    assert not np.any(grads["blocks.1.attn"][0, :, 1:].numpy())


def torchvision_vit_by_hand(model, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """torchvision's VisionTransformer forward written out; every softmax keeps its gradient."""
    n = x.shape[0]
    h = model.conv_proj(x).flatten(2).transpose(1, 2)
    h = torch.cat([model.class_token.expand(n, -1, -1), h], dim=1) + model.encoder.pos_embedding
    attentions = []
    for layer in model.encoder.layers:
        y = layer.ln_1(h)
        a, v = mha_qkv(layer.self_attention, y)
        a.retain_grad()
        attentions.append(a)
        h = h + mha_output(layer.self_attention, a, v)
        h = h + layer.mlp(layer.ln_2(h))
    return model.heads(model.encoder.ln(h)[:, 0]), attentions


def test_torchvision_attention_gradients_match_a_forward_by_hand(tv_vit, chelsea):
    model = tv_vit.module
    x = tv_vit.preprocess.batch(chelsea)
    with torch.enable_grad():
        logits, attentions = torchvision_vit_by_hand(model, x)
        with torch.no_grad():
            torch.testing.assert_close(logits, model(x), rtol=1e-4, atol=1e-5)
        target = int(logits[0].argsort()[-2])  # not the top class
        logits[0, target].backward()
    model.zero_grad(set_to_none=True)
    expected_att = torch.stack([a[0].detach() for a in attentions]).numpy()
    expected_grad = torch.stack([a.grad[0] for a in attentions]).numpy()
    assert np.abs(expected_grad).max() > 1e-4

    with torch.enable_grad(), capture_attention(model, grad=True) as store:
        out = model(x)
        grads = _graph_gradients(store, out[0, target])
    got = torch.stack([g[0] for g in grads.values()]).numpy()
    np.testing.assert_allclose(
        got, expected_grad, rtol=1e-4, atol=1e-6 * np.abs(expected_grad).max()
    )

    r = analyse_attention(tv_vit, chelsea, target=target, gradient=True)
    assert r.target == target and r.target_label == imagenet_classes()[target]
    np.testing.assert_allclose(r.attention, expected_att, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(
        r.gradient, gradient_rollout(expected_att, expected_grad), rtol=1e-4, atol=1e-6
    )
    assert r.gradient_map().shape == (7, 7)
    assert all(p.grad is None for p in model.parameters())


def test_gradient_rollout_follows_the_target(deit_tiny, deit_result, chelsea):
    model = deit_tiny.module
    x = deit_tiny.preprocess.batch(chelsea)
    top = analyse_attention(deit_tiny, chelsea, gradient=True)
    with torch.no_grad():
        logits = model(x)[0]
    assert top.target == int(logits.argmax()) and top.target_label == imagenet_classes()[top.target]
    np.testing.assert_allclose(top.attention, deit_result.attention, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(
        top.gradient,
        gradient_rollout(top.attention, timm_attention_grads(model, x, top.target)),
        rtol=1e-4,
        atol=1e-6,
    )
    assert top.gradient.shape == (197, 197) and top.gradient_map().shape == (14, 14)

    other = analyse_attention(deit_tiny, chelsea, target="espresso", gradient=True)
    assert other.target == 967 and other.target_label == "espresso"
    np.testing.assert_allclose(
        other.gradient,
        gradient_rollout(other.attention, timm_attention_grads(model, x, 967)),
        rtol=1e-4,
        atol=1e-6,
    )
    assert not np.allclose(other.gradient_map(), top.gradient_map(), rtol=1e-2, atol=1e-6)
    assert no_hooks(model) and all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("target", [1000, -1, "5000", "definitely not a class"])
def test_bad_target_names_the_range(deit_tiny, chelsea, target):
    model = deit_tiny.module
    original = fused_state(model)
    with pytest.raises(UserError, match="0-999") as info:
        analyse_attention(deit_tiny, chelsea, target=target, gradient=True)
    assert "\n" not in str(info.value)
    assert no_hooks(model) and fused_state(model) == original and not model.training


def test_vit_without_a_classifier_head(make_timm_vit, make_loaded, chelsea):
    features = make_loaded(
        make_timm_vit("deit_tiny_patch16_224", num_classes=0, depth=2), "deit-features"
    )
    r = analyse_attention(features, chelsea)
    assert r.attention.shape == (2, 3, 197, 197) and r.predictions == []
    # Asked for a gradient-weighted rollout: the plain attention, and a note saying why not.
    g = analyse_attention(features, chelsea, gradient=True)
    assert g.gradient is None and g.target is None
    assert any("no classifier head" in n for n in g.notes)
    np.testing.assert_allclose(g.attention, r.attention, atol=1e-6)
    assert no_hooks(features.module)


def test_untrained_registry_vit_says_so(chelsea):
    loaded = load_model("vit_tiny_untrained")
    assert loaded.trained is False
    r = analyse_attention(loaded, chelsea)
    assert r.attention.shape == (12, 3, 197, 197) and r.layout == TokenLayout(1, (14, 14), 16)
    assert r.trained is False and any("UNTRAINED" in n for n in r.notes)

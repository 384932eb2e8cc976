"""Attention inside Vision Transformers: capture, rollout, attention distance.

Capture uses the model's own computation, never a re-implementation:

- torchvision ``MultiheadAttention`` (``vit_b_16`` and family) is called with
  ``need_weights=False``; a forward pre-hook (``with_kwargs=True``) asks for
  ``need_weights=True, average_attn_weights=False`` and a forward hook keeps the
  per-head weights it then returns.
- timm ``Attention`` (ViT, DeiT, DINO) runs fused SDPA, which exposes nothing;
  ``fused_attn`` is switched off on the probed modules for the pass and the output
  of ``attn_drop`` (the softmaxed attention) is kept.

Both give the same outputs as the unprobed model (up to float rounding of SDPA vs
the explicit softmax). Everything is restored when the ``with`` block exits.

Rollout follows Abnar & Zuidema (2020); gradient-weighted rollout follows Chefer,
Gur & Wolf (ICCV 2021, "Generic attention-model explainability"); mean attention
distance is the ViT paper's Figure 7 measure (Dosovitskiy et al. 2021).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from vizapp.core.errors import ModelError, OutOfMemory, UserError
from vizapp.core.jobs import CancelToken, Progress, no_progress

__all__ = [
    "FUSIONS",
    "AttentionResult",
    "TokenLayout",
    "analyse_attention",
    "attention_distance",
    "attention_modules",
    "capture_attention",
    "gradient_rollout",
    "model_tokens",
    "rollout",
    "rollout_map",
    "token_layout",
]

FUSIONS = ("mean", "max", "min")


# --- finding the attention modules ---------------------------------------------------


def _is_timm_attention(module: nn.Module) -> bool:
    """timm's global self-attention (ViT, DeiT, DINO, EVA-like); not Swin's windowed attention."""
    return all(hasattr(module, a) for a in ("qkv", "num_heads", "attn_drop", "fused_attn")) and not hasattr(
        module, "window_size")


def attention_modules(model: nn.Module) -> dict[str, nn.Module]:
    """``{name: module}`` of every self-attention module, in data-flow (block) order."""
    if isinstance(model, torch.jit.ScriptModule):
        raise ModelError("a TorchScript model runs as a whole; attention needs the eager model (state dict + --arch)")
    return {
        name: m for name, m in model.named_modules()
        if isinstance(m, nn.MultiheadAttention) or _is_timm_attention(m)
    }


def _require_attention(loaded) -> dict[str, nn.Module]:
    found = attention_modules(loaded.module)
    windowed = [n for n, m in loaded.module.named_modules() if hasattr(m, "window_size") and hasattr(m, "qkv")]
    if not found and windowed:
        raise UserError(f"{loaded.title} uses windowed attention (Swin-like): each head sees one window, not the "
                        "image, so there is no image-wide attention map to draw")
    if not found:
        from vizapp.explain.suggestions import suggestion_text

        models = suggestion_text("vit")  # from the registry: what loads here first
        raise UserError(
            f"{loaded.title} has no self-attention layers (it is a CNN); attention maps need a Vision "
            f"Transformer{': open ' + models if models else ''}"
        )
    return found


@dataclass(frozen=True)
class TokenLayout:
    """How a ViT's tokens sit on the image.

    Attributes
    ----------
    prefix : int
        Tokens before the patches: the class token (index 0) if there is one, then
        distillation and register tokens (DeiT-distilled has 2, ViT-reg4 with a class
        token 5, ViT-reg4-GAP 4 and no class token).
    grid : (int, int)
        Patch rows and columns.
    patch : int
        Pixels per patch side at the model's input size.
    class_token : bool
        Whether token 0 is a class token. ``None`` (the default) means "if there is any
        prefix token"; :func:`token_layout` sets it from the model itself, because a
        register ViT with global average pooling has prefix tokens and no class token.
    """

    prefix: int
    grid: tuple[int, int]
    patch: int
    class_token: bool | None = None

    def __post_init__(self) -> None:
        if self.class_token is None:
            object.__setattr__(self, "class_token", self.prefix > 0)
        elif self.class_token and self.prefix < 1:
            raise ValueError("a class token is a prefix token: prefix must be at least 1")

    @property
    def tokens(self) -> int:
        return self.prefix + self.grid[0] * self.grid[1]

    @property
    def cls_index(self) -> int | None:
        """The class token's index (0), or ``None`` for a ViT without one."""
        return 0 if self.class_token else None


def model_tokens(module: nn.Module) -> tuple[int, bool] | None:
    """``(prefix tokens, has a class token)`` as the model itself declares them, or ``None``.

    timm: ``num_prefix_tokens`` and ``cls_token`` (``None`` without a class token;
    registers are counted in ``num_reg_tokens``). torchvision's ``VisionTransformer``
    always has its ``class_token``. The model itself is asked first, then its
    sub-modules (a ViT wrapped in another module).
    """
    for m in module.modules():
        prefix = getattr(m, "num_prefix_tokens", None)
        if prefix is not None:
            if hasattr(m, "cls_token"):
                has_cls = m.cls_token is not None
            elif hasattr(m, "has_class_token"):
                has_cls = bool(m.has_class_token)
            else:
                others = int(getattr(m, "num_reg_tokens", 0) or 0) + int(bool(getattr(m, "dist_token", None) is not None))
                has_cls = int(prefix) - others > 0
            return int(prefix), has_cls
        if isinstance(getattr(m, "class_token", None), torch.Tensor) and hasattr(m, "encoder"):
            return 1, True  # torchvision
    return None


def token_layout(module: nn.Module, tokens: int, input_size: int) -> TokenLayout:
    """The layout for ``tokens`` tokens from a ``input_size`` square input."""
    declared = model_tokens(module)
    if declared is not None:
        prefix, has_cls = declared
    else:  # unknown family: what the feature maps take it to be, token 0 a class token
        from vizapp.probing.mosaic import token_prefix

        prefix = token_prefix(tokens) or 0
        has_cls = prefix > 0
    n = tokens - int(prefix)
    side = math.isqrt(max(n, 0))
    if n <= 0 or side * side != n:
        raise ModelError(f"{tokens} tokens with {prefix} prefix tokens do not form a square patch grid")
    return TokenLayout(int(prefix), (side, side), max(1, input_size // side), has_cls and prefix > 0)


# --- capture -------------------------------------------------------------------------


class AttentionStore(dict):
    """``{attention module name: B x heads x T x T tensor}`` filled during a forward pass.

    With ``grad=True`` the tensors stay in the autograd graph (``graph``), so the
    gradient of a class score with respect to each attention map can be taken.
    """

    def __init__(self) -> None:
        super().__init__()
        self.graph: dict[str, torch.Tensor] = {}


@contextmanager
def capture_attention(model: nn.Module, grad: bool = False) -> Iterator[AttentionStore]:
    """Within the block, every forward pass stores each attention module's weights.

    The stored tensors are detached ``float32`` copies (``B x heads x T x T``). With
    ``grad=True`` the store's ``graph`` also holds the tensors the model multiplied
    with the values, for :func:`torch.autograd.grad`. Hooks are removed and
    ``fused_attn`` restored on exit, even on error.
    """
    modules = attention_modules(model)
    store = AttentionStore()
    handles, fused = [], {}
    try:
        for name, m in modules.items():
            if isinstance(m, nn.MultiheadAttention):

                def pre(_m, args, kwargs):
                    return args, {**kwargs, "need_weights": True, "average_attn_weights": False}

                def post(_m, _args, _kwargs, output, _name=name):
                    weights = output[1]
                    store[_name] = weights.detach().float().clone()
                    if grad:
                        # MHA returns a view of the softmax it multiplied with V; the
                        # gradient flows through that base tensor, not the view.
                        base = weights._base if weights._base is not None else weights
                        store.graph[_name] = base

                handles.append(m.register_forward_pre_hook(pre, with_kwargs=True))
                handles.append(m.register_forward_hook(post, with_kwargs=True))
            else:
                fused[name] = m.fused_attn
                m.fused_attn = False

                def keep(_m, _inputs, output, _name=name):
                    store[_name] = output.detach().float().clone()
                    if grad:
                        store.graph[_name] = output

                handles.append(m.attn_drop.register_forward_hook(keep))
        yield store
    finally:
        for h in handles:
            h.remove()
        for name, value in fused.items():
            modules[name].fused_attn = value


def _graph_gradients(store: AttentionStore, score: torch.Tensor) -> dict[str, torch.Tensor]:
    """d score / d attention for every captured module, shaped like the stored maps."""
    names = [n for n in store if n in store.graph]
    grads = torch.autograd.grad(score, [store.graph[n] for n in names], allow_unused=True)
    out = {}
    for n, g in zip(names, grads, strict=True):
        shape = store[n].shape
        out[n] = torch.zeros(shape) if g is None else g.detach().float().reshape(shape).cpu()
    return out


# --- rollout and distance (plain numpy, fast enough for the GUI thread) -------------------


def _fuse(attention: np.ndarray, fusion: str) -> np.ndarray:
    if fusion not in FUSIONS:
        raise ValueError(f"head fusion must be one of {FUSIONS}, not '{fusion}'")
    return getattr(attention, fusion)(axis=0)


def rollout(attention: np.ndarray, fusion: str = "mean", discard: float = 0.0, prefix: int = 1) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema 2020) over ``L x heads x T x T`` weights.

    Per layer: fuse the heads (mean, max or min); optionally zero the lowest
    ``discard`` fraction of the fused weights, never those to the ``prefix`` tokens
    (class token first); add the identity for the residual, ``A = (W + I) / 2``;
    renormalise each row; multiply the layers in order. Returns the ``T x T`` joint
    attention (row ``i``: how much each input token reaches output token ``i``).
    """
    if not 0.0 <= discard < 1.0:
        raise ValueError(f"discard ratio must be in [0, 1), not {discard}")
    a = np.asarray(attention, dtype=np.float64)
    t = a.shape[-1]
    eye = np.eye(t)
    result = eye.copy()
    for layer in a:
        w = _fuse(layer, fusion)
        if discard > 0:
            w = w.copy()
            body = w[:, prefix:]  # a view: discarding writes into w
            k = int(body.size * discard)
            if k > 0:
                flat = body.reshape(-1)
                lowest = np.argpartition(flat, k - 1)[:k]
                flat[lowest] = 0.0
                w[:, prefix:] = flat.reshape(body.shape)
        w = (w + eye) / 2.0
        w = w / w.sum(axis=-1, keepdims=True)
        result = w @ result
    return result.astype(np.float32)


def rollout_map(joint: np.ndarray, layout: TokenLayout, token: int | None = None) -> np.ndarray:
    """Row ``token`` of a joint attention on the patch grid.

    By default the class token's row; a ViT without one (global average pooling, with
    or without register tokens) is read by the mean of its patch rows, which is what
    its pooled output sees (never a register's row).
    """
    joint = np.asarray(joint, dtype=np.float32)
    if token is None:
        row = joint[0] if layout.class_token else joint[layout.prefix:].mean(axis=0)
    else:
        row = joint[token]
    return row[layout.prefix:].reshape(layout.grid)


def gradient_rollout(attention: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    """Gradient-weighted rollout (Chefer et al. 2021) over ``L x heads x T x T`` arrays.

    Per layer ``Ā = mean_heads(max(∇A ⊙ A, 0))`` and ``R ← R + Ā R``, starting from
    the identity. Returns the ``T x T`` relevance; read it with :func:`rollout_map`
    (the class token's row, or the mean of the patch rows without a class token).
    """
    a = np.asarray(attention, dtype=np.float64)
    g = np.asarray(gradients, dtype=np.float64)
    t = a.shape[-1]
    r = np.eye(t)
    for layer_a, layer_g in zip(a, g, strict=True):
        bar = np.clip(layer_g * layer_a, 0.0, None).mean(axis=0)
        r = r + bar @ r
    return r.astype(np.float32)


def attention_distance(attention: np.ndarray, layout: TokenLayout) -> np.ndarray:
    """Mean attention distance in pixels, ``L x heads`` (ViT paper, Figure 7).

    For each query patch, the distances to every key patch (between patch centres,
    in input pixels) weighted by the attention between them; then averaged over
    query patches. Attention to prefix tokens (class, registers) has no place in the
    image, so each query's attention over the patches is renormalised to sum to 1:
    a head that mostly attends to the class token is not drawn as a local one.
    """
    gh, gw = layout.grid
    ys, xs = np.divmod(np.arange(gh * gw), gw)
    centres = np.stack([ys, xs], axis=1).astype(np.float64) * layout.patch
    dist = np.sqrt(((centres[:, None, :] - centres[None, :, :]) ** 2).sum(-1))
    patches = np.asarray(attention, dtype=np.float64)[..., layout.prefix:, layout.prefix:]
    mass = patches.sum(-1, keepdims=True)
    weights = np.divide(patches, mass, out=np.zeros_like(patches), where=mass > 0)
    return (weights * dist).sum(-1).mean(-1).astype(np.float32)


# --- the job -------------------------------------------------------------------------------


@dataclass
class AttentionResult:
    """Everything the attention view shows for one image, as plain numpy.

    Attributes
    ----------
    input : ndarray
        ``1 x 3 x H x W``, the normalised input.
    display : ndarray
        ``H x W x 3`` uint8, the input as the model saw it.
    attention : ndarray
        ``layers x heads x T x T`` float32 weights (rows: queries, sum to 1).
    layers : list of str
        The attention modules, in order.
    layout : TokenLayout
    distance : ndarray
        ``layers x heads`` mean attention distance in pixels.
    predictions : list of Prediction
    target : int or None
        The class behind ``gradient`` (the top class unless one was asked for).
    gradient : ndarray or None
        ``T x T`` gradient-weighted rollout for ``target``.
    """

    input: np.ndarray
    display: np.ndarray
    attention: np.ndarray
    layers: list[str]
    layout: TokenLayout
    distance: np.ndarray
    predictions: list = field(default_factory=list)
    target: int | None = None
    target_label: str = ""
    gradient: np.ndarray | None = None
    trained: bool = True
    notes: list[str] = field(default_factory=list)

    @property
    def heads(self) -> int:
        return self.attention.shape[1]

    @property
    def has_class_token(self) -> bool:
        """From the model (timm's ``cls_token``, torchvision's ``class_token``), not from
        the prefix count: register tokens are prefix tokens too."""
        return bool(self.layout.class_token)

    def cls_maps(self, layer: int | None = None) -> np.ndarray:
        """``layers x heads x gh x gw`` (or ``heads x gh x gw`` for one ``layer``): where
        the class token looks in every head.

        Without a class token (global-average-pooled ViTs, registers or not): the mean
        over the patch queries' rows, i.e. where the pooled output looks.
        """
        att = self.attention if layer is None else self.attention[layer][None]
        lay = self.layout
        if self.has_class_token:
            maps = att[:, :, 0, lay.prefix:]
        else:
            maps = att[:, :, lay.prefix:, lay.prefix:].mean(axis=2)
        maps = maps.reshape(*att.shape[:2], *lay.grid)
        return maps if layer is None else maps[0]

    def token_maps(self, token: int) -> np.ndarray:
        """``layers x heads x gh x gw``: where token ``token`` looks (its attention row)."""
        lay = self.layout
        return self.attention[:, :, token, lay.prefix:].reshape(*self.attention.shape[:2], *lay.grid)

    def patch_token(self, row: int, col: int) -> int:
        """The token index of patch ``(row, col)``."""
        return self.layout.prefix + row * self.layout.grid[1] + col

    def rollout(self, fusion: str = "mean", discard: float = 0.0) -> np.ndarray:
        """The class token's rollout on the patch grid (the mean patch's without one)."""
        return rollout_map(rollout(self.attention, fusion, discard, self.layout.prefix), self.layout)

    def gradient_map(self) -> np.ndarray | None:
        return None if self.gradient is None else rollout_map(self.gradient, self.layout)


def analyse_attention(
    loaded,
    image,
    target: int | str | None = None,
    gradient: bool = False,
    *,
    progress: Progress = no_progress,
    cancel: CancelToken | None = None,
) -> AttentionResult:
    """Run ``image`` through a ViT and capture every head's attention.

    With ``gradient=True`` the pass keeps the graph and the result also holds the
    gradient-weighted rollout for ``target`` (the top class when ``None``).
    """
    from vizapp.explain.targets import resolve_target
    from vizapp.probing.inference import has_classifier, top_predictions
    from vizapp.probing.probe import first_tensor

    names = list(_require_attention(loaded))
    notes: list[str] = []
    pil = image.to_pil() if hasattr(image, "to_pil") else image
    x = loaded.preprocess.batch(pil)
    model = loaded.module
    was_training = model.training
    model.eval()
    progress(0, 0, f"attention of {loaded.title}")
    try:
        xd = x.to(loaded.device)
        with torch.set_grad_enabled(gradient), capture_attention(model, grad=gradient) as store:
            if not gradient:
                with torch.inference_mode():
                    out = first_tensor(model(xd))
            else:
                out = first_tensor(model(xd))
            if cancel is not None:
                cancel.check()
            grads = None
            chosen = None
            if gradient and not has_classifier(loaded, out):
                notes.append(f"{loaded.title} has no classifier head: there is no class for a gradient-weighted "
                             "rollout, so only the plain attention is shown")
            elif gradient:
                chosen = resolve_target(loaded, out.detach(), target)
                grads = _graph_gradients(store, out[0, chosen])
            store_maps = {n: store[n][0].cpu() for n in names if n in store}
    except torch.OutOfMemoryError:
        raise OutOfMemory(f"out of {loaded.device} memory running {loaded.title}; switch the device to CPU") from None
    finally:
        model.train(was_training)
    missing = [n for n in names if n not in store_maps]
    if missing:
        raise ModelError(f"{loaded.title}: attention modules {', '.join(missing[:3])} did not run in the forward pass")
    attention = torch.stack([store_maps[n] for n in names]).numpy()
    layout = token_layout(model, attention.shape[-1], int(x.shape[-1]))
    logits = out.detach().float().cpu()
    preds = top_predictions(loaded, logits, 5) if logits.ndim == 2 else []
    result = AttentionResult(
        input=x.numpy(), display=loaded.preprocess.to_display(x), attention=attention, layers=names,
        layout=layout, distance=attention_distance(attention, layout), predictions=preds,
        trained=loaded.trained, notes=notes,
    )
    if grads is not None:
        g = torch.stack([grads[n][0] for n in names]).numpy()
        result.gradient = gradient_rollout(attention, g)
        result.target, result.target_label = chosen, loaded.label(chosen)
        if not np.any(g):
            result.notes.append(
                f"every attention gradient is zero for class {chosen} ({loaded.label(chosen)}): {loaded.title}'s output "
                "does not depend on its input (is the classifier head all zeros / untrained?)")
    if not loaded.trained:
        result.notes.append(f"{loaded.title} is UNTRAINED: these are random weights, not learned attention")
    return result

"""The training lab's losses against their papers' formulas, written out as plain loops.

Each loss is checked against an independent brute-force implementation in pure Python
(floats and ``math``, no torch) on small hand-made batches, including the margin
boundaries; then for finite gradients at identical embeddings, a 0 (not NaN) on batches
with nothing to compare, and a falling loss over 50 SGD steps of a tiny linear net on
two Gaussian blobs. Qt-free and CPU-only.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from vizapp.training.losses import (
    LOSSES,
    MINING,
    contrastive_loss,
    info_nce,
    loss_stats,
    triplet_loss,
)

# --------------------------------------------------------------------------- brute force


def _rows(t: torch.Tensor) -> list[list[float]]:
    return [[float(x) for x in row] for row in t]


def _sq_dist(u: list[float], v: list[float]) -> float:
    return sum((a - b) ** 2 for a, b in zip(u, v, strict=True))


def _unit(v: list[float]) -> list[float]:
    norm = math.sqrt(sum(a * a for a in v))
    return [a / max(norm, 1e-12) for a in v]


def brute_contrastive(emb: torch.Tensor, labels: torch.Tensor, margin: float) -> float:
    e, y = _rows(emb), labels.tolist()
    terms = []
    for i, j in itertools.combinations(range(len(e)), 2):
        dist = math.sqrt(_sq_dist(e[i], e[j]))
        if y[i] == y[j]:
            terms.append(0.5 * dist**2)
        else:
            terms.append(0.5 * max(0.0, margin - dist) ** 2)
    return sum(terms) / len(terms) if terms else 0.0


def brute_triplet(emb: torch.Tensor, labels: torch.Tensor, margin: float, mining: str) -> float:
    e, y = [_unit(r) for r in _rows(emb)], labels.tolist()
    n = len(e)

    def d(i: int, j: int) -> float:
        return _sq_dist(e[i], e[j])

    def positives(a: int) -> list[int]:
        return [p for p in range(n) if p != a and y[p] == y[a]]

    def negatives(a: int) -> list[int]:
        return [q for q in range(n) if y[q] != y[a]]

    if mining == "all":
        per_triplet = [
            max(0.0, d(a, p) - d(a, q) + margin)
            for a in range(n)
            for p in positives(a)
            for q in negatives(a)
        ]
        return sum(per_triplet) / len(per_triplet) if per_triplet else 0.0
    if mining == "hard":
        per_anchor = []
        for a in range(n):
            if positives(a) and negatives(a):
                hardest_p = max(d(a, p) for p in positives(a))
                hardest_n = min(d(a, q) for q in negatives(a))
                per_anchor.append(max(0.0, hardest_p - hardest_n + margin))
        return sum(per_anchor) / len(per_anchor) if per_anchor else 0.0
    assert mining == "semihard"
    per_pair = []
    for a in range(n):
        if not negatives(a):
            continue
        for p in positives(a):
            dap = d(a, p)
            semi = [d(a, q) for q in negatives(a) if dap < d(a, q) < dap + margin]
            dan = min(semi) if semi else min(d(a, q) for q in negatives(a))
            per_pair.append(max(0.0, dap - dan + margin))
    return sum(per_pair) / len(per_pair) if per_pair else 0.0


def brute_info_nce(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> float:
    z = [_unit(r) for r in _rows(z1) + _rows(z2)]
    n2, n = len(z), len(z) // 2

    def s(i: int, j: int) -> float:
        return sum(a * b for a, b in zip(z[i], z[j], strict=True)) / temperature

    total = 0.0
    for i in range(n2):
        j = (i + n) % n2
        denom = sum(math.exp(s(i, k)) for k in range(n2) if k != i)
        total += -math.log(math.exp(s(i, j)) / denom)
    return total / n2


# --------------------------------------------------------------------------- hand-made batches

#: Six 2-D embeddings for the contrastive loss (margin 1): a similar pair at distance 1,
#: a dissimilar pair exactly at the margin, one inside it, one identical pair of
#: different labels, and a far-away point.
CONTRASTIVE_E = torch.tensor(
    [[0.0, 0.0], [0.6, 0.8], [1.0, 0.0], [0.5, 0.0], [0.0, 0.0], [3.0, 4.0]],
    dtype=torch.float64,
)
CONTRASTIVE_Y = torch.tensor([0, 0, 1, 1, 2, 0])

#: Four unit vectors 90 degrees apart: squared distances are exactly 2 and 4, so with
#: margin 2 triplets land exactly on the margin and on both edges of the semi-hard band.
SQUARE_E = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, -1.0], [-1.0, 0.0]], dtype=torch.float64)
SQUARE_Y = torch.tensor([0, 0, 1, 2])

#: Six 2-D embeddings, three labels, not normalised (the triplet loss normalises).
TRIPLET_E = torch.tensor(
    [[1.0, 0.2], [0.8, 0.9], [-0.3, 1.0], [-1.0, -0.4], [0.4, -1.2], [2.0, 2.2]],
    dtype=torch.float64,
)
TRIPLET_Y = torch.tensor([0, 0, 1, 1, 2, 2])


def test_registry_keys():
    assert list(LOSSES) == ["ce", "contrastive", "triplet", "infonce"]
    assert set(MINING) == {"all", "hard", "semihard"}


# --------------------------------------------------------------------------- contrastive


def test_contrastive_two_point_formula():
    near = torch.tensor([[0.0, 0.0], [0.3, 0.4]], dtype=torch.float64)  # D = 0.5
    far = torch.tensor([[0.0, 0.0], [1.2, 1.6]], dtype=torch.float64)  # D = 2
    same, diff = torch.tensor([0, 0]), torch.tensor([0, 1])
    assert float(contrastive_loss(near, same)) == pytest.approx(0.5 * 0.25)
    assert float(contrastive_loss(near, diff, margin=1.0)) == pytest.approx(0.5 * 0.5**2)
    assert float(contrastive_loss(far, same)) == pytest.approx(0.5 * 4.0)
    assert float(contrastive_loss(far, diff, margin=1.0)) == 0.0
    # Exactly at the margin: no push.
    assert float(contrastive_loss(far, diff, margin=2.0)) == 0.0


@pytest.mark.parametrize("margin", [0.0, 0.5, 1.0, 2.0, 10.0])
def test_contrastive_matches_loop(margin):
    got = float(contrastive_loss(CONTRASTIVE_E, CONTRASTIVE_Y, margin=margin))
    assert got == pytest.approx(brute_contrastive(CONTRASTIVE_E, CONTRASTIVE_Y, margin), rel=1e-12)


def test_contrastive_matches_loop_random():
    g = torch.Generator().manual_seed(3)
    for _ in range(5):
        e = torch.randn(9, 3, generator=g, dtype=torch.float64)
        y = torch.randint(0, 3, (9,), generator=g)
        got = float(contrastive_loss(e, y, margin=1.5))
        assert got == pytest.approx(brute_contrastive(e, y, 1.5), rel=1e-12)


def _dist(e: torch.Tensor, i: int, j: int) -> float:
    return float((e[i] - e[j]).detach().norm())


def test_contrastive_step_pulls_similar_and_pushes_dissimilar_inside_margin():
    # Three independent pairs, each its own batch: similar, dissimilar inside the
    # margin, dissimilar outside it.
    pairs = {
        "similar": (torch.tensor([[0.0, 0.0], [0.3, 0.4]]), torch.tensor([0, 0])),
        "inside": (torch.tensor([[0.0, 0.0], [0.3, 0.4]]), torch.tensor([0, 1])),
        "outside": (torch.tensor([[0.0, 0.0], [0.9, 1.2]]), torch.tensor([0, 1])),
    }
    after = {}
    for name, (start, labels) in pairs.items():
        e = start.clone().requires_grad_()
        opt = torch.optim.SGD([e], lr=0.1)
        contrastive_loss(e, labels, margin=1.0).backward()
        opt.step()
        after[name] = _dist(e, 0, 1)
    assert after["similar"] < 0.5
    assert after["inside"] > 0.5
    assert after["outside"] == pytest.approx(1.5)

    # The same in one batch of four: a same-label pair close together and a
    # different-label pair inside the margin, far from each other otherwise.
    e = torch.tensor([[0.0, 0.0], [0.3, 0.4], [10.0, 0.0], [10.3, 0.4]], requires_grad=True)
    labels = torch.tensor([0, 0, 1, 2])
    # Pairs across the two groups are dissimilar and 10 apart, past the margin.
    before_same, before_diff = _dist(e, 0, 1), _dist(e, 2, 3)
    opt = torch.optim.SGD([e], lr=0.5)
    contrastive_loss(e, labels, margin=1.0).backward()
    opt.step()
    assert _dist(e, 0, 1) < before_same
    assert _dist(e, 2, 3) > before_diff


# --------------------------------------------------------------------------- triplet


@pytest.mark.parametrize("mining", MINING)
def test_triplet_square_boundaries(mining):
    # Anchor-positive pairs (0, 1) and (1, 0), d_ap = 2; each anchor has one negative
    # at d = 2 (loss exactly the margin) and one at d = 4 = d_ap + margin (loss exactly
    # 0, and on the semi-hard band's open upper edge, so semi-hard falls back to the
    # hardest negative). Batch-all averages the four triplets (2, 0, 0, 2) to 1; the
    # hardest positive/negative per anchor and the semi-hard fallback both give 2.
    got = float(triplet_loss(SQUARE_E, SQUARE_Y, margin=2.0, mining=mining))
    assert got == pytest.approx(1.0 if mining == "all" else 2.0, abs=1e-12)
    assert got == pytest.approx(brute_triplet(SQUARE_E, SQUARE_Y, 2.0, mining), abs=1e-12)


def test_triplet_semihard_band_is_open_and_prefers_the_nearest_semihard():
    # Anchor (1, 0) and positive (0, 1) (d_ap = 2); negatives at d = 2 (lower edge),
    # d = 2 - sqrt(2) ~ 0.59 (harder than the positive), d = 2 + sqrt(2) ~ 3.41 and
    # d = 4. With margin 2 the band (2, 4) holds only 3.41: loss 2 - 3.41 + 2.
    e = torch.tensor(
        [[1.0, 0.0], [0.0, 1.0], [0.0, -1.0], [1.0, 1.0], [-1.0, -1.0], [-1.0, 0.0]],
        dtype=torch.float64,
    )
    y = torch.tensor([0, 0, 1, 2, 3, 4])
    loss = float(triplet_loss(e[[0, 1, 2, 4, 5]], y[[0, 1, 2, 4, 5]], margin=2.0))
    # Pair (0, 1): band (2, 4) holds -1,-1 at 3.41 -> 0.586; pair (1, 0): negatives of
    # anchor (0, 1) at 4, 3.41, 2 -> 3.41 -> 0.586.
    assert loss == pytest.approx(4.0 - (2 + math.sqrt(2)), abs=1e-12)
    # Add a negative nearer than the positive: the band is unchanged, so is the loss.
    loss_all = float(triplet_loss(e, y, margin=2.0))
    assert loss_all == pytest.approx(brute_triplet(e, y, 2.0, "semihard"), abs=1e-12)
    # Shrink the margin so the band (2, 2.5) is empty: fall back to the hardest negative
    # (d = 2 - sqrt(2) for anchor 0 from (1, 1); for anchor 1 also 2 - sqrt(2)).
    small = float(triplet_loss(e, y, margin=0.5))
    assert small == pytest.approx(2.0 - (2 - math.sqrt(2)) + 0.5, abs=1e-12)
    assert small == pytest.approx(brute_triplet(e, y, 0.5, "semihard"), abs=1e-12)


@pytest.mark.parametrize("mining", MINING)
@pytest.mark.parametrize("margin", [0.0, 0.2, 0.5, 1.0, 2.0, 5.0])
def test_triplet_matches_loop(mining, margin):
    got = float(triplet_loss(TRIPLET_E, TRIPLET_Y, margin=margin, mining=mining))
    want = brute_triplet(TRIPLET_E, TRIPLET_Y, margin, mining)
    assert got == pytest.approx(want, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("mining", MINING)
def test_triplet_matches_loop_random(mining):
    g = torch.Generator().manual_seed(7)
    for _ in range(6):
        e = torch.randn(10, 3, generator=g, dtype=torch.float64)
        y = torch.randint(0, 3, (10,), generator=g)
        for margin in (0.1, 0.5, 1.5):
            got = float(triplet_loss(e, y, margin=margin, mining=mining))
            want = brute_triplet(e, y, margin, mining)
            assert got == pytest.approx(want, rel=1e-10, abs=1e-12)


def test_triplet_modes_differ():
    # Sanity: the hand-made batch is rich enough to tell the three modes apart.
    values = {m: float(triplet_loss(TRIPLET_E, TRIPLET_Y, margin=1.0, mining=m)) for m in MINING}
    assert len({round(v, 9) for v in values.values()}) == 3, values


def test_triplet_rejects_unknown_mining():
    with pytest.raises(ValueError, match="semihard"):
        triplet_loss(TRIPLET_E, TRIPLET_Y, mining="easy")


# --------------------------------------------------------------------------- InfoNCE


@pytest.mark.parametrize("temperature", [0.1, 0.5, 1.0])
def test_info_nce_matches_loop(temperature):
    g = torch.Generator().manual_seed(11)
    z1 = torch.randn(5, 4, generator=g, dtype=torch.float64)
    z2 = z1 + 0.3 * torch.randn(5, 4, generator=g, dtype=torch.float64)
    got = float(info_nce(z1, z2, temperature=temperature))
    assert got == pytest.approx(brute_info_nce(z1, z2, temperature), rel=1e-10)


def test_info_nce_hand_made():
    # Two images, orthogonal unit views that agree: s = 1/T for the positive, 0 for the
    # two negatives, so each term is -log(e^(1/T) / (e^(1/T) + 2)).
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    t = 0.5
    want = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 2.0))
    assert float(info_nce(z1, z1.clone(), temperature=t)) == pytest.approx(want, rel=1e-12)


def test_info_nce_matches_pytorch_metric_learning():
    losses = pytest.importorskip("pytorch_metric_learning.losses")
    g = torch.Generator().manual_seed(5)
    z1, z2 = torch.randn(8, 6, generator=g), torch.randn(8, 6, generator=g)
    ref = losses.NTXentLoss(temperature=0.5)(torch.cat([z1, z2]), torch.arange(8).repeat(2))
    assert float(info_nce(z1, z2, 0.5)) == pytest.approx(float(ref), rel=1e-5)


def test_info_nce_rejects_mismatched_views():
    with pytest.raises(ValueError, match="same shape"):
        info_nce(torch.zeros(4, 3), torch.zeros(5, 3))
    with pytest.raises(ValueError, match="temperature"):
        info_nce(torch.zeros(4, 3), torch.zeros(4, 3), temperature=0.0)


# --------------------------------------------------------------------------- degenerate input


def _grad_of(fn, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    e = e.clone().requires_grad_()
    loss = fn(e)
    loss.backward()
    return loss.detach(), e.grad


@pytest.mark.parametrize("start", ["identical", "zeros"])
def test_gradients_finite_at_identical_embeddings(start):
    e = torch.ones(6, 3) if start == "identical" else torch.zeros(6, 3)
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    fns = {
        "contrastive": lambda x: contrastive_loss(x, y, margin=1.0),
        "infonce": lambda x: info_nce(x[:3], x[3:], temperature=0.5),
        **{f"triplet-{m}": (lambda x, m=m: triplet_loss(x, y, 0.2, m)) for m in MINING},
    }
    for name, fn in fns.items():
        loss, grad = _grad_of(fn, e)
        assert torch.isfinite(loss), name
        assert torch.isfinite(grad).all(), name
    # Identical dissimilar embeddings cost 1/2 m^2 each; similar ones nothing.
    n_dissimilar = 15 - 3
    assert float(contrastive_loss(e, y)) == pytest.approx(0.5 * n_dissimilar / 15)


@pytest.mark.parametrize(
    "fn",
    [
        pytest.param(lambda e, y: triplet_loss(e, y, 0.2, "all"), id="triplet-all"),
        pytest.param(lambda e, y: triplet_loss(e, y, 0.2, "hard"), id="triplet-hard"),
        pytest.param(lambda e, y: triplet_loss(e, y, 0.2, "semihard"), id="triplet-semihard"),
    ],
)
@pytest.mark.parametrize("labels", [[0, 0, 0, 0], [0, 1, 2, 3], [0], []])
def test_triplet_without_valid_triplet_is_connected_zero(fn, labels):
    y = torch.tensor(labels, dtype=torch.long)
    e = torch.randn(len(labels), 3, requires_grad=True)
    loss = fn(e, y)
    assert loss.item() == 0.0
    assert loss.requires_grad
    loss.backward()
    assert torch.equal(e.grad, torch.zeros_like(e))


def test_triplet_all_with_no_active_triplet_is_connected_zero():
    # Valid triplets, all easy: batch-all is 0 and its gradient finite.
    e = torch.tensor([[1.0, 0.0], [1.0, 0.01], [-1.0, 0.0]], requires_grad=True)
    loss = triplet_loss(e, torch.tensor([0, 0, 1]), margin=0.2, mining="all")
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.isfinite(e.grad).all()


@pytest.mark.parametrize("n", [0, 1])
def test_tiny_batches_are_connected_zero(n):
    e = torch.randn(n, 3, requires_grad=True)
    for loss in (contrastive_loss(e, torch.zeros(n, dtype=torch.long)), info_nce(e, e * 2)):
        assert loss.item() == 0.0
        assert loss.requires_grad
        loss.backward()
        assert torch.isfinite(e.grad).all()


def test_half_precision_is_computed_in_float32():
    e = torch.tensor([[0.0, 0.0], [1e-3, 0.0]], dtype=torch.float16)
    loss = contrastive_loss(e, torch.tensor([0, 0]))
    assert loss.dtype == torch.float32
    assert float(loss) == pytest.approx(0.5 * float(e[1, 0]) ** 2, rel=1e-3)


def test_shape_errors_say_what_to_do():
    with pytest.raises(ValueError, match="flatten"):
        contrastive_loss(torch.zeros(4, 2, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="one label per embedding"):
        triplet_loss(torch.zeros(4, 2), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="margin"):
        contrastive_loss(torch.zeros(4, 2), torch.zeros(4, dtype=torch.long), margin=-1.0)


# --------------------------------------------------------------------------- training


def _blobs(seed: int = 0, per_class: int = 32, dim: int = 8):
    g = torch.Generator().manual_seed(seed)
    direction = F.normalize(torch.randn(dim, generator=g), dim=0)
    x = torch.randn(2 * per_class, dim, generator=g)
    y = torch.arange(2).repeat_interleave(per_class)
    x = x + (2.0 * y[:, None] - 1.0) * 1.5 * direction
    return x, y, g


def _train(loss_fn, out_dim: int, steps: int = 50, lr: float = 0.1) -> list[float]:
    torch.manual_seed(0)
    x, y, g = _blobs()
    # Two fixed augmented views (jittered copies) for InfoNCE.
    views = (
        x + 0.3 * torch.randn(x.shape, generator=g),
        x + 0.3 * torch.randn(x.shape, generator=g),
    )
    net = torch.nn.Linear(x.shape[1], out_dim)
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    history = []
    for _ in range(steps + 1):
        loss = loss_fn(net, x, y, views)
        history.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return history


TRAINING = {
    "ce": (lambda net, x, y, v: F.cross_entropy(net(x), y), 2),
    "contrastive": (lambda net, x, y, v: contrastive_loss(net(x), y, margin=1.0), 4),
    **{
        f"triplet-{m}": ((lambda net, x, y, v, m=m: triplet_loss(net(x), y, 0.2, m)), 4)
        for m in MINING
    },
    # A temperature of 0.5 leaves a linear net's 64-image InfoNCE little to lower.
    "infonce": (lambda net, x, y, v: info_nce(net(v[0]), net(v[1]), 0.1), 8),
}


@pytest.mark.parametrize("name", list(TRAINING))
def test_loss_falls_over_50_sgd_steps(name):
    fn, out_dim = TRAINING[name]
    history = _train(fn, out_dim)
    assert all(math.isfinite(v) for v in history), name
    assert history[-1] < 0.8 * history[0], (name, history[0], history[-1])


# --------------------------------------------------------------------------- statistics


def test_loss_stats_contrastive():
    stats = loss_stats("contrastive", CONTRASTIVE_E, CONTRASTIVE_Y, margin=1.0)
    e, y = _rows(CONTRASTIVE_E), CONTRASTIVE_Y.tolist()
    pos, neg = [], []
    for i, j in itertools.combinations(range(6), 2):
        (pos if y[i] == y[j] else neg).append(math.sqrt(_sq_dist(e[i], e[j])))
    assert stats["pos_dist"] == pytest.approx(sum(pos) / len(pos))
    assert stats["neg_dist"] == pytest.approx(sum(neg) / len(neg))
    assert stats["inside_margin"] == pytest.approx(sum(d < 1.0 for d in neg) / len(neg))


def test_loss_stats_triplet():
    stats = loss_stats("triplet", SQUARE_E, SQUARE_Y, margin=2.0)
    # Four valid triplets: two with loss 2, two exactly at the margin (inactive).
    assert stats == pytest.approx({"pos_dist": 2.0, "neg_dist": 2.8, "active_triplets": 0.5})
    assert "active_triplets" not in loss_stats("triplet", SQUARE_E, torch.tensor([0, 1, 2, 3]))


def test_loss_stats_infonce_and_ce():
    z1 = torch.eye(3)
    stats = loss_stats("infonce", z1, z2=z1.clone(), temperature=0.5)
    assert stats == pytest.approx({"top1": 1.0, "pos_sim": 1.0, "neg_sim": 0.0})
    stats = loss_stats("infonce", z1, z2=z1[[1, 2, 0]], temperature=0.5)
    assert stats["top1"] == 0.0
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [5.0, 0.0]])
    assert loss_stats("ce", logits, torch.tensor([0, 1, 1])) == pytest.approx({"accuracy": 2 / 3})
    with pytest.raises(ValueError, match="choose one of"):
        loss_stats("l2", logits, torch.tensor([0, 1, 1]))


# --------------------------------------------------------------------------- the registry


@pytest.mark.parametrize("key", list(LOSSES))
def test_every_registered_loss_is_a_module_with_its_parts(key):
    from vizapp.training.losses import loss_module

    module = loss_module(key)
    assert module.__name__ == f"vizapp.training.losses.{key}"
    assert isinstance(module.EMBEDS, bool) and module.VIEWS in (1, 2)
    assert set(module.OPTIONS) <= {"margin", "mining", "temperature"}
    assert callable(module.loss) and callable(module.stats)


def test_an_unknown_loss_is_one_line():
    from vizapp.core.errors import UserError
    from vizapp.training.losses import loss_module

    with pytest.raises(UserError, match=r"^unknown loss 'l2'; choose one of ce, contrastive, triplet, infonce$"):
        loss_module("l2")


def test_the_registry_imports_no_torch():
    import subprocess
    import sys

    code = ("import sys; import vizapp.training.losses as l, vizapp.explain.attribution as a; "
            "print(list(l.LOSSES), list(a.METHODS), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "False"

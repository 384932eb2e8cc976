"""Embedding engine (Qt-free): projections against independent computations, search, files, errors."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from vizapp.collection.embedding import Embedding, nearest, normalize_rows, subset_stats
from vizapp.collection.projection import project
from vizapp.core.errors import Cancelled, UserError
from vizapp.core.jobs import CancelToken


def blobs(per: int = 60, dims: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three well-separated Gaussian blobs in ``dims`` dimensions."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 1.0, (3, dims)) * 4.0
    x = np.concatenate([c + rng.normal(0.0, 1.0, (per, dims)) for c in centres]).astype(np.float32)
    return x, np.repeat(np.arange(3), per)


def knn_accuracy(coords: np.ndarray, labels: np.ndarray, k: int = 5) -> float:
    """Leave-one-out k-nearest-neighbour accuracy of ``labels`` in the 2-D layout."""
    d = ((coords[:, None, :] - coords[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    votes = labels[np.argsort(d, axis=1)[:, :k]]
    guess = np.array([np.bincount(v, minlength=labels.max() + 1).argmax() for v in votes])
    return float((guess == labels).mean())


def align_sign(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a`` with each column's sign flipped to agree with ``b``."""
    return a * np.sign((a * b).sum(axis=0))


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Mean per-axis Pearson correlation of two layouts."""
    return float(np.mean([np.corrcoef(a[:, j], b[:, j])[0, 1] for j in range(2)]))


@pytest.fixture(scope="module")
def data():
    return blobs()


# --- projections ---------------------------------------------------------------------


def test_pca_equals_an_independent_svd_and_sklearn(data):
    from sklearn.decomposition import PCA

    x, _ = data
    coords = project(x, "pca")
    assert coords.shape == (len(x), 2) and coords.dtype == np.float32
    centred = x.astype(np.float64) - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    expected = centred @ vt[:2].T
    np.testing.assert_allclose(align_sign(coords, expected), expected, rtol=1e-3, atol=1e-3)
    sk = PCA(n_components=2).fit_transform(x)
    np.testing.assert_allclose(align_sign(coords, sk), sk, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("method", ["tsne", "umap"])
def test_tsne_and_umap_keep_separated_blobs_apart(data, method):
    x, y = data
    steps = []
    coords = project(x, method, seed=0, progress=lambda done, total, text: steps.append((done, total, text)))
    assert coords.shape == (len(x), 2) and coords.dtype == np.float32 and np.isfinite(coords).all()
    assert knn_accuracy(coords, y) > 0.95
    done = [s[0] for s in steps]
    assert done == sorted(done) and done[-1] == 100 and all(s[1] == 100 for s in steps)
    assert any("PCA to 50" in s[2] for s in steps)  # 64 dimensions are reduced first


@pytest.mark.parametrize("method", ["pca", "tsne", "umap"])
def test_a_seed_gives_the_same_layout(data, method):
    x, _ = data
    a = project(x, method, seed=3, n_iter=20)
    b = project(x, method, seed=3, n_iter=20)
    np.testing.assert_array_equal(a, b)


def test_tsne_starts_from_init(data):
    x, y = data
    first = project(x, "tsne", n_iter=50)
    turned = first @ np.array([[0.0, -1.0], [1.0, 0.0]], dtype=np.float32)  # a quarter turn
    again = project(x, "tsne", init=turned, n_iter=0)
    assert again.shape == (len(x), 2)
    assert correlation(again, turned) > 0.9  # the layout follows its start, not PCA's
    assert knn_accuracy(again, y) > 0.95


def test_umap_starts_from_init(data):
    x, _ = data
    start = project(x, "pca")
    out = project(x, "umap", init=start, n_iter=2)
    assert out.shape == (len(x), 2)
    assert correlation(out, start) > 0.8


def test_umap_on_large_collections_takes_annoy_neighbours(data, monkeypatch):
    from vizapp.collection import projection

    x, y = data
    indices, distances = projection._annoy_knn(x, 6, seed=0)
    assert indices.shape == distances.shape == (len(x), 6)
    np.testing.assert_array_equal(indices[:, 0], np.arange(len(x)))  # itself first, as umap-learn has it
    exact = np.argsort(((x[:, None] - x[None]) ** 2).sum(-1), axis=1)[:, :6]
    assert np.mean([len(set(a) & set(b)) / 6 for a, b in zip(indices, exact, strict=True)]) > 0.95
    d = np.linalg.norm(x[:, None] - x[indices], axis=-1)
    np.testing.assert_allclose(distances, d, rtol=1e-4, atol=1e-4)
    monkeypatch.setattr(projection, "_UMAP_APPROX_FROM", 0)  # what 4096+ points get
    assert knn_accuracy(project(x, "umap", n_iter=100), y) > 0.95


def test_pca_ignores_init_and_handles_one_dimension(data):
    x, _ = data
    np.testing.assert_array_equal(project(x, "pca", init=np.zeros((len(x), 2))), project(x, "pca"))
    line = np.arange(5, dtype=np.float32)[:, None]
    np.testing.assert_allclose(project(line, "pca"), np.c_[line[:, 0] - 2.0, np.zeros(5)])


def test_tsne_without_opentsne_uses_sklearn(data, monkeypatch):
    x, y = data
    monkeypatch.setitem(sys.modules, "openTSNE", None)  # import openTSNE raises ImportError
    coords = project(x[::3], "tsne", n_iter=0)
    assert coords.shape == (len(x[::3]), 2)
    assert knn_accuracy(coords, y[::3]) > 0.9


@pytest.mark.parametrize(
    ("features", "kwargs", "message"),
    [
        (np.ones((2, 4)), {}, "at least 3 images"),
        (np.ones(5), {}, "2-D array"),
        (np.eye(4), {"method": "lda"}, "unknown projection method 'lda'"),
        (np.where(np.eye(4) > 0, np.nan, 1.0), {}, "NaN"),
        (np.ones((6, 3)), {}, "identical"),
        (np.eye(4), {"method": "tsne", "init": np.zeros((3, 2))}, "init must be 4 x 2"),
    ],
)
def test_bad_input_is_a_user_error(features, kwargs, message):
    kwargs = {"method": "pca", **kwargs}
    method = kwargs.pop("method")
    with pytest.raises(UserError, match=message):
        project(features, method, **kwargs)


@pytest.mark.parametrize("method", ["pca", "tsne", "umap"])
def test_a_cancelled_token_stops_before_work(data, method):
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        project(data[0], method, cancel=token)


@pytest.mark.parametrize(("method", "when"), [("tsne", "t-SNE: iteration 25/"), ("umap", "UMAP: epoch")])
def test_cancel_during_optimisation(data, method, when):
    token = CancelToken()
    seen = []

    def progress(done, total, text):
        seen.append(text)
        if text.startswith(when):
            token.cancel()

    with pytest.raises(Cancelled):
        project(data[0], method, n_iter=200, progress=progress, cancel=token)
    assert any(t.startswith(when) for t in seen)
    assert not any("done" in t for t in seen)


# --- search --------------------------------------------------------------------------


def brute_force(x: np.ndarray, q: np.ndarray) -> np.ndarray:
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    return xn @ (q / np.linalg.norm(q))


@pytest.mark.parametrize("chunk", [1, 7, 64, 10_000])
def test_nearest_equals_brute_force_cosine(chunk):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 24)).astype(np.float32)
    sims = brute_force(x.astype(np.float64), x[17].astype(np.float64))
    order = np.argsort(-sims)
    assert order[0] == 17
    idx, sim = nearest(x, 17, k=10, chunk=chunk)
    np.testing.assert_array_equal(idx, order[1:11])
    np.testing.assert_allclose(sim, sims[order[1:11]], rtol=1e-5, atol=1e-6)
    idx, sim = nearest(x, 17, k=10, exclude_self=False, chunk=chunk)
    np.testing.assert_array_equal(idx, order[:10])
    assert sim[0] == pytest.approx(1.0, abs=1e-6)
    # A free vector, and several at once.
    v = rng.normal(size=24)
    idx, _ = nearest(x, v, k=5, chunk=chunk)
    np.testing.assert_array_equal(idx, np.argsort(-brute_force(x.astype(np.float64), v))[:5])
    many, many_sims = nearest(x, x[:4], k=3, chunk=chunk)
    assert many.shape == many_sims.shape == (4, 3)
    np.testing.assert_array_equal(many[:, 0], np.arange(4))  # each vector finds itself first


def test_nearest_edge_cases():
    x = np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0], [-1.0, 0.0]], dtype=np.float32)
    idx, sim = nearest(x, 0, k=50)
    assert len(idx) == 3 and 0 not in idx  # k clipped to the other rows
    np.testing.assert_allclose(sim, [np.sqrt(0.5), 0.0, -1.0], atol=1e-6)  # a zero row scores 0
    assert idx[1] == 1
    np.testing.assert_allclose(np.linalg.norm(normalize_rows(x), axis=1), [1, 0, 1, 1], atol=1e-6)
    with pytest.raises(UserError, match="out of range"):
        nearest(x, 9)
    with pytest.raises(UserError, match="2-long feature vectors"):
        nearest(x, np.ones(3))


def test_subset_stats_counts_a_selection():
    labels = ["cat", "dog", "cat", "", "dog", "cat"]
    stats = subset_stats(labels, np.array([0, 1, 2, 3, 5]))
    assert stats == {"cat": 3, "": 1, "dog": 1}
    assert list(stats) == ["cat", "", "dog"]  # commonest first, ties by name
    assert subset_stats(labels, []) == {}


# --- the record ----------------------------------------------------------------------


@pytest.mark.parametrize("predicted", [None, ["a", "b", "b"]])
def test_embedding_file_round_trip(tmp_path, predicted):
    rng = np.random.default_rng(2)
    e = Embedding(rng.normal(size=(3, 5)), rng.normal(size=(3, 2)),
                  ["/data/x 1.png", "mnist:train:12", "ü/ñ.jpg"], ["b", "", "a"], "tsne", predicted)
    assert e.features.dtype == np.float32 and e.coords.dtype == np.float32
    assert e.label_names() == ["", "a", "b"] and len(e) == 3
    path = e.save(tmp_path / "emb")
    assert path == tmp_path / "emb" and sorted(p.name for p in tmp_path.iterdir()) == ["emb"]  # exactly as asked
    back = Embedding.load(path)
    np.testing.assert_array_equal(back.features, e.features)
    np.testing.assert_array_equal(back.coords, e.coords)
    assert (back.paths, back.labels, back.method, back.predicted) == (e.paths, e.labels, "tsne", predicted)


def test_embedding_rejects_mismatched_rows_and_bad_files(tmp_path):
    with pytest.raises(UserError, match="coords must be 3 x 2"):
        Embedding(np.zeros((3, 4)), np.zeros((2, 2)), ["a"] * 3, ["x"] * 3, "pca")
    with pytest.raises(UserError, match="labels: 2 entries for 3"):
        Embedding(np.zeros((3, 4)), np.zeros((3, 2)), ["a"] * 3, ["x"] * 2, "pca")
    with pytest.raises(UserError, match="no such file"):
        Embedding.load(tmp_path / "missing.npz")
    other = tmp_path / "other.npz"
    np.savez(other, weights=np.zeros(3))
    with pytest.raises(UserError, match="missing coords, features, labels, paths"):
        Embedding.load(other)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(UserError, match="not a readable"):
        Embedding.load(junk)


def test_preload_imports_the_libraries():
    from vizapp.collection.projection import preload

    steps = []
    preload(progress=lambda done, total, text: steps.append((done, total)))
    assert steps[-1] == (3, 3) and {"sklearn.decomposition", "openTSNE", "umap"} <= set(sys.modules)

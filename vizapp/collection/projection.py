"""Feature vectors laid out in 2-D: PCA, t-SNE (openTSNE) and UMAP (umap-learn) as a job.

``project`` is a job (``progress`` / ``cancel`` keywords): PCA straight to 2-D, or PCA to
50 dimensions then t-SNE (openTSNE) or UMAP (umap-learn). The record it fills is
:class:`vizapp.collection.embedding.Embedding`.

scikit-learn, openTSNE and umap-learn are imported inside ``project`` (or ahead of use by
the ``preload`` job: their imports hold the GIL for a few hundred ms); importing this
module is cheap. BLAS runs on cores - 1 during a projection, as torch does in the app.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import os
import re
import warnings

import numpy as np

from vizapp.core.errors import Cancelled, UserError
from vizapp.core.jobs import CancelToken, Progress, no_progress

__all__ = ["METHODS", "METHOD_NAMES", "PCA_DIMS", "project", "preload"]

#: Projection methods, in the order a menu lists them.
METHODS = ("pca", "tsne", "umap")
METHOD_NAMES = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}
#: t-SNE and UMAP first reduce to this many dimensions with PCA (when there are more).
PCA_DIMS = 50


def _workers() -> int:
    """Threads for openTSNE: all cores but one, which stays with the GUI."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


def _check_features(features) -> np.ndarray:
    x = np.asarray(features)
    if x.ndim != 2:
        raise UserError(f"features must be a 2-D array (one row per image), got shape {x.shape}")
    if x.shape[0] < 3:
        raise UserError(f"an embedding needs at least 3 images, got {x.shape[0]}; add more images")
    if x.shape[1] < 1:
        raise UserError("the feature vectors are empty (0 dimensions); pick a layer with an output")
    x = np.asarray(x, dtype=np.float32)
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise UserError(f"{bad.size} feature rows hold NaN or infinity (first: row {bad[0]}); "
                        "check the model's output for those images or drop them")
    if not np.any(x != x[0]):
        raise UserError(f"all {x.shape[0]} feature vectors are identical: nothing to lay out; "
                        "pick a layer whose output differs between images")
    return x


def _pca(x: np.ndarray, dims: int, seed: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    dims = min(dims, x.shape[0], x.shape[1])
    out = PCA(n_components=dims, random_state=seed).fit_transform(x)
    return np.asarray(out, dtype=np.float32)


def _check_init(init, n: int) -> np.ndarray | None:
    if init is None:
        return None
    a = np.asarray(init, dtype=np.float32)
    if a.shape != (n, 2):
        raise UserError(f"init must be {n} x 2 (a previous layout of the same images), got {a.shape}")
    if not np.isfinite(a).all():
        raise UserError("init holds NaN or infinity; pass the coordinates of a finished layout")
    return a


def project(
    features,
    method: str = "pca",
    *,
    seed: int = 0,
    init=None,
    n_iter: int | None = None,
    progress: Progress = no_progress,
    cancel: CancelToken | None = None,
) -> np.ndarray:
    """Lay out ``features`` (N x D) in 2-D; returns N x 2 float32 coordinates.

    ``method``: ``"pca"`` (straight to 2-D), ``"tsne"`` or ``"umap"`` (PCA to 50 dims
    first when D > 50). The same ``seed`` gives the same layout on the same machine (the
    thread count, cores - 1, can change the last bits). ``init`` (N x 2), for t-SNE and
    UMAP, starts from a previous layout so it stays put (PCA ignores it).
    ``n_iter`` overrides t-SNE's optimisation iterations (after its 250 exaggerated ones)
    or UMAP's epochs. Progress is reported in percent; ``cancel`` is polled between
    stages and during the optimisation.
    """
    if method not in METHODS:
        raise UserError(f"unknown projection method {method!r}; choose one of {', '.join(METHODS)}")
    x = _check_features(features)
    init = _check_init(init, x.shape[0])
    check = cancel.check if cancel is not None else (lambda: None)
    check()
    _load(method)
    with _leave_a_core():
        coords = _project(x, method, seed, init, n_iter, progress, check)
    check()
    progress(100, 100, f"{METHOD_NAMES[method]} done")
    return np.ascontiguousarray(coords, dtype=np.float32)


def preload(*, progress: Progress = no_progress, cancel: CancelToken | None = None) -> None:
    """Import scikit-learn, openTSNE and umap-learn (and umap's numba cache) ahead of use.

    A job for start-up: importing these holds the GIL for up to a few hundred ms at a
    time (shared libraries, numba), which a first ``project`` would otherwise cost the
    GUI in the middle of the session. Missing optional libraries are skipped.
    """
    for i, method in enumerate(METHODS):
        if cancel is not None:
            cancel.check()
        progress(i, len(METHODS), f"loading the {METHOD_NAMES[method]} libraries")
        _load(method)
    _cache_umap_jit()
    progress(len(METHODS), len(METHODS), "embedding libraries loaded")


_LIBRARIES = {"pca": ["sklearn.decomposition"], "tsne": ["sklearn.decomposition", "openTSNE"],
              "umap": ["sklearn.decomposition", "umap"]}


def _load(method: str) -> None:
    """Import what ``method`` runs on (a missing openTSNE is not an error: see ``_tsne``).

    Done before ``_leave_a_core``: threadpoolctl limits only the BLAS libraries already
    loaded, and SciPy brings its own; a first call that loaded it inside the limit would
    run it on every core, and give different bits from the next call.
    """
    for name in _LIBRARIES[method]:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ImportWarning)  # "Tensorflow not installed; ParametricUMAP"
                importlib.import_module(name)
        except ImportError:
            if name != "openTSNE":
                raise


def _leave_a_core():
    """BLAS (PCA, distances) on all cores but one, so the GUI thread still gets a core."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=_workers())


def _project(x, method, seed, init, n_iter, progress, check) -> np.ndarray:
    if method == "pca":
        progress(0, 100, "PCA to 2 dimensions")
        if x.shape[1] == 1:
            coords = np.hstack([x - x.mean(), np.zeros_like(x)])
        else:
            coords = _pca(x, 2, seed)
        return coords
    if x.shape[1] > PCA_DIMS:
        progress(0, 100, f"PCA to {PCA_DIMS} dimensions")
        x = _pca(x, PCA_DIMS, seed)
    check()
    run = _tsne if method == "tsne" else _umap
    return run(x, seed, init, n_iter, progress, check)


def _tsne(x, seed, init, n_iter, progress, check) -> np.ndarray:
    n = x.shape[0]
    perplexity = float(min(30.0, max(1.0, (n - 1) / 3.0)))
    try:
        import openTSNE
    except ImportError:
        return _tsne_sklearn(x, seed, init, n_iter, perplexity, progress, check)
    from openTSNE.initialization import rescale

    exaggerated = 250
    n_iter = 500 if n_iter is None else max(0, int(n_iter))
    total = exaggerated + n_iter
    phase_start = 0  # openTSNE counts the iterations of each of its two phases from 0

    def callback(iteration: int, _error: float, _embedding) -> bool:
        check()
        done = phase_start + iteration
        progress(30 + 70 * done // max(total, 1), 100, f"t-SNE: iteration {done}/{total}")
        return False  # True would stop the optimisation

    tsne = openTSNE.TSNE(
        perplexity=perplexity,
        n_iter=n_iter,
        early_exaggeration_iter=exaggerated,
        n_jobs=_workers(),
        random_state=seed,
        callbacks=callback,
        callbacks_every_iters=25,
    )
    progress(5, 100, "t-SNE: nearest neighbours and affinities")
    # openTSNE wants a starting layout with a tiny spread (std 1e-4), as its own PCA start has
    start = None if init is None else rescale(init.astype(np.float64), inplace=False)
    embedding = tsne.prepare_initial(x, initialization=start)
    check()
    progress(30, 100, f"t-SNE: iteration 0/{total}")
    embedding.optimize(n_iter=exaggerated, exaggeration=tsne.early_exaggeration,
                       momentum=tsne.initial_momentum, inplace=True, propagate_exception=True)
    phase_start = exaggerated
    if n_iter:
        embedding.optimize(n_iter=n_iter, exaggeration=tsne.exaggeration,
                           momentum=tsne.final_momentum, inplace=True, propagate_exception=True)
    return np.asarray(embedding, dtype=np.float32)


def _tsne_sklearn(x, seed, init, n_iter, perplexity, progress, check) -> np.ndarray:
    """scikit-learn's t-SNE, for installs without openTSNE (no progress inside, slower)."""
    from sklearn.manifold import TSNE

    start = "pca" if init is None else (init - init.mean(0)) / (init[:, 0].std() or 1.0) * 1e-4
    progress(5, 100, "t-SNE (scikit-learn)")
    steps = 250 + (500 if n_iter is None else max(0, int(n_iter)))
    # scikit-learn renamed n_iter to max_iter in 1.5
    key = "max_iter" if "max_iter" in inspect.signature(TSNE).parameters else "n_iter"
    kwargs = {key: max(250, steps)}
    out = TSNE(n_components=2, perplexity=perplexity, init=start, random_state=seed, **kwargs).fit_transform(x)
    check()
    return np.asarray(out, dtype=np.float32)


class _EpochReader:
    """The file umap-learn's tqdm bar writes to: it reads the epoch count and polls ``cancel``.

    umap-learn has no callbacks; its epoch loop is wrapped in tqdm, whose ``file`` it lets
    us choose. Raising :class:`~vizapp.core.errors.Cancelled` from ``write`` ends the loop; later
    writes (tqdm closing the bar) are swallowed so nothing is raised from a finaliser.
    """

    _COUNT = re.compile(r"(\d+)/(\d+)")

    def __init__(self, progress: Progress, check) -> None:
        self.progress = progress
        self.check = check
        self.stopped = False

    def write(self, text: str) -> int:
        if self.stopped:
            return len(text)
        found = self._COUNT.findall(text)
        try:
            self.check()
            if found:
                done, total = (int(v) for v in found[-1])
                self.progress(40 + int(60 * done / max(total, 1)), 100, f"UMAP: epoch {done}/{total}")
        except Cancelled:
            self.stopped = True
            raise
        return len(text)

    def flush(self) -> None:
        pass


_JIT_CACHED = False


def _cache_umap_jit() -> None:
    """Let umap-learn's (and pynndescent's) numba functions use numba's on-disk cache.

    umap-learn compiles its graph and layout functions on every first call in a process
    (about 10 s on 2 cores) because they are not declared ``cache=True``; enabling the
    cache makes that a once-per-install cost (later processes load them in well under a
    second). pynndescent's helpers too, for installs without openTSNE (see ``_annoy_knn``).
    numba keeps the cache beside the package, or in the user's cache folder when that
    is read-only; where neither works, the functions are simply compiled as before.
    """
    global _JIT_CACHED
    if _JIT_CACHED:
        return
    _JIT_CACHED = True
    try:
        import pynndescent.kernels
        import pynndescent.pynndescent_
        import pynndescent.rp_trees
        import pynndescent.utils
        import umap.layouts
        import umap.umap_
        import umap.utils
        from numba.core.caching import NullCache
        from numba.core.dispatcher import Dispatcher

        for module in (umap.umap_, umap.layouts, umap.utils, pynndescent.pynndescent_,
                       pynndescent.utils, pynndescent.kernels, pynndescent.rp_trees):
            for fn in list(vars(module).values()):
                if isinstance(fn, Dispatcher) and isinstance(getattr(fn, "_cache", None), NullCache):
                    fn.enable_caching()
    except (ImportError, AttributeError, RuntimeError, OSError):  # a numba without these internals
        return


def _numba_threads(n: int) -> None:
    """numba's parallel loops (umap-learn, pynndescent) on ``n`` threads, for this thread only."""
    try:
        import numba

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    except (ImportError, ValueError, AttributeError):
        return


#: From this many points umap-learn switches from exact neighbours to pynndescent.
_UMAP_APPROX_FROM = 4096


def _annoy_knn(x: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Each point's ``k`` nearest neighbours, itself first (umap-learn's layout), by Annoy.

    openTSNE's Annoy (C++) instead of umap-learn's pynndescent: pynndescent's search
    cannot be cached by numba and compiles for ~20 s in every process. ``None`` when
    openTSNE is not installed (umap-learn then searches itself).
    """
    try:
        from openTSNE.nearest_neighbors import Annoy
    except ImportError:
        return None
    idx, dist = Annoy(x, k - 1, metric="euclidean", n_jobs=_workers(), random_state=seed).build()
    own = np.arange(len(x))[:, None]
    indices = np.hstack([own, idx]).astype(np.int32)
    distances = np.hstack([np.zeros_like(own, dtype=np.float32), dist]).astype(np.float32)
    return indices, distances


def _umap(x, seed, init, n_iter, progress, check) -> np.ndarray:
    n = x.shape[0]
    progress(2, 100, "UMAP: loading (a first run compiles numba code, ~10 s)")
    import umap

    _cache_umap_jit()
    _numba_threads(_workers())
    check()
    reader = _EpochReader(progress, check)
    k = int(min(15, n - 1))
    progress(5, 100, "UMAP: nearest neighbours")
    knn = _annoy_knn(x, k, seed) if n >= _UMAP_APPROX_FROM else None
    check()
    model = umap.UMAP(
        n_neighbors=k,
        n_components=2,
        init="spectral" if init is None else init.astype(np.float64),
        n_epochs=None if n_iter is None else max(1, int(n_iter)),
        random_state=seed,
        n_jobs=1,  # a seed makes umap-learn single-threaded anyway; saying so avoids its warning
        tqdm_kwds={"disable": False, "file": reader, "mininterval": 0.1, "ascii": True},
        precomputed_knn=(None, None, None) if knn is None else (*knn, None),
    )
    progress(20, 100, "UMAP: fuzzy graph" if knn is not None else "UMAP: nearest neighbours and fuzzy graph")
    with warnings.catch_warnings():
        # Small collections: spectral init falls back to random with a warning; fine here.
        warnings.filterwarnings("ignore", category=UserWarning, module=r"umap\..*")
        warnings.filterwarnings("ignore", message=r".*n_jobs.*overridden.*")
        warnings.filterwarnings("ignore", module=r"numba\..*")  # "cannot cache ..." notices
        warnings.filterwarnings("ignore", message=r"Graph is not fully connected")  # far-apart clusters
        out = model.fit_transform(x)
    return np.asarray(out, dtype=np.float32)

"""A collection's feature vectors and their 2-D layout, searched by cosine similarity.

``Embedding`` is the record the view renders and the file the CLI writes; its layout comes
from :func:`vizapp.collection.projection.project`. ``nearest`` is a brute-force cosine
search in row chunks, so 100k x 1280 features never cost an N x N matrix nor a
normalised copy.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vizapp.core.errors import UserError

__all__ = ["Embedding", "nearest", "normalize_rows", "subset_stats"]

_CHUNK = 8192


def _str_list(values, n: int, what: str) -> list[str]:
    out = [str(v) for v in values]
    if len(out) != n:
        raise UserError(f"{what}: {len(out)} entries for {n} feature rows; give one per image")
    return out


@dataclass
class Embedding:
    """A collection's feature vectors and their 2-D layout, one row per image.

    ``paths`` hold an image path or a dataset key such as ``"mnist:train:12"``;
    ``labels`` the ground truth (``""`` where the collection has none); ``predicted``
    the model's class per row, when known.
    """

    features: np.ndarray
    coords: np.ndarray
    paths: list[str]
    labels: list[str]
    method: str
    predicted: list[str] | None = None

    def __post_init__(self) -> None:
        self.features = np.asarray(self.features, dtype=np.float32)
        self.coords = np.asarray(self.coords, dtype=np.float32)
        if self.features.ndim != 2:
            raise UserError(f"features must be N x D, got shape {self.features.shape}")
        n = self.features.shape[0]
        if self.coords.shape != (n, 2):
            raise UserError(f"coords must be {n} x 2 (one 2-D point per feature row), got {self.coords.shape}")
        self.paths = _str_list(self.paths, n, "paths")
        self.labels = _str_list(self.labels, n, "labels")
        if self.predicted is not None:
            self.predicted = _str_list(self.predicted, n, "predicted")
        self.method = str(self.method)

    def __len__(self) -> int:
        return self.features.shape[0]

    def label_names(self) -> list[str]:
        """The distinct ground-truth labels, sorted."""
        return sorted(set(self.labels))

    def save(self, path: str | Path) -> Path:
        """Write an npz to exactly ``path`` (keys features, coords, paths, labels, method [, predicted])."""
        arrays = {
            "features": self.features,
            "coords": self.coords,
            "paths": np.asarray(self.paths, dtype=np.str_),
            "labels": np.asarray(self.labels, dtype=np.str_),
            "method": np.asarray(self.method, dtype=np.str_),
        }
        if self.predicted is not None:
            arrays["predicted"] = np.asarray(self.predicted, dtype=np.str_)
        from vizapp.core.files import write_npz

        return write_npz(path, **arrays)  # atomic: a full disk leaves an earlier file as it was

    @classmethod
    def load(cls, path: str | Path) -> Embedding:
        """Read a file written by :meth:`save` (no pickles are ever loaded)."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                missing = {"features", "coords", "paths", "labels"} - set(data.files)
                if missing:
                    raise UserError(f"{path}: not an embedding file (missing {', '.join(sorted(missing))}); "
                                    "write one with Embedding.save or `vizapp embed`")
                return cls(
                    features=data["features"],
                    coords=data["coords"],
                    paths=data["paths"].tolist(),
                    labels=data["labels"].tolist(),
                    method=str(data["method"]) if "method" in data.files else "",
                    predicted=data["predicted"].tolist() if "predicted" in data.files else None,
                )
        except FileNotFoundError as exc:
            raise UserError(f"{path}: no such file") from exc
        except (OSError, ValueError) as exc:
            if isinstance(exc, UserError):
                raise
            raise UserError(f"{path}: not a readable .npz embedding file ({exc})") from exc


# --- search ----------------------------------------------------------------------------


def normalize_rows(features) -> np.ndarray:
    """Rows scaled to unit length (float32; zero rows stay zero)."""
    x = np.asarray(features, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def nearest(
    features,
    query: int | np.ndarray,
    k: int = 8,
    exclude_self: bool = True,
    *,
    chunk: int = _CHUNK,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows of ``features`` most cosine-similar to ``query``, most similar first.

    ``query`` is a row index (then ``exclude_self`` leaves that row out), a feature vector
    (D,) giving ``(k,)`` arrays, or Q vectors (Q, D) giving ``(Q, k)`` arrays. Returns
    ``(indices, similarities)``. Brute force over ``chunk`` rows at a time: memory stays
    at chunk x Q, never N x N nor a normalised copy of ``features``. Zero vectors have
    similarity 0 to everything. Equal similarities are ordered by index.
    """
    x = np.asarray(features)
    if x.ndim != 2:
        raise UserError(f"features must be a 2-D array (one row per image), got shape {x.shape}")
    n = x.shape[0]
    skip = None
    if isinstance(query, (int, np.integer)):
        if not -n <= int(query) < n:
            raise UserError(f"image index {int(query)} is out of range for {n} images")
        skip = int(query) % n if exclude_self else None
        q = x[int(query)][None, :]
        single = True
    else:
        q = np.asarray(query)
        single = q.ndim == 1
        q = np.atleast_2d(q)
        if q.ndim != 2 or q.shape[1] != x.shape[1]:
            raise UserError(f"query must hold {x.shape[1]}-long feature vectors, got shape {np.shape(query)}")
    q = normalize_rows(q)
    k = max(0, min(int(k), n - (skip is not None)))
    chunk = max(1, int(chunk))
    best_i = np.empty((q.shape[0], 0), dtype=np.int64)
    best_s = np.empty((q.shape[0], 0), dtype=np.float32)
    for start in range(0, n, chunk):
        block = np.asarray(x[start:start + chunk], dtype=np.float32)
        sims = normalize_rows(block) @ q.T  # (c, Q)
        idx = np.arange(start, start + block.shape[0])
        if skip is not None and start <= skip < start + block.shape[0]:
            sims[skip - start] = -np.inf
        sims = sims.T  # (Q, c)
        if k < sims.shape[1]:  # keep this chunk's top k only (ties at the cut are resolved below)
            part = np.argpartition(-sims, k, axis=1)[:, :k]
            sims = np.take_along_axis(sims, part, axis=1)
            cand = idx[part]
        else:
            cand = np.broadcast_to(idx, sims.shape)
        best_i = np.concatenate([best_i, cand], axis=1)
        best_s = np.concatenate([best_s, sims], axis=1)
        order = np.lexsort((best_i, -best_s), axis=1)[:, :k]
        best_i = np.take_along_axis(best_i, order, axis=1)
        best_s = np.take_along_axis(best_s, order, axis=1)
    if single:
        return best_i[0], best_s[0]
    return best_i, best_s


def subset_stats(labels, indices) -> dict[str, int]:
    """Counts of each label among ``indices``, most frequent first (ties by name)."""
    picked = Counter(labels[int(i)] for i in np.asarray(indices, dtype=np.int64).ravel())
    return dict(sorted(picked.items(), key=lambda kv: (-kv[1], kv[0])))

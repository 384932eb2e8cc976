"""The receptive post-pass of an index: each winner's unit as a box of its original image.

After the streaming pass, every top-k winner's unit is mapped to the box of the original
image it sees (:mod:`vizapp.explain.receptive`), through the crop and the resize.
"""

from __future__ import annotations

import numpy as np

from models import LoadedModel
from vizapp.core.jobs import CancelToken

__all__ = ["winner_boxes"]


def winner_boxes(loaded: LoadedModel, layers, meta, tops, sizes, cancel: CancelToken | None = None) -> dict[str, np.ndarray]:
    """``k x C x 4`` boxes in original-image pixels for every winner of every layer: the unit's
    receptive field mapped back through the crop and the resize, widened by the resize filter's
    reach (``Preprocess.fields_to_original``)."""
    from vizapp.explain.receptive import unit_boxes

    result = {}
    sizes = np.asarray(sizes, np.int64).reshape(-1, 2)
    for layer in layers:
        t = tops[layer]
        images = t.images.cpu().numpy()
        positions = t.positions.cpu().numpy()
        h, w = meta[layer]["map_size"]
        ys, xs = positions // w, positions % w
        valid = images >= 0
        wanted = [(int(y), int(x)) for y, x in zip(ys[valid], xs[valid], strict=True)]
        found, _method = unit_boxes(loaded, layer, wanted, (h, w), bool(meta[layer]["tokens"]), cancel)
        meta[layer]["field"] = _method
        out = np.zeros((*images.shape, 4), dtype=np.int64)
        if wanted:
            model_boxes = np.asarray([found[p] for p in wanted], np.float64)
            out[valid] = loaded.preprocess.fields_to_original(model_boxes, sizes[images[valid]])
        result[layer] = out
    return result

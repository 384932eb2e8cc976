"""StreamingTopK's tie counts and channel minimum: exact for any batching, and a merge of
round-robin shards (torchrun) gives the same counts as one pass. Checked against brute
force on small integer maps, where ties are everywhere."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vizapp.collection.patches import unit_flags
from vizapp.collection.topk import StreamingTopK


def _feed(top: StreamingTopK, maps: torch.Tensor, ids: torch.Tensor, batch: int) -> StreamingTopK:
    for s in range(0, len(ids), batch):
        top.update(maps[ids[s: s + batch]], ids[s: s + batch])
    return top


def _maps(seed: int, n: int = 29, c: int = 7) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    maps = torch.randint(0, 4, (n, c, 3, 4), generator=g).float()  # small integers: many ties
    maps[:, 0] = 0.0  # dead: one value everywhere
    maps[:, 1] = 6.0  # saturated everywhere: dead too (one value)
    maps[:, 2] = torch.randint(0, 2, (n, 3, 4), generator=g).float() * 6.0  # saturates in most images
    maps[:, 2, 0, 0] = 0.0  # ... but not dead
    maps[5, 3, 1, 1] = 9.0  # one clear winner, the rest ties
    return maps


def _brute(maps: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(ties left out per channel, minimum per channel)``."""
    flat = maps.reshape(maps.shape[0], maps.shape[1], -1).numpy()
    best, low = flat.max(axis=2), flat.min(axis=(0, 2))
    ties = np.zeros(maps.shape[1], np.int64)
    for ch in range(maps.shape[1]):
        if len(best) < k:
            continue
        ranked = np.sort(best[:, ch])[::-1]
        kth = ranked[k - 1]
        ties[ch] = int((best[:, ch] == kth).sum()) - int((ranked[:k] == kth).sum())
    return ties, low


@pytest.mark.parametrize(("k", "batch"), [(1, 1), (3, 4), (5, 2), (9, 7), (29, 5), (40, 3)])
def test_ties_and_minimum_equal_brute_force(k, batch):
    maps = _maps(k * 10 + batch)
    top = _feed(StreamingTopK(k, maps.shape[1]), maps, torch.arange(len(maps)), batch)
    ties, low = _brute(maps, k)
    assert top.ties.tolist() == ties.tolist()
    assert top.low.tolist() == low.tolist()
    if k < len(maps):
        assert top.ties[0] == len(maps) - k and top.ties[1] == len(maps) - k  # everything ties in a dead channel
    state = top.state()
    for ch in range(maps.shape[1]):
        flags = unit_flags(state, ch)
        assert flags.dead == (ch in (0, 1))
        assert flags.tied_at_k == (0 if ties[ch] == 0 else ties[ch] + int((state["values"][:, ch]
                                                                           == flags.kth_value).sum()))
    assert not unit_flags(state, 2).dead and unit_flags(state, 2).value == 6.0


@pytest.mark.parametrize(("world", "k", "batch"), [(2, 5, 4), (3, 5, 1), (5, 8, 3), (4, 30, 7), (3, 1, 2)])
def test_merged_shards_count_ties_as_one_pass(world, k, batch):
    maps = _maps(world * 100 + k)
    n, c = maps.shape[:2]
    one = _feed(StreamingTopK(k, c), maps, torch.arange(n), batch)
    shards = [_feed(StreamingTopK(k, c), maps, torch.arange(rank, n, world), batch) for rank in range(world)]
    merged = StreamingTopK.merge([StreamingTopK.from_state(s.state()) for s in shards])
    for name in ("values", "images", "positions", "ties", "low"):
        assert torch.equal(getattr(merged, name), getattr(one, name)), name
    assert torch.equal(StreamingTopK.merge(shards[::-1]).ties, one.ties)


def test_a_state_without_tie_counts_is_not_resumed():
    top = _feed(StreamingTopK(3, 7), _maps(1), torch.arange(29), 4)
    state = top.state()
    del state["ties"]
    with pytest.raises(KeyError):
        StreamingTopK.from_state(state)
    # An index written before the counts: no flags rather than wrong ones.
    old = {k: v for k, v in top.state().items() if k in ("values", "images", "positions")}
    assert unit_flags(old, 0).lines == [] and not unit_flags(old, 0).dead

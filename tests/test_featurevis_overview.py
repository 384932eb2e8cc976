"""The layer overview (``vizapp.explain.featurevis_overview``): every channel's visualisation, the
engine's images group by group, kept on disk under a key of weights, layer and settings; a second
overview reads them back, a cancelled one resumes where it stopped. Qt-free, on the shapes CNN."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from models import load_model
from vizapp.core.errors import Cancelled, UserError
from vizapp.core.jobs import CancelToken
from vizapp.explain import featurevis
from vizapp.explain.featurevis_overview import cache_folder, layer_channels, overview, overview_key

LAYER = "conv1_2"


@pytest.fixture(scope="module")
def tinyvgg():
    return load_model("tinyvgg_shapes")


@pytest.fixture
def settings(tinyvgg):
    return featurevis.preset("Olah 2017", tinyvgg, steps=4, batch=3)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VIZAPP_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def drain(gen):
    got = []
    while True:
        try:
            got.append(next(gen))
        except StopIteration as end:
            return got, end.value


def counting(monkeypatch):
    calls = []
    real = featurevis.run

    def run(model, s, *args, **kwargs):
        calls.append(s.channel)
        return real(model, s, *args, **kwargs)

    monkeypatch.setattr(featurevis, "run", run)
    return calls, real


def test_every_channel_is_the_engines_image_and_a_second_overview_reads_the_cache(tinyvgg, settings, monkeypatch,
                                                                                  cache):
    n = layer_channels(tinyvgg, LAYER)
    assert n == 10
    calls, real = counting(monkeypatch)
    yielded, ov = drain(overview(tinyvgg, LAYER, replace(settings, channel=4, objective="class", target=1)))
    assert calls == [(0, 1, 2), (3, 4, 5), (6, 7, 8), (9,)]
    assert [c for c, _ in yielded] == list(range(10)) and ov.images.shape == (10, 32, 32, 3)
    assert (ov.cached, ov.computed, ov.layer) == (0, 10, LAYER) and ov.settings.objective == "channel"
    for group in calls:
        ref = real(tinyvgg, replace(settings, layer=LAYER, channel=group, batch=len(group)))
        for c, image in zip(group, ref.images, strict=True):
            assert np.array_equal(ov.images[c], image)
            assert np.array_equal(dict(yielded)[c], image)
    assert ov.folder == cache_folder(tinyvgg, LAYER, settings) and ov.folder.parent == cache / "featurevis"
    assert sorted(p.name for p in ov.folder.iterdir()) == ["c00000-00002-3.npz", "c00003-00005-3.npz",
                                                           "c00006-00008-3.npz", "c00009-00009-1.npz",
                                                           "manifest.json"]
    calls.clear()
    _, again = drain(overview(tinyvgg, LAYER, replace(settings, preview_every=2)))
    assert calls == [] and (again.cached, again.computed) == (10, 0)
    assert np.array_equal(again.images, ov.images)
    # A subset of channels: those groups only (here read back).
    got, some = drain(overview(tinyvgg, LAYER, settings, channels=[3, 4, 5]))
    assert calls == [] and [c for c, _ in got] == [3, 4, 5] and np.array_equal(some.images, ov.images[3:6])


def test_a_cancelled_overview_keeps_what_it_finished_and_resumes(tinyvgg, settings, monkeypatch):
    calls, _ = counting(monkeypatch)
    token = CancelToken()
    gen = overview(tinyvgg, LAYER, settings, cancel=token)
    first = [next(gen) for _ in range(3)]  # the first group
    token.cancel()
    with pytest.raises(Cancelled):
        next(gen)
    assert calls == [(0, 1, 2)]  # the next group was not started
    calls.clear()
    _, resumed = drain(overview(tinyvgg, LAYER, settings))
    assert calls == [(3, 4, 5), (6, 7, 8), (9,)] and (resumed.cached, resumed.computed) == (3, 7)
    assert all(np.array_equal(resumed.images[c], image) for c, image in first)
    # The same images as an overview never stopped (a fresh cache).
    monkeypatch.setenv("VIZAPP_CACHE", str(resumed.folder.parents[2] / "fresh"))
    _, whole = drain(overview(tinyvgg, LAYER, settings))
    assert np.array_equal(whole.images, resumed.images)


def test_the_key_follows_weights_layer_and_settings(tinyvgg, settings):
    key = overview_key(tinyvgg, LAYER, settings)
    assert key == overview_key(tinyvgg, LAYER, replace(settings, channel=3, preview_every=1, name="x"))
    assert key != overview_key(tinyvgg, "conv2_2", settings)
    for change in ({"steps": 5}, {"seed": 1}, {"batch": 2}, {"size": 48}, {"method": "pixel"}, {"jitter": 2}):
        assert key != overview_key(tinyvgg, LAYER, replace(settings, **change)), change
    other = load_model("tinyvgg_shapes")
    assert overview_key(other, LAYER, settings) == key
    with torch.no_grad():
        next(other.module.parameters()).add_(1.0)
    assert overview_key(other, LAYER, settings) != key


def test_bad_layers_and_channels_are_one_line(tinyvgg, settings):
    with pytest.raises(UserError, match="layer 'nope' is not"):
        drain(overview(tinyvgg, "nope", settings))
    with pytest.raises(UserError, match="channel: 10 is out of range; conv1_2 has 10 channels"):
        drain(overview(tinyvgg, LAYER, settings, channels=[2, 10]))

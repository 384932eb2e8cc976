"""Feature visualisation by optimisation (``vizapp.explain.featurevis``): the issue's faithfulness
list. The objective rises and beats every sample image, class visualisations are classified as
their class, the same seed gives the same image, DeepDream keeps the cat, the shared model is
left as it was; and ``vizapp visualize``."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from models import load_model
from vizapp.core.errors import Cancelled, UserError
from vizapp.core.jobs import CancelToken
from vizapp.explain import featurevis as fv
from vizapp.inputs.images import lab_samples, load_image


@pytest.fixture(scope="module")
def tinyvgg():
    return load_model("tinyvgg_shapes")


@pytest.fixture(scope="module")
def shapes():
    return [load_image(s.path) for s in lab_samples() if not s.name.startswith("digit")]


def model_state(model: torch.nn.Module) -> dict:
    """Everything a run could leave behind on a shared model."""
    return {
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [p.grad is None for p in model.parameters()],
        "training": [m.training for m in model.modules()],
        "hooks": sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
                     + len(getattr(m, "_backward_pre_hooks", {})) for m in model.modules()),
    }


def test_tinyvgg_channel_rises_beats_samples_and_seed_decides(tinyvgg, shapes):
    s = fv.preset("Olah 2017", tinyvgg, layer="conv2_2", channel=7, steps=48)
    a = fv.run(tinyvgg, s)
    b = fv.run(tinyvgg, s)
    c = fv.run(tinyvgg, replace(s, seed=1))
    assert a.images.shape == (1, 32, 32, 3) and a.images.dtype == np.uint8
    assert a.trace.shape == (48,) and a.trace.dtype == np.float32
    assert a.trace[-10:].mean() > a.trace[:10].mean() + 3.0
    assert np.array_equal(a.images, b.images) and np.array_equal(a.trace, b.trace)
    assert not np.array_equal(a.images, c.images)
    excited = fv.activation(tinyvgg, a.images, "conv2_2", 7)[0]
    assert excited > fv.activation(tinyvgg, shapes, "conv2_2", 7).max() + 3.0
    assert a.description == "conv2_2 channel 7 (Olah 2017)" and a.model == tinyvgg.title


def test_generator_previews_cancel_and_the_model_is_left_as_it_was(tinyvgg):
    model = tinyvgg.module
    before = model_state(model)
    s = fv.Settings(layer="conv1_2", channel=2, steps=10, preview_every=4, jitter=1)
    steps = list(fv.visualize(tinyvgg, s))
    assert [st.step for st in steps] == list(range(1, 11)) and {st.steps for st in steps} == {10}
    assert [st.step for st in steps if st.preview is not None] == [4, 8, 10]
    assert steps[3].preview.shape == (1, 32, 32, 3) and steps[3].preview.dtype == np.uint8
    token = CancelToken()
    gen = fv.visualize(tinyvgg, replace(s, steps=100), cancel=token)
    next(gen)
    next(gen)
    token.cancel()
    with pytest.raises(Cancelled):
        next(gen)
    assert model_state(model) == before
    # a model in training mode comes back in training mode, its flags untouched
    model.train()
    model.conv1_1.weight.requires_grad_(False)
    try:
        before = model_state(model)
        fv.run(tinyvgg, replace(s, objective="class", target=3, layer=None))
        assert model_state(model) == before
    finally:
        model.conv1_1.weight.requires_grad_(True)
        model.eval()


@pytest.mark.parametrize(("changes", "words"), [
    ({"layer": "nope"}, "layer 'nope'"),
    ({"channel": 10}, "channel: 10 is out of range"),
    ({"channel": None}, "channel"),
    ({"objective": "class", "target": 8}, "target: class 8"),
    ({"objective": "class", "target": None}, "target"),
    ({"objective": "neuron", "neuron": (10, 0)}, "neuron: (10, 0)"),
    ({"objective": "nope"}, "objective 'nope'"),
    ({"method": "nope"}, "method 'nope'"),
    ({"size": 4}, "size: 4 px"),
    ({"steps": 0}, "steps"),
    ({"octaves": 3}, "octaves"),
    ({"channel": (1, 2), "batch": 3}, "channel: 2 values for a batch of 3"),
])
def test_bad_settings_are_one_line_user_errors(tinyvgg, changes, words):
    s = replace(fv.Settings(layer="conv2_2", channel=1, steps=2), **changes)
    with pytest.raises(UserError) as err:
        fv.run(tinyvgg, s)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_presets_are_named_after_the_papers(tinyvgg):
    assert set(fv.PRESETS) == {"Simonyan 2014", "Yosinski 2015", "Olah 2017", "DeepDream"}
    assert fv.PRESETS["Olah 2017"].method == "fourier" and fv.PRESETS["Olah 2017"].decorrelate
    assert fv.PRESETS["Yosinski 2015"].clip and fv.PRESETS["Yosinski 2015"].blur_every
    assert fv.PRESETS["DeepDream"].objective == "dream" and fv.PRESETS["DeepDream"].octaves > 1
    # jitter is given at 224 px and scaled to the model's input: 8 px -> 1 px at 32
    assert fv.preset("Olah 2017", tinyvgg).jitter == 1 and fv.preset("Olah 2017").jitter == 8
    assert fv.preset("Olah 2017", tinyvgg, layer="conv2_2").name == "Olah 2017"
    with pytest.raises(UserError, match="preset 'x'"):
        fv.preset("x")

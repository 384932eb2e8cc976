"""What ``vizapp.probing.inference.run`` does beyond preprocessing and the forward pass: no walk over
the modules of a model already in eval mode, and the modes restored exactly."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import nn

from models import LoadedModel, Preprocess
from vizapp.probing.inference import run, training_modules


class _Counting(nn.Sequential):
    """Counts ``train()`` calls (``eval()`` is ``train(False)``): each one walks every module."""

    calls = 0

    def train(self, mode: bool = True):
        type(self).calls += 1
        return super().train(mode)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return _Counting(
        nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.Dropout(0.5), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Dropout(0.5), nn.Linear(8, 4),
    )


def _image() -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8))


def _loaded(net: nn.Module) -> LoadedModel:
    return LoadedModel("n", "n", "cnn", net, Preprocess(resize=32, crop=32), ["a", "b", "c", "d"], source="tests")


def test_a_model_in_eval_mode_is_not_walked():
    net = _net().eval()
    _Counting.calls = 0
    result = run(_loaded(net), _image(), ["0"])
    assert _Counting.calls == 0
    assert not any(m.training for m in net.modules())
    with torch.inference_mode():
        expected = net(Preprocess(resize=32, crop=32).batch(_image()))
    np.testing.assert_allclose(result.logits, expected[0].numpy(), rtol=1e-6)
    assert training_modules(net) == []


def test_modes_are_restored_exactly_and_the_pass_runs_in_eval_mode():
    net = _net().eval()
    with torch.inference_mode():
        expected = net(Preprocess(resize=32, crop=32).batch(_image()))[0].numpy()
    # Root in eval mode, one dropout left in training mode: the pass is in eval mode (no
    # dropout), and afterwards that dropout alone is in training mode again.
    net[5].train()
    result = run(_loaded(net), _image())
    np.testing.assert_allclose(result.logits, expected, rtol=1e-6)
    assert [m.training for m in net.modules()] == [False] * 6 + [True, False]
    # A model in training mode: evaluated in eval mode, then every module back in training mode.
    net.train()
    result = run(_loaded(net), _image())
    np.testing.assert_allclose(result.logits, expected, rtol=1e-6)
    assert all(m.training for m in net.modules())
    assert len(training_modules(net)) == 8


def test_the_display_image_is_the_input_with_the_normalisation_undone():
    # run() takes the display image from the resized and cropped pixels instead of undoing
    # the normalisation of the input: the same picture, to the grey level.
    torch.manual_seed(0)
    grey = nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()
    cases = [(_loaded(_net().eval()), _image()),
             (LoadedModel("g", "g", "cnn", grey, Preprocess(resize=28, crop=28, mean=(0.13,), std=(0.31,)), None,
                          source="tests"), _image().convert("L"))]
    for loaded, image in cases:
        result = run(loaded, image)
        assert result.display.shape == (loaded.preprocess.crop, loaded.preprocess.crop, 3)
        assert result.display.flags["C_CONTIGUOUS"]
        np.testing.assert_array_equal(result.display, loaded.preprocess.to_display(result.input))
        np.testing.assert_array_equal(result.input, loaded.preprocess.batch(image).numpy())

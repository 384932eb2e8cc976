"""The Attention and Attribution docks inside the window, against real models (offscreen)."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gui


def wait_idle(qtbot, w, timeout=120_000):
    qtbot.waitUntil(lambda: w.ready and w.runner.idle(), timeout=timeout)


def test_attributions_run_when_their_dock_is_raised_and_follow_the_picked_class(qtbot, window):
    from vizapp.explain.attribution import attribute

    w = window
    w.start()
    wait_idle(qtbot, w)
    view = w.attribution_view
    # Hidden behind the feature maps: nothing was computed yet.
    assert all(view.panel_image(m) is None for m in view.current_methods())
    w.docks["attribution"].raise_()
    qtbot.waitUntil(lambda: w.runner.idle() and all(view.panel_image(m) is not None for m in view.current_methods()),
                    timeout=120_000)
    s = w.session
    top = w.predictions_view.predictions()[0].index
    shown = view.results["gradcam"]
    assert shown.target == top
    expected = attribute(s.model, s.image, "gradcam")
    np.testing.assert_allclose(shown.map, expected.map, atol=1e-5)
    # A click on the third prediction bar explains that class instead.
    third = w.predictions_view.predictions()[2].index
    w.pick_class(third)
    qtbot.waitUntil(lambda: w.runner.idle() and view.results.get("gradcam") is not None
                    and view.results["gradcam"].target == third, timeout=120_000)
    assert view.current_target() == third
    again = attribute(s.model, s.image, "gradcam", target=third)
    np.testing.assert_allclose(view.results["gradcam"].map, again.map, atol=1e-5)


def test_attention_dock_on_a_cnn_says_why_and_on_a_vit_shows_every_head(qtbot, window):
    from vizapp.explain.attention import analyse_attention

    w = window
    w.start()
    wait_idle(qtbot, w)
    w.docks["attention"].raise_()
    qtbot.waitUntil(lambda: w.runner.idle() and w.attention_view.message_shown()
                    and "no self-attention" in w.attention_view.message.text(),
                    timeout=60_000)
    assert not w.last_error  # a CNN in the attention dock is not an error

    w.open_model("vit_tiny_untrained")
    qtbot.waitUntil(lambda: w.session.model.name == "vit_tiny_untrained" and w.runner.idle()
                    and w.attention_view.result is not None, timeout=120_000)
    r = w.attention_view.result
    assert r.attention.shape == (12, 3, 197, 197) and not r.trained
    assert "UNTRAINED" in w.message.text() or any("UNTRAINED" in n for n in r.notes)
    expected = analyse_attention(w.session.model, w.session.image)
    np.testing.assert_allclose(r.attention, expected.attention, atol=1e-6)
    # Gradient-weighted rollout for the class picked in the predictions.
    cls = w.predictions_view.predictions()[1].index
    w.attribution_view.set_target(cls)
    w.attention_view.gradient.setChecked(True)
    qtbot.waitUntil(lambda: w.runner.idle() and w.attention_view.result.gradient is not None, timeout=120_000)
    assert w.attention_view.result.target == cls
    np.testing.assert_allclose(w.attention_view.result.gradient,
                               analyse_attention(w.session.model, w.session.image, cls, True).gradient, atol=1e-6)
    # Another class picked in the predictions recomputes the gradient-weighted rollout for it.
    other = w.predictions_view.predictions()[3].index
    w.pick_class(other)
    qtbot.waitUntil(lambda: w.runner.idle() and w.attention_view.result.target == other, timeout=120_000)


def test_a_layer_step_recomputes_only_gradcam_and_escape_then_f5_recomputes(qtbot, window):
    w = window
    w.start()
    wait_idle(qtbot, w)
    view = w.attribution_view
    w.docks["attribution"].raise_()
    qtbot.waitUntil(lambda: w.runner.idle() and all(m in view.results for m in view.current_methods()),
                    timeout=120_000)
    submitted = []
    real_submit = w.runner.submit

    def spy(kind, *args, **kwargs):
        submitted.append(kind)
        return real_submit(kind, *args, **kwargs)

    w.runner.submit = spy
    view.layer_box.setChecked(True)  # Grad-CAM at the selected layer (conv_stem)
    qtbot.waitUntil(lambda: w.runner.idle() and view.results.get("gradcam") is not None
                    and view.results["gradcam"].layer == "conv_stem", timeout=60_000)
    w.session.step_layer(1)
    layer = w.session.layer
    qtbot.waitUntil(lambda: w.runner.idle() and view.results.get("gradcam") is not None
                    and view.results["gradcam"].layer == layer, timeout=60_000)
    assert [k for k in submitted if k.startswith("attribution:")] == ["attribution:gradcam"] * 2
    # Escape while the methods run: their panels say so, and F5 computes them again.
    submitted.clear()
    w.pick_class(w.predictions_view.predictions()[1].index)
    w.cancel_jobs()
    qtbot.waitUntil(w.runner.idle, timeout=60_000)
    cancelled = [m for m in view.current_methods() if "cancelled" in view.errors.get(m, "")]
    assert cancelled, "no panel says it was cancelled"
    w.refresh_explanations()
    qtbot.waitUntil(lambda: w.runner.idle() and all(m in view.results for m in view.current_methods()),
                    timeout=120_000)
    assert all(view.results[m].target == w.predictions_view.predictions()[1].index for m in view.current_methods())


def test_a_run_from_the_training_dock_opens_in_every_view(qtbot, tmp_path, window):
    from pathlib import Path

    from vizapp.training.config import TrainConfig

    w = window
    w.start()
    wait_idle(qtbot, w)
    panel = w.training_panel
    w.docks["training"].raise_()
    panel.set_config(TrainConfig(dataset="shapes", n=320, model="tinyvgg", epochs=1, batch_size=32, log_every=2))
    assert panel.start()
    qtbot.waitUntil(lambda: not panel.running() and panel.checkpoint_path() is not None, timeout=120_000)
    path = panel.checkpoint_path()
    assert tmp_path / "runs" in Path(path).parents
    panel.open_checkpoint()
    qtbot.waitUntil(lambda: w.session.model is not None and w.session.model.source.startswith(path)
                    and w.ready and w.runner.idle(), timeout=60_000)
    assert w.session.model.class_names[:3] == ["circle", "square", "triangle"]
    assert w.kernels_view.kernels is not None  # the first conv of the trained net

"""The Convolution dock (widgets/convolution_view.py, widgets/convolution_panels.py,
widgets/controllers/convolution.py): the numbers of a step are the engine's window, the keys and
a click move the window, the filled-in output is F.conv2d's, classic and typed kernels, the
settings and the formula, ReLU and the pool, a non-conv layer, classic vs learned, scenes and
``screenshot --view-option``. On the small shapes CNN (32 x 32 inputs: quick)."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt

pytestmark = pytest.mark.gui


@pytest.fixture
def conv(make_window, qtbot):
    """The shapes CNN on its star, conv1_1's filter 2, the Convolution dock raised and computed."""
    from vizapp.inputs.sources import resolve_image_source

    w = make_window(model="tinyvgg_shapes", image=str(resolve_image_source("star")), layer="conv1_1", device="cpu")
    w.session.select_channel(2)
    w.docks["convolution"].raise_()
    view = w.convolution_view
    qtbot.waitUntil(lambda: view.conv is not None and view.conv.kernel_name == "conv1_1 filter 2"
                    and w.runner.idle(), timeout=30_000)
    return w


def wait_for(qtbot, w, check):
    qtbot.waitUntil(lambda: w.runner.idle() and check(), timeout=30_000)


def reference(c) -> np.ndarray:
    """``torch.nn.functional.conv2d`` of the result's input and kernel with its settings."""
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(c.input)[None]
    if c.padding:
        x = F.pad(x, [c.padding] * 4, mode="constant" if c.padding_mode == "zeros" else "reflect")
    out = F.conv2d(x, torch.from_numpy(c.kernel)[None], torch.tensor([c.bias], dtype=torch.float32),
                   stride=c.stride, dilation=c.dilation)
    return out[0, 0].numpy()


def test_a_step_shows_the_engines_window_and_the_keys_move_it(conv, qtbot):
    w = conv
    view = w.convolution_view
    c = view.conv
    assert c.output.shape == (30, 30) and c.kernel.shape == (3, 3, 3)
    view.go_to(4, 7)
    shown, window = view.numbers.shown, c.window(4, 7)
    assert shown["stage"] == "conv" and (shown["i"], shown["j"]) == (4, 7)
    np.testing.assert_array_equal(shown["patch"], window.patch)
    np.testing.assert_array_equal(shown["products"], window.products)
    np.testing.assert_allclose(shown["products"], shown["patch"] * shown["weights"], rtol=1e-6)
    np.testing.assert_array_equal(shown["weights"], c.kernel)
    assert shown["total"] == pytest.approx(float(c.output[4, 7]), abs=1e-4)
    assert shown["total"] == pytest.approx(float(window.channel_sums.sum()) + c.bias, abs=1e-5)
    assert shown["bias"] == c.bias != 0
    assert "bias" in shown["sum_text"] and "(4, 7)" in shown["sum_text"]
    # Only the positions reached are filled in.
    out = view.shown_output()
    assert np.isnan(out[4, 8]) and np.isnan(out[29, 29]) and not np.isnan(out[4, 7]) and not np.isnan(out[0, 0])
    # The keys are the dock's while the focus is in it: Right/Left a position, Down/Up a row, Space plays.
    view.setFocus()
    qtbot.waitUntil(view.hasFocus)
    channel = w.session.channel
    qtbot.keyClick(view, Qt.Key_Right)
    assert view.position() == (4, 8)
    qtbot.keyClick(view, Qt.Key_Down)
    assert view.position() == (5, 8)
    qtbot.keyClick(view, Qt.Key_Left)
    qtbot.keyClick(view, Qt.Key_Up)
    assert view.position() == (4, 7) and w.session.channel == channel
    assert view.numbers.shown["i"] == 4 and view.numbers.shown["j"] == 7
    qtbot.keyClick(view, Qt.Key_Space)
    assert view.playing()
    qtbot.keyClick(view, Qt.Key_Space)
    assert not view.playing()
    # Elsewhere the arrows keep their meaning: the next channel, the window stays.
    here = view.position()
    w.feature_view.setFocus()
    qtbot.waitUntil(w.feature_view.hasFocus)
    qtbot.keyClick(w.feature_view, Qt.Key_Right)
    assert w.session.channel != channel
    wait_for(qtbot, w, lambda: view.conv.kernel_name == f"conv1_1 filter {w.session.channel}")
    assert view.position() == here  # the dock follows the channel, at the same position


def test_a_click_jumps_and_the_filled_in_output_is_conv2d(conv, qtbot):
    w = conv
    view = w.convolution_view
    c = view.conv
    # Click output pixel (row 12, column 20).
    point = view.out_view.mapViewToScene(pg_point(20.5, 12.5))
    widget_pos = view.canvas.mapFromScene(point)
    qtbot.mouseClick(view.canvas.viewport(), Qt.LeftButton, pos=widget_pos)
    assert view.position() == (12, 20)
    assert view.numbers.shown["total"] == pytest.approx(float(c.output[12, 20]), abs=1e-4)
    # Play to the end: the whole map, equal to F.conv2d.
    view.speed.setCurrentIndex(view.speed.count() - 1)
    view.play_button.click()
    assert view.playing()
    qtbot.waitUntil(lambda: not view.playing(), timeout=20_000)
    out = view.shown_output()
    assert view.position() == (29, 29) and not np.isnan(out).any()
    np.testing.assert_allclose(out, reference(c), atol=1e-4)
    np.testing.assert_allclose(out, c.output, atol=1e-6)


def pg_point(x: float, y: float):
    from PySide6.QtCore import QPointF

    return QPointF(x, y)


def test_classic_and_typed_kernels_and_the_settings_change_the_result(conv, qtbot):
    from vizapp.explain.convolution import classic_kernel, output_size

    w = conv
    view = w.convolution_view
    learned = view.conv.output.copy()
    view.kernel.setCurrentIndex(view.kernel.findData("sobel_x"))
    view.kernel.activated.emit(view.kernel.currentIndex())
    wait_for(qtbot, w, lambda: view.conv.kernel_name == "sobel_x")
    c = view.conv
    np.testing.assert_array_equal(c.kernel[0], classic_kernel("sobel_x", 3))
    assert c.output.shape == (32, 32) and c.output.shape != learned.shape  # stride 1, the size kept
    np.testing.assert_allclose(c.output, reference(c), atol=1e-4)
    assert "floor((32 + 2·1 - 3) / 1) + 1 = 32" in view.formula.text()
    view.ksize.setCurrentIndex(view.ksize.findData(5))
    view.ksize.activated.emit(view.ksize.currentIndex())
    wait_for(qtbot, w, lambda: view.conv.kernel.shape == (1, 5, 5))
    np.testing.assert_array_equal(view.conv.kernel[0], classic_kernel("sobel_x", 5))
    # One channel of the layer's input instead of the grey image.
    assert view.input.isEnabled()
    view.input.setCurrentIndex(view.input.findData(1))
    view.input.activated.emit(view.input.currentIndex())
    wait_for(qtbot, w, lambda: view.conv.input_name.endswith("channel 1"))
    assert view.conv.input.shape == (1, 32, 32)
    # The typed grid (3 x 3 again).
    view.ksize.setCurrentIndex(view.ksize.findData(3))
    view.kernel.setCurrentIndex(view.kernel.findData("custom"))
    view.kernel.activated.emit(view.kernel.currentIndex())
    assert view.editor.isVisible()
    view.editor.item(0, 0).setText("2")
    view.editor.item(1, 1).setText("-1")
    wait_for(qtbot, w, lambda: view.conv.kernel_name.startswith("custom") and view.conv.kernel[0, 0, 0] == 2)
    expected = np.zeros((3, 3), np.float32)
    expected[0, 0], expected[1, 1] = 2, -1
    np.testing.assert_array_equal(view.conv.kernel[0], expected)
    np.testing.assert_allclose(view.conv.output, reference(view.conv), atol=1e-4)
    # Stride, padding, dilation: the formula's numbers and the output's size.
    view.kernel.setCurrentIndex(view.kernel.findData("filter"))
    view.kernel.activated.emit(view.kernel.currentIndex())
    view.own.setChecked(False)
    view.stride.setValue(2)
    view.padding.setValue(2)
    view.dilation.setValue(2)
    wait_for(qtbot, w, lambda: view.conv.kernel_name == "conv1_1 filter 2" and view.conv.dilation == 2
             and view.conv.padding == 2 and view.conv.stride == 2)
    c = view.conv
    side = output_size(32, 3, 2, 2, 2)
    assert c.output.shape == (side, side) == (16, 16)
    assert "floor((32 + 2·2 - 5) / 2) + 1 = 16" in view.formula.text()
    assert "effective kernel 2·(3 - 1) + 1 = 5" in view.formula.text()
    assert "3·3·3·10 + 10 = 280 parameters (K·K·C_in·C_out + C_out)" in view.formula.text()
    np.testing.assert_allclose(c.output, reference(c), atol=1e-4)
    window = c.window(*view.position())
    assert list(window.rows[1:] - window.rows[:-1]) == [2, 2]  # the dilated samples
    view.padding_mode.setCurrentIndex(view.padding_mode.findData("reflect"))
    view.padding_mode.activated.emit(view.padding_mode.currentIndex())
    wait_for(qtbot, w, lambda: view.conv.padding_mode == "reflect")
    np.testing.assert_allclose(view.conv.output, reference(view.conv), atol=1e-4)


def test_relu_and_pool_are_stepped_with_their_values(conv, qtbot):
    view = conv.convolution_view
    c = view.conv
    view.set_stage("relu")
    assert view.position() == (0, 0)
    i, j = map(int, np.unravel_index(np.argmin(c.output), c.output.shape))
    view.go_to(i, j)
    shown = view.numbers.shown
    assert shown["stage"] == "relu" and shown["value"] == pytest.approx(float(c.output[i, j]))
    assert shown["value"] < 0 and shown["result"] == 0 == c.relu[i, j]
    view.set_stage("pool")
    assert view.stepper.shape == (15, 15) == c.pooled.shape
    view.go_to(3, 5)
    shown = view.numbers.shown
    np.testing.assert_array_equal(shown["values"], c.relu[6:8, 10:12])
    assert shown["result"] == pytest.approx(float(c.relu[6:8, 10:12].max())) == pytest.approx(float(c.pooled[3, 5]))
    view.end_button.click()
    np.testing.assert_allclose(view.shown_output(), c.pooled)
    # The average pool.
    view.pool.setCurrentIndex(view.pool.findData("avg"))
    view.pool.activated.emit(view.pool.currentIndex())
    qtbot.waitUntil(lambda: conv.runner.idle() and view.conv.pool == "avg", timeout=30_000)
    view.go_to(3, 5)
    assert view.numbers.shown["result"] == pytest.approx(float(view.conv.relu[6:8, 10:12].mean()), abs=1e-6)


def test_an_output_too_small_to_pool_shows_its_relu_and_says_so(conv, qtbot):
    w = conv
    view = w.convolution_view
    w.session.select_layer("conv2_1")  # its input is 16 x 16
    wait_for(qtbot, w, lambda: view.conv.kernel_name.startswith("conv2_1"))
    view.set_stage("pool")
    view.own.setChecked(False)
    view.padding.setValue(0)
    view.stride.setValue(8)  # floor((16 - 3) / 8) + 1 = 2: a 2 x 2 output, one pooled value
    wait_for(qtbot, w, lambda: view.conv.stride == 8 and view.conv.padding == 0)
    assert view.conv.output.shape == (2, 2) and view.conv.pooled.shape == (1, 1)
    assert view.stage_name() == "pool" and view.numbers.shown["stage"] == "pool"
    view.dilation.setValue(4)  # effective kernel 9: floor((16 - 9) / 8) + 1 = 1, nothing to pool
    wait_for(qtbot, w, lambda: view.conv.dilation == 4)
    assert view.conv.output.shape == (1, 1) and view.conv.pooled.size == 0
    assert view.stage_name() == "relu" and view.stage.currentData() == "relu"
    assert view.numbers.shown["stage"] == "relu" and view.numbers.shown["result"] == view.conv.relu[0, 0]
    assert "nothing to pool" in view.caption.text()
    view.set_stage("pool")  # asked again: still the ReLU, no error
    assert view.stage_name() == "relu" and "nothing to pool" in view.caption.text()


def test_a_layer_that_is_not_a_convolution_says_so(conv, qtbot):
    w = conv
    view = w.convolution_view
    w.session.select_layer("pool1")
    qtbot.waitUntil(w.runner.idle, timeout=30_000)
    assert view.note.isVisible()
    assert "'pool1' is not a convolution" in view.note.text() and "conv1_1" in view.note.text()
    assert view.conv is not None and view.conv.kernel_name.startswith("conv1_1")
    # Another conv layer of the model, from the dock's own list.
    view.layer.setCurrentIndex(view.layer.findData("conv1_2"))
    view.layer.activated.emit(view.layer.currentIndex())
    wait_for(qtbot, w, lambda: view.conv.kernel_name.startswith("conv1_2"))
    c = view.conv
    assert c.kernel.shape == (10, 3, 3) and c.output.shape == (28, 28)
    shown = view.numbers.shown
    assert shown["patch"].shape == (3, 3, 3) and shown["channels"] == 10  # three grids, seven more summed
    assert "7 more channels" in shown["sum_text"]
    assert shown["rest"] == pytest.approx(float(c.window(*view.position()).channel_sums[3:].sum()), abs=1e-5)
    # Selecting a conv layer in the window takes the dock along.
    w.session.select_layer("conv2_2")
    wait_for(qtbot, w, lambda: view.conv.kernel_name.startswith("conv2_2"))
    assert not view.note.isVisible() and view.conv.input.shape == (10, 12, 12)
    # A setting its 12 x 12 input cannot take is said in the dock, the settings stay to fix it.
    view.own.setChecked(False)
    view.padding.setValue(0)
    view.dilation.setValue(6)  # 6 * (3 - 1) + 1 = 13 > 12
    wait_for(qtbot, w, lambda: view.message_shown())
    assert "dilation" in view.message.text().lower() and view.dilation.isEnabled()
    view.dilation.setValue(1)
    wait_for(qtbot, w, lambda: not view.message_shown() and view.conv.dilation == 1)


def test_classic_vs_learned_and_a_scene_keep_the_dock(conv, qtbot):
    w = conv
    view = w.convolution_view
    view.pages.setCurrentIndex(1)
    wait_for(qtbot, w, lambda: view.classic is not None)
    assert set(view.classic["classic"]) >= {"sobel_x", "laplacian"} and view.classic["layer"] == "conv1_1"
    assert view.classic_image.image is not None and view.learned_image.image is not None
    assert "conv1_1" in view.caption.text()
    view.pages.setCurrentIndex(0)
    view.go_to(2, 3)
    options = view.view_options()
    assert options["step"] == 2 * 30 + 3 and options["kernel"] == "filter"
    view.set_view_options({"kernel": "laplacian", "own": False, "stride": 1, "padding": 1, "step": 100,
                           "stage": "conv", "bogus": 1, "dilation": "x"})
    wait_for(qtbot, w, lambda: view.conv.kernel_name == "laplacian")
    assert view.position() == divmod(100, 32)
    assert view.view_options()["kernel"] == "laplacian"


def test_screenshot_takes_view_options():
    from vizapp.cli.parser import parse_args
    from vizapp.core.errors import UserError
    from widgets.app import view_option

    args = parse_args(["screenshot", "--out", "x.png", "--dock", "convolution",
                       "--view-option", "convolution.kernel=sobel_x", "--view-option", "convolution.step=40"])
    assert [view_option(t) for t in args.view_option] == [("convolution", "kernel", "sobel_x"),
                                                          ("convolution", "step", 40)]
    assert view_option("convolution.weights=[[0, 1], [1, 0]]")[2] == [[0, 1], [1, 0]]
    with pytest.raises(UserError, match="'nodock' is not a dock"):
        view_option("nodock.kernel=1")
    with pytest.raises(UserError, match="DOCK.KEY=VALUE"):
        view_option("convolution")


def test_the_dock_fits_1280x720_on_a_desk_and_projected_at_2x(conv, qtbot):
    from _fit import misfits

    w = conv
    view = w.convolution_view
    w.resize(1280, 720)
    w.reset_layout()
    w.resize(1280, 720)
    w.docks["convolution"].raise_()
    view.kernel.setCurrentIndex(view.kernel.findData("custom"))  # the grid editor shows too
    view.kernel.activated.emit(view.kernel.currentIndex())
    wait_for(qtbot, w, lambda: view.conv.kernel_name.startswith("custom"))
    qtbot.wait(50)
    assert misfits(w) == []
    view.kernel.setCurrentIndex(view.kernel.findData("filter"))
    view.kernel.activated.emit(view.kernel.currentIndex())
    wait_for(qtbot, w, lambda: view.conv.kernel_name.startswith("conv1_1"))
    try:
        w.set_presentation(True, 2, full_screen=False)
        w.resize(1280, 720)
        w.presentation.toggle_maximise("convolution")
        view.settings_button.setChecked(False)
        qtbot.wait(100)
        assert misfits(w) == []
        assert view.numbers.width() > 300 and view.numbers.height() > 150
        assert view.in_view.width() > 150 and view.out_view.width() > 150  # side by side on a wide page
        here = view.stepper.position
        w.setFocus()
        qtbot.keyClick(w, Qt.Key_Right)  # the maximised dock has the keys, wherever the focus is
        assert view.stepper.position == here + 1
    finally:
        w.set_presentation(False)


def test_a_kernel_larger_than_5x5_is_coloured_cells_with_a_hover_read_out(qtbot):
    from PySide6.QtCore import QPoint

    from vizapp.explain.convolution import convolve
    from widgets.convolution_panels import StepNumbers, fmt

    rng = np.random.default_rng(0)
    c = convolve(rng.normal(size=(4, 12, 12)).astype(np.float32), rng.normal(size=(4, 7, 7)).astype(np.float32),
                 0.5, padding=1)
    panel = StepNumbers()
    qtbot.addWidget(panel)
    panel.resize(900, 500)
    panel.show()
    qtbot.waitExposed(panel)
    window = c.window(2, 3)
    panel.set_conv(window, c.kernel, c.bias)
    panel.grab()  # paints it
    assert panel.shown["patch"].shape == (3, 7, 7) and panel.shown["rest"] == pytest.approx(float(window.channel_sums[3]))
    assert "1 more channels" in panel.shown["sum_text"] and panel.shown["sum_text"].endswith(fmt(window.total, 3))
    assert len(panel._cells) == 3 * 3 * 49  # three channels' patch, weights and products, one cell each
    rect, text = panel._cells[49 + 8]  # the first channel's weights, row 1, column 1
    qtbot.mouseMove(panel, QPoint(int(rect.center().x()), int(rect.center().y())))
    assert panel.toolTip() == text == f"weights [1, 1] = {fmt(c.kernel[0, 1, 1])}"

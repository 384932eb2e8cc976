"""pytest-qt tests of the training panel: short real runs on the shapes set, offscreen.

Runs are tiny (shapes, 500-600 images, LeNet-5, batch 32, a few dozen steps). The panel
runs on a job runner handed to it, as the window's; each test ends with every job of the
panel ended and the runner's threads joined. Set ``VIZAPP_PANEL_PNG`` to a path to
keep a screenshot of the panel after a run.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage

pytestmark = pytest.mark.gui

RUN_TIMEOUT_MS = 180_000


def small_config(**changes):
    from vizapp.training.config import TrainConfig

    settings = dict(dataset="shapes", n=500, model="lenet", loss="ce", epochs=2, batch_size=32, log_every=2,
                    kernels_every=5, embed_points=100, checkpoint_every=0, seed=0)
    settings.update(changes)
    return TrainConfig(**settings)


@pytest.fixture
def runner():
    """The window's one job runner, as the window hands it to the panel."""
    from widgets.bridge import JobRunner

    r = JobRunner()
    yield r
    r.shutdown()
    assert not r.alive(), "the runner left a thread running"


@pytest.fixture
def panel(qtbot, tmp_path, runner):
    from widgets.training_panel import TrainingPanel

    p = TrainingPanel(runner, runs_dir=tmp_path / "runs")
    qtbot.addWidget(p)
    p.resize(1600, 1000)
    p.show()
    qtbot.waitExposed(p)
    yield p
    p.shutdown()
    assert not p.alive(), "the panel left a job running"


def last_step(panel) -> int:
    return panel.last_records.get("step", {}).get("step", 0)


def wait_steady(qtbot, panel, quiet_ms: int = 500) -> int:
    """Wait until no new step record has been drawn for ``quiet_ms``; returns the step."""
    seen = [-1]

    def steady() -> bool:
        now = last_step(panel)
        same = now == seen[0]
        seen[0] = now
        return same

    qtbot.waitUntil(steady, timeout=30_000)
    while True:  # waitUntil polls faster than quiet_ms: confirm over the whole quiet period
        before = last_step(panel)
        qtbot.wait(quiet_ms)
        if last_step(panel) == before:
            return before


def test_run_shows_what_the_engine_computes(panel, qtbot, tmp_path):
    from safetensors.numpy import load_file

    from vizapp.training.trainer import Trainer
    from widgets.training_panel import kernel_mosaic

    panel.set_config(small_config())
    config = panel.config()
    assert (config.dataset, config.n, config.model, config.epochs, config.log_every) == ("shapes", 500, "lenet", 2, 2)
    with qtbot.waitSignal(panel.sigRunningChanged, timeout=5000):
        assert panel.start()
    assert panel.running() and not panel.form.settings.isEnabled()
    assert not panel.start(), "a second Start while running must be refused"
    qtbot.waitUntil(lambda: not panel.running(), timeout=RUN_TIMEOUT_MS)
    assert panel.error_text() == ""

    run = panel.run_config()
    out = Path(run.out)
    assert out.parent == tmp_path / "runs"
    assert re.fullmatch(r"shapes-lenet-ce-\d{8}-\d{6}", out.name)
    assert panel.checkpoint_path() == str(out)
    card = json.loads((out / "card.json").read_text())
    assert (out / "model.safetensors").is_file()
    started = panel.last_records["started"]
    assert card["metrics"]["step"] == started["total_steps"] == 24
    assert panel.last_records["checkpoint"]["why"] == "finished"

    # The same config and seed headless on the CPU: the panel must show those numbers.
    records = list(Trainer(replace(run, out=str(tmp_path / "reference"))).run())
    steps = [r for r in records if r["type"] == "step"]
    evals = [r for r in records if r["type"] == "eval"]
    curves = panel.curves()
    np.testing.assert_array_equal(curves["step"], [r["step"] for r in steps])
    np.testing.assert_allclose(curves["loss"], [r["loss"] for r in steps], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(curves["acc"], [r["acc"] for r in steps], atol=1e-6)
    np.testing.assert_allclose(curves["lr"], [r["lr"] for r in steps])
    np.testing.assert_array_equal(curves["val_step"], [r["step"] for r in evals])
    np.testing.assert_allclose(curves["val_loss"], [r["val_loss"] for r in evals], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(curves["val_acc"], [r["val_acc"] for r in evals], atol=1e-6)

    # The kernel mosaic is the final first layer of the checkpoint, per-filter scaled.
    layer = panel.last_records["kernels"]["layer"]
    weights = load_file(str(out / "model.safetensors"))[f"{layer}.weight"]
    assert weights.shape == (6, 3, 5, 5)
    np.testing.assert_array_equal(panel.kernel_image(), kernel_mosaic(weights))
    assert panel.kernel_image().shape[2] == 3

    # The embedding is the last embedding record, in a fixed range that holds every point.
    coords, labels = panel.embedding_points()
    last = panel.last_records["embedding"]
    np.testing.assert_array_equal(coords, last["coords"])
    np.testing.assert_array_equal(labels, last["labels"])
    reference = [r for r in records if r["type"] == "embedding"][-1]
    np.testing.assert_allclose(coords, reference["coords"], atol=1e-4)
    assert panel.embedding_range() >= np.abs(coords).max()
    shown = sum(len(item.data) for item in panel.embedding_items)
    assert shown == len(coords) == 100

    confusion = panel.confusion()
    assert confusion.shape == (8, 8)
    assert confusion.sum() == started["val"] == 100
    np.testing.assert_array_equal(confusion, evals[-1]["confusion"])

    assert "Finished" in panel.status_text() and "step 24 / 24" in panel.status_text()
    assert panel.open_button.isEnabled() and panel.form.settings.isEnabled()
    with qtbot.waitSignal(panel.sigCheckpointRequested, timeout=2000) as opened:
        qtbot.mouseClick(panel.open_button, Qt.LeftButton)
    assert opened.args == [str(out)]

    shot = os.environ.get("VIZAPP_PANEL_PNG")
    if shot:
        from widgets.common import export_png

        export_png(panel, shot, scale=1.0)


def test_pause_holds_the_step_and_stop_checkpoints(panel, qtbot, runner):
    panel.set_config(small_config(n=600, epochs=6, log_every=1, kernels_every=0))
    assert panel.start()
    panel.pause()  # before the first step: the model is built and evaluated, then it waits
    assert panel.paused() and panel.pause_button.text() == "&Resume"
    qtbot.waitUntil(lambda: "embedding" in panel.last_records, timeout=RUN_TIMEOUT_MS)
    qtbot.wait(700)
    assert "step" not in panel.last_records, "a paused run took a step"
    assert "PAUSED" in panel.status_text()

    panel.resume()
    qtbot.waitUntil(lambda: last_step(panel) >= 3, timeout=RUN_TIMEOUT_MS)
    panel.pause()
    held = wait_steady(qtbot, panel)
    qtbot.wait(800)
    assert last_step(panel) == held, "the step advanced while paused"
    total = panel.last_records["started"]["total_steps"]
    assert held < total

    # The run's lane is its own: the window's interactive jobs run while it waits.
    with qtbot.waitSignal(runner.sigFinished, timeout=30_000,
                          check_params_cb=lambda kind, result: kind == "analysis") as done:
        runner.submit("analysis", lambda v, progress, cancel: v * 2, 21)
    assert done.args == ["analysis", 42] and panel.paused()

    panel.stop()
    qtbot.waitUntil(lambda: not panel.running(), timeout=RUN_TIMEOUT_MS)
    checkpoint = panel.last_records["checkpoint"]
    assert checkpoint["why"] == "stopped" and checkpoint["step"] == held
    assert (Path(checkpoint["path"]) / "card.json").is_file()
    assert "Stopped" in panel.status_text()
    assert panel.error_text() == ""


def test_shutdown_stops_a_running_run(panel, qtbot):
    panel.set_config(small_config(n=600, epochs=20, log_every=1))
    assert panel.start()
    qtbot.waitUntil(lambda: last_step(panel) >= 2, timeout=RUN_TIMEOUT_MS)
    started = time.perf_counter()
    panel.shutdown()
    assert time.perf_counter() - started < 10
    assert not panel.alive() and not panel.running()
    assert not panel.start(), "a shut-down panel starts nothing"
    # The run saved where it stopped, so the lesson's weights are not lost.
    assert (Path(panel.run_config().out) / "card.json").is_file()


def test_stop_while_loading_ends_the_run_quietly(panel, qtbot, monkeypatch):
    import threading

    from vizapp.core.notifications import notification_manager
    from vizapp.training import trainsets

    loading = threading.Event()

    def endless_load(*_args, cancel, **_kwargs):
        loading.set()
        while True:  # a slow download: it ends only through its cancel token
            cancel.check()
            time.sleep(0.01)

    monkeypatch.setattr(trainsets, "load_trainset", endless_load)
    messages = []
    collect = lambda n: messages.append(n.message)  # noqa: E731
    notification_manager.subscribe(collect)
    try:
        panel.set_config(small_config())
        assert panel.start()
        qtbot.waitUntil(loading.is_set, timeout=30_000)
        panel.stop()
        qtbot.waitUntil(lambda: not panel.running(), timeout=30_000)
    finally:
        notification_manager.unsubscribe(collect)
    assert panel.error_text() == "" and not panel.error.isVisible()
    assert "the run was stopped while loading its data" in messages
    assert panel.form.settings.isEnabled() and panel.start_button.isEnabled()


def test_an_unexpected_run_error_goes_through_the_runners_triage(panel, qtbot, monkeypatch):
    from vizapp.training import trainsets

    def broken(*_args, **_kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(trainsets, "load_trainset", broken)
    panel.set_config(small_config())
    assert panel.start()
    qtbot.waitUntil(lambda: not panel.running(), timeout=30_000)
    assert panel.error_text() == "internal error in training: RuntimeError: disk on fire"
    assert panel.error.isVisible() and panel.status_text() == "The run failed"


def test_a_panel_built_alone_owns_its_runner(qtbot, tmp_path):
    from widgets.bridge import JobRunner
    from widgets.training_panel import TrainingPanel

    p = TrainingPanel(runs_dir=tmp_path / "runs")
    qtbot.addWidget(p)
    assert isinstance(p.runner, JobRunner) and p.runner.alive()
    p.shutdown()
    assert not p.runner.alive() and not p.alive()
    assert not p.start(), "a shut-down panel starts nothing"


def test_records_are_drawn_in_batches_not_one_by_one(panel, qtbot, monkeypatch):
    from widgets.training_panel import REDRAW_MS, RUN_KIND

    board = panel.board
    draws = []
    original = board._draw_curves
    monkeypatch.setattr(board, "_draw_curves", lambda: (draws.append(len(board._steps["step"])), original()))
    for i in range(1, 201):  # as the runner delivers a run's records on the GUI thread
        panel.runner.sigRecord.emit(RUN_KIND, {"type": "step", "step": i, "epoch": i / 100, "loss": 1.0 / i,
                                               "lr": 1e-3, "samples_per_s": 1000.0, "acc": 0.5})
    assert len(panel.curves()["step"]) == 0, "drawn before the redraw timer"
    qtbot.waitUntil(lambda: len(panel.curves()["step"]) == 200, timeout=5 * REDRAW_MS + 2000)
    assert draws == [200]
    np.testing.assert_allclose(panel.curves()["loss"], 1.0 / np.arange(1, 201))


def test_a_folder_without_classes_says_what_to_do(panel, qtbot, tmp_path):
    from PIL import Image

    folder = tmp_path / "loose"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((16, 16, 3), 60 * i, np.uint8)).save(folder / f"{i}.png")
    from vizapp.core.notifications import Severity, notification_manager

    messages = []
    collect = lambda n: messages.append((n.message, n.severity is Severity.ERROR))  # noqa: E731
    notification_manager.subscribe(collect)  # the panel's messages go through the one notifier
    try:
        panel.set_config(small_config(dataset=str(folder)))
        assert panel.form.dataset.currentText() == "loose"
        assert panel.config().dataset == str(folder)
        assert panel.start()
        qtbot.waitUntil(lambda: not panel.running(), timeout=RUN_TIMEOUT_MS)
    finally:
        notification_manager.unsubscribe(collect)
    assert "class sub-folders" in panel.error_text()
    assert panel.error.isVisible() and "class sub-folders" in panel.error.text()
    assert any(error and "class sub-folders" in text for text, error in messages)
    assert panel.start_button.isEnabled() and not panel.open_button.isEnabled()
    qtbot.waitUntil(lambda: "No preview" in panel.form.preview_caption.text(), timeout=30_000)


def test_preview_follows_the_augmentations(panel, qtbot):
    qtbot.waitUntil(lambda: panel.preview_image() is not None, timeout=60_000)
    plain = panel.preview_image().copy()
    panel.form.augment_boxes["rotate"].setChecked(True)
    qtbot.waitUntil(lambda: panel.preview_image() is not None and panel.preview_image().shape == plain.shape
                    and not np.array_equal(panel.preview_image(), plain), timeout=60_000)
    assert "augmented" in panel.form.preview_caption.text()
    assert panel.config().augment == ["rotate"]
    pixmap = panel.form.preview_label.pixmap()
    assert pixmap is not None and not pixmap.isNull()


def test_loss_options_show_only_where_they_apply(panel):
    def pick(loss: str) -> dict[str, bool]:
        panel.form.loss.setCurrentIndex(panel.form.loss.findData(loss))
        return panel.loss_options_visible()

    assert pick("ce") == {"margin": False, "temperature": False}
    assert pick("contrastive") == {"margin": True, "temperature": False}
    assert panel.config().margin == pytest.approx(1.0)
    assert pick("triplet") == {"margin": True, "temperature": False}
    assert panel.config().margin == pytest.approx(0.2)
    assert pick("infonce") == {"margin": False, "temperature": True}
    panel.form.temperature.setValue(0.1)
    assert panel.config().temperature == pytest.approx(0.1)
    assert pick("ce") == {"margin": False, "temperature": False}
    assert panel.config().margin is None


def test_hub_models_unlock_the_freeze_choice(panel):
    assert not panel.form.freeze.isEnabled()
    panel.set_hub_models([("resnet18", "ResNet-18 (ImageNet)")])
    index = panel.form.model.findData("hub:resnet18")
    assert index >= 0
    panel.form.model.setCurrentIndex(index)
    assert panel.form.freeze.isEnabled()
    panel.form.freeze.setCurrentIndex(panel.form.freeze.findData("some"))
    assert (panel.config().model, panel.config().freeze) == ("hub:resnet18", "some")
    panel.form.model.setCurrentIndex(panel.form.model.findData("tinyvgg"))
    assert not panel.form.freeze.isEnabled()
    panel.set_hub_models([])
    assert panel.form.model.findData("hub:resnet18") < 0


def test_learning_rate_arrows_walk_one_two_five(panel):
    panel.form.lr.setValue(1e-3)
    panel.form.lr.stepBy(1)
    assert panel.form.lr.value() == pytest.approx(2e-3)
    panel.form.lr.stepBy(2)
    assert panel.form.lr.value() == pytest.approx(1e-2)
    panel.form.lr.stepBy(-1)
    assert panel.form.lr.value() == pytest.approx(5e-3)


def test_kernel_mosaic_layouts():
    from widgets.training_panel import kernel_mosaic

    rng = np.random.default_rng(0)
    rgb = kernel_mosaic(rng.normal(size=(6, 3, 5, 5)))
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    grey = kernel_mosaic(rng.normal(size=(4, 1, 3, 3)))
    assert np.array_equal(grey[..., 0], grey[..., 1])  # grey tiles
    assert grey[:3, :3, 0].min() == 0 and grey[:3, :3, 0].max() == 255  # each filter scaled to its range
    rows = kernel_mosaic(rng.normal(size=(5, 20)))
    assert rows.shape == (5, 20, 3)
    assert kernel_mosaic(None) is None


def test_export_png_writes_the_panel(panel, tmp_path):
    from widgets.common import export_png

    path = export_png(panel, tmp_path / "panel.png", scale=1.0)
    image = QImage(str(path))
    assert not image.isNull() and image.width() == panel.width()


def test_the_board_keeps_its_curves_share_as_it_resizes(qtbot):
    """Folding the settings away or leaving a big scale resizes the board: the curves keep 3/5
    of its height (a splitter alone keeps pixels, and the curves collapsed to their minimum)."""
    from widgets.training_board import TrainingBoard

    board = TrainingBoard()
    qtbot.addWidget(board)
    board.resize(900, 500)
    board.show()
    for height in (900, 600, 1100):
        board.resize(1200, height)
        qtbot.waitUntil(lambda h=height: board.height() == h, timeout=5_000)
        curves, pictures = board.sizes()
        assert abs(curves / (curves + pictures) - 0.6) < 0.02, (height, curves, pictures)
    board.splitterMoved.emit(100, 1)  # the user's own split stays
    board.setSizes([200, 700])
    board.resize(1200, 1000)
    qtbot.wait(10)
    assert board.sizes()[0] < board.sizes()[1]

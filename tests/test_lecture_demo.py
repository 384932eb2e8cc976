"""A training demo that learns in class: the lab's defaults, the "Lecture demo" presets
(:mod:`vizapp.training.presets`), ``vizapp train --preset`` and the form's button.

The runs here are seeded CPU runs of the presets, shortened where a full one would take
more than a few seconds (the shapes preset runs 1 of its 5 epochs here); the full shapes
preset's > 80% is measured by ``benchmarks/bench_lecture_demo.py`` (figures in
``benchmarks/README.md``).
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from models import build_small
from vizapp import cli
from vizapp.core.errors import UserError
from vizapp.training.config import TrainConfig
from vizapp.training.presets import PRESET_NAMES, PRESETS, apply_preset, default_lr, preset
from vizapp.training.trainer import Trainer
from vizapp.training.trainsets import DATASETS


def _final_val_acc(config: TrainConfig) -> float:
    """The last held-out accuracy of a quiet CPU run of ``config`` (one torch thread, as the app on two cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        quiet = replace(config, device="cpu", checkpoint_every=0, kernels_every=0, log_every=10_000,
                        embed_points=50, out=None)
        evals = [r["val_acc"] for r in Trainer(quiet).run() if r["type"] == "eval"]
    finally:
        torch.set_num_threads(threads)
    return evals[-1]


def test_every_builtin_dataset_has_a_lecture_preset():
    assert PRESET_NAMES == ("lecture",)
    assert set(PRESETS["lecture"]) == set(DATASETS)
    for dataset in DATASETS:
        settings = preset("lecture", dataset)
        config = TrainConfig(**settings)  # every key is a TrainConfig field
        assert config.dataset == dataset and config.loss == "ce" and config.batch_size == 32
        assert 1 <= config.epochs <= 20 and config.model in ("tinyvgg", "lenet")
        assert not {"seed", "device", "out", "resume"} & set(settings)
    settings = preset("lecture", "shapes")
    assert (settings["model"], settings["n"], settings["epochs"], settings["lr"]) == ("tinyvgg", 12000, 5, 2e-3)
    settings["augment"].append("hflip")  # a copy: the table stays as it is
    assert preset("lecture", "shapes")["augment"] == []


def test_apply_preset_keeps_the_seed_and_where_the_run_goes():
    mine = TrainConfig(dataset="digits", model="mlp", lr=0.1, epochs=99, seed=7, out="runs/x", device="cpu",
                       augment=["crop"])
    config = apply_preset(mine, "lecture")
    assert (config.dataset, config.model, config.lr, config.epochs, config.augment) == ("digits", "tinyvgg", 2e-3,
                                                                                        15, [])
    assert (config.seed, config.out, config.device) == (7, "runs/x", "cpu")
    assert apply_preset(mine, "lecture", "MNIST").model == "lenet"


def test_a_preset_for_a_folder_or_an_unknown_name_is_one_line():
    with pytest.raises(UserError) as err:
        apply_preset(TrainConfig(dataset="/data/pets"), "lecture")
    assert "not '/data/pets'" in str(err.value) and "shapes" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(UserError, match="unknown preset 'keynote'; choose one of lecture"):
        preset("keynote", "shapes")


def test_the_defaults_are_the_measured_ones():
    d = TrainConfig()
    assert (d.dataset, d.model, d.batch_size, d.lr, d.epochs, d.optimizer) == ("shapes", "tinyvgg", 32, None, 5, "adam")
    assert [default_lr(m) for m in ("tinyvgg", "lenet", "mlp", "resnet", "vit", "hub:efficientnet_lite0")] == [
        2e-3, 2e-3, 2e-3, 2e-3, 1e-3, 1e-3]
    trainer = Trainer(TrainConfig(dataset="digits", n=100, model="vit", epochs=1, device="cpu",
                                  options={"width": 32, "depth": 1, "heads": 2}))
    assert trainer.config.lr == 1e-3 and trainer.optimizer.param_groups[0]["lr"] == 1e-3
    trainer.close()


def test_small_models_start_with_zero_biases_and_live_units():
    """The cause of the chance-level first epoch: torch's default biases outweighed the
    input's share of TinyVGG's last block, so some of its channels were dead on every image."""
    torch.manual_seed(0)
    net = build_small("tinyvgg", in_channels=3, image_size=32, num_classes=8)
    assert all(float(m.bias.detach().abs().max()) == 0.0 for m in net.modules() if getattr(m, "bias", None) is not None)
    x = torch.randn(64, 3, 32, 32)
    h = net.pool1(net.relu1_2(net.conv1_2(net.relu1_1(net.conv1_1(x)))))
    last = net.relu2_2(net.conv2_2(net.relu2_1(net.conv2_1(h))))
    alive = (last.amax(dim=(0, 2, 3)) > 0).float().mean()
    assert float(alive) == 1.0


def test_shapes_lecture_preset_learns_in_its_first_epoch():
    """The shapes preset, seeded, cut to the first of its 5 epochs (300 steps): far from chance
    (12.5%, where one epoch of the former defaults ended) already. The whole preset's > 80% is
    the benchmark's figure (``bench_lecture_demo.py``, in benchmarks/README.md)."""
    config = replace(apply_preset(TrainConfig(seed=0), "lecture", "shapes"), epochs=1, eval_every=0)
    assert _final_val_acc(config) > 0.4


def test_digits_lecture_preset_is_far_above_chance():
    config = replace(apply_preset(TrainConfig(seed=0), "lecture", "digits"), epochs=4, eval_every=0)
    assert _final_val_acc(config) > 0.85  # chance: 10%


def test_train_preset_on_the_command_line_with_an_override(tmp_path, capsys):
    out = tmp_path / "run"
    status = cli.main(["train", "--preset", "lecture", "--dataset", "shapes", "--epochs", "1", "--n", "300",
                       "--lr", "0.003", "--device", "cpu", "--log-every", "1000", "--out", str(out)])
    assert status == 0
    settings = json.loads((out / "card.json").read_text())["settings"]
    lecture = preset("lecture", "shapes")
    assert (settings["model"], settings["size"], settings["embed_every"]) == ("tinyvgg", 32, 100) == (
        lecture["model"], lecture["size"], lecture["embed_every"])  # from the preset, not TrainConfig's defaults
    assert (settings["epochs"], settings["n"], settings["lr"], settings["seed"]) == (1, 300, 0.003, 0)
    evals = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"eval"' in line]
    assert [e["step"] for e in evals] == [0, 240 // 32]


def test_train_preset_for_a_folder_exits_2_with_one_line(tmp_path, capsys):
    status = cli.main(["train", "--preset", "lecture", "--dataset", str(tmp_path), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert status == 2 and "'lecture' preset covers the built-in sets" in err and "\n" not in err


def test_train_without_a_preset_takes_the_defaults_and_the_options():
    from vizapp.cli.commands import train_config
    from vizapp.cli.parser import parse_args

    config = train_config(parse_args(["train", "--out", "o"]))
    assert config == replace(TrainConfig(), out="o")
    config = train_config(parse_args(["train", "--out", "o", "--dataset", "digits", "--augment", "hflip,crop",
                                      "--batch-size", "16"]))
    assert (config.dataset, config.augment, config.batch_size, config.model) == ("digits", ["hflip", "crop"], 16,
                                                                                 TrainConfig().model)


@pytest.mark.gui
def test_the_forms_lecture_button_fills_the_fields(qtbot, tmp_path):
    import threading

    from widgets.bridge import JobRunner
    from widgets.training_form import TrainingForm

    runner = JobRunner()
    try:
        form = TrainingForm(runner, threading.Lock())
        qtbot.addWidget(form)
        form.set_config(TrainConfig(dataset="digits", model="mlp", lr=0.05, batch_size=128, epochs=50, seed=3,
                                    n=100, augment=["crop"]))
        form.lecture.click()
        lecture = preset("lecture", "digits")
        assert form.model.currentData() == lecture["model"] and form.lr.value() == pytest.approx(lecture["lr"])
        assert (form.batch.value(), form.epochs.value(), form.limit.value(), form.seed.value()) == (
            lecture["batch_size"], lecture["epochs"], 0, 3)
        assert not any(box.isChecked() for box in form.augment_boxes.values())
        form.dataset.setCurrentIndex(form.dataset.findData("shapes"))
        form.lecture.click()
        assert (form.model.currentData(), form.limit.value(), form.image_size.value()) == ("tinyvgg", 12000, 32)
        assert form.config().embed_every == 100  # a field the form keeps without showing it
        form.model.setCurrentIndex(form.model.findData("vit"))  # the default rate follows the model
        assert form.lr.value() == pytest.approx(1e-3)
        form.lr.setValue(5e-4)
        form.model.setCurrentIndex(form.model.findData("lenet"))  # a typed one stays
        assert form.lr.value() == pytest.approx(5e-4)
        form.set_config(TrainConfig(dataset=str(tmp_path)))  # a folder: no preset
        assert not form.lecture.isEnabled()
        form.shutdown()
    finally:
        runner.shutdown()

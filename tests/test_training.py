"""The training lab's engine as a whole: a run's records, its determinism, pause / stop /
resume, checkpoints that open in the model hub and the other views, the ``train`` command,
transfer learning and the ways a run fails.

Qt-free and fast: LeNet-5 on a few hundred of scikit-learn's digits (grey, 32 px), a
two-block ViT on the shapes set, EfficientNet-Lite0 (offline) on a few dozen shapes. The
runs every test looks at are built once per module. The parts on their own (data, losses,
architectures, ``save_checkpoint``) are covered by test_trainsets, test_losses and
test_small_models.
"""

from __future__ import annotations

import json
import math
import threading
import time
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from models import build_small, load_model, read_card
from vizapp import cli
from vizapp.core.errors import UserError
from vizapp.training.config import TrainConfig
from vizapp.training.records import stable_projection, write_json_line
from vizapp.training.shapes import SHAPE_CLASSES
from vizapp.training.trainer import TrainControl, Trainer
from vizapp.training.trainsets import mean_std

DIGITS = [str(d) for d in range(10)]


def config(**changes) -> TrainConfig:
    """A quick CPU run: LeNet-5 on 200 digits (160 to train: 5 steps of 32 per epoch), every step logged."""
    settings = {"dataset": "digits", "n": 200, "model": "lenet", "loss": "ce", "batch_size": 32, "epochs": 2,
                "seed": 0, "device": "cpu", "log_every": 1, "kernels_every": 0, "checkpoint_every": 0}
    settings.update(changes)
    return TrainConfig(**settings)


def reference_config(**changes) -> TrainConfig:
    """The run the determinism, pause / resume, records and checkpoint tests share: 3 epochs of
    5 steps with random crops (so resuming must also restore the augmentation's random stream),
    kernels every 4 steps, an embedding of 30 validation points every 3 steps."""
    settings = {"epochs": 3, "augment": ["crop"], "kernels_every": 4, "embed_every": 3, "embed_points": 30}
    settings.update(changes)
    return config(**settings)


def weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs"


def step_losses(records: list[dict]) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in records if r["type"] == "step"}


def of_type(records: list[dict], kind: str) -> list[dict]:
    return [r for r in records if r["type"] == kind]


def pil(image: torch.Tensor) -> Image.Image:
    """A uint8 ``C x H x W`` training image as the PIL image a user would open."""
    array = image.permute(1, 2, 0).numpy()
    return Image.fromarray(array[:, :, 0], "L") if array.shape[2] == 1 else Image.fromarray(array, "RGB")


def logits(trainer: Trainer, images: torch.Tensor) -> torch.Tensor:
    trainer.module.eval()
    with torch.no_grad():
        return trainer.module(trainer._inputs(images))


# --- the runs the tests share --------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from more threads, and on a busy machine two OpenMP threads
    waiting on each other cost several times the CPU; one thread also keeps every run's
    arithmetic in the same order. Restored after the module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> SimpleNamespace:
    """The reference run to the end, with the first layer's weights copied at every kernels record."""
    out = tmp_path_factory.mktemp("reference") / "run"
    trainer = Trainer(reference_config(out=str(out)))
    records, snapshots = [], {}
    for record in trainer.run():
        records.append(record)
        if record["type"] == "kernels":
            snapshots[record["step"]] = trainer.module.conv1.weight.detach().clone()
    return SimpleNamespace(trainer=trainer, records=records, snapshots=snapshots, out=out,
                           weights=weights(trainer.module))


@pytest.fixture(scope="module")
def vit_run(tmp_path_factory) -> SimpleNamespace:
    """A two-block ViT (patch 4, width 32, 2 heads) trained for one epoch on 160 shapes (RGB)."""
    out = tmp_path_factory.mktemp("vit") / "run"
    trainer = Trainer(config(dataset="shapes", n=160, model="vit", epochs=1, out=str(out), lr=2e-3,
                             options={"width": 32, "depth": 2, "heads": 2}))
    records = list(trainer.run())
    return SimpleNamespace(trainer=trainer, records=records, out=out)


# --- learning ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("loss", "ratio"), [("ce", 0.5), ("contrastive", 0.5), ("triplet", 0.6),
                                             ("infonce", 0.95)])
def test_loss_falls_for_each_loss(loss, ratio):
    trainer = Trainer(config(n=400, epochs=4, loss=loss))
    records = list(trainer.run())
    losses = list(step_losses(records).values())
    assert len(losses) == 40 and all(math.isfinite(v) for v in losses)
    first, last = np.mean(losses[:8]), np.mean(losses[-8:])
    assert last < ratio * first, f"{loss}: mean loss {first:.4f} over the first 8 steps, {last:.4f} over the last 8"
    evals = of_type(records, "eval")
    assert [e["step"] for e in evals] == [0, 10, 20, 30, 40]
    if loss == "ce":
        assert evals[-1]["val_acc"] > 0.5  # chance is 0.1
        assert evals[-1]["val_loss"] < evals[0]["val_loss"] - 1.0
    else:
        assert "acc" not in of_type(records, "step")[0]  # no logits for a metric loss
        assert trainer.module.head.__class__.__name__ == "Identity" and trainer.model_card["num_classes"] == 0
        assert logits(trainer, trainer.val_set.images[:4]).shape == (4, 32)  # the embedding, embed_dim 32


# --- determinism ----------------------------------------------------------------------------------------


def test_same_seed_same_run_other_seed_another(reference):
    again = Trainer(reference_config())
    records = list(again.run())
    assert step_losses(records) == step_losses(reference.records)
    assert_same_weights(weights(again.module), reference.weights)
    for mine, theirs in zip(of_type(records, "embedding"), of_type(reference.records, "embedding"), strict=True):
        np.testing.assert_array_equal(mine["coords"], theirs["coords"])

    other = Trainer(reference_config(seed=1))
    other_losses = step_losses(list(other.run()))
    assert other_losses.keys() == step_losses(reference.records).keys()
    assert other_losses != step_losses(reference.records)
    assert not torch.equal(other.module.conv1.weight, reference.weights["conv1.weight"])


def test_the_first_kernels_are_the_seeded_model(reference):
    torch.manual_seed(0)
    fresh = build_small("lenet", in_channels=1, image_size=32, num_classes=10)
    torch.testing.assert_close(reference.records[0]["weights"], fresh.conv1.weight.detach().numpy(), rtol=0, atol=0)


# --- pause, stop, resume --------------------------------------------------------------------------------


def _consume_in_thread(trainer: Trainer, control: TrainControl, hold_at: int):
    """Iterate the run on a thread; at step ``hold_at`` it signals ``reached`` and waits for ``go``."""
    records, errors = [], []
    reached, go = threading.Event(), threading.Event()

    def consume() -> None:
        try:
            for record in trainer.run(control):
                records.append(record)
                if record["type"] == "step" and record["step"] == hold_at:
                    reached.set()
                    go.wait(30)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    return thread, records, errors, reached, go


def _wait_for(condition, timeout: float = 20.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def test_pause_and_resume_in_process_continue_the_same_run(reference):
    trainer = Trainer(reference_config())
    control = TrainControl()
    thread, records, errors, reached, go = _consume_in_thread(trainer, control, hold_at=4)
    assert reached.wait(60), errors
    control.pause()
    go.set()
    assert control.paused
    # After step 4 the run still yields step 4's kernels record, then waits before step 5.
    assert _wait_for(lambda: records[-1]["type"] == "kernels" and records[-1]["step"] == 4), records[-1]
    seen = len(records)
    time.sleep(0.4)
    assert trainer.step == 4 and len(records) == seen and thread.is_alive()
    control.resume()
    thread.join(60)
    assert not thread.is_alive() and not errors
    assert records[-1]["type"] == "checkpoint" and records[-1]["why"] == "finished" and records[-1]["step"] == 15
    assert step_losses(records) == step_losses(reference.records)
    assert_same_weights(weights(trainer.module), reference.weights)


def test_stop_while_paused_ends_the_run_with_a_checkpoint(tmp_path):
    trainer = Trainer(config(epochs=1, out=str(tmp_path)))
    control = TrainControl()
    thread, records, errors, reached, go = _consume_in_thread(trainer, control, hold_at=2)
    assert reached.wait(60), errors
    control.pause()
    go.set()
    time.sleep(0.2)
    assert trainer.step == 2 and thread.is_alive()
    control.stop()
    thread.join(30)
    assert not thread.is_alive() and not errors
    assert records[-1] == {"type": "checkpoint", "step": 2, "why": "stopped", "path": str(tmp_path)}
    assert max(step_losses(records)) == 2
    assert read_card(tmp_path)["metrics"]["step"] == 2


def test_resume_from_a_checkpoint_continues_the_same_run(reference, tmp_path):
    k = 7  # mid-epoch (5 steps per epoch), after the embedding of step 6
    control = TrainControl()
    first = Trainer(reference_config(out=str(tmp_path / "first")))
    records = []
    for record in first.run(control):
        records.append(record)
        if record["type"] == "step" and record["step"] == k:
            control.stop()
    assert records[-1] == {"type": "checkpoint", "step": k, "why": "stopped", "path": str(tmp_path / "first")}
    assert sorted(p.name for p in (tmp_path / "first").iterdir()) == ["card.json", "model.safetensors",
                                                                       "train_state.pt"]
    assert step_losses(records) == {s: v for s, v in step_losses(reference.records).items() if s <= k}

    second = Trainer(reference_config(out=str(tmp_path / "second"), resume=str(tmp_path / "first")))
    assert second.step == k
    rest = list(second.run())
    assert rest[0]["type"] == "kernels" and rest[0]["step"] == k
    np.testing.assert_array_equal(rest[0]["weights"], first.module.conv1.weight.detach().numpy())
    assert [r["type"] for r in rest].count("eval") == 2  # the ends of epochs 2 and 3; no new step-0 eval
    expected = {s: v for s, v in step_losses(reference.records).items() if s > k}
    assert step_losses(rest) == expected
    assert_same_weights(weights(second.module), reference.weights)
    later = [r for r in of_type(reference.records, "embedding") if r["step"] > k]
    for mine, theirs in zip(of_type(rest, "embedding"), later, strict=True):
        assert mine["step"] == theirs["step"]
        np.testing.assert_array_equal(mine["coords"], theirs["coords"])  # aligned to the restored coords
    history = [(h["step"], h["loss"]) for h in second.card()["history"] if "loss" in h]
    assert history == [(h["step"], h["loss"]) for h in reference.trainer.card()["history"] if "loss" in h]


def test_resume_needs_the_same_model_and_the_training_state(reference, tmp_path):
    with pytest.raises(UserError, match="different model"):
        Trainer(reference_config(model="tinyvgg", resume=str(reference.out)))
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("card.json", "model.safetensors"):
        (bare / name).write_bytes((reference.out / name).read_bytes())
    with pytest.raises(UserError, match="no train_state.pt"):
        Trainer(reference_config(resume=str(bare)))


# --- records ------------------------------------------------------------------------------------


def test_the_records_come_in_order(reference):
    expected = [("kernels", 0), ("eval", 0), ("embedding", 0)]
    for s in range(1, 16):
        expected.append(("step", s))
        if s % 4 == 0:
            expected.append(("kernels", s))
        if s % 5 == 0:
            expected += [("eval", s), ("embedding", s)]
        elif s % 3 == 0:
            expected.append(("embedding", s))
    expected.append(("kernels", 15))  # the final weights (15 is not a multiple of 4)
    expected.append(("checkpoint", 15))
    assert [(r["type"], r["step"]) for r in reference.records] == expected
    assert reference.records[-1] == {"type": "checkpoint", "step": 15, "why": "finished", "path": str(reference.out)}


def test_step_records(reference):
    steps = of_type(reference.records, "step")
    for r in steps:
        assert set(r) == {"type", "step", "epoch", "loss", "lr", "samples_per_s", "acc"}
        assert r["epoch"] == pytest.approx(r["step"] / 5) and r["lr"] == 2e-3  # LeNet-5's default
        assert math.isfinite(r["loss"]) and r["loss"] > 0
        assert math.isfinite(r["samples_per_s"]) and r["samples_per_s"] > 0
        assert 0.0 <= r["acc"] <= 1.0 and (r["acc"] * 32) == pytest.approx(round(r["acc"] * 32))
    assert reference.trainer.step == reference.trainer.total_steps == 15


def test_eval_records_and_the_confusion_matrix(reference):
    trainer = reference.trainer
    val = trainer.val_set
    assert len(val) == 40 and len(trainer.train_set) == 160
    counts = np.bincount(val.labels.numpy(), minlength=10)
    for r in of_type(reference.records, "eval"):
        assert set(r) == {"type", "step", "epoch", "val_loss", "val_acc", "confusion"}
        c = r["confusion"]
        assert c.shape == (10, 10) and c.dtype.kind == "i" and c.sum() == 40
        np.testing.assert_array_equal(c.sum(axis=1), counts)  # rows: the true classes
        assert r["val_acc"] == pytest.approx(np.trace(c) / 40)
    final = of_type(reference.records, "eval")[-1]
    out = logits(trainer, val.images)
    expected = np.zeros((10, 10), np.int64)
    np.add.at(expected, (val.labels.numpy(), out.argmax(1).numpy()), 1)
    np.testing.assert_array_equal(final["confusion"], expected)
    assert final["val_loss"] == pytest.approx(float(F.cross_entropy(out, val.labels)), rel=1e-5)
    assert final["val_acc"] > of_type(reference.records, "eval")[0]["val_acc"]


def test_kernel_records_are_the_first_layer_at_that_step(reference):
    kernels = of_type(reference.records, "kernels")
    assert [r["step"] for r in kernels] == [0, 4, 8, 12, 15]  # and the final weights
    np.testing.assert_array_equal(kernels[-1]["weights"], reference.weights["conv1.weight"].numpy())
    for r in kernels[:-1]:
        assert r["layer"] == "conv1" and r["weights"].shape == (6, 1, 5, 5) and r["weights"].dtype == np.float32
        np.testing.assert_array_equal(r["weights"], reference.snapshots[r["step"]].numpy())
    # Copies, not views: the kernels of step 0 are not the trained ones.
    assert not np.array_equal(kernels[0]["weights"], reference.weights["conv1.weight"].numpy())
    assert not np.array_equal(kernels[0]["weights"], kernels[-1]["weights"])


def test_kernel_records_of_an_mlp_and_a_vit(vit_run):
    mlp = Trainer(config(model="mlp", epochs=1))
    first = next(iter(mlp.run()))
    assert first["type"] == "kernels" and first["layer"] == "fc1"
    assert first["weights"].shape == (256, 1, 32, 32)  # each hidden unit's weights as an image
    np.testing.assert_array_equal(first["weights"].reshape(256, -1), mlp.module.fc1.weight.detach().numpy())
    vit = of_type(vit_run.records, "kernels")[0]
    assert vit["layer"] == "patch_embed.proj" and vit["weights"].shape == (32, 3, 4, 4)


def test_embedding_records_are_the_features_projected_steadily(reference):
    trainer = reference.trainer
    embeddings = of_type(reference.records, "embedding")
    # A fixed random sample of the validation set (folders come sorted by class).
    pick = trainer._sample("embedding", len(trainer.val_set), 30)
    assert len(set(pick.tolist())) == 30 and int(pick.max()) < 40
    labels = trainer.val_set.labels[pick].numpy()
    for r in embeddings:
        assert r["coords"].shape == (30, 2) and r["coords"].dtype == np.float32  # embed_points caps the 40
        np.testing.assert_array_equal(r["labels"], labels)
        assert r["classes"] == DIGITS
        assert np.sqrt((r["coords"].astype(np.float64) ** 2).sum(1).mean()) == pytest.approx(1.0, abs=1e-5)
    # Each is the closest of its PCA's reflections to the one before: the cloud never flips.
    for before, after in zip(embeddings, embeddings[1:], strict=False):
        d = np.linalg.norm(after["coords"] - before["coords"])
        for signs in ([1, -1], [-1, 1], [-1, -1]):
            assert d <= np.linalg.norm(after["coords"] * np.array(signs, np.float32) - before["coords"]) + 1e-5
    # The last one is the trained network's penultimate features of those 30 validation images.
    trainer.module.eval()
    with torch.no_grad():
        feats = trainer.module.features(trainer._inputs(trainer.val_set.images[pick])).numpy()
    expected = stable_projection(feats, embeddings[-2]["coords"])
    np.testing.assert_allclose(embeddings[-1]["coords"], expected, atol=1e-4)


def test_stable_projection_aligns_to_the_previous_cloud():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(50, 6)) * np.array([5.0, 3.0, 1.0, 0.5, 0.2, 0.1])
    base = stable_projection(features, None)
    assert base.shape == (50, 2) and base.dtype == np.float32
    assert np.sqrt((base.astype(np.float64) ** 2).sum(1).mean()) == pytest.approx(1.0, abs=1e-6)
    # The same cloud, its feature axes rotated and flipped: the same picture.
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    turned = features @ (q * np.array([1, -1, 1, -1, -1, 1]))
    np.testing.assert_allclose(stable_projection(turned, base), base, atol=1e-5)
    np.testing.assert_allclose(stable_projection(-features + 3.0, base), base, atol=1e-5)
    # Whatever orientation the previous picture had, the new one takes it.
    a = 0.7
    spun = base @ np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]], np.float32)
    mirrored = spun * np.array([1, -1], np.float32)
    for previous in (spun, mirrored):
        np.testing.assert_allclose(stable_projection(features, previous), previous, atol=1e-5)
    # A cloud that changes a little moves a little; without alignment it may jump.
    nudged = features + rng.normal(size=features.shape) * 0.05
    moved = stable_projection(nudged, mirrored)
    assert np.abs(moved - mirrored).max() < 0.05
    assert np.abs(stable_projection(nudged, None) - mirrored).max() > 0.5
    # A previous picture of another size is ignored; 1-D features and a single point work.
    np.testing.assert_allclose(stable_projection(features, base[:10]), base, atol=1e-5)
    line = stable_projection(np.arange(4.0)[:, None], None)
    assert line.shape == (4, 2) and np.all(line[:, 1] == 0) and np.all(np.diff(line[:, 0]) > 0)
    np.testing.assert_array_equal(stable_projection(np.ones((1, 3)), None), np.zeros((1, 2), np.float32))


def test_write_json_line():
    record = {"type": "eval", "step": 3, "val_loss": 0.123456789, "confusion": np.array([[2, 0], [1, 3]]),
              "coords": np.zeros((5, 2), np.float32), "loss": float("nan"), "classes": ["a", "b"]}
    line = write_json_line(record)
    assert "\n" not in line
    assert json.loads(line) == {"type": "eval", "step": 3, "val_loss": 0.123457, "confusion": [[2, 0], [1, 3]],
                                "coords": "array[5, 2]", "loss": "nan", "classes": ["a", "b"]}


# --- checkpoints in the model hub ----------------------------------------------------------------------


def test_checkpoint_files_and_card(reference):
    trainer, out = reference.trainer, reference.out
    assert sorted(p.name for p in out.iterdir()) == ["card.json", "model.safetensors", "train_state.pt"]
    card = read_card(out)
    assert card["format"] == "vizapp-card-1" and card["trained"] is True and card["seed"] == 0
    assert card["title"] == "lenet on digits (ce)"
    assert card["model"] == {"kind": "small", "name": "lenet", "in_channels": 1, "image_size": 32,
                             "num_classes": 10, "embed_dim": None, "options": {}}
    assert card["classes"] == DIGITS
    assert card["data"] == {"dataset": "digits", "name": "digits", "train": 160, "validation": 40, "size": 32,
                            "augment": ["crop"]}
    assert card["loss"]["name"] == "ce"
    assert card["settings"] == json.loads(json.dumps(trainer.config.to_json()))
    assert card["settings"]["seed"] == 0 and card["settings"]["epochs"] == 3 and card["settings"]["n"] == 200
    last_eval = of_type(reference.records, "eval")[-1]
    assert card["metrics"]["val_acc"] == last_eval["val_acc"]
    assert card["metrics"]["val_loss"] == last_eval["val_loss"]
    assert card["metrics"]["step"] == 15 and card["metrics"]["epoch"] == 3.0
    mean, std = mean_std(trainer.train_set)
    assert card["preprocess"] == {"resize": 32, "crop": 32, "mean": list(mean), "std": list(std),
                                  "interpolation": "bilinear"}
    state = torch.load(out / "train_state.pt", weights_only=True)
    assert state["step"] == 15 and set(state) >= {"optimizer", "step"}


def test_checkpoint_loads_with_the_trained_outputs(reference):
    trainer = reference.trainer
    loaded = load_model(str(reference.out))
    assert loaded.kind == "cnn" and loaded.class_names == DIGITS and loaded.trained
    assert not loaded.module.training and loaded.preprocess.channels == 1
    assert_same_weights(weights(loaded.module), reference.weights)
    images = trainer.val_set.images
    direct = trainer._inputs(images)
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(direct), logits(trainer, images), rtol=0, atol=0)
    # Through the hub's own preprocessing of the images a user opens (grey: converted to 'L').
    x = torch.stack([loaded.preprocess(pil(image)) for image in images])
    assert x.shape == (40, 1, 32, 32)
    torch.testing.assert_close(x, direct, rtol=1e-6, atol=1e-6)
    rgb = pil(images[0]).convert("RGB")
    torch.testing.assert_close(loaded.preprocess(rgb), direct[0], rtol=1e-6, atol=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(x), logits(trainer, images), rtol=1e-5, atol=1e-5)


def test_grey_cnn_checkpoint_in_feature_maps_and_gradcam(reference):
    from vizapp.analysis import analyse_image, open_model
    from vizapp.explain.attribution import attribute

    opened = open_model(str(reference.out), device="cpu")
    loaded = opened.model
    assert {row.name for row in opened.layers} >= {"conv1", "relu1", "pool2", "fc1", "head"}
    trainer = reference.trainer
    image = trainer.val_set.images[3]
    expected = logits(trainer, image[None])[0]
    analysis = analyse_image(loaded, pil(image), "conv1")
    with torch.no_grad():
        conv1 = trainer.module.conv1(trainer._inputs(image[None]))[0].numpy()
    assert analysis.shape == (6, 28, 28) and analysis.maps.shape == (6, 28, 28)
    np.testing.assert_allclose(analysis.maps, conv1, atol=1e-5)
    assert analysis.predictions[0].label == DIGITS[int(expected.argmax())]
    assert analysis.display.shape == (32, 32, 3)
    cam = attribute(loaded, pil(image), "gradcam")
    assert cam.target == int(expected.argmax()) and cam.layer
    assert cam.map.shape == (32, 32) and np.isfinite(cam.map).all()
    assert 0.0 <= cam.map.min() and cam.map.max() <= 1.0 and cam.map.max() > 0
    assert cam.probability == pytest.approx(float(torch.softmax(expected, 0).max()), abs=1e-5)


def test_vit_checkpoint_in_the_attention_view(vit_run):
    from vizapp.explain.attention import analyse_attention

    trainer = vit_run.trainer
    loaded = load_model(str(vit_run.out))
    assert loaded.kind == "vit" and loaded.class_names == list(SHAPE_CLASSES) and loaded.trained
    assert loaded.preprocess.channels == 3
    image = trainer.val_set.images[0]
    x = loaded.preprocess.batch(pil(image))
    torch.testing.assert_close(x, trainer._inputs(image[None]), rtol=1e-6, atol=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(x), logits(trainer, image[None]), rtol=1e-5, atol=1e-5)
    result = analyse_attention(loaded, pil(image), gradient=True)
    t = 1 + (32 // 4) ** 2
    assert result.attention.shape == (2, 2, t, t)  # layers x heads x T x T
    np.testing.assert_allclose(result.attention.sum(-1), 1.0, atol=1e-4)
    assert result.layout.prefix == 1 and result.layout.grid == (8, 8)
    assert result.cls_maps().shape == (2, 2, 8, 8) and result.gradient.shape == (t, t)
    assert result.target == int(logits(trainer, image[None])[0].argmax())
    assert not any("UNTRAINED" in note for note in result.notes)
    assert read_card(vit_run.out)["model"]["options"] == {"width": 32, "depth": 2, "heads": 2}


# --- the train command ---------------------------------------------------------------------------------


def test_train_command_prints_json_lines_and_saves(capsys, tmp_path):
    out = tmp_path / "run"
    status = cli.main(["train", "--dataset", "digits", "--n", "200", "--model", "lenet", "--epochs", "2",
                       "--batch-size", "32", "--log-every", "2", "--device", "cpu", "--out", str(out)])
    stdout, stderr = capsys.readouterr()
    assert status == 0, stderr
    lines = [json.loads(line) for line in stdout.splitlines()]  # every line is JSON
    steps = [r for r in lines if r["type"] == "step"]
    assert [r["step"] for r in steps] == [2, 4, 6, 8, 10]
    for r in steps:
        assert {"step", "epoch", "loss"} <= set(r) and r["epoch"] == r["step"] / 5 and r["loss"] > 0
    evals = [r for r in lines if r["type"] == "eval"]
    assert [r["step"] for r in evals] == [0, 5, 10] and len(lines) == len(steps) + len(evals)
    assert all(sum(map(sum, r["confusion"])) == 40 for r in evals)
    assert f"saved {out}" in stderr
    card = read_card(out)
    assert card["metrics"]["step"] == 10 and card["metrics"]["val_acc"] == evals[-1]["val_acc"]
    assert load_model(str(out)).class_names == DIGITS


@pytest.mark.parametrize(("args", "message"), [
    (["--dataset", "no-such-set"], "neither a built-in set"),
    (["--loss", "hinge"], "unknown loss 'hinge'"),
    (["--model", "alexnet"], "unknown small model 'alexnet'"),
    (["--n", "40", "--batch-size", "64"], "fewer than a batch of 64"),
    (["--epochs", "0"], "argument --epochs: must be an integer from 1"),
    (["--model", "hub:efficientnet_lite0", "--loss", "triplet"], "use the ce loss with a hub model"),
])
def test_train_command_errors_are_one_line(capsys, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)  # 'no-such-set' is looked up as a folder here
    base = {"--dataset": "digits", "--n": "100", "--model": "lenet", "--epochs": "1", "--batch-size": "16"}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    argv = ["train", *[item for pair in base.items() for item in pair], "--device", "cpu",
            "--out", str(tmp_path / "out")]
    status = cli.main(argv)
    stdout, stderr = capsys.readouterr()
    assert status == 2 and stdout == ""
    assert stderr.startswith("vizapp: error: ") and stderr.count("\n") == 1 and message in stderr
    assert not (tmp_path / "out").exists()


def test_trainer_settings_errors():
    for changes, message in [({"batch_size": 1}, "batch size >= 2"), ({"lr": 0.0}, "learning rate > 0"),
                             ({"optimizer": "rmsprop"}, "unknown optimizer 'rmsprop'")]:
        with pytest.raises(UserError, match=message):
            Trainer(config(**changes))


def test_saving_without_an_output_folder_is_an_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="give --out"):
        Trainer(config(epochs=1)).save()
    assert list(tmp_path.iterdir()) == []  # nothing written to the working folder


# --- transfer learning --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def transfer_run(tmp_path_factory) -> SimpleNamespace:
    """EfficientNet-Lite0 (pretrained, offline), backbone frozen, one epoch on 40 shapes (4 steps of 8)."""
    out = tmp_path_factory.mktemp("transfer") / "run"
    trainer = Trainer(config(dataset="shapes", n=40, model="hub:efficientnet_lite0", freeze="all", epochs=1,
                             batch_size=8, lr=1e-2, out=str(out)))
    before = weights(trainer.module)
    records = list(trainer.run())
    return SimpleNamespace(trainer=trainer, records=records, before=before, after=weights(trainer.module), out=out)


def test_transfer_trains_only_the_head(transfer_run):
    trainer, before, after = transfer_run.trainer, transfer_run.before, transfer_run.after
    assert [p.shape for group in trainer.optimizer.param_groups for p in group["params"]] == [(8, 1280), (8,)]
    assert max(step_losses(transfer_run.records)) == 4
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"classifier.weight", "classifier.bias"}
    stats = [k for k in before if k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert len(stats) > 100 and not changed & set(stats)  # the frozen backbone's batch norm kept its statistics
    card = read_card(transfer_run.out)
    assert card["model"] == {"kind": "transfer", "hub": "efficientnet_lite0", "num_classes": 8, "freeze": "all"}
    assert card["title"] == "efficientnet_lite0 on shapes (32 px) (ce)"


def test_transfer_checkpoint_loads_back_with_the_same_outputs(transfer_run):
    trainer = transfer_run.trainer
    loaded = load_model(str(transfer_run.out))
    assert loaded.kind == "cnn" and loaded.class_names == list(SHAPE_CLASSES) and loaded.trained
    assert_same_weights(weights(loaded.module), transfer_run.after)
    images = trainer.val_set.images[:4]
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(trainer._inputs(images)), logits(trainer, images), rtol=0, atol=0)


def test_transfer_checkpoint_preprocess_is_what_the_trainer_fed(transfer_run):
    """The hub view must see the image as the trainer did: the whole 32 px image resized to 224.

    The trainer interpolates the full image to ``preprocess.crop`` (no crop), but the card keeps the
    hub model's ``resize 256, crop 224``, so the hub view crops away an eighth of every border.
    """
    trainer = transfer_run.trainer
    loaded = load_model(str(transfer_run.out))
    images = trainer.val_set.images[:4]
    x = torch.stack([loaded.preprocess(pil(image)) for image in images])
    assert x.shape == trainer._inputs(images).shape
    # Only the uint8 rounding of the resized image may differ (under 0.01 after the std of 0.5).
    torch.testing.assert_close(x, trainer._inputs(images), rtol=0, atol=0.02)


# --- failures and automatic checkpoints -----------------------------------------------------------------------


def test_a_diverging_run_ends_with_a_clear_error_and_a_checkpoint(tmp_path):
    trainer = Trainer(config(optimizer="sgd", lr=1e6, epochs=1, out=str(tmp_path)))
    records = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(UserError, match=r"the loss became (nan|inf) at step \d+; lower the learning rate"):
            for record in trainer.run():
                records.append(record)
    last = records[-1]
    assert last["type"] == "checkpoint" and last["why"] == "diverged" and 0 < last["step"] < 5
    # The diverged weights are not saved over the last good checkpoint (here there is none yet).
    assert last["path"] is None and not (tmp_path / "card.json").exists()
    # The message is the whole story: no PyTorch warning about converting a tensor that requires grad.
    assert not [str(w.message) for w in caught if "training.py" in w.filename]


def test_automatic_and_requested_checkpoints(tmp_path):
    auto = Trainer(config(epochs=1, checkpoint_every=0.001, out=str(tmp_path / "auto")))
    saves = [r for r in auto.run() if r["type"] == "checkpoint"]
    assert saves[-1]["why"] == "finished" and saves[-1]["step"] == 5
    assert [r["step"] for r in saves if r["why"] == "saved"] and all(r["path"] == str(tmp_path / "auto")
                                                                     for r in saves)
    assert read_card(tmp_path / "auto")["metrics"]["step"] == 5

    control = TrainControl()
    asked = Trainer(config(epochs=1, out=str(tmp_path / "asked")))
    records = []
    for record in asked.run(control):
        records.append(record)
        if record["type"] == "step" and record["step"] == 2:
            control.checkpoint()
        if record["type"] == "checkpoint" and record["why"] == "saved":
            assert read_card(tmp_path / "asked")["metrics"]["step"] == 2  # on disk when the record comes
    saved = [(r["step"], r["why"]) for r in records if r["type"] == "checkpoint"]
    assert saved == [(2, "saved"), (5, "finished")]

    nowhere = Trainer(config(epochs=1))
    assert list(nowhere.run())[-1] == {"type": "checkpoint", "step": 5, "why": "finished", "path": None}


# --- review fixes ---------------------------------------------------------------------------------------


def test_a_run_is_the_same_while_other_threads_use_torchs_generator(reference):
    """Augmentations draw from per-step seeds under the RNG lock: a model loaded on another
    thread mid-run (the window's "Open in the app") does not change the run."""
    from vizapp.core.jobs import seeded

    stop = threading.Event()

    def meddle():
        while not stop.is_set():
            with seeded(123):
                torch.rand(1000)
            torch.rand(1000)  # an unseeded draw from the shared generator, too

    other = threading.Thread(target=meddle, daemon=True)
    other.start()
    try:
        trainer = Trainer(reference_config())
        records = list(trainer.run())
    finally:
        stop.set()
        other.join()
    losses = [r["loss"] for r in records if r["type"] == "step"]
    assert losses == [r["loss"] for r in reference.records if r["type"] == "step"]


def test_resume_refuses_other_data_or_settings(tmp_path):
    list(Trainer(config(epochs=1, out=str(tmp_path))).run())
    with pytest.raises(UserError, match="other settings.*--n 200"):
        Trainer(config(epochs=2, n=300, resume=str(tmp_path)))
    with pytest.raises(UserError, match="--lr"):
        Trainer(config(epochs=2, lr=0.01, resume=str(tmp_path)))
    assert Trainer(config(epochs=2, resume=str(tmp_path))).step == 5  # only --epochs grew


def test_pause_after_stop_does_not_hang_and_checkpoint_works_while_paused(tmp_path):
    control = TrainControl()
    control.stop()
    control.pause()
    assert not control.paused  # a stopping run never waits again
    trainer = Trainer(config(epochs=1, out=str(tmp_path)))
    control = TrainControl()
    records, run = [], trainer.run(control)
    for record in run:
        records.append(record)
        if record["type"] == "step" and record["step"] == 2:
            break
    control.pause()
    control.checkpoint()
    thread = threading.Thread(target=lambda: records.extend(run), daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not any(r["type"] == "checkpoint" for r in records) and time.monotonic() < deadline:
        time.sleep(0.02)
    saved = [r for r in records if r["type"] == "checkpoint"]
    assert saved and saved[0]["why"] == "saved" and saved[0]["step"] == 2 and trainer.step == 2
    control.stop()
    thread.join(20)
    assert not thread.is_alive() and records[-1]["why"] == "stopped"


def test_metric_runs_see_every_class_of_a_class_sorted_folder(tmp_path):
    from vizapp.training.trainsets import make_shapes

    shapes = make_shapes(n=240, size=32, seed=0)
    order = torch.argsort(shapes.labels, stable=True)  # a folder's order: one class after another
    for i in order.tolist():
        folder = tmp_path / "data" / shapes.classes[int(shapes.labels[i])]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(shapes.images[i].permute(1, 2, 0).numpy()).save(folder / f"{i:04d}.png")
    trainer = Trainer(TrainConfig(dataset=str(tmp_path / "data"), size=32, model="lenet", loss="contrastive",
                                  epochs=1, batch_size=32, device="cpu", embed_points=20, checkpoint_every=0))
    records = list(trainer.run())
    embedding = [r for r in records if r["type"] == "embedding"][-1]
    assert len(set(embedding["labels"].tolist())) >= 6  # not just the first classes of the folder
    assert all(np.isfinite(r["val_loss"]) for r in records if r["type"] == "eval")


@pytest.mark.parametrize(("loss", "keys"), [("contrastive", {"pos_dist", "neg_dist", "inside_margin"}),
                                            ("triplet", {"pos_dist", "neg_dist", "active_triplets"}),
                                            ("infonce", {"top1", "pos_sim", "neg_sim"})])
def test_metric_step_records_say_what_the_loss_does(loss, keys):
    from vizapp.training.losses import loss_stats

    trainer = Trainer(config(loss=loss, epochs=1, log_every=5))
    steps = [r for r in trainer.run() if r["type"] == "step"]
    assert steps and keys <= set(steps[-1])
    out, y, z2 = trainer._last_batch  # the last step's batch: the logged figures are loss_stats of it
    expected = loss_stats(loss, out, y, z2=z2, margin=trainer.config.margin, temperature=trainer.config.temperature)
    assert {k: steps[-1][k] for k in keys} == pytest.approx({k: expected[k] for k in keys})


def test_own_generator_covers_init_dropout_drop_path_and_augmentations():
    """Every draw a run makes (initialisation, dropout, timm's DropPath, torchvision's
    transforms) comes from the block's own generator: moving torch's shared generator
    between two blocks with the same seed changes nothing."""
    from timm.layers import DropPath

    from vizapp.training.augmentations import build_augment
    from vizapp.training.determinism import OwnGenerator

    augment = build_augment(["crop", "hflip", "jitter", "erase"], 16, 3)
    images = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)

    def draw(shared_seed: int):
        torch.manual_seed(shared_seed)
        with OwnGenerator(7):
            linear = torch.nn.Linear(8, 8)
            drops = [torch.nn.Dropout(0.3), DropPath(0.3), torch.nn.Dropout2d(0.3)]
            outs = [d.train()(torch.ones(16, 8, 2, 2)) for d in drops]
            views = augment(images)
        return linear.weight.detach().clone(), *outs, views

    a, b = draw(1), draw(2)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)
    for out in a[1:4]:
        assert (out == 0).any() and (out != 0).any()  # dropout did drop, and not everything
    # The same seed gives the weights torch.manual_seed would (a seeded model is that model).
    torch.manual_seed(7)
    assert torch.equal(torch.nn.Linear(8, 8).weight, a[0])


# --- saves a kill cannot break, one run per folder, damaged folders ----------------------------------


@pytest.mark.parametrize("kill_at", range(6))
def test_a_kill_at_any_point_of_a_save_leaves_the_last_complete_step_resumable(reference, tmp_path, monkeypatch,
                                                                                 kill_at):
    """A save renames three files into place (weights, card, then the training state). The
    process dies just before (even ``kill_at``) or just after (odd) one of those renames,
    after a complete save at step 5; the run resumes from step 5, or from step 7 once the
    state is in place, and ends bit-identical to the uninterrupted run."""
    import os

    out = tmp_path / "run"
    first = Trainer(reference_config(out=str(out)))
    records = first.run()
    for record in records:
        if record["type"] == "step" and record["step"] == 5:
            first.save()
        if record["type"] == "step" and record["step"] == 7:
            break
    real_replace, calls = os.replace, []

    def dying_replace(src, dst):
        calls.append(dst)
        if len(calls) == kill_at // 2 + 1:
            if kill_at % 2:
                real_replace(src, dst)
            raise SystemExit("killed")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", dying_replace)
    with pytest.raises(SystemExit):
        first.save()
    monkeypatch.undo()
    records.close()  # the dead run's lock goes with it
    assert [os.path.basename(c) for c in calls][-1] == ["model.safetensors", "card.json", "train_state.pt"][kill_at // 2]

    start = 7 if kill_at == 5 else 5
    second = Trainer(reference_config(out=str(out), resume=str(out)))
    assert second.step == start
    rest = list(second.run())
    assert step_losses(rest) == {s: v for s, v in step_losses(reference.records).items() if s > start}
    assert_same_weights(weights(second.module), reference.weights)
    assert sorted(p.name for p in out.iterdir()) == ["card.json", "model.safetensors", "train_state.pt"]


def test_a_save_removes_what_killed_saves_left(tmp_path):
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    trainer = Trainer(config(epochs=1, out=str(tmp_path)))
    leftovers = [tmp_path / f".{name}.{dead.pid}.0123abcd.tmp" for name in ("model.safetensors", "train_state.pt")]
    for path in leftovers:
        path.write_bytes(b"half a file")
    list(trainer.run())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["card.json", "model.safetensors", "train_state.pt"]


def test_a_second_run_into_the_same_folder_is_refused_until_the_first_ends(tmp_path, capsys):
    first = Trainer(config(epochs=1, out=str(tmp_path)))
    with pytest.raises(UserError, match=r"another training run \(pid \d+\) is writing there"):
        Trainer(config(epochs=1, seed=1, out=str(tmp_path)))
    argv = ["train", "--dataset", "digits", "--n", "200", "--model", "lenet", "--epochs", "1", "--batch-size",
            "32", "--device", "cpu", "--out", str(tmp_path)]
    assert cli.main(argv) == 2
    stdout, stderr = capsys.readouterr()
    assert stdout == "" and stderr.count("\n") == 1 and str(tmp_path) in stderr and "another training run" in stderr
    list(first.run())
    assert read_card(tmp_path)["metrics"]["step"] == 5  # the refused runs wrote nothing
    # Once the first has ended, resuming it into the same folder works.
    again = Trainer(config(epochs=2, out=str(tmp_path), resume=str(tmp_path)))
    assert again.step == 5
    list(again.run())
    assert read_card(tmp_path)["metrics"]["step"] == 10


def test_the_lock_of_a_killed_run_does_not_block(tmp_path):
    import subprocess
    import sys

    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pathlib import Path; from vizapp.training.checkpoints import RunLock; "
        f"lock = RunLock(Path({str(tmp_path)!r})).acquire(); print('locked', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(UserError, match=f"pid {holder.pid}"):
            Trainer(config(epochs=1, out=str(tmp_path)))
    finally:
        holder.kill()
        holder.wait()
    assert (tmp_path / ".vizapp-train.lock").exists()  # the dead run's file is still there
    assert list(Trainer(config(epochs=1, out=str(tmp_path))).run())[-1]["path"] == str(tmp_path)


def _damage(folder, how: str, other) -> str:
    """Damage a copy of a finished run; returns the file the error must name."""
    if how == "truncated weights":
        data = (folder / "model.safetensors").read_bytes()
        (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
        return "model.safetensors"
    if how == "truncated state":
        data = (folder / "train_state.pt").read_bytes()
        (folder / "train_state.pt").write_bytes(data[: len(data) // 2])
        return "train_state.pt"
    if how == "garbage state":
        (folder / "train_state.pt").write_bytes(b"\x80\x04garbage" * 100)
        return "train_state.pt"
    if how == "another model's weights":
        (folder / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes())
        return "model.safetensors"
    if how == "another model's state":
        (folder / "train_state.pt").write_bytes((other / "train_state.pt").read_bytes())
        return "train_state.pt"
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["truncated weights", "truncated state", "garbage state", "another model's weights",
                                 "another model's state"])
def test_resuming_a_damaged_folder_is_one_line_naming_the_file(reference, vit_run, tmp_path, capsys, how):
    import shutil

    folder = tmp_path / "run"
    shutil.copytree(reference.out, folder)
    name = _damage(folder, how, vit_run.out)
    argv = ["train", "--dataset", "digits", "--n", "200", "--model", "lenet", "--epochs", "4", "--batch-size",
            "32", "--augment", "crop", "--device", "cpu", "--resume", str(folder), "--out", str(folder)]
    assert cli.main(argv) == 2
    stdout, stderr = capsys.readouterr()
    assert stderr.startswith("vizapp: error: ") and stderr.count("\n") == 1, stderr
    assert str(folder / name) in stderr and "internal error" not in stderr


def test_training_into_a_read_only_or_impossible_folder_is_one_line(tmp_path, capsys):
    from _disks import tmpfs

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for out in (blocker / "run", tmp_path / "ro" / "run"):
        if out.parent.name == "ro":
            ctx = tmpfs(out.parent, read_only=True)
        else:
            from contextlib import nullcontext

            ctx = nullcontext()
        with ctx:
            argv = ["train", "--dataset", "digits", "--n", "100", "--model", "lenet", "--epochs", "1",
                    "--batch-size", "16", "--device", "cpu", "--out", str(out)]
            assert cli.main(argv) == 2
            stdout, stderr = capsys.readouterr()
            assert stderr.startswith("vizapp: error: ") and stderr.count("\n") == 1, stderr
            assert str(out) in stderr and "internal error" not in stderr


def test_training_onto_a_full_disk_is_one_line_and_keeps_the_last_checkpoint(tmp_path, capsys):
    from _disks import fill, tmpfs

    with tmpfs(tmp_path / "small", size="2m") as disk:
        out = disk / "run"
        base = ["train", "--dataset", "digits", "--n", "100", "--model", "lenet", "--batch-size", "16",
                "--device", "cpu", "--out", str(out)]
        assert cli.main([*base, "--epochs", "1"]) == 0
        before = {p.name: p.read_bytes() for p in out.iterdir()}
        capsys.readouterr()
        # Room for the lock, not for the weights: the run trains, then its save fails.
        fill(disk, keep=16 * 1024)
        assert cli.main([*base, "--epochs", "2", "--resume", str(out)]) == 2
        stdout, stderr = capsys.readouterr()
        assert "\"step\": 10" in stdout, stderr  # it did train
        assert stderr.startswith("vizapp: error: ") and stderr.count("\n") == 1, stderr
        assert str(out / "model.safetensors") in stderr and "the disk is full" in stderr
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no torn files, no leftovers
        # Nothing to write into at all: refused before training.
        fill(disk, name="filler2")
        assert cli.main([*base, "--epochs", "2", "--resume", str(out)]) == 2
        stdout, stderr = capsys.readouterr()
        assert stdout == "" and stderr.count("\n") == 1 and "the disk is full" in stderr and str(out) in stderr

"""Feature visualisation by optimisation (``vizapp.explain.featurevis``): the issue's faithfulness
list. The objective rises and beats every sample image, class visualisations are classified as
their class, the same seed gives the same image, DeepDream keeps the cat, the shared model is
left as it was; and ``vizapp visualize``."""

from __future__ import annotations

import json
import threading
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import main
from models import load_model
from vizapp import analysis
from vizapp.core.errors import Cancelled, UserError
from vizapp.core.jobs import CancelToken
from vizapp.explain import featurevis as fv
from vizapp.inputs.images import lab_samples, load_image, sample_images


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: these small steps spend longer in two threads' hand-offs than in their
    kernels when the two cores are busy (48 TinyVGG steps: 7 s with two threads, 0.2 s with one)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tinyvgg():
    return load_model("tinyvgg_shapes")


@pytest.fixture(scope="module")
def shapes():
    return [load_image(s.path) for s in lab_samples() if not s.name.startswith("digit")]


@pytest.fixture(scope="module")
def photos():
    return {s.name: load_image(s.path) for s in sample_images()}


def probabilities(loaded, images: np.ndarray, jitter: int = 0, seed: int = 1) -> np.ndarray:
    """``B x classes``: the model's softmax for uint8 images at its input size, optionally
    padded by ``jitter`` grey pixels and shifted by up to ``jitter`` (a generator of its own)."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    if loaded.preprocess.channels == 1:  # a grey model's images are grey RGB
        x = x[:, :1]
    if jitter:
        g = torch.Generator().manual_seed(seed)
        x = F.pad(x, [jitter] * 4, value=0.5)
        dy, dx = (int(v) for v in torch.randint(-jitter, jitter + 1, (2,), generator=g))
        x = F.interpolate(torch.roll(x, (dy, dx), (2, 3)), size=images.shape[1:3], mode="bilinear")
    pre = loaded.preprocess
    mean, std = torch.tensor(pre.mean).view(1, -1, 1, 1), torch.tensor(pre.std).view(1, -1, 1, 1)
    with torch.no_grad():
        return torch.softmax(loaded.module((x - mean) / std), 1).numpy()


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
    with torch.no_grad():  # a caller's no_grad does not stop it
        assert np.array_equal(fv.run(tinyvgg, s).images, steps[-1].preview)
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


# --- faithfulness: the objective rises and beats every sample -----------------------------------


def test_lite0_channel_rises_and_beats_every_sample_photo(lite0, photos):
    v = fv.run(lite0, fv.preset("Olah 2017", lite0, layer="blocks.4", channel=5, steps=64))
    assert v.images.shape == (1, 224, 224, 3)
    assert v.trace[-10:].mean() > v.trace[:10].mean() + 5.0
    excited = fv.activation(lite0, v.images, "blocks.4", 5)[0]
    samples = fv.activation(lite0, list(photos.values()), "blocks.4", 5)
    assert len(samples) >= 10 and excited > 2 * samples.max() > 0


def test_negative_objective_lowers_the_activation_below_every_sample(tinyvgg, shapes):
    v = fv.run(tinyvgg, fv.preset("Olah 2017", tinyvgg, layer="conv2_2", channel=7, steps=32, negative=True))
    assert v.trace[-5:].mean() > v.trace[:5].mean() + 5.0  # the trace is the negated activation: it rises
    assert fv.activation(tinyvgg, v.images, "conv2_2", 7)[0] < fv.activation(tinyvgg, shapes, "conv2_2", 7).min() - 5.0
    assert v.description == "negative conv2_2 channel 7 (Olah 2017)"


def test_vit_block_channel_token_and_class_objectives(photos):
    vit = load_model("vit_digits")
    assert vit.trained and vit.preprocess.channels == 1
    digits = [load_image(s.path) for s in lab_samples() if s.name.startswith("digit")]
    v = fv.run(vit, fv.preset("Olah 2017", vit, layer="blocks.1", channel=5, steps=32))
    assert v.images.shape == (1, 32, 32, 3) and (v.image[..., 0] == v.image[..., 2]).all()  # grey, shown as RGB
    assert v.trace[-10:].mean() > v.trace[:10].mean() + 0.15
    assert fv.activation(vit, v.images, "blocks.1", 5)[0] > fv.activation(vit, digits, "blocks.1", 5).max() + 0.5
    token = fv.run(vit, fv.Settings(objective="neuron", layer="blocks.1", channel=5, neuron=(3, 4), steps=16))
    assert token.trace[-4:].mean() > token.trace[:4].mean() + 0.5
    wanted = (0, 2, 3, 8)  # a class too: digits the ViT draws in 96 steps (a thin "1" takes longer)
    drawn = fv.run(vit, fv.preset("Olah 2017", vit, objective="class", target=wanted, steps=96))
    assert list(probabilities(vit, drawn.images).argmax(1)) == list(wanted)


# --- class visualisations are classified as their class ------------------------------------------


def test_tinyvgg_class_visualisations_are_classified_under_jitter(tinyvgg):
    v = fv.run(tinyvgg, fv.preset("Olah 2017", tinyvgg, objective="class", target=tuple(range(8)), steps=128,
                                  scales=(), rotate=0.0))
    assert v.images.shape == (8, 32, 32, 3)
    assert v.description == "classes 0, 1, 2, 3, 4, 5, 6, 7 (Olah 2017)"
    p = np.stack([probabilities(tinyvgg, v.images, jitter=2, seed=k)[np.arange(8), np.arange(8)] for k in range(4)])
    assert (p.min(0) >= 0.9).sum() >= 7, p.round(3)
    # one item's objective is its own class: the same seed's single image for class 3 is not the batch's
    assert probabilities(tinyvgg, v.images)[3].argmax() == 3


def test_lite0_class_visualisations_are_top1(lite0):
    classes = (1, 207, 281, 417, 430, 530, 817, 950, 963, 980)
    v = fv.run(lite0, fv.preset("Olah 2017", lite0, objective="class", target=classes, steps=32))
    top1 = probabilities(lite0, v.images).argmax(1)
    assert (top1 == np.array(classes)).sum() >= 9, top1
    assert v.trace[-1] > v.trace[0] + 3.0


# --- DeepDream, the pixel method, diversity, seeds -----------------------------------------------


def test_deepdream_of_the_cat_raises_the_layer_and_keeps_the_cat(lite0, photos):
    cat = photos["chelsea"]
    s = fv.preset("DeepDream", lite0, layer="blocks.3", steps=12)
    v = fv.run(lite0, s, cat)
    assert len(v.trace) == 4 * 12 and v.images.shape == (1, 224, 224, 3)
    assert v.pixel_range[0] >= 0.0 and v.pixel_range[1] <= 1.0  # clipped
    before = lite0.preprocess.pixels(cat).permute(1, 2, 0).numpy()
    probe = fv._Probe(lite0, "blocks.3")
    x = torch.from_numpy(np.stack([before, v.image])).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        act, _ = probe(x, logits=False)
    l2 = (act ** 2).mean((1, 2, 3))
    assert l2[1] > 1.5 * l2[0]
    assert np.corrcoef(before.ravel().astype(float), v.image.ravel().astype(float))[0, 1] > 0.6
    assert v.description == "DeepDream of blocks.3 (DeepDream)"


def test_pixel_method_clips_only_when_asked_and_diversity_separates_the_batch(tinyvgg):
    s = fv.preset("Yosinski 2015", tinyvgg, layer="conv2_2", channel=7, steps=24, lr=0.05)
    free = fv.run(tinyvgg, replace(s, clip=False))
    clipped = fv.run(tinyvgg, s)
    assert free.pixel_range[0] < 0.0 or free.pixel_range[1] > 1.0
    assert 0.0 <= clipped.pixel_range[0] and clipped.pixel_range[1] <= 1.0
    assert clipped.trace[-5:].mean() > clipped.trace[:5].mean() + 3.0
    probe = fv._Probe(tinyvgg, "conv2_2")
    similarity = []
    for weight in (0.0, 1.0):
        v = fv.run(tinyvgg, fv.preset("Olah 2017", tinyvgg, layer="conv2_2", channel=(7, 7, 7), steps=32,
                                      diversity=weight))
        x = torch.from_numpy(v.images).permute(0, 3, 1, 2).float() / 255
        with torch.no_grad():
            similarity.append(float(fv._diversity(probe(x, logits=False)[0])))
        assert v.trace[-5:].mean() > v.trace[:5].mean()
    assert similarity[1] < 0.7 * similarity[0]


def test_same_seed_same_image_whatever_other_threads_do(tinyvgg):
    s = fv.preset("Olah 2017", tinyvgg, layer="conv2_2", channel=1, steps=24)
    alone = fv.run(tinyvgg, s)
    stop = threading.Event()

    def noise():
        while not stop.is_set():
            torch.manual_seed(int(torch.randint(0, 1000, ())))
            np.random.seed(3)

    other = threading.Thread(target=noise, daemon=True)
    other.start()
    try:
        busy = fv.run(tinyvgg, s)
    finally:
        stop.set()
        other.join(5)
    assert np.array_equal(alone.images, busy.images)


def test_analysis_job_streams_steps_and_returns_the_visualisation(tinyvgg):
    seen = []
    gen = analysis.feature_vis(tinyvgg, fv.Settings(layer="conv1_2", channel=0, steps=6, preview_every=3),
                               progress=lambda done, total, text: seen.append((done, total)))
    steps = []
    while True:
        try:
            steps.append(next(gen))
        except StopIteration as stop:
            result = stop.value
            break
    assert [s.step for s in steps] == [1, 2, 3, 4, 5, 6] and steps[2].preview is not None
    assert isinstance(result, fv.Visualisation) and np.array_equal(result.image, steps[-1].preview[0])
    assert seen[-1] == (6, 6)


# --- the command line ------------------------------------------------------------------------------


def test_cli_visualize_writes_the_png_and_npz(tmp_path, capsys):
    from PIL import Image

    out, npz = tmp_path / "viz.png", tmp_path / "viz.npz"
    status = main.main(["visualize", "--model", "tinyvgg_shapes", "--layer", "conv2_2", "--channel", "7",
                        "--steps", "16", "--out", str(out), "--npz", str(npz), "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert status == 0
    image = np.asarray(Image.open(out))
    with np.load(npz) as data:
        assert set(data.files) == {"image", "objective_trace"}
        assert np.array_equal(data["image"], image) and data["objective_trace"].shape == (16,)
        assert summary["objective_first"] == pytest.approx(float(data["objective_trace"][0]))
        assert summary["objective_last"] == pytest.approx(float(data["objective_trace"][-1]))
    assert image.shape == (32, 32, 3) and summary["steps"] == 16 and summary["preset"] == "Olah 2017"
    assert summary["activation"] > summary["objective_first"]
    # the same seed: the same image; a class by name
    again = tmp_path / "again.png"
    assert main.main(["visualize", "--model", "tinyvgg_shapes", "--layer", "conv2_2", "--channel", "7",
                      "--steps", "16", "--out", str(again)]) == 0
    assert np.array_equal(np.asarray(Image.open(again)), image)
    assert main.main(["visualize", "--model", "tinyvgg_shapes", "--class", "star", "--steps", "8",
                      "--out", str(tmp_path / "star.png")]) == 0
    assert "class star (3)" in capsys.readouterr().out


M = ["--model", "tinyvgg_shapes"]
BAD = [
    (["--layer", "conv2_2", "--channel", "7", "--steps", "0"], "--steps: must be an integer from 1 to 10000"),
    (["--layer", "conv2_2", "--channel", "7", "--size", "7"], "--size: must be an integer from 8 to 1024"),
    (["--layer", "conv2_2", "--channel", "-1"], "--channel: must be an integer >= 0"),
    (["--layer", "conv2_2", "--channel", "7", "--seed", "-1"], "--seed: must be an integer from 0"),
    (["--layer", "conv2_2", "--channel", "7", "--lr", "0"], "--lr: must be a number > 0"),
    (["--layer", "conv2_2", "--channel", "7", "--method", "x"], "--method: invalid choice"),
    (["--layer", "conv2_2", "--channel", "7", "--preset", "x"], "--preset: invalid choice"),
    (["--layer", "conv2_2", "--channel", "10"], "channel: 10 is out of range"),
    (["--layer", "nope", "--channel", "1"], "layer 'nope' is not in the model"),
    (["--layer", "conv2_2"], "--channel: the channel objective needs a channel"),
    (["--channel", "1"], "--layer: the channel objective needs a layer"),
    (["--class", "9"], "--class 9: out of range; TinyVGG on shapes (trained here) has 8 classes"),
    (["--class", "dog"], "--class 'dog': not one of"),
    (["--layer", "conv2_2", "--objective", "dream", "--channel", "1"], "--channel: not with dream"),
    (["--layer", "conv2_2", "--channel", "1", "--image", "star"], "--image: a start image needs --method pixel"),
    (["--layer", "conv2_2", "--objective", "dream", "--image", "no-such.png"], "no-such.png"),
]


@pytest.mark.parametrize(("argv", "words"), BAD)
def test_cli_visualize_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, words):
    status = main.main(["visualize", *M, *argv, "--out", str(tmp_path / "v.png")])
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.startswith("vizapp: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert words in err
    assert not (tmp_path / "v.png").exists()


@pytest.mark.parametrize(("out", "words"), [("v.jpg", "name a .png file"), ("missing/v.png", "does not exist")])
def test_cli_visualize_refuses_a_bad_out(tmp_path, capsys, out, words):
    status = main.main(["visualize", *M, "--layer", "conv2_2", "--channel", "1", "--out", str(tmp_path / out)])
    assert status == 2 and words in capsys.readouterr().err

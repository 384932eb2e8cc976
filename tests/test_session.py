"""The Qt-free session and the fixes around layer stepping, maps and devices."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
import torchvision

from main import main
from models import LoadedModel, Preprocess, load_model
from vizapp.core.errors import UserError
from vizapp.probing.inference import run
from vizapp.probing.kernels import kernel_mosaic
from vizapp.probing.layers import layer_table
from vizapp.probing.mosaic import as_channel_maps, has_maps
from vizapp.session import Session


def _session(module) -> Session:
    loaded = LoadedModel("m", "m", "cnn", module.eval(), Preprocess(), None, "")
    s = Session()
    s.set_model(loaded, layer_table(loaded))
    return s


def test_stepping_follows_the_layer_tree_and_skips_pass_throughs():
    torch.manual_seed(0)
    s = _session(torchvision.models.resnet18(weights=None))
    assert s.layer == "conv1"
    seen = [s.step_layer(1) for _ in range(5)]
    # A block comes before its insides, as in the tree the Model dock shows.
    assert seen == ["bn1", "relu", "maxpool", "layer1.0", "layer1.0.conv1"]
    steps = s.steppable_layers()
    assert "layer1" not in steps and steps.index("layer1.0") < steps.index("layer1.0.bn2")
    assert not any(n.endswith(("avgpool", "fc")) for n in steps)  # 1x1 and vector outputs
    # From the classifier (not steppable) one step back lands on the last layer above it in the tree.
    s.select_layer("fc")
    assert s.step_layer(-1) == "layer4.1.bn2"
    s.select_layer("fc")
    assert s.step_layer(1) == steps[-1]  # clamps at the end
    # From a pass-through container, a step down enters it.
    s.select_layer("layer2")
    assert s.step_layer(1) == "layer2.0"


def test_stepping_down_from_the_lite0_stem_walks_the_tree_and_never_back_up(lite0):
    s = Session()
    s.set_model(lite0, layer_table(lite0))
    assert s.layer == "conv_stem"
    tree = [r.name for r in s.layers if r.name]
    seen = [s.step_layer(1) for _ in range(8)]
    assert seen[:4] == ["bn1", "bn1.act", "blocks.0.0", "blocks.0.0.conv_dw"]
    places = [tree.index(n) for n in ["conv_stem", *seen]]
    assert places == sorted(places) and len(set(places)) == len(places)  # always down the tree
    assert s.steppable_layers() == [n for n in tree if n in set(s.steppable_layers())]
    back = [s.step_layer(-1) for _ in range(8)]
    assert back == [*reversed(seen[:-1]), "conv_stem"]


def test_vit_tokens_are_steppable_and_shown_on_the_patch_grid():
    s = _session(timm.create_model("deit_tiny_patch16_224", pretrained=False))
    steps = s.steppable_layers()
    assert "blocks.0" in steps and "blocks.11" in steps
    assert not any(n.endswith(("q_norm", "k_norm")) for n in steps)  # Identity layers
    assert steps.index("blocks.0") < steps.index("blocks.0.attn.qkv") < steps.index("blocks.1")
    assert has_maps((197, 192)) and has_maps((196, 192)) and not has_maps((1000,))


def test_channels_last_outputs_are_transposed():
    torch.manual_seed(0)
    model = torchvision.models.convnext_tiny(weights=None).eval()
    loaded = LoadedModel("c", "c", "cnn", model, Preprocess(), None, "")
    from PIL import Image

    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (240, 240, 3), dtype=np.uint8))
    out = run(loaded, image, ["features.1.0.block.2"]).activations["features.1.0.block.2"]
    assert out.shape == (56, 56, 96)
    maps = as_channel_maps(out)
    assert maps.shape == (96, 56, 56)
    np.testing.assert_array_equal(maps[7], out[:, :, 7])


def test_shared_module_reports_its_call_count(chelsea):
    from vizapp.analysis import analyse_image

    torch.manual_seed(0)
    loaded = LoadedModel("r", "r", "cnn", torchvision.models.resnet18(weights=None).eval(), Preprocess(), None, "")
    result = analyse_image(loaded, chelsea, "layer1.0.relu")
    assert any("runs 2 times" in n for n in result.notes)
    assert not analyse_image(loaded, chelsea, "layer1.0.conv1").notes


def test_depthwise_kernels_default_to_one_tile_per_channel():
    view = kernel_mosaic(np.random.default_rng(0).normal(size=(96, 1, 3, 3)).astype(np.float32))
    assert view.mode == "mean" and len(view.mosaic.order) == 96 and view.mosaic.tile_h == 3


def test_unknown_device_is_a_user_error():
    from vizapp.probing.device import check_device

    assert check_device("cpu") == "cpu"
    with pytest.raises(UserError, match="not available here"):
        check_device("gpu")


def test_cli_rejects_a_bad_device(capsys, sample_paths):
    rc = main(["predict", "--model", "efficientnet_lite0", "--image", str(sample_paths["coffee"]), "--device", "gpu"])
    err = capsys.readouterr().err
    assert rc == 2 and "device 'gpu' is not available" in err and "Traceback" not in err


def test_non_registry_arch_gets_its_own_preprocessing(tmp_path):
    module = timm.create_model("vit_tiny_patch16_384", pretrained=False)
    path = tmp_path / "vit384.pth"
    torch.save(module.state_dict(), path)
    loaded = load_model(str(path), arch="vit_tiny_patch16_384")
    assert loaded.preprocess.crop == 384 and loaded.preprocess.mean == (0.5, 0.5, 0.5)
    path2 = tmp_path / "r34.pth"
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), path2)
    assert load_model(str(path2), arch="resnet34").preprocess.crop == 224


def test_receptive_field_post_pass_stops_when_cancelled():
    from vizapp.core.errors import Cancelled
    from vizapp.core.jobs import CancelToken
    from vizapp.explain.receptive import gradient_boxes, unit_boxes

    torch.manual_seed(0)
    loaded = LoadedModel("r", "r", "cnn", torchvision.models.resnet18(weights=None).eval(), Preprocess(), None, "")
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        gradient_boxes(loaded, "layer1", [(0, 0), (5, 5)], cancel=token)
    with pytest.raises(Cancelled):
        unit_boxes(loaded, "layer1", [(0, 0)], (56, 56), False, cancel=token)
    # Not cancelled: a real box, larger than one unit's stride.
    box = gradient_boxes(loaded, "layer1", [(10, 10)], cancel=CancelToken())[(10, 10)]
    assert box[2] - box[0] > 4 and box[3] - box[1] > 4


# --- issue 9: suggestions from the registry; a model's own samples -------------------------------


def test_suggested_vits_come_from_the_catalog_what_works_here_first():
    from models import get_spec, list_specs
    from vizapp.explain.suggestions import suggest_models, suggestion_text

    catalog = [(spec, spec.source in ("resources", "random", "package")) for spec in list_specs()]
    names = [s.name for s in suggest_models("vit", catalog)]
    assert names[:2] == ["vit_digits", "vit_tiny_untrained"]
    assert set(names) == {spec.name for spec in list_specs() if spec.kind == "vit"}
    assert suggestion_text("vit", catalog).startswith("vit_digits, vit_tiny_untrained (untrained), vit_b_16 (download)")
    # A cached download counts as offline and trained: it joins vit_digits, in registry order.
    cached = [(get_spec(n), n != "deit_tiny") for n in ("deit_tiny", "vit_tiny_untrained", "vit_digits", "vit_b_16")]
    assert [s.label() for s in suggest_models("vit", cached)] == [
        "vit_digits", "vit_b_16", "vit_tiny_untrained (untrained)", "deit_tiny (download)"]
    assert suggestion_text("vit", []) == ""


def test_a_checkpoint_trained_on_shapes_or_digits_has_its_own_samples(tmp_path):
    import json
    import shutil
    from pathlib import Path
    from types import SimpleNamespace

    from vizapp.session import model_samples

    shipped = Path(__file__).resolve().parents[1] / "resources" / "models" / "tinyvgg_shapes"
    mine = tmp_path / "my_run"
    shutil.copytree(shipped, mine)
    loaded = load_model(str(mine))
    own = model_samples(loaded)
    assert [c for c, _ in own] == loaded.class_names and [s.path.stem for _, s in own] == loaded.class_names
    digits = load_model("vit_digits")
    assert [s.path.name for _, s in model_samples(digits)] == [f"digit{i}.png" for i in range(10)]
    card = json.loads((mine / "card.json").read_text())
    card["data"]["dataset"] = "cifar10"  # no samples ship for it
    (mine / "card.json").write_text(json.dumps(card))
    assert model_samples(loaded) == []
    (mine / "card.json").write_text("{ not json")
    assert model_samples(loaded) == []
    assert model_samples(SimpleNamespace(source="random weights, seed 0", class_names=["0"])) == []


# --- issue 10: the state the views share lives in the session ----------------------------------


def test_the_explained_class_predictions_and_staleness_are_session_state():
    from vizapp.probing.inference import Prediction

    torch.manual_seed(0)
    s = _session(torchvision.models.resnet18(weights=None))
    heard = []
    for name in ("target", "predictions", "stale", "catalog"):
        getattr(s.events, name).connect(lambda value, name=name: heard.append((name, value)))
    top = [Prediction("tabby", 281, 0.6), Prediction("lynx", 287, 0.3)]
    s.set_predictions(top)
    s.set_target(287)
    s.set_target(287)  # no change, no event
    assert s.target == 287 and s.predictions == top
    assert heard == [("predictions", top), ("target", 287)]
    with pytest.raises(ValueError, match="negative"):
        s.set_target(-1)
    assert s.target == 287
    # Staleness: one event per change of a dock's flag.
    heard.clear()
    s.mark_stale("attention")
    s.mark_stale("attention")
    assert s.is_stale("attention") and not s.is_stale("attribution")
    s.mark_stale("attention", False)
    assert not s.is_stale("attention") and heard == [("stale", "attention"), ("stale", "attention")]
    s.set_catalog([("spec", True)], ["cpu"])
    assert s.catalog == ([("spec", True)], ["cpu"]) and heard[-1] == ("catalog", s.catalog)
    # A model without a classifier head (no predictions) and a new model go back to the predicted class.
    s.set_target(281)
    s.set_predictions([])
    assert s.target is None
    s.set_predictions(top)
    s.set_target(281)
    s.set_model(s.model, s.layers)
    assert s.target is None and s.predictions == []

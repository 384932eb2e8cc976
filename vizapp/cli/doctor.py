"""``vizapp doctor``: a lab machine's self-test, one row per check, exit 1 if any fails.

Each check is a function ``check_<what>(ctx) -> list[Check]`` listed in :data:`CHECKS`
(adding a check is one function and one line there); a check that raises becomes a FAIL
row naming the exception, so one broken check never hides the others. Statuses: ``PASS``,
``FAIL`` (the machine cannot run the app as shipped), ``NOTE`` (worth knowing: versions, CPU
only, a model that downloads on first use).

The Qt checks need Qt, which the engine never imports, and a missing system library makes
Qt abort its process: so the window is tried in a child process, the hidden ``_doctor-qt``
command that ``main.py`` wires to :func:`widgets.doctor_qt.probe` (as it wires ``gui`` and
``screenshot``). The child prints :data:`~vizapp.cli.qt_child.QT_MARK` lines of JSON (what Qt it is and where its
plugins are, then whether a window opened); when it dies instead, its stderr is Qt's message
and ``ldd`` on the platform plugin names the missing libraries (:func:`~vizapp.cli.qt_child.missing_libraries`,
:func:`~vizapp.cli.qt_child.debian_package`). The child is the same program: ``python -m vizapp`` from source,
the executable itself when frozen (PyInstaller: ``sys.frozen``, no ``python -c`` there).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from vizapp.cli.qt_child import Context

__all__ = ["CHECKS", "FAIL", "NOTE", "PASS", "Check", "Context", "cmd_doctor", "format_table", "run_checks"]

PASS, FAIL, NOTE = "PASS", "FAIL", "NOTE"
#: Less free space than this on the cache's disk is a FAIL (an index or a model download needs more).
MIN_FREE_BYTES = 1 << 30
@dataclass(frozen=True)
class Check:
    """One row: what was checked, PASS / FAIL / NOTE, and what was found (or what to do)."""

    check: str
    status: str
    detail: str

    def to_json(self) -> dict[str, str]:
        return asdict(self)


# -- the checks ----------------------------------------------------------------------------

def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


def check_versions(ctx: Context) -> list[Check]:
    """Python, vizapp, torch, torchvision, timm and CUDA (the Qt ones come from the Qt child)."""
    import timm
    import torch
    import torchvision

    import vizapp

    frozen = ", frozen" if getattr(sys, "frozen", False) else ""
    cuda = torch.version.cuda
    cudnn = torch.backends.cudnn.version() if cuda and torch.backends.cudnn.is_available() else None
    if cudnn:  # 92400 is 9.24.0; before cuDNN 9, 8902 was 8.9.2
        major, rest = divmod(cudnn, 10000 if cudnn >= 10000 else 1000)
        cudnn = f"{major}.{rest // 100}.{rest % 100}"
    return [
        Check("Python", NOTE, f"{platform.python_version()} ({sys.executable}{frozen}) on {platform.platform()}"),
        Check("vizapp", NOTE, vizapp.__version__),
        Check("torch", NOTE, torch.__version__),
        Check("torchvision", NOTE, torchvision.__version__),
        Check("timm", NOTE, timm.__version__),
        Check("CUDA", NOTE, f"{cuda} (cuDNN {cudnn})" if cuda else "none: a CPU-only torch build"),
    ]


def check_qt(ctx: Context) -> list[Check]:
    """Qt's versions, its platform plugin and a small window, tried in the child process."""
    report = ctx.qt()
    info, window = report.info, report.window
    rows = [Check("PySide6", NOTE, info.get("pyside6") or _version("PySide6")),
            Check("Qt", NOTE, info.get("qt") or "unknown (the Qt check did not say)")]
    platform_name = window.get("platform")
    if report.loaded:
        rows.append(Check("Qt platform plugin", PASS, f"{platform_name} (asked for {report.platforms})"))
        if window.get("ok"):
            rows.append(Check("Qt window", PASS, f"a main window opened on {platform_name}, screen {window.get('screen')}"))
        else:
            rows.append(Check("Qt window", FAIL, window.get("error") or "the window did not show"))
    else:
        rows.append(Check("Qt platform plugin", FAIL, report.failure()))
        rows.append(Check("Qt window", FAIL, "not tried: no platform plugin loaded"))
    return rows


def check_device(ctx: Context) -> list[Check]:
    """CUDA or MPS visible and a tiny op on it; CPU only is a NOTE, a visible GPU that fails a FAIL."""
    import torch

    devices = []
    if torch.cuda.is_available():
        devices = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    if not devices:
        why = (f"torch is built with CUDA {torch.version.cuda} but sees no GPU (no NVIDIA driver or device)"
               if torch.version.cuda else "a CPU-only torch build")
        return [Check("device", NOTE, f"CPU only, {torch.get_num_threads()} threads: {why}")]
    rows = []
    for device in devices:
        name = torch.cuda.get_device_name(device) if device.startswith("cuda") else "Apple GPU"
        try:
            value = (torch.ones(2, device=device) * 2).sum().item()
        except Exception as exc:  # noqa: BLE001 - a broken driver raises anything
            rows.append(Check(f"device {device}", FAIL, f"{name}: a tiny op failed: {type(exc).__name__}: {exc}"))
            continue
        if value != 4.0:
            rows.append(Check(f"device {device}", FAIL, f"{name}: 2 * ones(2) summed to {value}, not 4"))
        else:
            memory = ""
            if device.startswith("cuda"):
                memory = f", {torch.cuda.get_device_properties(device).total_memory / 2**30:.0f} GiB"
            rows.append(Check(f"device {device}", PASS, f"{name}{memory}: a tiny op ran"))
    return rows


#: Registry sources whose weights ship with the app: missing is a broken installation.
SHIPPED_SOURCES = ("resources", "package")


def check_models(ctx: Context) -> list[Check]:
    """Each registry model: offline or needs a download (no download, no weights loaded)."""
    from models import is_cached, list_specs

    rows = []
    for spec in list_specs():
        shipped = spec.source in SHIPPED_SOURCES
        try:
            offline = is_cached(spec)
            error = ""
        except Exception as exc:  # noqa: BLE001 - one model's trouble is its own row
            offline, error = False, f" ({type(exc).__name__}: {exc})"
        if shipped:
            where = f"the package {spec.package}" if spec.source == "package" else f"resources/models/{spec.weights}"
            rows.append(Check(f"model {spec.name}", PASS, f"offline, shipped ({where})") if offline else
                        Check(f"model {spec.name}", FAIL, f"shipped weights missing ({where}){error}: reinstall vizapp"))
        elif spec.source == "random":
            rows.append(Check(f"model {spec.name}", NOTE, "offline (seeded random weights)"))
        else:
            rows.append(Check(f"model {spec.name}", NOTE, "offline (weights in the cache)" if offline
                              else f"downloads its weights from {spec.source} on first use{error}"))
    return rows


def _settings_folder(ctx: Context) -> Path | None:
    from vizapp.core.paths import settings_file

    path = settings_file()
    if path is None and ctx.qt().info.get("settings"):
        path = Path(ctx.qt().info["settings"])  # Qt's per-user ini store, as the window opens it
    return path.parent if path is not None else None


#: The app's own folders: the row's name, the setting that moves it, and how to find it
#: (``None``: unknown here).
FOLDERS: list[tuple[str, str, Callable[[Context], Path | None]]] = [
    ("cache folder", "VIZAPP_CACHE", lambda ctx: _paths().cache_dir()),
    ("index folder", "VIZAPP_CACHE", lambda ctx: _paths().index_dir()),
    ("data folder", "VIZAPP_DATA", lambda ctx: _paths().data_dir()),
    ("runs folder", "VIZAPP_RUNS", lambda ctx: _paths().runs_dir()),
    ("settings folder", "VIZAPP_SETTINGS (an .ini file)", _settings_folder),
]


def _paths():
    from vizapp.core import paths

    return paths


def writable(name: str, folder: Path, setting: str) -> Check:
    """Write and remove a small file in ``folder`` through :mod:`vizapp.core.files`; a missing
    folder is created for the test (as the app's first write would) and removed again."""
    from vizapp.core.errors import StorageError
    from vizapp.core.files import storage_errors, write_text

    created = []  # the folders the write will create, deepest first
    parent = folder
    while not parent.exists() and parent != parent.parent:
        created.append(parent)
        parent = parent.parent
    probe = folder / f".vizapp-doctor-{os.getpid()}"
    try:
        write_text(probe, "vizapp doctor\n")
        with storage_errors(probe, "remove"):
            probe.unlink()
    except StorageError as exc:
        return Check(name, FAIL, f"{exc}; fix that or set {setting} to a writable place")
    finally:
        for made in created:
            try:
                made.rmdir()
            except OSError:
                break  # not empty (something else wrote there meanwhile) or not ours to remove
    return Check(name, PASS, f"{folder} writable" + (" (it does not exist yet; the app will create it)" if created else ""))


def check_folders(ctx: Context) -> list[Check]:
    """The cache, index, data, runs and settings folders are writable."""
    rows = []
    for name, setting, where in FOLDERS:
        folder = where(ctx)
        if folder is None:
            rows.append(Check(name, NOTE, "not checked: the Qt check did not say where Qt keeps the settings"))
        else:
            rows.append(writable(name, folder, setting))
    return rows


def check_disk(ctx: Context) -> list[Check]:
    """Free space on the cache folder's disk: under :data:`MIN_FREE_BYTES` fails."""
    from vizapp.core.paths import cache_dir

    folder = cache_dir()
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    usage = shutil.disk_usage(existing)
    figure = f"{usage.free / 1e9:.1f} GB free of {usage.total / 1e9:.0f} GB on the cache's disk ({folder})"
    if usage.free < MIN_FREE_BYTES:
        return [Check("free disk", FAIL, f"only {figure}: indexes and model downloads need more than "
                                         f"{MIN_FREE_BYTES / 1e9:.1f} GB; free some space or set VIZAPP_CACHE")]
    return [Check("free disk", NOTE, figure)]


def check_resources(ctx: Context) -> list[Check]:
    """The icon and the samples, found through :func:`vizapp.core.paths.resource`."""
    from vizapp.core.paths import resource
    from vizapp.inputs.images import lab_samples, sample_images

    icon = resource("icon.png")
    lab = lab_samples()
    photos = sample_images()
    rows = [Check("icon", PASS, str(icon)) if icon.is_file() else Check("icon", FAIL, f"{icon} is missing: reinstall vizapp")]
    if {"digit3", "star"} <= {s.name for s in lab}:
        rows.append(Check("lab samples", PASS, f"{len(lab)} images in {resource('samples')}"))
    else:
        rows.append(Check("lab samples", FAIL, f"{resource('samples')} lacks digit3.png or star.png: reinstall vizapp"))
    if "chelsea" in {s.name for s in photos}:
        rows.append(Check("sample photographs", PASS, f"{len(photos)} of scikit-image's ({', '.join(s.name for s in photos)})"))
    else:
        rows.append(Check("sample photographs", FAIL, "scikit-image's photographs (chelsea, the default image) are missing: reinstall vizapp"))
    return rows


def check_config(ctx: Context) -> list[Check]:
    """The per-machine configuration in effect (a bad file fails) and the weights folders."""
    from vizapp.core.config import bundle_dir, config_candidates, machine_config
    from vizapp.core.errors import UserError
    from vizapp.core.paths import weights_dirs

    try:
        config = machine_config()
    except UserError as exc:
        return [Check("machine config", FAIL, str(exc))]
    if config.path is None:
        where = ", ".join(str(p) for p in config_candidates()) or "nowhere"
        rows = [Check("machine config", NOTE, f"none (looked for {where}); the defaults apply")]
    else:
        shown = f"{len(config.models)} models shown" if config.models else "every model shown"
        rows = [Check("machine config", PASS, f"{config.path}: offline_only={str(config.offline_only).lower()}, "
                                              f"{shown}, default model {config.default_model or 'the built-in'}")]
    bundle = bundle_dir()
    for folder in weights_dirs():
        if bundle is not None and folder == bundle / "weights" and not folder.exists():
            continue  # built without --with-weights: nothing inside, nothing wrong
        if folder.is_dir():
            files = sum(1 for p in folder.rglob("*") if p.is_file())
            rows.append(Check("weights folder", PASS, f"{folder}: {files} files"))
        else:
            rows.append(Check("weights folder", FAIL, f"{folder} is named ($VIZAPP_WEIGHTS, the config's weights_dirs "
                                                      "or the bundle) but is not a readable folder"))
    return rows


def check_camera(ctx: Context) -> list[Check]:
    """OpenCV (live camera and video input) and the cameras it opens; no camera is only a note."""
    from vizapp.inputs.live import cameras, opencv_version

    version = opencv_version()
    if version is None:
        return [Check("OpenCV", FAIL, "not importable: live camera and video input need it "
                                      "(pip install opencv-python-headless, or reinstall vizapp)")]
    found = cameras()
    listed = (f"{len(found)} found (index {', '.join(map(str, found))})" if found
              else "none found: live input can still play a video file")
    return [Check("OpenCV", NOTE, version), Check("cameras", NOTE, listed)]


#: Every check, in the table's order: one line per check function.
CHECKS: list[Callable[[Context], list[Check]]] = [
    check_versions,
    check_config,
    check_qt,
    check_device,
    check_models,
    check_folders,
    check_disk,
    check_resources,
    check_camera,
]


def run_checks(checks: list[Callable[[Context], list[Check]]] | None = None) -> list[Check]:
    """Run ``checks`` (default :data:`CHECKS`), each one's rows in order; a check that raises is a FAIL row."""
    checks = CHECKS if checks is None else checks
    ctx = Context(start_qt=check_qt in checks)
    rows: list[Check] = []
    try:
        for check in checks:
            try:
                rows += check(ctx)
            except Exception as exc:  # noqa: BLE001 - a check that breaks is a failed check, not a crash
                name = check.__name__.removeprefix("check_")
                rows.append(Check(name, FAIL, f"the check itself failed: {type(exc).__name__}: {exc}"))
    finally:
        ctx.close()
    return rows


def format_table(rows: list[Check]) -> str:
    """Rows as an aligned table (check, status, detail), then a one-line verdict."""
    width = max([len("check"), *(len(r.check) for r in rows)])
    lines = [f"{'check':<{width}}  status  detail", f"{'-' * width}  ------  ------"]
    lines += [f"{r.check:<{width}}  {r.status:<6}  {r.detail}" for r in rows]
    failed = [r.check for r in rows if r.status == FAIL]
    lines.append(f"\n{len(failed)} failed: {', '.join(failed)}" if failed else "\nno failures: this machine can run vizapp")
    return "\n".join(lines)


def cmd_doctor(args: argparse.Namespace) -> int:
    """``vizapp doctor [--json]``: 0 if nothing failed, else 1."""
    rows = run_checks()
    if args.json:
        print(json.dumps([r.to_json() for r in rows], indent=1))
    else:
        print(format_table(rows))
    return 1 if any(r.status == FAIL for r in rows) else 0

"""``vizapp doctor``: a lab machine's self-test, one row per check, exit 1 if any fails.

Each check is a function ``check_<what>(ctx) -> list[Check]`` listed in :data:`CHECKS`
(adding a check is one function and one line there); a check that raises becomes a FAIL
row naming the exception, so one broken check never hides the others. Statuses: ``PASS``,
``FAIL`` (the machine cannot run the app as shipped), ``NOTE`` (worth knowing: versions, CPU
only, a model that downloads on first use).

The Qt checks need Qt, which the engine never imports, and a missing system library makes
Qt abort its process: so the window is tried in a child process, the hidden ``_doctor-qt``
command that ``main.py`` wires to :func:`widgets.doctor_qt.probe` (as it wires ``gui`` and
``screenshot``). The child prints :data:`QT_MARK` lines of JSON (what Qt it is and where its
plugins are, then whether a window opened); when it dies instead, its stderr is Qt's message
and ``ldd`` on the platform plugin names the missing libraries (:func:`missing_libraries`,
:func:`debian_package`). The child is the same program: ``python -m vizapp`` from source,
the executable itself when frozen (PyInstaller: ``sys.frozen``, no ``python -c`` there).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = [
    "CHECKS", "FAIL", "NOTE", "PASS", "QT_COMMAND", "QT_MARK", "Check", "Context", "cmd_doctor",
    "debian_package", "format_table", "missing_libraries", "run_checks",
]

PASS, FAIL, NOTE = "PASS", "FAIL", "NOTE"
#: The hidden command the Qt child runs (``main.py`` maps it to ``widgets.doctor_qt.probe``).
QT_COMMAND = "_doctor-qt"
#: The child's report lines start with this, then one JSON object.
QT_MARK = "VIZAPP_DOCTOR_QT "
#: How long the Qt child may take (importing Qt and opening a window: a second or two).
QT_TIMEOUT = 60.0
#: Less free space than this on the cache's disk is a FAIL (an index or a model download needs more).
MIN_FREE_BYTES = 1 << 30
_HEADLESS_HINT = ("for a headless machine set QT_QPA_PLATFORM=offscreen; for the window run it in an X session "
                  "(DISPLAY set, or under Xvfb)")

#: Debian/Ubuntu packages of the system libraries Qt's platform plugins load (the PySide6
#: and PyInstaller builds bring Qt's own; these come from the machine).
DEBIAN_PACKAGES = {
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-xinerama.so.0": "libxcb-xinerama0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb-util.so.1": "libxcb-util1",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libOpenGL.so.0": "libopengl0",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libdbus-1.so.3": "libdbus-1-3",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libwayland-client.so.0": "libwayland-client0",
    "libwayland-cursor.so.0": "libwayland-cursor0",
}


@dataclass(frozen=True)
class Check:
    """One row: what was checked, PASS / FAIL / NOTE, and what was found (or what to do)."""

    check: str
    status: str
    detail: str

    def to_json(self) -> dict[str, str]:
        return asdict(self)


# -- the Qt child's output -----------------------------------------------------------------

def missing_libraries(ldd_output: str) -> list[str]:
    """The libraries ``ldd`` could not find (``libfoo.so.1 => not found``), each once, in order."""
    found: list[str] = []
    for line in ldd_output.splitlines():
        m = re.match(r"\s*(\S+)\s+=>\s+not found", line)
        if m and m.group(1) not in found:
            found.append(m.group(1))
    return found


def debian_package(soname: str) -> str:
    """The Debian/Ubuntu package that ships ``soname`` (``libxcb-cursor.so.0`` -> ``libxcb-cursor0``).

    Known names come from :data:`DEBIAN_PACKAGES`; others follow Debian's naming rule
    (the name lower-cased, then the major version, after a ``-`` when the name ends in a digit).
    """
    if soname in DEBIAN_PACKAGES:
        return DEBIAN_PACKAGES[soname]
    m = re.fullmatch(r"(.+?)\.so\.(\d+)(?:\.\d+)*", soname)
    if not m:
        return soname
    name, major = m.group(1).lower(), m.group(2)
    return f"{name}-{major}" if name[-1].isdigit() else f"{name}{major}"


def _unloadable(stderr: str) -> list[str]:
    """Libraries Qt's loader names in ``... cannot open shared object file`` (QT_DEBUG_PLUGINS=1)."""
    return list(dict.fromkeys(re.findall(r"([\w.+-]+\.so[\d.]*): cannot open shared object file", stderr)))


def _qt_message(stderr: str) -> str:
    """Qt's own explanation, one line: the most telling of its messages on stderr."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for key in ("could not connect to display", "could not load the qt platform plugin",
                "no qt platform plugin could be initialized", "failed to create", "qt.qpa"):
        for line in lines:
            if key in line.lower():
                return line.rstrip(".")
    return lines[-1] if lines else ""


def _plugin_files(plugins: str, platforms: str) -> list[Path]:
    """The platform plugin files Qt would try for ``platforms`` (``"wayland;xcb"``, ``"xcb:opt"``)."""
    folder = Path(os.environ.get("QT_QPA_PLATFORM_PLUGIN_PATH") or Path(plugins) / "platforms")
    files = []
    for name in platforms.split(";"):
        name = name.split(":")[0].strip()
        for stem in (name, name.split("-")[0]):
            path = folder / f"libq{stem}.so"
            if stem and path.is_file():
                files.append(path)
                break
    return files


def _ldd(path: Path) -> str:
    if not shutil.which("ldd"):
        return ""
    try:
        return subprocess.run(["ldd", str(path)], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def diagnose_qt(platforms: str, stderr: str, missing: list[str]) -> str:
    """The FAIL detail for a platform that did not start: Qt's message, the missing libraries and
    their packages, and what to do."""
    message = _qt_message(stderr)
    parts = [f"{platforms}: {message or 'Qt could not start it'}"]
    if "could not connect to display" in stderr.lower():
        display = os.environ.get("DISPLAY")
        parts.append(f"DISPLAY is {display!r}" if display else "DISPLAY is not set")
    if missing:
        packages = list(dict.fromkeys(debian_package(lib) for lib in missing))
        parts.append(f"missing system libraries {', '.join(missing)}: install them "
                     f"(Debian/Ubuntu: apt install {' '.join(packages)})")
    parts.append(_HEADLESS_HINT)
    return "; ".join(parts)


class QtReport:
    """What the Qt child said: its ``info`` (Qt's version, plugin folder, settings file) and
    ``window`` (platform, screen, ok or error) records, its exit status and stderr."""

    def __init__(self, stdout: str, stderr: str, returncode: int | None, platforms: str):
        self.info: dict = {}
        self.window: dict = {}
        for line in stdout.splitlines():
            if line.startswith(QT_MARK):
                try:
                    record = json.loads(line[len(QT_MARK):])
                except ValueError:
                    continue
                if record.get("stage") == "info":
                    self.info = record
                elif record.get("stage") == "window":
                    self.window = record
        self.stderr, self.returncode, self.platforms = stderr, returncode, platforms

    @property
    def loaded(self) -> bool:
        """The platform plugin loaded: a QApplication exists (its platform's name came back)."""
        return bool(self.window.get("platform"))

    def failure(self) -> str:
        """Why Qt did not start: the diagnosis, with ``ldd``'s missing libraries of the plugin."""
        if self.returncode is None:
            return f"{self.platforms}: Qt did not start within {QT_TIMEOUT:.0f} s; {_HEADLESS_HINT}"
        if not self.info:  # the child never reached Qt: it could not start, or not run this command
            lines = [line.strip() for line in self.stderr.splitlines() if line.strip()]
            return f"the Qt check did not run: {lines[-1] if lines else f'exit status {self.returncode}'}"
        if self.info.get("error"):
            return f"Qt could not be imported: {self.info['error']}"
        if self.window.get("error"):
            return f"{self.platforms}: {self.window['error']}; {_HEADLESS_HINT}"
        missing = _unloadable(self.stderr)
        if self.info.get("plugins") and sys.platform.startswith("linux"):
            for plugin in _plugin_files(self.info["plugins"], self.platforms):
                missing += [lib for lib in missing_libraries(_ldd(plugin)) if lib not in missing]
        return diagnose_qt(self.platforms, self.stderr, missing)


def _qt_command() -> tuple[list[str], str | None, dict[str, str]]:
    """How to start this same program as the Qt child: command, working folder, environment."""
    env = dict(os.environ)
    if getattr(sys, "frozen", False):
        return [sys.executable, QT_COMMAND], None, env
    import importlib.util

    spec = importlib.util.find_spec("main")
    root = str(Path(spec.origin).resolve().parent) if spec and spec.origin else None
    if root:  # the child imports this very checkout (or installation), whatever the caller's folder
        env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    return [sys.executable, "-m", "vizapp", QT_COMMAND], root, env


def requested_platforms() -> str:
    """The platform plugin(s) the app would ask Qt for: ``$QT_QPA_PLATFORM``, else Qt's default."""
    if os.environ.get("QT_QPA_PLATFORM"):
        return os.environ["QT_QPA_PLATFORM"]
    if sys.platform == "darwin":
        return "cocoa"
    if sys.platform == "win32":
        return "windows"
    return "wayland;xcb" if os.environ.get("XDG_SESSION_TYPE") == "wayland" else "xcb"


def _no_core_file() -> None:
    """In the Qt child, before it starts: Qt's abort (no display, a missing library) leaves no core file."""
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


class Context:
    """What checks share: the Qt child, started once (when the context is made if ``start_qt``,
    so it runs while the other checks do, else on the first :meth:`qt`) and read once."""

    def __init__(self, start_qt: bool = True):
        self._proc: subprocess.Popen | None = None
        self._report: QtReport | None = None
        self._start_error = ""
        self.platforms = requested_platforms()
        if start_qt:
            self._start()

    def _start(self) -> None:
        command, cwd, env = _qt_command()
        try:
            self._proc = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                          errors="replace", preexec_fn=_no_core_file if os.name == "posix" else None)
        except OSError as exc:
            self._start_error = f"cannot start {command[0]}: {exc}"

    def qt(self) -> QtReport:
        """The Qt child's report (waits for it, at most :data:`QT_TIMEOUT` seconds)."""
        if self._report is None:
            if self._proc is None and not self._start_error:
                self._start()
            out = err = ""
            code: int | None = None
            if self._proc is not None:
                try:
                    out, err = self._proc.communicate(timeout=QT_TIMEOUT)
                    code = self._proc.returncode
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    out, err = self._proc.communicate()
            else:
                err, code = self._start_error, 1
            self._report = QtReport(out, err, code, self.platforms)
        return self._report

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.communicate()


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

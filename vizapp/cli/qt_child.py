"""The doctor's Qt child, from the parent's side: the command that starts it (``python -m
vizapp _doctor-qt`` from source, the executable itself when frozen), the report it prints, and
what its death says (Qt's message, and ``ldd`` on the platform plugin naming the missing
system libraries with their Debian packages). The child itself is
:func:`widgets.doctor_qt.probe`; :mod:`vizapp.cli.doctor` reads the report through
:class:`Context`."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["QT_COMMAND", "QT_MARK", "Context", "QtReport", "debian_package", "diagnose_qt", "missing_libraries",
           "qt_command", "requested_platforms", "unloadable"]

#: The hidden command the Qt child runs (``main.py`` maps it to ``widgets.doctor_qt.probe``).
QT_COMMAND = "_doctor-qt"
#: The child's report lines start with this, then one JSON object.
QT_MARK = "VIZAPP_DOCTOR_QT "
#: How long the Qt child may take (importing Qt and opening a window: a second or two).
QT_TIMEOUT = 60.0
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


def unloadable(stderr: str) -> list[str]:
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
        missing = unloadable(self.stderr)
        if self.info.get("plugins") and sys.platform.startswith("linux"):
            for plugin in _plugin_files(self.info["plugins"], self.platforms):
                missing += [lib for lib in missing_libraries(_ldd(plugin)) if lib not in missing]
        return diagnose_qt(self.platforms, self.stderr, missing)


def qt_command() -> tuple[list[str], str | None, dict[str, str]]:
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


def no_core_file() -> None:
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
        command, cwd, env = qt_command()
        try:
            self._proc = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                          errors="replace", preexec_fn=no_core_file if os.name == "posix" else None)
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

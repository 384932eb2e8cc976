"""Build the frozen vizapp and its Linux packages.

    pip install -e '.[installer]'
    python packaging/build.py                         # dist/vizapp/ (one folder, one executable)
    python packaging/build.py --deb                   # + dist/vizapp_<version>_<arch>.deb and a .tar.gz
    python packaging/build.py --deb --with-weights resnet18,deit_small_patch16_224

``--with-weights`` copies registry models' weight files from this machine's caches (torch
hub checkpoints, the Hugging Face cache) into ``dist/vizapp/weights/``, which the app
searches before it tries a download. Sizes are printed at the end; see packaging/README.md.
Every failure is one line naming what to do, with exit status 2.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

#: Debian packages the window needs beyond glibc (Qt's xcb platform plugin and OpenGL);
#: ``Recommends`` so ``dpkg -i`` works on a machine without them (``vizapp doctor`` names
#: what is missing) and ``apt-get install ./vizapp_*.deb`` brings them in.
RECOMMENDS = ("libxcb-cursor0", "libxkbcommon-x11-0", "libxcb-icccm4", "libxcb-keysyms1", "libxcb-shape0",
              "libxcb-xinerama0", "libxcb-randr0", "libxcb-render-util0", "libxcb-image0", "libegl1", "libgl1",
              "libfontconfig1", "libdbus-1-3")

#: Left out after PyInstaller: what the app never reads (headers, static and CMake files,
#: test suites of the scientific stack).
PRUNE_DIRS = ("torch/include", "torch/share", "torch/test", "torch/testing/_internal/opinfo",
              "caffe2", "torchgen")
PRUNE_NAMED = ("tests",)  # folders called this under the bundle's packages


class BuildError(Exception):
    """A build step that cannot go on; its message is one line."""


def version() -> str:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def arch() -> str:
    try:
        return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)


def size(path: Path) -> int:
    """Bytes under ``path``, links not followed (PyInstaller links torch's CUDA libraries into
    ``_internal`` from ``_internal/nvidia``: counted once)."""
    if path.is_symlink():
        return 0
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit in ("B", "KB") else f"{n:.1f} {unit}"
        n /= 1024
    return ""


# --- the folder -----------------------------------------------------------------------------


def freeze(dist: Path, work: Path) -> Path:
    """Run PyInstaller on packaging/vizapp.spec into ``dist/vizapp``."""
    try:
        import PyInstaller  # noqa: F401
    except ImportError:
        raise BuildError("PyInstaller is not installed: pip install -e '.[installer]'") from None
    cmd = [sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
           "--distpath", str(dist), "--workpath", str(work), str(HERE / "vizapp.spec")]
    print("+", " ".join(cmd), flush=True)
    if subprocess.run(cmd, cwd=ROOT).returncode != 0:
        raise BuildError("PyInstaller failed (its messages are above)")
    return dist / "vizapp"


def prune(folder: Path) -> int:
    """Remove what the app cannot use; returns the bytes freed."""
    internal = folder / "_internal"
    freed = 0
    for rel in PRUNE_DIRS:
        target = internal / rel
        if target.exists():
            freed += size(target)
            shutil.rmtree(target)
    for name in PRUNE_NAMED:
        for target in sorted(internal.rglob(name), key=lambda p: len(p.parts), reverse=True):
            if target.is_dir() and "skimage/data" not in target.as_posix():
                freed += size(target)
                shutil.rmtree(target, ignore_errors=True)
    for static in internal.rglob("*.a"):
        freed += static.stat().st_size
        static.unlink()
    return freed


# --- weights inside -------------------------------------------------------------------------


def copy_weights(names: list[str], folder: Path) -> list[tuple[str, Path]]:
    """Copy each registry model's weights from this machine's caches into ``folder/weights``,
    in the layouts the app searches (``hub/checkpoints/<file>``; a Hugging Face repository's
    cache folder under ``huggingface/hub``)."""
    from models import get_spec
    from models._download import cached_path
    from models.loading import _timm_cfg

    copied = []
    for name in names:
        spec = get_spec(name)  # an unknown name is a one-line ModelError
        if spec.source in ("package", "resources", "random"):
            copied.append((name, Path("(already inside: " + spec.source + ")")))
            continue
        url = spec.url
        repo = None
        if spec.source == "torchvision" and not url:
            from torchvision.models import get_weight

            url = get_weight(spec.weights).url
        if spec.source == "timm":
            cfg = _timm_cfg(spec)
            url, repo = cfg.get("url") or None, cfg.get("hf_hub_id") or None
        if url and cached_path(url).is_file():
            dest = folder / "weights" / "hub" / "checkpoints" / cached_path(url).name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(cached_path(url), dest)
            copied.append((name, dest))
            continue
        if repo:
            src = _hf_repo_folder(repo)
            if src is not None:
                dest = folder / "weights" / "huggingface" / "hub" / src.name
                shutil.copytree(src, dest, symlinks=False, dirs_exist_ok=True)  # blobs resolved into snapshots
                shutil.rmtree(dest / "blobs", ignore_errors=True)
                copied.append((name, dest))
                continue
        where = cached_path(url).parent if url else "the Hugging Face cache"
        raise BuildError(f"--with-weights {name}: its weights are not cached on this machine (looked in {where}); "
                         f"open it once in vizapp (or run `vizapp predict --model {name} ...`) with internet, then build")
    return copied


def _hf_repo_folder(repo: str) -> Path | None:
    from huggingface_hub import constants

    folder = Path(constants.HF_HUB_CACHE) / ("models--" + repo.replace("/", "--"))
    return folder if (folder / "snapshots").is_dir() else None


# --- packages -------------------------------------------------------------------------------


DESKTOP = """[Desktop Entry]
Type=Application
Name=vizapp
GenericName=Neural network visualiser
Comment=See inside vision networks: kernels, feature maps, attention, attributions
Exec=/usr/bin/vizapp %F
Icon=vizapp
Terminal=false
Categories=Education;Science;Graphics;
Keywords=CNN;ViT;PyTorch;feature maps;attention;
StartupWMClass=vizapp
"""


def deb(folder: Path, out_dir: Path, level: int) -> Path:
    """``vizapp_<version>_<arch>.deb``: the folder in /opt/vizapp, /usr/bin/vizapp, a desktop
    entry and its icon; built with ``dpkg-deb``."""
    if shutil.which("dpkg-deb") is None:
        raise BuildError("dpkg-deb is not installed (Debian/Ubuntu: apt-get install dpkg)")
    v, a = version(), arch()
    stage = out_dir.parent / "build" / "deb" / f"vizapp_{v}_{a}"
    shutil.rmtree(stage, ignore_errors=True)
    (stage / "opt").mkdir(parents=True)
    # Hard links: the staging tree costs no second copy of a multi-gigabyte folder.
    subprocess.run(["cp", "-al", str(folder), str(stage / "opt" / "vizapp")], check=True)
    (stage / "usr" / "bin").mkdir(parents=True)
    os.symlink("/opt/vizapp/vizapp", stage / "usr" / "bin" / "vizapp")
    apps = stage / "usr" / "share" / "applications"
    apps.mkdir(parents=True)
    (apps / "vizapp.desktop").write_text(DESKTOP)
    icons = stage / "usr" / "share" / "icons" / "hicolor" / "256x256" / "apps"
    icons.mkdir(parents=True)
    shutil.copy2(ROOT / "resources" / "icon.png", icons / "vizapp.png")
    (stage / "DEBIAN").mkdir()
    installed_kb = size(stage) // 1024
    (stage / "DEBIAN" / "control").write_text(
        f"Package: vizapp\nVersion: {v}\nArchitecture: {a}\nMaintainer: vizapp developers <vizapp@localhost>\n"
        f"Installed-Size: {installed_kb}\nSection: science\nPriority: optional\n"
        f"Recommends: {', '.join(RECOMMENDS)}\n"
        "Description: desktop lab for seeing inside vision networks\n"
        " Kernels, feature maps, top-activating patches, ViT attention, attributions and\n"
        " embeddings of pretrained CNNs and Vision Transformers, with a live training lab.\n"
        " Self-contained: Python, PyTorch and Qt are inside /opt/vizapp; no internet needed.\n")
    # Refresh the menu and icon caches where the tools exist (not needed for the files to work).
    (stage / "DEBIAN" / "postinst").write_text(
        "#!/bin/sh\nset -e\n"
        "command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database -q /usr/share/applications || true\n"
        "command -v gtk-update-icon-cache >/dev/null 2>&1 && gtk-update-icon-cache -q -f /usr/share/icons/hicolor || true\n")
    (stage / "DEBIAN" / "postrm").write_text(
        "#!/bin/sh\nset -e\n"
        "command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database -q /usr/share/applications || true\n"
        "rm -rf /opt/vizapp/_internal/__pycache__ 2>/dev/null || true\n")
    for script in ("postinst", "postrm"):
        (stage / "DEBIAN" / script).chmod(0o755)
    target = out_dir / f"vizapp_{v}_{a}.deb"
    cmd = ["dpkg-deb", "--root-owner-group", "-Zgzip", f"-z{level}", "--build", str(stage), str(target)]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    shutil.rmtree(stage, ignore_errors=True)
    return target


def tarball(folder: Path, out_dir: Path, level: int) -> Path:
    """``vizapp-<version>-linux-<arch>.tar.gz`` of the folder, for machines without dpkg."""
    target = out_dir / f"vizapp-{version()}-linux-{arch()}.tar.gz"
    with tarfile.open(target, "w:gz", compresslevel=level) as tar:
        tar.add(folder, arcname="vizapp")
    return target


def report(folder: Path, packages: list[Path]) -> None:
    internal = folder / "_internal"
    print(f"\nfolder {folder}: {human(size(folder))}")
    parts = sorted(((size(p), p.name) for p in internal.iterdir()), reverse=True)[:12]
    for n, name in parts:
        print(f"  {human(n):>9}  _internal/{name}")
    nvidia = internal / "nvidia"
    if nvidia.is_dir():
        print(f"  (the CUDA libraries, _internal/nvidia: {human(size(nvidia))}; a CPU-only torch leaves them out)")
    for p in packages:
        print(f"package {p}: {human(size(p))}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="packaging/build.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--deb", action="store_true", help="also build the .deb and the .tar.gz (Linux)")
    parser.add_argument("--with-weights", default="", metavar="NAMES",
                        help="comma-separated registry models whose cached weights go inside")
    parser.add_argument("--dist", default=str(ROOT / "dist"), help="output folder (default: dist/)")
    parser.add_argument("--level", type=int, choices=range(1, 10), default=6, metavar="1-9",
                        help="gzip level of the .deb and .tar.gz (default 6; 1 is much faster)")
    parser.add_argument("--skip-freeze", action="store_true",
                        help="reuse dist/vizapp from an earlier run (only weights and packages)")
    args = parser.parse_args(argv)
    dist = Path(args.dist).resolve()
    started = time.monotonic()
    try:
        folder = dist / "vizapp"
        if not args.skip_freeze:
            folder = freeze(dist, ROOT / "build" / "pyinstaller")
            freed = prune(folder)
            print(f"pruned {human(freed)} the app cannot use")
        elif not (folder / "vizapp").is_file():
            raise BuildError(f"{folder} has no vizapp executable; build without --skip-freeze")
        names = [n.strip() for n in args.with_weights.split(",") if n.strip()]
        for name, where in copy_weights(names, folder):
            print(f"weights: {name} -> {where}")
        packages = []
        if args.deb:
            packages.append(deb(folder, dist, args.level))
            packages.append(tarball(folder, dist, args.level))
        report(folder, packages)
    except BuildError as exc:
        print(f"build: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - a ModelError for an unknown --with-weights name, an OSError
        from vizapp.core.errors import UserError

        if isinstance(exc, (UserError, OSError)):
            print(f"build: {exc}", file=sys.stderr)
            return 2
        raise
    print(f"built in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

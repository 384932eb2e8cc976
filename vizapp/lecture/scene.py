"""A scene: one prepared state of the window, saved as a small JSON file (``.vizscene``).

A scene names what is on screen (the model, the image, the layer, the channel, the
attention head, the explained class, the raised dock), each view's options, the dock
layout and the presentation settings. It never holds the model's trust: a file model
opened from a scene is read under the usual trust rules (the Model dock's "I trust this
file" box, ``--trust``), so a scene someone sent cannot run code by itself.

Paths: a model file or image inside the scene's folder is written relative to it, and a
relative path read from a scene is resolved against the scene file's folder, so a folder
of scenes and their images can be moved or shared whole. A registry model's name
(``efficientnet_lite0``) and a shipped sample's name (``chelsea``) are kept as names.

Qt-free: the window's layout is the opaque ``saveState`` bytes as base64.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from vizapp.core.errors import UserError

__all__ = [
    "SCALE_RANGE",
    "SCENE_SUFFIX",
    "SCENE_VERSION",
    "Scene",
    "SceneError",
    "image_path",
    "looks_like_path",
    "read_json_file",
    "read_scene",
    "sample_name",
    "scene_from_json",
    "scene_to_json",
    "write_scene",
]

#: The format's version: written as ``"vizscene": 1``; a newer file is refused with a message.
SCENE_VERSION = 1
SCENE_SUFFIX = ".vizscene"
#: The presentation scale's bounds (the theme's ``set_scale``).
SCALE_RANGE = (1.0, 3.0)
#: Suffixes that make a model or image text a path rather than a registry or sample name.
_PATH_SUFFIXES = {".pt", ".pth", ".bin", ".safetensors", ".ckpt", ".json", ".png", ".jpg", ".jpeg",
                  ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


class SceneError(UserError):
    """A scene or deck file that cannot be read or holds a bad field (names the file and field)."""


@dataclass
class Scene:
    """One prepared state of the window (every field optional: what is ``None`` is left as it is).

    Attributes
    ----------
    model : str or None
        A registry name, or a model file / checkpoint folder (absolute once read).
    arch : str or None
        The architecture of a bare state dict.
    image : str or None
        An image file (absolute once read) or a shipped sample's name.
    layer : str or None
        The selected ``named_modules()`` name.
    channel, head, target : int or None
        The selected channel, the attention view's head, the explained class (``"class"`` in
        the file; ``None``: the predicted class).
    dock : str or None
        The dock raised on top (``features``, ``attention``, ...).
    views : dict
        Each view's options, by dock key (``{"features": {"sort": "max"}, ...}``).
    layout : str or None
        The window's dock layout (``QMainWindow.saveState`` as base64).
    presentation : bool
        Presentation mode on.
    scale : float
        The UI scale, :data:`SCALE_RANGE`.
    theme : str or None
        The theme's name (``None``: the current one).
    title : str
        A name for the deck editor and the caption ("" : the file's name).
    """

    model: str | None = None
    arch: str | None = None
    image: str | None = None
    layer: str | None = None
    channel: int | None = None
    head: int | None = None
    target: int | None = None
    dock: str | None = None
    views: dict = field(default_factory=dict)
    layout: str | None = None
    presentation: bool = False
    scale: float = 1.0
    theme: str | None = None
    title: str = ""

    def layout_bytes(self) -> bytes | None:
        """The layout as the bytes ``restoreState`` takes."""
        return None if self.layout is None else base64.b64decode(self.layout)

    @staticmethod
    def encode_layout(state: bytes) -> str:
        return base64.b64encode(bytes(state)).decode("ascii")


# --- names and paths -----------------------------------------------------------------
def looks_like_path(text: str) -> bool:
    """Whether ``text`` is meant as a path (a separator, ``~``, or a file suffix), not a name."""
    return (os.sep in text or "/" in text or text.startswith("~") or text in (".", "..")
            or Path(text).suffix.lower() in _PATH_SUFFIXES)


def _resolve(text: str | None, folder: Path) -> str | None:
    """A path from a scene file, made absolute against ``folder``; a name stays a name."""
    if text is None:
        return None
    expanded = os.path.expanduser(text)
    if os.path.isabs(expanded):
        return os.path.normpath(expanded)
    candidate = folder / expanded
    if looks_like_path(text) or candidate.exists():
        return os.path.normpath(str(candidate.absolute()))
    return text


def _relative(text: str | None, folder: Path) -> str | None:
    """A path inside ``folder`` written relative to it (POSIX separators); anything else as is."""
    if text is None or not os.path.isabs(text):
        return text
    try:
        rel = Path(os.path.normpath(text)).relative_to(Path(os.path.normpath(str(folder.absolute()))))
    except ValueError:
        return text
    return rel.as_posix()


def image_path(text: str) -> Path | None:
    """The file a scene's image names: the path itself, or the sample of that name; None when
    neither exists (the window says it is missing)."""
    from vizapp.inputs import samples

    path = Path(text)
    if path.is_file():
        return path
    return None if looks_like_path(text) else samples.resolve(text)


def sample_name(path: str) -> str | None:
    """The shipped sample's name if ``path`` is one (a scene keeps ``chelsea``, not its path)."""
    from vizapp.inputs.images import lab_samples, sample_images

    real = os.path.realpath(path)
    for s in [*sample_images(), *lab_samples()]:
        if os.path.realpath(s.path) == real:
            return s.name
    return None


# --- JSON --------------------------------------------------------------------------
def scene_to_json(scene: Scene, folder: str | os.PathLike | None = None) -> dict:
    """The file's dictionary; paths inside ``folder`` (the scene file's) become relative."""
    data = asdict(scene)
    if folder is not None:
        data["model"] = _relative(scene.model, Path(folder))
        data["image"] = _relative(scene.image, Path(folder))
    # The file's order: what is on screen, then how it looks; the explained class is "class".
    data = {("class" if k == "target" else k): v for k, v in data.items()}
    return {"vizscene": SCENE_VERSION, **data}


def _check(where: str, name: str, value, kind: str):
    """``value`` if it is of ``kind``; else a :class:`SceneError` naming ``where`` and the field."""
    def bad(wanted: str):
        return SceneError(f"{where}: field '{name}' must be {wanted} (got {json.dumps(value)[:60]})")

    if value is None and kind not in ("bool", "scale", "dict", "title"):
        return None
    if kind == "str":
        if not isinstance(value, str) or not value:
            raise bad("a non-empty text or null")
        return value
    if kind == "index":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise bad("an integer >= 0 or null")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if kind == "title":
        if not isinstance(value, str):
            raise bad("a text")
        return value
    if kind == "scale":
        lo, hi = SCALE_RANGE
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or not lo <= value <= hi:
            raise bad(f"a number from {lo:g} to {hi:g}")
        return float(value)
    if kind == "dict":
        if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
            raise bad("an object of one object per dock")
        return value
    if kind == "layout":
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise bad("the window's layout as base64") from None
        return value
    raise AssertionError(kind)


_KINDS = {"model": "str", "arch": "str", "image": "str", "layer": "str", "channel": "index",
          "head": "index", "class": "index", "dock": "str", "views": "dict", "layout": "layout",
          "presentation": "bool", "scale": "scale", "theme": "str", "title": "title"}


def scene_from_json(data, where: str, folder: str | os.PathLike) -> Scene:
    """A :class:`Scene` from a file's dictionary, every field checked; relative paths against ``folder``.

    ``where`` names the file (and entry) in the messages. Unknown fields are ignored (a
    newer vizapp's additions); a newer format version is refused.
    """
    if not isinstance(data, dict):
        raise SceneError(f"{where}: not a scene (a JSON object with \"vizscene\": {SCENE_VERSION} is expected)")
    version = data.get("vizscene")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise SceneError(f"{where}: field 'vizscene' must be the format version, an integer >= 1 "
                         f"(got {json.dumps(version)[:40]})")
    if version > SCENE_VERSION:
        raise SceneError(f"{where}: written by a newer vizapp (scene format {version}; this one reads "
                         f"up to {SCENE_VERSION}); update vizapp to open it")
    defaults = Scene()
    values = {}
    for name, kind in _KINDS.items():
        attr = "target" if name == "class" else name
        values[attr] = _check(where, name, data.get(name, getattr(defaults, attr)), kind)
    values["views"] = {str(k): dict(v) for k, v in values["views"].items()}
    folder = Path(folder)
    values["model"] = _resolve(values["model"], folder)
    values["image"] = _resolve(values["image"], folder)
    assert set(values) == {f.name for f in fields(Scene)}
    return Scene(**values)


def read_json_file(path: str | os.PathLike, what: str) -> object:
    """A JSON file's content; a missing, unreadable or invalid file is a :class:`SceneError`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SceneError(f"{path}: no such {what} file") from None
    except IsADirectoryError:
        raise SceneError(f"{path}: is a folder, not a {what} file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SceneError(f"{path}: cannot read this {what} file ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SceneError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None


def read_scene(path: str | os.PathLike) -> Scene:
    """Read a ``.vizscene`` file; relative paths in it are resolved against its folder."""
    path = Path(path)
    return scene_from_json(read_json_file(path, "scene"), str(path), path.absolute().parent)


def write_scene(path: str | os.PathLike, scene: Scene) -> Path:
    """Write ``scene`` as JSON to ``path`` (atomically); paths inside its folder become relative."""
    from vizapp.core.files import write_json

    path = Path(path)
    return write_json(path, scene_to_json(scene, path.absolute().parent), indent=1)

"""A deck: a lecture's ordered scenes, as a ``.vizdeck`` file or a folder of ``.vizscene`` files.

A ``.vizdeck`` is JSON: ``{"vizdeck": 1, "title": "...", "scenes": [...]}``, each scene
either inline (a scene's object) or a path to a ``.vizscene`` file, relative to the deck's
folder. A folder is a deck of its ``.vizscene`` files sorted by name (``01-edges``,
``02-textures``, ...), titled after the folder. A deck is written with its scenes inline,
so one file carries the whole lecture (paths inside its folder stay relative).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from vizapp.lecture.scene import (
    SCENE_SUFFIX,
    Scene,
    SceneError,
    read_json_file,
    read_scene,
    scene_from_json,
    scene_to_json,
)

__all__ = ["DECK_SUFFIX", "DECK_VERSION", "Deck", "read_deck", "read_lecture", "write_deck"]

DECK_VERSION = 1
DECK_SUFFIX = ".vizdeck"


@dataclass
class Deck:
    """A title and the scenes in order (each scene's ``title`` names it in the editor)."""

    title: str = ""
    scenes: list[Scene] = field(default_factory=list)

    def names(self) -> list[str]:
        """Each scene's title, or ``scene N`` when it has none."""
        return [s.title or f"scene {i + 1}" for i, s in enumerate(self.scenes)]


def _titled(scene: Scene, fallback: str) -> Scene:
    if not scene.title:
        scene.title = fallback
    return scene


def read_deck(path: str | os.PathLike) -> Deck:
    """A ``.vizdeck`` file, or a folder of ``.vizscene`` files (sorted by name).

    Raises :class:`SceneError` naming the file (and the scene's place in the deck) for a
    missing or invalid deck or scene, or a folder without scenes.
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix == SCENE_SUFFIX and p.is_file())
        if not files:
            raise SceneError(f"{path}: a folder without {SCENE_SUFFIX} files; save scenes into it "
                             f"(File > Save scene…) or give a {DECK_SUFFIX} file")
        return Deck(path.name, [_titled(read_scene(p), p.stem) for p in files])
    data = read_json_file(path, "deck")
    folder = path.absolute().parent
    if not isinstance(data, dict) or "vizdeck" not in data:
        raise SceneError(f"{path}: not a deck (a JSON object with \"vizdeck\": {DECK_VERSION} is expected)")
    version = data["vizdeck"]
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise SceneError(f"{path}: field 'vizdeck' must be the format version, an integer >= 1")
    if version > DECK_VERSION:
        raise SceneError(f"{path}: written by a newer vizapp (deck format {version}; this one reads up to "
                         f"{DECK_VERSION}); update vizapp to open it")
    title = data.get("title", path.stem)
    if not isinstance(title, str):
        raise SceneError(f"{path}: field 'title' must be a text")
    entries = data.get("scenes")
    if not isinstance(entries, list) or not entries:
        raise SceneError(f"{path}: field 'scenes' must be a list of one or more scenes (objects or .vizscene paths)")
    scenes = []
    for i, entry in enumerate(entries):
        where = f"{path}: scenes[{i}]"
        if isinstance(entry, str):
            file = Path(os.path.expanduser(entry))
            file = file if file.is_absolute() else folder / file
            try:
                scenes.append(_titled(read_scene(file), file.stem))
            except SceneError as exc:
                raise SceneError(f"{where}: {exc}") from None
        elif isinstance(entry, dict):
            scenes.append(_titled(scene_from_json(entry, where, folder), f"scene {i + 1}"))
        else:
            raise SceneError(f"{where}: must be a scene object or a {SCENE_SUFFIX} path")
    return Deck(title or path.stem, scenes)


def write_deck(path: str | os.PathLike, deck: Deck) -> Path:
    """Write ``deck`` as one ``.vizdeck`` with its scenes inline (atomically)."""
    from vizapp.core.files import write_json

    path = Path(path)
    folder = path.absolute().parent
    data = {"vizdeck": DECK_VERSION, "title": deck.title,
            "scenes": [scene_to_json(s, folder) for s in deck.scenes]}
    return write_json(path, data, indent=1)


def read_lecture(path: str | os.PathLike) -> Deck:
    """What ``--scene`` and File > Open take: a ``.vizscene`` (a deck of one scene), a
    ``.vizdeck`` or a folder of scenes."""
    path = Path(path)
    if path.is_dir() or path.suffix == DECK_SUFFIX:
        return read_deck(path)
    return Deck(path.stem, [_titled(read_scene(path), path.stem)])

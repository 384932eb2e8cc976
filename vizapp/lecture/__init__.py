"""Lectures: scenes (one prepared state of the window, ``.vizscene``) and decks (an ordered
list of scenes, ``.vizdeck`` or a folder). Qt-free; the window's side is
``widgets/controllers/lecture.py``."""

from vizapp.lecture.deck import DECK_SUFFIX, DECK_VERSION, Deck, read_deck, read_lecture, write_deck
from vizapp.lecture.scene import (
    SCALE_RANGE,
    SCENE_SUFFIX,
    SCENE_VERSION,
    Scene,
    SceneError,
    looks_like_path,
    read_scene,
    write_scene,
)

__all__ = [
    "DECK_SUFFIX",
    "DECK_VERSION",
    "SCALE_RANGE",
    "SCENE_SUFFIX",
    "SCENE_VERSION",
    "Deck",
    "Scene",
    "SceneError",
    "looks_like_path",
    "read_deck",
    "read_lecture",
    "read_scene",
    "write_deck",
    "write_scene",
]

"""The lecture's menu entries (File > Open scene…, Save scene…, Open deck…, Edit deck…, next and
previous scene) and the deck editor: add the window's state as a scene, reorder, rename,
delete, show one, save the deck. The work is the lecture controller's
(``widgets/controllers/lecture.py``); this module is its dialogs."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QPushButton,
    QVBoxLayout,
)

from vizapp.core.errors import UserError
from vizapp.lecture import DECK_SUFFIX, SCENE_SUFFIX, Deck
from widgets.controllers import notify

__all__ = ["DeckEditor", "add_lecture_actions"]

_SCENES = f"Scenes (*{SCENE_SUFFIX})"
_DECKS = f"Decks (*{DECK_SUFFIX})"


def add_lecture_actions(window, menu: QMenu) -> None:
    """Add the scene and deck entries to ``menu`` (the File menu), before its last separator."""
    lecture = window.lecture
    before = next((a for a in reversed(menu.actions()) if a.isSeparator()), None)
    window.lecture_actions = []

    def entry(text: str, slot, keys: str | None = None) -> None:
        action = QAction(text, window)
        action.triggered.connect(lambda _checked=False: slot())
        if keys:
            action.setShortcut(QKeySequence(keys))
        menu.insertAction(before, action)
        window.lecture_actions.append(action)

    menu.insertSeparator(before)
    entry("Open s&cene…", lambda: _open_dialog(window, "Open scene", _SCENES))
    entry("Sa&ve scene…", lambda: _save_scene_dialog(window))
    entry("Open &deck…", lambda: _open_dialog(window, "Open deck", f"{_DECKS};;{_SCENES}"))
    entry("Open deck f&older…", lambda: _open_folder(window))
    entry("Edit dec&k…", lambda: DeckEditor.show_for(window))
    entry("Next scene", lambda: lecture.step(1) or notify("no deck is open: File > Open deck…"), "Ctrl+PgDown")
    entry("Previous scene", lambda: lecture.step(-1) or notify("no deck is open: File > Open deck…"), "Ctrl+PgUp")


def _open(window, path: str) -> None:
    try:
        window.lecture.open_path(path)
    except UserError as exc:
        notify(str(exc), error=True)


def _open_dialog(window, caption: str, filters: str) -> None:
    path, _ = QFileDialog.getOpenFileName(window, caption, "", filters)
    if path:
        _open(window, path)


def _open_folder(window) -> None:
    path = QFileDialog.getExistingDirectory(window, "Open a folder of scenes (a deck)")
    if path:
        _open(window, path)


def _save_as(parent, title: str, start: str, filters: str, suffix: str, save) -> None:
    """Ask for a file to save to (``suffix`` added when missing), ``save(path)``, and say so."""
    path, _ = QFileDialog.getSaveFileName(parent, title, start, filters)
    if not path:
        return
    if not path.endswith(suffix):
        path += suffix
    try:
        saved = save(path)
    except UserError as exc:
        notify(str(exc), error=True)
    else:
        notify(f"saved {saved}")


def _save_scene_dialog(window) -> None:
    _save_as(window, "Save scene", f"scene{SCENE_SUFFIX}", _SCENES, SCENE_SUFFIX, window.lecture.save_scene)


class DeckEditor(QDialog):
    """A small non-modal dialog over the lecture controller's deck (a new, empty one if none).

    The list is the deck's scenes in order (double-click or Enter shows one; a name is edited in
    place); the buttons add the window's state as a scene, move the selected one up or down,
    delete it, and save the deck as a ``.vizdeck``.
    """

    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        self.lecture = window.lecture
        if self.lecture.deck is None:
            self.lecture.deck = Deck("lecture", [])
        self.setWindowTitle("Deck")
        self.title = QLineEdit(self.lecture.deck.title)
        self.title.setPlaceholderText("the lecture's title")
        self.title.textEdited.connect(self._title_edited)
        self.list = QListWidget()
        self.list.itemChanged.connect(self._renamed)
        # A double-click (or Enter) shows the scene; F2 or a click on the selected one renames it.
        self.list.setEditTriggers(QListWidget.EditKeyPressed | QListWidget.SelectedClicked)
        self.list.itemActivated.connect(lambda item: self.lecture.go(self.list.row(item)))
        buttons = QHBoxLayout()
        self.add_button = self._button(buttons, "Add current view", self.add_current)
        self.show_button = self._button(buttons, "Show", self.show_selected)
        self.up_button = self._button(buttons, "Up", lambda: self.move(-1))
        self.down_button = self._button(buttons, "Down", lambda: self.move(1))
        self.delete_button = self._button(buttons, "Delete", self.delete)
        self.save_button = self._button(buttons, "Save deck…", self._save_dialog)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Title"))
        layout.addWidget(self.title)
        layout.addWidget(self.list, 1)
        layout.addLayout(buttons)
        self.refresh()

    @staticmethod
    def show_for(window) -> DeckEditor:
        editor = getattr(window, "deck_editor", None)
        if editor is None:
            editor = window.deck_editor = DeckEditor(window)
        editor.refresh()
        editor.show()
        editor.raise_()
        return editor

    def _button(self, row: QHBoxLayout, text: str, slot) -> QPushButton:
        button = QPushButton(text)
        button.clicked.connect(slot)
        row.addWidget(button)
        return button

    @property
    def deck(self) -> Deck:
        if self.lecture.deck is None:
            self.lecture.deck = Deck(self.title.text() or "lecture", [])
        return self.lecture.deck

    def refresh(self) -> None:
        """The list from the deck (after a change here or a deck opened elsewhere)."""
        self.list.blockSignals(True)
        self.list.clear()
        for name in self.deck.names():
            item = QListWidgetItem(name)
            item.setFlags(item.flags() | Qt.ItemIsEditable)
            self.list.addItem(item)
        if 0 <= self.lecture.position < self.list.count():
            self.list.setCurrentRow(self.lecture.position)
        self.title.setText(self.deck.title)
        self.list.blockSignals(False)

    def names(self) -> list[str]:
        return [self.list.item(i).text() for i in range(self.list.count())]

    # --- edits ---------------------------------------------------------------------
    def add_current(self) -> None:
        """Append the window's state as a scene (after the selected one, if any)."""
        deck = self.deck
        row = self.list.currentRow()
        at = len(deck.scenes) if row < 0 else row + 1
        deck.scenes.insert(at, self.lecture.capture(f"scene {len(deck.scenes) + 1}"))
        self.lecture.position = at
        self.refresh()

    def show_selected(self) -> None:
        """Show the selected scene in the window (the deck's position moves there)."""
        row = self.list.currentRow()
        if row >= 0:
            self.lecture.go(row)

    def move(self, delta: int) -> None:
        """Move the selected scene ``delta`` places (clamped)."""
        scenes, row = self.deck.scenes, self.list.currentRow()
        to = row + delta
        if row < 0 or not 0 <= to < len(scenes):
            return
        scenes[row], scenes[to] = scenes[to], scenes[row]
        if self.lecture.position in (row, to):
            self.lecture.position = to if self.lecture.position == row else row
        self.refresh()
        self.list.setCurrentRow(to)

    def rename(self, row: int, name: str) -> None:
        """Name scene ``row`` (an empty name: ``scene N``); the list item is not rebuilt."""
        title = self.deck.scenes[row].title = name.strip() or f"scene {row + 1}"
        item = self.list.item(row)
        if item is not None and item.text() != title:
            self.list.blockSignals(True)
            item.setText(title)
            self.list.blockSignals(False)

    def delete(self) -> None:
        row = self.list.currentRow()
        if row < 0:
            return
        del self.deck.scenes[row]
        if self.lecture.position >= row:
            self.lecture.position = max(-1, self.lecture.position - 1)
        self.refresh()

    def _renamed(self, item: QListWidgetItem) -> None:
        self.rename(self.list.row(item), item.text())

    def _title_edited(self, text: str) -> None:
        self.deck.title = text

    def _save_dialog(self) -> None:
        start = str(self.lecture.deck_path or f"{self.deck.title or 'lecture'}{DECK_SUFFIX}")
        _save_as(self, "Save deck", start, _DECKS, DECK_SUFFIX, self.lecture.save_deck)

"""The window's keys: one table, one application-wide handler, the menus and the key map.

:data:`KEYS` is the one table (action, keys, description, menu). From it the window builds
its Navigate menu, the key map that ``?`` shows, and :class:`KeyHandler`, an event filter on
the application that runs an action whatever widget has the focus (a clicked gallery or a
combo box no longer eats the arrows), except while a text field is being edited, a menu or a
popup is open, or a dialog has the keys. A presenter clicker sends PgDn/PgUp, B, F5 and Esc:
PgDn/PgUp step scenes (the :attr:`KeyHandler.scene_stepper`; layers when there is none),
B blanks the screen, F5 starts presentation mode, Esc leaves blanking, then presentation mode.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QDockWidget,
    QKeySequenceEdit,
    QLineEdit,
    QPlainTextEdit,
    QTextEdit,
    QWidget,
)

__all__ = ["KEYS", "KeyRow", "KeyHandler", "key_text", "is_editing", "row"]


@dataclass(frozen=True)
class KeyRow:
    """One action: its name, its keys (``QKeySequence`` text, the first one shown in menus),
    what it does, and the menu that lists it (``"navigate"`` or ``"view"``)."""

    action: str
    keys: tuple[str, ...]
    description: str
    menu: str = "navigate"
    #: A dock's own row: it acts only while that dock is in use (its controller binds it with
    #: :meth:`KeyHandler.bind_dock`), before the rows of the same key; otherwise the key keeps
    #: its other meaning.
    dock: str | None = None


KEYS: tuple[KeyRow, ...] = (
    KeyRow("layer_next", ("Down",), "Next layer (in the Attention dock: next block)"),
    KeyRow("layer_prev", ("Up",), "Previous layer (Attention dock: previous block)"),
    KeyRow("channel_next", ("Right", "]"), "Next channel (Attention dock: next head)"),
    KeyRow("channel_prev", ("Left", "["), "Previous channel (Attention dock: previous head)"),
    KeyRow("head_next", ("Shift+Right", "H"), "Next attention head"),
    KeyRow("head_prev", ("Shift+Left", "Shift+H"), "Previous attention head"),
    KeyRow("class_next", ("Shift+Down", "C"), "Explain the next class of the top-k"),
    KeyRow("class_prev", ("Shift+Up", "Shift+C"), "Explain the previous class of the top-k"),
    KeyRow("scene_next", ("PgDown",), "Next scene (no deck: next layer)"),
    KeyRow("scene_prev", ("PgUp",), "Previous scene (no deck: previous layer)"),
    # The Convolution dock's stepping, while the focus is in it or it is maximised.
    KeyRow("conv_play", ("Space",), "Convolution dock: play / pause the sliding window", dock="convolution"),
    KeyRow("conv_next", ("Right",), "Convolution dock: next position", dock="convolution"),
    KeyRow("conv_prev", ("Left",), "Convolution dock: previous position", dock="convolution"),
    KeyRow("conv_row_next", ("Down",), "Convolution dock: next output row", dock="convolution"),
    KeyRow("conv_row_prev", ("Up",), "Convolution dock: previous output row", dock="convolution"),
    KeyRow("recompute", ("Ctrl+R",), "Recompute attention and attributions"),
    KeyRow("present", ("F5",), "Start presentation mode", "view"),
    KeyRow("present_toggle", ("F11",), "Presentation mode on / off", "view"),
    KeyRow("blank", ("B", "."), "Blank the screen (any key brings it back)", "view"),
    KeyRow("escape", ("Esc",), "Un-blank, then leave presentation mode", "view"),
    KeyRow("chrome", ("F10", "M"), "Menus and dock titles back while presenting", "view"),
    KeyRow("maximise", ("Z",), "Maximise the dock in use / restore", "view"),
    KeyRow("scale_up", ("Ctrl+=", "Ctrl++"), "Larger (UI scale)", "view"),
    KeyRow("scale_down", ("Ctrl+-",), "Smaller (UI scale)", "view"),
    KeyRow("scale_reset", ("Ctrl+0",), "UI scale 1x", "view"),
    KeyRow("keymap", ("?", "F1"), "Show these keys", "view"),
    # Live camera or video (widgets/controllers/live.py): Space is the live view's only while live.
    KeyRow("live_freeze", ("Space",), "Freeze / follow the live camera or video (while live)"),
)

#: Keys a text field being edited still leaves to the window (it has no use for them).
_FUNCTION_KEYS = {getattr(Qt, f"Key_F{i}") for i in range(1, 13)}
_MODIFIERS = int((Qt.ControlModifier | Qt.AltModifier | Qt.ShiftModifier | Qt.MetaModifier).value)
_SHIFT = int(Qt.ShiftModifier.value)


def row(action: str) -> KeyRow:
    """The row of ``action``."""
    for r in KEYS:
        if r.action == action:
            return r
    raise KeyError(f"no key action '{action}'")


def key_text(r: KeyRow) -> str:
    """The row's keys as the user reads them (``Right or ]``)."""
    return " or ".join(QKeySequence(k).toString(QKeySequence.NativeText) for k in r.keys)


def _combo(key, modifiers) -> tuple[int, int]:
    """``(key, modifiers)`` as plain ints, the keypad flag dropped (its arrows are arrows)."""
    key = key.value if hasattr(key, "value") else key
    modifiers = modifiers.value if hasattr(modifiers, "value") else modifiers
    return int(key), int(modifiers) & _MODIFIERS


def _table() -> dict[tuple[int, int], list[str]]:
    """Each key's actions, in table order (a dock's row shares its key with a window-wide one)."""
    table: dict[tuple[int, int], list[str]] = {}
    for r in KEYS:
        for text in r.keys:
            combination = QKeySequence(text)[0]
            table.setdefault(_combo(combination.key(), combination.keyboardModifiers()), []).append(r.action)
    return table


def is_editing(widget: QWidget | None) -> bool:
    """Whether ``widget`` is a text field taking typed keys (line edit, editable combo box,
    spin box, text edit, key sequence edit), not read-only."""
    if widget is None:
        return False
    if isinstance(widget, QLineEdit | QTextEdit | QPlainTextEdit):
        return not widget.isReadOnly()
    if isinstance(widget, QAbstractSpinBox):
        return not widget.isReadOnly()
    if isinstance(widget, QComboBox):
        return widget.isEditable()
    return isinstance(widget, QKeySequenceEdit)


class KeyHandler(QObject):
    """The application-wide key filter of one window.

    ``actions`` maps each :data:`KEYS` action to a callable; ``intercepts`` (optional) maps an
    action to a predicate saying whether the key is the window's now (``escape`` is only while
    blanked or presenting; otherwise it goes to the focused widget and the window's cancel
    shortcut). ``swallow`` (optional) is asked first: while it returns True (the screen is
    blanked, the key map shows) any key is eaten and passed to it. ``scene_stepper``, when set,
    is called with +1/-1 for PgDn/PgUp and returns whether it stepped a scene; when it is None
    or returns False, the handler steps layers instead (``layer_next``/``layer_prev``).
    """

    def __init__(self, window: QWidget, actions: dict[str, Callable[[], object]],
                 intercepts: dict[str, Callable[[], bool]] | None = None,
                 swallow: Callable[[QEvent | None], bool] | None = None) -> None:
        super().__init__(window)
        self.window = window
        self.actions = dict(actions)
        self.intercepts = dict(intercepts or {})
        self.swallow = swallow
        self.scene_stepper: Callable[[int], bool] | None = None
        self._table = _table()
        self._docks: dict[str, Callable[[], bool]] = {}  # dock -> whether it is in use now (bind_dock)
        missing = [r.action for r in KEYS
                   if r.action not in self.actions and not r.action.startswith("scene_") and r.dock is None]
        if missing:
            raise ValueError(f"no handler for the key actions {', '.join(missing)}")
        QApplication.instance().installEventFilter(self)

    def remove(self) -> None:
        """Stop filtering (the window is closing)."""
        app = QApplication.instance()
        if app is not None:
            app.removeEventFilter(self)

    # --- actions ------------------------------------------------------------------
    def trigger(self, action: str) -> None:
        """Run ``action`` as its key would (the menus call this)."""
        if action in ("scene_next", "scene_prev"):
            delta = 1 if action == "scene_next" else -1
            if self.scene_stepper is not None and self.scene_stepper(delta):
                return
            action = "layer_next" if delta > 0 else "layer_prev"
        if action in self.actions:  # (a dock's row whose dock nobody bound does nothing)
            self.actions[action]()

    def bind_dock(self, dock: str, actions: dict[str, Callable[[], object]], in_use: Callable[[], bool]) -> None:
        """Run ``actions`` (``dock``'s rows of :data:`KEYS`) while ``in_use()`` says the dock has
        the keys; otherwise their keys keep their other meaning."""
        self.actions.update(actions)
        self._docks[dock] = in_use

    def action_for(self, event) -> str | None:
        """The table's action for key ``event`` (exact keys first, then without Shift: ``?`` is
        Shift+/ on most layouts), or None."""
        key, mods = _combo(event.key(), event.modifiers())
        found = self._table.get((key, mods))
        if found is None and mods & _SHIFT:
            found = self._table.get((key, mods & ~_SHIFT))
        rows = [row(a) for a in found or ()]
        for r in rows:  # a dock's own row first, while its dock is in use
            if r.dock is not None and r.dock in self._docks and self._docks[r.dock]():
                return r.action
        return next((r.action for r in rows if r.dock is None), None)

    def _ours(self, obj) -> bool:
        """Whether a key sent to ``obj`` is the window's to take."""
        if not isinstance(obj, QWidget):
            return False
        top = obj.window()
        if top is not self.window and not (isinstance(top, QDockWidget) and top.parentWidget() is self.window):
            return False  # a dialog, another window (a floating dock of ours is ours)
        return QApplication.activePopupWidget() is None  # a menu or a combo's list is open

    # --- the filter -----------------------------------------------------------------
    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt override
        kind = event.type()
        if kind not in (QEvent.KeyPress, QEvent.ShortcutOverride) or not self._ours(obj):
            return False
        if self.swallow is not None and self.swallow(None):  # blanked or the key map shows: any key
            if kind == QEvent.KeyPress and event.key() not in (Qt.Key_Shift, Qt.Key_Control, Qt.Key_Alt, Qt.Key_Meta):
                self.swallow(event)
            event.accept()
            return True
        action = self.action_for(event)
        if action is None:
            return False
        if is_editing(QApplication.focusWidget()) and event.key() not in _FUNCTION_KEYS:
            return False  # the text field's key (arrows move its cursor, letters type)
        check = self.intercepts.get(action)
        if check is not None and not check():
            return False
        event.accept()
        if kind == QEvent.KeyPress:
            self.trigger(action)
        return True

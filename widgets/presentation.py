"""Presentation mode: the window as projected in a lecture.

:class:`PresentationMode` belongs to one window. :meth:`~PresentationMode.set` turns the mode
on (full screen, one UI scale through ``THEME.set_scale``, a colour theme, the menus, status
bar and dock titles hidden, a large caption line at the top saying what is on screen) and off
(everything as it was before). Independently of the mode it maximises one dock over the
window and restores the layout exactly (:meth:`~PresentationMode.toggle_maximise`; Z, or a
double-click on a dock's title), blanks the screen black as slide software does
(:meth:`~PresentationMode.set_blank`; B or '.', any key brings the picture back), shows the
key map (``?``), and follows ``THEME.changed`` with the application's palette and every
canvas's background. The keys come from the table in ``widgets/keys.py``.
"""

from __future__ import annotations

import time

from PySide6.QtCore import QEvent, QObject, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup, QColor, QPalette
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFrame,
    QLabel,
    QLayout,
    QMenu,
    QSizePolicy,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from vizapp.core.notifications import Severity, notification_manager
from widgets.keys import KEYS, KeyHandler, key_text
from widgets.theme import THEME, THEMES, bind_font, palette

__all__ = ["PresentationMode", "SCALES", "THEME_TITLES", "DEFAULT_SCALE", "caption_text"]

#: The UI scale steps (View > Presentation scale; Ctrl+= and Ctrl+- step through them).
SCALES = (1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0)
#: The presentation scale until one is chosen: text about 30 px high.
DEFAULT_SCALE = 2.0
THEME_TITLES = {"default": "Standard", "light": "Light, high contrast (bright room)",
                "dark": "Dark, high contrast (dark room)"}
CAPTION_PAD = 10  # the caption's padding left and right, pixels at scale 1
SEPARATOR = "  ·  "  # between the caption's parts (a long caption breaks there)
_LAYOUT_VERSION = 0x5E  # the maximise's own saveState/restoreState pair
_PLATFORM_PALETTE: QPalette | None = None  # the application's palette before any theme (the default theme's)


def caption_text(window) -> str:
    """What is on screen, in one line: model, layer, channel, class (the attention block and
    head while the Attention dock shows), image."""
    s = window.session
    if s.model is None:
        return "No model open"
    parts = [s.model.title + ("" if getattr(s.model, "trained", True) else " (UNTRAINED)")]
    view = window.attention_view
    if window.dock_on_screen("attention") and view.result is not None:  # what that dock shows, first
        head = "mean of the heads" if view.head() is None else f"head {view.head()}"
        parts.append(f"attention block {view.layer()}, {head}")
    if s.layer:
        parts.append(f"layer {s.layer}")
    if s.channel is not None:
        parts.append(f"channel {s.channel}")
    if s.target is not None:
        names = {p.index: p.label for p in s.predictions}
        known = list(getattr(s.model, "class_names", None) or [])
        label = names.get(s.target) or (known[s.target] if s.target < len(known) else f"#{s.target}")
        parts.append(f"class {label}")
    elif s.predictions:
        parts.append(f"predicted {s.predictions[0].label}")
    if s.image is not None:  # last: the first cut when the line is too long
        parts.append(s.image.name)
    return SEPARATOR.join(parts)


class _Caption(QLabel):
    """Large text, as wide as the window allows: one line, or two broken at a separator, the
    second elided at the end (never wider than the window: a long caption must not widen it)."""

    def __init__(self) -> None:
        super().__init__()
        self._full = ""
        self._lines = 1
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Preferred)

    def full_text(self) -> str:
        return self._full

    def set_full_text(self, text: str) -> None:
        if text == self._full:
            return
        self._full = text
        self.setToolTip(text)
        self._fit()

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return QSize(1, super().minimumSizeHint().height())

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        return QSize(1, super().sizeHint().height())

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._fit()

    def changeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().changeEvent(event)
        if event.type() == QEvent.FontChange:
            self._fit()

    def _fit(self) -> None:
        fm = self.fontMetrics()
        room = max(1, self.contentsRect().width() - round(2 * THEME.px(CAPTION_PAD)) - 2)  # the stylesheet's padding
        lines: list[str] = []
        for part in self._full.split(SEPARATOR):
            joined = f"{lines[-1]}{SEPARATOR}{part}" if lines else part
            if lines and (fm.horizontalAdvance(joined) <= room or len(lines) == 2):
                lines[-1] = joined
            else:
                lines.append(part)
        text = "\n".join(fm.elidedText(line, Qt.ElideRight, room) for line in lines)
        if text != self.text():
            self.setText(text)
        if len(lines) != self._lines:
            self._lines = len(lines)
            self.updateGeometry()


class _Overlay(QFrame):
    """A child covering the whole window (the blank screen, the key map)."""

    def __init__(self, window: QWidget, colour: str) -> None:
        super().__init__(window)
        self.setAutoFillBackground(True)
        pal = self.palette()
        pal.setColor(QPalette.Window, QColor(colour))
        self.setPalette(pal)
        self.hide()

    def cover(self) -> None:
        self.setGeometry(self.parentWidget().rect())
        self.raise_()
        self.show()


class PresentationMode(QObject):
    """Presentation mode, maximised docks, blanking and the keys of ``window`` (a MainWindow).

    Attributes: ``presenting``; ``scale`` and ``theme``, the mode's (used the next time it
    turns on); ``caption`` (the caption line's label); ``keys`` (the
    :class:`~widgets.keys.KeyHandler`, whose ``scene_stepper`` the scenes set);
    ``maximised`` (the key of the maximised dock, or None); ``blanked``.
    """

    _sigKept = Signal()  # an error or warning was notified (any thread), to the GUI thread

    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        self.presenting = False
        self.scale = DEFAULT_SCALE
        self.theme = THEME.theme
        self.maximised: str | None = None
        self.chrome_shown = False
        self._before: dict = {}
        self._layout_before = None
        self._layout_until = 0.0  # until then (just after leaving), a resize restores the layout again
        global _PLATFORM_PALETTE
        if _PLATFORM_PALETTE is None:  # the first window's, before any theme of ours
            _PLATFORM_PALETTE = QPalette(QApplication.instance().palette())

        self.caption = _Caption()
        self.caption.setAlignment(Qt.AlignLeft | Qt.AlignVCenter)
        bind_font(self.caption, "title", True, lambda: f"padding: {THEME.px(4):g}px {THEME.px(CAPTION_PAD):g}px;")
        self.bar = QToolBar("Caption")
        self.bar.setObjectName("presentation_caption")
        self.bar.setMovable(False)
        self.bar.setFloatable(False)
        self.bar.toggleViewAction().setVisible(False)
        self.bar.addWidget(self.caption)
        window.addToolBar(Qt.TopToolBarArea, self.bar)
        self.bar.hide()

        self.blank = _Overlay(window, "#000000")
        self.keymap = _Overlay(window, "#000000")
        self.keymap_text = QLabel()
        self.keymap_text.setAlignment(Qt.AlignCenter)
        self.keymap_text.setStyleSheet("color: #ffffff;")
        layout = QVBoxLayout(self.keymap)
        layout.addWidget(self.keymap_text)
        window.installEventFilter(self)
        for dock in window.docks.values():
            dock.installEventFilter(self)
        for widget in (self.blank, self.keymap):
            widget.installEventFilter(self)

        self.keys = KeyHandler(window, self._actions(), self._intercepts(), self._swallow)
        for name in ("model", "image", "layer", "channel", "target", "predictions"):
            getattr(window.session.events, name).connect(self._session_changed)
        window.docks["attention"].visibilityChanged.connect(lambda *_: self.update_caption())
        # What no session event announces (an attention result arriving, a head clicked) is
        # caught up twice a second while presenting.
        self._poll = QTimer(self)
        self._poll.setInterval(500)
        self._poll.timeout.connect(self.update_caption)
        THEME.changed.connect(self._theme_changed)
        # An error or warning while the chrome is hidden brings the status bar back until dismissed.
        self._sigKept.connect(self._show_status)
        notification_manager.subscribe(self._notified)
        window.dismiss_button.clicked.connect(self._hide_status)

    # --- the mode -------------------------------------------------------------------
    def set(self, on: bool, scale: float | None = None, theme: str | None = None, full_screen: bool = True) -> None:
        """Turn presentation mode on (at ``scale``, 1 to 3, and ``theme``; else the mode's last
        ones) or off (the window, chrome, layout, scale and theme as they were before)."""
        if scale is not None and not SCALES[0] <= float(scale) <= SCALES[-1]:
            raise ValueError(f"presentation scale {scale} is outside 1 to 3")
        if theme is not None and theme not in THEMES:
            raise ValueError(f"unknown theme '{theme}'; the themes are {', '.join(THEMES)}")
        w = self.window
        if on and not self.presenting:
            self._before = {
                "geometry": w.geometry(), "state": w.windowState(), "layout": w.saveState(_LAYOUT_VERSION),
                "scale": THEME.scale, "theme": THEME.theme, "full_screen": full_screen,
                "constraint": w.layout().sizeConstraint(),
                "sizes": {k: d.size() for k, d in w.docks.items() if w.dock_on_screen(k)},
                "menu": w.menuBar().isVisibleTo(w), "status": w.statusBar().isVisibleTo(w), "focus": w.focusWidget(),
            }
            self.presenting = True
            # The screen is the size: docks squeeze rather than push the window past a projector's edge.
            w.layout().setSizeConstraint(QLayout.SetNoConstraint)
            w.setMinimumSize(0, 0)
            self._show_chrome(False)
            self.bar.show()
            self.update_caption()
            self._poll.start()
            if full_screen:
                w.showFullScreen()
        elif not on and self.presenting:
            self.set_blank(False)
            if self.maximised is not None:
                self.toggle_maximise()
            self.presenting = False
            self._poll.stop()
            self.bar.hide()
            self._show_chrome(True)
            before = self._before
            THEME.set_scale(before["scale"])
            THEME.set_theme(before["theme"])
            w.layout().setSizeConstraint(self._before["constraint"])
            QApplication.sendPostedEvents(None, QEvent.LayoutRequest)  # the old scale's minimum sizes first
            w.layout().activate()
            if before["full_screen"]:
                w.setWindowState(before["state"])
                if not before["state"] & (Qt.WindowMaximized | Qt.WindowFullScreen):
                    w.setGeometry(before["geometry"])
            # The docks' sizes exactly as they were: now, and again while the window settles (the
            # platform gives the old size back later, the views re-lay out at the old scale).
            self._layout_until = time.monotonic() + 3.0
            self._restore_layout()
            for ms in (0, 50, 250, 750, 1500, 2500):
                QTimer.singleShot(ms, self, lambda: self._restore_layout(force=True))
            self._sync_menus()
            return
        if on:
            if scale is not None:
                self.scale = float(scale)
            if theme is not None:
                self.theme = theme
            THEME.set_scale(self.scale)
            THEME.set_theme(self.theme)
        self._sync_menus()

    def _restore_layout(self, force: bool = False) -> None:
        before, w = self._before, self.window
        if not self.presenting and before and (force or time.monotonic() < self._layout_until):
            # A view still at the big scale's minimum when the geometry came back grew the window.
            windowed = not before["state"] & (Qt.WindowMaximized | Qt.WindowFullScreen)
            if windowed and before["full_screen"] and w.geometry() != before["geometry"]:
                w.setMinimumSize(w.layout().totalMinimumSize())
                w.setGeometry(before["geometry"])
            w.restoreState(before["layout"], _LAYOUT_VERSION)
            # restoreState gives a split back as the views' size hints allow at that moment (a
            # view still re-laying its text from the big scale): the docks on screen, as they were.
            sizes = before["sizes"]
            docks = [w.docks[k] for k in sizes]
            w.resizeDocks(docks, [sizes[k].height() for k in sizes], Qt.Vertical)
            w.resizeDocks(docks, [sizes[k].width() for k in sizes], Qt.Horizontal)

    def toggle(self) -> None:
        self.set(not self.presenting)

    def _show_chrome(self, shown: bool) -> None:
        """The menus, status bar and dock titles: shown, or hidden (while presenting)."""
        w, before = self.window, self._before
        self.chrome_shown = shown
        w.menuBar().setVisible(shown and before.get("menu", True))
        w.statusBar().setVisible(shown and before.get("status", True))
        for dock in w.docks.values():
            dock.setTitleBarWidget(None if shown else QWidget(dock))

    def toggle_chrome(self) -> None:
        """Bring the menus and dock titles back while presenting (F10 or M), or hide them again."""
        if self.presenting:
            self._show_chrome(not self.chrome_shown)

    def _notified(self, notification) -> None:
        if notification.severity is not Severity.INFO:
            try:
                self._sigKept.emit()
            except RuntimeError:  # the window is gone
                notification_manager.unsubscribe(self._notified)

    def _show_status(self) -> None:
        if self.presenting and not self.chrome_shown:
            self.window.statusBar().show()

    def _hide_status(self) -> None:
        if self.presenting and not self.chrome_shown:
            self.window.statusBar().hide()

    # --- the caption ------------------------------------------------------------------
    def update_caption(self) -> None:
        if self.presenting:
            self.caption.set_full_text(caption_text(self.window))

    def _session_changed(self, *_args) -> None:
        self.update_caption()

    # --- one dock over the window -------------------------------------------------------
    def dock_in_use(self) -> str:
        """The dock holding the focus, else the largest dock on screen."""
        w = self.window
        focus = QApplication.focusWidget()
        for key, dock in w.docks.items():
            if focus is not None and (focus is dock or dock.isAncestorOf(focus)) and w.dock_on_screen(key):
                return key
        shown = [k for k in w.docks if w.dock_on_screen(k)] or list(w.docks)
        return max(shown, key=lambda k: w.docks[k].width() * w.docks[k].height())

    def toggle_maximise(self, key: str | None = None) -> None:
        """Maximise dock ``key`` (default: :meth:`dock_in_use`) over the window, every other dock
        hidden; called again, put the layout back exactly as it was."""
        w = self.window
        if self.maximised is not None:
            self.maximised = None
            w.restoreState(self._layout_before, _LAYOUT_VERSION)
            self._layout_before = None
            return
        key = key or self.dock_in_use()
        self._layout_before = w.saveState(_LAYOUT_VERSION)
        self.maximised = key
        for k, dock in w.docks.items():
            if k != key:
                dock.hide()
        w.docks[key].show()
        w.docks[key].raise_()
        self.update_caption()

    # --- blanking and the key map ------------------------------------------------------
    @property
    def blanked(self) -> bool:
        return self.blank.isVisible()

    def set_blank(self, on: bool) -> None:
        """Black out the window (as slide software's B); any key or click brings it back."""
        if on:
            self.blank.cover()
        else:
            self.blank.hide()

    def show_keymap(self, on: bool = True) -> None:
        """The key table in large text over the window (any key or click closes it)."""
        if not on:
            self.keymap.hide()
            return
        self.keymap.cover()
        # As large as fits: the theme's "title" size or less, side by side or one above the other.
        best = (0, "")
        for html in (self.keymap_html(True), self.keymap_html(False)):
            self.keymap_text.setText(html)
            pt = THEME.pt("title")
            while pt > 6 and not self._keymap_fits(pt):
                pt -= 1
            best = max(best, (pt, html))
        self.keymap_text.setText(best[1])
        self._keymap_fits(best[0])

    def _keymap_fits(self, pt: int) -> bool:
        f = self.keymap_text.font()
        f.setPointSize(pt)
        self.keymap_text.setFont(f)
        hint = self.keymap_text.sizeHint()
        return hint.width() <= self.keymap.width() * 0.95 and hint.height() <= self.keymap.height() * 0.95

    @staticmethod
    def keymap_html(side_by_side: bool = True) -> str:
        """The key table in HTML: stepping and presenting keys side by side, or one table."""
        def rows(menu: str, title: str) -> str:
            return (f"<tr><td colspan='2' align='center'><b><u>{title}</u></b></td></tr>"
                    + "".join(f"<tr><td align='right'><b>{key_text(r)}</b>&nbsp;&nbsp;</td><td>{r.description}</td></tr>"
                              for r in KEYS if r.menu == menu))

        stepping, presenting = rows("navigate", "Stepping"), rows("view", "Presenting")
        if side_by_side:
            body = (f"<table align='center'><tr><td valign='top'><table cellspacing='2'>{stepping}</table></td>"
                    f"<td>&nbsp;&nbsp;&nbsp;</td><td valign='top'><table cellspacing='2'>{presenting}</table></td></tr></table>")
        else:
            body = f"<table align='center' cellspacing='2'>{stepping}{presenting}</table>"
        return f"{body}<p align='center'>Any key or click closes this.</p>"

    def _swallow(self, event) -> bool:
        """The key handler's first question: is a key now only for un-blanking or closing the key map?"""
        if event is not None:
            self.set_blank(False)
            self.show_keymap(False)
        return self.blanked or self.keymap.isVisible()

    # --- scale and theme ------------------------------------------------------------------
    def set_scale(self, scale: float) -> None:
        """The UI scale now (and the mode's, while presenting)."""
        scale = min(max(float(scale), SCALES[0]), SCALES[-1])
        if self.presenting:
            self.scale = scale
        THEME.set_scale(scale)
        self._sync_menus()

    def step_scale(self, delta: int) -> None:
        here = min(range(len(SCALES)), key=lambda i: abs(SCALES[i] - THEME.scale))
        self.set_scale(SCALES[min(max(here + delta, 0), len(SCALES) - 1)])

    def set_theme(self, name: str) -> None:
        """The colour theme now (and the mode's, while presenting)."""
        if self.presenting:
            self.theme = name
        THEME.set_theme(name)
        self._sync_menus()

    def _theme_changed(self, *_args) -> None:
        """The palette and every canvas's background follow the theme."""
        from pyqtgraph import GraphicsView

        QApplication.instance().setPalette(palette(_PLATFORM_PALETTE))
        for view in self.window.findChildren(GraphicsView):
            view.setBackground(THEME.colour("background"))
        self._sync_menus()

    # --- keys and menus ---------------------------------------------------------------
    def _attention_in_use(self) -> bool:
        w = self.window
        dock = w.docks["attention"]
        focus = QApplication.focusWidget()
        return self.maximised == "attention" or (focus is not None and dock.isAncestorOf(focus))

    def _step_class(self, delta: int) -> None:
        s = self.window.session
        indices = [p.index for p in s.predictions]
        if not indices:
            return
        here = 0 if s.target is None else (indices.index(s.target) if s.target in indices else 0)
        there = min(max(here + delta, 0), len(indices) - 1)
        s.set_target(None if there == 0 else indices[there])

    def _actions(self) -> dict:
        w = self.window
        att = w.attention_view

        def step(layer: int = 0, channel: int = 0):
            if self._attention_in_use():
                att.step_layer(layer) if layer else att.step_head(channel)
            elif layer:
                w.session.step_layer(layer)
            else:
                w.feature_view.step_channel(channel)
            self.update_caption()

        def head(delta: int) -> None:
            att.step_head(delta)
            self.update_caption()

        return {
            "layer_next": lambda: step(layer=1), "layer_prev": lambda: step(layer=-1),
            "channel_next": lambda: step(channel=1), "channel_prev": lambda: step(channel=-1),
            "head_next": lambda: head(1), "head_prev": lambda: head(-1),
            "class_next": lambda: self._step_class(1), "class_prev": lambda: self._step_class(-1),
            "recompute": w.refresh_explanations,
            "present": lambda: self.presenting or self.set(True),
            "present_toggle": self.toggle,
            "blank": lambda: self.set_blank(not self.blanked),
            "escape": lambda: self.set(False),
            "chrome": self.toggle_chrome,
            "maximise": self.toggle_maximise,
            "scale_up": lambda: self.step_scale(1), "scale_down": lambda: self.step_scale(-1),
            "scale_reset": lambda: self.set_scale(1.0),
            "keymap": self.show_keymap,
            "live_freeze": lambda: w.live.toggle_freeze(),
        }

    def _intercepts(self) -> dict:
        # Esc is the window's only while presenting (blanking and the key map take any key
        # first); otherwise it goes to the focused view (the attention query) and cancels jobs.
        return {"escape": lambda: self.presenting, "chrome": lambda: self.presenting,
                "live_freeze": lambda: self.window.live.space_is_ours()}

    def build_menus(self, view_menu: QMenu, navigate_menu: QMenu) -> None:
        """The Navigate menu and the View menu's presentation entries, from the key table.

        The keys are shown beside each entry (after a tab) but bound only by the key handler,
        so a key never runs twice.
        """
        for r in KEYS:
            if r.menu == "navigate":
                navigate_menu.addAction(f"{r.description}\t{key_text(r)}", lambda a=r.action: self.keys.trigger(a))
        view_menu.addSeparator()
        self.present_action = view_menu.addAction("&Presentation mode\tF11", self.toggle)
        self.present_action.setCheckable(True)
        self.scale_actions: dict[float, QAction] = {}
        scales = view_menu.addMenu("Presentation &scale")
        group = QActionGroup(scales)
        for s in SCALES:
            action = scales.addAction(f"{s:g}x", lambda s=s: self.set_scale(s))
            action.setCheckable(True)
            group.addAction(action)
            self.scale_actions[s] = action
        themes = view_menu.addMenu("&Theme")
        self.theme_actions: dict[str, QAction] = {}
        group = QActionGroup(themes)
        for name in THEMES:
            action = themes.addAction(THEME_TITLES.get(name, name), lambda n=name: self.set_theme(n))
            action.setCheckable(True)
            group.addAction(action)
            self.theme_actions[name] = action
        for r in KEYS:
            if r.menu == "view" and r.action not in ("present_toggle", "escape"):
                view_menu.addAction(f"{r.description}\t{key_text(r)}", lambda a=r.action: self.keys.trigger(a))
        self._sync_menus()

    def _sync_menus(self) -> None:
        if not hasattr(self, "present_action"):
            return
        self.present_action.setChecked(self.presenting)
        for s, action in self.scale_actions.items():
            action.setChecked(abs(s - THEME.scale) < 1e-6)
        for name, action in self.theme_actions.items():
            action.setChecked(name == THEME.theme)

    # --- events -----------------------------------------------------------------------
    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt override
        kind = event.type()
        if obj is self.window:
            if kind == QEvent.Resize and time.monotonic() < self._layout_until:
                QTimer.singleShot(0, self, self._restore_layout)  # not inside the resize itself
                for overlay in (self.blank, self.keymap):
                    if overlay.isVisible():
                        overlay.setGeometry(self.window.rect())
            return False
        if obj in (self.blank, self.keymap):
            if kind == QEvent.MouseButtonPress:
                obj.hide()
                return True
            return False
        if isinstance(obj, QDockWidget) and kind == QEvent.MouseButtonDblClick and not obj.isFloating():
            inner = obj.widget()
            if inner is not None and event.position().y() < inner.geometry().top():  # on the title
                key = next(k for k, d in self.window.docks.items() if d is obj)
                self.toggle_maximise(None if self.maximised else key)
                return True
        return False

    def close(self) -> None:
        """Leave the mode and stop filtering keys (the window is closing)."""
        self.set(False)
        self.keys.remove()
        notification_manager.unsubscribe(self._notified)

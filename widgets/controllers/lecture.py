"""The lecture controller: scenes (save and restore the window's state) and decks (step
through a lecture's scenes, with the next one prepared in the background).

A scene (:class:`vizapp.lecture.Scene`) is captured from the session, the views'
``view_options()`` and the window's layout, and applied in two steps: first the model and
the image (through the probing and inputs controllers; a model this deck used already comes
from this controller's cache, without loading) with the layer; then, once their analysis is
on screen, the channel, the explained class, each view's options, the attention head and the
raised dock. A scene's missing file (model, image) is named in one warning and the rest of
the scene is shown. A scene never grants trust: a file model opens under the usual rules.

With a deck open, showing a scene prepares the next one (its model loaded, its image decoded)
on a lane of its own (``vizapp-prefetch``), so stepping on costs only the analysis.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from pathlib import Path

from PySide6.QtCore import QByteArray, QTimer

from vizapp.core.notifications import notification_manager
from vizapp.lecture import Deck, Scene, looks_like_path, read_lecture, write_deck, write_scene
from vizapp.lecture.scene import image_path, sample_name
from widgets.controllers import Controller, notify
from widgets.theme import THEME

__all__ = ["LectureController", "MAX_CACHED_MODELS", "prepare"]

log = logging.getLogger(__name__)

#: Models (and images) kept loaded for the open deck, the least recently shown dropped first.
MAX_CACHED_MODELS = 4
MAX_CACHED_IMAGES = 16
#: How often a scene being applied checks whether its model and image are on screen.
POLL_MS = 25


def prepare(model: tuple | None, image: str | None, *, progress, cancel):
    """The ``prefetch`` job: open ``model`` (``(name, arch, device)``) and decode ``image``.

    Returns ``(model, OpenedModel or None, image, ImageRecord or None)``; a model or image that
    fails is left out (the scene says so when it is shown).
    """
    from vizapp import analysis
    from vizapp.core.errors import UserError

    opened = record = None
    if model is not None:
        try:
            opened = analysis.open_model(*model, progress=progress, cancel=cancel)
        except UserError as exc:
            log.info("prefetch: %s", exc)
    if image is not None:
        try:
            record = analysis.decode_image(image, progress=progress, cancel=cancel)
        except UserError as exc:
            log.info("prefetch: %s", exc)
    return model, opened, image, record


def _model_key(name: str, arch: str | None) -> tuple[str, str]:
    """One key per model, however it is named: a path made absolute and real."""
    if name and (looks_like_path(name) or os.path.exists(name)):
        name = os.path.realpath(os.path.expanduser(name))
    return name, arch or ""


class LectureController(Controller):
    """Scenes and decks for ``window`` (the :class:`~widgets.main_window.MainWindow`).

    ``state_version`` is the version the window saves its layout with.

    Attributes
    ----------
    deck : Deck or None
        The open deck; :attr:`position` is the scene shown.
    pending : Scene or None
        The scene being applied (None once it is on screen).
    missing : list of str
        What the last scene named that could not be shown (files, a layer, a channel).
    """

    kinds = ("prefetch",)

    def __init__(self, session, runner, views, on_screen, *, window, state_version: int) -> None:
        super().__init__(session, runner, views, on_screen)
        self.window = window
        self.state_version = state_version
        self.deck: Deck | None = None
        self.deck_path: Path | None = None
        self.position = -1
        self.pending: Scene | None = None
        self.missing: list[str] = []
        self.shown: Scene | None = None
        self._where = ""
        self._trust = False
        self._settled = 0
        self._error_before = ""
        self._models: OrderedDict[tuple[str, str], object] = OrderedDict()
        self._images: OrderedDict[str, object] = OrderedDict()
        self._timer = QTimer(window)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self._poll)
        self._relayout: bytes | None = None  # the scene's layout, restored once more when its jobs drain
        runner.sigBusy.connect(self._drained)
        runner.set_lane("prefetch", "prefetch")  # never in front of the analysis on the shared lane
        session.events.model.connect(lambda _model: self._remember_model())

    # --- capture -----------------------------------------------------------------
    def capture(self, title: str = "") -> Scene:
        """The window's state now, as a scene (a pasted image has no file: the scene keeps none)."""
        w, s = self.window, self.session
        name, arch = w.probing.opened_as if s.model is not None else ("", "")
        if name and (looks_like_path(name) or os.path.exists(name)):
            name = os.path.abspath(os.path.expanduser(name))
        image = None
        if s.image is not None and s.image.path is not None:
            image = sample_name(s.image.path) or os.path.abspath(s.image.path)
        attention = self.views.get("attention")
        return Scene(
            model=name or None, arch=arch or None, image=image, layer=s.layer, channel=s.channel,
            head=attention.view_options().get("head") if attention is not None else None,
            target=s.target, dock=self._raised_dock(),
            views={k: v.view_options() for k, v in self.views.items() if hasattr(v, "view_options")},
            layout=Scene.encode_layout(w.saveState(self.state_version).data()),
            presentation=self.window.presenting, scale=min(max(THEME.scale, 1.0), 3.0),
            theme=THEME.theme, title=title,
        )

    def _raised_dock(self) -> str | None:
        """The dock on top of a group of tabs (the first such, in the dock table's order)."""
        w = self.window
        for key, dock in w.docks.items():
            if w.tabifiedDockWidgets(dock) and w.dock_on_screen(key):
                return key
        return None

    # --- apply -------------------------------------------------------------------
    def apply(self, scene: Scene, where: str = "", trust: bool = False) -> None:
        """Show ``scene``: the model and image first, the rest once their analysis is on screen.

        ``where`` names the scene in messages; ``trust`` comes from the user (``--trust``),
        never from the scene.
        """
        w, s = self.window, self.session
        self._timer.stop()
        self.pending, self.missing, self._where, self._settled = scene, [], where or scene.title, 0
        self._relayout = None
        self._error_before = w.last_error  # a new error by the time the scene is in: its model's
        self._apply_presentation(scene)
        if scene.layout:
            if not w.restoreState(QByteArray(scene.layout_bytes()), self.state_version):
                self.missing.append("its dock layout (saved by another version: the layout is kept)")
        model_pending = False
        if scene.model:
            key = _model_key(scene.model, scene.arch)
            if looks_like_path(scene.model) and not os.path.exists(scene.model):
                self.missing.append(f"model file {scene.model}")
            elif _model_key(*w.probing.requested) != key or s.model is None:
                cached = self._models.get(key)
                if cached is not None:
                    self._models.move_to_end(key)
                    w.probing.reopen(cached, scene.model, scene.arch or "", scene.layer)
                else:
                    w.probing.open_model(scene.model, scene.arch or "", trust, scene.layer)
                model_pending = True
        if scene.image:
            path = image_path(scene.image)
            if path is None:
                self.missing.append(f"image {scene.image}")
            else:
                if model_pending:  # the scene's image stays, whatever the model's own samples
                    w.inputs.keep_image_once = True
                self._show_image(str(path))
        if not model_pending and scene.layer and s.model is not None:
            if scene.layer in s.layer_names():
                s.select_layer(scene.layer)
        self._timer.start()

    def _show_image(self, path: str) -> None:
        image = self.session.image
        if image is not None and image.path is not None and os.path.realpath(image.path) == os.path.realpath(path):
            return
        record = self._images.get(os.path.realpath(path))
        if record is not None:
            self.session.set_image(record)
        else:
            self.window.open_image(path)

    def _apply_presentation(self, scene: Scene) -> None:
        """Presentation mode on or off (full screen when it turns on), then the scene's scale and theme."""
        if scene.presentation != self.window.presenting:
            self.window.set_presentation(scene.presentation)
        if abs(THEME.scale - scene.scale) > 1e-9:
            THEME.set_scale(scene.scale)
        if scene.theme:
            try:
                THEME.set_theme(scene.theme)
            except ValueError:
                self.missing.append(f"theme {scene.theme}")

    def settled(self) -> bool:
        """No scene is being applied (its layout restored after the jobs it started)."""
        return self.pending is None and self._relayout is None

    def _drained(self, busy: bool) -> None:
        if not busy and self._relayout is not None:
            QTimer.singleShot(0, self.window, self._restore_again)  # after the last results are shown

    def _restore_again(self) -> None:
        layout, self._relayout = self._relayout, None
        if layout is not None and self.runner.lane_idle():
            self.window.restoreState(QByteArray(layout), self.state_version)
        elif layout is not None:
            self._relayout = layout  # a job started meanwhile: when it drains

    def _poll(self) -> None:
        w, s = self.window, self.session
        waiting = not self.runner.idle("model", "image", "analysis")
        shown = w.probing.ready or s.model is None or s.image is None
        if waiting or not shown:
            self._settled = 0
            return
        self._settled += 1  # twice in a row: a result posted as the job ended has been delivered
        if self._settled < 2:
            return
        self._timer.stop()
        scene, self.pending = self.pending, None
        if scene is not None:
            self._finish(scene)

    def _finish(self, scene: Scene) -> None:
        """The second step: what needs the model's analysis on screen."""
        w, s = self.window, self.session
        model = s.model
        if scene.layer and model is not None and s.layer != scene.layer:
            if scene.layer in s.layer_names():  # the scene's model did not open: its layer in this one
                s.select_layer(scene.layer)
                self.pending, self._settled = scene, 0
                self._timer.start()
                return
            self.missing.append(f"layer {scene.layer} (not in {model.title})")
        if scene.model and not any("model file" in m for m in self.missing) and (
                model is None or _model_key(*w.probing.opened_as) != _model_key(scene.model, scene.arch)):
            error = w.last_error if w.last_error != self._error_before else ""
            self.missing.append(f"model {scene.model} ({error or 'not opened'})")
        if scene.channel is not None:
            n = w.feature_view.channel_count()
            if scene.channel < n:
                s.select_channel(scene.channel)
            else:
                self.missing.append(f"channel {scene.channel} (layer {s.layer} has {n})")
        if model is not None:
            classes = getattr(model, "class_names", None)
            if scene.target is not None and classes is not None and scene.target >= len(classes):
                self.missing.append(f"class {scene.target} ({model.title} has {len(classes)})")
            else:
                s.set_target(scene.target)
        for key, options in scene.views.items():
            view = self.views.get(key)
            if hasattr(view, "set_view_options"):
                view.set_view_options(options)
        attention = self.views.get("attention")
        if scene.head is not None and attention is not None:
            attention.set_layer_head(attention.layer(), scene.head)
        if scene.layout:  # again, now that the docks hold the scene's contents (their minimum sizes),
            w.restoreState(QByteArray(scene.layout_bytes()), self.state_version)
            # and once more when the jobs these options asked for (kernels, explanations) are drawn:
            # their pictures change the docks' minimum sizes, so the splits would depend on when
            # each result arrived
            self._relayout = scene.layout_bytes()
            if self.runner.lane_idle():
                QTimer.singleShot(0, self.window, self._restore_again)
        if scene.dock:
            dock = w.docks.get(scene.dock)
            if dock is None:
                self.missing.append(f"dock {scene.dock}")
            else:
                dock.show()
                dock.raise_()
        self.shown = scene
        if self.missing:
            where = f"{self._where}: " if self._where else "scene: "
            notification_manager.warning(f"{where}missing {'; '.join(self.missing)}; the rest of the scene is shown")
        self._prefetch_next()

    # --- files -------------------------------------------------------------------
    def open_path(self, path: str | os.PathLike, trust: bool = False) -> None:
        """Open a ``.vizscene`` (one scene), a ``.vizdeck`` or a folder of scenes (a deck, at its first)."""
        deck = read_lecture(path)  # a SceneError for the caller
        path = Path(path)
        if path.is_dir() or len(deck.scenes) > 1 or path.suffix == ".vizdeck":
            self.open_deck(deck, path, trust)
        else:
            self.apply(deck.scenes[0], path.name, trust)

    def save_scene(self, path: str | os.PathLike, title: str = "") -> Path:
        """Write the window's state as a ``.vizscene``."""
        scene = self.capture(title or Path(path).stem)
        saved = write_scene(path, scene)
        if self.session.image is not None and scene.image is None:
            notify(f"{saved}: saved without the image (a pasted image has no file)")
        return saved

    # --- decks -------------------------------------------------------------------
    def open_deck(self, deck: Deck, path: str | os.PathLike | None = None, trust: bool = False) -> None:
        """Make ``deck`` the open deck and show its first scene."""
        self.deck, self.deck_path, self._trust = deck, None if path is None else Path(path), trust
        self._models.clear()
        self._images.clear()
        self._remember_model()
        self.go(0)

    def close_deck(self) -> None:
        self.deck, self.deck_path, self.position = None, None, -1
        self._models.clear()
        self._images.clear()
        self.runner.cancel("prefetch")

    def go(self, index: int) -> bool:
        """Show scene ``index`` of the deck (clamped); False without a deck."""
        deck = self.deck
        if deck is None or not deck.scenes:
            return False
        self.position = min(max(0, int(index)), len(deck.scenes) - 1)
        scene = deck.scenes[self.position]
        name = deck.names()[self.position]
        self.apply(scene, f"{name} ({self.position + 1}/{len(deck.scenes)})", self._trust)
        return True

    def step(self, delta: int) -> bool:
        """Next (``+1``) or previous (``-1``) scene; False when no deck is open.

        At either end the scene stays and the status bar says so.
        """
        if self.deck is None:
            return False
        target = self.position + delta
        if not 0 <= target < len(self.deck.scenes):
            notify(f"{self.deck.title}: {'last' if delta > 0 else 'first'} scene")
            return True
        return self.go(target)

    def save_deck(self, path: str | os.PathLike) -> Path:
        if self.deck is None:
            self.deck = Deck(Path(path).stem, [])
        saved = write_deck(path, self.deck)
        self.deck_path = saved
        return saved

    # --- the model cache and the prefetch ----------------------------------------
    def _remember_model(self) -> None:
        """Keep the model on screen for the deck (only while a deck is open)."""
        s = self.session
        if self.deck is None or s.model is None:
            return
        from vizapp.analysis import OpenedModel

        key = _model_key(*self.window.probing.opened_as)
        if key[0]:
            self._keep(self._models, key, OpenedModel(s.model, list(s.layers), []), MAX_CACHED_MODELS)

    @staticmethod
    def _keep(cache: OrderedDict, key, value, limit: int) -> None:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > limit:
            cache.popitem(last=False)

    def cached_models(self) -> list[tuple[str, str]]:
        """The keys of the models kept for the deck, least recently shown first."""
        return list(self._models)

    def _prefetch_next(self) -> None:
        deck, w = self.deck, self.window
        if deck is None or self.position + 1 >= len(deck.scenes):
            return
        nxt = deck.scenes[self.position + 1]
        model = None
        if nxt.model and not (looks_like_path(nxt.model) and not os.path.exists(nxt.model)):
            key = _model_key(nxt.model, nxt.arch)
            if key not in self._models and key != _model_key(*w.probing.requested):
                model = (nxt.model, nxt.arch or None, self._trust, w.probing.device_choice)
        image = None
        if nxt.image:
            path = image_path(nxt.image)
            if path is not None and os.path.realpath(path) not in self._images:
                image = str(path)
        if model is not None or image is not None:
            self.submit("prefetch", prepare, model, image)

    def finished(self, kind: str, result) -> None:
        if kind != "prefetch" or self.deck is None:
            return
        model, opened, image, record = result
        if opened is not None:
            self._keep(self._models, _model_key(model[0], model[1]), opened, MAX_CACHED_MODELS)
        if record is not None:
            self._keep(self._images, os.path.realpath(image), record, MAX_CACHED_IMAGES)

    def failed(self, kind: str, message: str) -> None:
        log.info("prefetch failed: %s", message)  # the scene says what is missing when it is shown

"""The main window: the composition root of the app.

It wraps a :class:`vizapp.session.Session`, builds one view per row of the dock table
(``widgets/docks.py``), one controller per feature (``widgets/controllers/``: probing,
inputs, collection, explain, training) and the routes that hand every job's result or
failure back to the controller that owns its kind. Data flows one way: a view asks (a
signal, or a session change) -> its controller submits an engine job to the one
:class:`~widgets.bridge.JobRunner` -> the result comes back to that controller -> the
session or the views show it. The window itself keeps the chrome: the layout, the menus,
the one status label, the progress bar and Cancel, and PNG export. It owns no torch code.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QWidget,
)

from vizapp.core.notifications import Notification, Severity, notification_manager
from vizapp.session import Session
from widgets.bridge import SHARED_LANE, JobRunner
from widgets.controllers import JobRoutes, notify
from widgets.controllers.collection import CollectionController
from widgets.controllers.convolution import ConvolutionController
from widgets.controllers.explain import ExplainController
from widgets.controllers.featurevis import FeatureVisController
from widgets.controllers.inputs import InputsController
from widgets.controllers.lecture import LectureController
from widgets.controllers.live import LiveController
from widgets.controllers.probing import ProbingController
from widgets.controllers.training import TrainingController
from widgets.deck_editor import add_lecture_actions
from widgets.docks import DOCKS, DockRow, default_layout
from widgets.export import Figures, export_view
from widgets.fit import clamp_to_screen, fit_to_screen, follow_theme_scale
from widgets.presentation import PresentationMode
from widgets.recording import RecordingController
from widgets.theme import THEME, bind_font
from widgets.training_panel import TrainingPanel

__all__ = ["MainWindow", "settings_for"]

log = logging.getLogger(__name__)

DEFAULT_MODEL = "efficientnet_lite0"
DEFAULT_IMAGE = "chelsea"
STATE_VERSION = 3  # 2: the attention and attribution docks; 3: the training lab


def settings_for() -> QSettings:
    """The settings store: ``$VIZAPP_SETTINGS`` (an .ini path) or the user's config folder."""
    from vizapp.core.paths import settings_file

    path = settings_file()
    if path is not None:
        return QSettings(str(path), QSettings.IniFormat)
    return QSettings(QSettings.IniFormat, QSettings.UserScope, "vizapp", "vizapp")


class MainWindow(QMainWindow):
    """The app window.

    ``restore_layout=False`` gives the default layout and leaves the user's saved
    layout alone (screenshots, benchmarks).

    Each view is an attribute named in its dock-table row (``model_view``, ``image_view``,
    ``feature_view``, ...) and in :attr:`views` by dock key; each controller is an
    attribute (``probing``, ``inputs``, ``collection``, ``explain``, ``training``) and in
    :attr:`controllers`. The methods :meth:`open_model`, :meth:`open_image`,
    :meth:`set_collection` and the like are the controllers' requests, kept here for the
    command line, the tests and the benchmarks.

    Messages: the window subscribes to :data:`vizapp.core.notifications.notification_manager`
    and shows every notification in its one status label (errors in the theme's error
    colour and kept, warnings in its warning colour and kept, information for a while).
    A notification from a worker thread is queued to the GUI thread by ``_sigNotification``.
    """

    _sigNotification = Signal(object)  # a vizapp.core.notifications.Notification, to the GUI thread

    def __init__(self, session: Session | None = None, restore_layout: bool = True) -> None:
        super().__init__()
        from models import list_specs

        self.setWindowTitle("vizapp — seeing inside vision networks")
        self.session = session or Session()
        self.runner = JobRunner(self)
        self.settings = settings_for()
        self._persist = restore_layout
        self._last_error = ""
        self._kept = False  # the status label shows an error or warning (stays until dismissed)
        self._layout_on_show = True  # the default layout is fitted to the size the window is shown at
        follow_theme_scale()  # the application's font follows THEME.scale (widgets/fit.py)

        # The training lab's panel is built here (its dock row names no view class), on the one runner.
        self.training_panel = TrainingPanel(self.runner)
        self.training_panel.set_hub_models([(spec.name, spec.title) for spec in list_specs()])

        # The views and their docks, from the dock table.
        self.views: dict[str, QWidget] = {}
        self.docks: dict[str, QDockWidget] = {}
        for row in DOCKS:
            view = row.make(self.session) if row.view is not None else getattr(self, row.attr)
            setattr(self, row.attr, view)
            self.views[row.key] = view
            self.docks[row.key] = self._make_dock(row, view)
        self.setDockNestingEnabled(True)
        self._default_layout()
        self._default_state = self.saveState(STATE_VERSION)
        self._build_status_bar()
        # Presentation mode, maximised docks, blanking and the keys (widgets/presentation.py, widgets/keys.py).
        self.presentation = PresentationMode(self)
        self._build_menus()

        # One controller per feature; the routes hand each job's result to its owner.
        # (The order is the order they hear the session's events: probing, then the
        # collection, then the explanations ask for their jobs.)
        # Each line is one controller: its name (the dock table's "controller"), and the window
        # attribute that holds it.
        parts = (self.session, self.runner, self.views, self.dock_on_screen)
        self.controllers: dict = {}
        self.inputs = self._add("inputs", InputsController(*parts, settings=self.settings))
        self.probing = self._add("probing", ProbingController(*parts, inputs=self.inputs))
        self.collection = self._add("collection", CollectionController(*parts, inputs=self.inputs))
        self.explain = self._add("explain", ExplainController(*parts))
        self.convolution = self._add("convolution", ConvolutionController(*parts, presentation=self.presentation))
        self.featurevis = self._add("featurevis", FeatureVisController(*parts, collection=self.collection))
        self.training = self._add("training", TrainingController(*parts, probing=self.probing))
        self.lecture = self._add("lecture", LectureController(*parts, window=self, state_version=STATE_VERSION))
        add_lecture_actions(self, self.file_menu)  # File > Open scene…, Save scene…, Open deck…, …
        self.presentation.keys.scene_stepper = self.step_scene  # PgDn/PgUp: the deck's scenes, else layers
        self.recording = self._add("recording", RecordingController(*parts))
        self.recording.attach(self)
        self.live = self._add("live", LiveController(*parts))  # a camera or video followed live
        self.live.attach(self)  # File > Open camera, Open video…; the live bar
        self.routes = JobRoutes(self.controllers.values())
        for row in DOCKS:  # a dock that comes on screen or leaves it tells its controller
            controller = self.controllers[row.controller]
            self.docks[row.key].visibilityChanged.connect(
                lambda shown, key=row.key, c=controller: c.dock_shown(key) if shown else c.dock_hidden(key))

        # The one status route: every notification (any thread) lands in _show_notification.
        self._sigNotification.connect(self._show_notification)  # auto: queued from other threads
        notification_manager.subscribe(self._receive_notification)
        self.runner.sigFinished.connect(self.routes.finished)
        self.runner.sigFailed.connect(self.routes.failed)
        self.runner.sigProgress.connect(self._job_progress)
        self.runner.sigBusy.connect(self._busy)

        if restore_layout:
            self._restore_layout()
        else:
            fit_to_screen(self)

    # --- layout ------------------------------------------------------------------
    def _add(self, name: str, controller):
        """Register ``controller`` under ``name`` (the dock table's ``controller`` column)."""
        self.controllers[name] = controller
        return controller

    def _make_dock(self, row: DockRow, view: QWidget) -> QDockWidget:
        dock = QDockWidget(row.title, self)
        dock.setObjectName(f"dock_{row.key}")
        if row.scroll:
            scroll = QScrollArea()
            scroll.setWidget(view)
            scroll.setWidgetResizable(True)
            dock.setWidget(scroll)
        else:
            dock.setWidget(view)
        return dock

    def _default_layout(self) -> None:
        default_layout(self, self.docks)

    def dock_on_screen(self, key: str) -> bool:
        """Whether dock ``key`` is showing (not closed, not a hidden tab)."""
        dock = self.docks[key]
        return dock.isVisible() and not dock.visibleRegion().isEmpty()

    def reset_layout(self) -> None:
        self.restoreState(self._default_state, STATE_VERSION)
        self._default_layout()

    def _restore_layout(self) -> None:
        geometry = self.settings.value("window/geometry")
        state = self.settings.value("window/state")
        if geometry is None or not self.restoreGeometry(geometry):
            fit_to_screen(self)
        else:
            clamp_to_screen(self)  # saved on a larger screen
        if state is not None and self.restoreState(state, STATE_VERSION):
            self._layout_on_show = False  # the user's layout stays as it was

    def showEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        if self._layout_on_show:  # the first show: the default layout for the size shown at
            self._layout_on_show = False
            self._default_layout()

    def save_layout(self) -> None:
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/state", self.saveState(STATE_VERSION))
        self.settings.sync()

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt override
        notification_manager.unsubscribe(self._receive_notification)
        self.presentation.close()  # the layout and scale as they were before presenting
        if self._persist:
            self.save_layout()
        self.training_panel.shutdown()
        self.runner.shutdown()
        super().closeEvent(event)

    # --- chrome --------------------------------------------------------------------
    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        # Messages wrap (the status bar grows) rather than being cut off: an error's
        # last sentence is usually what to do about it.
        self.message = QLabel("")
        bind_font(self.message, None)  # the application's size, times the theme's scale
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.message.setMinimumWidth(200)
        self.dismiss_button = QPushButton("✕")
        self.dismiss_button.setToolTip("Dismiss this message")
        self.dismiss_button.setFlat(True)
        self.dismiss_button.setVisible(False)
        self.dismiss_button.clicked.connect(self.clear_message)
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(220)
        self.progress.setVisible(False)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setVisible(False)
        self.cancel_button.clicked.connect(self.cancel_jobs)
        bar.addWidget(self.message, 1)
        bar.addWidget(self.dismiss_button)
        bar.addPermanentWidget(self.progress)
        bar.addPermanentWidget(self.cancel_button)

    def _build_menus(self) -> None:
        file_menu = self.file_menu = self.menuBar().addMenu("&File")
        file_menu.addAction("Open &image…", QKeySequence.Open, self.image_view.open_dialog)
        file_menu.addAction("Open &model weights…", self.model_view.open_file_dialog)
        file_menu.addAction("&Paste image", QKeySequence.Paste, self.image_view.paste)
        self.figures = Figures(self)  # File > Export view, Export all, Record view; context menus; Ctrl+Shift+C
        self.figures.add_to(file_menu)
        file_menu.addAction("Save &window screenshot…", lambda: self._export_dialog(None))
        file_menu.addSeparator()
        file_menu.addAction("&Quit", QKeySequence.Quit, self.close)
        view_menu = self.menuBar().addMenu("&View")
        for dock in self.docks.values():
            view_menu.addAction(dock.toggleViewAction())
        view_menu.addSeparator()
        view_menu.addAction("&Reset layout", self.reset_layout)
        nav = self.menuBar().addMenu("&Navigate")
        self.presentation.build_menus(view_menu, nav)  # from the key table (widgets/keys.py)
        QShortcut(QKeySequence("Escape"), self, self.cancel_jobs)

    # --- requests (the controllers' own, for the command line, tests and benchmarks) ---
    @property
    def ready(self) -> bool:
        """A model, an image and their analysis are on screen."""
        return self.probing.ready

    def start(self, model: str | None = None, image: str | None = None, layer: str | None = None,
              arch: str | None = None, trust: bool = False, device: str | None = None) -> None:
        """Open the default (or given) model and image, as at launch.

        The defaults are the machine config's ``default_model``/``default_image``
        (:mod:`vizapp.core.config`), else :data:`DEFAULT_MODEL`/:data:`DEFAULT_IMAGE`.
        """
        from vizapp.core.config import machine_config
        from vizapp.core.errors import ImageError
        from vizapp.inputs.sources import resolve_image_source

        config = machine_config()
        self.probing.load_catalog()
        self.inputs.load_samples()
        self.probing.device_choice = device
        self.inputs.keep_image_once = image is not None or bool(config.default_image)  # a chosen image stays
        self.open_model(model or config.default_model or DEFAULT_MODEL, arch or "", trust, layer)
        if image is None:
            try:
                image = str(resolve_image_source(config.default_image or DEFAULT_IMAGE))
            except ImageError as exc:  # no scikit-image samples here: start without an image
                image = None
                if config.default_image:  # the admin's choice does not resolve: say so
                    self.notify(f"{config.where}: default_image: {exc}", error=True)
        if image is not None:
            self.open_image(image)

    def cancel_jobs(self) -> None:
        """Stop what the user is waiting on (each controller's interactive jobs; not the
        gallery thumbnails)."""
        self.routes.cancel()

    def open_model(self, name: str, arch: str = "", trust: bool = False, layer: str | None = None) -> None:
        self.probing.open_model(name, arch, trust, layer)

    def set_device(self, device: str) -> None:
        """Run on ``device`` from now on (the current model moves; later models load there)."""
        self.probing.set_device(device)

    def open_image(self, source) -> None:
        """Open an image: a path, a sample's name, or PNG bytes."""
        self.inputs.open_image(source)

    def load_samples(self) -> None:
        self.inputs.load_samples()

    def set_collection(self, spec: str) -> None:
        """Use a folder, ``samples`` or a torchvision set as the collection; indexes the layer."""
        self.collection.set_collection(spec)

    def open_collection_image(self, key: str) -> None:
        self.inputs.open_collection_image(key)

    def open_patch(self, patch) -> None:
        self.inputs.open_patch(patch)

    def pick_class(self, index: int | None) -> None:
        """Explain class ``index`` (a click in the predictions): attributions and gradient rollout."""
        self.session.set_target(index)

    def step_scene(self, delta: int) -> bool:
        """The open deck's next (``+1``) or previous (``-1``) scene; False when no deck is open."""
        return self.lecture.step(delta)

    def refresh_explanations(self) -> None:
        """Compute the attention and attributions again (Ctrl+R; after a cancel)."""
        self.explain.refresh()

    def set_presentation(self, on: bool, scale: float | None = None, theme: str | None = None,
                         full_screen: bool = True) -> None:
        """Presentation mode on (UI ``scale`` 1 to 3, ``theme`` default/light/dark; full screen)
        or off (all as before): :class:`widgets.presentation.PresentationMode`."""
        self.presentation.set(on, scale, theme, full_screen)

    @property
    def presenting(self) -> bool:
        return self.presentation.presenting

    # --- progress and messages ----------------------------------------------------
    def _job_progress(self, kind: str, done: int, total: int, text: str) -> None:
        if self.runner.lane_of(kind) != SHARED_LANE or self.live.quiet(kind):
            return  # like sigBusy, the bar and Cancel follow the shared lane; a lab run shows its own, live its rate
        self.progress.setVisible(True)
        self.cancel_button.setVisible(True)
        self.progress.setRange(0, total if total > 0 else 0)
        if total > 0:
            self.progress.setValue(done)
        self.progress.setFormat(text[:40])
        self._show(text, Severity.INFO)

    def _busy(self, busy: bool) -> None:
        if not busy:
            self.progress.setVisible(False)
            self.cancel_button.setVisible(False)
            if not self._kept:
                self.clear_message()

    def notify(self, text: str, error: bool = False) -> None:
        """Send ``text`` through the one notifier (an ERROR when ``error``, else INFO)."""
        notify(text, error)

    def _receive_notification(self, notification: Notification) -> None:
        """The window's subscriber: called on the notifying thread, shown on the GUI thread."""
        try:
            self._sigNotification.emit(notification)
        except RuntimeError:  # the window's Qt object is gone: stop listening
            notification_manager.unsubscribe(self._receive_notification)

    def _show_notification(self, notification: Notification) -> None:
        """The one status route: errors (the error colour) and warnings are kept, info fades."""
        text, severity = notification.message, notification.severity
        (log.info if severity is Severity.INFO else log.warning)("%s", text)
        self._show(text, severity)
        if severity is Severity.ERROR:
            self._last_error = text
        elif severity is Severity.INFO:
            # The label is the context: the timer dies with the window.
            QTimer.singleShot(8000, self.message, lambda t=text: self.message.text() == t and self.clear_message())

    def _show(self, text: str, severity: Severity) -> None:
        self._kept = severity is not Severity.INFO
        self.message.setStyleSheet(f"color: {THEME.colour(severity.value)}; font-weight: bold;" if self._kept else "")
        self.message.setText(text)
        self.message.setToolTip(text)
        self.dismiss_button.setVisible(self._kept)

    def clear_message(self) -> None:
        """Empty the status bar's message (the ✕ beside an error or warning)."""
        self._kept = False
        self.message.setText("")
        self.message.setToolTip("")
        self.message.setStyleSheet("")
        self.dismiss_button.setVisible(False)

    @property
    def last_error(self) -> str:
        return self._last_error

    # --- export ------------------------------------------------------------------
    def export_view(self, key: str | None, path: str | Path, scale: float | None = None) -> Path:
        """Save one dock's view (``key``, default 2x) or the whole window (``None``, 1x) as a PNG."""
        return export_view(self, key, path, scale)

    def _export_dialog(self, key: str | None) -> None:
        name = "vizapp-window" if key is None else f"vizapp-{key}"
        path, _ = QFileDialog.getSaveFileName(self, "Export PNG", f"{name}.png", "PNG images (*.png)")
        if path:
            try:
                saved = self.export_view(key, path)
            except OSError as exc:
                self.notify(str(exc), error=True)
            else:
                self.notify(f"saved {saved}")

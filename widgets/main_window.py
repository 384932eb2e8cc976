"""The main window: wraps a :class:`vizapp.session.Session`, hosts the docks, runs jobs.

Data flows one way: a view asks (a signal or a session change) -> the window submits
an engine job to the :class:`~widgets.bridge.JobRunner` -> the result comes back as a
signal -> the window hands it to the views. The window owns no torch code.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence, QShortcut
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

from vizapp import analysis
from vizapp.core.notifications import Notification, Severity, notification_manager
from vizapp.explain.suggestions import suggestion_text
from vizapp.session import Session, model_samples
from widgets.attention_view import AttentionView
from widgets.attribution_view import AttributionView
from widgets.bridge import JobRunner
from widgets.common import export_png
from widgets.embedding_view import EmbeddingView
from widgets.feature_maps_view import FeatureMapsView
from widgets.image_view import ImageView
from widgets.kernels_view import KernelsView
from widgets.model_view import ModelView
from widgets.predictions_view import PredictionsView
from widgets.theme import THEME, bind_font
from widgets.top_patches_view import TopPatchesView
from widgets.training_panel import TrainingPanel

__all__ = ["MainWindow", "settings_for"]

log = logging.getLogger(__name__)

DEFAULT_MODEL = "efficientnet_lite0"
DEFAULT_IMAGE = "chelsea"
STATE_VERSION = 3  # 2: the attention and attribution docks; 3: the training lab
#: Settings key of the Image dock's "Switch to the model's samples" box.
SWITCH_TO_OWN_KEY = "image/switch_to_model_samples"


def settings_for() -> QSettings:
    """The settings store: ``$VIZAPP_SETTINGS`` (an .ini path) or the user's config folder."""
    from vizapp.core.paths import settings_file

    path = settings_file()
    if path is not None:
        return QSettings(str(path), QSettings.IniFormat)
    return QSettings(QSettings.IniFormat, QSettings.UserScope, "vizapp", "vizapp")


#: Jobs the user waits on: what Escape and the Cancel button stop.
INTERACTIVE_JOBS = ("model", "device", "analysis", "image", "collection", "index", "patches", "overview",
                    "embedding", "neighbours", "attention")  # and every "attribution:<method>"
#: Top patches kept per channel in the GUI's indexes.
TOP_K = 9


def _same_file(path: str, paths: list[str]) -> bool:
    """Whether ``path`` names one of ``paths`` (however it is spelled)."""
    real = os.path.realpath(path)
    return any(os.path.realpath(p) == real for p in paths)


def _same_request(a: tuple | None, b: tuple | None) -> bool:
    """Requests ``(model, image, ...)``: the same objects (by identity), then equal values."""
    if a is None or b is None or len(a) != len(b):
        return False
    return a[0] is b[0] and a[1] is b[1] and a[2:] == b[2:]


class MainWindow(QMainWindow):
    """The app window.

    ``restore_layout=False`` gives the default layout and leaves the user's saved
    layout alone (screenshots, benchmarks).

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
        self._pending_layer: str | None = None
        self._persist = restore_layout
        self._device_choice: str | None = None
        self._last_error = ""
        self._kept = False  # the status label shows an error or warning (stays until dismissed)
        self._keep_image_once = False  # an image given at start stays, whatever the model
        self._own_samples: list[str] = []  # the open model's held-out samples (paths), in class order
        self.ready = False  # a model, an image and their analysis are on screen

        s = self.session
        self.model_view = ModelView(s, list_specs())
        self.image_view = ImageView(s)
        self.predictions_view = PredictionsView()
        self.kernels_view = KernelsView()
        self.feature_view = FeatureMapsView(s)
        self.patches_view = TopPatchesView()
        self.embedding_view = EmbeddingView()
        self.attention_view = AttentionView()
        self.attribution_view = AttributionView()
        self.training_panel = TrainingPanel(self.runner)
        self.training_panel.set_hub_models([(spec.name, spec.title) for spec in list_specs()])
        # Attention and attributions cost a forward (and backward) pass per image: they
        # run while their dock is on screen, and catch up when it is raised.
        self._stale = {"attention": True, "attribution": True}
        self._attribution_keys: dict[str, tuple] = {}  # method -> (model, image, class, layer) requested
        self._attention_request: tuple | None = None  # (model, image, gradient, class) requested
        self._pending_box: tuple[str, tuple[int, int, int, int]] | None = None
        self.docks: dict[str, QDockWidget] = {}
        for key, title, widget in (
            ("model", "Model", self.model_view),
            ("image", "Image", self.image_view),
            ("features", "Feature maps", self.feature_view),
            ("kernels", "Kernels", self.kernels_view),
            ("predictions", "Predictions", self.predictions_view),
            ("patches", "Top patches", self.patches_view),
            ("embedding", "Embedding", self.embedding_view),
            ("attention", "Attention", self.attention_view),
            ("attribution", "Attribution", self.attribution_view),
            ("training", "Training lab", self.training_panel),
        ):
            dock = QDockWidget(title, self)
            dock.setObjectName(f"dock_{key}")
            if key == "training":  # a long form: it scrolls rather than forcing a big window
                scroll = QScrollArea()
                scroll.setWidget(widget)
                scroll.setWidgetResizable(True)
                dock.setWidget(scroll)
            else:
                dock.setWidget(widget)
            widget.setContextMenuPolicy(Qt.ActionsContextMenu)
            export = QAction(f"Export {title} as PNG…", widget)
            export.triggered.connect(lambda _=False, k=key: self._export_dialog(k))
            widget.addAction(export)
            self.docks[key] = dock
        self.setDockNestingEnabled(True)
        self._default_layout()
        self._default_state = self.saveState(STATE_VERSION)
        self._build_status_bar()
        self._build_menus()

        # view -> request
        self.model_view.sigOpenModel.connect(self.open_model)
        self.model_view.sigDevice.connect(self.set_device)
        self.image_view.sigOpenPath.connect(self.open_image)
        self.image_view.sigOpenBytes.connect(self.open_image)
        self.image_view.switch_to_own.setChecked(self.settings.value(SWITCH_TO_OWN_KEY, True, type=bool))
        self.image_view.sigSwitchToOwn.connect(self._switch_to_own_toggled)
        self.kernels_view.sigOptions.connect(lambda *_: self._request_kernels())
        self.patches_view.sigUseSamples.connect(lambda: self.set_collection("samples"))
        self.patches_view.sigChooseCollection.connect(self._choose_collection)
        self.patches_view.sigIndex.connect(self._request_index)
        self.patches_view.sigChannel.connect(s.select_channel)
        self.patches_view.sigOpenPatch.connect(self.open_patch)
        self.embedding_view.sigMethod.connect(lambda _m: self._request_embedding())
        self.embedding_view.sigOpenImage.connect(self.open_collection_image)
        self.embedding_view.sigHover.connect(self._hover_thumbnail)
        self.embedding_view.sigNeighbours.connect(self._request_neighbours)
        self.attention_view.sigGradient.connect(lambda _on: self._request_attention())
        self.attribution_view.sigRequest.connect(self._request_attributions)
        self.attribution_view.sigRequest.connect(self._explained_class_changed)
        self.predictions_view.sigClassPicked.connect(self.pick_class)
        self.docks["attention"].visibilityChanged.connect(lambda shown: shown and self._catch_up("attention"))
        self.docks["attribution"].visibilityChanged.connect(lambda shown: shown and self._catch_up("attribution"))
        self.training_panel.sigOpenCheckpoint.connect(lambda path: self.open_model(path))
        self.docks["training"].visibilityChanged.connect(lambda shown: shown and self.training_panel.refresh_preview())
        # The one status route: every notification (any thread) lands in _show_notification.
        self._sigNotification.connect(self._show_notification)  # auto: queued from other threads
        notification_manager.subscribe(self._receive_notification)
        # session -> jobs
        s.events.layer.connect(lambda _name: self._request_all())
        s.events.image.connect(lambda _image: self._request_analysis())
        s.events.image.connect(lambda _image: self._request_explanations())
        s.events.model.connect(lambda _model: self._model_changed())
        s.events.collection.connect(lambda _c: self._request_index())
        s.events.index.connect(lambda _i: self._request_patches(overview=True))
        s.events.index.connect(lambda _i: self._request_embedding())
        s.events.channel.connect(self._channel_changed)
        # jobs -> views
        self.runner.sigFinished.connect(self._job_finished)
        self.runner.sigFailed.connect(self._job_failed)
        self.runner.sigProgress.connect(self._job_progress)
        self.runner.sigBusy.connect(self._busy)

        if restore_layout:
            self._restore_layout()
        else:
            self.resize(1600, 1000)

    # --- layout ------------------------------------------------------------------
    def _default_layout(self) -> None:
        d = self.docks
        for dock in d.values():
            self.removeDockWidget(dock)
        self.addDockWidget(Qt.LeftDockWidgetArea, d["model"])
        self.splitDockWidget(d["model"], d["image"], Qt.Vertical)
        self.addDockWidget(Qt.RightDockWidgetArea, d["features"])
        self.splitDockWidget(d["features"], d["kernels"], Qt.Vertical)
        self.splitDockWidget(d["kernels"], d["predictions"], Qt.Horizontal)
        self.tabifyDockWidget(d["features"], d["patches"])
        self.tabifyDockWidget(d["features"], d["embedding"])
        self.tabifyDockWidget(d["features"], d["attention"])
        self.tabifyDockWidget(d["features"], d["attribution"])
        self.tabifyDockWidget(d["features"], d["training"])
        for dock in d.values():
            dock.show()
        d["features"].raise_()
        self.resizeDocks([d["model"], d["features"]], [520, 1080], Qt.Horizontal)
        self.resizeDocks([d["model"], d["image"]], [520, 480], Qt.Vertical)
        self.resizeDocks([d["features"], d["kernels"]], [600, 400], Qt.Vertical)
        self.resizeDocks([d["kernels"], d["predictions"]], [560, 520], Qt.Horizontal)

    def reset_layout(self) -> None:
        self.restoreState(self._default_state, STATE_VERSION)
        self._default_layout()

    def _restore_layout(self) -> None:
        geometry = self.settings.value("window/geometry")
        state = self.settings.value("window/state")
        if geometry is None or not self.restoreGeometry(geometry):
            self.resize(1600, 1000)
        if state is not None:
            self.restoreState(state, STATE_VERSION)

    def save_layout(self) -> None:
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/state", self.saveState(STATE_VERSION))
        self.settings.sync()

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt override
        notification_manager.unsubscribe(self._receive_notification)
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
        file_menu = self.menuBar().addMenu("&File")
        file_menu.addAction("Open &image…", QKeySequence.Open, self.image_view._open_dialog)
        file_menu.addAction("Open &model weights…", self.model_view._open_file_dialog)
        file_menu.addAction("&Paste image", QKeySequence.Paste, self.image_view.paste)
        export = file_menu.addMenu("&Export view as PNG")
        for key, dock in self.docks.items():
            export.addAction(dock.windowTitle(), lambda k=key: self._export_dialog(k))
        file_menu.addAction("Save &window screenshot…", lambda: self._export_dialog(None))
        file_menu.addSeparator()
        file_menu.addAction("&Quit", QKeySequence.Quit, self.close)
        view_menu = self.menuBar().addMenu("&View")
        for dock in self.docks.values():
            view_menu.addAction(dock.toggleViewAction())
        view_menu.addSeparator()
        view_menu.addAction("&Reset layout", self.reset_layout)
        nav = self.menuBar().addMenu("&Navigate")
        for text, keys, slot in (
            ("Next layer", "PgDown", lambda: self.session.step_layer(1)),
            ("Previous layer", "PgUp", lambda: self.session.step_layer(-1)),
            ("Next channel", "]", lambda: self.feature_view.step_channel(1)),
            ("Previous channel", "[", lambda: self.feature_view.step_channel(-1)),
            ("Recompute attention and attributions", "F5", self.refresh_explanations),
        ):
            action = nav.addAction(text, slot)
            action.setShortcut(QKeySequence(keys))
        QShortcut(QKeySequence("Escape"), self, self.cancel_jobs)

    # --- requests ----------------------------------------------------------------
    def cancel_jobs(self) -> None:
        """Stop what the user is waiting on (not the gallery thumbnails)."""
        view = self.attribution_view
        cancelled = [m for m in view.current_methods() if m in view.pending()]
        self.runner.cancel(*INTERACTIVE_JOBS, *(f"attribution:{m}" for m in view.boxes))
        for m in cancelled:
            view.set_error(m, "cancelled: press F5 to compute it again")
            self._attribution_keys.pop(m, None)
        if self._attention_request is not None and self.attention_view.result is not None:
            r = self.attention_view.result
            if not (self._attention_request[2] and r.gradient is not None):
                self.notify("attention cancelled: the Attention dock shows an earlier image or class; press F5")
        self._attention_request = None
        if self.session.model is not None:
            self.model_view.show_model(self.session.model)

    def open_model(self, name: str, arch: str = "", trust: bool = False, layer: str | None = None) -> None:
        self._pending_layer = layer
        self.runner.submit("model", analysis.open_model, name, arch or None, trust, self._device_choice)

    def open_image(self, source) -> None:
        self.runner.submit("image", analysis.decode_image, source)

    def set_device(self, device: str) -> None:
        """Run on ``device`` from now on (the current model moves; later models load there)."""
        self._device_choice = device
        model = self.session.model
        if model is not None:
            self.runner.submit("device", analysis.move_to_device, model, device)

    def load_samples(self) -> None:
        from vizapp.inputs.images import lab_samples, sample_images

        samples = [*sample_images(), *lab_samples()]
        self.runner.submit("thumbnails", analysis.thumbnails, [(s.name, s.path) for s in samples])

    def start(self, model: str | None = None, image: str | None = None, layer: str | None = None,
              arch: str | None = None, trust: bool = False, device: str | None = None) -> None:
        """Open the default (or given) model and image, as at launch."""
        from vizapp.inputs.images import sample_images

        self.runner.submit("catalog", analysis.catalog)
        self.load_samples()
        self._device_choice = device
        self._keep_image_once = image is not None
        self.open_model(model or DEFAULT_MODEL, arch or "", trust, layer)
        if image is None:
            samples = {s.name: s.path for s in sample_images()}
            image = str(samples[DEFAULT_IMAGE]) if DEFAULT_IMAGE in samples else None
        if image is not None:
            self.open_image(image)

    # --- a model's own samples -------------------------------------------------------
    def _show_model_samples(self, model) -> None:
        """Put the model's own held-out samples first in the gallery, and show one of them
        unless the image on screen is one already (or the box is off, or the image was
        given at start)."""
        self._own_samples = [str(sample.path) for _, sample in model_samples(model)]
        self.image_view.set_model_samples(self._own_samples, model.title)
        keep, self._keep_image_once = self._keep_image_once, False
        if not keep:
            self._switch_to_own_sample()

    def _switch_to_own_sample(self) -> None:
        own = self._own_samples
        if not own or not self.image_view.switch_to_own.isChecked():
            return
        image = self.session.image
        if image is not None and image.path is not None and _same_file(image.path, own):
            return
        self.open_image(own[0])

    def _switch_to_own_toggled(self, on: bool) -> None:
        self.settings.setValue(SWITCH_TO_OWN_KEY, bool(on))
        self.settings.sync()
        if on:
            self._switch_to_own_sample()

    def _request_all(self) -> None:
        self._request_kernels()
        self._request_analysis()
        self._request_index()
        if self.attribution_view.use_selected_layer() and "gradcam" in self.attribution_view.current_methods():
            self._request_attributions()

    # --- attention and attributions ---------------------------------------------
    # Both docks cost a forward (and backward) pass per image, so they compute only while
    # on screen (``_stale`` marks what to catch up when raised). Each attribution method
    # is its own job kind and remembers what it was computed for (``_attribution_keys``),
    # so a layer step recomputes only Grad-CAM and ticking a method computes only it.
    def pick_class(self, index: int) -> None:
        """Explain class ``index`` (a click in the predictions): attributions and gradient rollout."""
        self.attribution_view.set_target(index)  # emits sigRequest when the class changes

    def refresh_explanations(self) -> None:
        """Compute the attention and attributions again (F5; after a cancel)."""
        self._attribution_keys.clear()
        self._attention_request = None
        self._request_explanations()

    def _explained_class_changed(self) -> None:
        """The attribution view's class picker is the class both docks explain."""
        if self.attention_view.gradient_wanted() and not _same_request(self._attention_request, self._attention_wanted()):
            self._request_attention()

    def _model_changed(self) -> None:
        self._stale = dict.fromkeys(self._stale, True)
        self._attribution_keys.clear()
        self._attention_request = None
        self.attribution_view.set_predictions([])
        self.attribution_view.set_untrained(not getattr(self.session.model, "trained", True))
        self._request_explanations()

    def _request_explanations(self) -> None:
        self._request_attention()
        self._request_attributions()

    def _catch_up(self, key: str) -> None:
        if self._stale[key]:
            (self._request_attention if key == "attention" else self._request_attributions)()

    def _on_screen(self, key: str) -> bool:
        """Whether a dock is showing (not closed, not a hidden tab).

        If not, it is marked stale and its running jobs are dropped: their results would
        belong to an image or model the dock no longer follows.
        """
        shown = self.docks[key].isVisible() and not self.docks[key].visibleRegion().isEmpty()
        self._stale[key] = not shown
        if not shown:
            if key == "attention":
                self.runner.cancel("attention")
                self._attention_request = None
            else:
                self.runner.cancel(*(f"attribution:{m}" for m in self.attribution_view.boxes))
                self._attribution_keys.clear()
        return shown

    def _attention_wanted(self) -> tuple:
        """What the attention dock should show: (model, image, gradient, class or None)."""
        s = self.session
        gradient = self.attention_view.gradient_wanted()
        return s.model, s.image, gradient, self.attribution_view.current_target() if gradient else None

    def _request_attention(self, gradient: bool | None = None) -> None:
        s = self.session
        if s.model is None or s.image is None or not self._on_screen("attention"):
            return
        wanted = self._attention_wanted()
        if gradient is not None:  # a retry without the gradient after the class was refused
            wanted = (*wanted[:2], gradient, None)
        self._attention_request = wanted
        self.runner.submit("attention", analysis.attention, s.model, s.image, wanted[3], wanted[2])

    def _attribution_key(self, method: str) -> tuple:
        s, view = self.session, self.attribution_view
        layer = s.layer if method == "gradcam" and view.use_selected_layer() else None
        return s.model, s.image, view.current_target(), layer

    def _request_attributions(self) -> None:
        """One job per ticked method whose panel does not already show its current key."""
        s = self.session
        view = self.attribution_view
        if s.model is None or s.image is None:
            view.set_message("Open a model and an image")
            return
        if s.model.scripted:
            view.set_message("A TorchScript model runs as a whole: attributions need the eager model "
                             "(open its state dict with an architecture)")
            return
        if not self._on_screen("attribution"):
            return
        methods = view.current_methods()
        for m in view.boxes:
            if m not in methods:
                self.runner.cancel(f"attribution:{m}")
                self._attribution_keys.pop(m, None)
        for method in methods:
            key = self._attribution_key(method)
            last = self._attribution_keys.get(method)
            if _same_request(last, key):
                continue  # shown, or on its way
            self._attribution_keys[method] = key
            view.set_pending(method)
            self.runner.submit(f"attribution:{method}", analysis.attribution, s.model, s.image, method, key[2], key[3])

    # --- collections: top patches ----------------------------------------------
    def set_collection(self, spec: str) -> None:
        """Use a folder, ``samples`` or a torchvision set as the collection; indexes the layer."""
        self._preload_projections()
        self.runner.submit("collection", analysis.open_collection, spec)

    def _preload_projections(self) -> None:
        """Import the projection libraries (and compile UMAP) on a side thread, once.

        Not a runner job: it takes seconds and must not hold up indexing in the queue.
        """
        if getattr(self, "_preloading", None) is None:
            import threading

            from vizapp.collection.projection import preload

            self._preloading = threading.Thread(target=preload, name="vizapp-preload", daemon=True)
            self._preloading.start()

    def _choose_collection(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose an image folder (sub-folders are labels)")
        if folder:
            self.set_collection(folder)

    def _request_index(self) -> None:
        s = self.session
        if s.collection is None:
            self.patches_view.set_message(
                "Choose a collection (a folder of images, or the samples) to see each channel's top patches")
            return
        if s.model is None or not s.layer:
            return
        if s.model.scripted:
            self.patches_view.set_message("A TorchScript model cannot be indexed; open its state dict with an architecture")
            return
        self.patches_view.set_status(f"indexing {s.collection.name} ({len(s.collection)} images) for {s.layer}…")
        self.runner.cancel("patches", "overview")
        self.runner.submit("index", analysis.index_layer, s.model, s.collection, s.layer, TOP_K)

    def _request_patches(self, overview: bool = False) -> None:
        from vizapp.collection import patches

        s = self.session
        if s.index is None or s.layer not in s.index.layers:
            return
        channel = s.channel if s.channel is not None else 0
        if channel < s.index.channels(s.layer):
            self.runner.submit("patches", patches.load_patch_grid, s.index, s.layer, channel, s.collection)
        if overview:
            self.runner.submit("overview", patches.load_layer_overview, s.index, s.layer, s.collection)

    # --- collections: embedding ------------------------------------------------
    def _request_embedding(self) -> None:
        s = self.session
        if s.index is None or s.model is None:
            return
        self.runner.submit("embedding", analysis.embed_index, s.model, s.index, self.embedding_view.current_method())

    def open_collection_image(self, key: str) -> None:
        """Open a collection image by key: a file path, or a dataset item of the collection."""
        s = self.session
        if s.collection is not None and s.collection.kind == "torchvision":
            self.runner.submit("image", analysis.open_collection_item, s.collection, key)
        else:
            self.open_image(key)

    def _hover_thumbnail(self, i: int) -> None:
        e = self.embedding_view.embedding
        if e is not None and 0 <= i < len(e):
            self.runner.submit("hover", lambda progress, cancel: (i, analysis.thumbnail(self.session.collection, e.paths[i])))

    def _request_neighbours(self, i: int) -> None:
        e = self.embedding_view.embedding
        if e is not None and len(e) > 1:
            self.runner.submit("neighbours", analysis.neighbours, e, i, self.session.collection)

    def _channel_changed(self, channel: int | None) -> None:
        self.patches_view.select_channel(channel)
        self._request_patches()

    def open_patch(self, patch) -> None:
        """Open a top patch's image in every view, with the box its unit sees drawn on it."""
        self._pending_box = (patch.image, patch.box)
        self.open_collection_image(patch.image)

    def _request_analysis(self) -> None:
        s = self.session
        if s.model is None or s.image is None:
            return
        self.runner.submit("analysis", analysis.analyse_image, s.model, s.image, s.layer,
                           self.feature_view.current_sort(), self.feature_view.current_norm(), 10)

    def _request_kernels(self) -> None:
        s = self.session
        if s.model is None:
            return
        if s.model.scripted:
            self.kernels_view.set_kernels(None, "Kernels: a TorchScript model's layers cannot be inspected; "
                                                "open its state dict with an architecture")
            return
        self.runner.submit("kernels", analysis.analyse_kernels, s.model, s.layer,
                           self.kernels_view.current_mode(), self.kernels_view.current_norm())

    # --- results -----------------------------------------------------------------
    def _job_finished(self, kind: str, result) -> None:
        s = self.session
        if kind == "model":
            self.ready = False
            self._show_model_samples(result.model)  # may ask for one of them: before the analysis is asked
            s.set_model(result.model, result.layers, self._pending_layer)  # its layer event re-requests
            for note in result.notes:
                self.notify(note)
            if not result.model.trained:
                self.notify(f"{result.model.title} is UNTRAINED: its pictures show random weights")
        elif kind == "catalog":
            self.model_view.set_catalog(*result)
            self.attention_view.set_suggestion(suggestion_text("vit", result[0]))
            if s.model is not None:
                self.model_view.show_model(s.model)
        elif kind == "image":
            s.set_image(result)
            box = self._pending_box
            self._pending_box = None
            if box is not None and box[0] in (result.path, result.name):
                self.image_view.show_box(box[1])
        elif kind == "collection":
            s.set_collection(result)
        elif kind == "index":
            if s.model is None or result.manifest["model"]["source"] != s.model.source or s.layer not in result.layers:
                return
            s.set_index(result)
            m = result.manifest
            self.patches_view.set_status(
                f"{m['collection']['name']}: {len(result.paths) - len(result.skipped)} images"
                + (f" ({len(result.skipped)} unreadable, skipped)" if result.skipped else "")
                + f" · {s.model.title} · {s.layer} ({m['layers'][s.layer].get('field', '')} receptive fields)")
        elif kind == "patches":
            if result.layer == s.layer:
                self.patches_view.set_grid(result)
                for note in result.notes:
                    self.notify(note)
        elif kind == "embedding":
            m = s.index.manifest if s.index is not None else {}
            self.embedding_view.set_embedding(
                result, title=f"{m.get('collection', {}).get('name', '')} · {s.model.title} · features: "
                              f"{m.get('feature_layer', '')} input" if m else "")
        elif kind == "hover":
            self.embedding_view.show_thumbnail(*result)
        elif kind == "neighbours":
            self.embedding_view.set_neighbours(*result)
        elif kind == "overview":
            if result.layer == s.layer:
                self.patches_view.set_overview(result)
                self.patches_view.select_channel(s.channel)
        elif kind == "analysis":
            if s.model is None or result.layer != s.layer:
                return
            self.predictions_view.set_predictions(result.predictions)
            self.attribution_view.set_predictions(result.predictions)
            self.image_view.show_model_input(result.display)
            self.feature_view.set_analysis(result)
            for note in result.notes:
                self.notify(note)
            self._sync_device()
            self.ready = True
        elif kind == "attention":
            if s.model is not None:
                self.attention_view.set_result(result)
        elif kind.startswith("attribution:"):
            if s.model is not None:
                self.attribution_view.set_attribution(result)
        elif kind == "kernels":
            self.kernels_view.set_kernels(result)
        elif kind == "thumbnails":
            self.image_view.set_gallery(result)
        elif kind == "device":
            self._sync_device()
            if result:
                self.notify(result)
            self._request_analysis()

    def _sync_device(self) -> None:
        """Show where the model really is (after a move, or an out-of-memory fallback)."""
        if self.session.model is not None:
            self.session.set_device(self.session.model.device)
            self.model_view.show_device(self.session.model.device)

    def _job_failed(self, kind: str, message: str) -> None:
        if kind.startswith("training"):
            return  # the training lab's run and previews: the panel shows (and notifies) their errors
        # Attention and attribution problems (a CNN has no attention, a layer without
        # a gradient) belong in their own dock, which is on screen when they run.
        if kind == "attention":
            asked = self._attention_request
            if asked is not None and asked[2] and self.attention_view.result is not None:
                # The class was refused (out of range): keep the attention, drop the gradient.
                self.notify(f"gradient-weighted rollout: {message}", error=True)
                self._request_attention(gradient=False)
            else:
                self.attention_view.set_message(message)
            return
        if kind.startswith("attribution:"):
            self.attribution_view.set_error(kind.split(":", 1)[1], message)
            return
        self.notify(message, error=True)
        if kind == "model":
            self._keep_image_once = False
        if self.session.model is not None and kind in ("model", "device"):
            # The model that failed to open (or move) is not the one on screen.
            self.model_view.show_model(self.session.model)
            self._sync_device()

    def _job_progress(self, _kind: str, done: int, total: int, text: str) -> None:
        if _kind.startswith("training"):
            return  # the training lab shows its own progress
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
        notification_manager.notify(text, Severity.ERROR if error else Severity.INFO)

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
    def export_view(self, key: str | None, path: str | Path) -> Path:
        """Save one dock's view (``key``) or the whole window (``None``) as a PNG."""
        widget: QWidget = self if key is None else self.docks[key].widget()
        if isinstance(widget, QScrollArea):
            widget = widget.widget()
        return export_png(widget, path, scale=1.0 if key is None else 2.0)

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

"""The probing controller: the model and its device, the catalog, a layer's analysis, the kernels.

Owns ``model``, ``device``, ``catalog``, ``analysis`` and ``kernels``; the user waits on
the first three and the analysis. A new layer or image asks for the analysis (predictions,
feature maps, the model's-eye input) and a new layer or kernel option for the kernels.
"""

from __future__ import annotations

from vizapp import analysis
from widgets.controllers import Controller, notify

__all__ = ["ProbingController"]

#: Top-k classes the analysis keeps.
TOP_CLASSES = 10


def _already_open(opened, *, progress=None, cancel=None):
    """The ``model`` job of :meth:`ProbingController.reopen`: the model is loaded already."""
    return opened


class ProbingController(Controller):
    """The Model, Feature maps, Kernels and Predictions docks' jobs.

    ``inputs`` (the :class:`~widgets.controllers.inputs.InputsController`) hears of a model
    before the session shows it, so a model's own sample is asked for before its analysis.
    :attr:`ready` is true once a model, an image and their analysis are on screen.
    """

    kinds = ("model", "device", "catalog", "analysis", "kernels")
    interactive = ("model", "device", "analysis")

    def __init__(self, session, runner, views, on_screen, *, inputs) -> None:
        super().__init__(session, runner, views, on_screen)
        self.inputs = inputs
        self.ready = False
        self._ready_before = False  # what ready was when a model open was asked for
        self.device_choice: str | None = None  # where models load (None: the default device)
        self._pending_layer: str | None = None
        self.requested: tuple[str, str] = ("", "")  # (name or path, arch) of the model being opened
        self.opened_as: tuple[str, str] = ("", "")  # ... and of the model on screen (what a scene saves)
        views["model"].sigModelRequested.connect(self.open_model)
        views["model"].sigDeviceChanged.connect(self.set_device)
        views["kernels"].sigOptionsChanged.connect(lambda *_: self.request_kernels())
        session.events.layer.connect(lambda _name: self._layer_changed())
        session.events.image.connect(lambda _image: self.request_analysis())

    # --- requests ----------------------------------------------------------------
    def open_model(self, name: str, arch: str = "", trust: bool = False, layer: str | None = None) -> None:
        # Not ready until this model's analysis is on screen; a failed or cancelled open
        # leaves the model on screen as it was.
        self._ready_before, self.ready = self.ready or self._ready_before, False
        self._pending_layer = layer
        self.requested = (name, arch or "")
        self.submit("model", analysis.open_model, name, arch or None, trust, self.device_choice)

    def reopen(self, opened, name: str, arch: str = "", layer: str | None = None) -> None:
        """Show ``opened`` (an ``analysis.OpenedModel`` loaded before: the lecture's cache) as
        :meth:`open_model` would show a freshly loaded ``name``."""
        self._ready_before, self.ready = self.ready or self._ready_before, False
        self._pending_layer = layer
        self.requested = (name, arch or "")
        self.submit("model", _already_open, opened)

    def set_device(self, device: str) -> None:
        """Run on ``device`` from now on (the current model moves; later models load there)."""
        self.device_choice = device
        model = self.session.model
        if model is not None:
            self.submit("device", analysis.move_to_device, model, device)

    def load_catalog(self) -> None:
        """Which models are usable offline, and the devices (checking caches takes seconds)."""
        self.submit("catalog", analysis.catalog)

    def _layer_changed(self) -> None:
        self.request_kernels()
        self.request_analysis()

    def request_analysis(self) -> None:
        s, view = self.session, self.views["features"]
        if s.model is None or s.image is None:
            return
        self.submit("analysis", analysis.analyse_image, s.model, s.image, s.layer,
                    view.current_sort(), view.current_norm(), TOP_CLASSES)

    def request_kernels(self) -> None:
        s, view = self.session, self.views["kernels"]
        if s.model is None:
            return
        if s.model.scripted:
            view.set_kernels(None, "Kernels: a TorchScript model's layers cannot be inspected; "
                                   "open its state dict with an architecture")
            return
        self.submit("kernels", analysis.analyse_kernels, s.model, s.layer, view.current_mode(), view.current_norm())

    def cancel(self) -> None:
        super().cancel()
        if self.session.model is not None:  # the picker goes back to the model on screen
            self.views["model"].set_model(self.session.model)
            self.ready = self.ready or self._ready_before

    # --- results -----------------------------------------------------------------
    def finished(self, kind: str, result) -> None:
        s, views = self.session, self.views
        if kind == "model":
            self.ready = self._ready_before = False
            self.opened_as = self.requested
            self.inputs.model_opened(result.model)  # may ask for one of its samples: before the analysis
            s.set_model(result.model, result.layers, self._pending_layer)  # its layer event re-requests
            for note in result.notes:
                notify(note)
            if not result.model.trained:
                notify(f"{result.model.title} is UNTRAINED: its pictures show random weights")
        elif kind == "catalog":
            s.set_catalog(*result)
        elif kind == "analysis":
            if s.model is None or result.layer != s.layer:
                return
            s.set_predictions(result.predictions)  # the Predictions and Attribution docks follow
            views["image"].set_model_input(result.display)
            views["features"].set_analysis(result)
            for note in result.notes:
                notify(note)
            self._sync_device()
            self.ready = True
        elif kind == "kernels":
            views["kernels"].set_kernels(result)
        elif kind == "device":
            self._sync_device()
            if result:
                notify(result)
            self.request_analysis()

    def failed(self, kind: str, message: str) -> None:
        notify(message, error=True)
        if kind == "model":
            self.inputs.keep_image_once = False
            self.ready = self.session.model is not None and self._ready_before
        if self.session.model is not None and kind in ("model", "device"):
            # The model that failed to open (or move) is not the one on screen.
            self.views["model"].set_model(self.session.model)
            self._sync_device()

    def _sync_device(self) -> None:
        """Show where the model really is (after a move, or an out-of-memory fallback)."""
        model = self.session.model
        if model is not None:
            self.session.set_device(model.device)
            self.views["model"].set_device(model.device)

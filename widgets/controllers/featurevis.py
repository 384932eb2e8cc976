"""The feature-vis controller: the Feature visualisation dock's jobs.

Owns ``featurevis`` (one visualisation, a generator job: ``vizapp.analysis.feature_vis`` yields a
``Step`` per optimisation step, a preview every few, and returns the ``Visualisation``),
``featurevis:overview`` (every channel of the layer, ``vizapp.explain.featurevis_overview.overview``,
a generator job of ``(channel, image)``, cached on disk) and ``featurevis:patches`` (the channel's
top-9 patches from the collection's index, ``vizapp.collection.patches.load_patch_grid``). All run
only while the dock is on screen: a run or an overview whose dock goes off screen is cancelled at
its next record (an overview keeps what it finished on disk), and the patches catch up when the dock
is shown. The objective follows the session (``widgets/featurevis_view.py``). :meth:`run` and
:meth:`cancel` are public (the benchmark drives them).
"""

from __future__ import annotations

from vizapp import analysis
from widgets.controllers import Controller

__all__ = ["FeatureVisController", "KEY", "layer_channels"]

KEY = "featurevis"
RUN, OVERVIEW, PATCHES = "featurevis", "featurevis:overview", "featurevis:patches"


def layer_channels(session, layer: str | None) -> int:
    """How many channels ``layer``'s output has as maps (the layer table's shape through
    ``vizapp.probing.mosaic.as_channel_maps``); 0 when unknown."""
    import numpy as np

    from vizapp.probing.mosaic import as_channel_maps

    info = next((i for i in session.layers if i.name == layer), None)
    if info is None or not info.shape:
        return 0
    return int(as_channel_maps(np.broadcast_to(np.float32(0), tuple(info.shape))).shape[0])


def _stream(fn):
    """``fn`` (a generator job taking ``progress`` and ``cancel``) as the runner's stream job,
    which passes a ``control`` as well."""

    def job(*args, progress, cancel, control=None, **kwargs):
        return (yield from fn(*args, progress=progress, cancel=cancel, **kwargs))

    return job


class FeatureVisController(Controller):
    """The Feature visualisation dock's jobs; ``collection`` (the collection controller) builds an
    index when the dock asks for one, and opens a clicked patch's image."""

    kinds = (RUN, OVERVIEW, PATCHES)
    interactive = (RUN, OVERVIEW, PATCHES)

    def __init__(self, session, runner, views, on_screen, *, collection=None) -> None:
        super().__init__(session, runner, views, on_screen)
        self.view = view = views[KEY]
        self.collection = collection
        self._patches_asked: tuple | None = None  # (index, layer, channel) on screen or on its way
        self._running: dict[str, object] = {}  # the run's and the overview's settings, while they go
        session.mark_stale(KEY)
        view.sigRunRequested.connect(self.run)
        view.sigCancelRequested.connect(self.cancel)
        view.sigOverviewRequested.connect(self.run_overview)
        view.sigIndexRequested.connect(self.build_index)
        view.sigChannelChanged.connect(session.select_channel)
        view.form.sigChanged.connect(self._form_changed)
        if collection is not None:
            view.sigPatchRequested.connect(collection.inputs.open_patch)
        runner.sigRecord.connect(self._record)
        for event in (session.events.layer, session.events.channel, session.events.index,
                      session.events.collection):
            event.connect(lambda _v: self.request_patches())
        session.events.model.connect(lambda _m: self._model_changed())

    # --- the dock on screen ----------------------------------------------------------------------
    def dock_shown(self, key: str) -> None:
        if self.session.is_stale(key):
            self.session.mark_stale(key, False)
            self.request_patches()

    def dock_hidden(self, key: str) -> None:
        """A run or an overview stops when its dock leaves the screen (it would hold the shared
        lane for a whole group of channels before its next record)."""
        if key == KEY and (RUN in self._running or OVERVIEW in self._running) and not self.on_screen(KEY):
            self.cancel("stopped when the dock was hidden")  # (on_screen marked it stale: caught up when shown)

    def _model_changed(self) -> None:
        self.runner.cancel(*self.kinds)
        self._running, self._patches_asked = {}, None
        self.request_patches()

    def _form_changed(self) -> None:
        if self.view.showing_patches():
            self.request_patches()
        else:
            self._patches_asked = None

    # --- the run ---------------------------------------------------------------------------------
    def _refused(self) -> str | None:
        s = self.session
        if s.model is None:
            return "Open a model first"
        if s.model.scripted:
            return "A TorchScript model runs as a whole: open its state dict with an architecture to visualise its units"
        return None

    def run(self) -> bool:
        """Start a visualisation with the dock's settings (the image on screen for DeepDream);
        False when there is nothing to run (the dock says why)."""
        s, view = self.session, self.view
        problem = self._refused()
        settings = view.settings() if problem is None else None
        if problem is None and settings.objective == "dream" and s.image is None:
            problem = "DeepDream works on an image: open one first"
        if problem is None and settings.objective != "class" and not settings.layer:
            problem = "Select a layer (Model dock) to visualise its channels"
        if problem is not None:
            view.set_message(problem)
            return False
        view.set_message("")
        image = s.image if settings.objective == "dream" else None
        view.start_run(settings.steps)
        self._running[RUN] = settings
        self.runner.stream(RUN, _stream(analysis.feature_vis), s.model, settings, image)
        return True

    def run_overview(self) -> bool:
        """Compute (or read from the cache) every channel's visualisation of the selected layer."""
        from vizapp.explain.featurevis_overview import overview

        s, view = self.session, self.view
        problem = self._refused() or (None if s.layer else "Select a layer (Model dock) first")
        if problem is not None:
            view.overview_stopped(problem)
            return False
        settings = view.overview_settings()
        view.start_overview(s.layer, layer_channels(s, s.layer))
        self._running[OVERVIEW] = settings
        self.runner.stream(OVERVIEW, _stream(overview), s.model, s.layer, settings)
        return True

    def cancel(self, why: str = "cancelled") -> None:
        """Stop the run, the overview and the patches (Escape, the window's Cancel, the dock's)."""
        running = self._running
        self.runner.cancel(*self.kinds)
        self._running, self._patches_asked = {}, None
        if RUN in running:
            self.view.set_stopped(f"{why} after {len(self.view.trace)} steps: Run starts again")
        if OVERVIEW in running:
            self.view.overview_stopped(f"{why}: the {len(self.view.overview_tiles)} channels done are kept; "
                                       "Compute overview goes on from there")

    def _record(self, kind: str, record) -> None:
        if kind not in self._running:
            return
        if not self.on_screen(KEY):  # off screen: no job runs for this dock
            self.cancel("stopped when the dock was hidden")
            return
        if kind == RUN:
            self.view.set_step(record)
        else:
            self.view.set_overview_tile(*record)

    # --- the top patches -------------------------------------------------------------------------
    def request_patches(self) -> None:
        """The selected channel's top-9 patches from the session's index, or how to build one."""
        s, view = self.session, self.view
        if s.model is None or not view.showing_patches():
            return
        if not self.on_screen(KEY):
            self._patches_asked = None
            return
        layer, channel = s.layer, s.channel if s.channel is not None else 0
        if s.index is None or layer not in s.index.layers:
            self._patches_asked = None
            if s.collection is None:
                view.set_no_index("The channel's top dataset patches come from a collection indexed at this layer "
                                  "(the Top patches dock's index)", "Index the sample photographs")
            elif not self.runner.idle("collection", "index"):
                view.set_no_index(f"Indexing {s.collection.name} at {layer}…", None)
            else:
                view.set_no_index(f"{s.collection.name} is not indexed at {layer}", f"Index {s.collection.name}")
            return
        if channel >= s.index.channels(layer):
            return
        key = (s.index, layer, channel)
        asked = self._patches_asked
        if asked is not None and asked[0] is key[0] and asked[1:] == key[1:]:
            return
        self._patches_asked = key
        from vizapp.collection import patches

        self.submit(PATCHES, patches.load_patch_grid, s.index, layer, channel, s.collection)

    def build_index(self) -> None:
        """Index the collection at the selected layer (the sample photographs when none is chosen)."""
        if self.collection is None:
            return
        if self.session.collection is None:
            self.collection.set_collection("samples")
        else:
            self.collection.request_index()
        self.view.set_no_index("Indexing…", None)

    # --- results -----------------------------------------------------------------------------------
    def finished(self, kind: str, result) -> None:
        s = self.session
        if s.model is None:
            return
        if kind == RUN:
            self._running.pop(RUN, None)
            if result is not None:
                self.view.set_result(result)
        elif kind == OVERVIEW:
            self._running.pop(OVERVIEW, None)
            if result is not None:
                self.view.set_overview(result)
        elif kind == PATCHES:
            channel = s.channel if s.channel is not None else 0
            if result.layer == s.layer and result.channel == channel and self.view.showing_patches():
                self.view.set_patches(result)

    def failed(self, kind: str, message: str) -> None:
        # A refused objective (a layer without channels, a class out of range) is said in the dock.
        if kind == RUN:
            self._running.pop(RUN, None)
            self.view.set_message(message)
            self.view.set_stopped("")
        elif kind == OVERVIEW:
            self._running.pop(OVERVIEW, None)
            self.view.overview_stopped(message)
        else:
            self._patches_asked = None
            self.view.set_no_index(message, None)

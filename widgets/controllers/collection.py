"""The collection controller: a collection, its index per layer, top patches, the embedding.

Owns ``collection``, ``index``, ``patches``, ``overview``, ``embedding``, ``neighbours``
(all waited on) and ``hover`` (a thumbnail under the mouse). A new collection or layer
indexes the layer (one cached index per layer); a new index asks for the layer overview,
the selected channel's patches and the embedding; a new channel for its patches.
``projections`` (the top patches' deconvnet / guided backprop projections, a pass per
patch) runs after each grid while the Top patches dock shows and a projection is chosen,
and catches up when the dock comes on screen.
"""

from __future__ import annotations

from vizapp import analysis
from widgets.controllers import Controller, notify

__all__ = ["CollectionController", "TOP_K"]

#: Top patches kept per channel in the GUI's indexes.
TOP_K = 9


class CollectionController(Controller):
    """The Top patches and Embedding docks' jobs; images open through ``inputs``."""

    kinds = ("collection", "index", "patches", "overview", "embedding", "hover", "neighbours", "preload", "projections")
    interactive = ("collection", "index", "patches", "overview", "embedding", "neighbours", "projections")

    def __init__(self, session, runner, views, on_screen, *, inputs) -> None:
        super().__init__(session, runner, views, on_screen)
        self.inputs = inputs
        self._preloaded = False
        patches, embedding = self.patches_view, self.embedding_view = views["patches"], views["embedding"]
        patches.sigCollectionRequested.connect(self.set_collection)
        patches.sigIndexRequested.connect(self.request_index)
        patches.sigPatchRequested.connect(inputs.open_patch)
        patches.sigProjectionChanged.connect(lambda _method: self.request_projections())
        embedding.sigMethodChanged.connect(lambda _method: self.request_embedding())
        embedding.sigImageRequested.connect(inputs.open_collection_image)
        embedding.sigThumbnailRequested.connect(self.request_thumbnail)
        embedding.sigNeighboursRequested.connect(self.request_neighbours)
        session.events.layer.connect(lambda _name: self.request_index())
        session.events.collection.connect(lambda _c: self.request_index())
        session.events.index.connect(lambda _i: self.request_patches(overview=True))
        session.events.index.connect(lambda _i: self.request_embedding())
        session.events.channel.connect(lambda _c: self.request_patches())

    # --- requests ----------------------------------------------------------------
    def set_collection(self, spec: str) -> None:
        """Use a folder, ``samples`` or a torchvision set as the collection; indexes the layer."""
        self._preload_projections()
        self.submit("collection", analysis.open_collection, spec)

    def _preload_projections(self) -> None:
        """Import the projection libraries (and compile UMAP) once, on a lane of their own
        (``vizapp-preload``): it takes seconds and must not hold up indexing, nor show as
        progress the user waits on."""
        if not self._preloaded:
            from vizapp.collection.projection import preload

            self._preloaded = True
            self.runner.set_lane("preload", "preload")
            self.submit("preload", preload)

    def request_index(self) -> None:
        s, view = self.session, self.patches_view
        if s.collection is None:
            view.set_message("Choose a collection (a folder of images, or the samples) to see each channel's top patches")
            return
        if s.model is None or not s.layer:
            return
        if s.model.scripted:
            view.set_message("A TorchScript model cannot be indexed; open its state dict with an architecture")
            return
        view.set_status(f"indexing {s.collection.name} ({len(s.collection)} images) for {s.layer}…")
        self.runner.cancel("patches", "overview")
        self.submit("index", analysis.index_layer, s.model, s.collection, s.layer, TOP_K)

    def request_patches(self, overview: bool = False) -> None:
        from vizapp.collection import patches

        s = self.session
        if s.index is None or s.layer not in s.index.layers:
            return
        channel = s.channel if s.channel is not None else 0
        if channel < s.index.channels(s.layer):
            self.submit("patches", patches.load_patch_grid, s.index, s.layer, channel, s.collection)
        if overview:
            self.submit("overview", patches.load_layer_overview, s.index, s.layer, s.collection)

    def request_projections(self) -> None:
        """The shown grid's projections, if one is chosen and the dock is on screen (else stale)."""
        s, view = self.session, self.patches_view
        grid, method = view.grid, view.current_projection()
        if method == "none" or grid is None or not grid.patches or s.index is None or s.model is None:
            self.runner.cancel("projections")
            self.session.mark_stale("patches", False)
            return
        if not self.on_screen("patches"):
            self.runner.cancel("projections")
            return
        self.submit("projections", analysis.top_projections, s.model, s.collection, s.index, grid.layer,
                    grid.channel, method)

    def dock_shown(self, key: str) -> None:
        if key == "patches" and self.session.is_stale("patches"):
            self.request_projections()

    def request_embedding(self) -> None:
        s = self.session
        if s.index is None or s.model is None:
            return
        self.submit("embedding", analysis.embed_index, s.model, s.index, self.embedding_view.current_method())

    def request_thumbnail(self, i: int) -> None:
        e, collection = self.embedding_view.embedding, self.session.collection
        if e is not None and 0 <= i < len(e):
            self.submit("hover", lambda progress, cancel: (i, analysis.thumbnail(collection, e.paths[i])))

    def request_neighbours(self, i: int) -> None:
        e = self.embedding_view.embedding
        if e is not None and len(e) > 1:
            self.submit("neighbours", analysis.neighbours, e, i, self.session.collection)

    # --- results -----------------------------------------------------------------
    def finished(self, kind: str, result) -> None:
        s = self.session
        if kind == "collection":
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
                    notify(note)
                self.request_projections()
        elif kind == "overview":
            if result.layer == s.layer:
                self.patches_view.set_overview(result)
                self.patches_view.set_channel(s.channel)
        elif kind == "embedding":
            m = s.index.manifest if s.index is not None else {}
            self.embedding_view.set_embedding(
                result, title=f"{m.get('collection', {}).get('name', '')} · {s.model.title} · features: "
                              f"{m.get('feature_layer', '')} input" if m else "")
        elif kind == "projections":
            self.patches_view.set_projections(result)
        elif kind == "hover":
            self.embedding_view.set_thumbnail(*result)
        elif kind == "neighbours":
            self.embedding_view.set_neighbours(*result)

"""The session: what the user is looking at (model, image, layer, channel, explained class).

Qt-free state with events; the main window wraps one and every dock subscribes.
Setting a value emits its event only when the value changes. Besides what the user
chose, the session keeps what several views share: the image's predictions, the model
catalog, and which docks missed an update while they were off screen (``stale``).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from vizapp.core.events import Event
from vizapp.core.notifications import notification_manager

__all__ = ["Session", "ImageRecord", "LAB_SAMPLE_NAMES", "model_samples"]

#: The training sets whose held-out samples ship in ``resources/samples``, and how a
#: sample is named after its class: ``shapes`` -> ``circle.png``, ``digits`` -> ``digit3.png``.
LAB_SAMPLE_NAMES = {"shapes": "{}", "digits": "digit{}"}


@dataclass(frozen=True)
class ImageRecord:
    """An image the user opened: the decoded RGB pixels and where they came from."""

    pixels: np.ndarray  # H x W x 3 uint8
    name: str
    path: str | None = None

    def to_pil(self):
        from PIL import Image

        return Image.fromarray(self.pixels, "RGB")


def model_samples(model) -> list[tuple[str, object]]:
    """The held-out samples that belong to ``model``: ``[(class name, SampleImage)]`` in class order.

    A checkpoint's card says what it was trained on (``data.dataset``); a model trained
    on a set with samples in ``resources/samples`` (the shipped ``tinyvgg_shapes`` and
    ``vit_digits``, or the user's own run on shapes or digits) gets one sample per
    class it knows. Any other model, or an unreadable card, has none.
    """
    from models import is_checkpoint, read_card
    from vizapp.inputs.images import lab_samples

    source = getattr(model, "source", "") or ""
    try:
        if not source or not is_checkpoint(source):
            return []
        card = read_card(source)
    except (OSError, ValueError):  # vizapp.core.errors.UserError is a ValueError: a bad card has no samples
        return []
    data = card.get("data") if isinstance(card.get("data"), dict) else {}
    pattern = LAB_SAMPLE_NAMES.get(str(data.get("dataset", "")))
    classes = list(getattr(model, "class_names", None) or card.get("classes") or [])
    if pattern is None or not classes:
        return []
    by_name = {sample.name: sample for sample in lab_samples()}
    found = [(str(c), by_name.get(pattern.format(c))) for c in classes]
    return [(c, sample) for c, sample in found if sample is not None]


class Session:
    """State shared by all views.

    Attributes
    ----------
    model : LoadedModel or None
    layers : list of LayerInfo
        The layer table of ``model``.
    image : ImageRecord or None
    layer : str or None
        The selected ``named_modules()`` name.
    channel : int or None
        The selected channel of ``layer``.
    device : str
    collection : ImageCollection or None
        The image collection for the collection views (top patches, embedding).
    index : Index or None
        The collection's index for the current model and layer.
    target : int or None
        The class the explanation docks explain (``None``: the predicted class).
    predictions : list of Prediction
        The top-k of the current model on the current image, best first.
    catalog : tuple or None
        ``(entries, devices)`` from the engine's ``catalog`` job: which models are
        usable offline, and the devices.
    stale : set of str
        The docks (by key) whose results no longer match the session: they were off
        screen when it changed and catch up when they are shown.
    events : namespace of Event
        ``model``, ``image``, ``layer``, ``channel``, ``device``, ``collection``,
        ``index``, ``target``, ``predictions``, ``catalog``, ``stale``. Messages for the
        user go through :data:`vizapp.core.notifications.notification_manager` (:meth:`notify`).
    """

    def __init__(self) -> None:
        self.model = None
        self.layers: list = []
        self.image: ImageRecord | None = None
        self.layer: str | None = None
        self.channel: int | None = None
        self.device = "cpu"
        self.collection = None
        self.index = None
        self.target: int | None = None
        self.predictions: list = []
        self.catalog: tuple | None = None
        self.stale: set[str] = set()
        self.events = SimpleNamespace(
            model=Event("model"), image=Event("image"), layer=Event("layer"),
            channel=Event("channel"), device=Event("device"),
            collection=Event("collection"), index=Event("index"),
            target=Event("target"), predictions=Event("predictions"),
            catalog=Event("catalog"), stale=Event("stale"),
        )

    # --- setters -------------------------------------------------------------
    def set_model(self, model, layers: list, layer: str | None = None) -> None:
        """Show ``model``; its predictions are unknown and the explained class goes back to the
        predicted one (no ``target`` event: the ``model`` event says it)."""
        self.model, self.layers = model, list(layers)
        self.index = None  # an index belongs to one model
        self.device = getattr(model, "device", self.device)
        self.layer = layer if layer in self.layer_names() else self.default_layer()
        self.channel = None
        self.predictions, self.target = [], None  # another model's classes: back to the predicted one
        self.events.model.emit(model)
        self.events.layer.emit(self.layer)

    def set_image(self, image: ImageRecord) -> None:
        self.image = image
        self.events.image.emit(image)

    def select_layer(self, name: str | None) -> None:
        if name == self.layer:
            return
        if name is not None and name not in self.layer_names():
            raise ValueError(f"layer '{name}' is not in the model")
        self.layer, self.channel = name, None
        self.events.layer.emit(name)

    def select_channel(self, channel: int | None) -> None:
        if channel != self.channel:
            self.channel = channel
            self.events.channel.emit(channel)

    def set_device(self, device: str) -> None:
        if device != self.device:
            self.device = device
            self.events.device.emit(device)

    def set_collection(self, collection) -> None:
        self.collection, self.index = collection, None
        self.events.collection.emit(collection)

    def set_index(self, index) -> None:
        self.index = index
        self.events.index.emit(index)

    def set_target(self, index: int | None) -> None:
        """Explain class ``index`` (``None``: the predicted class)."""
        if index is not None:
            index = int(index)
            if index < 0:
                raise ValueError(f"class index {index} is negative; give 0 or more")
        if index != self.target:
            self.target = index
            self.events.target.emit(index)

    def set_predictions(self, predictions: list) -> None:
        """The current image's top-k (``Prediction(label, index, prob)``, best first).

        None (a model without a classifier head) goes back to the predicted class, as a new
        model does; like :meth:`set_model`, that emits no ``target`` event (views showing the
        class reset it from the predictions).
        """
        self.predictions = list(predictions)
        if not self.predictions:
            self.target = None
        self.events.predictions.emit(self.predictions)

    def set_catalog(self, entries: list, devices: list[str]) -> None:
        """``[(spec, usable offline)]`` and the devices, from the engine's ``catalog`` job."""
        self.catalog = (list(entries), list(devices))
        self.events.catalog.emit(self.catalog)

    def mark_stale(self, key: str, stale: bool = True) -> None:
        """Say whether dock ``key`` missed an update (it catches up when shown)."""
        before = key in self.stale
        (self.stale.add if stale else self.stale.discard)(key)
        if stale != before:
            self.events.stale.emit(key)

    def is_stale(self, key: str) -> bool:
        return key in self.stale

    def notify(self, text: str) -> None:
        """An information message for the user, through the one notifier."""
        notification_manager.info(text)

    # --- derived -------------------------------------------------------------
    def layer_names(self) -> list[str]:
        return [r.name for r in self.layers if r.name]

    def steppable_layers(self) -> list[str]:
        """Layers whose output shows as maps (conv maps or ViT tokens), in the layer tree's order.

        The order is the tree the Model dock shows (``named_modules()``: a block before
        its insides, parents before children), so stepping never jumps back up the
        tree. No-ops and pass-through containers (a ``Sequential`` repeats its last
        child's output) are skipped.
        """
        from vizapp.probing.layers import PASS_THROUGH
        from vizapp.probing.mosaic import has_maps

        return [r.name for r in self.layers if r.name and r.type not in PASS_THROUGH and has_maps(r.shape)]

    def default_layer(self) -> str | None:
        convs = [r.name for r in self.layers if r.type == "Conv2d" and r.name]
        if convs:
            return convs[0]
        steps = self.steppable_layers()
        return steps[0] if steps else (self.layer_names() or [None])[0]

    def step_layer(self, delta: int) -> str | None:
        """Select the steppable layer ``delta`` steps after (or before) the current one.

        From a layer that is not steppable itself (a classifier, a pass-through
        container) the step starts at its place in the layer tree.
        """
        names = self.steppable_layers()
        if not names:
            return self.layer
        if self.layer in names:
            i = names.index(self.layer) + delta
        else:
            place = {r.name: k for k, r in enumerate(self.layers) if r.name}
            here = place.get(self.layer, -1)
            after = [k for k, n in enumerate(names) if place[n] > here]
            first_after = after[0] if after else len(names)
            i = first_after + delta - 1 if delta > 0 else first_after + delta
        self.select_layer(names[min(max(i, 0), len(names) - 1)])
        return self.layer

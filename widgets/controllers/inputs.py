"""The inputs controller: the image on screen, the sample gallery, a model's own samples.

Owns the ``image`` job (decode a path, pasted bytes, or a collection's item) and the
``thumbnails`` of the gallery. A model that ships held-out samples of its own classes
(the shapes and digits checkpoints) puts them first in the gallery and, unless the
"Switch to the model's samples" box is off or the image was given at start, opens one.
"""

from __future__ import annotations

import os

from vizapp import analysis
from vizapp.session import model_samples
from widgets.controllers import Controller

__all__ = ["InputsController", "SWITCH_TO_OWN_KEY"]

#: Settings key of the Image dock's "Switch to the model's samples" box.
SWITCH_TO_OWN_KEY = "image/switch_to_model_samples"


def _same_file(path: str, paths: list[str]) -> bool:
    """Whether ``path`` names one of ``paths`` (however it is spelled)."""
    real = os.path.realpath(path)
    return any(os.path.realpath(p) == real for p in paths)


class InputsController(Controller):
    """The Image dock's jobs. ``settings`` (a QSettings) keeps the "switch to own samples" box."""

    kinds = ("image", "thumbnails")
    interactive = ("image",)

    def __init__(self, session, runner, views, on_screen, *, settings) -> None:
        super().__init__(session, runner, views, on_screen)
        self.settings = settings
        self.keep_image_once = False  # an image given at start stays, whatever the model
        self.own_samples: list[str] = []  # the open model's held-out samples (paths), in class order
        self._pending_box: tuple[str, tuple[int, int, int, int]] | None = None
        view = self.view = views["image"]
        view.sigImageRequested.connect(self.open_image)
        view.switch_to_own.setChecked(settings.value(SWITCH_TO_OWN_KEY, True, type=bool))
        view.sigSwitchToOwnChanged.connect(self._switch_to_own_changed)

    # --- requests ----------------------------------------------------------------
    def open_image(self, source) -> None:
        """Open a path (or a sample's name) or PNG bytes."""
        self.submit("image", analysis.decode_image, source)

    def open_collection_image(self, key: str) -> None:
        """Open a collection image by key: a file path, or a dataset item of the collection."""
        c = self.session.collection
        if c is not None and c.kind == "torchvision":
            self.submit("image", analysis.open_collection_item, c, key)
        else:
            self.open_image(key)

    def open_patch(self, patch) -> None:
        """Open a top patch's image in every view, with the box its unit sees drawn on it."""
        self._pending_box = (patch.image, patch.box)
        self.open_collection_image(patch.image)

    def load_samples(self) -> None:
        """The gallery: the shipped sample photographs and the lab's held-out samples."""
        from vizapp.inputs.images import lab_samples, sample_images

        samples = [*sample_images(), *lab_samples()]
        self.submit("thumbnails", analysis.thumbnails, [(s.name, s.path) for s in samples])

    # --- a model's own samples ---------------------------------------------------
    def model_opened(self, model) -> None:
        """Put ``model``'s own held-out samples first in the gallery, and show one of them
        unless the image on screen is one already (or the box is off, or the image was
        given at start). Called before the session switches to ``model``."""
        self.own_samples = [str(sample.path) for _, sample in model_samples(model)]
        self.view.set_model_samples(self.own_samples, model.title)
        keep, self.keep_image_once = self.keep_image_once, False
        if not keep:
            self._switch_to_own_sample()

    def _switch_to_own_sample(self) -> None:
        own = self.own_samples
        if not own or not self.view.switch_to_own.isChecked():
            return
        image = self.session.image
        if image is not None and image.path is not None and _same_file(image.path, own):
            return
        self.open_image(own[0])

    def _switch_to_own_changed(self, on: bool) -> None:
        self.settings.setValue(SWITCH_TO_OWN_KEY, bool(on))
        self.settings.sync()
        if on:
            self._switch_to_own_sample()

    # --- results -----------------------------------------------------------------
    def finished(self, kind: str, result) -> None:
        if kind == "image":
            self.session.set_image(result)
            box, self._pending_box = self._pending_box, None
            if box is not None and box[0] in (result.path, result.name):
                self.view.set_box(box[1])
        elif kind == "thumbnails":
            self.view.set_gallery(result)

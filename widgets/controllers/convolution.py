"""The convolution controller: the Convolution dock's jobs and keys.

Owns ``convolution`` (one conv layer's filter, or a classic or typed kernel, slid over the
layer's input: ``vizapp.analysis.convolution``) and ``convolution:classic`` (the classic
filters beside the first conv layer's learned maps). Both run only while the dock is on
screen (off screen the session marks it stale; it catches up when shown). The dock follows
the session's layer and channel while the layer is a convolution. Its keys (``widgets/keys.py``'s
rows with ``dock="convolution"``: Space plays, the arrows step) are bound here and act while
the focus is in the dock or the dock is maximised.
"""

from __future__ import annotations

from vizapp import analysis
from widgets.controllers import Controller

__all__ = ["ConvolutionController", "conv_layer_table"]

KEY = "convolution"


def conv_layer_table(model) -> dict[str, tuple[int, int, int, bool]]:
    """``{name: (in channels, out channels, groups, has bias)}`` of ``model``'s conv layers
    (``vizapp.explain.convolution.conv_layers``), read from the modules' attributes."""
    from vizapp.explain.convolution import conv_layers

    if model is None or getattr(model, "scripted", False):
        return {}
    modules = dict(model.module.named_modules())
    return {name: (int(modules[name].in_channels), int(modules[name].out_channels), int(modules[name].groups),
                   modules[name].bias is not None) for name in conv_layers(model)}


class ConvolutionController(Controller):
    """The Convolution dock's jobs; ``presentation`` (the window's ``PresentationMode``) gives
    its key handler and which dock is maximised."""

    kinds = ("convolution", "convolution:classic")
    interactive = ("convolution", "convolution:classic")

    def __init__(self, session, runner, views, on_screen, *, presentation=None) -> None:
        super().__init__(session, runner, views, on_screen)
        self.view = views[KEY]
        self.presentation = presentation
        self._asked: tuple | None = None  # what the convolution on screen (or on its way) is of
        self._classic_asked: tuple | None = None
        session.mark_stale(KEY)
        self.view.sigRequested.connect(self.request)
        self.view.sigClassicRequested.connect(self.request_classic)
        session.events.model.connect(lambda _m: self._model_changed())
        session.events.layer.connect(lambda name: self._layer_changed(name))
        session.events.image.connect(lambda _i: self._image_changed())
        if presentation is not None:
            view = self.view
            presentation.keys.bind_dock(KEY, {
                "conv_play": view.toggle_play, "conv_next": lambda: view.step(1), "conv_prev": lambda: view.step(-1),
                "conv_row_next": lambda: view.step_row(1), "conv_row_prev": lambda: view.step_row(-1),
            }, self.keys_in_use)

    def keys_in_use(self) -> bool:
        """Whether Space and the arrows are the dock's: the focus is in it, or it is maximised."""
        from PySide6.QtWidgets import QApplication

        if self.presentation is not None and self.presentation.maximised == KEY:
            return True
        focus = QApplication.focusWidget()
        return focus is not None and (focus is self.view or self.view.isAncestorOf(focus))

    # --- the session ------------------------------------------------------------------
    def _model_changed(self) -> None:
        self.view.set_conv_layers(conv_layer_table(self.session.model))
        self._asked = None
        self.view.clear_classic()
        self.request()

    def _layer_changed(self, name) -> None:
        self.view.follow_layer(name)
        self.request()

    def _image_changed(self) -> None:
        self.view.clear_classic()
        self.request()

    def dock_shown(self, key: str) -> None:
        if self.session.is_stale(key):
            self.request()
            if self.view.classic_shown():
                self.request_classic()

    # --- jobs -----------------------------------------------------------------------------
    def request(self) -> None:
        s, view = self.session, self.view
        if s.model is None or s.image is None:
            view.set_message("Open a model and an image: a conv layer's filter slides over the image here")
            return
        if s.model.scripted:
            view.set_message("A TorchScript model runs as a whole: open its state dict with an architecture "
                             "to see its convolutions")
            return
        if not view.layers:
            view.set_message(f"{s.model.title} has no Conv2d layer to explain; open a CNN "
                             "(efficientnet_lite0, tinyvgg_shapes)")
            return
        if not self.on_screen(KEY):
            self._asked = None
            return
        wanted = view.request()
        layer, channel = wanted.pop("layer"), wanted.pop("channel")
        key = (s.model, s.image, layer, channel, repr(sorted((k, repr(v)) for k, v in wanted.items())))
        if self._asked is not None and self._asked[0] is key[0] and self._asked[1] is key[1] and self._asked[2:] == key[2:]:
            return  # on screen, or on its way
        self._asked = key
        self.submit("convolution", analysis.convolution, s.model, s.image, layer, channel, **wanted)

    def request_classic(self) -> None:
        s = self.session
        if s.model is None or s.image is None or not self.view.layers or not self.on_screen(KEY):
            return
        key = (s.model, s.image)
        if self._classic_asked is not None and self._classic_asked[0] is key[0] and self._classic_asked[1] is key[1] \
                and self.view.classic is not None:
            return
        self._classic_asked = key
        self.submit("convolution:classic", analysis.classic_vs_learned, s.model, s.image)

    def cancel(self) -> None:
        self.runner.cancel(*self.kinds)
        self._asked = self._classic_asked = None

    # --- results ----------------------------------------------------------------------------
    def finished(self, kind: str, result) -> None:
        if self.session.model is None:
            return
        if kind == "convolution":
            self.view.set_convolution(result)
        else:
            self.view.set_classic(result)

    def failed(self, kind: str, message: str) -> None:
        # A refused setting (an output smaller than one pixel, a kernel the input cannot take)
        # is said in the dock, where the setting is.
        if kind == "convolution":
            self._asked = None
            self.view.set_message(message)
        else:
            self._classic_asked = None
            self.view.caption.setText(message)

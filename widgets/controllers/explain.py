"""The explain controller: the Attention and Attribution docks' jobs.

Owns ``attention`` and every ``attribution:<method>`` (one job kind per method, so the
panels fill in one by one and a newer request for one method replaces only its job).
Both cost a forward (and backward) pass per image, so they run only while their dock is
on screen: off screen the session marks the dock stale and its running jobs are dropped;
the dock catches up when it is shown. Each method remembers what it was computed for
(``_attribution_keys``), so a layer step recomputes only Grad-CAM and ticking a method
computes only it. The class both docks explain is the session's ``target``.
"""

from __future__ import annotations

from vizapp import analysis
from widgets.controllers import Controller, notify

__all__ = ["ExplainController"]

DOCKS = ("attention", "attribution")


def _same_request(a: tuple | None, b: tuple | None) -> bool:
    """Requests ``(model, image, ...)``: the same objects (by identity), then equal values."""
    if a is None or b is None or len(a) != len(b):
        return False
    return a[0] is b[0] and a[1] is b[1] and a[2:] == b[2:]


class ExplainController(Controller):
    """Attention (rollout, gradient-weighted for the session's class) and attributions."""

    kinds = ("attention", "attribution:")
    interactive = ("attention", "attribution:")

    def __init__(self, session, runner, views, on_screen) -> None:
        super().__init__(session, runner, views, on_screen)
        self.attention_view, self.attribution_view = views["attention"], views["attribution"]
        self._attribution_keys: dict[str, tuple] = {}  # method -> (model, image, class, layer) requested
        self._attention_request: tuple | None = None  # (model, image, gradient, class) requested
        for key in DOCKS:
            session.mark_stale(key)
        self.attention_view.sigGradientChanged.connect(lambda _on: self.request_attention())
        self.attribution_view.sigRequested.connect(self.request_attributions)
        session.events.target.connect(lambda _index: self._target_changed())
        session.events.image.connect(lambda _image: self.request_explanations())
        session.events.model.connect(lambda _model: self._model_changed())
        session.events.layer.connect(lambda _name: self._layer_changed())

    def _attribution_kinds(self) -> list[str]:
        return [f"attribution:{m}" for m in self.attribution_view.boxes]

    # --- the docks on screen -----------------------------------------------------
    def on_screen(self, key: str) -> bool:
        """Whether the dock shows; if not, its running jobs are dropped: their results would
        belong to an image or model the dock no longer follows."""
        shown = super().on_screen(key)
        if not shown:
            if key == "attention":
                self.runner.cancel("attention")
                self._attention_request = None
            else:
                self.runner.cancel(*self._attribution_kinds())
                self._attribution_keys.clear()
        return shown

    def dock_shown(self, key: str) -> None:
        if self.session.is_stale(key):
            (self.request_attention if key == "attention" else self.request_attributions)()

    # --- requests ----------------------------------------------------------------
    def refresh(self) -> None:
        """Compute the attention and attributions again (F5; after a cancel)."""
        self._attribution_keys.clear()
        self._attention_request = None
        self.request_explanations()

    def request_explanations(self) -> None:
        self.request_attention()
        self.request_attributions()

    def _model_changed(self) -> None:
        for key in DOCKS:
            self.session.mark_stale(key)
        self._attribution_keys.clear()
        self._attention_request = None
        self.request_explanations()

    def _layer_changed(self) -> None:
        view = self.attribution_view
        if view.use_selected_layer() and "gradcam" in view.current_methods():
            self.request_attributions()

    def _target_changed(self) -> None:
        """Another class to explain: the attributions, and the gradient-weighted rollout."""
        self.request_attributions()
        if self.attention_view.gradient_wanted() and not _same_request(self._attention_request,
                                                                       self._attention_wanted()):
            self.request_attention()

    def _attention_wanted(self) -> tuple:
        """What the attention dock should show: (model, image, gradient, class or None)."""
        s = self.session
        gradient = self.attention_view.gradient_wanted()
        return s.model, s.image, gradient, s.target if gradient else None

    def request_attention(self, gradient: bool | None = None) -> None:
        s = self.session
        if s.model is None or s.image is None or not self.on_screen("attention"):
            return
        wanted = self._attention_wanted()
        if gradient is not None:  # a retry without the gradient after the class was refused
            wanted = (*wanted[:2], gradient, None)
        self._attention_request = wanted
        self.submit("attention", analysis.attention, s.model, s.image, wanted[3], wanted[2])

    def _attribution_key(self, method: str) -> tuple:
        s = self.session
        layer = s.layer if method == "gradcam" and self.attribution_view.use_selected_layer() else None
        return s.model, s.image, s.target, layer

    def request_attributions(self) -> None:
        """One job per ticked method whose panel does not already show its current key."""
        s, view = self.session, self.attribution_view
        if s.model is None or s.image is None:
            view.set_message("Open a model and an image")
            return
        if s.model.scripted:
            view.set_message("A TorchScript model runs as a whole: attributions need the eager model "
                             "(open its state dict with an architecture)")
            return
        if not self.on_screen("attribution"):
            return
        methods = view.current_methods()
        for m in view.boxes:
            if m not in methods:
                self.runner.cancel(f"attribution:{m}")
                self._attribution_keys.pop(m, None)
        for method in methods:
            key = self._attribution_key(method)
            if _same_request(self._attribution_keys.get(method), key):
                continue  # shown, or on its way
            self._attribution_keys[method] = key
            view.set_pending(method)
            self.submit(f"attribution:{method}", analysis.attribution, s.model, s.image, method, key[2], key[3])

    def cancel(self) -> None:
        """Escape: stop both docks' jobs; the panels that waited say so, F5 computes them again."""
        view = self.attribution_view
        cancelled = [m for m in view.current_methods() if m in view.pending()]
        self.runner.cancel("attention", *self._attribution_kinds())
        for m in cancelled:
            view.set_error(m, "cancelled: press F5 to compute it again")
            self._attribution_keys.pop(m, None)
        asked, shown = self._attention_request, self.attention_view.result
        if asked is not None and shown is not None and not (asked[2] and shown.gradient is not None):
            notify("attention cancelled: the Attention dock shows an earlier image or class; press F5")
        self._attention_request = None

    # --- results -----------------------------------------------------------------
    def finished(self, kind: str, result) -> None:
        if self.session.model is None:
            return
        if kind == "attention":
            self.attention_view.set_result(result)
        else:
            self.attribution_view.set_attribution(result)

    def failed(self, kind: str, message: str) -> None:
        # Attention and attribution problems (a CNN has no attention, a layer without a
        # gradient) belong in their own dock, which is on screen when they run.
        if kind == "attention":
            asked = self._attention_request
            if asked is not None and asked[2] and self.attention_view.result is not None:
                # The class was refused (out of range): keep the attention, drop the gradient.
                notify(f"gradient-weighted rollout: {message}", error=True)
                self.request_attention(gradient=False)
            else:
                self.attention_view.set_message(message)
        else:
            self.attribution_view.set_error(kind.split(":", 1)[1], message)

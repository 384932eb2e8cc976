"""The window as a composition root: the dock table, one controller per feature, the job routes."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.gui


def _lab(name: str) -> str:
    """The path of a shipped held-out sample (``star``, ``circle``, ...)."""
    from vizapp.inputs.images import lab_samples

    return next(str(s.path) for s in lab_samples() if s.name == name)

#: Who owned which job kind before the controllers (the window's one if/elif), and what
#: Escape stopped (the window's hand-kept INTERACTIVE_JOBS, plus every attribution method).
OWNERS = {
    "model": "probing", "device": "probing", "catalog": "probing", "analysis": "probing", "kernels": "probing",
    "image": "inputs", "thumbnails": "inputs",
    "collection": "collection", "index": "collection", "patches": "collection", "overview": "collection",
    "embedding": "collection", "hover": "collection", "neighbours": "collection", "projections": "collection",
    "attention": "explain", "attribution:gradcam": "explain", "attribution:saliency": "explain",
    "convolution": "convolution", "convolution:classic": "convolution",
    "featurevis": "featurevis", "featurevis:overview": "featurevis", "featurevis:patches": "featurevis",
}
INTERACTIVE = {"model", "device", "analysis", "image", "collection", "index", "patches", "overview",
               "embedding", "neighbours", "projections", "attention", "attribution:", "convolution", "convolution:classic",
               "featurevis", "featurevis:overview", "featurevis:patches"}


def test_every_job_kind_has_one_owner(window):
    from widgets.controllers import Controller, JobRoutes

    w = window
    for kind, owner in OWNERS.items():
        assert w.routes.owner(kind) is w.controllers[owner], kind
    assert w.routes.owner("mystery") is None
    w.routes.finished("mystery", 1)  # a job nobody owns (a benchmark's) is left alone
    assert set(w.routes.interactive()) == INTERACTIVE
    assert "thumbnails" not in w.routes.interactive() and "hover" not in w.routes.interactive()
    # A controller submits only its own kinds; a kind has one owner.
    with pytest.raises(ValueError, match="does not own job kind 'image'"):
        w.probing.submit("image", lambda progress, cancel: None)

    class Another(Controller):
        kinds = ("attribution:",)

    with pytest.raises(ValueError, match="'attribution:' is owned by ExplainController"):
        JobRoutes([w.explain, Another(w.session, w.runner, w.views, w.dock_on_screen)])


def test_a_result_goes_to_its_owner_only(window, monkeypatch):
    w = window
    got = []
    for name, c in w.controllers.items():
        monkeypatch.setattr(c, "finished", lambda kind, result, name=name: got.append(("finished", name, kind)))
        monkeypatch.setattr(c, "failed", lambda kind, message, name=name: got.append(("failed", name, kind)))
    w.runner.sigFinished.emit("kernels", None)
    w.runner.sigFinished.emit("attribution:occlusion", None)
    w.runner.sigFailed.emit("neighbours", "no")
    assert got == [("finished", "probing", "kernels"), ("finished", "explain", "attribution:occlusion"),
                   ("failed", "collection", "neighbours")]


def test_the_dock_table_builds_the_docks_menus_and_layout(window):
    from PySide6.QtCore import Qt

    from vizapp.cli.parser import DOCKS as CLI_DOCKS
    from widgets.docks import DOCKS

    w = window
    assert tuple(r.key for r in DOCKS) == tuple(w.docks) == CLI_DOCKS
    view_menu = next(a.menu() for a in w.menuBar().actions() if a.text() == "&View")
    titles = [a.text() for a in view_menu.actions() if not a.isSeparator()][: len(DOCKS)]
    assert titles == [r.title for r in DOCKS]
    for r in DOCKS:
        widget = w.docks[r.key].widget()
        if r.scroll:
            widget = widget.widget()
        assert widget is getattr(w, r.attr) is w.views[r.key]
    tabs = [r.key for r in DOCKS if r.place == ("tab", "features")]
    assert tabs == ["patches", "embedding", "attention", "attribution", "convolution", "featurevis",
                    "training"]

    def tabbed():
        return {k for k, d in w.docks.items() if d in w.tabifiedDockWidgets(w.docks["features"])}

    assert tabbed() == set(tabs)
    w.splitDockWidget(w.docks["model"], w.docks["attention"], Qt.Vertical)  # the user moves it
    assert "attention" not in tabbed()
    w.reset_layout()
    assert tabbed() == set(tabs)


def test_a_dock_off_screen_is_stale_and_catches_up_when_shown(qtbot, make_window):
    w = make_window(model="tinyvgg_shapes", image=_lab("star"))
    s = w.session
    submitted = []
    real_submit = w.runner.submit

    def spy(kind, *args, **kwargs):
        submitted.append(kind)
        return real_submit(kind, *args, **kwargs)

    w.runner.submit = spy
    # Behind the feature maps the explanation docks compute nothing and are marked stale.
    assert s.is_stale("attention") and s.is_stale("attribution")
    w.open_image(_lab("circle"))
    qtbot.waitUntil(lambda: s.image.name == "circle.png" and w.ready and w.runner.idle(), timeout=30_000)
    assert not any(k == "attention" or k.startswith("attribution:") for k in submitted)
    assert s.is_stale("attention")
    # Raised, the Attention dock catches up (a CNN: it says why there is no attention).
    w.docks["attention"].raise_()
    qtbot.waitUntil(lambda: w.runner.idle() and w.attention_view.message_shown()
                    and "no self-attention" in w.attention_view.message.text(), timeout=30_000)
    assert submitted.count("attention") == 1 and not s.is_stale("attention")
    assert s.is_stale("attribution")  # still behind
    # Hidden again, a new image leaves it stale, with no job.
    w.docks["features"].raise_()
    submitted.clear()
    w.open_image(_lab("square"))
    qtbot.waitUntil(lambda: s.image.name == "square.png" and w.ready and w.runner.idle(), timeout=30_000)
    assert "attention" not in submitted and s.is_stale("attention")


def test_the_predictions_pick_the_session_s_class(qtbot, make_window):
    w = make_window(model="tinyvgg_shapes", image=_lab("star"))
    s = w.session
    third = w.predictions_view.predictions()[2].index
    assert w.attribution_view.class_combo.count() == 1 + len(w.predictions_view.predictions())
    w.predictions_view.sigClassChanged.emit(third)  # a click on the third bar
    assert s.target == third and w.attribution_view.current_target() == third
    w.attribution_view.class_combo.activated.emit(0)  # back to "predicted class" in the Attribution dock
    assert s.target is None
    w.pick_class(1)
    assert w.attribution_view.current_target() == 1
    w.open_model("tinyvgg_shapes")  # a new model: the predicted class again
    qtbot.waitUntil(lambda: w.ready and w.runner.idle(), timeout=30_000)
    assert s.target is None and w.attribution_view.current_target() is None

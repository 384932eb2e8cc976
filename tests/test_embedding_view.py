"""pytest-qt tests of the embedding view, offscreen, on synthetic embeddings (no model needed)."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPoint, QPointF, QRectF, Qt
from PySide6.QtGui import QImage, QMouseEvent
from PySide6.QtWidgets import QApplication

from vizapp.collection.embedding import Embedding

pytestmark = pytest.mark.gui

NAMES = ["cat", "dog", "fox"]


def make_embedding(n_per: int = 170, seed: int = 0, predicted: bool = True) -> Embedding:
    """Three labelled blobs; the 'prediction' calls every fox a dog."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [5.0, 8.0]])
    coords = np.concatenate([c + rng.normal(0, 1.5, (n_per, 2)) for c in centres]).astype(np.float32)
    labels = [name for name in NAMES for _ in range(n_per)]
    guess = ["dog" if lab == "fox" else lab for lab in labels] if predicted else None
    n = len(labels)
    return Embedding(rng.normal(size=(n, 8)), coords, [f"/photos/{i:04d}.png" for i in range(n)], labels,
                     "tsne", guess)


@pytest.fixture
def view(qtbot):
    from widgets.embedding_view import EmbeddingView

    v = EmbeddingView()
    qtbot.addWidget(v)
    v.resize(900, 700)
    v.show()
    qtbot.waitExposed(v)
    return v


@pytest.fixture
def shown(view):
    e = make_embedding()
    view.set_embedding(e, title="lite0 / conv_head")
    return view, e


def viewport_pos(view, x: float, y: float) -> QPoint:
    """Data coordinates -> scene -> the plot's viewport pixels."""
    scene = view.box.mapViewToScene(QPointF(x, y))
    return view.plot.mapFromScene(scene)


def mouse(widget, kind, pos: QPoint, button) -> None:
    """Send a mouse event with the left button held for moves (a real drag, as Qt sends it)."""
    held = Qt.NoButton if kind == QEvent.MouseButtonRelease else Qt.LeftButton
    local = QPointF(pos)
    event = QMouseEvent(kind, local, QPointF(widget.mapToGlobal(pos)), button, held, Qt.NoModifier)
    QApplication.sendEvent(widget, event)


def isolated_point(coords: np.ndarray) -> int:
    """The point farthest from its nearest neighbour (a click on it cannot hit another)."""
    d = ((coords[:, None] - coords[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    return int(np.argmax(d.min(axis=1)))


def test_one_scatter_item_per_label_with_a_legend(shown):
    view, e = shown
    assert view.title.text() == "Embedding: 510 images, t-SNE, lite0 / conv_head"
    assert view.group_names == NAMES
    assert [len(item.getData()[0]) for item in view.items] == [170, 170, 170]
    for item, name in zip(view.items, NAMES, strict=True):  # each item plots exactly its label's points
        x, y = item.getData()
        mine = np.array([lab == name for lab in e.labels])
        np.testing.assert_array_equal(np.sort(x), np.sort(e.coords[mine, 0]))
        assert item.opts["pxMode"] and item.data["brush"].tolist().count(None) == len(x)  # one shared brush
    assert len({item.opts["brush"].color().name() for item in view.items}) == 3
    legend = [label.text for _sample, label in view.legend.items]
    assert legend == ["cat  (170)", "dog  (170)", "fox  (170)"]


def test_colour_by_predicted_regroups(shown):
    view, _ = shown
    assert view.colour_by.model().item(1).isEnabled()
    view.colour_by.setCurrentIndex(view.colour_by.findData("predicted"))
    assert view.current_colour_by() == "predicted"
    assert view.group_names == ["cat", "dog"]
    assert [len(item.getData()[0]) for item in view.items] == [170, 340]
    assert [label.text for _s, label in view.legend.items] == ["cat  (170)", "dog  (340)"]
    # An embedding with no predictions disables the choice and falls back to labels.
    view.set_embedding(make_embedding(predicted=False))
    assert not view.colour_by.model().item(1).isEnabled()
    assert view.current_colour_by() == "label" and len(view.items) == 3
    view.set_embedding(None)  # cleared
    assert view.items == [] and view.legend.items == [] and view.point_at(0.0, 0.0) is None
    assert view.title.text() == "Embedding: nothing computed yet"


def test_many_labels_share_twenty_colours(view):
    rng = np.random.default_rng(1)
    labels = [f"c{i:02d}" for i in rng.integers(0, 30, 3000)]
    e = Embedding(np.zeros((3000, 2)), rng.normal(size=(3000, 2)), ["p"] * 3000, labels, "pca")
    view.set_embedding(e)
    assert len(view.items) == 20 and view.group_names[-1] == "other"
    counts = {name: labels.count(name) for name in set(labels)}
    top = sorted(counts, key=lambda k: (-counts[k], k))[:19]
    assert view.group_names[:-1] == sorted(top)
    assert len(view.items[-1].getData()[0]) == 3000 - sum(counts[k] for k in top)


def test_clicking_a_point_opens_it_and_asks_for_neighbours(qtbot, shown):
    view, e = shown
    i = isolated_point(e.coords)
    opened, asked = [], []
    view.sigImageRequested.connect(opened.append)
    view.sigNeighboursRequested.connect(asked.append)
    qtbot.mouseClick(view.plot.viewport(), Qt.LeftButton, pos=viewport_pos(view, *e.coords[i]))
    assert opened == [e.paths[i]] and asked == [i]
    assert view.clicked_index() == i
    np.testing.assert_allclose(np.c_[view.clicked_ring.getData()], e.coords[i:i + 1])
    # Far from every point: nothing happens.
    lo = e.coords.min(axis=0) - 3
    with qtbot.assertNotEmitted(view.sigImageRequested, wait=50):
        qtbot.mouseClick(view.plot.viewport(), Qt.LeftButton, pos=viewport_pos(view, *lo))


def test_hover_reports_the_point_and_shows_its_thumbnail(qtbot, shown):
    view, e = shown
    i = isolated_point(e.coords)
    with qtbot.waitSignal(view.sigThumbnailRequested, timeout=2000) as blocker:
        qtbot.mouseMove(view.plot.viewport(), viewport_pos(view, *e.coords[i]))
    assert blocker.args == [i]
    assert e.labels[i] in view.info.text() and "0" in view.info.text()
    view.set_thumbnail((i + 1) % len(e), np.zeros((32, 32, 3), np.uint8))  # stale: ignored
    assert view.thumb.pixmap().isNull()
    view.set_thumbnail(i, np.full((32, 48, 3), 200, np.uint8))
    assert not view.thumb.pixmap().isNull() and view.thumb.pixmap().width() == 128


def test_neighbour_strip_shows_thumbnails_and_opens_them(qtbot, shown):
    view, e = shown
    idx, sims = np.array([5, 9, 300, 7]), np.array([0.99, 0.9, 0.8, 0.7])
    thumbs = [np.full((40, 40, 3), 30 * k, np.uint8) for k in range(4)]
    view.set_neighbours(2, idx, sims, thumbs)
    assert len(view.neighbour_buttons) == 4 and view.strip_scroll.isVisible()
    assert view.neighbour_buttons[0].text().startswith("0.990") and not view.neighbour_buttons[0].icon().isNull()
    assert "#2" in view.neighbours_title.text()
    np.testing.assert_allclose(np.c_[view.neighbour_rings.getData()], e.coords[idx])
    with qtbot.waitSignal(view.sigImageRequested, timeout=1000) as blocker:
        qtbot.mouseClick(view.neighbour_buttons[2], Qt.LeftButton)
    assert blocker.args == [e.paths[300]]
    view.set_neighbours(3, idx[:2], sims[:2], [])  # replaced, thumbnails optional
    assert len(view.neighbour_buttons) == 2


def test_rectangle_selection_is_exactly_the_points_inside(qtbot, shown):
    view, e = shown
    rect = QRectF(QPointF(2.0, -1.0), QPointF(9.0, 6.0))
    inside = np.flatnonzero((e.coords[:, 0] >= 2) & (e.coords[:, 0] <= 9)
                            & (e.coords[:, 1] >= -1) & (e.coords[:, 1] <= 6))
    assert 0 < len(inside) < len(e)
    with qtbot.waitSignal(view.sigSelectionChanged, timeout=1000) as blocker:
        got = view.set_selection(rect)
    np.testing.assert_array_equal(got, inside)
    np.testing.assert_array_equal(view.selected(), inside)
    np.testing.assert_array_equal(blocker.args[0], inside)
    counts = {n: sum(e.labels[i] == n for i in inside) for n in NAMES}
    top = max(counts, key=lambda n: (counts[n], n))
    assert view.selection_label.text().startswith(f"{len(inside)} selected: {top} {counts[top]}")
    # Hidden groups (legend click) are not selected.
    view.items[0].setVisible(False)
    np.testing.assert_array_equal(view.set_selection(rect), [i for i in inside if e.labels[i] != "cat"])


def test_dragging_in_select_mode_selects(qtbot, shown):
    view, e = shown
    qtbot.mouseClick(view.select_button, Qt.LeftButton)
    assert view.select_button.isChecked() and view.box.selecting
    a, b = viewport_pos(view, 1.0, -2.0), viewport_pos(view, 8.0, 5.0)
    vp = view.plot.viewport()
    before = view.box.viewRange()
    with qtbot.waitSignal(view.sigSelectionChanged, timeout=1000) as blocker:
        mouse(vp, QEvent.MouseButtonPress, a, Qt.LeftButton)
        for t in np.linspace(0.2, 1, 5):  # QTest.mouseMove sends no buttons: pyqtgraph would see no drag
            qtbot.wait(20)  # pyqtgraph drops moves closer together than its frame rate
            mouse(vp, QEvent.MouseMove, a + (b - a) * float(t), Qt.NoButton)
        mouse(vp, QEvent.MouseButtonRelease, b, Qt.LeftButton)
    (x0, y1), (x1, y0) = [(p.x(), p.y()) for p in (view.box.mapSceneToView(view.plot.mapToScene(q)) for q in (a, b))]
    expected = np.flatnonzero((e.coords[:, 0] >= min(x0, x1)) & (e.coords[:, 0] <= max(x0, x1))
                              & (e.coords[:, 1] >= min(y0, y1)) & (e.coords[:, 1] <= max(y0, y1)))
    np.testing.assert_array_equal(blocker.args[0], expected)
    assert len(expected) > 10 and view.selection_box.isVisible()
    assert view.box.viewRange() == before  # the drag selected instead of panning


def test_a_hundred_thousand_points_and_export(view, tmp_path):
    from widgets.common import export_png

    rng = np.random.default_rng(3)
    n = 100_000
    labels = [f"class {k}" for k in rng.integers(0, 25, n)]
    e = Embedding(np.zeros((n, 1), np.float32), rng.normal(size=(n, 2)), [f"k:{i}" for i in range(n)],
                  labels, "umap", predicted=labels[::-1])
    view.set_embedding(e)
    assert len(view.items) == 20
    assert sum(len(item.getData()[0]) for item in view.items) == n
    assert sum(len(g) for g in view.group_indices) == n
    view.box.scaleBy((0.5, 0.5))
    view.plot.viewport().repaint()
    view.set_embedding(make_embedding())  # smaller again: the spare items go
    assert len(view.items) == 3 and len([i for i in view.box.addedItems if i.scene() is not None]) == 3
    path = export_png(view, tmp_path / "embedding.png", scale=1.0)
    image = QImage(str(path))
    assert image.width() == view.width() and image.height() == view.height()

"""A walker over the window's widget tree that finds what does not fit (``tests/test_fit.py``).

:func:`misfits` returns one line per problem in the docks on screen, each naming the dock and
the widget (class, object name or text):

- ``elided``: a label's, button's, check box's or combo box's text is wider than the room it
  has (the font's advance of the text against the widget's contents), or a word-wrapped
  label is shorter than the height its text needs at its width (``heightForWidth``);
- ``outside``: a visible control or plot reaches outside its dock (or, inside a scroll area, outside
  the area's contents: a scrolling form may scroll, it may not clip);
- ``overlap``: two visible widgets that share a layout overlap (a squeezed layout paints its
  widgets over each other, as the Image dock's pictures over its "Samples" caption did);
- ``elided`` also: a plot's title (a pyqtgraph LabelItem) that runs past its view's edge;
- ``small``: a dock smaller than its own minimum size, or a plot (a pyqtgraph ViewBox) under
  :data:`MIN_PLOT` pixels a side (its axes squeezed away).

Widgets inside item views (a list's or a table's own viewport) are theirs to scroll and are
not walked; the text of a table cell is not checked.
"""

from __future__ import annotations

from PySide6.QtCore import QRect
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QAbstractSpinBox,
    QCheckBox,
    QComboBox,
    QDockWidget,
    QGraphicsView,
    QLabel,
    QLineEdit,
    QRadioButton,
    QScrollArea,
    QSlider,
    QStyle,
    QStyleOptionButton,
    QStyleOptionComboBox,
    QWidget,
)

__all__ = ["MIN_PLOT", "misfits", "docks_on_screen", "describe"]

#: A plot's data area must keep at least this many pixels a side (times the theme's scale).
MIN_PLOT = 60
#: Pixels of slack for rounding (font advances are fractional).
SLACK = 1
#: The controls whose text and place are checked.
CONTROLS = (QLabel, QAbstractButton, QComboBox, QLineEdit, QAbstractSpinBox, QSlider)


def describe(w: QWidget) -> str:
    text = ""
    if isinstance(w, (QLabel, QAbstractButton)):
        text = w.text()
    elif isinstance(w, QComboBox):
        text = w.currentText()
    text = " ".join(text.split())
    name = w.objectName()
    bits = [type(w).__name__] + ([name] if name else []) + ([repr(text[:40])] if text else [])
    return " ".join(bits)


def docks_on_screen(window) -> dict[str, QDockWidget]:
    return {k: d for k, d in window.docks.items() if d.isVisible() and not d.visibleRegion().isEmpty()}


def _shown(w: QWidget) -> bool:
    return w.isVisible() and w.width() > 0 and w.height() > 0


def _rich(label: QLabel) -> bool:
    from PySide6.QtCore import Qt

    return label.textFormat() == Qt.RichText or (label.textFormat() == Qt.AutoText and "<" in label.text())


def _plain(text: str) -> str:
    """``text`` as drawn: a mnemonic's ``&`` is not, ``&&`` is one ``&``."""
    return text.replace("&&", "\0").replace("&", "").replace("\0", "&")


def _label_problem(label: QLabel) -> str | None:
    text = _plain(label.text()) if label.buddy() is not None else label.text()
    if not text or (label.pixmap() is not None and not label.pixmap().isNull()) or _rich(label):
        return None
    rect = label.contentsRect()
    room_w = rect.width() - 2 * max(0, label.margin()) - max(0, label.indent())
    if label.wordWrap():
        need = label.heightForWidth(label.width())
        if need > label.height() + SLACK:
            return f"elided: {describe(label)} needs {need} px high at {label.width()} px wide, has {label.height()}"
        return None
    fm = label.fontMetrics()
    lines = text.split("\n")
    wide = max(fm.horizontalAdvance(line) for line in lines)
    high = fm.height() + (len(lines) - 1) * fm.lineSpacing()
    if wide > room_w + SLACK:
        return f"elided: {describe(label)} needs {wide} px wide, has {room_w}"
    if high > rect.height() + SLACK:
        return f"elided: {describe(label)} needs {high} px high, has {rect.height()}"
    return None


def _button_problem(button: QAbstractButton) -> str | None:
    if not button.text():
        return None
    fm = button.fontMetrics()
    wide = fm.horizontalAdvance(_plain(button.text()))
    style = button.style()
    if isinstance(button, (QCheckBox, QRadioButton)):
        opt = QStyleOptionButton()
        button.initStyleOption(opt) if hasattr(button, "initStyleOption") else opt.initFrom(button)
        element = QStyle.SE_CheckBoxContents if isinstance(button, QCheckBox) else QStyle.SE_RadioButtonContents
        room = style.subElementRect(element, opt, button).width()
    else:
        room = button.contentsRect().width() - 2 * style.pixelMetric(QStyle.PM_ButtonMargin, None, button) // 2
        if not button.icon().isNull():
            room -= button.iconSize().width()
    if wide > room + SLACK:
        return f"elided: {describe(button)} needs {wide} px wide, has {room}"
    if fm.height() > button.height() + SLACK:
        return f"elided: {describe(button)} needs {fm.height()} px high, has {button.height()}"
    return None


def _combo_problem(combo: QComboBox) -> str | None:
    text = combo.currentText()
    if not text:
        return None
    opt = QStyleOptionComboBox()
    combo.initStyleOption(opt)
    field = combo.style().subControlRect(QStyle.CC_ComboBox, opt, QStyle.SC_ComboBoxEditField, combo)
    wide = combo.fontMetrics().horizontalAdvance(text)
    if not combo.itemIcon(combo.currentIndex()).isNull():
        wide += combo.iconSize().width() + 4
    if wide > field.width() + SLACK:
        return f"elided: {describe(combo)} needs {wide} px wide, has {field.width()}"
    return None


def _in_item_view(w: QWidget, stop: QWidget) -> bool:
    p = w.parentWidget()
    while p is not None and p is not stop:
        if isinstance(p, QAbstractItemView):
            return True
        p = p.parentWidget()
    return False


def _scroll_area_of(w: QWidget, stop: QWidget) -> QScrollArea | None:
    p = w.parentWidget()
    while p is not None and p is not stop:
        if isinstance(p, QScrollArea):
            return p
        p = p.parentWidget()
    return None


def _layout_widgets(layout) -> list[QWidget]:
    out = []
    for i in range(layout.count()):
        item = layout.itemAt(i)
        if item.widget() is not None:
            out.append(item.widget())
        elif item.layout() is not None:
            out += _layout_widgets(item.layout())
    return out


def _overlaps(parent: QWidget) -> list[str]:
    layout = parent.layout()
    if layout is None:
        return []
    kids = [w for w in _layout_widgets(layout) if _shown(w)]
    found = []
    for i, a in enumerate(kids):
        for b in kids[i + 1:]:
            common = a.geometry().intersected(b.geometry())
            if common.width() > SLACK and common.height() > SLACK:
                found.append(f"overlap: {describe(a)} and {describe(b)} by {common.width()}x{common.height()} px")
    return found


def _plots(root: QWidget, scale: float) -> list[str]:
    import pyqtgraph as pg

    found = []
    for view in root.findChildren(pg.GraphicsView):
        if not _shown(view) or _in_item_view(view, root):
            continue
        seen = view.mapToScene(view.viewport().rect()).boundingRect().adjusted(-SLACK, -SLACK, SLACK, SLACK)
        for item in view.scene().items():
            if isinstance(item, pg.LabelItem) and item.isVisible() and item.text:  # a plot's title
                r = item.item.sceneBoundingRect()
                if not seen.contains(r):
                    found.append(f"elided: the title {item.text[:30]!r} of a plot in {type(view).__name__} "
                                 f"is {r.width():.0f} px wide, cut by the view's edge")
            if isinstance(item, pg.ViewBox) and item.isVisible():
                r = item.sceneBoundingRect()
                least = MIN_PLOT * scale
                if r.width() < least or r.height() < least:
                    owner = view.objectName() or type(view).__name__
                    found.append(f"small: a plot in {owner} is {r.width():.0f}x{r.height():.0f} px (at least {least:.0f})")
    return found


def misfits(window, scale: float = 1.0) -> list[str]:
    """Every problem in the docks on screen of ``window`` (see the module's doc)."""
    problems: list[str] = []
    for key, dock in docks_on_screen(window).items():
        here = []
        place = QRect(dock.mapTo(window, dock.rect().topLeft()), dock.size())
        if not window.rect().adjusted(-SLACK, -SLACK, SLACK, SLACK).contains(place):
            here.append(f"outside: the dock at {place.getRect()} is outside the window {window.rect().getRect()}")
        hint = dock.minimumSizeHint().expandedTo(dock.minimumSize())
        if dock.width() + SLACK < hint.width() or dock.height() + SLACK < hint.height():
            here.append(f"small: the dock is {dock.width()}x{dock.height()}, its minimum {hint.width()}x{hint.height()}")
        root = dock.widget()
        widgets = [root] + root.findChildren(QWidget)
        for w in widgets:
            if not _shown(w) or w.isWindow() or _in_item_view(w, root):
                continue
            if isinstance(w, CONTROLS):
                problem = None
                if isinstance(w, QLabel):
                    problem = _label_problem(w)
                elif isinstance(w, QAbstractButton):
                    problem = _button_problem(w)
                elif isinstance(w, QComboBox):
                    problem = _combo_problem(w)
                if problem:
                    here.append(problem)
                area = _scroll_area_of(w, root)
                frame = area.widget() if area is not None else dock
                mine = QRect(w.mapTo(frame, w.rect().topLeft()), w.size())
                if not frame.rect().adjusted(-SLACK, -SLACK, SLACK, SLACK).contains(mine):
                    here.append(f"outside: {describe(w)} at {mine.getRect()} outside {frame.rect().getRect()}")
            if isinstance(w, QGraphicsView) and _scroll_area_of(w, root) is None:  # a plot or a picture
                mine = QRect(w.mapTo(dock, w.rect().topLeft()), w.size())
                if not dock.rect().adjusted(-SLACK, -SLACK, SLACK, SLACK).contains(mine):
                    here.append(f"outside: {describe(w)} at {mine.getRect()} outside {dock.rect().getRect()}")
            here += _overlaps(w)
        here += _plots(root, scale)
        problems += [f"{key}: {p}" for p in dict.fromkeys(here)]
    return problems

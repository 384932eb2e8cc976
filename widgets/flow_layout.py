"""A layout whose items wrap onto the next line when the row is full (Qt's FlowLayout example).

Rows of controls (check boxes, a combo with its label, a slider with its read-out) use it so
a narrow dock wraps them instead of forcing the window wider than a projector's screen. Its
minimum width is its widest item; its height follows its width (``heightForWidth``), so the
dock below it gives it the lines it needs.
"""

from __future__ import annotations

from PySide6.QtCore import QMargins, QPoint, QRect, QSize, Qt
from PySide6.QtWidgets import QLayout, QLayoutItem, QSizePolicy, QStyle, QWidget

__all__ = ["FlowLayout", "flow_of"]

_EXPAND = QSizePolicy.PolicyFlag.ExpandFlag.value


class FlowLayout(QLayout):
    """Items left to right, wrapping; ``spacing`` between items and between lines
    (the style's when negative)."""

    def __init__(self, parent: QWidget | None = None, spacing: int = -1) -> None:
        super().__init__(parent)
        self._items: list[QLayoutItem] = []
        self.setSpacing(spacing)
        if parent is None:
            self.setContentsMargins(QMargins(0, 0, 0, 0))

    def __del__(self) -> None:
        while self.takeAt(0) is not None:
            pass

    def addItem(self, item: QLayoutItem) -> None:  # noqa: N802 - Qt override
        self._items.append(item)

    def count(self) -> int:
        return len(self._items)

    def itemAt(self, index: int) -> QLayoutItem | None:  # noqa: N802 - Qt override
        return self._items[index] if 0 <= index < len(self._items) else None

    def takeAt(self, index: int) -> QLayoutItem | None:  # noqa: N802 - Qt override
        return self._items.pop(index) if 0 <= index < len(self._items) else None

    def expandingDirections(self) -> Qt.Orientation:  # noqa: N802 - Qt override
        return Qt.Orientation(0)

    def hasHeightForWidth(self) -> bool:  # noqa: N802 - Qt override
        return True

    def heightForWidth(self, width: int) -> int:  # noqa: N802 - Qt override
        return self._place(QRect(0, 0, width, 0), move=False)

    def setGeometry(self, rect: QRect) -> None:  # noqa: N802 - Qt override
        super().setGeometry(rect)
        self._place(rect, move=True)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt override
        """One line of every item."""
        m = self.contentsMargins()
        w = sum(i.sizeHint().width() for i in self._items if not i.isEmpty())
        w += max(0, len(self._items) - 1) * self._gap(Qt.Horizontal)
        h = max((i.sizeHint().height() for i in self._items if not i.isEmpty()), default=0)
        return QSize(w + m.left() + m.right(), h + m.top() + m.bottom())

    def minimumSize(self) -> QSize:  # noqa: N802 - Qt override
        """The widest item (every line holds at least one)."""
        size = QSize()
        for item in self._items:
            if not item.isEmpty():
                size = size.expandedTo(item.minimumSize())
        m = self.contentsMargins()
        return size + QSize(m.left() + m.right(), m.top() + m.bottom())

    def _gap(self, orientation) -> int:
        if self.spacing() >= 0:
            return self.spacing()
        parent = self.parentWidget()
        if parent is None:
            return 6
        metric = QStyle.PM_LayoutHorizontalSpacing if orientation == Qt.Horizontal else QStyle.PM_LayoutVerticalSpacing
        gap = parent.style().pixelMetric(metric, None, parent)
        return gap if gap >= 0 else 6

    def _place(self, rect: QRect, move: bool) -> int:
        m = self.contentsMargins()
        area = rect.adjusted(m.left(), m.top(), -m.right(), -m.bottom())
        x, y, line = area.x(), area.y(), 0
        gap_x, gap_y = self._gap(Qt.Horizontal), self._gap(Qt.Vertical)
        row: list[tuple[QLayoutItem, int, QSize]] = []

        def flush() -> None:
            if move:  # centre each item on its line
                for item, left, size in row:
                    item.setGeometry(QRect(QPoint(left, y + (line - size.height()) // 2), size))

        for item in self._items:
            if item.isEmpty():
                continue
            size = item.sizeHint().boundedTo(item.maximumSize()).expandedTo(item.minimumSize())
            if item.widget() is not None and item.widget().sizePolicy().horizontalPolicy().value & _EXPAND:
                size.setWidth(min(size.width(), area.width()))
            size.setWidth(min(size.width(), max(area.width(), item.minimumSize().width())))
            if row and x + size.width() > area.right() + 1:
                flush()
                x, y, line, row = area.x(), y + line + gap_y, 0, []
            row.append((item, x, size))
            x += size.width() + gap_x
            line = max(line, size.height())
        flush()
        return y + line - rect.y() + m.bottom()


def flow_of(*widgets: QWidget, spacing: int = -1) -> FlowLayout:
    """A :class:`FlowLayout` holding ``widgets`` in order."""
    layout = FlowLayout(spacing=spacing)
    for w in widgets:
        layout.addWidget(w)
    return layout

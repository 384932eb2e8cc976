"""The Image dock: open, drop or paste an image, pick a sample; shows what the model sees."""

from __future__ import annotations

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QGuiApplication, QIcon, QPainter, QPen
from PySide6.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from vizapp.core.notifications import notification_manager
from widgets.common import heading, to_pixmap
from widgets.theme import THEME

__all__ = ["ImageView"]

IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.bmp *.gif *.tif *.tiff *.webp *.ppm *.pgm);;All files (*)"


class _Picture(QLabel):
    """A label that keeps its pixmap scaled to fit, aspect kept."""

    def __init__(self) -> None:
        super().__init__()
        self._pixmap = None
        self._box = None
        self.setAlignment(Qt.AlignCenter)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        THEME.changed.connect(self._apply_theme)
        self._apply_theme()

    def _apply_theme(self, *_args) -> None:
        side = round(THEME.pixels("picture_min"))
        self.setMinimumSize(side, side)
        self._rescale()  # the box's pen width follows the scale

    def set_pixels(self, pixels) -> None:
        self._pixmap = to_pixmap(pixels)
        self._box = None
        self._rescale()

    def set_box(self, box: tuple[int, int, int, int] | None) -> None:
        """Outline ``(x0, y0, x1, y1)`` in image pixels (``None`` clears it)."""
        self._box = box
        self._rescale()

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().resizeEvent(event)
        self._rescale()

    def _rescale(self) -> None:
        if self._pixmap is None:
            return
        scaled = self._pixmap.scaled(self.size(), Qt.KeepAspectRatio, Qt.SmoothTransformation)
        if self._box is not None:
            f = scaled.width() / max(1, self._pixmap.width())
            x0, y0, x1, y1 = self._box
            painter = QPainter(scaled)
            painter.setPen(QPen(QColor(THEME.colour("accent")), THEME.width("thick")))
            painter.drawRect(QRectF(x0 * f, y0 * f, (x1 - x0) * f, (y1 - y0) * f))
            painter.end()
        self.setPixmap(scaled)


class ImageView(QWidget):
    """Open / drop / paste an image; a gallery of offline samples; the model's-eye input.

    Signals
    -------
    sigImageRequested(source)
        Open this image: a path (str), or PNG bytes (pasted or dropped).
    sigSwitchToOwnChanged(on)
        The "Switch to the model's samples" box was toggled by the user.
    """

    sigImageRequested = Signal(object)
    sigSwitchToOwnChanged = Signal(bool)

    def __init__(self, session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.setAcceptDrops(True)
        self.open_button = QPushButton("Open image…")
        self.open_button.clicked.connect(self.open_dialog)
        self.paste_button = QPushButton("Paste")
        self.paste_button.clicked.connect(self.paste)
        self.original = _Picture()
        self.model_input = _Picture()
        self.original_caption = heading("Drop an image here", "small")
        self.input_caption = heading("What the model sees", "small")
        self.gallery = QListWidget()
        self.gallery.setViewMode(QListView.IconMode)
        self.gallery.setFlow(QListView.LeftToRight)
        self.gallery.setWrapping(False)
        self._gallery_theme()
        THEME.changed.connect(self._gallery_theme)
        self.gallery.setMovement(QListView.Static)
        self.gallery.itemActivated.connect(self._gallery_pick)
        self.gallery.itemClicked.connect(self._gallery_pick)
        self._own: list[str] = []  # the model's own samples (paths), shown first
        self.gallery_caption = heading("Samples (no download needed):", None, bold=False)  # wraps
        self.switch_to_own = QCheckBox("Switch to the model's samples")
        self.switch_to_own.setChecked(True)
        self.switch_to_own.setToolTip(
            "When a model ships held-out samples of its own classes (the shapes and digits models), "
            "opening it shows one of them instead of an image it was not trained for")
        self.switch_to_own.clicked.connect(  # the user's clicks only
            lambda *_: self.sigSwitchToOwnChanged.emit(self.switch_to_own.isChecked()))

        buttons = QHBoxLayout()
        buttons.addWidget(self.open_button)
        buttons.addWidget(self.paste_button)
        buttons.addStretch(1)
        pictures = QHBoxLayout()
        for caption, picture in ((self.original_caption, self.original), (self.input_caption, self.model_input)):
            col = QVBoxLayout()
            col.addWidget(caption)
            col.addWidget(picture, 1)
            pictures.addLayout(col, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(buttons)
        layout.addLayout(pictures, 1)
        layout.addWidget(self.gallery_caption)
        layout.addWidget(self.gallery)
        layout.addWidget(self.switch_to_own)

        session.events.image.connect(self._image_changed)
        session.events.model.connect(self._model_changed)

    # --- gallery -----------------------------------------------------------------
    def _gallery_theme(self, *_args) -> None:
        """Thumbnails of the theme's ``thumb`` size, and room for them and two lines of name."""
        side = round(THEME.pixels("thumb"))
        self.gallery.setIconSize(QSize(side, side))
        lines = 2 * self.gallery.fontMetrics().lineSpacing()
        bar = self.gallery.horizontalScrollBar().sizeHint().height()
        self.gallery.setFixedHeight(side + lines + bar + round(THEME.px(12)))

    def set_gallery(self, thumbs: list[tuple[str, str, object]]) -> None:
        """``[(name, path, H x W x 3 uint8)]`` from the engine's ``thumbnails`` job."""
        self.gallery.clear()
        for i, (name, path, pixels) in enumerate(thumbs):
            item = QListWidgetItem(QIcon(to_pixmap(pixels)), name)
            item.setData(Qt.UserRole, path)
            item.setData(Qt.UserRole + 1, i)
            item.setToolTip(path)
            self.gallery.addItem(item)
        self._order_gallery()

    def set_model_samples(self, paths: list[str], whose: str = "") -> None:
        """Show ``paths`` (the model's own held-out samples, in class order) first in the gallery."""
        self._own = [_same_file_key(p) for p in paths]
        self.gallery_caption.setText(f"Samples (no download needed; {whose}'s own first):" if paths and whose
                                     else "Samples (no download needed):")
        self._order_gallery()

    def gallery_paths(self) -> list[str]:
        """The gallery's image paths, in the order shown."""
        return [self.gallery.item(i).data(Qt.UserRole) for i in range(self.gallery.count())]

    def _order_gallery(self) -> None:
        own = {p: k for k, p in enumerate(self._own)}
        items = [self.gallery.takeItem(0) for _ in range(self.gallery.count())]

        def key(item):
            k = own.get(_same_file_key(item.data(Qt.UserRole)))
            return (0, k, 0) if k is not None else (1, 0, item.data(Qt.UserRole + 1))

        for item in sorted(items, key=key):
            font = item.font()
            font.setBold(_same_file_key(item.data(Qt.UserRole)) in own)
            item.setFont(font)
            self.gallery.addItem(item)
        if items:
            self.gallery.scrollToItem(self.gallery.item(0))

    def _gallery_pick(self, item: QListWidgetItem) -> None:
        self.sigImageRequested.emit(item.data(Qt.UserRole))

    # --- input -------------------------------------------------------------------
    def open_dialog(self) -> None:
        """Ask for an image file and request it (File > Open image…)."""
        path, _ = QFileDialog.getOpenFileName(self, "Open image", "", IMAGE_FILTER)
        if path:
            self.sigImageRequested.emit(path)

    def paste(self) -> None:
        mime = QGuiApplication.clipboard().mimeData()
        if mime is None:
            return
        if mime.hasUrls() and mime.urls()[0].isLocalFile():
            self.sigImageRequested.emit(mime.urls()[0].toLocalFile())
        elif mime.hasImage():
            self.sigImageRequested.emit(_png_bytes(QGuiApplication.clipboard().image()))
        else:
            notification_manager.info("The clipboard holds no image")

    def dragEnterEvent(self, event) -> None:  # noqa: N802 - Qt override
        if event.mimeData().hasUrls() or event.mimeData().hasImage():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802 - Qt override
        mime = event.mimeData()
        if mime.hasUrls() and mime.urls()[0].isLocalFile():
            self.sigImageRequested.emit(mime.urls()[0].toLocalFile())
        elif mime.hasImage():
            self.sigImageRequested.emit(_png_bytes(mime.imageData()))
        event.acceptProposedAction()

    # --- rendering ---------------------------------------------------------------
    def _image_changed(self, image) -> None:
        h, w = image.pixels.shape[:2]
        self.original.set_pixels(image.pixels)
        self.original_caption.setText(f"{image.name}  ({w}×{h})")

    def _model_changed(self, model) -> None:
        n = model.input_size
        self.input_caption.setText(f"What {model.title} sees ({n}×{n})")

    def set_box(self, box: tuple[int, int, int, int] | None) -> None:
        """Outline a region of the original image (a top patch's receptive field)."""
        self.original.set_box(box)

    def box(self):
        return self.original._box

    def set_model_input(self, pixels) -> None:
        """The de-normalised input tensor, from an analysis result."""
        self.model_input.set_pixels(pixels)


def _same_file_key(path: str) -> str:
    """One spelling per file, so a path typed differently still matches the gallery's."""
    import os

    return os.path.normcase(os.path.realpath(path))


def _png_bytes(image) -> bytes:
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.WriteOnly)
    image.save(buffer, "PNG")
    return bytes(data.data())

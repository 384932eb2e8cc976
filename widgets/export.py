"""Figures for slides: any dock as a PNG (1x, 2x or 3x), as an SVG where it shows plots, or
on the clipboard; every visible dock into one folder with a caption file; and the menus that
offer all of it (File > Export view, each view's context menu, Ctrl+Shift+C).

A PNG is the dock's content re-rendered at the scale (text and lines stay sharp, the pixels
of an image are enlarged). An SVG is made of the dock's pyqtgraph canvases, each exported by
pyqtgraph's ``SVGExporter`` (curves, scatter points, axes and text stay vectors; an image in
a plot is embedded as a PNG) and placed where it sits in the dock; buttons and forms are left
out. The docks with plots: the embedding, the attention dock's distance plot (when that mode
is on screen) and the training lab (loss and accuracy curves, embedding, confusion matrix,
kernels). The feature maps, kernels, top patches, image and attribution are pictures: PNG only.
Every file goes through :mod:`vizapp.core.files` (atomic, a full disk is a one-line error).
"""

from __future__ import annotations

import importlib
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QPoint, QRect, Qt
from PySide6.QtGui import QAction, QGuiApplication, QImage, QKeySequence, QPixmap, QShortcut
from PySide6.QtWidgets import QDockWidget, QFileDialog, QMenu, QScrollArea, QWidget

from vizapp.core.errors import StorageError, UserError
from vizapp.core.files import write_bytes, write_json, write_text
from widgets.docks import row

__all__ = [
    "SCALES", "DEFAULT_SCALE", "Figures", "caption", "caption_line", "content", "copy_image",
    "export_all", "export_png", "export_svg", "export_view", "has_svg", "plot_canvases",
    "png_bytes", "raised_dock", "render", "svg_bytes",
]

#: The PNG scales offered (1x is the dock's size on screen).
SCALES = (1, 2, 3)
#: The scale of a plain "export" and of a copy.
DEFAULT_SCALE = 2

SVG_NS = "http://www.w3.org/2000/svg"
XLINK_NS = "http://www.w3.org/1999/xlink"
ET.register_namespace("", SVG_NS)
ET.register_namespace("xlink", XLINK_NS)


# --- PNG and clipboard ------------------------------------------------------------------
def content(window, key: str) -> QWidget:
    """What dock ``key`` shows (inside a scrolling dock: all of its content)."""
    widget = window.docks[key].widget()
    return widget.widget() if isinstance(widget, QScrollArea) else widget


def render(widget: QWidget, scale: float = DEFAULT_SCALE) -> QImage:
    """``widget`` re-rendered at ``scale`` x its size (``scale`` x the pixels each way)."""
    pixmap = QPixmap(widget.size() * scale)
    pixmap.setDevicePixelRatio(scale)
    pixmap.fill(Qt.transparent)
    widget.render(pixmap)
    return pixmap.toImage()


def _encode(image: QImage, fmt: str, path: Path) -> bytes:
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.WriteOnly)
    if not image.save(buffer, fmt):
        raise StorageError(f"{path}: cannot write (Qt could not encode the {fmt})")
    buffer.close()
    return bytes(data.data())


def png_bytes(widget: QWidget, scale: float = DEFAULT_SCALE) -> bytes:
    """``widget`` at ``scale`` as PNG bytes."""
    return _encode(render(widget, scale), "PNG", Path(widget.objectName() or type(widget).__name__))


def export_png(widget: QWidget, path: str | Path, scale: float = DEFAULT_SCALE) -> Path:
    """Render ``widget`` to a PNG at ``scale`` x its size (re-rendered, so text stays sharp).

    Encoded in memory, then written by the one atomic writer: a full or read-only disk is
    a StorageError naming the path, and an earlier file at ``path`` survives it.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        path = path.with_suffix(".png")
    return write_bytes(path, _encode(render(widget, scale), "PNG", path))


def copy_image(widget: QWidget, scale: float = DEFAULT_SCALE) -> QImage:
    """Put ``widget`` at ``scale`` on the clipboard as an image; returns that image."""
    image = render(widget, scale)
    QGuiApplication.clipboard().setImage(image)
    return image


def export_view(window, key: str | None, path: str | Path, scale: float | None = None) -> Path:
    """Dock ``key`` (``None``: the whole window, at 1x) as a PNG, at ``scale`` (default 2x)."""
    if key is None:
        return export_png(window, path, scale=scale or 1.0)
    return export_png(content(window, key), path, scale=scale or DEFAULT_SCALE)


# --- SVG ----------------------------------------------------------------------------------
_PLOT_ITEMS = (pg.PlotItem, pg.PlotDataItem, pg.PlotCurveItem, pg.ScatterPlotItem)


def plot_canvases(widget: QWidget) -> list[pg.GraphicsView]:
    """The pyqtgraph canvases shown in ``widget`` when one of them holds a plot (curves,
    scatter points, a plot with axes), else none: pictures alone are not worth an SVG."""
    canvases = [g for g in widget.findChildren(pg.GraphicsView)
                if g.isVisibleTo(widget) and g.width() > 0 and g.height() > 0]
    if isinstance(widget, pg.GraphicsView):
        canvases.insert(0, widget)
    plots = any(isinstance(item, _PLOT_ITEMS) for g in canvases for item in g.scene().items())
    return canvases if plots else []


def has_svg(widget: QWidget) -> bool:
    """Whether ``widget`` shows a plot that can be saved as an SVG."""
    return bool(plot_canvases(widget))


def _tolerate_closepath() -> None:
    """pyqtgraph 0.14's SVG exporter reads every token of a path as ``x,y`` and fails on the
    ``Z`` (close path) that Qt writes for closed shapes (legend swatches, rectangles, some
    symbols); fixed upstream (pyqtgraph issue 3485). Until then its coordinate pass is given
    the path without those tokens, and they are put back after it."""
    module = importlib.import_module("pyqtgraph.exporters.SVGExporter")
    original = module.correctCoordinates
    if getattr(original, "vizapp_tolerant", False):
        return

    def correct(node, defs, item, options):
        loose = {}
        for path in node.getElementsByTagName("path"):
            tokens = path.getAttribute("d").split()
            kept = [(i, t) for i, t in enumerate(tokens) if "," not in t]
            if kept:
                loose[path] = kept
                path.setAttribute("d", " ".join(t for t in tokens if "," in t))
        original(node, defs, item, options)
        for path, kept in loose.items():
            tokens = path.getAttribute("d").split()
            for i, t in kept:
                tokens.insert(i, t)
            path.setAttribute("d", " ".join(tokens))

    correct.vizapp_tolerant = True
    module.correctCoordinates = correct


def _prefix_ids(root: ET.Element, prefix: str) -> None:
    """Rename every ``id`` under ``root`` (and the references to it): the canvases of one
    figure export their clip paths and gradients under the same names."""
    ids = {e.get("id") for e in root.iter() if e.get("id")}
    if not ids:
        return
    for e in root.iter():
        if e.get("id"):
            e.set("id", prefix + e.get("id"))
        for name, value in list(e.attrib.items()):
            for old in ids:
                if f"#{old}" in value:
                    value = value.replace(f"url(#{old})", f"url(#{prefix}{old})")
                    if value == f"#{old}":
                        value = f"#{prefix}{old}"
            e.set(name, value)


def svg_bytes(widget: QWidget) -> bytes:
    """``widget``'s plots as one SVG document, each canvas where it sits in ``widget``."""
    canvases = plot_canvases(widget)
    if not canvases:
        raise UserError(f"{_name(widget)} shows no plot to save as SVG; export it as a PNG")
    _tolerate_closepath()
    from pyqtgraph.exporters import SVGExporter

    boxes = [QRect(g.mapTo(widget, QPoint(0, 0)) if g is not widget else QPoint(0, 0), g.size()) for g in canvases]
    whole = boxes[0]
    for box in boxes[1:]:
        whole = whole.united(box)
    root = ET.Element(f"{{{SVG_NS}}}svg", {
        "version": "1.1", "width": str(whole.width()), "height": str(whole.height()),
        "viewBox": f"0 0 {whole.width()} {whole.height()}"})
    ET.SubElement(root, f"{{{SVG_NS}}}title").text = f"vizapp: {_name(widget)}"
    defs = ET.SubElement(root, f"{{{SVG_NS}}}defs")
    styled = False
    for k, (canvas, box) in enumerate(zip(canvases, boxes, strict=True)):
        # A view box applies a new auto-range when it is next painted; the exporter paints
        # items itself, so bring the ranges up to date as a paint would.
        canvas.scene().prepareForPaint()
        doc = ET.fromstring(SVGExporter(canvas.scene()).export(toBytes=True))
        _prefix_ids(doc, f"c{k}-")
        # One group per canvas, moved to its place and clipped to it (no nested <svg>: SVG
        # Tiny readers such as Qt's skip those).
        x0, y0, vw, vh = (float(v) for v in (doc.get("viewBox") or f"0 0 {box.width()} {box.height()}").split())
        sx, sy = box.width() / (vw or 1), box.height() / (vh or 1)
        frame = ET.SubElement(defs, f"{{{SVG_NS}}}clipPath", {"id": f"c{k}-frame"})
        ET.SubElement(frame, f"{{{SVG_NS}}}rect", {"x": f"{x0:g}", "y": f"{y0:g}", "width": f"{vw:g}", "height": f"{vh:g}"})
        group = ET.SubElement(root, f"{{{SVG_NS}}}g", {
            "transform": f"translate({box.x() - whole.x()},{box.y() - whole.y()}) scale({sx:g},{sy:g}) "
                         f"translate({-x0:g},{-y0:g})",
            "clip-path": f"url(#c{k}-frame)"})
        for child in doc:
            tag = child.tag.rpartition("}")[2]
            if tag in ("title", "desc"):
                continue
            if tag == "style":
                if not styled:
                    root.insert(1, child)
                    styled = True
            elif tag == "defs":
                defs.extend(child)
            else:
                if tag == "rect" and child.get("width") == "100%":  # the canvas's background
                    child.attrib.update(x=f"{x0:g}", y=f"{y0:g}", width=f"{vw:g}", height=f"{vh:g}")
                group.append(child)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="utf-8")


def export_svg(widget: QWidget, path: str | Path) -> Path:
    """``widget``'s plots as an SVG file (``.svg`` appended if missing)."""
    path = Path(path)
    if path.suffix.lower() != ".svg":
        path = path.with_suffix(".svg")
    return write_bytes(path, svg_bytes(widget))


def _name(widget: QWidget) -> str:
    dock = widget.parentWidget()
    while dock is not None and not isinstance(dock, QDockWidget):
        dock = dock.parentWidget()
    return f"the {dock.windowTitle()} dock" if dock is not None else type(widget).__name__


# --- captions and export all --------------------------------------------------------------
def caption(window, key: str) -> dict:
    """What dock ``key`` shows: its title, the model, layer, channel, class and image."""
    s = window.session
    model = s.model
    if s.target is not None:
        label = model.label(s.target) if model is not None else f"class {s.target}"
    elif s.predictions:
        label = f"{s.predictions[0].label} (predicted)"
    else:
        label = None
    out = {
        "dock": key,
        "title": row(key).title,
        "model": model.title if model is not None else None,
        "layer": s.layer,
        "channel": s.channel,
        "class": label,
        "image": s.image.name if s.image is not None else None,
    }
    view = window.views.get(key)
    if key == "attention" and getattr(view, "result", None) is not None:
        out["attention layer"] = view.layer()
        out["head"] = "mean" if view.head() is None else view.head()
    return out


def caption_line(record: dict) -> str:
    """``Feature maps: TinyVGG · layer conv1 · channel 3 · class star · image star``."""
    parts = [f"{name} {record[name]}" for name in ("layer", "channel", "attention layer", "head", "class", "image")
             if record.get(name) is not None]
    head = record["title"] + (f": {record['model']}" if record.get("model") else "")
    return " · ".join([head, *parts])


def export_all(window, folder: str | Path, scale: float = DEFAULT_SCALE, svg: bool = True) -> list[Path]:
    """Every dock on screen into ``folder``: ``<dock>.png`` at ``scale``, ``<dock>.svg`` where
    it has plots, and ``captions.json`` and ``captions.txt`` saying what each file shows.
    Returns the files written, the two caption files last."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise StorageError(f"{folder}: is a file; choose a folder to export the views into")
    written: list[Path] = []
    records = []
    for key in window.docks:
        if not window.dock_on_screen(key):
            continue
        widget = content(window, key)
        files = [export_png(widget, folder / f"{key}.png", scale)]
        if svg and has_svg(widget):
            files.append(export_svg(widget, folder / f"{key}.svg"))
        record = caption(window, key)
        for path in files:
            records.append({"file": path.name, **record})
        written += files
    if not records:
        raise UserError("no dock is on screen to export; show one (View menu) and try again")
    written.append(write_json(folder / "captions.json", {"scale": scale, "files": records}, indent=1))
    written.append(write_text(folder / "captions.txt", "".join(f"{r['file']}: {caption_line(r)}\n" for r in records)))
    return written


def raised_dock(window) -> str | None:
    """The dock a copy means: the one holding the keyboard focus, else the largest on screen."""
    focus = QGuiApplication.focusObject()
    for key, dock in window.docks.items():
        if isinstance(focus, QWidget) and dock.isAncestorOf(focus) and window.dock_on_screen(key):
            return key
    shown = [key for key in window.docks if window.dock_on_screen(key)]
    if not shown:
        return None
    return max(shown, key=lambda k: window.docks[k].width() * window.docks[k].height())


# --- menus --------------------------------------------------------------------------------
class Figures:
    """The window's export menus, context menus and the copy shortcut, built from its docks.

    File > Export view > <dock> > PNG 1x / 2x / 3x, SVG (enabled while the dock shows a plot),
    Copy; File > Export all views…; the same per-dock entries in each view's context menu;
    Ctrl+Shift+C copies the dock with the focus (else the largest on screen). The recording
    entries call the window's ``recording`` controller (:mod:`widgets.recording`).
    """

    def __init__(self, window) -> None:
        self.window = window
        for key in window.docks:
            view = content(window, key)
            view.setContextMenuPolicy(Qt.ActionsContextMenu)
            for action in self._actions(key, view):
                view.addAction(action)
        self.copy_shortcut = QShortcut(QKeySequence("Ctrl+Shift+C"), window, self.copy_raised)

    def _actions(self, key: str, parent) -> list[QAction]:
        title = row(key).title
        actions = []
        for scale in SCALES:
            action = QAction(f"Export {title} as PNG {scale}x…", parent)
            action.triggered.connect(lambda _=False, k=key, s=scale: self.png_dialog(k, s))
            actions.append(action)
        svg = QAction(f"Export {title} as SVG…", parent)
        svg.triggered.connect(lambda _=False, k=key: self.svg_dialog(k))
        copy = QAction(f"Copy {title} to the clipboard", parent)
        copy.triggered.connect(lambda _=False, k=key: self.copy(k))
        return [*actions, svg, copy]

    def add_to(self, menu: QMenu) -> None:
        """The export and recording entries of the File menu."""
        export = menu.addMenu("&Export view")
        for key in self.window.docks:
            sub = export.addMenu(row(key).title)
            actions = self._actions(key, sub)
            for action in actions:
                action.setText(action.text().replace(f" {row(key).title}", "", 1))
                sub.addAction(action)
            svg = actions[len(SCALES)]
            sub.aboutToShow.connect(lambda k=key, a=svg: a.setEnabled(has_svg(content(self.window, k))))
        export.addSeparator()
        copy = export.addAction("Copy the current view", self.copy_raised)
        copy.setShortcut(QKeySequence("Ctrl+Shift+C"))
        copy.setShortcutContext(Qt.WidgetShortcut)  # the window's QShortcut does the work
        menu.addAction("Export &all views…", self.all_dialog)
        record = menu.addMenu("&Record view")
        for key in self.window.docks:
            sub = record.addMenu(row(key).title)
            sub.addAction("Live (until Stop recording)…", lambda k=key: self.record_dialog(k, None))
            for step in ("channels", "layers", "heads"):
                sub.addAction(f"Step through {step}…", lambda k=key, s=step: self.record_dialog(k, s))
        self.stop_action = menu.addAction("S&top recording", lambda: self.window.recording.stop())
        # (the recording controller is made after the menus: asked when the menu opens)
        menu.aboutToShow.connect(lambda: self.stop_action.setEnabled(self.window.recording.recording))

    # --- actions ---------------------------------------------------------------------
    def _save_path(self, title: str, name: str, filters: str) -> str:
        """A file name from the save dialog; without a suffix, the chosen filter's (``*.gif``)."""
        path, chosen = QFileDialog.getSaveFileName(self.window, title, name, filters)
        if path and not Path(path).suffix:
            found = re.search(r"\*(\.\w+)", chosen or filters)
            path += found.group(1) if found else ""
        return path

    def _report(self, work) -> None:
        try:
            saved = work()
        except UserError as exc:
            self.window.notify(str(exc), error=True)
        else:
            if saved is not None:
                self.window.notify(f"saved {saved}")

    def png_dialog(self, key: str, scale: int) -> None:
        path = self._save_path("Export PNG", f"vizapp-{key}@{scale}x.png", "PNG images (*.png)")
        if path:
            self._report(lambda: export_png(content(self.window, key), path, scale))

    def svg_dialog(self, key: str) -> None:
        widget = content(self.window, key)
        if not has_svg(widget):
            self.window.notify(f"the {row(key).title} dock shows no plot to save as SVG; "
                               "export it as a PNG", error=True)
            return
        path = self._save_path("Export SVG", f"vizapp-{key}.svg", "SVG drawings (*.svg)")
        if path:
            self._report(lambda: export_svg(widget, path))

    def copy(self, key: str) -> QImage:
        image = copy_image(content(self.window, key))
        self.window.notify(f"copied {row(key).title} ({image.width()}x{image.height()})")
        return image

    def copy_raised(self) -> None:
        key = raised_dock(self.window)
        if key is not None:
            self.copy(key)

    def all_dialog(self) -> None:
        from PySide6.QtWidgets import QInputDialog

        folder = QFileDialog.getExistingDirectory(self.window, "Export all views into")
        if not folder:
            return
        scale, ok = QInputDialog.getItem(self.window, "Export all views", "PNG scale",
                                         [f"{s}x" for s in SCALES], SCALES.index(DEFAULT_SCALE), False)
        if ok:
            self._report(lambda: f"{len(export_all(self.window, folder, int(scale[0]))) - 2} files and captions "
                                 f"in {folder}")

    def record_dialog(self, key: str, step: str | None) -> None:
        what = "live" if step is None else step
        path = self._save_path("Record view", f"vizapp-{key}-{what}.gif",
                               "Animated GIF (*.gif);;MP4 video (*.mp4)")
        if path:
            recording = self.window.recording
            self._report(lambda: recording.start_live(key, path) if step is None else recording.start_steps(key, step, path))

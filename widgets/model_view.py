"""The Model dock: pick a model, see its layer tree; selecting a layer drives every view."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from widgets.common import heading

__all__ = ["ModelView"]


class ModelView(QWidget):
    """Model picker, device picker and the layer tree (type, output shape, parameters).

    Signals
    -------
    sigModelRequested(name_or_path, arch, trust)
        Open this model (the picker, or "Open weights…").
    sigDeviceChanged(device)
        The user chose another device.
    """

    sigModelRequested = Signal(str, str, bool)
    sigDeviceChanged = Signal(str)

    def __init__(self, session, specs: list | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        if specs is None:
            from models import list_specs  # the registry: loaded with the window

            specs = list_specs()
        self.session = session
        self.picker = QComboBox()
        # As wide as the dock gives (a long model title must not widen the left column).
        self.picker.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.picker.setMinimumContentsLength(18)
        self.picker.setToolTip("Models from the registry; 'download' ones fetch their weights on first use")
        for spec in specs:
            self.picker.addItem(spec.title, spec.name)
        self.picker.activated.connect(self._picked)
        self.open_file = QPushButton("Open weights…")
        self.open_file.clicked.connect(self.open_file_dialog)
        self.trust = QCheckBox("I trust this file")
        self.trust.setToolTip("Allow a pickled model file to run its code while loading")
        self.device = QComboBox()
        self.device.addItem(session.device)
        self.device.activated.connect(lambda _i: self.sigDeviceChanged.emit(self.device.currentText()))
        self.title = heading("no model", "label")
        self.info = heading("", "note", bold=False)
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(["layer", "type", "output", "params", "share"])
        self.tree.setUniformRowHeights(True)
        self.tree.header().setSectionResizeMode(0, QHeaderView.ResizeToContents)
        self.tree.currentItemChanged.connect(self._tree_selection)
        self._items: dict[str, QTreeWidgetItem] = {}

        row = QHBoxLayout()
        row.addWidget(self.picker, 1)
        row.addWidget(self.device)
        row2 = QHBoxLayout()
        row2.addWidget(self.open_file)
        row2.addWidget(self.trust)
        row2.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addLayout(row2)
        layout.addWidget(self.title)
        layout.addWidget(self.info)
        layout.addWidget(self.tree, 1)

        session.events.model.connect(self._model_changed)
        session.events.layer.connect(self._layer_changed)
        session.events.device.connect(self.set_device)
        session.events.catalog.connect(self._catalog_changed)

    # --- requests ----------------------------------------------------------------
    def _picked(self, index: int) -> None:
        self.sigModelRequested.emit(self.picker.itemData(index), "", False)

    def open_file_dialog(self) -> None:
        """Ask for a model file and its architecture, and request it (File > Open model weights…)."""
        path, _ = QFileDialog.getOpenFileName(
            self, "Open model weights", "", "Model files (*.pt *.pth *.safetensors *.bin *.ckpt);;All files (*)"
        )
        if not path:
            return
        arch, ok = QInputDialog.getText(
            self, "Architecture", "Architecture for a bare state dict (e.g. resnet18); empty for a TorchScript or pickled model:"
        )
        if ok:
            trust = self.trust.isChecked()
            self.trust.setChecked(False)  # trust is given per file, never left on
            self.sigModelRequested.emit(path, arch.strip(), trust)

    def _tree_selection(self, current: QTreeWidgetItem | None, _previous) -> None:
        if current is not None:
            name = current.data(0, Qt.UserRole)
            if name:
                self.session.select_layer(name)

    # --- rendering ---------------------------------------------------------------
    def set_catalog(self, entries: list, devices: list[str]) -> None:
        """``[(spec, usable offline)]`` and the devices, from the engine's ``catalog`` job."""
        current = self.picker.currentData()
        self.picker.clear()
        for spec, offline in entries:
            self.picker.addItem(f"{spec.title}  ({'offline' if offline else 'download'})", spec.name)
        i = self.picker.findData(current)
        self.picker.setCurrentIndex(max(i, 0) if current is not None else -1)
        chosen = self.device.currentText()
        self.device.clear()
        self.device.addItems(devices)
        self.set_device(chosen)

    def _catalog_changed(self, catalog: tuple) -> None:
        self.set_catalog(*catalog)
        if self.session.model is not None:
            self.set_model(self.session.model)

    def set_model(self, model) -> None:
        """Point the picker at ``model`` (or leave it blank for a user's file)."""
        self.picker.setCurrentIndex(self.picker.findData(model.name))

    def _model_changed(self, model) -> None:
        s = self.session
        warn = "" if model.trained else "  — UNTRAINED (random weights)"
        self.title.setText(f"{model.title}{warn}")
        notes = "".join(f"\n⚠ {n}" for n in model.notes)
        self.info.setText(
            f"{model.num_parameters:,} parameters · input {model.input_size}×{model.input_size} · {model.device}\n"
            f"{model.preprocess.describe()}{notes}"
        )
        self.set_model(model)
        self.tree.blockSignals(True)
        self.tree.clear()
        self._items.clear()
        parents: dict[str, QTreeWidgetItem] = {}
        for row in s.layers:
            if not row.name:
                continue
            parent_name = row.name.rsplit(".", 1)[0] if "." in row.name else ""
            parent = parents.get(parent_name, self.tree.invisibleRootItem())
            shape = "×".join(map(str, row.shape)) if row.shape else "–"
            item = QTreeWidgetItem(parent, [row.name.rsplit(".", 1)[-1], row.type, shape, f"{row.params:,}", f"{100 * row.share:.1f}%"])
            item.setData(0, Qt.UserRole, row.name)
            item.setToolTip(0, row.name)
            for col in (3, 4):
                item.setTextAlignment(col, Qt.AlignRight | Qt.AlignVCenter)
            parents[row.name] = item
            self._items[row.name] = item
        self.tree.blockSignals(False)
        self.set_device(model.device)

    def _layer_changed(self, name: str | None) -> None:
        item = self._items.get(name or "")
        if item is not None and self.tree.currentItem() is not item:
            self.tree.blockSignals(True)
            self.tree.setCurrentItem(item)
            self.tree.scrollToItem(item)
            self.tree.blockSignals(False)

    def set_device(self, device: str) -> None:
        i = self.device.findText(device)
        if i < 0 and device:
            self.device.addItem(device)
            i = self.device.findText(device)
        self.device.setCurrentIndex(i)

    def item_for(self, name: str) -> QTreeWidgetItem | None:
        return self._items.get(name)

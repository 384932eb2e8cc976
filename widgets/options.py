"""Small helpers for the views' ``view_options()`` / ``set_view_options(dict)`` (what a scene
keeps of each view, ``widgets/controllers/lecture.py``): a view's options are plain JSON values,
and an unknown or out-of-range value from a scene file is skipped, never an exception."""

from __future__ import annotations

from PySide6.QtWidgets import QAbstractSlider, QAbstractSpinBox, QCheckBox, QComboBox

__all__ = ["set_check", "set_combo", "set_slider"]


def set_combo(combo: QComboBox, value) -> bool:
    """Select the item whose data is ``value``; whether the selection changed (False if absent)."""
    row = combo.findData(value) if isinstance(value, str) else -1
    if row < 0 or row == combo.currentIndex():
        return False
    combo.setCurrentIndex(row)
    return True


def set_slider(slider: QAbstractSlider | QAbstractSpinBox, value) -> bool:
    """Set an integer within the slider's range; whether it changed (False for a non-integer)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    value = min(max(int(round(value)), slider.minimum()), slider.maximum())
    if value == slider.value():
        return False
    slider.setValue(value)
    return True


def set_check(box: QCheckBox, value) -> bool:
    """Tick or untick ``box``; whether it changed (False for a non-boolean)."""
    if not isinstance(value, bool) or value == box.isChecked():
        return False
    box.setChecked(value)
    return True

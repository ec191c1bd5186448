"""The compare view's control row: for rows and for columns, a dimension (methods, classes,
layers) and a checkable list of its values."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from PySide6.QtCore import Signal
from PySide6.QtGui import QAction, QMouseEvent
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QMenu, QPushButton, QWidget

from .compare_model import DIMENSIONS, MAX_VALUES, TITLES

__all__ = ["AxisPicker", "StayOpenMenu"]


class StayOpenMenu(QMenu):
    """A menu whose checkable entries toggle without closing it, so several can be picked in a row."""

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        action = self.activeAction()
        if action is not None and action.isEnabled() and action.isCheckable():
            action.trigger()
            event.accept()
            return
        super().mouseReleaseEvent(event)


class AxisPicker(QWidget):
    """"Rows: [Methods ▾] [Grad-CAM, Grad-CAM++ ▾]" — objectNames "<name>Dimension" and "<name>Values".

    ``set_state(dimension, entries, chosen)``: ``entries`` are (value, label, detail) in menu order
    (the detail, e.g. a class's probability, is right-aligned in the menu).
    Signals ``dimensionChosen(str)`` and ``valuesChosen(list)`` (the values checked, menu order;
    never empty, at most ``MAX_VALUES``).
    """

    dimensionChosen = Signal(str)
    valuesChosen = Signal(list)

    def __init__(self, title: str, name: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._entries: list[tuple[object, str, str]] = []
        self._chosen: list = []
        self._dimension = DIMENSIONS[0]
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        label = QLabel(title)
        self.box = QComboBox()
        self.box.setObjectName(f"{name}Dimension")
        for dimension in DIMENSIONS:
            self.box.addItem(TITLES[dimension], dimension)
        self.box.setToolTip(f"What the {title.lower()} of the grid compare")
        label.setBuddy(self.box)
        self.button = QPushButton()
        self.button.setObjectName(f"{name}Values")
        self.button.setToolTip(f"Which {title.lower()} to show (up to {MAX_VALUES})")
        self.menu = StayOpenMenu(self.button)
        self.button.setMenu(self.menu)
        for widget in (label, self.box, self.button):
            layout.addWidget(widget)
        self.box.activated.connect(lambda index: self.dimensionChosen.emit(self.box.itemData(index)))

    def set_state(self, dimension: str, entries: Sequence[tuple[object, str, str]], chosen: Sequence) -> None:
        """Show ``dimension`` with ``entries`` (value, label, detail), ``chosen`` checked."""
        self._dimension, self._entries, self._chosen = dimension, list(entries), list(chosen)
        self.box.setCurrentIndex(self.box.findData(dimension))
        self.menu.clear()
        for value, label, detail in self._entries:
            action = QAction(f"{label}\t{detail}" if detail else label, self.menu)
            action.setCheckable(True)
            action.setChecked(value in self._chosen)
            action.setData(value)
            action.toggled.connect(self._make_toggle(value))
            self.menu.addAction(action)
        self._update_enabled()
        self._update_text()

    def chosen(self) -> list:
        """The values checked, in menu order."""
        return list(self._chosen)

    def _make_toggle(self, value) -> Callable[[bool], None]:
        def toggle(checked: bool) -> None:
            order = [entry[0] for entry in self._entries]
            chosen = set(self._chosen) | {value} if checked else set(self._chosen) - {value}
            self._chosen = [v for v in order if v in chosen]
            self._update_enabled()
            self._update_text()
            self.valuesChosen.emit(list(self._chosen))
        return toggle

    def _update_enabled(self) -> None:
        """The last checked entry cannot be unchecked; no more than MAX_VALUES can be checked."""
        full = len(self._chosen) >= MAX_VALUES
        for action in self.menu.actions():
            checked = action.isChecked()
            action.setEnabled((checked and len(self._chosen) > 1) or (not checked and not full))

    def _update_text(self) -> None:
        labels = {value: label for value, label, _detail in self._entries}
        names = [labels.get(v, str(v)) for v in self._chosen]
        text = ", ".join(names)
        fm = self.button.fontMetrics()
        limit = 22 * fm.horizontalAdvance("M")
        if fm.horizontalAdvance(text) > limit:
            text = f"{len(names)} {TITLES[self._dimension].lower()}"
        self.button.setText(text)

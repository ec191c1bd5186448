"""The compare view's control row: for rows and for columns, a dimension (methods, classes,
layers) and a checkable list of its values; a swap button; what the grid takes from the main view."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from PySide6.QtCore import Signal
from PySide6.QtGui import QAction, QMouseEvent
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QMenu, QPushButton, QToolButton, QWidget

from gradcam_desktop.ui.compare.axes import DIMENSIONS, MAX_VALUES, TITLES, Context, Grid

__all__ = ["AxisPicker", "CompareControls", "StayOpenMenu"]


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
        """One value by name, several by count ("3 methods"): the headers name them, and a short
        button keeps the row from squeezing; the tooltip lists them."""
        labels = {value: label for value, label, _detail in self._entries}
        names = [labels.get(v, str(v)) for v in self._chosen]
        noun = TITLES[self._dimension].lower()
        self.button.setText(names[0] if len(names) == 1 else f"{len(names)} {noun}")
        self.button.setToolTip(f"{', '.join(names)}\nChoose which {noun} to show (up to {MAX_VALUES}).")


class CompareControls(QWidget):
    """Rows picker, swap button, columns picker and the note on what comes from the main view
    (objectNames "compareRows…", "compareSwap", "compareColumns…", "compareFixed")."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.rows = AxisPicker("Rows", "compareRows")
        self.columns = AxisPicker("Columns", "compareColumns")
        self.swap = QToolButton()
        self.swap.setObjectName("compareSwap")
        self.swap.setText("⇄")
        self.swap.setToolTip("Swap rows and columns")
        self.swap.setAutoRaise(True)
        self.fixed = QLabel()
        self.fixed.setObjectName("compareFixed")
        self.fixed.setToolTip("The rest is taken from the main view: pick another layer, class, method or "
                              "score there and the grid follows.")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 6)
        layout.setSpacing(8)
        for widget in (self.rows, self.swap, self.columns):
            layout.addWidget(widget)
        layout.addStretch(1)
        layout.addWidget(self.fixed)

    def show_grid(self, grid: Grid, context: Context | None, keep: str | None = None) -> None:
        """Show ``grid``'s axes with ``context``'s choices (None: nothing to choose yet); the picker
        named by ``keep`` ("rows"/"columns") is left alone: its menu is open and already right."""
        for widget in (self.rows, self.columns, self.swap):
            widget.setEnabled(context is not None)
        if context is None:
            self.fixed.setText("")
            return
        for axis, picker, values in (("rows", self.rows, grid.row_values),
                                     ("columns", self.columns, grid.column_values)):
            if axis == keep:
                continue  # refilling an open menu would delete the entry just clicked
            dimension = getattr(grid, axis)
            entries = [(v, context.label(dimension, v), context.detail(dimension, v)) for v in context.choices(dimension)]
            picker.set_state(dimension, entries, values)
        self.fixed.setText(f"{context.fixed_text(grid.fixed)} (as in the main view)")

"""The confusion matrix beside the triage table (objectName ``confusionMatrix``).

Rows are the true classes, columns the predicted ones; each cell shows its count on a colour
whose strength grows with the count (square root: a few mistakes stay visible next to hundreds of
right answers). The diagonal (right answers) is blue, the rest (mistakes) orange, mixed into the
palette's base colour so the matrix reads in a light and a dark theme; the text is black or white,
whichever contrasts more. A click on a cell emits ``cellChosen((true, predicted))``; a second
click on the same cell, or ``clear_choice``, emits ``cellChosen(None)``.

With many classes (ImageNet's 1,000) only the classes that occur in the rows get a row and a
column, so the matrix stays readable.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PySide6.QtCore import QAbstractTableModel, QItemSelectionModel, QModelIndex, QPersistentModelIndex, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPalette, QPen, QPixmap
from PySide6.QtWidgets import (QAbstractItemView, QHeaderView, QStyle, QStyledItemDelegate, QStyleOptionViewItem,
                               QTableView, QWidget)

__all__ = ["ConfusionMatrixModel", "ConfusionMatrixView", "FULL_AXIS_CLASSES"]

#: Up to this many classes every class gets a row and a column; beyond, only those that occur.
FULL_AXIS_CLASSES = 30
_RIGHT = QColor(52, 120, 220)
_WRONG = QColor(235, 110, 30)
_Index = QModelIndex | QPersistentModelIndex


class ConfusionMatrixModel(QAbstractTableModel):
    """Counts per (true, predicted) class; ``add_rows`` takes ``TriageRow``s (error rows are skipped)."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._names: list[str] = []
        self._counts = np.zeros((0, 0), dtype=np.int64)
        self._axis: list[int] = []  # the class indices shown, in order
        self.base = QColor(255, 255, 255)

    def set_classes(self, names: list[str]) -> None:
        """A new model (or folder): empty counts over these classes."""
        self.beginResetModel()
        self._names = list(names)
        self._counts = np.zeros((len(names), len(names)), dtype=np.int64)
        self._axis = list(range(len(names))) if len(names) <= FULL_AXIS_CLASSES else []
        self.endResetModel()

    def add_rows(self, rows: list[Any]) -> None:
        n = len(self._names)
        for row in rows:
            if row.error or row.predicted_index is None or not (0 <= row.true_index < n and 0 <= row.predicted_index < n):
                continue
            self._counts[row.true_index, row.predicted_index] += 1
        new = sorted(set(np.flatnonzero(self._counts.sum(0) + self._counts.sum(1)).tolist()) - set(self._axis))
        if new and len(self._names) > FULL_AXIS_CLASSES:
            self.beginResetModel()
            self._axis = sorted(self._axis + new)
            self.endResetModel()
        elif self._axis:
            self.dataChanged.emit(self.index(0, 0), self.index(len(self._axis) - 1, len(self._axis) - 1))

    def matrix(self) -> np.ndarray:
        """The full counts (rows: true class, columns: predicted), every class."""
        return self._counts.copy()

    def names(self) -> list[str]:
        return list(self._names)

    def axis(self) -> list[int]:
        """The class indices of the rows (and columns) shown."""
        return list(self._axis)

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self._axis)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._axis)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not 0 <= section < len(self._axis):
            return None
        name = self._names[self._axis[section]]
        if role == Qt.ItemDataRole.DisplayRole:
            return name
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"True class {name}" if orientation == Qt.Orientation.Vertical else f"Predicted {name}"
        return None

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        true, predicted = self._axis[index.row()], self._axis[index.column()]
        count = int(self._counts[true, predicted])
        if role == Qt.ItemDataRole.DisplayRole:
            return str(count) if count else ""
        if role == Qt.ItemDataRole.UserRole:
            return (true, predicted)
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return int(Qt.AlignmentFlag.AlignCenter)
        if role in (Qt.ItemDataRole.BackgroundRole, Qt.ItemDataRole.ForegroundRole):
            background = self._colour(count, true == predicted)
            if role == Qt.ItemDataRole.BackgroundRole:
                return background
            return QColor(0, 0, 0) if _luminance(background) > 0.45 else QColor(255, 255, 255)
        if role == Qt.ItemDataRole.ToolTipRole:
            total = int(self._counts[true].sum())
            share = f" ({100 * count / total:.0f} % of the {total} {self._names[true]})" if total else ""
            return (f"{count} {self._names[true]} predicted as {self._names[predicted]}{share}. "
                    "Click to show them in the table; click again to show all.")
        return None

    def _colour(self, count: int, right: bool) -> QColor:
        peak = int(self._counts.max()) if self._counts.size else 0
        strength = 0.0 if not count or not peak else 0.2 + 0.8 * math.sqrt(count / peak)
        hue = _RIGHT if right else _WRONG
        base = self.base
        return QColor(*(round(b + (h - b) * strength) for b, h in
                        ((base.red(), hue.red()), (base.green(), hue.green()), (base.blue(), hue.blue()))))


def _luminance(colour: QColor) -> float:
    return (0.2126 * colour.redF() + 0.7152 * colour.greenF() + 0.0722 * colour.blueF())


class _CellDelegate(QStyledItemDelegate):
    """The chosen cell keeps its colour (the selection colour would hide it) and gets a frame instead.

    ``plain``: no frame and no hover highlight either (the matrix as exported).
    """

    plain_states = QStyle.StateFlag.State_Selected | QStyle.StateFlag.State_HasFocus

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.plain = False

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: _Index) -> None:
        selected = bool(option.state & QStyle.StateFlag.State_Selected) and not self.plain
        plain = QStyleOptionViewItem(option)
        plain.state &= ~self.plain_states
        if self.plain:
            plain.state &= ~QStyle.StateFlag.State_MouseOver
        super().paint(painter, plain, index)
        if selected:
            painter.save()
            painter.setPen(QPen(option.palette.color(QPalette.ColorRole.Text), 3))
            painter.drawRect(option.rect.adjusted(1, 1, -2, -2))
            painter.restore()


class ConfusionMatrixView(QTableView):
    """The matrix as a table (objectName ``confusionMatrix``); ``cellChosen`` on a click."""

    cellChosen = Signal(object)  # (true index, predicted index) or None

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("confusionMatrix")
        self.matrix_model = ConfusionMatrixModel(self)
        self.setModel(self.matrix_model)
        self._delegate = _CellDelegate(self)
        self.setItemDelegate(self._delegate)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setCornerButtonEnabled(False)
        self.setWordWrap(False)
        for header in (self.horizontalHeader(), self.verticalHeader()):
            header.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
            header.setDefaultSectionSize(46)
            header.setHighlightSections(True)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.verticalHeader().setDefaultSectionSize(30)
        self.setToolTip("Rows: the true class; columns: the predicted class. Click a cell to see its pictures.")
        self._chosen: tuple[int, int] | None = None
        self.clicked.connect(self._on_click)
        self._follow_palette()

    def chosen(self) -> tuple[int, int] | None:
        """The cell the table is filtered to, or None."""
        return self._chosen

    def clear_choice(self) -> None:
        """Show all again (emits ``cellChosen(None)`` if a cell was chosen)."""
        self.clearSelection()
        if self._chosen is not None:
            self._chosen = None
            self.cellChosen.emit(None)

    def render_plain(self) -> QPixmap:
        """The matrix as it looks with nothing chosen: no frame, no hover, no highlighted header sections
        (what "Export matrix…" saves; the chosen cell and the table's filter stay as they are)."""
        selection = self.selectionModel()
        chosen, current = selection.selectedIndexes(), QPersistentModelIndex(selection.currentIndex())
        self._delegate.plain = True
        blocked = selection.blockSignals(True)  # nobody else must think the choice changed
        try:
            selection.clear()
            for header in (self.horizontalHeader(), self.verticalHeader()):
                header.viewport().update()
            return self.grab()
        finally:
            for index in chosen:
                selection.select(index, QItemSelectionModel.SelectionFlag.Select)
            if current.isValid():
                selection.setCurrentIndex(current, QItemSelectionModel.SelectionFlag.NoUpdate)
            selection.blockSignals(blocked)
            self._delegate.plain = False
            self.viewport().update()
            for header in (self.horizontalHeader(), self.verticalHeader()):
                header.viewport().update()

    def cell_rect(self, true: int, predicted: int):
        """The viewport rectangle of the cell (true class, predicted class); for tests and tooltips."""
        axis = self.matrix_model.axis()
        return self.visualRect(self.matrix_model.index(axis.index(true), axis.index(predicted)))

    def _on_click(self, index: QModelIndex) -> None:
        cell = index.data(Qt.ItemDataRole.UserRole)
        if cell is None:
            return
        if cell == self._chosen:
            self.clear_choice()
            return
        self._chosen = cell
        self.cellChosen.emit(cell)

    def changeEvent(self, event: Any) -> None:
        super().changeEvent(event)
        if event.type() == event.Type.PaletteChange:
            self._follow_palette()

    def _follow_palette(self) -> None:
        self.matrix_model.base = self.palette().color(QPalette.ColorRole.Base)
        model = self.matrix_model
        if model.rowCount():
            model.dataChanged.emit(model.index(0, 0), model.index(model.rowCount() - 1, model.columnCount() - 1))

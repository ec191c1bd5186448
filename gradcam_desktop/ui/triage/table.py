"""The triage table's Qt models: rows of ``core.triage.TriageRow`` under a table model and a filter proxy.

``TriageTableModel`` holds the rows (paths and numbers only, never pixels) and appends them as
the worker's job streams them in (``beginInsertRows``: the view keeps its scroll position and
selection). Its thumbnail column asks a ``thumbnails.ThumbnailCache`` (small pictures made off the
UI thread, bounded); while a thumbnail is being made the cell is empty and ``dataChanged`` fills
it later. ``TriageFilter`` sorts by a number per column (``SORT_ROLE``) and filters: mistakes only,
a class (true or predicted), a confusion-matrix cell (true, predicted), a probability range and
text in the file name or class names.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, QSortFilterProxyModel, Qt

__all__ = ["COLUMNS", "ROW_ROLE", "SORT_ROLE", "TriageFilter", "TriageTableModel"]

#: (title, tooltip) per column, in order.
COLUMNS = (
    ("", "A small copy of the picture"),
    ("File", "The picture's file name (hover for its path)"),
    ("True class", "The class the folder or CSV gives"),
    ("Predicted", "The class the model predicts"),
    ("Probability", "The model's probability for its predicted class"),
    ("P(true)", "The model's probability for the true class"),
    ("", "✓ right, ✗ wrong, ! the picture could not be read"),
    ("Margin", "P(true) minus the highest other probability: below 0 the model is wrong, near 0 it hesitates"),
)
THUMB, FILE, TRUE, PREDICTED, PROBABILITY, TRUE_PROBABILITY, CORRECT, MARGIN = range(len(COLUMNS))
#: The number (or text) each column sorts by.
SORT_ROLE = Qt.ItemDataRole.UserRole
#: The ``TriageRow`` itself.
ROW_ROLE = Qt.ItemDataRole.UserRole + 1
_Index = QModelIndex | QPersistentModelIndex


def _number(value: Any) -> float:
    """A float for sorting; NaN/None (an unreadable picture) sorts as -inf, first in ascending order."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return -math.inf
    return -math.inf if math.isnan(number) else number


def _percent(value: Any) -> str:
    number = _number(value)
    return "" if number == -math.inf else f"{100 * number:.1f} %"


class TriageTableModel(QAbstractTableModel):
    """The triage rows (``TriageRow``-like objects); ``thumbnails`` supplies the first column's pictures."""

    def __init__(self, thumbnails: Any = None, parent: Any = None) -> None:
        super().__init__(parent)
        self._rows: list[Any] = []
        self._thumbnails = thumbnails
        if thumbnails is not None:
            thumbnails.ready.connect(self._thumbnail_ready)

    # -- content --------------------------------------------------------------------------------
    def append_rows(self, rows: list[Any]) -> None:
        """Add rows at the end (a batch from the job)."""
        if not rows:
            return
        start = len(self._rows)
        self.beginInsertRows(QModelIndex(), start, start + len(rows) - 1)
        self._rows.extend(rows)
        self.endInsertRows()

    def clear(self) -> None:
        self.beginResetModel()
        self._rows = []
        self.endResetModel()

    def rows(self) -> list[Any]:
        """All rows, in the order they came (a copy)."""
        return list(self._rows)

    def row_at(self, row: int) -> Any:
        return self._rows[row]

    # -- QAbstractTableModel --------------------------------------------------------------------
    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008 - Qt's signature
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation != Qt.Orientation.Horizontal or not 0 <= section < len(COLUMNS):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section][0]
        if role == Qt.ItemDataRole.ToolTipRole:
            return COLUMNS[section][1]
        return None

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        row, column = self._rows[index.row()], index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._text(row, column)
        if role == SORT_ROLE:
            return self._sort_key(row, column)
        if role == ROW_ROLE:
            return row
        if role == Qt.ItemDataRole.DecorationRole and column == THUMB and self._thumbnails is not None:
            return self._thumbnails.get(row.image)  # None until made (off the UI thread)
        if role == Qt.ItemDataRole.ToolTipRole:
            if row.error:
                return row.error
            return row.image if column in (THUMB, FILE) else None
        if role == Qt.ItemDataRole.TextAlignmentRole and column in (PROBABILITY, TRUE_PROBABILITY, MARGIN):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.TextAlignmentRole and column == CORRECT:
            return int(Qt.AlignmentFlag.AlignCenter)
        return None

    @staticmethod
    def _text(row: Any, column: int) -> str:
        if column == FILE:
            return Path(row.image).name
        if column == TRUE:
            return row.true_name
        if column == PREDICTED:
            return row.predicted_name if not row.error else ""
        if column == PROBABILITY:
            return _percent(row.probability)
        if column == TRUE_PROBABILITY:
            return _percent(row.true_probability)
        if column == CORRECT:
            return "!" if row.error else ("✓" if row.correct else "✗")
        if column == MARGIN:
            margin = _number(row.margin)
            return "" if margin == -math.inf else f"{margin:+.3f}"
        return ""

    @staticmethod
    def _sort_key(row: Any, column: int) -> Any:
        if column in (THUMB, FILE):
            return Path(row.image).name.lower()
        if column == TRUE:
            return row.true_name.lower()
        if column == PREDICTED:
            return (row.predicted_name or "").lower()
        if column == PROBABILITY:
            return _number(row.probability)
        if column == TRUE_PROBABILITY:
            return _number(row.true_probability)
        if column == CORRECT:
            return -1 if row.error else int(bool(row.correct))
        return _number(row.margin)

    def _thumbnail_ready(self, path: str) -> None:
        # Few rows are visible at a time; a linear scan per thumbnail is cheaper than an index to keep.
        for number, row in enumerate(self._rows):
            if row.image == path:
                index = self.index(number, THUMB)
                self.dataChanged.emit(index, index, [Qt.ItemDataRole.DecorationRole])


class TriageFilter(QSortFilterProxyModel):
    """Sorting by ``SORT_ROLE`` and the triage filters; ``set_*`` change one filter each."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.setSortRole(SORT_ROLE)
        self.mistakes_only = False
        self.class_index: int | None = None  # true or predicted
        self.cell: tuple[int, int] | None = None  # (true, predicted)
        self.probability_range = (0.0, 1.0)  # of the predicted class, inclusive
        self.text = ""

    def set_mistakes_only(self, on: bool) -> None:
        self._change("mistakes_only", bool(on))

    def set_class(self, index: int | None) -> None:
        self._change("class_index", index)

    def set_cell(self, cell: tuple[int, int] | None) -> None:
        self._change("cell", None if cell is None else (int(cell[0]), int(cell[1])))

    def set_probability_range(self, low: float, high: float) -> None:
        self._change("probability_range", (float(low), float(high)))

    def set_text(self, text: str) -> None:
        self._change("text", text.strip().lower())

    def _change(self, name: str, value: Any) -> None:
        if getattr(self, name) != value:
            self.beginFilterChange()
            setattr(self, name, value)
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def accepts(self, row: Any) -> bool:
        """Whether ``row`` passes every filter (the same test the view's rows pass)."""
        if self.mistakes_only and row.correct and not row.error:
            return False
        if self.class_index is not None and self.class_index not in (row.true_index, row.predicted_index):
            return False
        if self.cell is not None and (row.error or (row.true_index, row.predicted_index) != self.cell):
            return False
        low, high = self.probability_range
        if (low, high) != (0.0, 1.0):
            probability = _number(row.probability)
            if not low <= probability <= high:
                return False
        if self.text:
            haystack = " ".join((row.image, row.true_name, row.predicted_name or "", row.error or "")).lower()
            if self.text not in haystack:
                return False
        return True

    def filterAcceptsRow(self, source_row: int, source_parent: _Index) -> bool:
        model = self.sourceModel()
        return self.accepts(model.row_at(source_row)) if isinstance(model, TriageTableModel) else True

    def lessThan(self, left: _Index, right: _Index) -> bool:
        a, b = left.data(SORT_ROLE), right.data(SORT_ROLE)
        if type(a) is not type(b):
            return str(a) < str(b)
        return a < b

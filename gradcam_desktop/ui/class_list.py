"""The class picker: classes sorted by probability, a filter box, and probability bars."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import (QAbstractListModel, QModelIndex, QPersistentModelIndex, QRect, QSize,
                            QSortFilterProxyModel, Qt, Signal)
from PySide6.QtGui import QColor, QPainter, QPalette
from PySide6.QtWidgets import (QAbstractItemView, QApplication, QLineEdit, QListView, QStyle,
                               QStyledItemDelegate, QStyleOptionViewItem, QVBoxLayout, QWidget)

_Index = QModelIndex | QPersistentModelIndex


def format_probability(p: float) -> str:
    """"93.1 %"; tiny non-zero values read "<0.1 %" rather than a misleading "0.0 %"."""
    if 0.0 < p < 0.0005:
        return "<0.1 %"
    return f"{p * 100:.1f} %"


class ClassListModel(QAbstractListModel):
    """One row per class, most probable first (index order when there are no probabilities).

    Roles: ``DisplayRole`` → class name; ``Qt.ItemDataRole.UserRole`` → class index (int);
    ``ProbabilityRole`` (= UserRole + 1) → probability (float, None without probabilities);
    ``ToolTipRole`` → "dog: 93.1 %".

    Interface: ``set_classes(names, probabilities=None)``, ``clear()``, ``row_for_class(index)``.
    """

    ProbabilityRole = Qt.ItemDataRole.UserRole + 1

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._rows: list[tuple[int, str, float | None]] = []
        self._row_of: dict[int, int] = {}

    def set_classes(self, names: Sequence[str], probabilities: Sequence[float] | None = None) -> None:
        """Replace all rows; ``probabilities`` (one per name) sorts them, most probable first."""
        if probabilities is not None and len(probabilities) != len(names):
            raise ValueError(f"{len(names)} class names but {len(probabilities)} probabilities")
        self.beginResetModel()
        probs = [None] * len(names) if probabilities is None else [float(p) for p in probabilities]
        rows = [(i, str(n), p) for i, (n, p) in enumerate(zip(names, probs))]
        if probabilities is not None:
            rows.sort(key=lambda r: -r[2])  # stable: equal probabilities keep index order
        self._rows = rows
        self._row_of = {cls: row for row, (cls, _, _) in enumerate(rows)}
        self.endResetModel()

    def clear(self) -> None:
        """No classes (no model loaded)."""
        self.set_classes([], None)

    def row_for_class(self, class_index: int) -> int | None:
        """The row showing ``class_index``, or None."""
        return self._row_of.get(class_index)

    def rowCount(self, parent: _Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._rows)

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        cls, name, p = self._rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return name
        if role == Qt.ItemDataRole.UserRole:
            return cls
        if role == self.ProbabilityRole:
            return p
        if role == Qt.ItemDataRole.ToolTipRole:
            return name if p is None else f"{name}: {format_probability(p)}"
        return None


def _loose(text: str) -> str:
    # ImageNet names come as "golden_retriever" or "golden retriever": match either way.
    return text.replace("_", " ").casefold()


class ClassFilterProxyModel(QSortFilterProxyModel):
    """Keeps the rows whose name contains the filter text (case-insensitive; "_" matches " ").

    Keeps the source order (no sorting). ``set_filter_text(text)``, ``filter_text()``.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._needle = ""

    def filter_text(self) -> str:
        """The current filter text."""
        return self._needle

    def set_filter_text(self, text: str) -> None:
        """Show only names containing ``text``; empty shows all."""
        needle = _loose(text.strip())
        if needle == self._needle:
            return
        self.beginFilterChange()
        self._needle = needle
        self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def filterAcceptsRow(self, source_row: int, source_parent: _Index) -> bool:  # noqa: N802
        if not self._needle:
            return True
        name = self.sourceModel().index(source_row, 0, source_parent).data(Qt.ItemDataRole.DisplayRole)
        return self._needle in _loose(name or "")


class ProbabilityBarDelegate(QStyledItemDelegate):
    """Paints a bar as long as the probability behind the name, and the percentage at the right.

    Colours come from the view's palette (Highlight for the bar), so light and dark themes both
    work; on a selected row the bar uses the highlighted-text colour so it stays visible.
    """

    _PAD = 6

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: _Index) -> None:
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        style = opt.widget.style() if opt.widget else QApplication.style()
        selected = bool(opt.state & QStyle.StateFlag.State_Selected)
        opt.text = ""  # the panel (selection, hover, focus) comes from the style; text is ours
        style.drawControl(QStyle.ControlElement.CE_ItemViewItem, opt, painter, opt.widget)

        p = index.data(ClassListModel.ProbabilityRole)
        name = index.data(Qt.ItemDataRole.DisplayRole) or ""
        rect = opt.rect.adjusted(2, 2, -2, -2)
        pal = opt.palette
        enabled = bool(opt.state & QStyle.StateFlag.State_Enabled)
        group = QPalette.ColorGroup.Normal if enabled else QPalette.ColorGroup.Disabled
        text_color = pal.color(group, QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text)
        painter.save()
        width = round(rect.width() * min(p, 1.0)) if p is not None else 0
        if width > 0:
            role = QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Highlight
            bar = QColor(pal.color(group, role))
            bar.setAlpha(70 if selected else 90)
            painter.fillRect(QRect(rect.left(), rect.top(), width, rect.height()), bar)
        painter.setPen(text_color)
        painter.setFont(opt.font)
        fm = opt.fontMetrics
        text_rect = rect.adjusted(self._PAD, 0, -self._PAD, 0)
        pct = format_probability(p) if p is not None else ""
        pct_width = fm.horizontalAdvance("100.0 %") if pct else 0
        align = Qt.AlignmentFlag.AlignVCenter
        if pct:
            painter.drawText(text_rect, align | Qt.AlignmentFlag.AlignRight, pct)
        name_rect = text_rect.adjusted(0, 0, -(pct_width + self._PAD), 0)
        painter.drawText(name_rect, align | Qt.AlignmentFlag.AlignLeft,
                         fm.elidedText(name, Qt.TextElideMode.ElideRight, name_rect.width()))
        painter.restore()

    def sizeHint(self, option: QStyleOptionViewItem, index: _Index) -> QSize:  # noqa: N802
        # Rows a little taller than text so the bars read as bars.
        return QSize(160, option.fontMetrics.height() + 10)


class ClassListWidget(QWidget):
    """A "Find a class…" filter box above the class list (a QListView, objectName "classList").

    Signal ``classChosen(int)``: the class index the user picked (click or keyboard), or that
    ``select_class`` picked; emitted at most once per change, never for the class already chosen.
    Filtering never emits: a chosen class hidden by the filter stays chosen.

    Interface: ``set_classes(names, probabilities=None)`` (keeps the chosen class if it still
    exists, without emitting), ``clear()``, ``select_class(index) -> bool``,
    ``current_class() -> int | None``; attributes ``model`` (ClassListModel), ``proxy``
    (ClassFilterProxyModel, the view's model: UserRole on its indexes is the class index),
    ``filter_edit`` (QLineEdit) and ``view`` (QListView).
    """

    classChosen = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = ClassListModel(self)
        self.proxy = ClassFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.filter_edit = QLineEdit(self)
        self.filter_edit.setObjectName("classFilter")
        self.filter_edit.setPlaceholderText("Find a class…")
        self.filter_edit.setClearButtonEnabled(True)
        self.view = QListView(self)
        self.view.setObjectName("classList")
        self.view.setModel(self.proxy)
        self.view.setItemDelegate(ProbabilityBarDelegate(self.view))
        self.view.setUniformItemSizes(True)  # 1000 ImageNet rows: one size computation, not 1000
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addWidget(self.filter_edit)
        layout.addWidget(self.view)
        self._chosen: int | None = None
        self._silent = False
        self.filter_edit.textChanged.connect(self._on_filter)
        self.filter_edit.returnPressed.connect(self._choose_first_visible)
        self.view.selectionModel().currentChanged.connect(self._on_current)

    def set_classes(self, names: Sequence[str], probabilities: Sequence[float] | None = None) -> None:
        """Show ``names`` (sorted by ``probabilities`` if given); see the class docstring."""
        keep = self._chosen
        with _Silence(self):
            self.model.set_classes(names, probabilities)
            self._chosen = keep if keep is not None and self.model.row_for_class(keep) is not None else None
            self._show_chosen()
        self.view.scrollToTop()

    def clear(self) -> None:
        """No classes."""
        self.set_classes([], None)

    def current_class(self) -> int | None:
        """The chosen class index, or None."""
        return self._chosen

    def select_class(self, index: int) -> bool:
        """Choose class ``index`` (emits ``classChosen`` if it changed); False if there is none."""
        if self.model.row_for_class(index) is None:
            return False
        if self._chosen != index:
            self._chosen = index
            if not self._silent:
                self.classChosen.emit(index)
        with _Silence(self):
            self._show_chosen()
        return True

    def _proxy_index(self, class_index: int | None) -> QModelIndex:
        row = self.model.row_for_class(class_index) if class_index is not None else None
        if row is None:
            return QModelIndex()
        return self.proxy.mapFromSource(self.model.index(row, 0))

    def _show_chosen(self) -> None:
        """Highlight the chosen class if the filter shows it, nothing otherwise."""
        sel = self.view.selectionModel()
        index = self._proxy_index(self._chosen)
        if index.isValid():
            sel.setCurrentIndex(index, sel.SelectionFlag.ClearAndSelect)
            if self.view.isVisible():  # a hidden view has no height: it would scroll the top rows away
                self.view.scrollTo(index)
        else:
            sel.clear()  # a hidden row must not leave another row looking chosen

    def _on_current(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if self._silent or not current.isValid():
            return
        cls = current.data(Qt.ItemDataRole.UserRole)
        if cls is not None and cls != self._chosen:
            self._chosen = int(cls)
            self.classChosen.emit(self._chosen)

    def _on_filter(self, text: str) -> None:
        # Rows vanish under the filter and Qt moves "current" to a neighbour: that is not a choice.
        with _Silence(self):
            self.proxy.set_filter_text(text)
            self._show_chosen()

    def _choose_first_visible(self) -> None:
        if self.proxy.rowCount() > 0:
            self.select_class(int(self.proxy.index(0, 0).data(Qt.ItemDataRole.UserRole)))


class _Silence:
    """Context manager: selection changes inside it are not user choices (no classChosen)."""

    def __init__(self, widget: ClassListWidget) -> None:
        self._widget = widget
        self._before = widget._silent

    def __enter__(self) -> None:
        self._widget._silent = True

    def __exit__(self, *exc: object) -> None:
        self._widget._silent = self._before

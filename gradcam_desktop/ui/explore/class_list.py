"""The class picker: classes sorted by probability, a filter box, probability bars, and whether
the class is kept from picture to picture or follows each picture's top class.

A value (regression) head's rows keep their index order and show each value as text, without a bar
(no value is "more predicted" than another); a segmentation head's bar is the class's share of the
output pixels (``core.annotate.format_score`` says which in the tooltip)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from PySide6.QtCore import (QAbstractListModel, QEvent, QModelIndex, QObject, QPersistentModelIndex, QRect, QSize,
                            QSortFilterProxyModel, Qt, Signal)
from PySide6.QtGui import QColor, QFontMetrics, QMouseEvent, QPainter, QPalette
from PySide6.QtWidgets import (QAbstractItemView, QApplication, QLineEdit, QListView, QRadioButton, QSizePolicy, QStyle,
                               QStyledItemDelegate, QStyleOptionViewItem, QVBoxLayout, QWidget)

from gradcam_desktop.core.annotate import format_probability, format_score

__all__ = ["ClassFilterProxyModel", "ClassListModel", "ClassListWidget", "ProbabilityBarDelegate", "format_probability",
           "score_text"]

_Index = QModelIndex | QPersistentModelIndex
#: Names wider than this many "M"s are elided rather than widening the panel further.
_MAX_NAME_EMS = 18


class ClassListModel(QAbstractListModel):
    """One row per class, most probable first (index order when there are no probabilities, and for a
    value head, whose "probabilities" are its values).

    Roles: ``DisplayRole`` → class name; ``Qt.ItemDataRole.UserRole`` → class index (int);
    ``ProbabilityRole`` (= UserRole + 1) → probability, a value head's value (float, None without
    probabilities); ``ScoreTextRole`` → the text at the row's right ("93.1 %", a value's "31.2");
    ``BarRole`` → the bar's length 0..1 (None: no bar, as for a value); ``ToolTipRole`` → "dog: 93.1 %",
    "age: value 31.2", "road: 41.0 % of the pixels".

    Interface: ``set_classes(names, probabilities=None, head="")``, ``clear()``, ``row_for_class(index)``,
    ``head()``.
    """

    ProbabilityRole = Qt.ItemDataRole.UserRole + 1
    ScoreTextRole = Qt.ItemDataRole.UserRole + 2
    BarRole = Qt.ItemDataRole.UserRole + 3

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._rows: list[tuple[int, str, float | None]] = []
        self._row_of: dict[int, int] = {}
        self._head = ""

    def set_classes(self, names: Sequence[str], probabilities: Sequence[float] | None = None, head: str = "") -> None:
        """Replace all rows; ``probabilities`` (one per name) sorts them, most probable first — except a
        value head's (``head`` "value"): its values keep the index order."""
        if probabilities is not None and len(probabilities) != len(names):
            raise ValueError(f"{len(names)} class names but {len(probabilities)} probabilities")
        self.beginResetModel()
        rows: list[tuple[int, str, float | None]]
        if probabilities is None:
            rows = [(i, str(n), None) for i, n in enumerate(names)]
        else:
            ranked = [(i, str(n), float(p)) for i, (n, p) in enumerate(zip(names, probabilities))]
            if head != "value":
                ranked.sort(key=lambda r: -r[2])  # stable: equal probabilities keep index order
            rows = list(ranked)
        self._head = str(head or "")
        self._rows = rows
        self._row_of = {cls: row for row, (cls, _, _) in enumerate(rows)}
        self.endResetModel()

    def clear(self) -> None:
        """No classes (no model loaded)."""
        self.set_classes([], None)

    def row_for_class(self, class_index: int) -> int | None:
        """The row showing ``class_index``, or None."""
        return self._row_of.get(class_index)

    def name_of(self, class_index: int) -> str | None:
        """The name of ``class_index``, or None."""
        row = self._row_of.get(class_index)
        return None if row is None else self._rows[row][1]

    def names(self) -> list[str]:
        """Every class name, in row order."""
        return [name for _cls, name, _p in self._rows]

    def head(self) -> str:
        """The head kind the rows were given with ("" when not said: a classifier's probabilities)."""
        return self._head

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
        if role == self.ScoreTextRole:
            return "" if p is None else score_text(p, self._head)
        if role == self.BarRole:
            return None if p is None or self._head == "value" else p
        if role == Qt.ItemDataRole.ToolTipRole:
            return name if p is None else f"{name}: {format_score(p, self._head)}"
        return None


def score_text(value: float, head: str) -> str:
    """The short text at a row's right: "93.1 %" (a segmentation head's share of the pixels too), or a
    value head's value as ``format_score`` writes it, without the word ("31.2")."""
    return format_score(value, "value").removeprefix("value ") if head == "value" else format_probability(value)


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

    def filterAcceptsRow(self, source_row: int, source_parent: _Index) -> bool:
        if not self._needle:
            return True
        name = self.sourceModel().index(source_row, 0, source_parent).data(Qt.ItemDataRole.DisplayRole)
        return self._needle in _loose(name or "")


class ProbabilityBarDelegate(QStyledItemDelegate):
    """Paints a bar as long as the probability behind the name (``BarRole``), and the percentage (a value
    head: the value, no bar; ``ScoreTextRole``) at the right.

    Colours come from the view's palette (Highlight for the bar), so light and dark themes both
    work; on a selected row the bar uses the highlighted-text colour so it stays visible.
    """

    PAD = 6

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: _Index) -> None:
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        style = opt.widget.style() if opt.widget else QApplication.style()
        selected = bool(opt.state & QStyle.StateFlag.State_Selected)
        opt.text = ""  # the panel (selection, hover, focus) comes from the style; text is ours
        style.drawControl(QStyle.ControlElement.CE_ItemViewItem, opt, painter, opt.widget)

        p = index.data(ClassListModel.BarRole)
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
        text_rect = rect.adjusted(self.PAD, 0, -self.PAD, 0)
        pct = index.data(ClassListModel.ScoreTextRole) or ""
        pct_width = max(self.percent_width(fm), fm.horizontalAdvance(pct)) if pct else 0
        align = Qt.AlignmentFlag.AlignVCenter
        if pct:
            painter.drawText(text_rect, align | Qt.AlignmentFlag.AlignRight, pct)
        name_rect = text_rect.adjusted(0, 0, -(pct_width + self.PAD), 0)
        painter.drawText(name_rect, align | Qt.AlignmentFlag.AlignLeft,
                         fm.elidedText(name, Qt.TextElideMode.ElideRight, name_rect.width()))
        painter.restore()

    def sizeHint(self, option: QStyleOptionViewItem, index: _Index) -> QSize:
        # Rows a little taller than text so the bars read as bars.
        return QSize(160, option.fontMetrics.height() + 10)

    @staticmethod
    def percent_width(fm: QFontMetrics) -> int:
        """Room for the widest percentage, "100.0 %"."""
        return fm.horizontalAdvance("100.0 %")

    def row_width(self, fm: QFontMetrics, name_width: int) -> int:
        """The row width that shows a name ``name_width`` wide and its percentage uncut."""
        return 4 + 3 * self.PAD + name_width + self.percent_width(fm) + self.PAD


class ClassListWidget(QWidget):
    """The class list (a QListView, objectName "classList") under a "Find a class…" filter box and
    two radio buttons that say whether the class is kept on the next pictures:
    "Follow each picture's top class" (objectName "followTopClass") or "Keep class: NAME"
    ("keepClass").

    Signal ``classChosen(int)``: the user picked a class — a click on any row, *including the
    row already highlighted* (that is how the top class is kept), the keyboard, Enter in the
    filter box or "Keep class"; and ``select_class`` when it changes the class. Programmatic
    selection of the class already chosen and filtering never emit (a chosen class hidden by
    the filter stays chosen). Signal ``followTopChosen()``: the user picked "Follow each
    picture's top class". The widget only shows the mode (``set_kept``); the window decides.

    Interface: ``set_classes(names, probabilities=None, head="")`` (keeps the chosen class if it still
    exists, without emitting; ``head`` "value": index order, values as text), ``clear()``, ``select_class(index) -> bool``,
    ``current_class() -> int | None``, ``show_explained(index)`` (silent), ``set_kept(kept)``,
    ``is_kept()``, ``content_width()``;
    attributes ``model`` (ClassListModel), ``proxy`` (ClassFilterProxyModel, the view's model:
    UserRole on its indexes is the class index), ``filter_edit`` (QLineEdit), ``view``
    (QListView), ``follow_button`` and ``keep_button`` (QRadioButton).
    """

    classChosen = Signal(int)
    followTopChosen = Signal()

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
        self.follow_button = QRadioButton("Follow each picture's top class", self)
        self.follow_button.setObjectName("followTopClass")
        self.follow_button.setToolTip("Each picture shows the evidence for the class the model finds most likely in it")
        self.keep_button = QRadioButton("Keep class", self)
        self.keep_button.setObjectName("keepClass")
        self.keep_button.setToolTip("Keep explaining this class on the next pictures (click a class to choose it)")
        self.follow_button.setChecked(True)
        for button in (self.follow_button, self.keep_button):  # only the words are clickable: no wider
            button.setSizePolicy(QSizePolicy.Policy.Maximum, QSizePolicy.Policy.Fixed)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addWidget(self.follow_button)
        layout.addWidget(self.keep_button)
        layout.addWidget(self.filter_edit)
        layout.addWidget(self.view)
        self._chosen: int | None = None
        self._kept = False
        self._silent = False
        self._pressed_chosen: int | None = None
        self._name_width: int | None = None
        self.filter_edit.textChanged.connect(self._on_filter)
        self.filter_edit.returnPressed.connect(self._choose_first_visible)
        self.view.selectionModel().currentChanged.connect(self._on_current)
        self.view.clicked.connect(self._on_clicked)
        self.view.viewport().installEventFilter(self)
        self.follow_button.clicked.connect(self._on_follow_clicked)
        self.keep_button.clicked.connect(self._on_keep_clicked)
        self._show_mode()

    def set_classes(self, names: Sequence[str], probabilities: Sequence[float] | None = None, head: str = "") -> None:
        """Show ``names`` (sorted by ``probabilities`` if given, but a value ``head``'s in index order);
        see the class docstring."""
        keep = self._chosen
        if list(names) != self.model.names():
            self._name_width = None
        with self._silenced():
            self.model.set_classes(names, probabilities, head)
            self._chosen = keep if keep is not None and self.model.row_for_class(keep) is not None else None
            self._show_chosen()
        # A value head has no top class: "following" it explains each picture's first value.
        self.follow_button.setText("Follow each picture's first value" if head == "value"
                                   else "Follow each picture's top class")
        self._show_mode()
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
        with self._silenced():
            self._show_chosen()
        self._show_mode()
        return True

    def show_explained(self, class_index: int) -> None:
        """Highlight the class whose map is shown: not a user choice, so it never emits."""
        with self._silenced():
            self.select_class(class_index)

    def set_kept(self, kept: bool) -> None:
        """Show whether the chosen class is kept on the next pictures (never emits)."""
        self._kept = bool(kept)
        self._show_mode()

    def is_kept(self) -> bool:
        """Whether "Keep class" is shown as the mode."""
        return self._kept

    def content_width(self) -> int:
        """The width at which every percentage and (up to ~18 em) every name is shown uncut."""
        fm = self.view.fontMetrics()
        if self._name_width is None:
            widest = max((fm.horizontalAdvance(name) for name in self.model.names()), default=0)
            self._name_width = min(widest, _MAX_NAME_EMS * fm.horizontalAdvance("M"))
        delegate = self.view.itemDelegate()
        assert isinstance(delegate, ProbabilityBarDelegate)
        view = (delegate.row_width(fm, self._name_width) + 2 * self.view.frameWidth()
                + self.view.style().pixelMetric(QStyle.PixelMetric.PM_ScrollBarExtent, None, self.view))
        return max(view, self.follow_button.sizeHint().width(), self.keep_button.sizeHint().width())

    def _show_mode(self) -> None:
        name = self.model.name_of(self._chosen) if self._chosen is not None else None
        self.keep_button.setText(f"Keep class: {name}" if name else "Keep class")
        self.keep_button.setEnabled(name is not None)
        (self.keep_button if self._kept else self.follow_button).setChecked(True)

    def _on_follow_clicked(self) -> None:
        if self._kept:
            self.followTopChosen.emit()
        self._show_mode()  # the window confirms with set_kept; until then show what is true

    def _on_keep_clicked(self) -> None:
        if not self._kept and self._chosen is not None:
            self.classChosen.emit(self._chosen)
        self._show_mode()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        # Note, before the view handles a press, whether it lands on the class already chosen: the
        # view will not report it as a change, but it is a choice ("keep this class").
        if watched is self.view.viewport() and event.type() == QEvent.Type.MouseButtonPress \
                and isinstance(event, QMouseEvent) and event.button() == Qt.MouseButton.LeftButton:
            index = self.view.indexAt(event.position().toPoint())
            cls = index.data(Qt.ItemDataRole.UserRole) if index.isValid() else None
            self._pressed_chosen = cls if cls is not None and cls == self._chosen else None
        return False

    def _on_clicked(self, index: QModelIndex) -> None:
        cls = index.data(Qt.ItemDataRole.UserRole)
        pressed, self._pressed_chosen = self._pressed_chosen, None
        if cls is not None and cls == pressed == self._chosen:
            self.classChosen.emit(int(cls))

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
            self._show_mode()

    def _on_filter(self, text: str) -> None:
        # Rows vanish under the filter and Qt moves "current" to a neighbour: that is not a choice.
        with self._silenced():
            self.proxy.set_filter_text(text)
            self._show_chosen()

    def _choose_first_visible(self) -> None:
        if self.proxy.rowCount() > 0:
            cls = int(self.proxy.index(0, 0).data(Qt.ItemDataRole.UserRole))
            if cls == self._chosen:
                self.classChosen.emit(cls)  # Enter on the class already shown: keep it
            else:
                self.select_class(cls)

    @contextmanager
    def _silenced(self) -> Iterator[None]:
        """Selection changes inside are the window's doing, not user choices: no classChosen."""
        before, self._silent = self._silent, True
        try:
            yield
        finally:
            self._silent = before


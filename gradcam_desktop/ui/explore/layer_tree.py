"""The layer picker: a Qt item model filled once from the core's layer tree, and the tree view that shows it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from PySide6.QtCore import QCoreApplication, QEvent, QModelIndex, QPersistentModelIndex, QPointF, Qt, Signal
from PySide6.QtGui import (QBrush, QColor, QFont, QGuiApplication, QIcon, QKeyEvent, QLinearGradient, QPainter,
                           QPalette, QPixmap, QStandardItem, QStandardItemModel)
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QLabel, QStyle, QTreeView, QVBoxLayout, QWidget

_Index = QModelIndex | QPersistentModelIndex
_HEADERS = ("Layer", "Type", "Output shape")


def format_shape(shape: Any) -> str:
    """Readable output shape without the batch axis: (None, 7, 7, 1280) → "7 × 7 × 1280"."""
    if not isinstance(shape, (tuple, list)) or not shape:
        return "—"
    if isinstance(shape[0], (tuple, list)):  # a layer with several outputs
        return ", ".join(format_shape(s) for s in shape)
    dims = shape[1:] if len(shape) > 1 else shape
    return " × ".join("?" if d is None else str(d) for d in dims)


def describe(node: Any) -> str:
    """A plain-words tooltip saying whether (and why) a map can be shown at this layer."""
    shape = tuple(node.output_shape) if isinstance(node.output_shape, (tuple, list)) else ()
    if node.eligible and len(shape) == 4:
        h, w, c = ("?" if d is None else d for d in shape[1:])
        return f"Grad-CAM can be shown at this layer: its output is a {h} × {w} grid of {c} features"
    if node.eligible:
        return "Grad-CAM can be shown at this layer"
    if len(shape) == 4 and not isinstance(shape[0], (tuple, list)):
        return (f"No map here: this layer's output is a {format_shape(shape[:3])} grid, "
                "too coarse to show where the model looks")
    if node.children:
        return "No map here: this is a model inside the model; open it to pick one of its layers"
    return "No map here: this layer's output has no spatial grid"


def nodes_by_path(nodes: Iterable[Any]) -> dict[str, Any]:
    """Every node of the tree (nested ones too) by its path; a repeated path keeps the last node."""
    return {node.path: node for node in _walk(nodes)}


def _walk(nodes: Iterable[Any]) -> Iterable[Any]:
    for node in nodes:
        yield node
        yield from _walk(node.children or [])


class LayerTreeModel(QStandardItemModel):
    """Read-only model over a tree of layer nodes (the core's ``LayerNode``, duck-typed).

    Nodes need ``path``, ``name``, ``type``, ``output_shape`` (tuple), ``eligible`` (bool) and
    ``children`` (list).  Columns: "Layer", "Type", "Output shape".

    Every cell is filled once by ``set_layers`` and then served by Qt's own C++ code: a view
    painting the tree makes no Python call.  That matters because the worker thread holds the
    interpreter lock in 5 ms slices while it traces a layer, and a Python ``data()``/``parent()``
    per cell made each click wait for it hundreds of times.  The items are clones of a template,
    so they are plain C++ ``QStandardItem``s (an item constructed in Python would ask Python
    whether it overrides ``data()`` the first time each one is painted).

    Roles, for every column:
      * ``DisplayRole`` – name / type / readable shape ("7 × 7 × 1280");
      * ``Qt.ItemDataRole.UserRole`` – the layer path (str);
      * ``ToolTipRole`` – plain words on whether a map can be shown there;
      * ``ForegroundRole`` – the palette's disabled text colour for non-eligible rows, which stay
        selectable so the window can explain why there is no map (``refresh_colours`` follows a
        palette change);
      * ``FontRole`` – bold for the default layer; ``DecorationRole`` (column 0) – a small heat
        swatch marking eligible rows.

    Interface: ``set_layers(nodes, default_path)``, ``clear()``, ``index_for_path(path, column=0)``,
    ``eligible_paths()``, ``all_paths()``, ``node(index)``, ``default_path()``, ``refresh_colours()``.
    """

    EligibleRole = Qt.ItemDataRole.UserRole + 1
    """bool: whether a map can be computed at the row's layer."""
    _NodeRole = Qt.ItemDataRole.UserRole + 2  # position in _nodes (an int: no Python object in Qt's hands)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._nodes: list[Any] = []  # depth-first, parents before children
        self._rows: list[tuple[int, ...]] = []  # per node: its row at each depth, to find its index
        self._by_path: dict[str, int] = {}  # path -> first node with it
        self._default: str | None = None
        self._swatch: QIcon | None = None
        self._template = QStandardItem()  # constructed in Python, so only ever cloned, never shown
        self._template.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)  # not editable
        self.setHorizontalHeaderLabels(_HEADERS)

    # -- data in -------------------------------------------------------------------------------
    def set_layers(self, nodes: Sequence[Any], default_path: str | None = None) -> None:
        """Replace the whole tree; ``default_path`` is drawn in bold."""
        # One modelReset and nothing else, as a view expects: the row removals and inserts in
        # between are silent. (QStandardItemModel.clear() would also drop the columns, and with
        # them the header's per-column resize modes.)
        self.beginResetModel()
        blocked = self.blockSignals(True)
        try:
            self.setRowCount(0)
            self._nodes, self._rows, self._by_path = [], [], {}
            self._default = default_path if any(n.path == default_path for n in _walk(nodes)) else None
            root = self.invisibleRootItem()
            for row, node in enumerate(nodes):
                root.appendRow(self._row_items(node, (row,)))
        finally:
            self.blockSignals(blocked)
            self.endResetModel()

    def clear(self) -> None:
        """Show no layers (no model loaded)."""
        self.set_layers([], None)

    def _row_items(self, node: Any, rows: tuple[int, ...]) -> list[QStandardItem]:
        nid = len(self._nodes)
        self._nodes.append(node)
        self._rows.append(rows)
        self._by_path.setdefault(node.path, nid)
        shared = self._template.clone()
        shared.setData(node.path, Qt.ItemDataRole.UserRole)
        shared.setData(bool(node.eligible), self.EligibleRole)
        shared.setData(nid, self._NodeRole)
        tip = describe(node)
        shared.setToolTip(tip + ". It is the default layer." if node.path == self._default else tip)
        if not node.eligible:
            shared.setForeground(_grey())
        if node.path == self._default:
            font = QFont()
            font.setBold(True)
            shared.setFont(font)
        cells = []
        for text in (node.name, node.type, format_shape(node.output_shape)):
            cell = shared.clone()
            cell.setText(text)
            cells.append(cell)
        # Pixmaps need a GUI application (a bare model in a script or test has none).
        if node.eligible and isinstance(QCoreApplication.instance(), QGuiApplication):
            cells[0].setIcon(self._heat_swatch())
        children = node.children or []
        for cell in cells[1:] if children else cells:
            cell.setFlags(cell.flags() | Qt.ItemFlag.ItemNeverHasChildren)
        for row, child in enumerate(children):
            cells[0].appendRow(self._row_items(child, (*rows, row)))
        return cells

    def refresh_colours(self) -> None:
        """Grey the non-eligible rows again with the application palette's current colours."""
        brush = _grey()
        for nid, node in enumerate(self._nodes):
            if not node.eligible:
                for column in range(len(_HEADERS)):
                    self.setData(self._index_at(self._rows[nid], column), brush, Qt.ItemDataRole.ForegroundRole)

    # -- lookups ------------------------------------------------------------------------------
    def default_path(self) -> str | None:
        """The default layer given to ``set_layers`` (None if it was unknown)."""
        return self._default

    def node(self, index: _Index) -> Any | None:
        """The layer node behind ``index``, or None for the invisible root."""
        return self._nodes[index.data(self._NodeRole)] if index.isValid() else None

    def index_for_path(self, path: str, column: int = 0) -> QModelIndex:
        """The index of the layer at ``path`` (invalid if there is none)."""
        nid = self._by_path.get(path)
        return QModelIndex() if nid is None else self._index_at(self._rows[nid], column)

    def _index_at(self, rows: tuple[int, ...], column: int) -> QModelIndex:
        parent = QModelIndex()
        for row in rows[:-1]:
            parent = self.index(row, 0, parent)
        return self.index(rows[-1], column, parent)

    def all_paths(self) -> list[tuple[str, bool]]:
        """Every (path, eligible) pair in depth-first order, parents before children."""
        return [(n.path, bool(n.eligible)) for n in self._nodes]

    def eligible_paths(self) -> list[str]:
        """Paths of the layers a map can be shown at, depth-first."""
        return [p for p, ok in self.all_paths() if ok]

    def _heat_swatch(self) -> QIcon:
        # Drawn, not loaded: it must match the heatmap idea in any theme and needs no file.
        if self._swatch is None:
            pix = QPixmap(12, 12)
            pix.fill(Qt.GlobalColor.transparent)
            painter = QPainter(pix)
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            grad = QLinearGradient(QPointF(0, 12), QPointF(12, 0))
            for stop, color in ((0.0, "#2b4bd1"), (0.5, "#33c36b"), (1.0, "#e8412c")):
                grad.setColorAt(stop, QColor(color))
            painter.setBrush(grad)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.drawRoundedRect(1, 1, 10, 10, 3, 3)
            painter.end()
            self._swatch = QIcon(pix)
        return self._swatch


def _grey() -> QBrush:
    """The text brush of non-eligible rows: the application palette's disabled text colour."""
    return QBrush(QGuiApplication.palette().color(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text))


class LayerTreeView(QTreeView):
    """Tree of the model's layers (objectName "layerTree"); the user picks where Grad-CAM looks.

    Signal ``layerChosen(str)``: the path of the layer that became current – by a click, the
    keyboard, or ``select_path``.  It is emitted at most once per change and never for the layer
    that is already current (clicking another column of the same row does not re-emit).

    * ``set_layers(nodes, default_path)`` resets the model, expands nested models down to the
      default layer and makes it current **without** emitting ``layerChosen`` (the caller knows).
    * ``select_path(path) -> bool`` makes a layer current (expanding its parents); emits
      ``layerChosen`` once if that changed the current layer, not at all otherwise.
    * ``show_path(path) -> bool``: the same without emitting (the window showing which layer
      the map on screen comes from, e.g. after refusing a greyed layer).
    * ``content_width() -> int``: the width at which no column is cut and no horizontal scroll
      bar is needed for the rows shown.
    * ``current_path() -> str | None``; ``layer_model() -> LayerTreeModel`` (created by the view).
    * Up/Down step through *eligible* layers only, depth-first across nested models (no wrap).

    Only ``currentChanged`` (once per change), ``keyPressEvent`` and ``changeEvent`` run Python:
    painting, hovering and scrolling stay in C++ (see ``LayerTreeModel``).
    """

    layerChosen = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("layerTree")
        self._model = LayerTreeModel(self)
        self.setModel(self._model)
        self._current: str | None = None
        self._silent = False
        self.setUniformRowHeights(True)  # keeps 500-layer models fast
        self.setAllColumnsShowFocus(True)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        header = self.header()
        # Whole names and shapes beat a tidy width ("bn_Co…" is useless): those columns fit their
        # contents and "Type", the least telling to a non-programmer, gets what is left (elided).
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        self._model.modelReset.connect(self._forget_current)
        # What an empty tree says (a model file that shows no layers): a label over the viewport,
        # shown only then, so painting stays in C++.
        self._empty = QLabel(self.viewport())
        self._empty.setObjectName("layerTreeEmpty")
        self._empty.setWordWrap(True)
        self._empty.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self._empty.setMargin(8)
        layout = QVBoxLayout(self.viewport())
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._empty)
        self._empty.hide()

    def set_empty_text(self, text: str) -> None:
        """What the tree says while it holds no layers ("" says nothing)."""
        self._empty.setText(text)
        self._empty.setVisible(bool(text) and self._model.rowCount() == 0)

    def empty_text(self) -> str:
        """The text shown in place of layers ("" when none is shown)."""
        return "" if self._empty.isHidden() else self._empty.text()

    def layer_model(self) -> LayerTreeModel:
        """The model the view shows."""
        return self._model

    def set_layers(self, nodes: Sequence[Any], default_path: str | None = None) -> None:
        """Show ``nodes``, expanded down to ``default_path``, which becomes current silently; the
        empty-tree text goes until ``set_empty_text`` says otherwise."""
        self._empty.hide()
        self._empty.setText("")
        self._model.set_layers(nodes, default_path)
        self.collapseAll()
        if default_path is not None:
            self.show_path(default_path)

    def current_path(self) -> str | None:
        """Path of the current layer, or None."""
        return self._current

    def select_path(self, path: str) -> bool:
        """Make ``path`` current (see the class docstring for when it emits); False if unknown."""
        index = self._model.index_for_path(path)
        if not index.isValid():
            return False
        parent = index.parent()
        while parent.isValid():
            self.expand(parent)
            parent = parent.parent()
        self.selectionModel().setCurrentIndex(
            index, self.selectionModel().SelectionFlag.ClearAndSelect | self.selectionModel().SelectionFlag.Rows)
        self.scrollTo(index)
        return True

    def show_path(self, path: str) -> bool:
        """Make ``path`` current without emitting ``layerChosen``; False if unknown."""
        before, self._silent = self._silent, True
        try:
            return self.select_path(path)
        finally:
            self._silent = before

    def content_width(self) -> int:
        """Columns at their content's width, plus frame and vertical scroll bar."""
        columns = sum(max(self.sizeHintForColumn(c), self.header().sectionSizeHint(c))
                      for c in range(self._model.columnCount()))
        return (columns + 2 * self.frameWidth()
                + self.style().pixelMetric(QStyle.PixelMetric.PM_ScrollBarExtent, None, self))

    def _forget_current(self) -> None:
        self._current = None

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange:  # e.g. the desktop switched to a dark theme
            self._model.refresh_colours()

    def currentChanged(self, current: _Index, previous: _Index) -> None:
        super().currentChanged(current, previous)
        path = current.data(Qt.ItemDataRole.UserRole) if current.isValid() else None
        if path is None or path == self._current:
            return
        self._current = path
        if not self._silent:
            self.layerChosen.emit(path)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        plain = event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier == Qt.KeyboardModifier.NoModifier
        if plain and key in (Qt.Key.Key_Up, Qt.Key.Key_Down):
            target = self._next_eligible(+1 if key == Qt.Key.Key_Down else -1)
            if target is not None:
                self.select_path(target)
            event.accept()  # at the first/last eligible layer: stay put rather than land on grey
            return
        super().keyPressEvent(event)

    def _next_eligible(self, step: int) -> str | None:
        """The nearest eligible layer before/after the current one, depth-first; None at the ends."""
        order = self._model.all_paths()
        paths = [p for p, _ in order]
        if self._current in paths:
            i = paths.index(self._current) + step
        else:
            i = 0 if step > 0 else len(order) - 1
        while 0 <= i < len(order):
            if order[i][1]:
                return order[i][0]
            i += step
        return None

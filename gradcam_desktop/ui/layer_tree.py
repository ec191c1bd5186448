"""The layer picker: a thin Qt model over the core's layer tree, and the tree view that shows it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from PySide6.QtCore import QAbstractItemModel, QModelIndex, QPersistentModelIndex, QPointF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QIcon, QKeyEvent, QLinearGradient, QPainter, QPalette, QPixmap
from PySide6.QtWidgets import QAbstractItemView, QApplication, QHeaderView, QStyle, QTreeView, QWidget

_Index = QModelIndex | QPersistentModelIndex
_NO_PARENT = -1
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


class LayerTreeModel(QAbstractItemModel):
    """Read-only model over a tree of layer nodes (the core's ``LayerNode``, duck-typed).

    Nodes need ``path``, ``name``, ``type``, ``output_shape`` (tuple), ``eligible`` (bool) and
    ``children`` (list).  Columns: "Layer", "Type", "Output shape".

    Roles, for every column:
      * ``DisplayRole`` – name / type / readable shape ("7 × 7 × 1280");
      * ``Qt.ItemDataRole.UserRole`` – the layer path (str);
      * ``ToolTipRole`` – plain words on whether a map can be shown there;
      * ``ForegroundRole`` – the palette's disabled text colour for non-eligible rows, which stay
        selectable so the window can explain why there is no map;
      * ``FontRole`` – bold for the default layer; ``DecorationRole`` (column 0) – a small heat
        swatch marking eligible rows.

    Interface: ``set_layers(nodes, default_path)``, ``clear()``, ``index_for_path(path, column=0)``,
    ``eligible_paths()``, ``all_paths()``, ``node(index)``, ``default_path()``.
    """

    EligibleRole = Qt.ItemDataRole.UserRole + 1
    """bool: whether a map can be computed at the row's layer."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        # Flattened once per set_layers so parent()/index() are O(1); an index's internalId is the
        # node's position in _nodes (ints, not Python pointers, which Qt would not keep alive).
        self._roots: list[Any] = []
        self._nodes: list[Any] = []
        self._parent: list[int] = []
        self._row: list[int] = []
        self._children: list[list[int]] = []
        self._roots_ids: list[int] = []
        self._by_path: dict[str, int] = {}
        self._default: str | None = None
        self._swatch: QIcon | None = None

    # -- data in -------------------------------------------------------------------------------
    def set_layers(self, nodes: Sequence[Any], default_path: str | None = None) -> None:
        """Replace the whole tree; ``default_path`` is drawn in bold."""
        self.beginResetModel()
        self._roots = list(nodes)
        self._nodes, self._parent, self._row, self._children, self._by_path = [], [], [], [], {}
        self._roots_ids = self._flatten(self._roots, _NO_PARENT)
        self._default = default_path if default_path in self._by_path else None
        self.endResetModel()

    def clear(self) -> None:
        """Show no layers (no model loaded)."""
        self.set_layers([], None)

    def _flatten(self, nodes: Iterable[Any], parent: int) -> list[int]:
        ids = []
        for row, node in enumerate(nodes):
            nid = len(self._nodes)
            self._nodes.append(node)
            self._parent.append(parent)
            self._row.append(row)
            self._children.append([])
            self._by_path.setdefault(node.path, nid)
            ids.append(nid)
            self._children[nid] = self._flatten(node.children or [], nid)
        return ids

    # -- lookups ------------------------------------------------------------------------------
    def default_path(self) -> str | None:
        """The default layer given to ``set_layers`` (None if it was unknown)."""
        return self._default

    def node(self, index: _Index) -> Any | None:
        """The layer node behind ``index``, or None for the invisible root."""
        return self._nodes[index.internalId()] if index.isValid() else None

    def index_for_path(self, path: str, column: int = 0) -> QModelIndex:
        """The index of the layer at ``path`` (invalid if there is none)."""
        nid = self._by_path.get(path)
        if nid is None:
            return QModelIndex()
        return self.createIndex(self._row[nid], column, id=nid)

    def all_paths(self) -> list[tuple[str, bool]]:
        """Every (path, eligible) pair in depth-first order, parents before children."""
        return [(n.path, bool(n.eligible)) for n in self._nodes]  # _flatten is depth-first

    def eligible_paths(self) -> list[str]:
        """Paths of the layers a map can be shown at, depth-first."""
        return [p for p, ok in self.all_paths() if ok]

    # -- QAbstractItemModel -------------------------------------------------------------------
    def index(self, row: int, column: int, parent: _Index = QModelIndex()) -> QModelIndex:
        siblings = self._children[parent.internalId()] if parent.isValid() else self._roots_ids
        if not (0 <= row < len(siblings) and 0 <= column < len(_HEADERS)):
            return QModelIndex()
        return self.createIndex(row, column, id=siblings[row])

    def parent(self, child: _Index = QModelIndex()) -> QModelIndex:  # type: ignore[override]
        if not child.isValid():
            return QModelIndex()
        pid = self._parent[child.internalId()]
        if pid == _NO_PARENT:
            return QModelIndex()
        return self.createIndex(self._row[pid], 0, id=pid)

    def rowCount(self, parent: _Index = QModelIndex()) -> int:
        if not parent.isValid():
            return len(self._roots)
        if parent.column() != 0:  # by convention only column 0 has children
            return 0
        return len(self._children[parent.internalId()])

    def columnCount(self, parent: _Index = QModelIndex()) -> int:
        return len(_HEADERS)

    def flags(self, index: _Index) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        flags = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable  # greyed rows stay selectable
        if not self._children[index.internalId()]:
            flags |= Qt.ItemFlag.ItemNeverHasChildren
        return flags

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole \
                and 0 <= section < len(_HEADERS):
            return _HEADERS[section]
        return None

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        node = self._nodes[index.internalId()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return (node.name, node.type, format_shape(node.output_shape))[col]
        if role == Qt.ItemDataRole.UserRole:
            return node.path
        if role == self.EligibleRole:
            return bool(node.eligible)
        if role == Qt.ItemDataRole.ToolTipRole:
            tip = describe(node)
            return tip + ". It is the default layer." if node.path == self._default else tip
        if role == Qt.ItemDataRole.ForegroundRole and not node.eligible:
            return QBrush(QApplication.palette().color(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text))
        if role == Qt.ItemDataRole.FontRole and node.path == self._default:
            font = QFont()
            font.setBold(True)
            return font
        # Pixmaps need a GUI application (a bare model in a script or test has none).
        if role == Qt.ItemDataRole.DecorationRole and col == 0 and node.eligible and QApplication.instance():
            return self._heat_swatch()
        return None

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

    def layer_model(self) -> LayerTreeModel:
        """The model the view shows."""
        return self._model

    def set_layers(self, nodes: Sequence[Any], default_path: str | None = None) -> None:
        """Show ``nodes``, expanded down to ``default_path``, which becomes current silently."""
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

    def currentChanged(self, current: QModelIndex, previous: QModelIndex) -> None:
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

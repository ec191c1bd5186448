"""The Triage view: the table of a labelled folder's predictions beside its confusion matrix.

``TriageView`` is widgets only — the rows come from ``add_rows`` (the job's batches), and the
wiring (``triage.wiring``) answers its signals: ``rowChosen(TriageRow)`` when a row is clicked,
``cancelRequested``, ``explainChanged("predicted" | "true")`` and the two exports. The table
(objectName ``triageTable``) is a ``QTableView`` over ``TriageFilter`` over
``TriageTableModel``: click a header to sort, and the filter row narrows it (mistakes only, a
class, a probability range, text); a click on a confusion-matrix cell shows only that cell's
pictures, a second click or "Show all" shows all again.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QModelIndex, QSize, Qt, Signal
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QDoubleSpinBox, QHBoxLayout, QHeaderView,
                               QLabel, QLineEdit, QProgressBar, QPushButton, QSplitter, QTableView, QVBoxLayout,
                               QWidget)

from gradcam_desktop.ui.triage.confusion_matrix import ConfusionMatrixView
from gradcam_desktop.ui.triage.thumbnails import THUMB_SIDE, ThumbnailCache
from gradcam_desktop.ui.triage.table import FILE, MARGIN, ROW_ROLE, THUMB, TriageFilter, TriageTableModel

__all__ = ["EXPLAIN_CHOICES", "TriageView"]

#: What the map of a clicked row explains: (key, text).
EXPLAIN_CHOICES = (("predicted", "Map: predicted class"), ("true", "Map: true class"))


class TriageView(QWidget):
    """Table, filters, confusion matrix, progress and exports of one triage run."""

    rowChosen = Signal(object)  # the TriageRow clicked
    cancelRequested = Signal()
    explainChanged = Signal(str)
    compareRequested = Signal()
    exportCsvRequested = Signal()
    exportPngRequested = Signal()
    rerunRequested = Signal()  # "Run again": the same folder with the model open now

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("triageView")
        self.thumbnails = ThumbnailCache(parent=self)
        self.model = TriageTableModel(self.thumbnails, self)
        self.proxy = TriageFilter(self)
        self.proxy.setSourceModel(self.model)
        self.table = self._table()
        self.matrix = ConfusionMatrixView(self)
        self._class_names: list[str] = []
        self._warning = ""  # the labels' warning: kept in the status line until the next run
        self._skipped = 0  # pictures whose label names no class

        self.progress = QProgressBar(self)
        self.progress.setObjectName("triageProgress")
        self.progress.setTextVisible(True)
        self.status = QLabel("Open a labelled folder: File → Open Labelled Folder…", self)
        self.status.setObjectName("triageStatus")
        self.status.setWordWrap(True)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setObjectName("triageCancel")
        self.cancel_button.clicked.connect(self.cancelRequested)
        self.cancel_button.setEnabled(False)
        self.rerun_button = QPushButton("Run again", self)
        self.rerun_button.setObjectName("triageRerun")
        self.rerun_button.setToolTip("Check the same pictures again with the model open now")
        self.rerun_button.clicked.connect(self.rerunRequested)
        self.rerun_button.hide()  # only once a model change has cleared a run

        self.mistakes = QCheckBox("Mistakes only", self)
        self.mistakes.setObjectName("triageMistakes")
        self.mistakes.toggled.connect(self.proxy.set_mistakes_only)
        self.class_box = QComboBox(self)
        self.class_box.setObjectName("triageClass")
        self.class_box.setToolTip("Only pictures of this class (true or predicted)")
        # "All classes" always fits, also when the run was cleared and the box holds nothing else.
        self.class_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.class_box.setMinimumContentsLength(len("All classes") + 1)
        self.class_box.currentIndexChanged.connect(lambda _i: self.proxy.set_class(self.class_box.currentData()))
        self.low, self.high = self._spin(0.0, "triageLow"), self._spin(100.0, "triageHigh")
        self.search = QLineEdit(self)
        self.search.setObjectName("triageSearch")
        self.search.setPlaceholderText("Find a file or class…")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self.proxy.set_text)
        self.explain_box = QComboBox(self)
        self.explain_box.setObjectName("triageExplain")
        for key, text in EXPLAIN_CHOICES:
            self.explain_box.addItem(text, key)
        self.explain_box.setToolTip("Whether the map of a clicked picture explains the predicted or the true class")
        self.explain_box.currentIndexChanged.connect(lambda _i: self.explainChanged.emit(self.explain()))
        self.compare_button = QPushButton("Compare", self)
        self.compare_button.setObjectName("triageCompare")
        self.compare_button.setToolTip("The compare grid: the clicked picture's predicted and true class side by side")
        self.compare_button.clicked.connect(self.compareRequested)
        self.export_csv = QPushButton("Export table…", self)
        self.export_csv.setObjectName("triageExportCsv")
        self.export_csv.clicked.connect(self.exportCsvRequested)
        self.export_png = QPushButton("Export matrix…", self)
        self.export_png.setObjectName("triageExportPng")
        self.export_png.clicked.connect(self.exportPngRequested)
        self.show_all = QPushButton("Show all", self)
        self.show_all.setObjectName("triageShowAll")
        self.show_all.setToolTip("Clear the confusion-matrix cell filter")
        self.show_all.clicked.connect(self.matrix.clear_choice)
        self.show_all.setEnabled(False)
        self.matrix.cellChosen.connect(self._on_cell)
        self.summary = QLabel("", self)
        self.summary.setObjectName("triageSummary")
        self.summary.setWordWrap(True)
        self._lay_out()
        self.proxy.rowsInserted.connect(lambda *_a: self._count())
        self.proxy.rowsRemoved.connect(lambda *_a: self._count())
        self.proxy.modelReset.connect(self._count)
        self.proxy.layoutChanged.connect(self._count)

    # -- construction ---------------------------------------------------------------------------
    def _table(self) -> QTableView:
        table = QTableView(self)
        table.setObjectName("triageTable")
        table.setModel(self.proxy)
        table.setSortingEnabled(True)
        table.sortByColumn(MARGIN, Qt.SortOrder.AscendingOrder)  # the worst mistakes first
        table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        table.setAlternatingRowColors(True)
        table.setWordWrap(False)
        table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        table.setIconSize(QSize(THUMB_SIDE, THUMB_SIDE))
        table.verticalHeader().setVisible(False)
        table.verticalHeader().setDefaultSectionSize(THUMB_SIDE + 4)
        table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        header = table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(False)
        header.setSectionResizeMode(FILE, QHeaderView.ResizeMode.Stretch)
        for column, width in ((THUMB, THUMB_SIDE + 12), (2, 80), (3, 80), (4, 82), (5, 68), (6, 28), (7, 64)):
            header.resizeSection(column, width)
        header.setMinimumSectionSize(24)
        table.clicked.connect(self._on_row)
        table.activated.connect(self._on_row)  # Enter on a row, too
        return table

    def _spin(self, value: float, name: str) -> QDoubleSpinBox:
        spin = QDoubleSpinBox(self)
        spin.setObjectName(name)
        spin.setRange(0.0, 100.0)
        spin.setDecimals(0)
        spin.setSuffix(" %")
        spin.setValue(value)
        spin.setToolTip("Only pictures whose predicted class has a probability in this range")
        spin.valueChanged.connect(lambda _v: self.proxy.set_probability_range(self.low.value() / 100,
                                                                               self.high.value() / 100))
        return spin

    def _lay_out(self) -> None:
        top = QHBoxLayout()
        top.addWidget(self.progress, 2)
        top.addWidget(self.cancel_button)
        top.addWidget(self.rerun_button)
        top.addWidget(self.status, 3)
        top.addWidget(self.explain_box)
        top.addWidget(self.compare_button)
        top.addWidget(self.export_csv)
        top.addWidget(self.export_png)
        filters = QHBoxLayout()
        filters.addWidget(self.mistakes)
        filters.addWidget(self.class_box)
        filters.addWidget(QLabel("P", self))
        filters.addWidget(self.low)
        filters.addWidget(QLabel("–", self))
        filters.addWidget(self.high)
        filters.addWidget(self.search, 1)
        left = QWidget(self)
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addLayout(filters)
        left_layout.addWidget(self.table, 1)
        right = QWidget(self)
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        title = QLabel("<b>Confusion matrix</b> — rows: true class, columns: predicted", right)
        title.setWordWrap(True)
        right_layout.addWidget(title)
        right_layout.addWidget(self.matrix, 1)
        bottom = QHBoxLayout()
        bottom.addWidget(self.summary, 1)
        bottom.addWidget(self.show_all)
        right_layout.addLayout(bottom)
        self.splitter = QSplitter(Qt.Orientation.Horizontal, self)
        self.splitter.addWidget(left)
        self.splitter.addWidget(right)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.splitter.setSizes([620, 380])
        self.splitter.setChildrenCollapsible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        layout.addWidget(self.splitter, 1)

    # -- content --------------------------------------------------------------------------------
    def start(self, class_names: list[str], total: int = 0) -> None:
        """A new run over ``class_names``: empty table and matrix, progress at 0."""
        self._class_names = list(class_names)
        self.thumbnails.clear()
        self.model.clear()
        self.matrix.clear_choice()
        self.matrix.matrix_model.set_classes(class_names)
        self.class_box.blockSignals(True)
        self.class_box.clear()
        self.class_box.addItem("All classes", None)
        for index, name in enumerate(class_names):
            self.class_box.addItem(name, index)
        self.class_box.blockSignals(False)
        self.proxy.set_class(None)
        self.set_progress(0, total)
        self.cancel_button.setEnabled(True)
        self.rerun_button.hide()
        self._warning, self._skipped = "", 0
        self.status.setText("Predicting…")

    def clear_for_model(self, note: str) -> None:
        """Another model: the rows and counts were the old one's, so they go; ``note`` says so, "Run again" shows."""
        self.start([])
        self.cancel_button.setEnabled(False)
        self.progress.setRange(0, 1)  # (0, 0) would be Qt's "busy" animation: nothing runs
        self.progress.setValue(0)
        self.progress.setFormat("")
        self.status.setText(note)
        self.rerun_button.show()

    def add_rows(self, rows: list[Any]) -> None:
        """A batch of ``TriageRow``s from the job."""
        self.model.append_rows(rows)
        self.matrix.matrix_model.add_rows(rows)
        self.matrix.resizeColumnsToContents()
        self._count()

    def set_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 0))
        self.progress.setValue(min(done, total) if total else 0)
        self.progress.setFormat(f"{done} / {total}" if total else f"{done}")

    def finish(self, cancelled: bool, message: str = "") -> None:
        """The run ended (or was cancelled, or failed with ``message``)."""
        self.cancel_button.setEnabled(False)
        if message:
            self.status.setText(message)
        else:
            # The labels' warning stays: a fast run would otherwise show it for a split second.
            ended = "Cancelled after" if cancelled else "Done:"
            self.status.setText(" ".join(filter(None, [f"{ended} {self.model.rowCount()} pictures.", self._warning])))
        self._count()

    def set_status(self, text: str) -> None:
        self.status.setText(text)

    def set_warning(self, warning: str | None, skipped: int = 0) -> None:
        """The labels' warning (shown until the next run, also once it ends) and the pictures it skipped."""
        self._warning, self._skipped = warning or "", max(0, int(skipped))
        if self._warning:
            self.status.setText(self._warning)
        self._count()

    def explain(self) -> str:
        """What a clicked row's map explains: "predicted" or "true"."""
        return str(self.explain_box.currentData())

    def rows(self) -> list[Any]:
        return self.model.rows()

    def visible_rows(self) -> list[Any]:
        """The rows the table shows, in its order (sorted and filtered)."""
        return [self.proxy.index(r, 0).data(ROW_ROLE) for r in range(self.proxy.rowCount())]

    # -- events ---------------------------------------------------------------------------------
    def _on_row(self, index: QModelIndex) -> None:
        row = index.siblingAtColumn(0).data(ROW_ROLE)
        if row is not None and not row.error:
            self.rowChosen.emit(row)

    def _on_cell(self, cell: tuple[int, int] | None) -> None:
        self.proxy.set_cell(cell)
        self.show_all.setEnabled(cell is not None)
        self._count()

    def _count(self) -> None:
        rows = self.model.rows()
        scored = [r for r in rows if not r.error]
        right = sum(1 for r in scored if r.correct)
        errors = len(rows) - len(scored)
        parts = [f"{len(rows)} pictures"]
        if scored:  # what could not be read counts as wrong, as in `gradcam triage`
            parts.append(f"accuracy {100 * right / len(rows):.1f} %")
        if errors:
            parts.append(f"{errors} unreadable (counted as wrong)")
        if self._skipped:
            parts.append(f"{self._skipped} skipped (label names no class)")
        shown = self.proxy.rowCount()
        if shown != len(rows):
            parts.append(f"{shown} shown")
        cell = self.matrix.chosen()
        if cell is not None and self._class_names:
            parts.append(f"true {self._class_names[cell[0]]}, predicted {self._class_names[cell[1]]}")
        self.summary.setText(" · ".join(parts))


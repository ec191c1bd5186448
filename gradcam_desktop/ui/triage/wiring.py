"""Folder triage wired into the main window: its dock, its menu entries, its job and its row clicks.

File → Open Labelled Folder… (or Open Labelled CSV…) opens the Triage dock (``triage.view``)
under the picture and starts a ``triage_job.TriageJob`` on the worker: rows stream into the
table batch by batch, with progress and Cancel. A click on a row shows that picture in the main
view with the map of its predicted or true class (the view's toggle): a picture already open is
shown again, another one is opened like any picture (decoded on the worker thread). "Compare"
turns on the compare grid with the predicted and the true class as its two columns. The table
exports as CSV (``core.triage.write_triage_csv``), the matrix as a PNG (written atomically).
Kept apart from main_window.py, which only calls ``attach``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QObject, Qt, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QDockWidget, QFileDialog, QMenu

from gradcam_desktop.core.errors import GradCamError
from gradcam_desktop.core.files import atomic_write_bytes
from gradcam_desktop.session.triage_job import BATCH, TriageRequest
from gradcam_desktop.ui.triage.view import TriageView
from gradcam_desktop.session.records import Picture

__all__ = ["TriageController", "attach", "export_matrix", "export_table", "index_of"]

log = logging.getLogger(__name__)
_Q = Qt.ConnectionType.QueuedConnection  # worker signals cross threads
CSV_FILTER = "CSV files (*.csv);;All files (*)"
#: Share of the window's height the dock gets when it first opens.
FIRST_SHARE = 0.45


def attach(window: Any) -> TriageController:
    """Add the Triage dock (hidden) and File → Open Labelled Folder…/CSV… to ``window``; returns the controller."""
    dock = QDockWidget("Triage", window)
    dock.setObjectName("triageDock")
    view = TriageView(dock)
    dock.setWidget(view)
    restored = window.restoreDockWidget(dock)
    if not restored:
        # Under the picture, across the window, above the strip: the table needs width and the
        # picture above it shows the row clicked.
        window.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock, Qt.Orientation.Vertical)
        window.splitDockWidget(dock, window.ui.images_dock, Qt.Orientation.Vertical)
        dock.hide()
    controller = TriageController(window, dock, view)
    controller.sized = restored
    folder = QAction("Open &Labelled Folder…", window)
    folder.setObjectName("openLabelledFolder")
    folder.setStatusTip("Check the model on a folder whose subfolders name the classes: mistakes first")
    folder.triggered.connect(lambda _c=False: controller.choose_folder())
    table = QAction("Open Labelled &CSV…", window)
    table.setObjectName("openLabelledCsv")
    table.setStatusTip("Check the model on the pictures of a CSV of path,label rows")
    table.triggered.connect(lambda _c=False: controller.choose_csv())
    controller.actions = [folder, table]
    anchor = window.acts.open_folder
    for menu in anchor.associatedObjects():
        if isinstance(menu, QMenu):
            entries = menu.actions()
            if anchor in entries[:-1]:
                menu.insertActions(entries[entries.index(anchor) + 1], [folder, table])
            else:
                menu.addActions([folder, table])  # what insertActions(None, …) does: append at the end
    window.acts.needs_engine.extend([folder, table])
    return controller


class TriageFeed(QObject):
    """The triage job's partial results, on the UI thread: ``started(job id, info)`` once the labels are
    read, ``rows(job id, [TriageRow, …])`` per batch, ``failed(job id, message)``."""

    started = Signal(int, dict)  # job id, {"total", "warning", "skipped", "class_names", "source"}
    rows = Signal(int, list)  # job id, a batch of TriageRow
    failed = Signal(int, str)  # job id, one line

    def deliver(self, job_id: int, part: Any) -> None:
        """One ``jobPartial`` of a triage job: ("started" | "rows" | "failed", data)."""
        kind, data = part
        {"started": self.started, "rows": self.rows, "failed": self.failed}[kind].emit(job_id, data)


class TriageController(QObject):
    """One triage run at a time: the job, its rows in the view, and what a click on a row shows."""

    def __init__(self, window: Any, dock: QDockWidget, view: TriageView) -> None:
        super().__init__(window)
        self.window, self.dock, self.view = window, dock, view
        self.actions: list[QAction] = []
        self.sized = False
        self.feed = TriageFeed(self)
        self._job: int | None = None
        self._chosen: Any = None  # the row last clicked
        self._opening: dict[str, int] = {}  # pictures asked for by a row click, not arrived yet: path → request
        self._source: str | None = None  # the folder or CSV of the last run (Run again)
        self._compare_for: str | None = None  # the picture whose map should fill the compare grid
        self.feed.started.connect(self._on_started)
        self.feed.rows.connect(self._on_rows)
        self.feed.failed.connect(self._on_failed)
        worker = window.worker
        worker.jobPartial.connect(self._on_partial, _Q)
        worker.jobProgress.connect(self._on_progress, _Q)
        worker.jobFinished.connect(self._on_finished, _Q)
        worker.failed.connect(self._on_failed, _Q)  # the request itself refused (no model)
        worker.imagesLoaded.connect(self._on_images, _Q)  # after the window's own slot: images() has them
        worker.failed.connect(self._on_images, _Q)
        # The table follows the session: its rows are one model's; another model asked for, opened or
        # gone (the engine could not reopen it) clears them.
        self._model_of_rows: tuple[str, int, str] | None = None  # (source, generation, name): the rows' model
        window.state.subscribe(self._follow_state)
        view.cancelRequested.connect(self.cancel)
        view.rowChosen.connect(self.show_row)
        view.explainChanged.connect(lambda _k: self._chosen is not None and self.show_row(self._chosen))
        view.exportCsvRequested.connect(self._ask_csv)
        view.exportPngRequested.connect(self._ask_png)
        view.compareRequested.connect(self.compare_chosen)
        view.rerunRequested.connect(self.run_again)
        window.resultShown.connect(self._on_result)

    # -- scripting surface ---------------------------------------------------------------------
    def open(self, source: str | os.PathLike[str], *, batch: int = BATCH) -> int | None:
        """Triage the labelled folder or CSV ``source`` with the open model (``batch`` pictures a step); the job id."""
        info = self.window.model_info()
        if info is None or self.window.model_pending():
            self.window.show_error("A model is still opening: triage it once it is ready." if info is not None else
                                   "Open a model first: triage checks a model's predictions on labelled pictures.")
            return None
        self.cancel()
        self._source = str(source)
        self.dock.show()
        self.dock.raise_()
        if not self.sized:  # the first time: a good share of the window (later: where the user left it)
            self.sized = True
            self.window.resizeDocks([self.dock], [int(self.window.height() * FIRST_SHARE)], Qt.Orientation.Vertical)
        self.view.start(list(info.class_names))
        self._model_of_rows = (info.source, info.generation, info.display_name)
        self.view.set_status(f"Reading the labels of {Path(source).name}…")
        self.dock.setWindowTitle(f"Triage — {Path(source).name}")
        self._job = self.window.worker.start_job(TriageRequest(str(source), batch))
        return self._job

    def job(self) -> int | None:
        """The running job's id, or None."""
        return self._job

    def cancel(self) -> None:
        if self._job is not None:
            self.window.worker.cancel_job(self._job)

    def show_row(self, row: Any) -> None:
        """Show ``row``'s picture in the main view with the map of its predicted (or true) class."""
        self._chosen = row
        class_index = row.true_index if self.view.explain() == "true" else row.predicted_index
        if class_index is None:
            return
        window = self.window
        window.keep_class(int(class_index))
        index = index_of(window.images(), row.image)
        if index is not None:
            window.show_image(index)
        elif _norm(row.image) not in self._opening:  # a second click (a double click) before it arrives opens nothing
            # decoded on the worker; the window shows it when it arrives
            self._opening[_norm(row.image)] = window.open_images([row.image])

    def run_again(self) -> None:
        """Triage the last folder or CSV again, with the model open now (after a model change)."""
        if self._source is not None:
            self.open(self._source)

    def compare_chosen(self) -> None:
        """The compare grid for the chosen row: its predicted and true class as the two columns."""
        if self._chosen is None:
            return
        self._compare_for = _norm(self._chosen.image)
        self.window.acts.compare.setChecked(True)
        shown = self.window.shown_result()
        image = self.window.current_image()
        if shown is not None and image is not None and _norm(image.path or "") == self._compare_for:
            self._set_compare_columns()

    def export_csv(self, path: str | os.PathLike[str]) -> None:
        """Write the table as CSV (see ``export_table``)."""
        export_table(self.view, path)

    def export_png(self, path: str | os.PathLike[str]) -> None:
        """Write the confusion matrix as a PNG (see ``export_matrix``)."""
        export_matrix(self.view, path)

    # -- worker answers ------------------------------------------------------------------------
    def _on_partial(self, job_id: int, part: Any) -> None:
        if job_id == self._job:
            self.feed.deliver(job_id, part)

    def _on_images(self, request: int, *_answer: Any) -> None:
        self._opening = {path: r for path, r in self._opening.items() if r != request}

    def _follow_state(self, change: str) -> None:
        """The model the rows came from is no longer the one open (or another is being opened): clear them."""
        state = self.window.state
        if change != "model" or self._model_of_rows is None:
            return
        source, generation, name = self._model_of_rows
        if state.opening is None and state.model is not None and (state.model.source, state.model.generation) == \
                (source, generation):
            return  # a model asked for did not open: the rows' model is still the one open
        self._clear_for_model(name)

    def _clear_for_model(self, model_name: str) -> None:
        """Another model: this run's table and matrix are the old model's, so they go at once."""
        self._model_of_rows = None
        if self._job is None and not self.view.rows():
            return
        self.cancel()
        self._job = None  # its last rows and its end are dropped
        self._chosen = self._compare_for = None
        name = f"“{Path(self._source).name}”" if self._source else "these pictures"
        self.view.clear_for_model(f"Cleared: the results for {name} came from the model "
                                  f"{model_name}. Run again to check the model now open.")
        self.dock.setWindowTitle("Triage")

    def _on_started(self, job_id: int, info: dict) -> None:
        if job_id != self._job:
            return
        self.view.set_progress(0, info["total"])
        warning = info.get("warning")
        self.view.set_status(f"Predicting {info['total']} pictures…")
        self.view.set_warning(warning, info.get("skipped", 0))  # shown instead, and kept once the run ends

    def _on_rows(self, job_id: int, rows: list) -> None:
        if job_id == self._job:
            self.view.add_rows(rows)

    def _on_progress(self, job_id: int, done: int, total: int, _what: str) -> None:
        if job_id == self._job:
            self.view.set_progress(done, total)

    def _on_finished(self, job_id: int, summary: dict) -> None:
        if job_id == self._job:
            self._job = None
            if self.view.cancel_button.isEnabled():  # not already ended by a failure
                self.view.finish(bool(summary.get("cancelled")))

    def _on_failed(self, job_id: int, message: str) -> None:
        if job_id == self._job:
            self.view.finish(True, message)

    def _on_result(self, result: Any) -> None:
        image = self.window.current_image()
        if self._compare_for is not None and image is not None and _norm(image.path or "") == self._compare_for:
            self._set_compare_columns()

    def _set_compare_columns(self) -> None:
        row, self._compare_for = self._chosen, None
        classes = list(dict.fromkeys(c for c in (row.predicted_index, row.true_index) if c is not None))
        try:
            self.window.ui.compare.set_axes("method", None, "class", classes)
        except ValueError as exc:  # the grid has no map yet: it follows the main view's classes
            log.debug("compare columns not set: %s", exc)

    # -- dialogs -------------------------------------------------------------------------------
    def choose_folder(self) -> None:
        settings = self.window.settings
        folder = QFileDialog.getExistingDirectory(self.window, "Open Labelled Folder", settings.folder("triage"))
        if folder:
            settings.set_folder("triage", folder)
            self.open(folder)

    def choose_csv(self) -> None:
        settings = self.window.settings
        path, _ = QFileDialog.getOpenFileName(self.window, "Open Labelled CSV", settings.folder("triage"), CSV_FILTER)
        if path:
            settings.set_folder("triage", str(Path(path).parent))
            self.open(path)

    def _ask_csv(self) -> None:
        self._save("Export Triage Table", "triage.csv", CSV_FILTER, self.export_csv)

    def _ask_png(self) -> None:
        self._save("Export Confusion Matrix", "confusion.png", "PNG image (*.png)", self.export_png)

    def _save(self, title: str, name: str, filters: str, write: Any) -> None:
        start = str(Path(self.window.settings.folder("export") or Path.home()) / name)
        path, _ = QFileDialog.getSaveFileName(self.window, title, start, filters)
        if not path:
            return
        try:
            write(path)
        except GradCamError as exc:
            self.window.show_error(str(exc))
            return
        self.window.settings.set_folder("export", str(Path(path).parent))
        self.window.set_status(f"Saved {path}")


def export_table(view: TriageView, path: str | os.PathLike[str]) -> None:
    """Every row of ``view`` (in the order predicted) as CSV: ``core.triage.write_triage_csv``."""
    from gradcam_desktop.core.triage import write_triage_csv  # the engine side of core: only when used

    write_triage_csv(path, view.rows())


def export_matrix(view: TriageView, path: str | os.PathLike[str]) -> None:
    """The confusion matrix as a PNG written atomically: as on screen, without the chosen cell's frame or
    the pointer's highlight (a figure for a report, not a screen grab)."""
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    view.matrix.render_plain().save(buffer, "PNG")
    buffer.close()
    atomic_write_bytes(path, bytes(data.data()))


def _norm(path: str) -> str:
    # realpath: a folder reached through a link names the same files as the picture opened directly
    return os.path.normcase(os.path.realpath(path)) if path else ""


def index_of(images: list[Picture], path: str) -> int | None:
    wanted = _norm(path)
    for index, image in enumerate(images):
        if image.path and _norm(image.path) == wanted:
            return index
    return None


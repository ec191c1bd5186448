"""Strategy clusters wired into the main window: the Patterns dock, its menu entries, its job and clicks.

File → Find Patterns in Labelled Folder… opens the Patterns dock (``patterns.view``, a tab beside
Triage and Trust) and starts a ``patterns_job.PatternsJob`` on the worker with the method and
layer the window shows: progress and Cancel while it maps, then the clusters of each class. A
click on a picture in a cluster shows it in the main view with the map of the class it was
clustered under. File → Export Report… writes the shared HTML page: from the clusters shown when
there are any (only the mistakes' maps are made), else after asking for a labelled folder (the
whole run, then the page). Kept apart from main_window.py, which only calls ``attach``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QDockWidget, QFileDialog, QMenu

from gradcam_desktop.core import cams
from gradcam_desktop.session.patterns_job import PatternsRequest
from gradcam_desktop.ui.patterns.view import PatternsView
from gradcam_desktop.ui.triage.wiring import index_of

__all__ = ["PatternsController", "attach"]

log = logging.getLogger(__name__)
_Q = Qt.ConnectionType.QueuedConnection  # worker signals cross threads
HTML_FILTER = "Web page (*.html)"


def attach(window: Any) -> PatternsController:
    """Add the Patterns dock (hidden) and File → Find Patterns…/Export Report… to ``window``."""
    dock = QDockWidget("Patterns", window)
    dock.setObjectName("patternsDock")
    view = PatternsView(dock)
    dock.setWidget(view)
    if not window.restoreDockWidget(dock):
        window.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock, Qt.Orientation.Vertical)
        dock.hide()
    controller = PatternsController(window, dock, view)
    find = QAction("Find &Patterns in Labelled Folder…", window)
    find.setObjectName("findPatterns")
    find.setStatusTip("Cluster each class's maps over a labelled folder: what does the model rely on? "
                      "(small far clusters are where shortcuts hide)")
    find.triggered.connect(lambda _c=False: controller.choose_folder())
    report = QAction("Export &Report…", window)
    report.setObjectName("exportReport")
    report.setStatusTip("One HTML page to share: accuracy, confusion matrix, the clusters of each class, the mistakes")
    report.triggered.connect(lambda _c=False: controller.choose_report())
    controller.actions = [find, report]
    anchor = window.triage.actions[-1] if getattr(window, "triage", None) is not None else window.acts.open_folder
    for menu in anchor.associatedObjects():
        if isinstance(menu, QMenu):
            entries = menu.actions()
            if anchor in entries[:-1]:
                menu.insertActions(entries[entries.index(anchor) + 1], [find, report])
            else:
                menu.addActions([find, report])
    window.acts.needs_engine.extend([find, report])
    return controller


class PatternsFeed(QObject):
    """The job's partial results on the UI thread."""

    started = Signal(int, dict)
    clusters = Signal(int, object)  # job id, PatternsFound
    written = Signal(int, str)  # job id, the report's path
    failed = Signal(int, str)

    def deliver(self, job_id: int, part: Any) -> None:
        kind, data = part
        {"started": self.started, "clusters": self.clusters, "report": self.written,
         "failed": self.failed}[kind].emit(job_id, data)


class PatternsController(QObject):
    """One patterns run at a time: the job, its clusters in the view, what a click opens, the report."""

    def __init__(self, window: Any, dock: QDockWidget, view: PatternsView) -> None:
        super().__init__(window)
        self.window, self.dock, self.view = window, dock, view
        self.actions: list[QAction] = []
        self.feed = PatternsFeed(self)
        self._job: int | None = None
        self._source: str | None = None
        self._report: str | None = None  # the page the running job will write
        self._opening: dict[str, int] = {}
        self._model_of_found: tuple[str, int, str] | None = None
        self.feed.started.connect(self._on_started)
        self.feed.clusters.connect(self._on_clusters)
        self.feed.written.connect(self._on_written)
        self.feed.failed.connect(self._on_failed)
        worker = window.worker
        worker.jobPartial.connect(self._on_partial, _Q)
        worker.jobProgress.connect(self._on_progress, _Q)
        worker.jobFinished.connect(self._on_finished, _Q)
        worker.failed.connect(self._on_failed, _Q)
        worker.imagesLoaded.connect(self._on_images, _Q)
        worker.failed.connect(self._on_images, _Q)
        window.state.subscribe(self._follow_state)
        view.cancelRequested.connect(self.cancel)
        view.rerunRequested.connect(self.run_again)
        view.reportRequested.connect(self.choose_report)
        view.pictureChosen.connect(self.show_picture)

    # -- scripting surface ---------------------------------------------------------------------
    def open(self, source: str | os.PathLike[str], *, report: str | os.PathLike[str] | None = None) -> int | None:
        """Find the patterns of the labelled folder or CSV ``source`` with the open model (and write
        the report to ``report`` once clustered); the job id."""
        info = self.window.model_info()
        if info is None or self.window.model_pending():
            self.window.show_error("A model is still opening: find patterns once it is ready." if info is not None
                                   else "Open a model first: patterns are the maps of a model over labelled pictures.")
            return None
        self.cancel()
        self._source, self._report = str(source), (str(report) if report else None)
        self._show_dock()
        method = cams.method(self.window.map_choice()["method"])  # the registry's Method (the box gives its name)
        layer = self.window.state.layer if method.uses_layer else None
        self.view.start(f"Reading the labels of {Path(source).name}…")
        self.dock.setWindowTitle(f"Patterns — {Path(source).name} ({method.title})")
        self._model_of_found = (info.source, info.generation, info.display_name)
        request = PatternsRequest(str(source), method=method.name, layer=layer, report=self._report,
                                  model=info.display_name, colormap=self._colormap())
        self._job = self.window.worker.start_job(request)
        return self._job

    def export_report(self, path: str | os.PathLike[str]) -> int | None:
        """Write the report of the clusters shown to ``path`` (only the mistakes' maps are made); the job id.
        None when no clusters are shown (``open(source, report=path)`` then)."""
        found = self.view.found()
        if found is None or self._job is not None:
            return None
        info = self.window.model_info()
        self._report = str(path)
        self.view.set_status(f"Writing the report {Path(path).name}…")
        request = PatternsRequest(found.source, method=found.analysis.method.name, layer=self.window.state.layer
                                  if found.analysis.method.uses_layer else None, report=self._report,
                                  model=info.display_name if info is not None else "", colormap=self._colormap(),
                                  analysis=found.analysis)
        self._job = self.window.worker.start_job(request)
        return self._job

    def job(self) -> int | None:
        return self._job

    def cancel(self) -> None:
        if self._job is not None:
            self.window.worker.cancel_job(self._job)

    def run_again(self) -> None:
        if self._source is not None:
            self.open(self._source)

    def show_picture(self, path: str, class_index: int) -> None:
        """Show the picture at ``path`` with the map of ``class_index`` (opened first when it is not open)."""
        window = self.window
        window.keep_class(int(class_index))
        index = index_of(window.images(), path)
        if index is not None:
            window.show_image(index)
        elif _norm(path) not in self._opening:
            self._opening[_norm(path)] = window.open_images([path])

    # -- worker answers ------------------------------------------------------------------------
    def _on_partial(self, job_id: int, part: Any) -> None:
        if job_id == self._job:
            self.feed.deliver(job_id, part)

    def _on_started(self, job_id: int, info: dict) -> None:
        self.view.set_progress(0, info["total"])
        warning = f" {info['warning']}" if info.get("warning") else ""
        self.view.set_status(f"Mapping {info['total']} pictures with {info['method']}…{warning}")

    def _on_progress(self, job_id: int, done: int, total: int, what: str) -> None:
        if job_id == self._job and total:
            self.view.set_progress(done, total)
            if what == "clustering":
                self.view.set_status("Clustering each class's maps…")

    def _on_clusters(self, _job_id: int, found: Any) -> None:
        self.view.show_found(found)

    def _on_written(self, _job_id: int, path: str) -> None:
        self.view.set_status(f"Report written: {path}")
        self.window.set_status(f"Saved {path}")

    def _on_finished(self, job_id: int, summary: dict) -> None:
        if job_id == self._job:
            self._job = None
            if self.view.cancel_button.isEnabled():
                self.view.finish(bool(summary.get("cancelled")))
            elif bool(summary.get("cancelled")) and self._report:
                self.view.set_status("Cancelled: the report was not written.")
            self._report = None

    def _on_failed(self, job_id: int, message: str) -> None:
        if job_id == self._job:
            self.view.finish(True, message)

    def _on_images(self, request: int, *_answer: Any) -> None:
        self._opening = {path: r for path, r in self._opening.items() if r != request}

    def _follow_state(self, change: str) -> None:
        """Another model: the clusters are the old model's maps, so they go."""
        state = self.window.state
        if change != "model" or self._model_of_found is None:
            return
        source, generation, name = self._model_of_found
        if state.opening is None and state.model is not None and (state.model.source, state.model.generation) == \
                (source, generation):
            return
        self._model_of_found = None
        self.cancel()
        self._job = None
        where = f"“{Path(self._source).name}”" if self._source else "this folder"
        self.view.clear_for_model(f"Cleared: the clusters of {where} came from the model {name}. "
                                  "Run Again to find the patterns of the model now open.")
        self.dock.setWindowTitle("Patterns")

    # -- dialogs -------------------------------------------------------------------------------
    def choose_folder(self) -> None:
        settings = self.window.settings
        folder = QFileDialog.getExistingDirectory(self.window, "Find Patterns in Labelled Folder",
                                                  settings.folder("triage"))
        if folder:
            settings.set_folder("triage", folder)
            self.open(folder)

    def choose_report(self) -> None:
        """Ask where to write the report (and, with no clusters shown, which labelled folder to use)."""
        source = None
        if self.view.found() is None:
            source = QFileDialog.getExistingDirectory(self.window, "Export Report — the Labelled Folder",
                                                      self.window.settings.folder("triage"))
            if not source:
                return
        start = str(Path(self.window.settings.folder("export") or Path.home()) / "report.html")
        path, _ = QFileDialog.getSaveFileName(self.window, "Export Report", start, HTML_FILTER)
        if not path:
            return
        if not path.lower().endswith((".html", ".htm")):
            path += ".html"
        self.window.settings.set_folder("export", str(Path(path).parent))
        if source is None:
            self.export_report(path)
        else:
            self.open(source, report=path)

    # -- helpers -------------------------------------------------------------------------------
    def _show_dock(self) -> None:
        self.dock.show()
        self.dock.raise_()

    def _colormap(self) -> str:
        return self.window.ui.colormap_box.currentText() or "jet"


def _norm(path: str) -> str:
    return os.path.normcase(os.path.realpath(path)) if path else ""

"""Export All, window side: start the worker's job, show its progress, report how it ended.

The work itself — maps, ``<stem>.png`` + ``<stem>.json`` per picture, ``results.csv`` — is the
worker's ``ExportJob`` (``core.batch``, the loop ``gradcam batch`` runs), stepped on the worker
thread between the user's own requests; nothing here computes or writes a file. This module
only hands the window's ``OutputStyle`` to the worker, follows ``jobProgress``/``jobFinished``
with a progress dialog whose Cancel cancels the job, and says at the end where the files went
and what failed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Signal

from gradcam_desktop.core.batch import OutputStyle
from gradcam_desktop.ui import dialogs

__all__ = ["ExportAllRun", "report_text", "start_export_all"]

log = logging.getLogger(__name__)

#: How many failures the final message names one by one.
SHOWN_FAILURES = 3

Decorate = Callable[[np.ndarray, Any], np.ndarray]


class ExportAllRun(QObject):
    """One Export All in progress: ``job_id``, ``cancel()``, ``is_done()``; ``finished`` at the end.

    ``finished`` carries the worker's summary ({"written", "failures", "cancelled", "folder",
    "csv"}); an export that could not start (no model) finishes with that error as its one failure.
    """

    progressed = Signal(int, int, str)  # done, total, picture being worked on
    finished = Signal(dict)

    def __init__(self, worker: Any, folder: str | Path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.folder = Path(folder)
        self.job_id: int | None = None
        self._worker = worker
        self._summary: dict | None = None
        self._cancelled = False
        # Connected before the job is asked for: the worker may answer before start() returns,
        # and a queued signal emitted before its connection would be lost.
        worker.jobProgress.connect(self._on_progress)
        worker.jobFinished.connect(self._on_finished)
        worker.failed.connect(self._on_failed)

    def start(self, image_keys: list[str], *, layer: str | None, class_index: int | None,
              style: OutputStyle, method: str = "gradcam", versus: int | None = None,
              counterfactual: bool = False, region: tuple[float, float, float, float] | None = None) -> int:
        """Ask the worker for the job (the score only when it is not the class's own); returns its id."""
        score: dict = {"versus": versus} if versus is not None else {"counterfactual": True} if counterfactual else {}
        if region is not None:
            score["region"] = region
        self.job_id = self._worker.export_all(image_keys, self.folder, layer=layer, class_index=class_index,
                                              style=style, method=method, **score)
        return self.job_id

    def cancel(self) -> None:
        """Stop after the picture being worked on; results.csv still lists the pictures done."""
        if self.job_id is not None and self._summary is None and not self._cancelled:
            self._cancelled = True
            self._worker.cancel_job(self.job_id)

    def is_done(self) -> bool:
        """True once the job has finished (written, failed or cancelled)."""
        return self._summary is not None

    def summary(self) -> dict | None:
        """The worker's summary once done, else None."""
        return self._summary

    def _on_progress(self, job_id: int, done: int, total: int, name: str) -> None:
        if job_id == self.job_id and self._summary is None:
            self.progressed.emit(done, total, name)

    def _on_finished(self, job_id: int, summary: dict) -> None:
        if job_id == self.job_id and self._summary is None:
            self._end(dict(summary))

    def _on_failed(self, request_id: int, message: str) -> None:
        if request_id == self.job_id and self._summary is None:
            self._end({"written": 0, "failures": [("", message)], "cancelled": False,
                       "folder": str(self.folder), "csv": "", "error": message})

    def _end(self, summary: dict) -> None:
        self._summary = summary
        for signal, slot in ((self._worker.jobProgress, self._on_progress),
                             (self._worker.jobFinished, self._on_finished), (self._worker.failed, self._on_failed)):
            try:
                signal.disconnect(slot)
            except (RuntimeError, TypeError):  # the worker is already gone
                pass
        self.finished.emit(summary)


def report_text(summary: dict) -> str:
    """The one-paragraph end of an export: how many, where, the table, and what failed."""
    written, failures = summary.get("written", 0), summary.get("failures") or []
    if summary.get("error"):
        return summary["error"]
    text = f"Exported {written} picture{'s' if written != 1 else ''} to {summary.get('folder')}"
    if summary.get("csv"):
        text += f", with {Path(summary['csv']).name}"
    text += " (cancelled)." if summary.get("cancelled") else "."
    if failures:
        named = "; ".join(f"{name}: {message}" if name else message for name, message in failures[:SHOWN_FAILURES])
        more = f" (and {len(failures) - SHOWN_FAILURES} more)" if len(failures) > SHOWN_FAILURES else ""
        text += f" {len(failures)} failed: {named}{more}"
    return text


def start_export_all(window: Any, folder: str | Path, *, layer: str | None, class_index: int | None,
                     method: str = "gradcam", versus: int | None = None, counterfactual: bool = False,
                     region: tuple[float, float, float, float] | None = None,
                     style: OutputStyle | None = None, decorate: Decorate | None = None) -> ExportAllRun:
    """Export every picture of ``window`` into ``folder`` with a cancellable progress dialog.

    ``method``, ``versus`` and ``counterfactual`` are the window's map choice (the sidecars and
    results.csv record them, as ``gradcam batch`` does).

    ``style`` (default ``window.output_style()``: the window's alpha, colormap and sidecar
    extras) says how the pictures look; ``decorate(picture_rgb, result) -> rgb`` (e.g.
    ``core.annotate.decorator``), when given, replaces its hook that burns a caption in. The hook
    runs on the batch's writer thread, so it must not touch widgets.
    """
    images = window.images()
    style = style if style is not None else window.output_style()
    if decorate is not None:
        style = replace(style, decorate=decorate)
    run = ExportAllRun(window.worker, folder, parent=window)
    progress = dialogs.download_progress(window, "Export All", run.cancel)
    if progress is not None:
        progress.setRange(0, len(images))
        progress.setLabelText("Exporting…")

        def show_progress(done: int, _total: int, name: str) -> None:
            progress.setValue(done)
            progress.setLabelText(f"Exporting {name}…")

        run.progressed.connect(show_progress)

    def report(summary: dict) -> None:
        if progress is not None:
            progress.close()
            progress.deleteLater()
        message = report_text(summary)
        log.info("Export All: %s", message)
        if summary.get("failures"):
            window.show_error(message, "Export All")
        else:
            window.set_status(message)

    run.progressed.connect(lambda done, total, _name: window.set_status(f"Exporting {done} of {total}…"))
    run.finished.connect(report)
    run.start([image.key for image in images], layer=layer, class_index=class_index, style=style, method=method,
              versus=versus, counterfactual=counterfactual, region=region)
    return run

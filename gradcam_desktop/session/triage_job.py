"""Folder triage as a worker job: one batch of predictions per step, rows streamed to the window.

``TriageRequest`` names the labelled folder or CSV; the worker hands it its ``MapMaker`` (engine,
generation) through ``start_job`` and runs the ``TriageJob`` it returns like any other job, so
user requests (a click on a row opens that picture and its map) go before the next batch. The
first step reads the labels (a folder walk: off the UI thread), the next ones advance
``core.triage.triage`` by one batch each. The job's partial results go back through the job
protocol's ``partial(job id, (kind, data))``: ``("started", info)`` once the labels are read,
``("rows", [TriageRow, …])`` per batch, ``("failed", message)``. Progress and the end come as
every job's (``jobProgress``/``jobFinished``; the job is ``visible``).

Opening another model cancels it (its rows would mix two models).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gradcam_desktop.core.errors import GradCamError, ModelLoadError
from gradcam_desktop.session.requests import _next_id
from gradcam_desktop.session.results import failure_message
from gradcam_desktop.session.scheduler import Job

__all__ = ["BATCH", "TriageJob", "TriageRequest"]

log = logging.getLogger(__name__)

#: Pictures per step. A step is what a click may wait for: 16 pictures of the demo model take
#: tens of ms; with a big model (ResNet50 on 2 cores, ~60 ms a picture) about a second — the
#: core's batch of 32 would double that for little gain in throughput.
BATCH = 16


@dataclass
class TriageRequest:
    """Triage the labelled folder or CSV ``source`` with the open model (``batch`` pictures a step)."""

    source: str
    batch: int = BATCH
    id: int = field(default_factory=_next_id)

    def start_job(self, maker: Any, partial: Callable[[int, Any], None]) -> TriageJob:
        """The job over the engine's ``maker`` (engine, generation), answering through ``partial``;
        ModelLoadError without a model."""
        if maker.engine is None:
            raise ModelLoadError("Open a model first (File → Open Demo Model, or drop a .keras/.h5 file or a SavedModel folder).")
        return TriageJob(self, maker, partial)


class TriageJob(Job):
    """Read the labels, then predict ``batch`` pictures per step (``core.triage.triage``)."""

    group = "triage"  # a newer triage cancels the older one
    visible = True

    def __init__(self, request: TriageRequest, maker: Any, partial: Callable[[int, Any], None], *,
                 triage: Callable[..., Iterator[Any]] | None = None,
                 read_labels: Callable[..., Any] | None = None) -> None:
        """``triage``/``read_labels`` replace the core's (tests); the engine is ``maker.engine`` now."""
        super().__init__(request.id)
        self._request = request
        self._partial = partial
        self._maker = maker
        self._engine = maker.engine
        self._generation = maker.generation
        self._triage = triage
        self._read_labels = read_labels
        self._rows: Iterator[Any] | None = None
        self._total = 0
        self._done = 0
        self._finished = False

    def step(self) -> bool:
        if self._maker.generation != self._generation:
            self.cancel()  # another model opened
        if self.cancelled:
            self._close()
            return False
        try:
            if self._rows is None:
                self._begin()
                return self._total > 0
            batch: list[Any] = []
            for row in self._rows:
                batch.append(row)
                if len(batch) >= self._request.batch:
                    break
            self._done += len(batch)
            if batch:
                self._partial(self.id, ("rows", batch))
            if self._done >= self._total or not batch:
                self._finished = True
                self._close()
                return False
            return True
        except Exception as exc:  # noqa: BLE001 - a failed run is a message in the view, never a dead thread
            if not isinstance(exc, GradCamError):
                log.error("triage of %s failed unexpectedly", self._request.source, exc_info=exc)
            self._close()
            self._partial(self.id, ("failed", failure_message(exc)))
            return False

    def _begin(self) -> None:
        from gradcam_desktop.core import triage as core

        read_labels = self._read_labels or core.read_labels
        core.check_classifier(self._engine)
        names = list(self._engine.class_names)
        labels = read_labels(self._request.source, names)
        self._total = len(labels.pictures)
        self._partial(self.id, ("started", {"total": self._total, "warning": labels.warning,
                                                  "skipped": sum(labels.skipped.values()),
                                                  "class_names": names, "source": str(Path(self._request.source))}))
        run = self._triage or core.triage
        self._rows = run(self._engine, labels.pictures, batch=self._request.batch, cancel=lambda: self.cancelled)

    def _close(self) -> None:
        rows, self._rows = self._rows, None
        if rows is not None and hasattr(rows, "close"):
            rows.close()  # the core's decoding threads stop here

    def progress(self) -> tuple[int, int, str]:
        return self._done, self._total, "triage"

    def summary(self) -> dict:
        return {"cancelled": self.cancelled and not self._finished, "rows": self._done, "total": self._total}

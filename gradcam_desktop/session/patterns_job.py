"""Strategy clusters of a labelled folder as a worker job, and the report written from them.

``PatternsRequest`` names the labelled folder or CSV and, for File → Export Report…, the HTML
file to write (with ``analysis``, one the window already shows, only the report is made). The
engine hands it its ``MapMaker`` through ``start_job`` and runs the
``PatternsJob`` it returns like any other job, so a click on a picture goes before the next
group. The first step reads the labels (a folder walk: off the UI thread), the next ones advance
``core.folder_patterns.PatternsRun`` by one group each (predict and map 16 pictures), the last
one clusters each class and, with ``report`` set, makes the report's mistake maps and writes the
page (``core.report_content``). Partial results go back through the job protocol's
``partial(job id, (kind, data))``: ``("started", info)``, ``("clusters", PatternsFound)`` and
``("report", path)``, ``("failed", message)``; progress and the end come as every job's.
Cancel stops it with nothing clustered (a partial clustering would look like a finding).
Opening another model cancels it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gradcam_desktop.core.errors import GradCamError, ModelLoadError
from gradcam_desktop.session.requests import _next_id
from gradcam_desktop.session.results import failure_message
from gradcam_desktop.session.scheduler import Job

__all__ = ["PatternsFound", "PatternsJob", "PatternsRequest"]

log = logging.getLogger(__name__)


@dataclass
class PatternsRequest:
    """Cluster the maps of the labelled folder or CSV ``source`` with the open model; ``method`` a
    registry name, ``layer`` None = the default one, ``by`` "predicted" or "true". With ``report``
    set, also write the report page there (``model`` names the model on it)."""

    source: str
    method: str = "gradcam"
    layer: str | None = None
    by: str = "predicted"
    clusters: int | None = None
    report: str | None = None
    model: str = ""
    colormap: str = "jet"
    analysis: Any = None  # a folder_patterns.Analysis already made: skip to the report
    id: int = field(default_factory=_next_id)

    def start_job(self, maker: Any, partial: Callable[[int, Any], None]) -> PatternsJob:
        """The job over the engine's ``maker`` (engine, generation), answering through ``partial``;
        ModelLoadError without a model."""
        if maker.engine is None:
            raise ModelLoadError("Open a model first (File → Open Demo Model, or drop a model file).")
        return PatternsJob(self, maker, partial)


@dataclass
class PatternsFound:
    """What the window shows: the analysis (``Analysis.without_copies``), and each cluster's mean map
    {(class, cluster): (32, 32)}."""

    analysis: Any  # core.folder_patterns.Analysis
    means: dict[tuple[int, int], np.ndarray]
    source: str


class PatternsJob(Job):
    """Read the labels, predict and map a group per step, cluster, and write the report if asked."""

    group = "patterns"  # a newer run cancels the older one
    visible = True

    def __init__(self, request: PatternsRequest, maker: Any, partial: Callable[[int, Any], None]) -> None:
        super().__init__(request.id)
        self._request = request
        self._partial = partial
        self._maker = maker
        self._engine = maker.engine
        self._generation = maker.generation
        self._run: Any = None
        self._stage = "labels"  # labels → mapping → report → done
        self._found: Any = None
        self._what = "reading the labels"

    def step(self) -> bool:
        if self._maker.generation != self._generation:
            self.cancel()  # another model opened
        if self.cancelled:
            self._close()
            return False
        try:
            if self._stage == "labels" and self._request.analysis is not None:
                self._found, self._stage, self._what = self._request.analysis, "report", "writing the report"
            if self._stage == "labels":
                return self._begin()
            if self._stage == "mapping":
                if self._run.step():
                    return True
                self._cluster()
                return self._stage == "report"
            if self._stage == "report":
                self._write_report()
            return False
        except Exception as exc:  # noqa: BLE001 - a failed run is a message in the view, never a dead thread
            if not isinstance(exc, GradCamError):
                log.error("patterns of %s failed unexpectedly", self._request.source, exc_info=exc)
            self._close()
            self._stage = "done"
            self._partial(self.id, ("failed", failure_message(exc)))
            return False

    def _begin(self) -> bool:
        from gradcam_desktop.core import cams
        from gradcam_desktop.core.folder_patterns import PatternsRun
        from gradcam_desktop.core.triage import check_classifier, read_labels

        try:
            import sklearn  # noqa: F401 - only to know whether the extra is installed
        except ImportError:
            raise GradCamError('Finding patterns needs scikit-learn: pip install "gradcam-desktop[patterns]".') \
                from None
        request = self._request
        method = cams.method(request.method)
        self._engine.check_method(method)
        check_classifier(self._engine)
        names = list(self._engine.class_names)
        labels = read_labels(request.source, names)
        self._run = PatternsRun(self._engine, labels.pictures, method=method, layer=request.layer, by=request.by,
                                clusters=request.clusters)
        self._partial(self.id, ("started", {"total": len(labels.pictures), "warning": labels.warning,
                                            "skipped": sum(labels.skipped.values()), "class_names": names,
                                            "source": str(Path(request.source)), "method": method.title}))
        self._stage = "mapping"
        self._what = "mapping"
        if not labels.pictures:
            self._cluster()
            return self._stage == "report"
        return True

    def _cluster(self) -> None:
        from gradcam_desktop.core import patterns

        self._what = "clustering"
        found = self._run.finish()
        self._found = found
        means: dict[tuple[int, int], np.ndarray] = {}
        for class_index, clustering in found.clusterings.items():
            rows = found.class_rows(class_index)
            for cluster, grid in patterns.mean_maps(found.features[rows], clustering.labels).items():
                means[(class_index, cluster)] = grid.astype(np.float32)
        self._partial(self.id, ("clusters", PatternsFound(found.without_copies(), means,
                                                          str(Path(self._request.source)))))
        self._stage = "report" if self._request.report else "done"
        self._what = "writing the report"

    def _write_report(self) -> None:
        from gradcam_desktop.core import report, report_content

        request = self._request
        page = report_content.build(self._found, self._engine, model=request.model, source=request.source,
                                    layer=request.layer, colormap=request.colormap, cancel=lambda: self.cancelled)
        if self.cancelled:
            return
        report.write_report(str(request.report), page)
        self._stage = "done"
        self._partial(self.id, ("report", str(request.report)))

    def _close(self) -> None:
        if self._run is not None:
            self._run.close()

    def progress(self) -> tuple[int, int, str]:
        if self._run is None:
            return 0, 0, self._what
        return self._run.predicted, self._run.total, self._what

    def summary(self) -> dict:
        return {"cancelled": self.cancelled and self._stage != "done",
                "pictures": 0 if self._run is None else self._run.predicted}

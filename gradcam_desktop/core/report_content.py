"""What the shared report shows, made from an analysed folder: its clusters' pictures and its
most confident mistakes with their maps (``report.Report``, which core/report.py renders).

``gradcam report`` and the window's File → Export Report… both call ``build``; the mistakes'
maps need the engine (two maps each, the predicted and the true class), the rest is the
``folder_patterns.Analysis``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import files, report
from .cluster_sheets import cluster_sheets
from .errors import GradCamError
from .folder_patterns import Analysis
from .images import load_image
from .mistake_picture import explained_picture
from .triage import confusion_matrix

__all__ = ["MISTAKES", "build"]

#: Mistakes shown (the most confident ones): a page, not a dump.
MISTAKES = 12


def build(found: Analysis, engine: Any, *, model: str, source: str, layer: str | None = None,
          colormap: str = "jet", say: Callable[[str], None] | None = None,
          cancel: Callable[[], bool] | None = None) -> report.Report:
    """The page for ``found``: ``say`` gets one line per mistake whose maps could not be made;
    ``cancel()`` (asked before each mistake) stops adding mistakes."""
    tell = say or (lambda _line: None)
    rows = list(found.triage_rows)
    read = [row for row in rows if not row.error]
    sheets = cluster_sheets(found, colormap)
    clusters = [report.ClusterSection(r.class_name, r.cluster, r.size, r.outlier, r.mean_inside_share,
                                      sheets[(r.class_index, r.cluster)][1]) for r in found.cluster_rows]
    mistakes = []
    for row in report.most_confident(rows, MISTAKES):
        if cancel is not None and cancel():
            break
        try:
            image = load_image(row.image)
            picture = explained_picture(engine, image, row, layer, found.method.name, colormap)
        except GradCamError as error:
            tell(f"No maps for {Path(row.image).name} in the report: {error}")
            continue
        mistakes.append(report.Mistake(Path(row.image).name, row.true_name, row.predicted_name, row.probability,
                                       files.png_bytes(row.image, picture)))
    notes = []
    if found.skipped:
        notes.append(f"{found.skipped} picture{'s' if found.skipped != 1 else ''} could not be read or mapped.")
    if found.interrupted:
        notes.append(f"Interrupted: only {len(rows)} of {found.total} pictures are in this report.")
    return report.Report(model=model, source=source, method=found.method.title, class_names=found.names,
                         pictures=len(rows), read=len(read), correct=sum(1 for row in read if row.correct),
                         matrix=confusion_matrix(rows, len(found.names)), clusters=clusters, mistakes=mistakes,
                         mistakes_total=sum(1 for row in read if not row.correct), notes=notes, by=found.by)

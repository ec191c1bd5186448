"""``gradcam report``: one self-contained HTML page on a model and a labelled folder, to share.

The folder is predicted, mapped and clustered as ``gradcam patterns`` does (``patterns.analyse``);
the page (core/report.py) shows the accuracy and confusion matrix, each class's strategy clusters
and the most confident mistakes with the maps of the predicted and the true class.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..core import files, report
from ..core.errors import GradCamError
from ..core.images import load_image
from ..core.triage import confusion_matrix
from . import patterns, shared
from .triage import explained_picture

__all__ = ["MISTAKES", "run"]

#: Mistakes shown (the most confident ones): a page, not a dump.
MISTAKES = 12


def run(args) -> int:
    """Analyse the folder, write the page; print where it is."""
    out = Path(args.out)
    shared.check_output_path(out, "--out")
    if out.suffix.lower() not in (".html", ".htm"):
        raise GradCamError(f"--out {shared.one_line(str(out))} should end in .html (the report is a web page).")
    if not out.parent.exists():
        raise GradCamError(f"Cannot write {shared.one_line(str(out))}: its folder does not exist.")
    found = patterns.analyse(args)
    rows = [row for row in found.triage_rows]
    read = [row for row in rows if not row.error]
    sheets = patterns.cluster_sheets(found, args.colormap)
    clusters = [report.ClusterSection(r.class_name, r.cluster, r.size, r.outlier, r.mean_inside_share,
                                      sheets[(r.class_index, r.cluster)][1]) for r in found.cluster_rows]
    mistakes = []
    wrong = report.most_confident(rows, MISTAKES)
    for row in wrong:
        try:
            image = load_image(row.image)
            picture = explained_picture(found.engine, image, row, args.layer, found.method.name, args.colormap)
        except GradCamError as error:
            print(shared.one_line(f"No maps for {Path(row.image).name} in the report: {error}"), file=sys.stderr)
            continue
        mistakes.append(report.Mistake(Path(row.image).name, row.true_name, row.predicted_name, row.probability,
                                       files.png_bytes(row.image, picture)))
    notes = []
    if found.skipped:
        notes.append(f"{found.skipped} picture{'s' if found.skipped != 1 else ''} could not be read or mapped.")
    if found.interrupted:
        notes.append(f"Interrupted: only {len(rows)} of {found.total} pictures are in this report.")
    page = report.Report(model=found.loaded.display_name, source=str(args.source), method=found.method.title,
                         class_names=found.names, pictures=len(rows), read=len(read),
                         correct=sum(1 for row in read if row.correct),
                         matrix=confusion_matrix(rows, len(found.names)), clusters=clusters, mistakes=mistakes,
                         mistakes_total=sum(1 for row in read if not row.correct), notes=notes, by=args.by)
    report.write_report(out, page)
    print(f"Report → {out} ({len(clusters)} cluster{'s' if len(clusters) != 1 else ''}, {len(mistakes)} mistake"
          f"{'s' if len(mistakes) != 1 else ''} shown)")
    return 130 if found.interrupted else 0

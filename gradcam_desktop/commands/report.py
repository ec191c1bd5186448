"""``gradcam report``: one self-contained HTML page on a model and a labelled folder, to share.

The folder is predicted, mapped and clustered as ``gradcam patterns`` does (``patterns.analyse``);
the page (core/report_content.py builds it, core/report.py renders it) shows the accuracy and
confusion matrix, each class's strategy clusters and the most confident mistakes with the maps
of the predicted and the true class.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..core import report, report_content
from ..core.errors import GradCamError
from . import patterns, shared

__all__ = ["run"]


def run(args) -> int:
    """Analyse the folder, write the page; print where it is."""
    out = Path(args.out)
    shared.check_output_path(out, "--out")
    if out.suffix.lower() not in (".html", ".htm"):
        raise GradCamError(f"--out {shared.one_line(str(out))} should end in .html (the report is a web page).")
    if not out.parent.exists():
        raise GradCamError(f"Cannot write {shared.one_line(str(out))}: its folder does not exist.")
    loaded, engine, found = patterns.analyse(args)
    page = report_content.build(found, engine, model=loaded.display_name, source=str(args.source), layer=args.layer,
                                colormap=args.colormap,
                                say=lambda line: print(shared.one_line(line), file=sys.stderr))
    report.write_report(out, page)
    print(f"Report → {out} ({len(page.clusters)} cluster{'s' if len(page.clusters) != 1 else ''}, "
          f"{len(page.mistakes)} mistake{'s' if len(page.mistakes) != 1 else ''} shown)")
    return 130 if found.interrupted else 0

"""One self-contained HTML file that says what a model relies on, for people who will not open the app.

``write_report`` writes a single page — CSS inline, every picture embedded as a ``data:`` PNG, no
script, no link to anything outside the file — so it can be mailed or put on a share and opened in
any browser, offline. It shows the model and the data, the accuracy and the confusion matrix, the
strategy clusters of each class (their mean maps and nearest pictures, the small far ones flagged,
inside shares when masks were given) and the mistakes with the maps of the predicted and the true
class. Every text that comes from outside (file, class and model names) is escaped: a picture
called ``<script>.png`` is shown, never run. The file is written atomically.

Qt-free and TensorFlow-free: the caller (``commands/report.py``) computes the maps and pictures.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from . import files

__all__ = ["ClusterSection", "Mistake", "Report", "render", "write_report"]


@dataclass
class ClusterSection:
    """One cluster: its class, number, size, outlier flag, mean inside share (NaN: unknown) and picture (PNG)."""

    class_name: str
    cluster: int
    size: int
    outlier: bool
    mean_inside_share: float
    png: bytes


@dataclass
class Mistake:
    """One wrongly predicted picture: its name, true and predicted class, and its maps side by side (PNG)."""

    image: str
    true_name: str
    predicted_name: str
    probability: float
    png: bytes


@dataclass
class Report:
    """What the page shows."""

    model: str
    source: str
    method: str
    class_names: list[str]
    pictures: int
    read: int
    correct: int
    matrix: np.ndarray  # (classes, classes): rows true, columns predicted
    clusters: list[ClusterSection] = field(default_factory=list)
    mistakes: list[Mistake] = field(default_factory=list)
    mistakes_total: int = 0
    notes: list[str] = field(default_factory=list)
    by: str = "predicted"


_CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2em auto;max-width:1100px;color:#1d1d1f;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:.2em}
.sub{color:#555}.figure{font-size:2em;font-weight:600}.note{color:#8a4b00}
table.cm{border-collapse:collapse;margin:.6em 0}table.cm td,table.cm th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
table.cm th{background:#f4f4f4}.cluster{margin:1em 0;padding:.6em;border:1px solid #ddd;border-radius:6px}
.cluster.outlier{border:2px solid #c62828;background:#fff5f5}.flag{color:#c62828;font-weight:600}
img{max-width:100%;height:auto;display:block;margin-top:.4em}.mistake{margin:1.2em 0}
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _png(data: bytes, alt: str) -> str:
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}">'


def _percent(value: float) -> str:
    return "–" if value is None or math.isnan(value) else f"{value * 100:.1f} %"


def _matrix(report: Report) -> str:
    names = report.class_names
    matrix = np.asarray(report.matrix)
    peak = max(1, int(matrix.max())) if matrix.size else 1
    head = "".join(f"<th>{_e(n)}</th>" for n in names)
    rows = []
    for i, name in enumerate(names):
        cells = []
        for j in range(len(names)):
            count = int(matrix[i, j]) if i < matrix.shape[0] and j < matrix.shape[1] else 0
            shade = int(255 - 120 * count / peak)
            colour = f"rgb({shade},{255 if i == j else shade},{shade})" if count else "#fff"
            cells.append(f'<td style="background:{colour}">{count}</td>')
        rows.append(f"<tr><th>{_e(name)}</th>{''.join(cells)}</tr>")
    return (f'<table class="cm"><tr><th>true \\ predicted</th>{head}</tr>{"".join(rows)}</table>'
            if names else "")


def render(report: Report) -> str:
    """The page as text (``write_report`` writes it)."""
    accuracy = report.correct / report.pictures if report.pictures else math.nan
    unread = report.pictures - report.read
    unread_text = f"; {unread} could not be read and count as wrong" if unread else ""
    parts = [
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        # No script, and nothing may load from elsewhere: the policy makes that so even for a hostile name.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
        "style-src 'unsafe-inline'\">",
        f"<title>What {_e(report.model)} relies on</title><style>{_CSS}</style></head><body>",
        f"<h1>What {_e(report.model)} relies on</h1>",
        f'<p class="sub">{report.pictures} labelled pictures from {_e(report.source)} · maps by {_e(report.method)} '
        f"· made {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')} by Grad-CAM Desktop</p>",
        "<h2>Accuracy</h2>",
        f'<p><span class="figure">{_percent(accuracy)}</span> right ({report.correct} of {report.pictures}'
        f"{unread_text})</p>",
        _matrix(report),
        "<h2>What it relies on, class by class</h2>",
        "<p>The maps of the pictures " + ("labelled" if report.by == "true" else "predicted") +
        " as each class are grouped by where they put the evidence (spectral relevance analysis). A class "
        "the model learned one way has one group; a <span class=\"flag\">small group far from the others</span> "
        "is where a shortcut hides — a watermark, a frame, a background — look at its pictures. The first "
        "tile of each group is its mean map, the others the pictures nearest its centre."
        + (" <i>Inside share</i>: how much of a map's energy falls inside the object marked on the picture."
           if any(not math.isnan(c.mean_inside_share) for c in report.clusters) else "") + "</p>",
    ]
    for cluster in report.clusters:
        share = "" if math.isnan(cluster.mean_inside_share) else f" · inside share {_percent(cluster.mean_inside_share)}"
        flag = ' · <span class="flag">small and far from the others: look at it</span>' if cluster.outlier else ""
        parts.append(f'<div class="cluster{" outlier" if cluster.outlier else ""}"><b>{_e(cluster.class_name)}</b>, '
                     f"group {cluster.cluster}: {cluster.size} picture{'s' if cluster.size != 1 else ''}{share}{flag}"
                     f"{_png(cluster.png, f'{cluster.class_name} group {cluster.cluster}')}</div>")
    parts.append("<h2>Mistakes</h2>")
    if not report.mistakes_total:
        parts.append("<p>None: every picture that could be read was predicted right.</p>")
    else:
        shown = len(report.mistakes)
        parts.append(f"<p>{report.mistakes_total} picture{'s' if report.mistakes_total != 1 else ''} predicted wrong"
                     f"{f'; the {shown} most confident mistakes' if shown < report.mistakes_total else ''}: "
                     "where the model looked for the class it chose, beside where it looked for the true one.</p>")
        for mistake in report.mistakes:
            parts.append(f'<div class="mistake"><b>{_e(mistake.image)}</b>: {_e(mistake.true_name)} taken for '
                         f"{_e(mistake.predicted_name)} ({_percent(mistake.probability)})"
                         f"{_png(mistake.png, mistake.image)}</div>")
    if report.notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f'<li class="note">{_e(n)}</li>' for n in report.notes) + "</ul>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_report(path: str | os.PathLike[str], report: Report) -> None:
    """Write the page atomically (a half-written report never replaces a good one)."""
    files.atomic_write_bytes(path, render(report).encode("utf-8"))


def most_confident(rows: Sequence, count: int) -> list:
    """The ``count`` wrong rows with the highest probability for the wrong class (the most telling)."""
    wrong = [row for row in rows if not row.error and not row.correct]
    return sorted(wrong, key=lambda row: -float(row.probability))[:count]

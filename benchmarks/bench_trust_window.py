"""How long the Trust panel's report takes in the window, and how fast a newer picture supersedes it.

    python benchmarks/bench_trust_window.py [--model demo] [--reports 3]

Runs the real window offscreen on the demo model (or ``--model``) with the sample pictures and the
Trust panel open (its action, as Ctrl+T does). Measures

- report: showing a map never checked before → ``reportShown`` of its report (the map itself
  included; a gradient map takes a few ms). The first one also traces the batched forward pass;
- supersede: one trial per step of the report (n batches of forward passes, then the sanity
  steps): a newer picture is clicked (``show_image``) right after that step is reported, so the
  next step is running; the time is the click → ``jobFinished`` of the old job with ``cancelled``
  set (the worker cancels it when the newer map's request arrives, after the step running).

Every map of the trials is new (picture × class kept), so no report comes from the cache.
Settings go to a temporary folder. Prints Markdown tables.

Measured (this 2-core machine shared with other work, demo model, 1400×960, after core/trust.py
keeps one model copy per engine): a full report (50 steps, random-order baseline, 8 sanity steps =
15 job steps) 1.4–1.8 s from the click (job steps 1.1–1.3 s); supersede median 53 ms, worst
187 ms — a batch step (29 forward passes) costs 140–190 ms, a sanity step 30–70 ms. The first
report of a model also pays for the copy and its first trace in its first sanity step (370–480 ms
on the demo before the copy was kept).
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("GRADCAM_DESKTOP_NO_DIALOGS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo")
    parser.add_argument("--reports", type=int, default=3, help="full reports to time")
    args = parser.parse_args()

    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    for fmt in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
        QSettings.setPath(fmt, QSettings.Scope.UserScope, tempfile.mkdtemp(prefix="gradcam-bench-"))
    app = QApplication([sys.argv[0]])
    from gradcam_desktop.__main__ import sample_pictures
    from gradcam_desktop.ui import MainWindow

    window = MainWindow()
    window.resize(1400, 960)
    window.show()
    shown: list = []
    reports: list = []
    finished: dict[int, tuple[float, dict]] = {}
    progress: dict[int, tuple[int, int]] = {}
    window.resultShown.connect(lambda result: shown.append(result))
    window.trust.reportShown.connect(lambda outcome: reports.append((time.perf_counter(), outcome)))
    window.worker.jobFinished.connect(lambda job, summary: finished.setdefault(job, (time.perf_counter(), summary)))
    window.worker.jobProgress.connect(lambda job, done, total, _w: progress.__setitem__(job, (done, total)))

    def wait(condition, timeout=300.0):
        end = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > end:
                raise SystemExit("bench: timed out")
            app.processEvents()
            time.sleep(0.0005)

    window.open_model(args.model)
    window.open_images([str(p) for p in sample_pictures(REPO / "images")])
    wait(lambda: shown and window.model_info() is not None)
    classes = len(window.model_info().class_names)
    combos = itertools.product(range(classes), range(len(window.images())))

    def show() -> float:
        """Show the next map whose report is not cached yet; when it was asked for."""
        while True:
            class_index, picture = next(combos)
            count = len(shown)
            start = time.perf_counter()
            window.keep_class(class_index)
            window.show_image(picture)
            key = window.images()[picture].key
            wait(lambda count=count, class_index=class_index, key=key: len(shown) > count
                 and shown[-1].class_index == class_index and shown[-1].image_key == key)
            if window.trust.cached(shown[-1]) is None:
                return start

    # Full reports (the first one with the panel's own start-up and the first traces).
    window.trust.dock.toggleViewAction().trigger()
    wait(lambda: reports)
    timed = []
    for _ in range(args.reports):
        count = len(reports)
        start = show()
        wait(lambda count=count: len(reports) > count)
        timed.append(((reports[-1][0] - start) * 1000, reports[-1][1].seconds * 1000))
    print("| report | click → report shown (ms) | job steps (ms) |")
    print("|---:|---:|---:|")
    for index, (total, steps) in enumerate(timed, 1):
        print(f"| {index} | {total:.0f} | {steps:.0f} |")

    # Supersede: a click while each step in turn is running.
    show()
    wait(lambda: window.trust.job() is not None)
    total = None
    rows = []
    step = 1
    while total is None or step < total:
        job = window.trust.job()
        wait(lambda job=job, step=step: job in finished or progress.get(job, (0, 1))[0] >= step)
        if job in finished:
            raise SystemExit("bench: the report ended before the click")
        total = progress[job][1]
        clicked = show()
        wait(lambda job=job: job in finished)
        at, summary = finished[job]
        rows.append((step, total, (at - clicked) * 1000, summary.get("cancelled")))
        wait(lambda job=job: window.trust.job() not in (None, job))
        step += 1
    window.close()
    print()
    print("| steps done at the click | of | click → old job cancelled (ms) | cancelled |")
    print("|---:|---:|---:|:---:|")
    for step, total, ms, cancelled in rows:
        print(f"| {step} | {total} | {ms:.0f} | {cancelled} |")
    values = [row[2] for row in rows]
    print(f"supersede: median {statistics.median(values):.0f} ms, worst {max(values):.0f} ms over {len(rows)} clicks")
    return 0


if __name__ == "__main__":
    sys.exit(main())

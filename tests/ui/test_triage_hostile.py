"""Issue 18 in the window: what triage skipped or could not read stays visible once the run ends.

A run of a few pictures ends in well under a second: the labels' warning (pictures whose label
names no class) must still be in the status line after it, and the summary must count the
skipped pictures and the unreadable class folder (as wrong, like `gradcam triage`). The widget
test counts by hand; the window test runs the real job on the demo model over a folder with a
class folder that is a link to a missing folder, and exports the table.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from ui_window import demo_window

from gradcam_desktop.core.triage import TRIAGE_FIELDS, TriageRow
from gradcam_desktop.ui.triage.view import TriageView

NAMES = ["circle", "square", "triangle", "star"]
WARNING = "Skipped 2 pictures whose subfolders name no class of this model: 'dogs' (2). This model's classes: …"
TIMEOUT = 60_000


def _row(name: str, true: int, predicted: int | None) -> TriageRow:
    if predicted is None:
        nan = math.nan
        return TriageRow(f"/pics/{name}", true, NAMES[true], None, "", nan, nan, False, nan, f"{name} cannot be read")
    return TriageRow(f"/pics/{name}", true, NAMES[true], predicted, NAMES[predicted], 0.7, 0.7 if predicted == true
                     else 0.2, predicted == true, 0.4 if predicted == true else -0.5)


def test_the_warning_and_the_counts_outlive_the_run(qtbot):
    view = TriageView()
    qtbot.addWidget(view)
    view.start(NAMES)
    view.set_warning(WARNING, 2)
    assert view.status.text() == WARNING
    rows = [_row("a.png", 0, 0), _row("b.png", 1, 1), _row("c.png", 2, 0), _row("square", 1, None)]
    view.add_rows(rows)
    view.finish(False)
    assert view.status.text() == f"Done: 4 pictures. {WARNING}"
    summary = view.summary.text()
    assert "accuracy 50.0 %" in summary  # 2 right of 4: the unreadable one counts as wrong
    assert "1 unreadable (counted as wrong)" in summary and "2 skipped (label names no class)" in summary
    view.finish(True)
    assert view.status.text() == f"Cancelled after 4 pictures. {WARNING}"
    view.start(NAMES)  # the next run starts without the old warning
    view.finish(False)
    assert view.status.text() == "Done: 0 pictures." and "skipped" not in view.summary.text()


@pytest.fixture
def window(qtbot):
    return demo_window(qtbot, 1280, 900)


def test_a_run_with_skipped_pictures_and_an_unreadable_folder(window, qtbot, tmp_path):
    from gradcam_desktop.core.demo_data import CLASS_NAMES, make_sample
    from gradcam_desktop.ui.triage.wiring import export_table

    root = tmp_path / "labelled"
    rng = np.random.default_rng(1)
    for index, name in enumerate(CLASS_NAMES[:3]):
        (root / name).mkdir(parents=True)
        rgb, _, _ = make_sample(rng, 64, index)
        cv2.imwrite(str(root / name / f"{name}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    (root / "dogs").mkdir()
    for i in range(2):
        cv2.imwrite(str(root / "dogs" / f"dog{i}.png"), np.zeros((8, 8, 3), np.uint8))
    (root / CLASS_NAMES[3]).symlink_to(tmp_path / "not_mounted")
    controller = window.triage
    with qtbot.waitSignal(window.worker.jobFinished, timeout=TIMEOUT):
        controller.open(root, batch=16)
    view = controller.view
    status, summary = view.status.text(), view.summary.text()
    assert status.startswith("Done: 4 pictures.") and "'dogs' (2)" in status
    assert "1 unreadable (counted as wrong)" in summary and "2 skipped" in summary
    export_table(view, tmp_path / "triage.csv")
    with open(tmp_path / "triage.csv", newline="", encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    assert list(table[0]) == TRIAGE_FIELDS
    (folder,) = [r for r in table if r["error"]]
    assert Path(folder["image"]) == root / CLASS_NAMES[3] and "not_mounted" in folder["error"]

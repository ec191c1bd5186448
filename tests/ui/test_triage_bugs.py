"""Issue 17, §2 and §5: a triage row opens its picture once; the exported matrix has no selection on it.

Clicks and double clicks are real mouse events on the row's and the cell's ``visualRect``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest
from ui_window import shown_window

from gradcam_desktop.core.demo_data import make_sample
from gradcam_desktop.core.triage import TriageRow
from gradcam_desktop.ui.triage.view import TriageView
from gradcam_desktop.ui.triage.wiring import export_matrix

TIMEOUT = 60_000
NAMES = ["circle", "square", "triangle", "star"]


def _labelled_folder(root: Path, per_class: int) -> None:
    rng = np.random.default_rng(0)
    for index, name in enumerate(NAMES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            rgb, _cls, _mask = make_sample(rng, 64, index)
            cv2.imwrite(str(root / name / f"{name}_{k:03d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def _row(name: str, true: int, predicted: int, p: float) -> TriageRow:
    return TriageRow(f"/pics/{name}", true, NAMES[true], predicted, NAMES[predicted], p, 1 - p, true == predicted,
                     (1 - p) - p if true != predicted else p - (1 - p))


def _rows() -> list[TriageRow]:
    return [_row("a.png", 0, 0, 0.9), _row("b.png", 0, 1, 0.6), _row("c.png", 0, 1, 0.7), _row("d.png", 0, 1, 0.8),
            _row("e.png", 1, 1, 0.8), _row("f.png", 3, 3, 0.7), _row("g.png", 2, 2, 0.97), _row("h.png", 3, 1, 0.55)]


# -- §2: a row click selects the picture already in the strip ----------------------------------------
@pytest.fixture
def triaged(qtbot, tmp_path):
    _labelled_folder(tmp_path / "labelled", 3)
    w = shown_window(qtbot, 1280, 800)
    with qtbot.waitSignal(w.worker.modelLoaded, timeout=TIMEOUT):
        w.open_model("demo")
    with qtbot.waitSignal(w.worker.jobFinished, timeout=TIMEOUT):
        w.triage.open(tmp_path / "labelled")
    return w


def _row_point(view, row) -> QPoint:
    index = view.proxy.index(view.visible_rows().index(row), 1)
    view.table.scrollTo(index)
    return view.table.visualRect(index).center()


def test_a_double_click_on_a_row_opens_its_picture_once(qtbot, triaged):
    w = triaged
    view = w.triage.view
    first, second = [r for r in view.visible_rows() if not r.error][:2]
    table = view.table.viewport()
    # The user double-clicks a row whose picture is not open yet: click, then the double click
    # (clicked, clicked again and activated all come before the picture has been decoded).
    with qtbot.waitSignal(w.resultShown, timeout=TIMEOUT, check_params_cb=lambda r: r.image == first.image):
        QTest.mouseClick(table, Qt.MouseButton.LeftButton, pos=_row_point(view, first))
        QTest.mouseDClick(table, Qt.MouseButton.LeftButton, pos=_row_point(view, first))
        QTest.mouseRelease(table, Qt.MouseButton.LeftButton, pos=_row_point(view, first))
    qtbot.wait(300)  # a second copy would be decoded by now
    assert [Path(i.path).name for i in w.images()] == [Path(first.image).name]
    assert w.ui.strip.count() == 1
    # Another row, then the first again: the first is selected in the strip, not added.
    with qtbot.waitSignal(w.resultShown, timeout=TIMEOUT, check_params_cb=lambda r: r.image == second.image):
        QTest.mouseClick(table, Qt.MouseButton.LeftButton, pos=_row_point(view, second))
    with qtbot.waitSignal(w.resultShown, timeout=TIMEOUT, check_params_cb=lambda r: r.image == first.image):
        QTest.mouseClick(table, Qt.MouseButton.LeftButton, pos=_row_point(view, first))
    assert len(w.images()) == w.ui.strip.count() == 2
    assert w.ui.strip.currentRow() == 0 and w.current_image().path == w.images()[0].path


# -- §5: Export matrix… writes the matrix without the selection ----------------------------------------
@pytest.fixture
def view(qtbot):
    widget = TriageView()
    qtbot.addWidget(widget)
    widget.resize(1100, 420)
    widget.show()
    qtbot.waitExposed(widget)
    widget.start(NAMES)
    widget.add_rows(_rows())
    return widget


def _read(path: Path) -> np.ndarray:
    image = cv2.imread(str(path))
    assert image is not None
    return image


def _cell(image: np.ndarray, matrix, true: int, predicted: int) -> np.ndarray:
    rect = matrix.cell_rect(true, predicted).translated(matrix.viewport().pos())
    return image[rect.top():rect.bottom() + 1, rect.left():rect.right() + 1]


def test_exported_matrix_has_no_selection_frame(qtbot, view, tmp_path):
    matrix = view.matrix
    cell = (0, 1)  # circle predicted as square: three pictures
    point = matrix.cell_rect(*cell).center()
    QTest.mouseMove(matrix.viewport(), point)
    QTest.mouseClick(matrix.viewport(), Qt.MouseButton.LeftButton, pos=point)
    assert matrix.chosen() == cell and matrix.selectionModel().hasSelection()  # the framed cell on screen
    matrix.grab().save(str(tmp_path / "screen.png"))
    export_matrix(view, tmp_path / "confusion.png")
    assert matrix.chosen() == cell and matrix.selectionModel().isSelected(matrix.model().index(0, 1))  # still chosen
    assert len(view.visible_rows()) == 3  # and the table still filtered to it

    exported = _read(tmp_path / "confusion.png")
    QTest.mouseClick(matrix.viewport(), Qt.MouseButton.LeftButton, pos=point)  # again: nothing chosen
    QTest.mouseMove(view.table.viewport(), QPoint(5, 5))
    assert matrix.chosen() is None and not matrix.selectionModel().hasSelection()
    matrix.grab().save(str(tmp_path / "unselected.png"))
    unselected = _read(tmp_path / "unselected.png")

    assert exported.shape == unselected.shape
    assert np.array_equal(_cell(exported, matrix, *cell), _cell(unselected, matrix, *cell))
    assert not np.array_equal(_cell(_read(tmp_path / "screen.png"), matrix, *cell), _cell(unselected, matrix, *cell))
    assert np.array_equal(exported, unselected)  # headers included: nothing says which cell was chosen

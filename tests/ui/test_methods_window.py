"""Issue 7 in the window: the method picker, the score choice, Score-CAM as a job, and the words.

Choices are made through real input events (keys to the focused combo box, clicks on the popup's
rows and on the radio buttons), never by setting a current index behind the widgets' backs.

Maps shown are compared with a second engine (``GradCam`` on the same demo model and the same
decoded picture) run in the test. Both run the same compiled float32 graph on the same input
bytes in one process, so the layer's activations A and gradients g are the same numbers (the
TensorFlow CPU kernels are deterministic for a given shape and thread pool). What may differ is
the order in which the NumPy/BLAS reduction sums them (SIMD paths depend on buffer alignment).
Each of the two maps is then a float32 evaluation of the method's formula on the same A and g,
and ``tests/cam_reference.py`` bounds the error e of ANY such evaluation against the exact value
(running error analysis, any summation order): the two maps differ by at most 2e per position.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from ui_window import click_combo_row, shown_window
from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QComboBox, QProgressBar, QRadioButton

import cam_reference as cr
from gradcam_desktop.core import cams
from gradcam_desktop.core.images import load_image
from gradcam_desktop.core.types import MapResult
from gradcam_desktop.ui import MainWindow
from gradcam_desktop.ui.dialogs import HELP_TEXT
from gradcam_desktop.session.requests import MapSpec

TIMEOUT = 60_000
REPO = Path(__file__).resolve().parents[2]
PICTURE = REPO / "images" / "two_objects_circle_star.png"
DEMO_CLASSES = ["circle", "square", "triangle", "star"]
LAYER = "last_conv"


# -- fixtures and helpers -------------------------------------------------------------------------
@pytest.fixture
def window(qtbot):
    w = shown_window(qtbot, 1200, 800)
    return w


@pytest.fixture
def demo(window, qtbot):
    """The window with the demo model and the circle-and-star picture (top class: circle)."""
    first = _shown(qtbot, window, lambda: (window.open_model("demo"),
                                           window.open_images([PICTURE, REPO / "images" / "star.png"])))
    assert first.class_name == "circle" and first.method == "gradcam"  # the scenario's premise
    return window


def _shown(qtbot, window, action, check=lambda _r: True) -> MapResult:
    with qtbot.waitSignal(window.resultShown, timeout=TIMEOUT, check_params_cb=check) as blocker:
        action()
    return blocker.args[0]


def _method_box(window) -> QComboBox:
    box = window.findChild(QComboBox, "methodBox")
    assert box is not None
    return box


def _key_to_method(window, name: str) -> None:
    """Up/Down on the focused, closed method box until ``name`` is shown (each key is a choice)."""
    box = _method_box(window)
    box.setFocus()
    target = box.findData(name)
    key = Qt.Key.Key_Down if target > box.currentIndex() else Qt.Key.Key_Up
    for _ in range(abs(target - box.currentIndex())):
        QTest.keyClick(box, key)


def _click_method_in_popup(qtbot, window, name: str) -> None:
    """Open the method box's list with a click and click the method's row, as a user does."""
    box = _method_box(window)
    click_combo_row(qtbot, box, box.findData(name))


def _click(window, name: str) -> None:
    button = window.findChild(QRadioButton, name)
    assert button is not None and button.isVisible()
    # On the round indicator: the button may be wider than its text, and only the indicator and
    # the text take clicks.
    QTest.mouseClick(button, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     QPoint(button.height() // 2, button.height() // 2))


def _captured(engine, class_index, versus=None, counterfactual=False):
    """A and g of the demo picture at LAYER for this score, from the second engine's capture."""
    image = load_image(PICTURE)
    vector, top = engine.score_vector(engine.target(class_index, versus, counterfactual))
    run = engine.capture(LAYER).run(engine.model_input(image), vector[np.newaxis], np.array([top], np.float32))
    return run.activations[0], run.gradients[0]


def _assert_same_map(shown: np.ndarray, expected: np.ndarray, bound: cr.Bounded) -> None:
    """|shown − expected| ≤ 2e at every position (module docstring); the bound must not be vacuous."""
    assert shown.shape == expected.shape == bound.v.shape
    assert (bound.v > 4 * bound.e).any(), "the bound would accept any map"
    error = np.abs(shown.astype(np.float64) - expected.astype(np.float64))
    assert (error <= 2 * bound.e).all(), f"worst {error.max():.3g} where 2e = {2 * bound.e[np.argmax(error)]:.3g}"


def _check_gradient_method(engine, shown: MapResult) -> None:
    versus, counterfactual = shown.versus_index, shown.counterfactual
    expected = engine.explain(load_image(PICTURE), LAYER, shown.class_index, shown.method, versus=versus,
                              counterfactual=counterfactual)
    A, g = _captured(engine, shown.class_index, versus, counterfactual)
    bound = cr.gradient_map(shown.method, *cr.inputs(A, g), nonnegative=bool((A >= 0).all()))
    _assert_same_map(shown.raw, expected.raw, bound)


# -- the method picker ----------------------------------------------------------------------------
def test_method_box_offers_every_method_with_its_summary(window):
    box = _method_box(window)
    assert box.count() == len(cams.METHODS)
    for row, (name, method) in enumerate(cams.METHODS.items()):
        assert (box.itemText(row), box.itemData(row)) == (method.title, name)
        assert box.itemData(row, Qt.ItemDataRole.ToolTipRole) == method.summary
    # Beside the class choice: in the Classes dock, above the list.
    assert window.ui.classes_dock.isAncestorOf(box) and box.isVisible()


def test_keyboard_choice_shows_that_methods_map_and_switching_back_is_a_cache_hit(demo, qtbot, engine):
    first = demo.shown_result()
    shown = _shown(qtbot, demo, lambda: _key_to_method(demo, "gradcam++"), lambda r: r.method == "gradcam++")
    assert (shown.class_index, shown.layer, shown.score_kind) == (first.class_index, LAYER, "class")
    _check_gradient_method(engine, shown)
    assert demo.ui.caption.caption() == f"Grad-CAM++ · Evidence for 'circle' ({shown.score * 100:.1f} %) · layer {LAYER}"
    demo.set_view_mode("side")
    assert demo.ui.view.pane_titles() == ("Picture", "Grad-CAM++: Evidence for 'circle'")
    back = _shown(qtbot, demo, lambda: _key_to_method(demo, "gradcam"), lambda r: r.method == "gradcam")
    assert back.cached and np.array_equal(back.raw, first.raw)
    assert demo.ui.time_label.text() == "Map: from cache"


def test_mouse_choice_in_the_popup_and_the_method_follows_the_pictures(demo, qtbot, engine):
    shown = _shown(qtbot, demo, lambda: _click_method_in_popup(qtbot, demo, "layercam"),
                   lambda r: r.method == "layercam")
    assert _method_box(demo).currentText() == "LayerCAM"
    _check_gradient_method(engine, shown)
    other = _shown(qtbot, demo, lambda: demo.step_image(1))
    assert other.method == "layercam" and other.class_name == "star"


def test_eigencam_says_it_explains_no_class(demo, qtbot, engine):
    shown = _shown(qtbot, demo, lambda: _key_to_method(demo, "eigencam"), lambda r: r.method == "eigencam")
    note = demo.ui.score_choice.note
    assert note.isVisible() and "not class-specific" in note.text()
    assert "the same for every class" in demo.ui.caption.caption()
    A, _g = _captured(engine, shown.class_index)
    bound = cr.eigencam(A)
    assert cr.sign_decided(A, bound)
    _assert_same_map(shown.raw, engine.explain(load_image(PICTURE), LAYER, shown.class_index, "eigencam").raw, bound)
    # Another method: the note goes.
    _shown(qtbot, demo, lambda: _key_to_method(demo, "gradcam"), lambda r: r.method == "gradcam")
    assert not note.isVisible()


# -- the score ------------------------------------------------------------------------------------
def test_versus_and_against_chosen_by_clicks(demo, qtbot, engine, tmp_path):
    first = demo.shown_result()
    runner_up = first.prediction.top[1][0]  # offered as the class to compare with
    versus_box = demo.findChild(QComboBox, "versusBox")
    assert versus_box.currentData() == runner_up
    shown = _shown(qtbot, demo, lambda: _click(demo, "scoreVersus"), lambda r: r.score_kind == "versus")
    assert (shown.class_index, shown.versus_index) == (first.class_index, runner_up)
    name = DEMO_CLASSES[runner_up]
    assert demo.ui.caption.caption().startswith(f"Evidence for 'circle' ({shown.score * 100:.1f} %) rather than '{name}'")
    _check_gradient_method(engine, shown)
    # Another class to compare with, by keyboard on the versus box: star.
    star = DEMO_CLASSES.index("star")
    versus_box.setFocus()

    def pick_star():
        key = Qt.Key.Key_Down if versus_box.findData(star) > versus_box.currentIndex() else Qt.Key.Key_Up
        for _ in range(abs(versus_box.findData(star) - versus_box.currentIndex())):
            QTest.keyClick(versus_box, key)

    shown = _shown(qtbot, demo, pick_star, lambda r: r.versus_index == star)
    _check_gradient_method(engine, shown)
    assert "rather than 'star'" in demo.ui.caption.caption()
    against = _shown(qtbot, demo, lambda: _click(demo, "scoreAgainst"), lambda r: r.counterfactual)
    assert against.score_kind == "counterfactual" and against.versus_index is None
    assert demo.ui.caption.caption() == f"Evidence against 'circle' ({against.score * 100:.1f} %) · layer {LAYER}"
    _check_gradient_method(engine, against)
    # Exports record method and score (Save: the sidecar is MapResult.sidecar).
    _shown(qtbot, demo, lambda: _key_to_method(demo, "hirescam"), lambda r: r.method == "hirescam")
    path = demo.export_overlay(tmp_path / "against.png")
    sidecar = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    assert (sidecar["method"], sidecar["score_kind"], sidecar["class_name"]) == ("hirescam", "counterfactual", "circle")
    # Back to the class's own evidence.
    own = _shown(qtbot, demo, lambda: _click(demo, "scoreClass"), lambda r: r.score_kind == "class")
    assert own.method == "hirescam" and not own.counterfactual


def test_versus_never_offers_the_class_itself(demo, qtbot):
    # Issue 17: "circle rather than circle" is no question, so the box does not offer it (it was a
    # one-line error before); keys up to the top reach the first other class, and the map follows.
    versus_box = demo.findChild(QComboBox, "versusBox")
    assert "circle" not in [versus_box.itemText(row) for row in range(versus_box.count())]
    versus_box.setFocus()
    # To the far end from the class shown (a key past the end is no choice).
    key, end = (Qt.Key.Key_Down, versus_box.count() - 1) if versus_box.currentIndex() == 0 else (Qt.Key.Key_Up, 0)
    wanted = versus_box.itemText(end)
    with qtbot.assertNotEmitted(demo.errorShown, wait=200):
        shown = _shown(qtbot, demo, lambda: [QTest.keyClick(versus_box, key) for _ in range(versus_box.count())],
                       lambda r: r.versus_name == wanted)
    assert shown.class_name == "circle" and versus_box.currentText() == wanted != "circle"


# -- Score-CAM as a job ---------------------------------------------------------------------------
def test_scorecam_shows_progress_and_a_newer_click_supersedes_it(demo, qtbot, monkeypatch):
    from gradcam_desktop.core import scorecam

    # One mask per forward pass: 96 steps at last_conv, so the test surely clicks mid-way.
    monkeypatch.setattr(scorecam, "MAX_BATCH", 1)
    worker, bar = demo.worker, demo.findChild(QProgressBar, "mapProgress")
    progress, finished = [], {}
    stamps = []
    worker.jobProgress.connect(lambda job, done, total, _m: (progress.append((job, done, total)),
                                                              stamps.append(time.perf_counter())))
    worker.jobFinished.connect(lambda job, summary: finished.__setitem__(job, summary))
    maps = []
    worker.mapReady.connect(lambda rid, result: maps.append((rid, result.method)))

    _key_to_method(demo, "scorecam")
    # Past the first mask batch (it traces the masked forward pass once per model and batch size).
    qtbot.waitUntil(lambda: any(2 < done < total for _j, done, total in progress), timeout=TIMEOUT)
    job = next(j for j, done, total in progress if 2 < done < total)
    assert bar.isVisible() and 0 < bar.value() < bar.maximum()
    ended = {}
    worker.jobFinished.connect(lambda j, _s: ended.setdefault(j, time.perf_counter()))
    clicked = time.perf_counter()
    shown = _shown(qtbot, demo, lambda: _key_to_method(demo, "gradcam"), lambda r: r.method == "gradcam")
    latency = time.perf_counter() - clicked
    qtbot.waitUntil(lambda: job in finished, timeout=TIMEOUT)
    assert finished[job]["cancelled"] and finished[job]["maps"] == 0
    assert not any(rid == job for rid, _m in maps)  # the superseded map never arrived
    assert shown.method == "gradcam" and not bar.isVisible()
    done = max(d for j, d, _t in progress if j == job)
    steps = np.diff([t for (j, _d, _t), t in zip(progress, stamps) if j == job])
    print(f"\nScore-CAM steps (ms): first {', '.join(f'{x * 1000:.0f}' for x in steps[:3])}, then median "
          f"{np.median(steps[3:]) * 1000:.0f}" if len(steps) > 3 else "")
    # Timing is reported, not asserted (a loaded CI machine is slower); issue 7 asks for ≤ 0.3 s.
    total = max(t for j, _d, t in progress if j == job)
    print(f"\nScore-CAM superseded after {done} of {total} steps: cancelled "
          f"{(ended[job] - clicked) * 1000:.0f} ms and the new map shown {latency * 1000:.0f} ms after the keys")

    # A newer class while Score-CAM runs: its map replaces the one being made.
    _key_to_method(demo, "scorecam")
    qtbot.waitUntil(lambda: bar.isVisible() and bar.value() > 0, timeout=TIMEOUT)
    running = [j for j, d, t in progress if 0 < d < t][-1]
    star = DEMO_CLASSES.index("star")
    result = _shown(qtbot, demo, lambda: demo.keep_class(star), lambda r: r.method == "scorecam")
    assert result.class_index == star and finished[running]["cancelled"]
    assert "Score-CAM · Evidence for 'star'" in demo.ui.caption.caption()


# -- remembered, explained ------------------------------------------------------------------------
def test_the_method_is_remembered(qtbot):
    first = MainWindow()
    qtbot.addWidget(first)
    first.show()
    qtbot.waitUntil(first.engine_ready, timeout=TIMEOUT)
    _click_method_in_popup(qtbot, first, "xgradcam")
    qtbot.waitUntil(lambda: first.map_choice()["method"] == "xgradcam")
    first.close()
    again = MainWindow()
    qtbot.addWidget(again)
    assert _method_box(again).currentData() == "xgradcam" and again.map_choice()["method"] == "xgradcam"


def test_help_explains_each_method_and_when_to_distrust_a_map():
    for method in cams.METHODS.values():
        assert f"<b>{method.title}</b>" in HELP_TEXT
    for words in ("the same map for every class", "Methods disagree", "flat map", "unlikely class",
                  "Rather than / against"):
        assert words in HELP_TEXT, words


# -- the compare grid's worker call ---------------------------------------------------------------
def test_explain_grid_sends_each_cell_in_order_from_the_shared_cache(demo, qtbot):
    image_key = demo.current_image().key
    shown = demo.shown_result()
    cells = [MapSpec(image_key, None, None, "gradcam"), MapSpec(image_key, LAYER, 3, "layercam"),
             MapSpec(image_key, LAYER, 0, "gradcam", versus=0)]
    got = {}
    demo.worker.jobPartial.connect(lambda gid, part: part[0] == "cell" and got.__setitem__(part[1], (gid, part[2])))
    grid = demo.worker.explain_grid(cells)
    qtbot.waitUntil(lambda: len(got) == 3, timeout=TIMEOUT)
    assert {gid for gid, _r in got.values()} == {grid}
    assert got[0][1].cached and np.array_equal(got[0][1].raw, shown.raw)  # the main view's map
    assert (got[1][1].method, got[1][1].class_index) == ("layercam", 3)
    assert isinstance(got[2][1], str) and "itself" in got[2][1]


# -- the compare grid in the window ---------------------------------------------------------------
def test_compare_grid_in_the_window_and_a_click_opens_a_cell(demo, qtbot):
    ui = demo.ui
    demo.activateWindow()
    QTest.keyClick(demo, Qt.Key.Key_G, Qt.KeyboardModifier.ControlModifier)  # View → Compare
    assert ui.view_stack.currentWidget() is ui.compare and demo.acts.compare.isChecked()
    shown = demo.shown_result()

    def filled():
        cells = [cell for row in ui.compare.cells() for cell in row]
        return cells and not ui.compare.pending()

    qtbot.waitUntil(filled, timeout=TIMEOUT)
    cells = [cell for row in ui.compare.cells() for cell in row]
    cell = next(c for c in cells if (c.key.method, c.key.class_index) != ("gradcam", shown.class_index))
    result = _shown(qtbot, demo, lambda: QTest.mouseClick(cell, Qt.MouseButton.LeftButton),
                    lambda r: (r.method, r.class_index, r.layer) == (cell.key.method, cell.key.class_index,
                                                                    cell.key.layer))
    assert ui.view_stack.currentWidget() is ui.view and not demo.acts.compare.isChecked()
    assert demo.kept_class() == result.class_index and _method_box(demo).currentData() == result.method


def test_export_all_records_the_method_and_score_chosen(demo, qtbot, tmp_path):
    import csv

    _shown(qtbot, demo, lambda: _key_to_method(demo, "layercam"), lambda r: r.method == "layercam")
    _shown(qtbot, demo, lambda: _click(demo, "scoreAgainst"), lambda r: r.counterfactual)
    run = demo.export_all(tmp_path)
    qtbot.waitUntil(run.is_done, timeout=TIMEOUT)
    assert run.summary()["written"] == 2 and run.summary()["failures"] == []
    with open(tmp_path / "results.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["method"], r["score_kind"]) for r in rows] == [("layercam", "counterfactual")] * 2
    sidecar = json.loads((tmp_path / f"{PICTURE.stem}.json").read_text(encoding="utf-8"))
    assert (sidecar["method"], sidecar["score_kind"], sidecar["layer"]) == ("layercam", "counterfactual", LAYER)

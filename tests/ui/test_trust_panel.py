"""Issue 8 in the window: the Trust panel (dock ``trustPanel``) and its worker job.

The panel is opened with real input (Ctrl+T, a click on the toolbar's Trust button); pictures are
changed with real clicks on the strip. What the panel shows is compared with ``core.trust``'s
report computed here, on a second engine on the same demo model, for the same picture and the
very map the window shows (``shown_result().raw``), with the issue's options: n = 50 steps, the
random-order baseline, at most 8 sanity steps (seed 0).

Why equality is exact: every number of the report is the explained class's probability of some
model input, computed by ``GradCam.logits`` — the same compiled float32 graph, fed the same input
bytes in the same batch shapes (the core pads its batches to one size) — and the same NumPy
softmax of each row; the inputs themselves (pixel order, zeroing, blur) are deterministic
functions of the map and the picture. TensorFlow's CPU kernels are deterministic for a given
shape and thread pool (the premise of tests/ui/test_methods_window.py), so both engines produce
bit-identical probabilities and, through the same ``auc``/``average_drop`` code, bit-identical
figures. The sanity check's maps go through ``cams``' NumPy reduction, whose summation order may
depend on buffer alignment: each is a float32 evaluation of Grad-CAM on the same A and g, within
e of the exact map (tests/cam_reference.py), so the two differ by at most 2e; and ρ, a Pearson
correlation of centred rank vectors, moves by at most 2‖r − r'‖/‖r‖ when the map's ranks r
become r' (0 when no rank changes: then ρ must be equal).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import cam_reference as cr
import numpy as np
import pytest
from ui_window import shown_window
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QDockWidget, QMenu, QToolBar

from gradcam_desktop.core.errors import ImageLoadError
from gradcam_desktop.core.images import load_image
from gradcam_desktop.core.trust import auc, spearman, trust_report
from gradcam_desktop.core.types import MapResult, Prediction
from gradcam_desktop.core.verdicts import verdicts
from gradcam_desktop.ui import MainWindow
from gradcam_desktop.session.scheduler import Job
from gradcam_desktop.ui.trust.figures import LIGHTS
from gradcam_desktop.session import trust_job
from gradcam_desktop.session.trust_job import TrustJob, TrustRequest, spec_of, supersede_trust

TIMEOUT = 60_000
REPO = Path(__file__).resolve().parents[2]
PICTURES = [REPO / "images" / name for name in ("two_objects_circle_star.png", "star.png", "circle.png")]
#: The report the window must show (issue 8's n and sanity steps; the seed is the window's).
OPTIONS = {"steps": 50, "baseline": True, "sanity": True, "sanity_steps": 8, "seed": 0}


# -- fixtures and helpers -------------------------------------------------------------------------
@pytest.fixture
def window(qtbot):
    w = shown_window(qtbot, 1400, 960)
    return w


@pytest.fixture
def demo(window, qtbot):
    """The window with the demo model and three pictures, the first shown (its top class: circle)."""
    with qtbot.waitSignal(window.resultShown, timeout=TIMEOUT):
        window.open_model("demo")
        window.open_images(PICTURES)
    return window


def _dock(window) -> QDockWidget:
    dock = window.findChild(QDockWidget, "trustPanel")
    assert dock is not None
    return dock


def _press_ctrl_t(window) -> None:
    QTest.keyClick(window, Qt.Key.Key_T, Qt.KeyboardModifier.ControlModifier)


def _toolbar_button(window):
    bar = window.findChild(QToolBar, "toolsBar")
    button = bar.widgetForAction(_dock(window).toggleViewAction())
    assert button is not None and button.isVisible() and button.text() == "Trust"
    return button


def _report(qtbot, window, action, check=lambda _o: True):
    """Do ``action`` and return the TrustOutcome the panel then shows."""
    with qtbot.waitSignal(window.trust.reportShown, timeout=TIMEOUT, check_params_cb=check) as blocker:
        action()
    return blocker.args[0]


def _click_picture(qtbot, window, row: int) -> None:
    strip = window.ui.strip
    strip.scrollToItem(strip.item(row))
    QTest.mouseClick(strip.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     strip.visualItemRect(strip.item(row)).center())


def _running_job(qtbot, window) -> int:
    """The id of the panel's trust job, once it has done at least one step."""
    seen: dict[int, int] = {}
    window.worker.jobProgress.connect(lambda job, done, _total, _what: seen.__setitem__(job, done))
    qtbot.waitUntil(lambda: window.trust.job() is not None and seen.get(window.trust.job(), 0) >= 1, timeout=TIMEOUT)
    return window.trust.job()


def _finished(qtbot, window, job_id: int):
    return qtbot.waitSignal(window.worker.jobFinished, timeout=TIMEOUT, check_params_cb=lambda job, _s: job == job_id)


# -- opening the panel ------------------------------------------------------------------------------
def test_hidden_at_first_and_opened_by_ctrl_t_the_toolbar_and_the_view_menu(demo, qtbot):
    dock = _dock(demo)
    assert not dock.isVisible() and demo.trust.panel is None  # nothing built, nothing computed
    action = dock.toggleViewAction()
    view_menu = next(m for m in demo.menuBar().findChildren(QMenu) if m.title() == "&View")
    assert action in view_menu.actions() and action.text() == "Can I trust this map?"
    outcome = _report(qtbot, demo, lambda: _press_ctrl_t(demo))
    assert dock.isVisible() and action.isChecked()
    assert outcome.spec == spec_of(demo.shown_result())
    # The dock's title says which map the figures are about; the action keeps its words.
    assert dock.windowTitle() == ("Can I trust this map? · Evidence for 'circle' · layer last_conv · "
                                  "two_objects_circle_star.png")
    assert action.text() == "Can I trust this map?"
    # Under the picture, above the strip of pictures.
    assert demo.dockWidgetArea(dock) == Qt.DockWidgetArea.BottomDockWidgetArea
    assert dock.geometry().bottom() < demo.ui.images_dock.geometry().top()
    QTest.mouseClick(_toolbar_button(demo), Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not dock.isVisible())
    # Open again: the same map's report is still there, nothing is computed again.
    QTest.mouseClick(_toolbar_button(demo), Qt.MouseButton.LeftButton)
    assert dock.isVisible() and demo.trust.panel.outcome() is outcome and demo.trust.job() is None


# -- what it shows ----------------------------------------------------------------------------------
def test_the_panel_shows_the_core_report_of_the_map_on_screen(demo, qtbot, engine, monkeypatch):
    # The core's default equal batches, as the direct report below: then the same kernels run on the
    # same inputs and the figures must be identical. (The window's short steps use smaller batches,
    # whose float32 rounding differs; tests/core/test_trust_engine.py bounds those against float64.)
    monkeypatch.setattr(trust_job, "STEP_SECONDS", None)
    started = time.perf_counter()
    outcome = _report(qtbot, demo, lambda: QTest.mouseClick(_toolbar_button(demo), Qt.MouseButton.LeftButton))
    print(f"\ntrust report in the window: {time.perf_counter() - started:.2f} s (job steps {outcome.seconds:.2f} s)")
    shown = demo.shown_result()
    direct = trust_report(engine, load_image(PICTURES[0]), shown, **OPTIONS)
    report = outcome.report
    # The figures: exactly the core's (module docstring).
    np.testing.assert_array_equal(report.deletion_curve, direct.deletion_curve)
    np.testing.assert_array_equal(report.insertion_curve, direct.insertion_curve)
    assert len(report.deletion_curve) == OPTIONS["steps"] + 1
    for name in ("deletion_auc", "insertion_auc", "random_deletion_auc", "random_insertion_auc", "original", "masked",
                 "average_drop", "increase_in_confidence"):
        assert getattr(report, name) == getattr(direct, name), name
    # The curves drawn are the report's, at x = i / n; the dashed ones are the random order's,
    # whose areas are the report's random-order areas.
    panel = demo.trust.panel
    for key, curve, random, area in (("deletion", direct.deletion_curve, outcome.random_deletion,
                                      direct.random_deletion_auc),
                                     ("insertion", direct.insertion_curve, outcome.random_insertion,
                                      direct.random_insertion_auc)):
        plot = panel.plots[key]
        x, y = plot.map_curve.getData()
        np.testing.assert_array_equal(y, curve)
        np.testing.assert_array_equal(x, np.arange(len(curve)) / (len(curve) - 1))
        x, y = plot.random_curve.getData()
        assert random is not None and auc(y) == area and len(y) == len(curve)
        assert plot.legend_texts() == [f"area {auc(curve):.3f}: map's order", f"area {area:.3f}: random order"]
    assert panel.numbers()["average_drop"] == (
        f"p('circle'): {direct.original:.1%} on the picture, {direct.masked:.1%} on the picture × map · "
        f"Average Drop {direct.average_drop:.1f} % · Increase in Confidence: "
        f"{'yes' if direct.increase_in_confidence else 'no'}")
    # The verdicts: the core's sentences and lights, the light also as a word.
    said = verdicts(direct, "circle")
    assert set(said) == {"deletion", "insertion", "average_drop", "sanity"}
    assert panel.sentences() == {key: verdict.sentence for key, verdict in said.items()}
    assert panel.words() == {key: LIGHTS[verdict.light][0] for key, verdict in said.items()}
    assert {key: card.light.colour() for key, card in panel.cards.items()} == {
        key: QColor(LIGHTS[verdict.light][1]).name() for key, verdict in said.items()}
    _check_sanity(panel, shown, report, direct, _cascade_bounds(engine, shown))


def _cascade_bounds(engine, shown: MapResult) -> list[cr.Bounded]:
    """The exact map after each cascade step with its float32 bound, from A and g of this test's own
    randomised copy (the core's ``cascade`` and ``RandomizedCopy``, one generator seeded as the
    window's report: the same weights, so the same A and g)."""
    from gradcam_desktop.core.trust import RandomizedCopy, cascade

    copy = RandomizedCopy(engine)
    rng = np.random.default_rng(OPTIONS["seed"])
    picture = copy.engine.model_input(load_image(PICTURES[0]))
    bounds = []
    for group in cascade(engine.model, OPTIONS["sanity_steps"]):
        for path in group:
            copy.randomize(path, rng)
        vector, top = copy.engine.score_vector(copy.engine.target(shown.class_index))
        run = copy.engine.capture(shown.layer).run(picture, vector[np.newaxis], np.array([top], np.float32))
        A, g = run.activations[0], run.gradients[0]
        bounds.append(cr.gradient_map("gradcam", *cr.inputs(A, g), nonnegative=bool((A >= 0).all())))
    return bounds


def _centred_ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks (ties share theirs), minus their mean."""
    flat = np.asarray(values, np.float64).ravel()
    _unique, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])  # rank of each distinct value's first copy
    ranks = (first + (counts - 1) / 2.0)[inverse]
    return ranks - ranks.mean()


def _check_sanity(panel, shown: MapResult, report, direct, bounds: list[cr.Bounded]) -> None:
    """The sanity row: the map on screen, then each cascade step's map with its ρ under it."""
    assert [s.randomized for s in report.sanity] == [s.randomized for s in direct.sanity]
    assert 2 <= len(report.sanity) <= OPTIONS["sanity_steps"]
    maps = panel.sanity.maps()
    assert len(maps) == len(report.sanity) + 1 == len(panel.sanity.pictures)
    assert maps[0].raw is shown.raw and maps[0].spearman is None
    for item, step, caption in zip(maps[1:], report.sanity, panel.sanity.captions[1:], strict=True):
        assert item.raw is step.raw
        # ρ is the core's rank correlation of the map shown and the step's map.
        assert _same(step.spearman, spearman(shown.raw, step.raw))
        rho = f"ρ = {step.spearman:.2f}" if math.isfinite(step.spearman) else "ρ: no map"
        assert caption.text().endswith(rho)
    # Against the report computed here (module docstring): maps within 2e, ρ within its rank bound.
    assert len(bounds) == len(report.sanity)
    for ours, theirs, bound in zip(report.sanity, direct.sanity, bounds, strict=True):
        error = np.abs(ours.raw.astype(np.float64) - theirs.raw.astype(np.float64))
        assert (error <= 2 * bound.e).all(), f"worst {error.max():.3g}, 2e there {2 * bound.e.flat[np.argmax(error)]:.3g}"
        cr.assert_close(ours.raw, bound, what="sanity map", vacuous_ok=True)
        r, r2 = _centred_ranks(ours.raw), _centred_ranks(theirs.raw)
        if not np.linalg.norm(r):
            assert math.isnan(ours.spearman) and math.isnan(theirs.spearman)  # the map vanished
        else:
            assert abs(ours.spearman - theirs.spearman) <= 2 * np.linalg.norm(r - r2) / np.linalg.norm(r)
    assert any(math.isfinite(s.spearman) for s in report.sanity)  # some step still has a map to compare
    assert any((b.v > 4 * b.e).any() for b in bounds)  # and a bound that is not vacuous


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def test_the_plots_and_small_maps_follow_the_palette_and_the_colours(demo, qtbot):
    _report(qtbot, demo, lambda: _press_ctrl_t(demo))
    panel = demo.trust.panel
    dark = QPalette(panel.palette())
    for role, colour in ((QPalette.ColorRole.Base, "#1e1e1e"), (QPalette.ColorRole.Text, "#e6e6e6"),
                         (QPalette.ColorRole.Window, "#2b2b2b"), (QPalette.ColorRole.WindowText, "#e6e6e6")):
        dark.setColor(role, QColor(colour))
    panel.setPalette(dark)
    for plot in panel.plots.values():
        assert plot.backgroundBrush().color().name() == "#1e1e1e"
        assert plot.getAxis("bottom").textPen().color().name() == "#e6e6e6"
    before = panel.sanity.pictures[0].pixmap().toImage()
    demo.ui.colormap_box.setCurrentText("viridis")
    after = panel.sanity.pictures[0].pixmap().toImage()
    assert before != after


# -- superseded, cached, stopped --------------------------------------------------------------------
def test_a_newer_picture_cancels_the_running_report(demo, qtbot):
    _press_ctrl_t(demo)
    first = _running_job(qtbot, demo)
    keys = [image.key for image in demo.images()]
    ended: list[float] = []
    demo.worker.jobFinished.connect(lambda job, _s: job == first and ended.append(time.perf_counter()))
    with _finished(qtbot, demo, first) as finished:
        clicked = time.perf_counter()
        outcome = _report(qtbot, demo, lambda: _click_picture(qtbot, demo, 1),
                          lambda o: o.spec.image_key == keys[1])
    print(f"\nsuperseded: the old report ended {ended[0] - clicked:.3f} s after the click, "
          f"the new one was shown after {time.perf_counter() - clicked:.2f} s")
    assert finished.args[1]["cancelled"] is True
    assert demo.shown_result().image_key == keys[1] and outcome.spec == spec_of(demo.shown_result())
    assert demo.trust.cached(demo.shown_result()) is outcome


def test_a_revisited_picture_shows_its_report_from_the_cache(demo, qtbot, monkeypatch):
    first = _report(qtbot, demo, lambda: _press_ctrl_t(demo))
    second = _report(qtbot, demo, lambda: _click_picture(qtbot, demo, 1))
    asked = []
    real = demo.worker.trust
    monkeypatch.setattr(demo.worker, "trust", lambda result: asked.append(result) or real(result))
    again = _report(qtbot, demo, lambda: _click_picture(qtbot, demo, 0))
    assert again is first and asked == [] and demo.trust.job() is None
    assert demo.trust.panel.outcome() is first
    assert _report(qtbot, demo, lambda: _click_picture(qtbot, demo, 1)) is second and asked == []


def test_hiding_the_panel_stops_the_report_and_nothing_runs_while_hidden(demo, qtbot, monkeypatch):
    _press_ctrl_t(demo)
    job = _running_job(qtbot, demo)
    with _finished(qtbot, demo, job) as finished:
        _press_ctrl_t(demo)  # hides it
    assert finished.args[1]["cancelled"] is True and not _dock(demo).isVisible()
    asked = []
    monkeypatch.setattr(demo.worker, "trust", lambda result: asked.append(result) or 0)
    with qtbot.waitSignal(demo.resultShown, timeout=TIMEOUT):
        _click_picture(qtbot, demo, 2)
    QTest.qWait(200)
    assert asked == [] and demo.trust.job() is None


# -- the job by hand (no thread, a stand-in engine) ------------------------------------------------
def _result(image_key="img1", class_index=0, generation=1):
    prediction = Prediction(np.array([0.7, 0.3]), [(0, "a", 0.7), (1, "b", 0.3)], "softmax")
    return MapResult(raw=np.ones((2, 2), np.float32), layer="conv", class_index=class_index, class_name="a",
                     score=0.7, prediction=prediction, method="gradcam", image_key=image_key, generation=generation)


class _Maker:
    def __init__(self, engine=None, generation=1):
        self.engine, self.generation = engine, generation

    def image(self, key):
        raise ImageLoadError("That image is no longer loaded; open it again.")


def test_the_job_reports_a_failure_in_one_line_and_stops_on_another_model():
    failed, delivered = [], []
    job = TrustJob(TrustRequest(_result()), _Maker(), lambda *a: delivered.append(a), lambda *a: failed.append(a))
    assert job.step() is False and delivered == []
    assert failed == [(job.id, "That image is no longer loaded; open it again.")]
    job = TrustJob(TrustRequest(_result(generation=1)), _Maker(generation=2), delivered.append, failed.append)
    assert job.step() is False and job.cancelled and delivered == [] and len(failed) == 1


def test_a_newer_map_cancels_the_reports_of_other_maps_only():
    maker = _Maker()
    same = TrustJob(TrustRequest(_result()), maker, print, print)
    other_class = TrustJob(TrustRequest(_result(class_index=1)), maker, print, print)
    other_picture = TrustJob(TrustRequest(_result(image_key="img2")), maker, print, print)
    unrelated = Job()
    supersede_trust([same, other_class, other_picture, unrelated], spec_of(_result()))
    assert (same.cancelled, other_class.cancelled, other_picture.cancelled, unrelated.cancelled) == (
        False, True, True, False)


def test_the_panel_opens_again_where_it_was_left(qtbot):
    def new_window() -> MainWindow:
        w = MainWindow()
        qtbot.addWidget(w)
        w.resize(1280, 800)
        w.show()
        qtbot.waitExposed(w)
        return w

    first = new_window()
    QTest.mouseClick(_toolbar_button(first), Qt.MouseButton.LeftButton)
    assert _dock(first).isVisible()
    assert first.trust.panel.status.text().startswith("Open a model and a picture")
    first.close()
    second = new_window()
    assert _dock(second).isVisible() and second.trust.panel is not None
    assert second.dockWidgetArea(_dock(second)) == Qt.DockWidgetArea.BottomDockWidgetArea
    QTest.mouseClick(_toolbar_button(second), Qt.MouseButton.LeftButton)
    second.close()
    third = new_window()
    assert not _dock(third).isVisible() and third.trust.panel is None

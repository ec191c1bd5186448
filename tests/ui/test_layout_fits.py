"""Issue 17, "a window that fits": at 1280×800 the picture, the classes and one analysis view fit at once.

The analysis views (Compare in place of the picture; Trust and Triage as tabs of one area under
it) are opened as a user opens them: Ctrl+G, Ctrl+T, a click on the toolbar's Triage button. How
many rows a list shows is computed from its viewport's height and its row height. Panels never
float: a double-click on a title bar (the gesture that tore them loose) does nothing, a state
saved with a floating panel comes back docked, and View → Reset Layout, clicked in the menu,
puts every panel back.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from ui_window import shown_window
from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QAbstractItemView, QDockWidget, QLabel, QMainWindow, QMenu, QToolBar

from gradcam_desktop.core.triage import TriageRow
from gradcam_desktop.ui.layout import ANALYSIS_MIN, in_front

TIMEOUT = 60_000
REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "images"
PICTURES = [SAMPLES / "circle.png", SAMPLES / "square.png", SAMPLES / "two_objects_circle_star.png"]
NAMES = ["circle", "square", "triangle", "star"]
FLOATABLE = QDockWidget.DockWidgetFeature.DockWidgetFloatable
BOTTOM = Qt.DockWidgetArea.BottomDockWidgetArea


def _demo(qtbot, width: int = 1280, height: int = 800):
    window = shown_window(qtbot, width, height)
    with qtbot.waitSignal(window.resultShown, timeout=TIMEOUT):
        window.open_model("demo")
        window.open_images(PICTURES)
    return window


@pytest.fixture
def demo(qtbot):
    """The real window at 1280×800 with the demo model and three pictures, the first map shown."""
    return _demo(qtbot)


def rows_shown(view: QAbstractItemView) -> float:
    """How many rows of ``view`` its viewport has room for."""
    row = view.sizeHintForRow(0)
    assert row > 0
    return view.viewport().height() / row


def _dock(window, name: str) -> QDockWidget:
    dock = window.findChild(QDockWidget, name)
    assert dock is not None
    return dock


def _toolbar_click(window, action) -> None:
    button = window.findChild(QToolBar, "toolsBar").widgetForAction(action)
    assert button is not None and button.isVisible()
    QTest.mouseClick(button, Qt.MouseButton.LeftButton)


def _settle(qtbot, window, dock: QDockWidget | None = None) -> None:
    """Until ``dock`` is the tab in front, then once the deferred sizing has run."""
    if dock is not None:
        qtbot.waitUntil(lambda: in_front(dock), timeout=5_000)
    qtbot.wait(100)


def _menu_click(qtbot, window, menu_title: str, action_text: str) -> None:
    """Open ``menu_title`` on the menu bar and click ``action_text`` in it, with the mouse."""
    bar = window.menuBar()
    menu = next(m for m in bar.findChildren(QMenu) if m.title() == menu_title)
    QTest.mouseClick(bar, Qt.MouseButton.LeftButton, pos=bar.actionGeometry(menu.menuAction()).center())
    qtbot.waitUntil(menu.isVisible, timeout=5_000)
    action = next(a for a in menu.actions() if a.text() == action_text)
    with qtbot.waitSignal(action.triggered, timeout=5_000):
        QTest.mouseClick(menu, Qt.MouseButton.LeftButton, pos=menu.actionGeometry(action).center())


def _triage_rows(count: int) -> list[TriageRow]:
    rng = np.random.default_rng(17)
    rows = []
    for k in range(count):
        p = rng.dirichlet(np.ones(len(NAMES)))
        true, predicted = k % len(NAMES), int(np.argmax(p))
        others = np.delete(p, true)
        rows.append(TriageRow(f"/pics/{k:03d}_{NAMES[true]}.png", true, NAMES[true], predicted, NAMES[predicted],
                              float(p[predicted]), float(p[true]), predicted == true, float(p[true] - others.max())))
    return rows


def _assert_fits(window) -> None:
    """The classes keep ≥ 8 rows and the picture (or compare grid) a useful height."""
    assert rows_shown(window.ui.class_list.view) >= 8
    assert window.ui.view_stack.height() >= 200
    assert not any(d.isFloating() for d in window.findChildren(QDockWidget))


# -- one analysis view at a time, at 1280×800 ---------------------------------------------------------
def test_the_class_list_keeps_eight_rows_with_each_analysis_view_open(demo, qtbot):
    w = demo
    _assert_fits(w)
    # Compare (Ctrl+G): the grid takes the picture's place.
    QTest.keyClick(w, Qt.Key.Key_G, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: w.ui.view_stack.currentWidget() is w.ui.compare, timeout=5_000)
    _settle(qtbot, w)
    _assert_fits(w)
    QTest.keyClick(w, Qt.Key.Key_G, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: w.ui.view_stack.currentWidget() is w.ui.view, timeout=5_000)
    # Trust (Ctrl+T): under the picture, above the strip, its four cards in one row.
    trust = _dock(w, "trustPanel")
    QTest.keyClick(w, Qt.Key.Key_T, Qt.KeyboardModifier.ControlModifier)
    _settle(qtbot, w, trust)
    _assert_fits(w)
    assert w.dockWidgetArea(trust) == BOTTOM and trust.geometry().bottom() < w.ui.images_dock.geometry().top()
    assert trust.height() >= ANALYSIS_MIN
    assert trust.width() >= 0.75 * w.width()  # from the left edge to the Classes column
    cards = [w.trust.panel.cards[key] for key in ("deletion", "insertion", "average_drop", "sanity")]
    assert len({card.geometry().top() for card in cards}) == 1
    # Triage (toolbar): a tab of the same area, in front of Trust.
    triage = _dock(w, "triageDock")
    _toolbar_click(w, triage.toggleViewAction())
    _settle(qtbot, w, triage)
    _assert_fits(w)
    assert not in_front(trust) and trust in w.tabifiedDockWidgets(triage)
    w.triage.view.start(NAMES)
    w.triage.view.add_rows(_triage_rows(40))
    qtbot.wait(50)
    assert rows_shown(w.triage.view.table) >= 4
    assert rows_shown(w.triage.view.matrix) >= len(NAMES)
    # The class column runs the window's full height, beside both.
    classes = w.ui.classes_dock.geometry()
    assert classes.left() >= triage.geometry().right() and classes.bottom() >= w.ui.images_dock.geometry().bottom()


def test_the_toggles_bring_a_tab_to_the_front_before_they_close_it(demo, qtbot):
    w = demo
    trust, triage = _dock(w, "trustPanel"), _dock(w, "triageDock")
    view_menu = next(m for m in w.menuBar().findChildren(QMenu) if m.title() == "&View")
    assert triage.toggleViewAction() in view_menu.actions() and triage.toggleViewAction().text() == "&Triage"
    QTest.keyClick(w, Qt.Key.Key_T, Qt.KeyboardModifier.ControlModifier)
    _settle(qtbot, w, trust)
    _toolbar_click(w, triage.toggleViewAction())
    _settle(qtbot, w, triage)
    assert not in_front(trust) and trust.toggleViewAction().isChecked()
    # Ctrl+T with Trust open behind Triage: Trust comes to the front, both stay open.
    QTest.keyClick(w, Qt.Key.Key_T, Qt.KeyboardModifier.ControlModifier)
    _settle(qtbot, w, trust)
    assert not triage.isHidden() and not in_front(triage) and trust.toggleViewAction().isChecked()
    # Ctrl+T with Trust in front: it closes, Triage is in front again.
    QTest.keyClick(w, Qt.Key.Key_T, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(trust.isHidden, timeout=5_000)
    _settle(qtbot, w, triage)
    assert not trust.toggleViewAction().isChecked()
    # Compare's toolbar button is one action: no menu arrow from the toggles inserted after it.
    button = w.findChild(QToolBar, "toolsBar").widgetForAction(w.acts.compare)
    assert button.actions() == [w.acts.compare]


def test_triage_shows_a_useful_number_of_rows_maximised(qtbot):
    w = _demo(qtbot, 1920, 1080)  # a maximised window on a 1080p screen
    triage = _dock(w, "triageDock")
    _toolbar_click(w, triage.toggleViewAction())
    _settle(qtbot, w, triage)
    w.triage.view.start(NAMES)
    w.triage.view.add_rows(_triage_rows(60))
    qtbot.wait(50)
    assert rows_shown(w.triage.view.table) >= 8
    assert rows_shown(w.triage.view.matrix) >= len(NAMES)
    assert w.ui.view_stack.height() >= 300 and rows_shown(w.ui.class_list.view) >= 8
    # From 1280×800 to maximised and back: the area takes its share of the new height.
    w.resize(1280, 800)
    _settle(qtbot, w, triage)
    _assert_fits(w)
    w.resize(1920, 1080)
    _settle(qtbot, w, triage)
    assert rows_shown(w.triage.view.table) >= 8


# -- panels stay docked -------------------------------------------------------------------------------
def _title_point(dock: QDockWidget) -> QPoint:
    """A point on the dock's title bar (above its content)."""
    return QPoint(dock.width() // 3, max(3, dock.widget().geometry().top() // 2))


def test_the_title_bar_double_click_is_simulated_where_it_floats_a_floatable_dock(qtbot):
    """The control for the next test: the same double-click does tear a floatable dock loose."""
    window = QMainWindow()
    qtbot.addWidget(window)
    window.setCentralWidget(QLabel("picture"))
    dock = QDockWidget("Floatable", window)
    dock.setWidget(QLabel("content"))
    window.addDockWidget(BOTTOM, dock)
    window.resize(600, 400)
    window.show()
    qtbot.waitExposed(window)
    QTest.mouseDClick(dock, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, _title_point(dock))
    qtbot.waitUntil(dock.isFloating, timeout=5_000)


def test_no_panel_floats_on_a_title_bar_double_click(demo, qtbot):
    w = demo
    QTest.keyClick(w, Qt.Key.Key_T, Qt.KeyboardModifier.ControlModifier)
    _settle(qtbot, w, _dock(w, "trustPanel"))
    docks = w.findChildren(QDockWidget)
    assert {d.objectName() for d in docks} >= {"layersDock", "classesDock", "imagesDock", "trustPanel", "triageDock"}
    for dock in docks:
        assert not dock.features() & FLOATABLE, dock.objectName()
        if dock.isVisible():
            QTest.mouseDClick(dock, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, _title_point(dock))
    qtbot.wait(200)
    assert [d.objectName() for d in docks if d.isFloating()] == []


def test_a_panel_saved_floating_comes_back_docked(qtbot):
    first = _demo(qtbot)
    trust = _dock(first, "trustPanel")
    QTest.keyClick(first, Qt.Key.Key_T, Qt.KeyboardModifier.ControlModifier)
    _settle(qtbot, first, trust)
    for dock in (trust, first.ui.images_dock, first.ui.classes_dock):
        dock.setFloating(True)  # as an older version (or a hand-edited settings file) left them
    assert trust.isFloating()
    first.close()  # saves the window's state
    second = shown_window(qtbot, 1280, 800)
    trust = _dock(second, "trustPanel")
    _settle(qtbot, second, trust)
    assert [d.objectName() for d in second.findChildren(QDockWidget) if d.isFloating()] == []
    assert trust.isVisible() and second.dockWidgetArea(trust) == BOTTOM
    assert second.dockWidgetArea(second.ui.classes_dock) == Qt.DockWidgetArea.RightDockWidgetArea
    assert trust.geometry().bottom() < second.ui.images_dock.geometry().top()
    assert second.ui.view_stack.geometry().contains(second.ui.view_stack.rect().center())


def test_reset_layout_in_the_view_menu_puts_every_panel_back(demo, qtbot):
    w = demo
    trust, triage = _dock(w, "trustPanel"), _dock(w, "triageDock")
    QTest.keyClick(w, Qt.Key.Key_T, Qt.KeyboardModifier.ControlModifier)
    _settle(qtbot, w, trust)
    # A user's afternoon: Layers moved to the right, Classes to the bottom, Trust split off and squeezed.
    w.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, w.ui.layers_dock)
    w.addDockWidget(BOTTOM, w.ui.classes_dock)
    w.addDockWidget(Qt.DockWidgetArea.TopDockWidgetArea, trust)
    w.resizeDocks([trust], [60], Qt.Orientation.Vertical)
    triage.setFloating(True)
    qtbot.wait(50)
    assert rows_shown(w.ui.class_list.view) < 8  # the premise: the classes lost their rows
    _menu_click(qtbot, w, "&View", "&Reset Layout")
    _settle(qtbot, w, trust)
    assert w.dockWidgetArea(w.ui.layers_dock) == Qt.DockWidgetArea.LeftDockWidgetArea
    assert w.dockWidgetArea(w.ui.classes_dock) == Qt.DockWidgetArea.RightDockWidgetArea
    assert w.dockWidgetArea(w.ui.images_dock) == BOTTOM
    assert w.dockWidgetArea(trust) == BOTTOM and w.dockWidgetArea(triage) == BOTTOM
    assert not any(d.isFloating() for d in w.findChildren(QDockWidget))
    assert triage.isHidden() and trust.isVisible()  # which views are open stays as it was
    assert trust.geometry().bottom() < w.ui.images_dock.geometry().top()
    assert trust.height() >= ANALYSIS_MIN
    _assert_fits(w)
    _toolbar_click(w, triage.toggleViewAction())  # Triage opens as a tab beside Trust again
    _settle(qtbot, w, triage)
    assert trust in w.tabifiedDockWidgets(triage) and not in_front(trust)
    _assert_fits(w)
    assert math.isclose(w.ui.layers_dock.geometry().left(), 0, abs_tol=2)  # at the left edge again


def test_a_state_saved_by_the_older_layout_is_not_restored(qtbot):
    """Before issue 17 Trust and Triage stacked across the window's width under everything: such a
    state (saved without the layout's version) gives way to the new layout."""
    first = shown_window(qtbot, 1280, 800)
    first.addDockWidget(BOTTOM, first.ui.classes_dock)  # the old bottom-spanning arrangement, roughly
    qtbot.wait(50)
    first.settings.save_window(first.saveGeometry(), first.saveState())  # version 0: the old layout's
    first.settings.sync()
    first.shutdown()
    second = shown_window(qtbot, 1280, 800)
    assert second.dockWidgetArea(second.ui.classes_dock) == Qt.DockWidgetArea.RightDockWidgetArea

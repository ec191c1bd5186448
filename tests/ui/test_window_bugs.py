"""The window bugs a new user hit (issue 6, §2), each driven through real widget events.

Clicks go to the row's ``visualRect`` in the view's viewport and keys to the focused widget, as
a user's would; no test sets the current index behind the view's back.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from gradcam_desktop.core.overlay import blend
from gradcam_desktop.ui import MainWindow
from gradcam_desktop.ui.explore.class_list import ProbabilityBarDelegate

TIMEOUT = 60_000
USER = Qt.ItemDataRole.UserRole
REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "images"
DEMO_CLASSES = ["circle", "square", "triangle", "star"]


def _window(qtbot, size=(1100, 760)) -> MainWindow:
    w = MainWindow()
    qtbot.addWidget(w)
    w.resize(*size)
    w.show()
    qtbot.waitExposed(w)
    qtbot.waitUntil(w.engine_ready, timeout=TIMEOUT)
    return w


def _shown(qtbot, window, action, check=lambda _r: True):
    with qtbot.waitSignal(window.resultShown, timeout=TIMEOUT, check_params_cb=check) as blocker:
        action()
    return blocker.args[0]


@pytest.fixture
def demo(qtbot):
    """The demo model on triangle.png (top class: triangle) then circle.png (top class: circle)."""
    w = _window(qtbot)
    first = _shown(qtbot, w, lambda: (w.open_model("demo"),
                                      w.open_images([SAMPLES / "triangle.png", SAMPLES / "circle.png"])))
    assert first.class_name == "triangle" and first.predicted[1] == "triangle"  # the scenario's premise
    return w


def click_class(window, name: str) -> None:
    view = window.ui.class_list.view
    proxy = view.model()
    index = next(proxy.index(r, 0) for r in range(proxy.rowCount()) if proxy.index(r, 0).data() == name)
    QTest.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     view.visualRect(index).center())


def click_layer(window, path: str) -> None:
    tree = window.ui.layer_tree
    index = tree.layer_model().index_for_path(path)
    tree.scrollTo(index)
    QTest.mouseClick(tree.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     tree.visualRect(index).center())


# -- 1. a click on the highlighted class keeps it ----------------------------------------------
def test_click_on_the_highlighted_top_class_keeps_it_on_the_next_picture(qtbot, demo):
    w, classes = demo, demo.ui.class_list
    assert classes.view.currentIndex().data() == "triangle"  # highlighted: it is the map shown
    assert classes.follow_button.isChecked() and w.kept_class() is None
    click_class(w, "triangle")
    assert w.kept_class() == DEMO_CLASSES.index("triangle")
    assert classes.keep_button.isChecked() and classes.keep_button.text() == "Keep class: triangle"
    w.ui.view.setFocus()
    result = _shown(qtbot, w, lambda: QTest.keyClick(w.ui.view, Qt.Key.Key_Right))
    assert Path(result.image).name == "circle.png"
    assert result.class_name == "triangle" and result.predicted[1] == "circle"
    assert w.ui.caption.caption().startswith("Evidence for 'triangle'")
    # The way back: each picture's own top class again.
    result = _shown(qtbot, w, lambda: QTest.mouseClick(classes.follow_button, Qt.MouseButton.LeftButton))
    assert result.class_name == "circle" and w.kept_class() is None
    assert classes.follow_button.isChecked() and classes.keep_button.text() == "Keep class: circle"


def test_keep_class_button_keeps_the_shown_top_class(qtbot, demo):
    w, classes = demo, demo.ui.class_list
    QTest.mouseClick(classes.keep_button, Qt.MouseButton.LeftButton)
    assert w.kept_class() == DEMO_CLASSES.index("triangle") and classes.keep_button.isChecked()
    result = _shown(qtbot, w, lambda: w.step_image(1))
    assert result.class_name == "triangle"


def test_click_on_another_class_keeps_that_one(qtbot, demo):
    w = demo
    result = _shown(qtbot, w, lambda: click_class(w, "star"))
    assert result.class_name == "star" and w.ui.class_list.keep_button.text() == "Keep class: star"
    result = _shown(qtbot, w, lambda: w.step_image(1))
    assert result.class_name == "star"


# -- 2. side panels are never restored narrower than their content ------------------------------
def test_side_panels_come_back_wide_enough_after_a_small_window(qtbot):
    small = _window(qtbot, (640, 480))
    _shown(qtbot, small, lambda: (small.open_model("demo"), small.open_images([SAMPLES / "two_objects_circle_star.png"])))
    # The user squeezes both panels as far as they go, then closes the window.
    small.resizeDocks([small.ui.layers_dock, small.ui.classes_dock], [10, 10], Qt.Orientation.Horizontal)
    qtbot.wait(50)
    narrow = (small.ui.layers_dock.width(), small.ui.classes_dock.width())
    small.close()

    w = MainWindow()  # restores the small window's geometry and state
    qtbot.addWidget(w)
    w.resize(1100, 760)
    w.show()
    qtbot.waitExposed(w)
    qtbot.waitUntil(w.engine_ready, timeout=TIMEOUT)
    _shown(qtbot, w, lambda: (w.open_model("demo"), w.open_images([SAMPLES / "two_objects_circle_star.png"])))
    tree, classes = w.ui.layer_tree, w.ui.class_list
    qtbot.waitUntil(lambda: w.ui.layers_dock.width() > narrow[0] and w.ui.classes_dock.width() > narrow[1])
    qtbot.wait(50)
    # Layers: every column at least as wide as its widest cell, so nothing is elided or scrolled.
    header = tree.header()
    for column in range(3):
        assert header.sectionSize(column) >= tree.sizeHintForColumn(column), column
    assert not tree.horizontalScrollBar().isVisible()
    # Classes: the widest percentage and every name fit beside each other in the rows.
    fm = classes.view.fontMetrics()
    names = [classes.proxy.index(r, 0).data() for r in range(classes.proxy.rowCount())]
    pad = ProbabilityBarDelegate.PAD
    need = 4 + 4 * pad + fm.horizontalAdvance("100.0 %") + max(fm.horizontalAdvance(n) for n in names)
    assert classes.view.viewport().width() >= need
    assert not classes.view.horizontalScrollBar().isVisible()


# -- 3. the tree always shows the layer the map comes from ---------------------------------------
def test_click_on_a_greyed_layer_goes_back_to_the_shown_layer(qtbot, model_file, image_files):
    w = _window(qtbot)
    _shown(qtbot, w, lambda: (w.open_model(model_file), w.open_images(image_files)))
    tree = w.ui.layer_tree
    assert tree.current_path() == "backbone/last_conv"
    with qtbot.assertNotEmitted(w.resultShown, wait=300):
        click_layer(w, "gap")  # GlobalAveragePooling2D: no grid, no map
    assert "No map at layer" in w.ui.status_label.text()
    qtbot.waitUntil(lambda: tree.current_path() == "backbone/last_conv")
    selected = {i.data(USER) for i in tree.selectionModel().selectedIndexes()}
    assert selected == {"backbone/last_conv"} and w.shown_result().layer == "backbone/last_conv"
    # An eligible layer still works by click, and End (the greyed last layer) goes back to it.
    result = _shown(qtbot, w, lambda: click_layer(w, "backbone/conv2"))
    assert result.layer == "backbone/conv2" == tree.current_path()
    tree.setFocus()
    QTest.keyClick(tree, Qt.Key.Key_End)
    qtbot.waitUntil(lambda: tree.current_path() == "backbone/conv2")
    assert {i.data(USER) for i in tree.selectionModel().selectedIndexes()} == {"backbone/conv2"}


# -- 4. the picture says what the map shows ----------------------------------------------------
def test_caption_pane_titles_legend_and_unlikely_class_warning(qtbot, demo):
    w = demo
    shown = w.shown_result()
    assert w.ui.caption.caption() == f"Evidence for 'triangle' ({shown.score * 100:.1f} %) · layer last_conv"
    assert w.ui.caption.warning() == ""
    assert w.ui.colorbar.labels() == ("0", "this map's maximum")
    result = _shown(qtbot, w, lambda: click_class(w, "circle"))
    assert result.score < 0.05  # the demo finds a circle unlikely on triangle.png
    assert w.ui.caption.caption() == f"Evidence for 'circle' ({result.score * 100:.1f} %) · layer last_conv"
    assert w.ui.caption.warning() == "unlikely class: the map still shows where the evidence would be"
    assert "Unlikely class" in w.ui.caption.text()
    assert w.ui.view.pane_titles() is None  # overlay: one picture, the caption says it
    w.acts.modes["side"].trigger()
    assert w.ui.view.pane_titles() == ("Picture", "Evidence for 'circle'")


def test_burnt_in_caption_on_export_is_remembered(qtbot, demo, tmp_path):
    w = demo
    rgb = w.current_image().rgb
    assert not w.acts.burn_in.isChecked()
    plain = w.export_overlay(tmp_path / "plain.png")
    assert cv2.imread(str(plain)).shape[:2] == rgb.shape[:2]
    w.acts.burn_in.trigger()
    burnt = cv2.cvtColor(cv2.imread(str(w.export_overlay(tmp_path / "burnt.png"))), cv2.COLOR_BGR2RGB)
    assert burnt.shape[0] > rgb.shape[0]
    # The picture itself is in there unchanged: the overlay at the picture's size.
    shown = w.shown_result()
    overlay = blend(rgb, shown.display, w.output_style().alpha, w.output_style().colormap)
    h, width = overlay.shape[:2]
    left = (burnt.shape[1] - width) // 2
    assert any(np.array_equal(burnt[top:top + h, left:left + width], overlay) for top in range(burnt.shape[0] - h + 1))
    sidecar = json.loads((tmp_path / "burnt.json").read_text())
    assert sidecar["class_name"] == "triangle" and sidecar["image_size"] == {"height": h, "width": width}
    assert w.output_style().decorate is not None
    w.close()
    again = MainWindow()
    qtbot.addWidget(again)
    assert again.acts.burn_in.isChecked()
    again.close()


# -- 5. images/ holds only samples ----------------------------------------------------------------
def test_opening_the_images_folder_opens_only_the_samples(qtbot):
    listed = sorted(item["file"] for item in json.loads((SAMPLES / "samples.json").read_text())["images"])
    assert (REPO / "docs" / "screenshot.png").is_file() and (REPO / "docs" / "readme_demo.png").is_file()
    w = _window(qtbot)
    with qtbot.waitSignal(w.worker.imagesLoaded, timeout=TIMEOUT):
        w.open_images([SAMPLES])
    assert sorted(image.name for image in w.images()) == listed

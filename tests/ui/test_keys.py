"""Issue 17: Left/Right step the pictures whatever has the focus, except a text field.

The focus is put where a user puts it, with a mouse click on the widget (a row already chosen, so
the click itself asks for nothing new), and keys go to the focused widget through Qt's shortcut
handling (QTest sends the ShortcutOverride first, as a real key press does). The layer tree steps
through layers with Up/Down, so Left/Right are the picture keys there too; the class filter box
keeps Left/Right for its text cursor and A/D for typing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from ui_window import shown_window
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

TIMEOUT = 60_000
REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "images"
PICTURES = [SAMPLES / "circle.png", SAMPLES / "square.png", SAMPLES / "star.png"]


@pytest.fixture
def demo(qtbot):
    """The real window with the demo model and three pictures, the first shown, the window active."""
    window = shown_window(qtbot, 1280, 800)
    with qtbot.waitSignal(window.resultShown, timeout=TIMEOUT):
        window.open_model("demo")
        window.open_images(PICTURES)
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window, timeout=5_000)
    return window


def _shown(qtbot, window, action, check=lambda _r: True):
    with qtbot.waitSignal(window.resultShown, timeout=TIMEOUT, check_params_cb=check) as blocker:
        action()
    return blocker.args[0]


def _picture(result) -> str:
    return Path(result.image).name


def _click_row(qtbot, view, index) -> None:
    """A user's click on ``index``'s row: the view gets the focus."""
    QTest.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     view.visualRect(index).center())
    qtbot.waitUntil(view.hasFocus, timeout=5_000)


def test_left_right_step_pictures_from_the_layer_tree(demo, qtbot):
    w = demo
    tree = w.ui.layer_tree
    layer = w.shown_result().layer
    with qtbot.assertNotEmitted(w.resultShown, wait=300):  # the layer shown: the click asks for nothing
        _click_row(qtbot, tree, tree.model().index_for_path(layer))
    result = _shown(qtbot, w, lambda: QTest.keyClick(tree, Qt.Key.Key_Right))
    assert (_picture(result), result.layer) == ("square.png", layer) and tree.hasFocus()
    result = _shown(qtbot, w, lambda: QTest.keyClick(tree, Qt.Key.Key_Right))
    assert _picture(result) == "star.png"
    result = _shown(qtbot, w, lambda: QTest.keyClick(tree, Qt.Key.Key_Left))
    assert (_picture(result), result.layer) == ("square.png", layer) and w.ui.strip.currentRow() == 1
    # Up/Down still step through the layers, on the same picture.
    result = _shown(qtbot, w, lambda: QTest.keyClick(tree, Qt.Key.Key_Up))
    assert _picture(result) == "square.png" and result.layer != layer and tree.current_path() == result.layer


def test_left_right_step_pictures_from_the_class_list(demo, qtbot):
    w = demo
    view = w.ui.class_list.view
    proxy = view.model()
    square = next(proxy.index(r, 0) for r in range(proxy.rowCount()) if proxy.index(r, 0).data() == "square")
    result = _shown(qtbot, w, lambda: _click_row(qtbot, view, square))
    assert result.class_name == "square" and w.kept_class() == result.class_index
    result = _shown(qtbot, w, lambda: QTest.keyClick(view, Qt.Key.Key_Right))
    assert (_picture(result), result.class_name) == ("square.png", "square") and view.hasFocus()
    result = _shown(qtbot, w, lambda: QTest.keyClick(view, Qt.Key.Key_Left))
    assert (_picture(result), result.class_name) == ("circle.png", "square")


def test_left_right_and_letters_stay_in_the_class_filter_box(demo, qtbot):
    w = demo
    box = w.ui.class_list.filter_edit
    QTest.mouseClick(box, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(box.hasFocus, timeout=5_000)
    with qtbot.assertNotEmitted(w.resultShown, wait=300):
        QTest.keyClicks(box, "sda")  # S, D and A typed, not "next" and "previous" picture
        assert box.text() == "sda" and box.cursorPosition() == 3
        QTest.keyClick(box, Qt.Key.Key_Left)
        QTest.keyClick(box, Qt.Key.Key_Left)
        assert box.cursorPosition() == 1
        QTest.keyClick(box, Qt.Key.Key_Right)
        assert box.cursorPosition() == 2
    assert w.current_image().name == "circle.png" and w.ui.strip.currentRow() == 0
    # Out of the box (a click on the picture), Right is the picture key again.
    QTest.mouseClick(w.ui.view.viewport(), Qt.MouseButton.LeftButton)
    result = _shown(qtbot, w, lambda: QTest.keyClick(w.focusWidget() or w, Qt.Key.Key_Right))
    assert _picture(result) == "square.png"

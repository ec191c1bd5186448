"""Issue 17, §4: pictures leave the strip by Delete or the strip's context menu "Remove".

Selection is a real click on the thumbnail's ``visualItemRect``, removal a real Delete key press on
the strip or a context-menu event and a click on the menu's entry. The next picture becomes
current, removing the last one empties the view, and the worker forgets the picture's pixels,
source and maps.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QContextMenuEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication
from ui_window import shown_window

TIMEOUT = 60_000
SAMPLES = Path(__file__).resolve().parents[2] / "images"
NAMES = ["triangle.png", "circle.png", "square.png", "star.png"]


@pytest.fixture
def window(qtbot):
    w = shown_window(qtbot, 1280, 800)
    with qtbot.waitSignal(w.resultShown, timeout=TIMEOUT):
        w.open_model("demo")
        w.open_images([SAMPLES / name for name in NAMES])
    return w


def _names(w) -> list[str]:
    return [image.name for image in w.images()]


def _click_thumbnail(qtbot, w, row: int):
    strip = w.ui.strip
    with qtbot.waitSignal(w.resultShown, timeout=TIMEOUT) as shown:
        QTest.mouseClick(strip.viewport(), Qt.MouseButton.LeftButton, pos=strip.visualItemRect(strip.item(row)).center())
    return shown.args[0]


def test_delete_removes_the_selected_picture_and_shows_the_next(qtbot, window):
    w = window
    assert _click_thumbnail(qtbot, w, 1).image.endswith("circle.png")
    key = w.current_image().key
    pictures = w.current_image().pictures
    assert key in pictures and any(k[0] == key for k in w.worker.cached_keys())
    w.ui.strip.setFocus()
    with qtbot.waitSignal(w.resultShown, timeout=TIMEOUT) as shown:
        QTest.keyClick(w.ui.strip, Qt.Key.Key_Delete)
    assert Path(shown.args[0].image).name == "square.png" == w.current_image().name  # the next one
    assert _names(w) == ["triangle.png", "square.png", "star.png"] and w.ui.strip.count() == 3
    assert w.ui.strip.currentRow() == 1 and w.ui.strip.item(1).text() == "square.png"
    qtbot.waitUntil(lambda: key not in pictures and all(k[0] != key for k in w.worker.cached_keys()))
    # The last picture of the strip: the one before it becomes current.
    _click_thumbnail(qtbot, w, 2)
    with qtbot.waitSignal(w.resultShown, timeout=TIMEOUT) as shown:
        QTest.keyClick(w.ui.strip, Qt.Key.Key_Delete)
    assert Path(shown.args[0].image).name == "square.png" and _names(w) == ["triangle.png", "square.png"]


def test_context_menu_remove_and_removing_the_last_clears_the_view(qtbot, window):
    w = window
    strip = w.ui.strip
    shown = w.current_image()
    assert shown.name == "triangle.png"
    # Remove a picture that is not the one shown: the shown one stays, without a new map.
    pos = strip.visualItemRect(strip.item(2)).center()
    QApplication.sendEvent(strip.viewport(), QContextMenuEvent(QContextMenuEvent.Reason.Mouse, pos,
                                                               strip.viewport().mapToGlobal(pos)))
    menu = strip.context_menu
    qtbot.waitUntil(menu.isVisible)
    assert [a.text() for a in menu.actions()] == ["Remove"]
    with qtbot.assertNotEmitted(w.resultShown, wait=300):
        QTest.mouseClick(menu, Qt.MouseButton.LeftButton, pos=menu.actionGeometry(strip.remove_action).center())
    assert _names(w) == ["triangle.png", "circle.png", "star.png"] and w.current_image().name == "triangle.png"
    assert strip.currentRow() == 0 and [strip.item(r).text() for r in range(strip.count())] == _names(w)
    # Remove them all, by the key: each time the next one shows, then nothing.
    strip.setFocus()
    for left in (["circle.png", "star.png"], ["star.png"]):
        with qtbot.waitSignal(w.resultShown, timeout=TIMEOUT):
            QTest.keyClick(strip, Qt.Key.Key_Delete)
        assert _names(w) == left and w.current_image().name == left[0]
    key = w.current_image().key
    pictures = w.current_image().pictures
    QTest.keyClick(strip, Qt.Key.Key_Delete)
    assert w.images() == [] and strip.count() == 0 and w.current_image() is None
    assert not w.ui.view.has_image() and w.shown_result() is None and w.ui.caption.caption() == ""
    assert w.ui.prediction_label.text() == "" and "No pictures" in w.ui.status_label.text()
    qtbot.waitUntil(lambda: key not in pictures and all(k[0] != key for k in w.worker.cached_keys()))
    assert len(pictures) == 0
    # And the strip works again afterwards.
    with qtbot.waitSignal(w.resultShown, timeout=TIMEOUT):
        w.open_images([SAMPLES / "star.png"])
    assert _names(w) == ["star.png"] and strip.currentRow() == 0

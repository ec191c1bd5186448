"""The real window for UI tests that drive it (imported by tests/ui/*; pytest's pythonpath is tests/)."""

from __future__ import annotations

WINDOW_TIMEOUT = 60_000  # ms: the worker's TensorFlow import and the demo model on a slow machine


def shown_window(qtbot, width: int, height: int):
    """The real MainWindow at ``width``×``height``, exposed, its engine ready."""
    from gradcam_desktop.ui import MainWindow

    window = MainWindow()
    qtbot.addWidget(window)
    window.resize(width, height)
    window.show()
    qtbot.waitExposed(window)
    qtbot.waitUntil(window.engine_ready, timeout=WINDOW_TIMEOUT)
    return window


def demo_window(qtbot, width: int, height: int):
    """``shown_window`` with the demo model open."""
    window = shown_window(qtbot, width, height)
    with qtbot.waitSignal(window.worker.modelLoaded, timeout=WINDOW_TIMEOUT):
        window.open_model("demo")
    qtbot.waitUntil(lambda: window.model_info() is not None, timeout=WINDOW_TIMEOUT)
    return window


def drop_paths(window, paths):
    """A real drag-enter + drop of local files or folders on ``window``; returns the drop event."""
    from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
    from PySide6.QtGui import QDragEnterEvent, QDropEvent
    from PySide6.QtWidgets import QApplication

    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    args = (Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    try:  # Qt 6.12 takes a QPointF (the QPoint overload is deprecated); 6.11 only a QPoint
        enter = QDragEnterEvent(QPointF(50, 50), *args)
    except TypeError:
        enter = QDragEnterEvent(QPoint(50, 50), *args)
    QApplication.sendEvent(window, enter)
    assert enter.isAccepted()
    drop = QDropEvent(QPointF(50, 50), *args)
    QApplication.sendEvent(window, drop)
    return drop


def click_radio(window, name: str) -> None:
    """A real mouse click on the visible radio button ``name`` (its indicator)."""
    from PySide6.QtCore import QPoint, Qt
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QRadioButton

    button = window.findChild(QRadioButton, name)
    assert button is not None and button.isVisible()
    QTest.mouseClick(button, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     QPoint(button.height() // 2, button.height() // 2))


def click_combo_row(qtbot, box, row: int) -> None:
    """Open ``box``'s list with a click and click its row ``row``, as a user does."""
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication

    QTest.mouseClick(box, Qt.MouseButton.LeftButton)
    view = box.view()
    qtbot.waitUntil(view.isVisible)
    index = view.model().index(row, 0)
    view.scrollTo(index)
    centre = view.visualRect(index).center()
    # The pointer moves onto the row first (that is what makes it current in a combo's list), and
    # a release right after the opening click would be taken as the end of that click.
    QTest.mouseMove(view.viewport(), centre)
    QTest.qWait(QApplication.doubleClickInterval() + 50)
    QTest.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, centre)

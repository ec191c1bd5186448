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

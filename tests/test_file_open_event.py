"""A document double-clicked in macOS's Finder reaches the window (a QFileOpenEvent, not argv)."""

from PySide6.QtCore import QCoreApplication, QEvent
from PySide6.QtGui import QFileOpenEvent

from gradcam_desktop.__main__ import forward_file_open_events


def test_a_file_open_event_opens_the_file_and_other_events_pass(qapp):
    opened = []
    forwarder = forward_file_open_events(qapp, opened.append)
    try:
        assert QCoreApplication.sendEvent(qapp, QFileOpenEvent("/Users/ann/My Model.keras"))
        assert opened == [["/Users/ann/My Model.keras"]]
        QCoreApplication.sendEvent(qapp, QEvent(QEvent.Type.User))
        assert opened == [["/Users/ann/My Model.keras"]]
    finally:
        qapp.removeEventFilter(forwarder)

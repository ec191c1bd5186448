"""Stepping to the next picture reads pixels decoded beforehand, off the UI thread (the window's cache)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from ui_window import shown_window

TIMEOUT = 60_000
SAMPLES = Path(__file__).resolve().parents[2] / "images"
NAMES = ["triangle.png", "circle.png", "square.png", "star.png"]


def test_the_neighbours_of_the_picture_shown_are_decoded_before_a_step(qtbot):
    w = shown_window(qtbot, 1280, 800)
    with qtbot.waitSignal(w.resultShown, timeout=TIMEOUT):
        w.open_model("demo")
        w.open_images([SAMPLES / name for name in NAMES])
    pictures = w.worker.pictures
    keys = [image.key for image in w.images()]
    qtbot.waitUntil(lambda: keys[1] in pictures.decoded_keys(), timeout=TIMEOUT)  # the next one, unasked
    assert keys[3] not in pictures.decoded_keys()  # not the whole folder: only a step away
    decodes = pictures.decodes
    with qtbot.waitSignal(w.resultShown, timeout=TIMEOUT):
        QTest.keyClick(w.ui.view, Qt.Key.Key_Right)
    assert w.current_image().key == keys[1]
    qtbot.waitUntil(lambda: keys[2] in pictures.decoded_keys(), timeout=TIMEOUT)  # and now the one after
    # One decode since: the prefetch of the picture after; showing the one stepped to decoded nothing.
    assert pictures.decodes == decodes + 1

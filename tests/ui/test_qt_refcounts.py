"""PySide6 must not lose references to Python's singletons (the 6.12.0 regression).

PySide6-Essentials 6.12.0 dropped one reference to ``True`` on every ``Signal.emit()`` and one
to ``None`` on every call of a void Qt method. On CPython 3.11 (no immortal objects) the count
runs down as the app works and the interpreter aborts ("deallocating True/None", or at exit
with rc 134) long after the call that did the damage. This test repeats both kinds of call and
watches the reference counts, so a PySide6 upgrade with the same bug fails here, by name,
instead of as a random abort.

The calls run in batches and the counts are checked after each batch: ``True`` has only about
1,300 references in this process, so 2,000 leaked ones would deallocate it and kill pytest
before any assertion could report. Checking every batch fails cleanly after ~100.

Self-contained on purpose (only PySide6 + pytest-qt's ``qapp``), so that it can be run against
a candidate PySide6 in a bare venv with ``--noconftest``.
"""

from __future__ import annotations

import gc
import sys

import pytest
from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QLabel, QWidget

CALLS = 2000
BATCH = 50
#: Counts move a little on their own (caches, gc, interned objects); a leak moves them by CALLS.
SLACK = 50

pytestmark = pytest.mark.skipif(
    sys.implementation.name != "cpython", reason="sys.getrefcount is CPython's")


class _Emitter(QObject):
    flag = Signal(bool)
    number = Signal(int)
    plain = Signal()


def _counts() -> tuple[int, int]:
    return sys.getrefcount(True), sys.getrefcount(None)


def _repeat(call) -> None:
    """Run ``call`` CALLS times; fail as soon as True's or None's count dropped by > SLACK."""
    gc.collect()
    true_before, none_before = _counts()
    done = 0
    while done < CALLS:
        for _ in range(BATCH):
            call()
        done += BATCH
        true_now, none_now = _counts()
        lost_true, lost_none = true_before - true_now, none_before - none_now
        assert lost_true <= SLACK and lost_none <= SLACK, (
            f"after {done} calls Python lost {lost_true} references to True and {lost_none} to None "
            f"(PySide6 drops a reference per call: the 6.12.0 bug that aborts Python 3.11)")


@pytest.fixture
def emitter(qapp):
    obj = _Emitter()
    received = [0]  # a count, not the values: storing True would add back what a leak takes

    def count(*_args) -> None:
        received[0] += 1

    for signal in (obj.flag, obj.number, obj.plain):
        signal.connect(count)
    yield obj, received
    obj.deleteLater()


def test_signal_emit_keeps_true_and_none(emitter):
    obj, received = emitter
    _repeat(lambda: obj.flag.emit(True))
    _repeat(lambda: obj.number.emit(7))
    _repeat(obj.plain.emit)
    assert received[0] == 3 * CALLS


def test_unconnected_signal_emit_keeps_true_and_none(qapp):
    obj = _Emitter()
    _repeat(obj.plain.emit)


def test_void_qt_calls_keep_true_and_none(qapp):
    label = QLabel()
    widget = QWidget()
    _repeat(lambda: label.setText("Grad-CAM"))
    _repeat(widget.update)
    _repeat(lambda: widget.setEnabled(True))
    assert label.text() == "Grad-CAM"

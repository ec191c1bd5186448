"""Drag-and-drop onto the window, and what dropped, pasted or command-line paths open as.

``DropTarget`` is an event filter on the window: it accepts drags that carry local files and
hands a drop's paths to a callback, so the window needs no drag event handlers of its own.
``split_paths`` sorts paths into model files and pictures; the window opens them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QEvent, QMimeData, QObject
from PySide6.QtGui import QDragEnterEvent, QDragMoveEvent, QDropEvent

__all__ = ["MODEL_SUFFIXES", "DropTarget", "has_local_files", "is_model_path", "local_paths", "split_paths"]

MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")


def is_model_path(path: str | Path) -> bool:
    """A model file, or a TensorFlow SavedModel folder (so the engine can say why it refuses it)."""
    p = Path(path)
    if p.is_dir():
        return (p / "saved_model.pb").exists() or (p / "saved_model.pbtxt").exists()
    return p.suffix.lower() in MODEL_SUFFIXES


def split_paths(paths: list[str]) -> tuple[str | None, list[str]]:
    """(the model to open — the last one wins — or None, the pictures and folders to open)."""
    models = [p for p in paths if is_model_path(p)]
    return (models[-1] if models else None), [p for p in paths if not is_model_path(p)]


def has_local_files(mime: QMimeData | None) -> bool:
    """Whether a drag carries at least one local file (remote URLs are not opened)."""
    return mime is not None and mime.hasUrls() and any(u.isLocalFile() for u in mime.urls())


def local_paths(mime: QMimeData | None) -> list[str]:
    """The local files among a drop's or the clipboard's URLs."""
    return [u.toLocalFile() for u in mime.urls() if u.isLocalFile()] if mime is not None else []


class DropTarget(QObject):
    """Makes ``widget`` accept dropped local files and calls ``on_drop(paths)`` for each drop.

    The widget's children (the image view, the lists) accept no drops themselves, so a drop
    anywhere on the window arrives here.
    """

    def __init__(self, widget, on_drop: Callable[[list[str]], None]) -> None:
        super().__init__(widget)
        self._on_drop = on_drop
        widget.setAcceptDrops(True)
        widget.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if isinstance(event, (QDragEnterEvent, QDragMoveEvent)) and event.type() in (
                QEvent.Type.DragEnter, QEvent.Type.DragMove):
            if has_local_files(event.mimeData()):
                event.acceptProposedAction()
            return True
        if isinstance(event, QDropEvent) and event.type() == QEvent.Type.Drop:
            paths = local_paths(event.mimeData())
            if paths:
                event.acceptProposedAction()
                self._on_drop(paths)
            return True
        return False

"""Drag-and-drop onto the window, and what dropped, pasted or command-line paths open as.

``DropTarget`` is an event filter on the window: it accepts drags that carry local files and
hands a drop's paths to a callback, so the window needs no drag event handlers of its own.
``split_paths`` sorts paths into model files and pictures; the window opens them.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QMimeData
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


class DropTarget:
    """Mixin for the main window: accept dropped local files, call ``open_paths(paths)`` per drop.

    The window's children (the image view, the lists) accept no drops themselves, so a drop
    anywhere on the window arrives here. Virtual overrides rather than an event filter: Qt calls
    them for drag events only, while a filter is a Python call (and a wait for the interpreter
    lock, which the worker may hold) for every event the window gets.
    """

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if has_local_files(event.mimeData()):
            event.acceptProposedAction()

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:
        self.dragEnterEvent(event)

    def dropEvent(self, event: QDropEvent) -> None:
        paths = local_paths(event.mimeData())
        if paths:
            event.acceptProposedAction()
            self.open_paths(paths)  # MainWindow.open_paths

"""Drag-and-drop onto the window, and what dropped, pasted or command-line paths open as.

``DropTarget`` is a mixin for the window: it accepts drags that carry local files and hands a
drop's paths to ``open_paths``, so the window needs no drag event handlers of its own.
``split_paths`` sorts paths into models (files, SavedModel folders) and pictures; the window opens them.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QMimeData
from PySide6.QtGui import QDragEnterEvent, QDragMoveEvent, QDropEvent

__all__ = ["MODEL_SUFFIXES", "SAVEDMODEL_FILES", "DropTarget", "has_local_files", "is_model_path", "is_savedmodel_folder",
           "local_paths", "model_location", "split_paths"]

MODEL_SUFFIXES = (".keras", ".h5", ".hdf5", ".onnx", ".tflite")
#: The files of a TensorFlow SavedModel folder that stand for the folder (as the core reads them).
SAVEDMODEL_FILES = ("saved_model.pb", "saved_model.pbtxt", "keras_metadata.pb")


def is_savedmodel_folder(path: str | Path) -> bool:
    """A folder holding a TensorFlow SavedModel (``saved_model.pb``), whatever else it holds."""
    p = Path(path)
    return p.is_dir() and any((p / name).exists() for name in SAVEDMODEL_FILES[:2])


def is_model_path(path: str | Path) -> bool:
    """A model file, a TensorFlow SavedModel folder or one of its ``saved_model.pb`` /
    ``keras_metadata.pb`` files (so the engine opens it, or says why it refuses it)."""
    p = Path(path)
    if p.is_dir():
        return is_savedmodel_folder(p)
    return p.name in SAVEDMODEL_FILES or p.suffix.lower() in MODEL_SUFFIXES


def model_location(path: str | Path) -> str:
    """What to open for a model path: a SavedModel's folder for its ``saved_model.pb`` or
    ``keras_metadata.pb`` (the recent list and the title then name the folder), else the path."""
    p = Path(path)
    if p.name in SAVEDMODEL_FILES and not p.is_dir():
        return str(p.absolute().parent)
    return str(path)


def split_paths(paths: list[str]) -> tuple[str | None, list[str]]:
    """(the model to open — the last one wins — or None, the pictures and folders to open).

    A folder is a model when it holds ``saved_model.pb`` (a SavedModel), else a folder of pictures.
    The other files of a SavedModel dropped with it (``variables/``, ``fingerprint.pb``) are no pictures.
    """
    models = [p for p in paths if is_model_path(p)]
    model = model_location(models[-1]) if models else None
    inside = Path(model) if model is not None and Path(model).is_dir() else None
    pictures = [p for p in paths if not is_model_path(p) and (inside is None or Path(p).parent != inside)]
    return model, pictures


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

    def open_paths(self, paths: list[str]) -> None:
        """Open the dropped paths: the window defines it (``MainWindow.open_paths``)."""
        raise NotImplementedError

    def dragEnterEvent(self, event: QDragEnterEvent | QDragMoveEvent) -> None:
        # Qt passes a QDragEnterEvent; dragMoveEvent hands over its QDragMoveEvent (the base class).
        if has_local_files(event.mimeData()):
            event.acceptProposedAction()

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:
        self.dragEnterEvent(event)

    def dropEvent(self, event: QDropEvent) -> None:
        paths = local_paths(event.mimeData())
        if paths:
            event.acceptProposedAction()
            self.open_paths(paths)  # MainWindow.open_paths

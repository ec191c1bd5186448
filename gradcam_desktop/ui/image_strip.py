"""The strip of loaded images: thumbnails in a row, click one to show it."""

from __future__ import annotations

import cv2
import numpy as np
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import QAbstractItemView, QListView, QListWidget, QListWidgetItem, QWidget

from gradcam_desktop.ui.export import rgb_to_qimage

THUMB = 64


def thumbnail(rgb: np.ndarray, side: int = THUMB) -> QIcon:
    """A small icon of an image (resized with OpenCV's area filter: sharp and fast)."""
    height, width = rgb.shape[:2]
    scale = min(side / max(height, 1), side / max(width, 1), 1.0)
    small = cv2.resize(rgb, (max(1, round(width * scale)), max(1, round(height * scale))),
                       interpolation=cv2.INTER_AREA) if scale < 1.0 else rgb
    return QIcon(QPixmap.fromImage(rgb_to_qimage(small)))


class ImageStrip(QListWidget):
    """Thumbnails of the loaded images (objectName "imageStrip"); ``imageChosen(row)`` on click."""

    imageChosen = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("imageStrip")
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setFlow(QListView.Flow.LeftToRight)
        self.setWrapping(False)
        self.setMovement(QListView.Movement.Static)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setIconSize(QSize(THUMB, THUMB))
        self.setGridSize(QSize(THUMB + 40, THUMB + 26))
        self.setUniformItemSizes(True)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setHorizontalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.setFixedHeight(THUMB + 36)
        self.setToolTip("The pictures you opened. Click one, or use Left/Right (A/D) to step through them.")
        self.currentRowChanged.connect(self._on_row)
        self._silent = False

    def add_images(self, images: list[dict]) -> None:
        """Append thumbnails for image dicts ({name, path, rgb, ...})."""
        for image in images:
            small = image.get("thumb")  # made on the worker thread: no decoding here
            item = QListWidgetItem(thumbnail(small if small is not None else image["rgb"]), image["name"])
            item.setToolTip(image.get("path") or image["name"])
            item.setSizeHint(self.gridSize())
            self.addItem(item)

    def set_current(self, row: int) -> None:
        """Highlight ``row`` without emitting ``imageChosen``."""
        self._silent = True
        try:
            self.setCurrentRow(row)
            item = self.item(row)
            if item is not None:
                self.scrollToItem(item)
        finally:
            self._silent = False

    def _on_row(self, row: int) -> None:
        if not self._silent and row >= 0:
            self.imageChosen.emit(row)

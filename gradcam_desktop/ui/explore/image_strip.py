"""The strip of loaded images: thumbnails in a row, click one to show it; Delete (or the context
menu's "Remove") closes the picture selected."""

from __future__ import annotations

import cv2
import numpy as np
from PySide6.QtCore import QPoint, QSize, Qt, Signal
from PySide6.QtGui import QAction, QIcon, QKeyEvent, QPixmap
from PySide6.QtWidgets import QAbstractItemView, QListView, QListWidget, QListWidgetItem, QMenu, QWidget

from gradcam_desktop.ui.export import rgb_to_qimage
from gradcam_desktop.session.records import Picture

THUMB = 64


def thumbnail(rgb: np.ndarray, side: int = THUMB) -> QIcon:
    """A small icon of an image (resized with OpenCV's area filter: sharp and fast)."""
    height, width = rgb.shape[:2]
    scale = min(side / max(height, 1), side / max(width, 1), 1.0)
    small = cv2.resize(rgb, (max(1, round(width * scale)), max(1, round(height * scale))),
                       interpolation=cv2.INTER_AREA) if scale < 1.0 else rgb
    return QIcon(QPixmap.fromImage(rgb_to_qimage(small)))


class ImageStrip(QListWidget):
    """Thumbnails of the loaded images (objectName "imageStrip"); ``imageChosen(row)`` on click,
    ``removeRequested(row)`` on Delete/Backspace or the context menu's "Remove" (the window removes it)."""

    imageChosen = Signal(int)
    removeRequested = Signal(int)

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
        self.setToolTip("The pictures you opened. Click one, or use Left/Right (A/D) to step through them; "
                        "Delete closes the one selected.")
        self.currentRowChanged.connect(self._on_row)
        self._silent = False
        self.context_menu = QMenu(self)  # objectName "imageStripMenu"; popped up, never exec'd (tests click it)
        self.context_menu.setObjectName("imageStripMenu")
        self.remove_action = QAction("Remove", self.context_menu)
        self.remove_action.setObjectName("removePicture")
        self.remove_action.setShortcut(Qt.Key.Key_Delete)  # shown in the menu; the key itself is keyPressEvent's
        self.remove_action.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
        self.remove_action.setStatusTip("Close this picture (the file stays where it is)")
        self.remove_action.triggered.connect(lambda _checked=False: self._remove(self._menu_row))
        self.context_menu.addAction(self.remove_action)
        self._menu_row: int = -1
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._show_menu)

    def add_images(self, images: list[Picture]) -> None:
        """Append the pictures' thumbnails (made by the engine: no decoding here)."""
        for image in images:
            small = image.thumb if image.thumb is not None else image.rgb
            if small is None:  # neither a thumbnail nor the pixels: an empty tile, the name still says which
                small = np.zeros((1, 1, 3), np.uint8)
            item = QListWidgetItem(thumbnail(small), image.name)
            item.setToolTip(image.path or image.name)
            item.setSizeHint(self.gridSize())
            self.addItem(item)

    def remove_row(self, row: int) -> None:
        """Drop thumbnail ``row`` without emitting ``imageChosen`` (the window says what is shown next)."""
        self._silent = True
        try:
            self.takeItem(row)  # a taken item is Python's: freed with its last reference, here
        finally:
            self._silent = False

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace) and \
                event.modifiers() in (Qt.KeyboardModifier.NoModifier, Qt.KeyboardModifier.KeypadModifier):
            self._remove(self.currentRow())
            event.accept()
            return
        super().keyPressEvent(event)

    def _show_menu(self, pos: QPoint) -> None:
        item = self.itemAt(pos)
        if item is None:
            return
        self._menu_row = self.row(item)
        self.context_menu.popup(self.viewport().mapToGlobal(pos))

    def _remove(self, row: int) -> None:
        if 0 <= row < self.count():
            self.removeRequested.emit(row)

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

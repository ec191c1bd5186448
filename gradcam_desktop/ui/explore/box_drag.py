"""A box dragged on the picture view: the drag tools' one gesture (Mark Object, Draw Region).

While ``active``, a left-button drag on the picture draws a dashed rubber band (``colour``) and, on
release, hands the box in picture pixels to ``on_box`` — unless it is shorter than ``MIN_SIDE`` on
either side (a click). A press off the picture is left to the view (it pans); a drag that leaves
the picture is clamped to its edge. The view's drag mode and cursor follow ``active``; ``pen`` is
the tools' shared line (cosmetic: the same width on screen at any zoom).
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QMouseEvent, QPen
from PySide6.QtWidgets import QGraphicsRectItem, QGraphicsView

__all__ = ["MIN_SIDE", "BoxDrag", "pen"]

#: A drag shorter than this (picture pixels, either side) is a click, not a box.
MIN_SIDE = 2.0


def pen(colour: QColor, *, dashed: bool, width: float = 2.0) -> QPen:
    """A line of ``width`` screen pixels at any zoom, dashed or solid."""
    line = QPen(colour, width)
    line.setCosmetic(True)
    if dashed:
        line.setStyle(Qt.PenStyle.DashLine)
    return line


class BoxDrag(QObject):
    """The drag gesture on ``view``'s viewport; ``picture_size()`` gives (height, width) or None (no picture)."""

    def __init__(self, view: QGraphicsView, picture_size: Callable[[], tuple[int, int] | None], colour: QColor,
                 on_box: Callable[[QRectF], None], *, z: float = 12.0) -> None:
        super().__init__(view)
        self.view = view
        self._picture_size = picture_size
        self._colour = colour
        self._on_box = on_box
        self._z = z
        self._drag: QPointF | None = None
        self._band: QGraphicsRectItem | None = None
        self._active = False  # a Python copy: the filter may see events while Qt objects are being deleted
        self._viewport = view.viewport()
        self._viewport.installEventFilter(self)

    @property
    def active(self) -> bool:
        return self._active

    def set_active(self, on: bool, *, restore: bool = True) -> None:
        """Drags draw boxes (a cross cursor) or pan the view again; ``restore`` False leaves the view's mode
        and cursor to the tool that takes over."""
        self._active = on
        if on:
            self.view.setDragMode(QGraphicsView.DragMode.NoDrag)
            self._viewport.setCursor(Qt.CursorShape.CrossCursor)
        elif restore:
            self.view.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
            self._viewport.setCursor(Qt.CursorShape.OpenHandCursor)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if not self._active or watched is not self._viewport or not isinstance(event, QMouseEvent):
            return False
        kind = event.type()
        if kind == QEvent.Type.MouseButtonPress and event.button() == Qt.MouseButton.LeftButton:
            point = self._point(event)
            if point is None:
                return False
            self._drag = point
            self._band = QGraphicsRectItem(QRectF(point, point))
            self._band.setPen(pen(self._colour, dashed=True))
            self._band.setZValue(self._z)
            self.view.scene().addItem(self._band)
            return True
        if kind == QEvent.Type.MouseMove and self._drag is not None:
            point = self._point(event, clamp=True)
            if point is not None and self._band is not None:
                self._band.setRect(QRectF(self._drag, point).normalized())
            return True
        if kind == QEvent.Type.MouseButtonRelease and self._drag is not None:
            point = self._point(event, clamp=True)
            start, self._drag = self._drag, None
            if self._band is not None:
                self.view.scene().removeItem(self._band)
                self._band = None
            if point is not None:
                rect = QRectF(start, point).normalized()
                if rect.width() >= MIN_SIDE and rect.height() >= MIN_SIDE:
                    self._on_box(rect)
            return True
        return False

    def _point(self, event: QMouseEvent, clamp: bool = False) -> QPointF | None:
        """The picture point under the pointer (the left pane); None off the picture unless ``clamp``."""
        size = self._picture_size()
        if size is None:
            return None
        h, w = size
        scene = self.view.mapToScene(event.position().toPoint())
        x, y = scene.x(), scene.y()
        if not clamp and not (0 <= x < w and 0 <= y < h):
            return None
        return QPointF(min(max(x, 0.0), float(w)), min(max(y, 0.0), float(h)))

"""The image canvas: the photo with its Grad-CAM map, zoom and pan, and instant alpha/colormap changes.

The pixels come from ``compositing.Compositor`` (NumPy/OpenCV, no Qt); this module is the
QGraphicsView around them: scene, zoom, pan, hover readout, view modes and the placeholder.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QEvent, QPointF, QRect, QRectF, Qt, Signal
from PySide6.QtGui import (QColor, QImage, QMouseEvent, QPainter, QPaintEvent, QPalette, QPixmap, QResizeEvent, QShowEvent,
                           QTransform, QWheelEvent)
from PySide6.QtWidgets import QFrame, QGraphicsPixmapItem, QGraphicsScene, QGraphicsView, QWidget

from gradcam_desktop.core.overlay import COLORMAPS

from gradcam_desktop.ui.explore.colorbar import ColorBar
from gradcam_desktop.ui.explore.compositing import MODES, Compositor

__all__ = ["ImageView", "ColorBar", "MODES"]

PLACEHOLDER = "Drop images here or use File → Open Images…"
_MIN_ZOOM, _MAX_ZOOM = 0.01, 64.0


class ImageView(QGraphicsView):
    """Shows an image with its Grad-CAM map (objectName "imageView").

    Data: ``set_image(rgb)`` (HxWx3 uint8; clears the map, because a map never belongs to
    another image), ``set_map(display)`` (HxW at the image's size: float in [0, 1], or uint8
    0..255 as the worker sends it; None to clear), ``set_alpha(alpha)`` (0..1),
    ``set_colormap(name)`` (a key of core.overlay.COLORMAPS),
    ``set_mode(mode)`` with ``mode`` in ``MODES``: "overlay", "heatmap", "original" or "side"
    (original left, overlay right); without a map every mode shows the plain image.
    ``clear()`` shows the placeholder text again.  Getters: ``alpha()``, ``colormap()``,
    ``mode()``, ``has_image()``; ``set_placeholder_text(text)``.  ``set_pane_titles((left,
    right) | None)``: the titles drawn on the two panes of side by side (``pane_titles()``).

    Zoom: ``fit_to_window()``, ``actual_size()`` (1:1), ``zoom_by(factor)``, ``zoom() -> float``;
    Ctrl+wheel zooms about the pointer, dragging pans.  The view fits the image to the window on
    the first image, on images of a new size and on resize, until the user zooms.

    Output: ``composited() -> np.ndarray`` (HxWx3 uint8 RGB copy of what is shown, at the
    image's full size; side by side is one array with a white gap), ``displayed_qimage() ->
    QImage`` (an owning copy).

    Signal ``valueHovered(int, int, float)``: image x, y under the pointer and the map value
    there (-1.0 without a map); (-1, -1, -1.0) once when the pointer leaves the image.

    Compositing is for the screen (see ``compositing``): a large image is shown at a reduced
    *level* (1/2, 1/4, … of its size) as long as one level pixel covers at least one device
    pixel.  Zooming past a level switches to the next finer one; from 1:1 on (and whenever the
    level would be magnified) the full-size composite is shown, so true pixels are never
    softened.  The scene stays in full-image pixels (the items scale the level up), so hovering
    and zoom are unaffected; ``composited()`` always builds the full-size overlay.  Alpha and
    colormap changes never recompute the map.  The view accepts no drops itself, so drops
    reach the window.
    """

    valueHovered = Signal(int, int, float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("imageView")
        self._scene = QGraphicsScene(self)
        self.setScene(self._scene)
        self._left = QGraphicsPixmapItem()
        self._right = QGraphicsPixmapItem()
        for item in (self._left, self._right):
            item.setShapeMode(QGraphicsPixmapItem.ShapeMode.BoundingRectShape)
            self._scene.addItem(item)
        self._right.hide()
        self._keep: tuple[np.ndarray, ...] = ()  # the pixmaps share these buffers: keep them alive
        self._pixels = Compositor()  # image, map, alpha, colormap and their composites
        self._level = 1  # the level on screen
        self._mode = "overlay"
        self._auto_fit = True
        self._hover_inside = False
        self._placeholder = PLACEHOLDER
        self._pane_titles: tuple[str, str] | None = None
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        # Anchoring is done by hand (_scale_to): Qt's AnchorUnderMouse reads the global cursor.
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.NoAnchor)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setBackgroundBrush(self.palette().color(QPalette.ColorRole.Window).darker(108))
        self.setAcceptDrops(False)
        self.viewport().setAcceptDrops(False)
        self.viewport().setMouseTracking(True)

    # -- data ----------------------------------------------------------------------------------
    def set_image(self, rgb: np.ndarray) -> None:
        """Show ``rgb`` (HxWx3 uint8) without a map."""
        old = self._pixels.rgb
        self._pixels.set_image(rgb)  # checks rgb first: a bad one changes nothing
        new = self._pixels.rgb
        assert new is not None  # set_image either kept the image or raised
        if old is None or old.shape != new.shape:
            self._auto_fit = True  # same size keeps the zoom, so a set of images can be compared
        self._render()

    def set_map(self, display: np.ndarray | None) -> None:
        """Overlay ``display`` (HxW at the image's size: float [0, 1] or uint8 0..255); None removes it."""
        if display is None:
            self._pixels.clear_map()
        else:
            self._pixels.set_map(display)
        self._render()

    def clear(self) -> None:
        """No image: the placeholder text shows."""
        self._pixels.clear()
        self._auto_fit = True
        self._render()

    def set_alpha(self, alpha: float) -> None:
        """Map opacity, 0 (image only) … 1 (map only)."""
        alpha = min(max(float(alpha), 0.0), 1.0)
        if alpha == self._pixels.alpha:
            return
        self._pixels.alpha = alpha
        if self._pixels.values is not None and self._mode in ("overlay", "side"):
            self._show_level(self._wanted_level())

    def alpha(self) -> float:
        """The map opacity."""
        return self._pixels.alpha

    def set_colormap(self, name: str) -> None:
        """Colour the map with ``name`` (see core.overlay.COLORMAPS)."""
        if name not in COLORMAPS:
            raise ValueError(f"Unknown colormap {name!r}; choose one of: {', '.join(COLORMAPS)}.")
        if name == self._pixels.colormap:
            return
        self._pixels.colormap = name
        if self._pixels.values is not None and self._mode != "original":
            self._show_level(self._wanted_level())

    def colormap(self) -> str:
        """The colormap name."""
        return self._pixels.colormap

    def set_mode(self, mode: str) -> None:
        """One of MODES."""
        if mode not in MODES:
            raise ValueError(f"Unknown view mode {mode!r}; choose one of: {', '.join(MODES)}.")
        if mode != self._mode:
            self._mode = mode
            self._render()

    def mode(self) -> str:
        """The view mode."""
        return self._mode

    def has_image(self) -> bool:
        """True once an image is shown."""
        return self._pixels.rgb is not None

    def set_placeholder_text(self, text: str) -> None:
        """The text shown while there is no image."""
        self._placeholder = text
        self.viewport().update()

    def set_pane_titles(self, titles: tuple[str, str] | None) -> None:
        """What the two halves of side by side show, drawn on them (None: no titles)."""
        self._pane_titles = titles
        self.viewport().update()

    def pane_titles(self) -> tuple[str, str] | None:
        """The titles drawn on side by side's panes when a map is shown, or None."""
        return self._pane_titles if self._mode == "side" and self._pixels.values is not None else None

    # -- compositing ---------------------------------------------------------------------------
    def _wanted_level(self) -> int:
        """The coarsest level whose pixels are not magnified on screen at the current zoom."""
        return self._pixels.level_for(self.zoom() * self.devicePixelRatioF())

    def _render(self) -> None:
        """Scene size, fit (if fitting) and pixels, after the image, map or mode changed."""
        rgb = self._pixels.rgb
        if rgb is None:
            rect = QRectF()
        else:
            h, w = rgb.shape[:2]
            rect = QRectF(0, 0, 2 * w + self._pixels.gap() if self._mode == "side" else w, h)
        self._scene.setSceneRect(rect)
        self.setSceneRect(rect)
        if self._auto_fit and rgb is not None:
            self.fitInView(rect, Qt.AspectRatioMode.KeepAspectRatio)
        self._show_level(self._wanted_level())

    def _show_level(self, level: int) -> None:
        """Composite at ``level`` and hand the pixels to the items (scaled back to image size)."""
        frames = self._pixels.frames(level, self._mode)
        rgb = self._pixels.rgb
        for item, frame in zip((self._left, self._right), frames + (None,) * (2 - len(frames))):
            if frame is None:
                item.setPixmap(QPixmap())
                item.hide()
                continue
            h, w = frame.shape[:2]
            # No copy: Qt keeps RGB32 as is and shares the buffer, so later writes to it would show
            # on screen: cached frames are never written in place, and _keep holds them alive.
            item.setPixmap(QPixmap.fromImage(QImage(frame.data, w, h, 4 * w, QImage.Format.Format_RGB32)))
            assert rgb is not None  # the compositor makes no frames without an image
            full_h, full_w = rgb.shape[:2]
            item.setTransform(QTransform.fromScale(full_w / w, full_h / h))
            item.show()
        self._keep = frames
        self._level = level
        self._right.setPos(rgb.shape[1] + self._pixels.gap() if rgb is not None else 0, 0)
        self._update_smoothing()
        self.viewport().update()

    def _sync_level(self) -> None:
        """After a zoom: switch to the level the new zoom wants, if it differs."""
        level = self._wanted_level()
        if level != self._level:
            self._show_level(level)

    def composited(self) -> np.ndarray:
        """What the view shows, at full size, as HxWx3 uint8 RGB (side by side: one array, white gap)."""
        return self._pixels.composited(self._mode)

    def displayed_qimage(self) -> QImage:
        """``composited()`` as a QImage that owns its pixels (safe for the clipboard)."""
        rgb = self.composited()
        h, w = rgb.shape[:2]
        return QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()

    # -- zoom ----------------------------------------------------------------------------------
    def zoom(self) -> float:
        """Screen pixels per image pixel."""
        return self.transform().m11()

    def fit_to_window(self) -> None:
        """Show the whole image (and keep fitting on resize until the user zooms)."""
        self._auto_fit = True
        if self._pixels.rgb is not None:
            self.fitInView(self.sceneRect(), Qt.AspectRatioMode.KeepAspectRatio)
            self._sync_level()
            self._update_smoothing()

    def actual_size(self) -> None:
        """One image pixel per screen pixel."""
        self._scale_to(1.0)

    def zoom_by(self, factor: float) -> None:
        """Zoom in (>1) or out (<1) about the view centre."""
        self._scale_to(self.zoom() * factor)

    def _scale_to(self, zoom: float, anchor: QPointF | None = None) -> None:
        """Set the zoom, keeping the scene point under ``anchor`` (viewport px; default centre) still."""
        self._auto_fit = False
        if self._pixels.rgb is None:
            return
        zoom = min(max(zoom, _MIN_ZOOM), _MAX_ZOOM)
        anchor = anchor if anchor is not None else QPointF(self.viewport().rect().center())
        fixed = self.mapToScene(anchor.toPoint())
        self.setTransform(QTransform.fromScale(zoom, zoom))
        moved = self.mapFromScene(fixed) - anchor.toPoint()
        self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() + moved.x())
        self.verticalScrollBar().setValue(self.verticalScrollBar().value() + moved.y())
        self._sync_level()
        self._update_smoothing()

    def _update_smoothing(self) -> None:
        # Smooth when shrinking (no aliasing); crisp pixels when magnifying (see what the map does).
        # A level's pixels are `_level` image pixels wide.
        mode = (Qt.TransformationMode.SmoothTransformation if self.zoom() * self._level < 1.0
                else Qt.TransformationMode.FastTransformation)
        for item in (self._left, self._right):
            item.setTransformationMode(mode)

    # -- events --------------------------------------------------------------------------------
    def wheelEvent(self, event: QWheelEvent) -> None:
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            steps = event.angleDelta().y() / 120.0
            if steps:
                self._scale_to(self.zoom() * 1.25 ** steps, event.position())
            event.accept()
            return
        super().wheelEvent(event)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if self._auto_fit:
            self.fit_to_window()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if self._auto_fit:
            self.fit_to_window()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        super().mouseMoveEvent(event)
        self._report_hover(self.mapToScene(event.position().toPoint()))

    def leaveEvent(self, event: QEvent) -> None:
        super().leaveEvent(event)
        self._report_hover(None)

    def _report_hover(self, scene_pos: QPointF | None) -> None:
        hit = self._pixel_at(scene_pos) if scene_pos is not None else None
        if hit is None:
            if self._hover_inside:
                self._hover_inside = False
                self.valueHovered.emit(-1, -1, -1.0)
            return
        self._hover_inside = True
        x, y = hit
        value = -1.0
        values = self._pixels.values
        if values is not None:
            value = float(values[y, x])
            if values.dtype == np.uint8:
                value /= 255.0
        self.valueHovered.emit(x, y, value)

    def _pixel_at(self, scene_pos: QPointF) -> tuple[int, int] | None:
        """Image pixel (x, y) under a scene point, in either half of side by side."""
        if self._pixels.rgb is None:
            return None
        h, w = self._pixels.rgb.shape[:2]
        for item in (self._left, self._right):
            if item.isVisible():
                local = scene_pos - item.pos()
                x, y = int(np.floor(local.x())), int(np.floor(local.y()))
                if 0 <= x < w and 0 <= y < h:
                    return x, y
        return None

    def paintEvent(self, event: QPaintEvent) -> None:
        super().paintEvent(event)
        titles = self.pane_titles()
        if titles is not None:
            self._paint_titles(titles)
        if self._pixels.rgb is None:
            painter = QPainter(self.viewport())
            painter.setPen(self.palette().color(QPalette.ColorRole.PlaceholderText))
            font = painter.font()
            font.setPointSizeF(font.pointSizeF() * 1.3)
            painter.setFont(font)
            painter.drawText(self.viewport().rect().adjusted(20, 20, -20, -20),
                             Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self._placeholder)
            painter.end()

    def scrollContentsBy(self, dx: int, dy: int) -> None:
        super().scrollContentsBy(dx, dy)
        if self.pane_titles() is not None:
            self.viewport().update()  # scrolling moves painted pixels: the titles must stay put

    def _paint_titles(self, titles: tuple[str, str]) -> None:
        """Each title in a dark box at its pane's top-left corner, in screen pixels (any zoom)."""
        painter = QPainter(self.viewport())
        font = painter.font()
        font.setBold(True)
        painter.setFont(font)
        fm = painter.fontMetrics()
        visible = self.viewport().rect()
        for item, title in zip((self._left, self._right), titles):
            pane = self.mapFromScene(item.sceneBoundingRect()).boundingRect().intersected(visible)
            if pane.width() < 40 or pane.height() < fm.height() + 8:
                continue
            text = fm.elidedText(title, Qt.TextElideMode.ElideRight, pane.width() - 20)
            box = QRect(pane.left() + 6, pane.top() + 6, fm.horizontalAdvance(text) + 12, fm.height() + 6)
            painter.fillRect(box, QColor(0, 0, 0, 170))
            painter.setPen(QColor(255, 255, 255))
            painter.drawText(box, Qt.AlignmentFlag.AlignCenter, text)
        painter.end()

"""The image canvas: the photo with its Grad-CAM map, zoom and pan, and instant alpha/colormap changes."""

from __future__ import annotations

from collections import OrderedDict

import cv2
import numpy as np
from PySide6.QtCore import QEvent, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import (QImage, QMouseEvent, QPainter, QPaintEvent, QPalette, QPixmap, QResizeEvent, QShowEvent,
                           QTransform, QWheelEvent)
from PySide6.QtWidgets import QFrame, QGraphicsPixmapItem, QGraphicsScene, QGraphicsView, QWidget

from gradcam_desktop.core.overlay import COLORMAPS, colorize

from .colorbar import ColorBar

__all__ = ["ImageView", "ColorBar", "MODES"]

MODES = ("overlay", "heatmap", "original", "side")
PLACEHOLDER = "Drop images here or use File → Open Images…"
_MIN_ZOOM, _MAX_ZOOM = 0.01, 64.0
# Colourised maps per (level, colormap); a full-size one of a 12-megapixel image weighs 48 MB.
_COLOR_CACHE = 3
# Smaller images are always composited at full size: that costs under ~3 ms.
_LEVEL_MIN_PIXELS = 1 << 20
# Reduced levels stop before their longest side drops below this.
_LEVEL_MIN_SIDE = 256


def _to_bgrx(rgb: np.ndarray) -> np.ndarray:
    """RGB → the byte order of QImage.Format_RGB32 on little-endian machines (B, G, R, 255).

    Qt keeps RGB32 pixmaps as they are, so showing a blended frame costs no conversion; with
    RGB888 QPixmap.fromImage spent ~23 ms converting a 4000×3000 frame, half the 50 ms budget.
    """
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA)


def _from_bgrx(bgrx: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(bgrx, cv2.COLOR_BGRA2RGB)


def _halve(array: np.ndarray) -> np.ndarray:
    """Half the size by 2×2 averaging; an odd last row/column is dropped.

    The crop keeps OpenCV's exact-factor INTER_AREA path: 0.3 ms for a 12-megapixel map,
    against 12 ms when the factor is not an integer.
    """
    h, w = array.shape[:2]
    return cv2.resize(array[: h - h % 2, : w - w % 2], (w // 2, h // 2), interpolation=cv2.INTER_AREA)


class ImageView(QGraphicsView):
    """Shows an image with its Grad-CAM map (objectName "imageView").

    Data: ``set_image(rgb)`` (HxWx3 uint8; clears the map, because a map never belongs to
    another image), ``set_map(display)`` (HxW at the image's size: float in [0, 1], or uint8
    0..255 as the worker sends it; None to clear), ``set_alpha(alpha)`` (0..1), ``set_colormap(name)`` (a key of core.overlay.COLORMAPS),
    ``set_mode(mode)`` with ``mode`` in ``MODES``: "overlay", "heatmap", "original" or "side"
    (original left, overlay right); without a map every mode shows the plain image.
    ``clear()`` shows the placeholder text again.  Getters: ``alpha()``, ``colormap()``,
    ``mode()``, ``has_image()``; ``set_placeholder_text(text)``.

    Zoom: ``fit_to_window()``, ``actual_size()`` (1:1), ``zoom_by(factor)``, ``zoom() -> float``;
    Ctrl+wheel zooms about the pointer, dragging pans.  The view fits the image to the window on
    the first image, on images of a new size and on resize, until the user zooms.

    Output: ``composited() -> np.ndarray`` (HxWx3 uint8 RGB copy of what is shown, at the
    image's full size; side by side is one array with a white gap), ``displayed_qimage() ->
    QImage`` (an owning copy).

    Signal ``valueHovered(int, int, float)``: image x, y under the pointer and the map value
    there (-1.0 without a map); (-1, -1, -1.0) once when the pointer leaves the image.

    Compositing is for the screen: an image over ``_LEVEL_MIN_PIXELS`` is shown at a reduced
    *level* (1/2, 1/4, … of its size, 2×2-averaged) as long as one level pixel covers at least
    one device pixel, so a 12-megapixel photo fitted to the window composites ~0.75 megapixels
    instead of 12 (per map ~35 ms → ~2 ms).  Zooming past a level switches to the next finer
    one; from 1:1 on (and whenever the level would be magnified) the full-size composite is
    shown, so true pixels are never softened.  The scene stays in full-image pixels (the items
    scale the level up), so hovering and zoom are unaffected; ``composited()`` always builds the
    full-size overlay.

    Alpha and colormap changes never recompute the map: the colourised map is cached per
    (level, colormap), and an alpha change is one ``cv2.addWeighted``, the same arithmetic as
    ``core.overlay.blend`` (a test holds them equal).  The view accepts no drops itself, so
    drops reach the window.
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
        self._rgb: np.ndarray | None = None
        self._values: np.ndarray | None = None  # the map at full size, read by the hover readout
        # Per level (1 = full size, 2 = half, …), filled on demand: RGB, BGRX and the 0..255 map.
        self._rgb_levels: dict[int, np.ndarray] = {}
        self._bgrx_levels: dict[int, np.ndarray] = {}
        self._map_levels: dict[int, np.ndarray] = {}
        self._colors: OrderedDict[tuple[int, str], np.ndarray] = OrderedDict()
        self._level = 1  # the level on screen
        self._alpha = 0.5
        self._colormap = "jet"
        self._mode = "overlay"
        self._auto_fit = True
        self._hover_inside = False
        self._placeholder = PLACEHOLDER
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
        rgb = np.asarray(rgb)
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.size == 0:
            raise ValueError(f"expected an HxWx3 uint8 image, got {rgb.dtype} {rgb.shape}")
        if self._rgb is None or self._rgb.shape != rgb.shape:
            self._auto_fit = True  # same size keeps the zoom, so a set of images can be compared
        self._rgb = np.ascontiguousarray(rgb)
        self._rgb_levels = {1: self._rgb}
        self._bgrx_levels = {}
        self._clear_map()
        self._render()

    def set_map(self, display: np.ndarray | None) -> None:
        """Overlay ``display`` (HxW at the image's size: float [0, 1] or uint8 0..255); None removes it."""
        if display is None:
            self._clear_map()
            self._render()
            return
        if self._rgb is None:
            raise ValueError("set_image before set_map")
        d = np.asarray(display)
        if d.shape != self._rgb.shape[:2]:
            raise ValueError(f"map {d.shape} does not match the image {self._rgb.shape[:2]}")
        if d.dtype == np.uint8:
            # The worker's maps are read-only (shared with its cache): kept as they are. Anything
            # writable is copied, because the caller may reuse its array.
            quantized = d if not d.flags.writeable else d.copy()
            values = quantized
        else:
            values = np.clip(d.astype(np.float32, copy=False), 0.0, 1.0)  # a copy, as above
            if np.isnan(values).any():  # checked first: nan_to_num on 12 Mpx costs ~20 ms every time
                np.nan_to_num(values, copy=False, nan=0.0)
            # Quantised once, as core.overlay does it, so colormap switches skip the float pass.
            quantized = cv2.convertScaleAbs(values, alpha=255.0)
        self._values = values
        self._map_levels = {1: quantized}
        self._colors.clear()
        self._render()

    def clear(self) -> None:
        """No image: the placeholder text shows."""
        self._rgb = None
        self._rgb_levels, self._bgrx_levels = {}, {}
        self._clear_map()
        self._auto_fit = True
        self._render()

    def _clear_map(self) -> None:
        self._values = None
        self._map_levels = {}
        self._colors.clear()

    def set_alpha(self, alpha: float) -> None:
        """Map opacity, 0 (image only) … 1 (map only)."""
        alpha = min(max(float(alpha), 0.0), 1.0)
        if alpha == self._alpha:
            return
        self._alpha = alpha
        if self._values is not None and self._mode in ("overlay", "side"):
            self._show_level(self._wanted_level())

    def alpha(self) -> float:
        """The map opacity."""
        return self._alpha

    def set_colormap(self, name: str) -> None:
        """Colour the map with ``name`` (see core.overlay.COLORMAPS)."""
        if name not in COLORMAPS:
            raise ValueError(f"Unknown colormap {name!r}; choose one of: {', '.join(COLORMAPS)}.")
        if name == self._colormap:
            return
        self._colormap = name
        if self._values is not None and self._mode != "original":
            self._show_level(self._wanted_level())

    def colormap(self) -> str:
        """The colormap name."""
        return self._colormap

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
        return self._rgb is not None

    def set_placeholder_text(self, text: str) -> None:
        """The text shown while there is no image."""
        self._placeholder = text
        self.viewport().update()

    # -- compositing ---------------------------------------------------------------------------
    def _wanted_level(self) -> int:
        """The coarsest level whose pixels are not magnified on screen at the current zoom."""
        if self._rgb is None:
            return 1
        h, w = self._rgb.shape[:2]
        if h * w < _LEVEL_MIN_PIXELS:
            return 1
        device = self.zoom() * self.devicePixelRatioF()  # device pixels per image pixel
        level = 1
        while device * level * 2 <= 1.0 and max(h, w) // (level * 2) >= _LEVEL_MIN_SIDE:
            level *= 2
        return level

    def _level_rgb(self, level: int) -> np.ndarray:
        array = self._rgb_levels.get(level)
        if array is None:
            array = self._rgb_levels[level] = _halve(self._level_rgb(level // 2))
        return array

    def _level_bgrx(self, level: int) -> np.ndarray:
        array = self._bgrx_levels.get(level)
        if array is None:
            array = self._bgrx_levels[level] = _to_bgrx(self._level_rgb(level))
        return array

    def _level_map(self, level: int) -> np.ndarray:
        array = self._map_levels.get(level)
        if array is None:
            array = self._map_levels[level] = _halve(self._level_map(level // 2))
        return array

    def _color(self, level: int) -> np.ndarray:
        key = (level, self._colormap)
        cached = self._colors.get(key)
        if cached is None:
            cached = _to_bgrx(colorize(self._level_map(level), self._colormap))
            self._colors[key] = cached
            while len(self._colors) > _COLOR_CACHE:
                self._colors.popitem(last=False)
        else:
            self._colors.move_to_end(key)
        return cached

    def _overlay(self, level: int) -> np.ndarray:
        """(1 - alpha) * image + alpha * colour, exactly core.overlay.blend, in BGRX."""
        if self._values is None or self._alpha == 0.0:
            return self._level_bgrx(level)
        if self._alpha == 1.0:
            return self._color(level)
        return cv2.addWeighted(self._level_bgrx(level), 1.0 - self._alpha, self._color(level), self._alpha, 0.0)

    def _frames(self, level: int) -> tuple[np.ndarray, ...]:
        """The BGRX arrays shown at ``level``, left to right."""
        if self._rgb is None:
            return ()
        if self._mode == "original" or self._values is None and self._mode != "side":
            return (self._level_bgrx(level),)
        if self._mode == "heatmap":
            return (self._color(level),)
        if self._mode == "side":
            return self._level_bgrx(level), self._overlay(level)
        return (self._overlay(level),)

    def _gap(self) -> int:
        return max(4, round(0.02 * self._rgb.shape[1])) if self._rgb is not None else 0

    def _render(self) -> None:
        """Scene size, fit (if fitting) and pixels, after the image, map or mode changed."""
        if self._rgb is None:
            rect = QRectF()
        else:
            h, w = self._rgb.shape[:2]
            rect = QRectF(0, 0, 2 * w + self._gap() if self._mode == "side" else w, h)
        self._scene.setSceneRect(rect)
        self.setSceneRect(rect)
        if self._auto_fit and self._rgb is not None:
            self.fitInView(rect, Qt.AspectRatioMode.KeepAspectRatio)
        self._show_level(self._wanted_level())

    def _show_level(self, level: int) -> None:
        """Composite at ``level`` and hand the pixels to the items (scaled back to image size)."""
        frames = self._frames(level)
        for item, frame in zip((self._left, self._right), frames + (None,) * (2 - len(frames))):
            if frame is None:
                item.setPixmap(QPixmap())
                item.hide()
                continue
            h, w = frame.shape[:2]
            # No copy: Qt keeps RGB32 as is and shares the buffer, so later writes to it would show
            # on screen: cached frames are never written in place, and _keep holds them alive.
            item.setPixmap(QPixmap.fromImage(QImage(frame.data, w, h, 4 * w, QImage.Format.Format_RGB32)))
            full_h, full_w = self._rgb.shape[:2]
            item.setTransform(QTransform.fromScale(full_w / w, full_h / h))
            item.show()
        self._keep = frames
        self._level = level
        self._right.setPos(self._rgb.shape[1] + self._gap() if self._rgb is not None else 0, 0)
        self._update_smoothing()
        self.viewport().update()

    def _sync_level(self) -> None:
        """After a zoom: switch to the level the new zoom wants, if it differs."""
        level = self._wanted_level()
        if level != self._level:
            self._show_level(level)

    def composited(self) -> np.ndarray:
        """What the view shows, at full size, as HxWx3 uint8 RGB (side by side: one array, white gap)."""
        frames = self._frames(1)
        if not frames:
            raise ValueError("no image")
        parts = [_from_bgrx(f) for f in frames]
        if len(parts) == 2:
            gap = np.full((parts[0].shape[0], self._gap(), 3), 255, np.uint8)
            return np.concatenate([parts[0], gap, parts[1]], axis=1)
        return parts[0]

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
        if self._rgb is not None:
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
        if self._rgb is None:
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
    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            steps = event.angleDelta().y() / 120.0
            if steps:
                self._scale_to(self.zoom() * 1.25 ** steps, event.position())
            event.accept()
            return
        super().wheelEvent(event)

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802
        super().resizeEvent(event)
        if self._auto_fit:
            self.fit_to_window()

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802
        super().showEvent(event)
        if self._auto_fit:
            self.fit_to_window()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:  # noqa: N802
        super().mouseMoveEvent(event)
        self._report_hover(self.mapToScene(event.position().toPoint()))

    def leaveEvent(self, event: QEvent) -> None:  # noqa: N802
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
        if self._values is not None:
            value = float(self._values[y, x])
            if self._values.dtype == np.uint8:
                value /= 255.0
        self.valueHovered.emit(x, y, value)

    def _pixel_at(self, scene_pos: QPointF) -> tuple[int, int] | None:
        """Image pixel (x, y) under a scene point, in either half of side by side."""
        if self._rgb is None:
            return None
        h, w = self._rgb.shape[:2]
        for item in (self._left, self._right):
            if item.isVisible():
                local = scene_pos - item.pos()
                x, y = int(np.floor(local.x())), int(np.floor(local.y()))
                if 0 <= x < w and 0 <= y < h:
                    return x, y
        return None

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802
        super().paintEvent(event)
        if self._rgb is None:
            painter = QPainter(self.viewport())
            painter.setPen(self.palette().color(QPalette.ColorRole.PlaceholderText))
            font = painter.font()
            font.setPointSizeF(font.pointSizeF() * 1.3)
            painter.setFont(font)
            painter.drawText(self.viewport().rect().adjusted(20, 20, -20, -20),
                             Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self._placeholder)
            painter.end()

"""The image view's pixels without Qt: pyramid levels of the image and its map, blended into BGRX.

``Compositor`` holds the picture, its display map, the opacity and the colormap, and returns
the frames a view mode shows at a given *level* (1 = full size, 2 = half, 4 = quarter, …) as
BGRX arrays, the byte order of ``QImage.Format_RGB32``, which Qt shows without converting.
It is pure NumPy/OpenCV so the arithmetic can be tested and timed without a widget, and so
image_view.py holds only the QGraphicsView (zoom, pan, hover, placeholder).

Compositing is for the screen: an image over ``_LEVEL_MIN_PIXELS`` is shown at a reduced level
(2×2-averaged) as long as one level pixel covers at least one device pixel, so a 12-megapixel
photo fitted to the window composites ~0.75 megapixels instead of 12 (per map ~35 ms → ~2 ms).
``composited()`` always builds the full-size picture. Alpha and colormap changes never recompute
the map: the colourised map is cached per (level, colormap), and an alpha change is one
``cv2.addWeighted``, the same arithmetic as ``core.overlay.blend`` (a test holds them equal).
"""

from __future__ import annotations

from collections import OrderedDict

import cv2
import numpy as np

from gradcam_desktop.core.overlay import colorize

__all__ = ["MODES", "Compositor"]

MODES = ("overlay", "heatmap", "original", "side")
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


class Compositor:
    """An image, its display map, ``alpha`` and ``colormap``, composited per level and mode.

    ``rgb`` is the image (HxWx3 uint8) or None, ``values`` the map at full size as given (uint8
    0..255 or float [0, 1]) or None; both are read-only for callers. ``alpha`` (0..1) and
    ``colormap`` (a key of core.overlay.COLORMAPS) are plain attributes, checked by the view.
    Frames returned are cached or fresh arrays that are never written in place afterwards, so a
    QImage may share their buffers.
    """

    def __init__(self) -> None:
        self.rgb: np.ndarray | None = None
        self.values: np.ndarray | None = None
        self.alpha = 0.5
        self.colormap = "jet"
        # Per level (1 = full size, 2 = half, …), filled on demand: RGB, BGRX and the 0..255 map.
        self._rgb_levels: dict[int, np.ndarray] = {}
        self._bgrx_levels: dict[int, np.ndarray] = {}
        self._map_levels: dict[int, np.ndarray] = {}
        self._colors: OrderedDict[tuple[int, str], np.ndarray] = OrderedDict()

    # -- data ----------------------------------------------------------------------------------
    def set_image(self, rgb: np.ndarray) -> None:
        """Use ``rgb`` (HxWx3 uint8) and drop the map, which belonged to the previous image."""
        rgb = np.asarray(rgb)
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.size == 0:
            raise ValueError(f"expected an HxWx3 uint8 image, got {rgb.dtype} {rgb.shape}")
        self.rgb = np.ascontiguousarray(rgb)
        self._rgb_levels = {1: self.rgb}
        self._bgrx_levels = {}
        self.clear_map()

    def set_map(self, display: np.ndarray) -> None:
        """Use ``display`` (HxW at the image's size: float [0, 1] or uint8 0..255)."""
        if self.rgb is None:
            raise ValueError("set_image before set_map")
        d = np.asarray(display)
        if d.shape != self.rgb.shape[:2]:
            raise ValueError(f"map {d.shape} does not match the image {self.rgb.shape[:2]}")
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
        self.values = values
        self._map_levels = {1: quantized}
        self._colors.clear()

    def clear(self) -> None:
        """No image, no map."""
        self.rgb = None
        self._rgb_levels, self._bgrx_levels = {}, {}
        self.clear_map()

    def clear_map(self) -> None:
        """No map: every mode shows the plain image (side by side shows it twice)."""
        self.values = None
        self._map_levels = {}
        self._colors.clear()

    # -- levels --------------------------------------------------------------------------------
    def level_for(self, device_scale: float) -> int:
        """The coarsest level whose pixels are not magnified at ``device_scale`` device px per image px."""
        if self.rgb is None:
            return 1
        h, w = self.rgb.shape[:2]
        if h * w < _LEVEL_MIN_PIXELS:
            return 1
        level = 1
        while device_scale * level * 2 <= 1.0 and max(h, w) // (level * 2) >= _LEVEL_MIN_SIDE:
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
        key = (level, self.colormap)
        cached = self._colors.get(key)
        if cached is None:
            cached = _to_bgrx(colorize(self._level_map(level), self.colormap))
            self._colors[key] = cached
            while len(self._colors) > _COLOR_CACHE:
                self._colors.popitem(last=False)
        else:
            self._colors.move_to_end(key)
        return cached

    # -- frames --------------------------------------------------------------------------------
    def _overlay(self, level: int) -> np.ndarray:
        """(1 - alpha) * image + alpha * colour, exactly core.overlay.blend, in BGRX."""
        if self.values is None or self.alpha == 0.0:
            return self._level_bgrx(level)
        if self.alpha == 1.0:
            return self._color(level)
        return cv2.addWeighted(self._level_bgrx(level), 1.0 - self.alpha, self._color(level), self.alpha, 0.0)

    def frames(self, level: int, mode: str) -> tuple[np.ndarray, ...]:
        """The BGRX arrays ``mode`` shows at ``level``, left to right (none without an image)."""
        if self.rgb is None:
            return ()
        if mode == "original" or self.values is None and mode != "side":
            return (self._level_bgrx(level),)
        if mode == "heatmap":
            return (self._color(level),)
        if mode == "side":
            return self._level_bgrx(level), self._overlay(level)
        return (self._overlay(level),)

    def gap(self) -> int:
        """Image pixels between the two halves of side by side."""
        return max(4, round(0.02 * self.rgb.shape[1])) if self.rgb is not None else 0

    def composited(self, mode: str) -> np.ndarray:
        """What ``mode`` shows, at full size, as HxWx3 uint8 RGB (side by side: one array, white gap)."""
        frames = self.frames(1, mode)
        if not frames:
            raise ValueError("no image")
        parts = [_from_bgrx(f) for f in frames]
        if len(parts) == 2:
            gap = np.full((parts[0].shape[0], self.gap(), 3), 255, np.uint8)
            return np.concatenate([parts[0], gap, parts[1]], axis=1)
        return parts[0]

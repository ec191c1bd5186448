"""Synthetic "shapes on clutter" images with ground-truth masks for the offline demo model.

Every image holds one filled shape (or, for scenes, several shapes of different classes) of a
random colour, size, rotation and position on a busy background: colour gradients, smooth and
fine noise, stripes, lines, scribbles, open arcs and irregular splotches.  The clutter never
contains the class shapes, and colours are random for objects and clutter alike, so the only
cue a classifier can use is the outline of the object — which is what makes Grad-CAM maps
checkable against the masks.

NumPy + OpenCV only (no TensorFlow, no Qt), so tests and tools can import it cheaply.
"""

from __future__ import annotations

import numpy as np
import cv2

CLASS_NAMES: tuple[str, ...] = ("circle", "square", "triangle", "star")

# Object radius as a fraction of the image's shorter side (single object / multi-object scene).
_RADIUS_RANGE = (0.09, 0.30)
_SCENE_RADIUS_RANGE = (0.12, 0.20)
# Anisotropic stretch so the model tolerates the squash an app applies when it resizes a
# non-square photo to the square model input (480×360 → 128×128 is a factor of 0.75).
_STRETCH_RANGE = (0.72, 1.38)
_SUBPIXEL_SHIFT = 4  # cv2 fixed-point bits: smooth outlines at any size
_MIN_COLOUR_DISTANCE = 110.0  # Euclidean RGB distance between object and its surroundings

Size = int | tuple[int, int]


def _hw(size: Size) -> tuple[int, int]:
    """(height, width) from an int or a (height, width) pair."""
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    h, w = size
    return int(h), int(w)


def _class_index(cls: int | str) -> int:
    if isinstance(cls, str):
        return CLASS_NAMES.index(cls)
    if not 0 <= int(cls) < len(CLASS_NAMES):
        raise ValueError(f"class index {cls} out of range 0..{len(CLASS_NAMES) - 1}")
    return int(cls)


def _unit_outline(cls: int, rng: np.random.Generator) -> np.ndarray:
    """Outline of a class shape centred on 0 with circumradius ≈ 1, as (N, 2) float x, y."""
    name = CLASS_NAMES[cls]
    if name == "circle":
        t = np.linspace(0.0, 2.0 * np.pi, 72, endpoint=False)
        return np.stack([np.cos(t), np.sin(t)], axis=1)
    if name == "square":
        # Circumradius 1 would make squares look bigger than circles; 0.9 balances the areas.
        t = np.pi / 4 + np.arange(4) * np.pi / 2
        return 0.9 * np.stack([np.cos(t), np.sin(t)], axis=1)
    if name == "triangle":
        # Mildly irregular triangles: a vertex jitter of ±12° keeps them clearly triangular.
        t = -np.pi / 2 + np.arange(3) * 2 * np.pi / 3 + rng.uniform(-0.2, 0.2, 3)
        return np.stack([np.cos(t), np.sin(t)], axis=1)
    if name == "star":
        t = -np.pi / 2 + np.arange(10) * np.pi / 5
        radius = np.where(np.arange(10) % 2 == 0, 1.0, rng.uniform(0.38, 0.5))
        return np.stack([radius * np.cos(t), radius * np.sin(t)], axis=1)
    raise AssertionError(name)


def _shape_points(cls: int, rng: np.random.Generator, centre: tuple[float, float], radius: float,
                  stretch: tuple[float, float]) -> np.ndarray:
    """Pixel-space polygon: unit outline → random rotation → anisotropic stretch → position."""
    pts = _unit_outline(cls, rng)
    a = rng.uniform(0.0, 2.0 * np.pi)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    pts = pts @ rot.T * radius * np.asarray(stretch)
    return pts + np.asarray(centre)


def _fill(canvas: np.ndarray, pts: np.ndarray, colour, antialias: bool) -> None:
    fixed = np.round(pts * (1 << _SUBPIXEL_SHIFT)).astype(np.int32)[None]
    line = cv2.LINE_AA if antialias else cv2.LINE_8
    cv2.fillPoly(canvas, list(fixed), colour, lineType=line, shift=_SUBPIXEL_SHIFT)


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, 3).astype(np.float64)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int, channels: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1]: a coarse random grid upsampled with bicubic interpolation."""
    gh = max(2, round(cells * h / max(h, w)))
    gw = max(2, round(cells * w / max(h, w)))
    grid = rng.uniform(-1.0, 1.0, (gh, gw, channels)).astype(np.float32)
    out = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
    return out.reshape(h, w, channels)


def _is_ragged(contour: np.ndarray, min_area: float) -> bool:
    """Big enough and clearly non-convex (area / convex hull area below 0.8)."""
    area = cv2.contourArea(contour)
    hull = cv2.contourArea(cv2.convexHull(contour))
    return area >= min_area and hull > 0 and area / hull < 0.8


def _background(rng: np.random.Generator, h: int, w: int, clutter: float = 1.0) -> np.ndarray:
    """Float32 HxWx3 clutter in 0..255 without any of the class shapes.

    ``clutter`` in [0, 1] scales texture strength and the number of distractors (1 = full).
    """
    scale = min(h, w) / 128.0
    # Linear gradient between two random colours in a random direction.
    c0, c1 = _random_colour(rng), _random_colour(rng)
    a = rng.uniform(0.0, 2.0 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    proj = (xx * np.cos(a) + yy * np.sin(a))
    proj = (proj - proj.min()) / max(float(np.ptp(proj)), 1e-6)
    img = c0 + proj[..., None] * (c1 - c0)
    # Smooth colour blotches plus per-pixel grain.
    img += _smooth_noise(rng, h, w, int(rng.integers(3, 10)), 3) * rng.uniform(10, 50) * clutter
    img += rng.normal(0.0, rng.uniform(2, 14), (h, w, 3))
    # Occasional stripes (texture with strong straight edges that are not shapes).
    if rng.random() < 0.35 * clutter:
        period = rng.uniform(6, 24) * scale
        b = rng.uniform(0.0, np.pi)
        wave = np.sin((xx * np.cos(b) + yy * np.sin(b)) * 2 * np.pi / period)
        img += (wave > 0)[..., None] * (_random_colour(rng) - 128) * rng.uniform(0.15, 0.4)
    img = np.clip(img, 0, 255)

    canvas = img.astype(np.uint8)
    for _ in range(round(int(rng.integers(3, 11)) * clutter)):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        kind = rng.choice(["line", "scribble", "arc", "splotch"], p=[0.35, 0.25, 0.2, 0.2])
        if kind == "line":
            p0 = (int(rng.integers(-w // 4, w + w // 4)), int(rng.integers(-h // 4, h + h // 4)))
            p1 = (int(rng.integers(-w // 4, w + w // 4)), int(rng.integers(-h // 4, h + h // 4)))
            cv2.line(canvas, p0, p1, colour, max(1, round(rng.integers(1, 5) * scale)), cv2.LINE_AA)
        elif kind == "scribble":
            # A random walk: wiggly open polyline, never closed into a polygon.
            n = int(rng.integers(3, 8))
            start = rng.uniform([0, 0], [w, h])
            steps = rng.normal(0, 18 * scale, (n, 2))
            pts = (start + np.cumsum(steps, axis=0)).astype(np.int32)
            cv2.polylines(canvas, [pts], False, colour, max(1, round(rng.integers(1, 4) * scale)),
                          cv2.LINE_AA)
        elif kind == "arc":
            # Open arcs (≤ 200°) so they never read as circles.
            centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            axes = (int(rng.uniform(8, 50) * scale), int(rng.uniform(8, 50) * scale))
            first = float(rng.uniform(0, 360))
            cv2.ellipse(canvas, centre, axes, float(rng.uniform(0, 180)), first,
                        first + float(rng.uniform(30, 200)), colour,
                        max(1, round(rng.integers(1, 4) * scale)), cv2.LINE_AA)
        else:
            # Irregular splotch: noise thresholded inside a random window.  Only clearly
            # non-convex pieces are kept, so no splotch reads as a dot ("circle") or a polygon.
            blob = _smooth_noise(rng, h, w, int(rng.integers(10, 20)), 1)[..., 0]
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            win = np.exp(-(((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (rng.uniform(8, 22) * scale) ** 2)))
            sel = (blob * win > rng.uniform(0.15, 0.35)).astype(np.uint8)
            contours, _ = cv2.findContours(sel, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            keep = [c for c in contours if _is_ragged(c, 60 * scale * scale)]
            if keep:
                cv2.drawContours(canvas, keep, -1, colour, thickness=cv2.FILLED, lineType=cv2.LINE_AA)
    return canvas.astype(np.float32)


def _place(rng: np.random.Generator, h: int, w: int, radius_range: tuple[float, float],
           stretch_jitter: bool) -> tuple[tuple[float, float], float, tuple[float, float]]:
    """Random centre, radius and stretch with the whole shape inside the image."""
    r = rng.uniform(*radius_range) * min(h, w)
    if stretch_jitter:
        s = np.exp(rng.uniform(np.log(_STRETCH_RANGE[0]), np.log(_STRETCH_RANGE[1])))
        stretch = (float(np.sqrt(s)), float(1 / np.sqrt(s)))
    else:
        stretch = (1.0, 1.0)
    # The stretch is applied after the rotation (along image axes), so these bound the shape.
    ext_x = min(r * stretch[0] + 2, w / 2 - 1)
    ext_y = min(r * stretch[1] + 2, h / 2 - 1)
    centre = (rng.uniform(ext_x, w - ext_x), rng.uniform(ext_y, h - ext_y))
    return centre, float(r), stretch


def _draw_object(rng: np.random.Generator, img: np.ndarray, cls: int, pts: np.ndarray) -> np.ndarray:
    """Fill the shape in a colour that stands out from what lies under it; return its mask."""
    h, w = img.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    _fill(mask, pts, 1, antialias=False)
    under = img[mask.astype(bool)].mean(axis=0) if mask.any() else np.full(3, 128.0)
    colour = _random_colour(rng)
    for _ in range(30):  # random colours, but never camouflaged (else the label is unlearnable)
        if np.linalg.norm(colour - under) >= _MIN_COLOUR_DISTANCE:
            break
        colour = _random_colour(rng)
    layer = np.zeros((h, w, 3), np.uint8)
    alpha = np.zeros((h, w), np.uint8)
    _fill(layer, pts, tuple(int(c) for c in colour), antialias=True)
    _fill(alpha, pts, 255, antialias=True)
    a = (alpha.astype(np.float32) / 255.0)[..., None]
    # A little texture on the object too, so "perfectly flat" is not the cue.
    tex = _smooth_noise(rng, h, w, 8, 3) * rng.uniform(0, 20)
    img[:] = img * (1 - a) + (layer.astype(np.float32) + tex) * a
    return mask.astype(bool)


def _finish(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Occluding strokes over everything, sensor noise, optional blur → uint8 RGB."""
    h, w = img.shape[:2]
    scale = min(h, w) / 128.0
    canvas = np.clip(img, 0, 255).astype(np.uint8)
    if rng.random() < 0.3:
        for _ in range(int(rng.integers(1, 3))):
            colour = tuple(int(v) for v in rng.integers(0, 256, 3))
            p0 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            cv2.line(canvas, p0, p1, colour, max(1, round(scale)), cv2.LINE_AA)
    out = canvas.astype(np.float32) + rng.normal(0, rng.uniform(0, 6), canvas.shape)
    if rng.random() < 0.25:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.5, 1.2) * scale)
    return np.clip(out, 0, 255).astype(np.uint8)


def make_sample(rng: np.random.Generator, size: Size = 128, cls: int | str | None = None, *,
                stretch_jitter: bool = True, clutter: float = 1.0) -> tuple[np.ndarray, int, np.ndarray]:
    """One image with one object.

    Returns (rgb HxWx3 uint8, class index, mask HxW bool).  ``size`` is an int or (height, width);
    ``stretch_jitter=False`` draws undistorted shapes (for pictures shown to people);
    ``clutter`` < 1 gives easier backgrounds (training curriculum).
    """
    h, w = _hw(size)
    k = int(rng.integers(len(CLASS_NAMES))) if cls is None else _class_index(cls)
    img = _background(rng, h, w, clutter)
    centre, r, stretch = _place(rng, h, w, _RADIUS_RANGE, stretch_jitter)
    mask = _draw_object(rng, img, k, _shape_points(k, rng, centre, r, stretch))
    return _finish(rng, img), k, mask


def make_scene(rng: np.random.Generator, classes: list[int | str], size: Size = 128, *,
               stretch_jitter: bool = True) -> tuple[np.ndarray, list[int], list[np.ndarray]]:
    """One image with one object per entry of ``classes``, not touching each other.

    Returns (rgb, class indices, masks) with one bool mask per object.
    """
    h, w = _hw(size)
    ks = [_class_index(c) for c in classes]
    img = _background(rng, h, w)
    gap = max(3, round(0.04 * min(h, w)))
    occupied = np.zeros((h, w), np.uint8)
    masks: list[np.ndarray] = []
    for k in ks:
        for _ in range(200):
            centre, r, stretch = _place(rng, h, w, _SCENE_RADIUS_RANGE, stretch_jitter)
            pts = _shape_points(k, rng, centre, r, stretch)
            trial = np.zeros((h, w), np.uint8)
            _fill(trial, pts, 1, antialias=False)
            grown = np.asarray(cv2.dilate(trial, np.ones((2 * gap + 1,) * 2, np.uint8)), np.uint8)
            if not (grown & occupied).any():
                break
        else:
            raise ValueError(f"could not fit {len(ks)} objects into a {w}x{h} image")
        masks.append(_draw_object(rng, img, k, pts))
        occupied |= masks[-1].astype(np.uint8)
    return _finish(rng, img), ks, masks


def make_dataset(n: int, seed: int, size: Size = 128, clutter: tuple[float, float] = (1.0, 1.0)
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` single-object samples with balanced classes, reproducible from ``seed``.

    Each sample's clutter level is drawn uniformly from the ``clutter`` range (default: full).

    Returns (images NxHxWx3 uint8, labels N int64, masks NxHxW bool).
    """
    rng = np.random.default_rng(seed)
    h, w = _hw(size)
    labels = rng.permutation(np.arange(n) % len(CLASS_NAMES)).astype(np.int64)
    images = np.empty((n, h, w, 3), np.uint8)
    masks = np.empty((n, h, w), bool)
    for i, k in enumerate(labels):
        level = float(rng.uniform(*clutter))
        images[i], _, masks[i] = make_sample(rng, (h, w), int(k), clutter=level)
    return images, labels, masks


def dilate_mask(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Grow a bool mask by ``pixels`` (the tolerance used when checking where a map peaks)."""
    if pixels <= 0:
        return mask.copy()
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * pixels + 1, 2 * pixels + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)


def bounding_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of a bool mask, x1/y1 exclusive."""
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1

"""Where the object is: the share of a map's energy that falls on the object.

**Inside share** = the map's energy inside the object / its total energy — the energy-based
pointing game of Wang et al. (2020, "Score-CAM: Score-weighted visual explanations for
convolutional neural networks", CVPR workshops; its localisation evaluation: the share of the
saliency map's energy that falls into the object's bounding box). Energy is the sum of the map's non-negative
values over the picture's pixels, the map taken as the overlay shows it (``overlay.display_map``):
NaN/inf and negative values count as 0, and the map is upsampled bilinearly
(``cv2.resize(..., (width, height), INTER_LINEAR)``) to the picture's size. display_map's
scaling by the maximum cancels in the ratio, and its "flat" rule does not apply: a uniform map has
energy everywhere and an inside share equal to the object's share of the picture. A map without
energy has no inside share: **NaN** (never 0, which would read "it looked only elsewhere").
1.0 = every bit of evidence on the object; the object's area fraction is what a map that
ignores the object scores on average.

The object, as a boolean mask of the picture's size (True = object), comes from:

* ``mask_from_png``: a PNG (any image Pillow reads) where a non-zero pixel is object — a pixel
  is non-zero when any of its colour channels is (alpha is ignored: a transparent background
  painted white is still background; palette images are read by index, as segmentation masks
  store classes). EXIF orientation is applied as it is to pictures. A mask of another size with
  the picture's shape (its height at the picture's width within one pixel) is resized with nearest
  neighbour (``cv2.INTER_NEAREST_EXACT``: drawn on a scaled copy of the picture, it still fits); a
  mask of another shape is refused, one line: it belongs to another picture.
  ``masks_dir_lookup(folder, stem)`` finds ``<stem>.png``.
* ``boxes_from_csv``: ``path,x0,y0,x1,y1`` rows (a header row is optional) in picture pixels,
  several rows per picture allowed; relative paths are relative to the CSV's folder (as in
  labels.py). A box covers the pixels whose centres lie in [x0, x1) × [y0, y1): integer
  coordinates give the columns x0..x1−1 and rows y0..y1−1, as numpy slices do. ``mask_from_boxes``
  clips boxes to the picture. The file is read as labels.py reads a labels CSV: line by line, at
  most ``labels.MAX_LINE`` characters a line and ``MAX_BOXES`` boxes, so that a hostile file is
  refused before it is read into memory; a bad row is one line naming the file and the line.
* the boxes the user drew on the picture in the window, saved beside it as
  ``<picture name>.object.json`` (core/object_sidecar.py): used when neither of the above names
  the picture.

Errors are ``MaskError`` (a ``LabelError``: user data about pictures that could not be used), one
plain line each.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

from .errors import ImageLoadError, LabelError
from .images import MAX_DECODED_BYTES, MAX_PIXELS, decode_bytes, read_picture_file
from .labels import HEADER_WORDS, MAX_LINE, shown_path
from .object_sidecar import read_boxes

__all__ = ["MAX_BOXES", "Box", "MaskError", "box_key", "boxes_from_csv", "energy_map", "inside_share",
           "mask_from_boxes", "mask_from_png", "masks_dir_lookup", "object_mask"]

#: Boxes one CSV may hold (rows): a million boxes are a few hundred MB of Python objects at most.
MAX_BOXES = 1_000_000

#: A box (x0, y0, x1, y1) in picture pixels, x1 and y1 exclusive.
Box = tuple[float, float, float, float]


class MaskError(LabelError):
    """An object mask or a boxes CSV could not be read, or does not fit its picture."""


# -------------------------------------------------------------------------------------------- the share
def _size(picture_size: Sequence[int]) -> tuple[int, int]:
    if len(picture_size) != 2 or int(picture_size[0]) <= 0 or int(picture_size[1]) <= 0:
        raise ValueError(f"picture_size must be (height, width) with positive values, got {tuple(picture_size)}")
    return int(picture_size[0]), int(picture_size[1])


def energy_map(raw_map: np.ndarray, picture_size: Sequence[int]) -> np.ndarray:
    """The map as the overlay shows it, before display scaling: (height, width) float32 ≥ 0.

    NaN/inf and negatives → 0, divided by its maximum (as display_map does, for float32's sake),
    bilinear ``cv2.resize`` to (width, height). All zero when the map has no energy.
    """
    height, width = _size(picture_size)
    m = np.asarray(raw_map)
    if m.ndim == 3 and m.shape[2] == 1:
        m = m[:, :, 0]
    if m.ndim != 2 or m.size == 0:
        raise ValueError(f"raw map must be 2-D (h, w), got shape {m.shape}")
    with np.errstate(over="ignore", invalid="ignore"):
        m = np.nan_to_num(m.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    np.maximum(m, 0.0, out=m)
    peak = float(m.max())
    if peak <= 0.0:
        return np.zeros((height, width), np.float32)
    out = (m / peak).astype(np.float32)
    if out.shape != (height, width):
        out = np.asarray(cv2.resize(out, (width, height), interpolation=cv2.INTER_LINEAR), np.float32)
    np.maximum(out, 0.0, out=out)
    return out


def inside_share(raw_map: np.ndarray, mask: np.ndarray, picture_size: Sequence[int]) -> float:
    """The share of the map's energy inside ``mask`` (bool, the picture's (height, width)): in [0, 1],
    NaN for a map without energy. A mask of another shape is a ``MaskError``."""
    height, width = _size(picture_size)
    inside = np.asarray(mask)
    if inside.shape != (height, width):
        raise MaskError(f"The object mask is {_shape(inside.shape)} pixels but the picture is {width} x {height}: "
                        "give a mask of the picture's size.")
    energy = energy_map(raw_map, (height, width))
    total = float(energy.sum(dtype=np.float64))
    if not total > 0.0:
        return math.nan
    share = float(energy[inside.astype(bool)].sum(dtype=np.float64)) / total
    return min(1.0, max(0.0, share))


def _shape(shape: tuple[int, ...]) -> str:
    return f"{shape[1]} x {shape[0]}" if len(shape) >= 2 else "x".join(str(s) for s in shape) or "a scalar"


# ----------------------------------------------------------------------------------------------- masks
def mask_from_png(path: str | os.PathLike[str], size: Sequence[int]) -> np.ndarray:
    """The object mask (bool, ``size`` = the picture's (height, width)) stored in an image file.

    Non-zero in any colour channel = object (module docstring); a mask of the picture's shape but
    another size is resized with nearest neighbour, one of another shape is a ``MaskError``. The file
    is read as pictures are (regular files only, size limits checked on the header before decoding).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    height, width = _size(size)
    label = shown_path(str(path))
    try:
        data = read_picture_file(path, label)
    except ImageLoadError as error:
        raise MaskError(f"The object mask {error}") from None
    try:
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
            if w * h > MAX_PIXELS or decode_bytes(w, h, img.mode, img.format, len(data)) > MAX_DECODED_BYTES:
                raise MaskError(f"The object mask {label} is too large to open safely ({w} x {h} pixels).")
            img.load()
            oriented = ImageOps.exif_transpose(img)
            pixels = _object_pixels(oriented)
    except MaskError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:  # Pillow's "broken file" errors
        raise MaskError(f"The object mask {label} cannot be read as an image ({error}).") from None
    return _fit(pixels, (height, width), label)


def _object_pixels(img) -> np.ndarray:
    """(h, w) bool: non-zero in any colour band (alpha ignored; palette images by index)."""
    bands = img.getbands()
    if img.mode == "P" or img.mode == "PA":
        array = np.asarray(img.getchannel(0) if img.mode == "PA" else img)
        return array != 0
    array = np.asarray(img)
    if array.ndim == 2:
        return np.nan_to_num(array) != 0 if array.dtype.kind == "f" else array != 0
    keep = [i for i, band in enumerate(bands) if band not in ("A", "a")] or list(range(array.shape[2]))
    return np.any(array[:, :, keep] != 0, axis=2)


def _fit(pixels: np.ndarray, size: tuple[int, int], label: str) -> np.ndarray:
    height, width = size
    h, w = pixels.shape
    if (h, w) == (height, width):
        return pixels.astype(bool)
    if abs(h * width / w - height) > 1.0:
        raise MaskError(f"The object mask {label} is {w} x {h} pixels but its picture is {width} x {height}: "
                        "a mask must have its picture's size or at least its shape.")
    resized = cv2.resize(pixels.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST_EXACT)
    return np.asarray(resized, bool)


def mask_from_boxes(boxes: Sequence[Box], size: Sequence[int]) -> np.ndarray:
    """The object mask (bool, (height, width)) covered by ``boxes``: pixels whose centres lie in a box,
    boxes clipped to the picture (a box wholly outside covers nothing)."""
    height, width = _size(size)
    mask = np.zeros((height, width), bool)
    for x0, y0, x1, y1 in boxes:
        c0, c1 = _span(x0, x1, width)
        r0, r1 = _span(y0, y1, height)
        if c0 < c1 and r0 < r1:
            mask[r0:r1, c0:c1] = True
    return mask


def _span(start: float, stop: float, limit: int) -> tuple[int, int]:
    """The pixels i with i + 0.5 in [start, stop), clipped to 0..limit."""
    first = math.ceil(min(max(start, -1.0), limit + 1.0) - 0.5)
    last = math.ceil(min(max(stop, -1.0), limit + 1.0) - 0.5)
    return max(0, first), min(limit, last)


def masks_dir_lookup(folder: str | os.PathLike[str], stem: str) -> Path | None:
    """``folder/<stem>.png`` when it is a file, else None (a stem naming another folder is None too)."""
    if not stem or stem in (".", "..") or "/" in stem or (os.sep in stem) or (os.altsep and os.altsep in stem):
        return None
    candidate = Path(folder) / f"{stem}.png"
    try:
        return candidate if candidate.is_file() else None
    except (OSError, ValueError):
        return None


def box_key(path: str | os.PathLike[str]) -> str:
    """How ``boxes_from_csv``'s keys name a picture: the path normalised (``os.path.normpath``)."""
    return os.path.normpath(os.fspath(path))


def object_mask(picture: str | os.PathLike[str], size: Sequence[int], *, masks_dir: str | os.PathLike[str] | None = None,
                boxes: Mapping[str, Sequence[Box]] | None = None, sidecar: bool = True) -> np.ndarray | None:
    """The object mask of ``picture``: ``<stem>.png`` in ``masks_dir`` first, else its boxes, else (``sidecar``)
    the boxes marked in the window and saved beside it (core/object_sidecar.py); None when none has it."""
    if masks_dir is not None:
        found = masks_dir_lookup(masks_dir, Path(picture).stem)
        if found is not None:
            return mask_from_png(found, size)
    if boxes is not None:
        listed = boxes.get(box_key(picture))
        if listed:
            return mask_from_boxes(listed, size)
    if sidecar:
        marked = read_boxes(picture, MaskError)
        if marked:
            return mask_from_boxes(marked, size)
    return None


# ------------------------------------------------------------------------------------------- boxes CSV
def _lines(handle, shown: str):
    """The lines of ``handle`` (opened with newline=""), each read at most ``MAX_LINE`` characters far."""
    number = 0
    while line := handle.readline(MAX_LINE + 1):
        number += 1
        if len(line) > MAX_LINE and not line.endswith(("\n", "\r")):
            raise MaskError(f"{shown}, line {number} is longer than {MAX_LINE:,} characters: give a CSV of "
                            "path,x0,y0,x1,y1, one box a line.")
        yield line


def _coordinate(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def boxes_from_csv(path: str | os.PathLike[str], *, limit: int | None = None) -> dict[str, list[Box]]:
    """The boxes of a ``path,x0,y0,x1,y1`` CSV by picture (keys: ``box_key`` of the path, relative paths
    joined to the CSV's folder), in file order. ``MaskError`` (one line, naming the line) for a row that
    is not a path and four finite numbers with x0 < x1 and y0 < y1, a line over ``MAX_LINE`` characters,
    more than ``limit`` (default ``MAX_BOXES``) boxes, or a file that cannot be read."""
    table = Path(path)
    shown = shown_path(str(table))
    limit = MAX_BOXES if limit is None else int(limit)
    try:
        handle = open(table, encoding="utf-8-sig", newline="")  # noqa: SIM115 - closed below; Excel writes a BOM
    except OSError as error:
        raise MaskError(f"{shown} cannot be read: {(error.strerror or str(error)).lower()}. Check that the file "
                        "can be opened, then try again.") from None
    folder = str(table.parent)
    found: dict[str, list[Box]] = {}
    count = 0
    first = True
    reader = csv.reader(_lines(handle, shown))
    try:
        with handle:
            for row in reader:
                cells = [cell.strip() for cell in row]
                while cells and not cells[-1]:
                    cells.pop()  # trailing empty cells (a spreadsheet's extra commas)
                if not cells:
                    continue
                numbers = [_coordinate(cell) for cell in cells[1:5]]
                if first:
                    first = False
                    if cells[0].casefold() in HEADER_WORDS and None in numbers:
                        continue
                if len(cells) != 5 or not cells[0] or None in numbers:
                    raise MaskError(f"{shown}, line {reader.line_num}: expected path,x0,y0,x1,y1 (four numbers in "
                                    f"picture pixels), got '{shown_path(','.join(row), 80)}'.")
                x0, y0, x1, y1 = [value for value in numbers if value is not None]  # all four, checked above
                if not (x0 < x1 and y0 < y1):
                    raise MaskError(f"{shown}, line {reader.line_num}: a box needs x0 < x1 and y0 < y1, got "
                                    f"{cells[1]},{cells[2]},{cells[3]},{cells[4]}.")
                count += 1
                if count > limit:
                    raise MaskError(f"{shown} lists more than {limit:,} boxes: split it into parts of at most "
                                    f"{limit:,}.")
                name = cells[0] if os.path.isabs(cells[0]) else os.path.join(folder, cells[0])
                found.setdefault(box_key(name), []).append((x0, y0, x1, y1))
    except UnicodeDecodeError:
        raise MaskError(f"{shown} is not UTF-8 text (from about line {reader.line_num + 1}): save it as a UTF-8 "
                        "CSV of path,x0,y0,x1,y1.") from None
    except csv.Error as error:
        raise MaskError(f"{shown}, line {reader.line_num}: {error}. Give a CSV of path,x0,y0,x1,y1.") from None
    except OSError as error:
        raise MaskError(f"{shown} cannot be read: {(error.strerror or str(error)).lower()}.") from None
    return found

"""Image input: bytes → RGB uint8 with EXIF orientation, alpha, 16-bit and frame handling.

Pillow is the only decoder, so the size guard below always runs on the header before
any pixel is decoded. Files are read as bytes by Python (non-ASCII paths work on every
platform). ``find_images`` expands folders non-recursively: sub-folders (e.g. a results
folder written inside the input folder) are not searched.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from gradcam_desktop.core.errors import ImageLoadError

__all__ = ["IMAGE_EXTENSIONS", "MAX_PIXELS", "MAX_FILE_BYTES", "LoadedImage",
           "load_image", "find_images", "to_model_input"]

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
# Decompression-bomb guard, checked on the header before decoding (a 4000x3000 photo is 12 MP).
MAX_PIXELS: int = 100_000_000
MAX_FILE_BYTES: int = 200 * 1024 * 1024

_EXT_LIST = ", ".join(sorted(IMAGE_EXTENSIONS))
_ORIENTATION = 0x0112
_ANIMATED_KIND = {"GIF": "animated GIF", "PNG": "animated PNG", "WEBP": "animated WebP"}


@dataclass
class LoadedImage:
    """A decoded image ready for display and the model."""

    rgb: np.ndarray  # HxWx3 uint8, RGB order, EXIF applied, alpha composited on `background`
    name: str  # file name (or "clipboard"/"image")
    path: str | None
    notices: list[str] = field(default_factory=list)


def _check_file_size(label: str, size: int) -> None:
    if size > MAX_FILE_BYTES:
        raise ImageLoadError(
            f"{label} is too large ({size / 2**20:.0f} MB; the limit is {MAX_FILE_BYTES // 2**20} MB)."
        )


def _read_source(source: str | os.PathLike[str] | bytes, name: str | None) -> tuple[bytes, str, str | None, str]:
    """Return (data, display name, path, label used in messages)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        label = name or "image"
        _check_file_size(label, len(data))
        if not data:
            raise ImageLoadError(f"{label} is empty.")
        return data, label, None, label
    path = Path(source)
    label = str(path)
    if path.is_dir():
        raise ImageLoadError(f"{label} is a folder, not an image file.")
    try:
        _check_file_size(label, path.stat().st_size)  # before reading it all into memory
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageLoadError(f"{label} not found.") from None
    except PermissionError:
        raise ImageLoadError(f"{label} cannot be read: permission denied.") from None
    except OSError as exc:
        raise ImageLoadError(f"{label} cannot be read: {(exc.strerror or str(exc)).lower()}.") from None
    if not data:
        raise ImageLoadError(f"{label} is empty.")
    return data, name or path.name, str(path), label


def _too_large(label: str, width: int, height: int) -> ImageLoadError:
    return ImageLoadError(
        f"{label} is too large ({width} x {height} pixels; the limit is {MAX_PIXELS // 1_000_000} megapixels)."
    )


def _damaged(label: str, exc: BaseException) -> ImageLoadError:
    detail = " ".join(str(exc).split()).rstrip(".") or type(exc).__name__  # keep it one line
    return ImageLoadError(f"{label} is damaged or truncated and cannot be decoded ({detail}).")


def _frame_notice(img: Image.Image) -> str | None:
    """Describe an animated / multi-frame file; leaves ``img`` on frame 0."""
    try:
        # n_frames skips frame data without decoding it, so this is cheap even for long GIFs.
        n = int(getattr(img, "n_frames", 1))
    except Exception:  # noqa: BLE001 - a damaged later frame must not hide the first one
        n = 1
    if n > 1:
        img.seek(0)
        kind = _ANIMATED_KIND.get(img.format or "", f"multi-frame {img.format or 'image'}")
        return f"{kind}: showing frame 1 of {n}"
    if img.tell() != 0:
        img.seek(0)
    return None


def _apply_exif(img: Image.Image, notices: list[str]) -> Image.Image:
    try:
        orientation = img.getexif().get(_ORIENTATION, 1)
        if orientation in (2, 3, 4, 5, 6, 7, 8):
            return ImageOps.exif_transpose(img)
    except Exception:  # noqa: BLE001 - broken EXIF must not stop the image from opening
        notices.append("EXIF orientation could not be read; showing the image as stored")
    return img


def _scale_to_uint8(arr: np.ndarray, mode: str) -> np.ndarray:
    """Map a 16-bit / 32-bit integer or float single-band array to uint8 by its range."""
    if mode.startswith("I;16"):
        return (arr.astype(np.uint16) >> 8).astype(np.uint8)  # full 16-bit range, not clipped
    a = arr.astype(np.float64)
    a[~np.isfinite(a)] = 0.0
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if mode == "I" and lo >= 0 and hi <= 65535:
        # Values that fit 16 bits are taken as a 16-bit image (older Pillow opens those as "I").
        return (a.astype(np.uint32) >> 8).astype(np.uint8)
    if mode == "F" and lo >= 0 and hi <= 1.0:
        return np.rint(a * 255.0).astype(np.uint8)  # float image in [0, 1]
    if mode == "F" and lo >= 0 and hi <= 255.0:
        return np.rint(a).astype(np.uint8)
    if hi <= lo:
        return np.zeros(a.shape, np.uint8)
    return np.rint((a - lo) * (255.0 / (hi - lo))).astype(np.uint8)


def _composite(rgba: np.ndarray, background: tuple[int, int, int]) -> np.ndarray:
    """Alpha-composite straight RGBA over an opaque colour, rounding to nearest."""
    # uint16 is enough (c*a + bg*(255-a) + 127 <= 65152) and halves the memory of uint32.
    alpha = rgba[:, :, 3:4].astype(np.uint16)
    bg = np.asarray(background, dtype=np.uint16).reshape(1, 1, 3)
    out = (rgba[:, :, :3].astype(np.uint16) * alpha + bg * (255 - alpha) + 127) // 255
    return out.astype(np.uint8)


def _to_rgb(img: Image.Image, background: tuple[int, int, int]) -> np.ndarray:
    mode = img.mode
    if mode in ("I", "F") or mode.startswith("I;16"):
        gray = _scale_to_uint8(np.asarray(img), mode)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if "A" in img.getbands() or "a" in img.getbands() or "transparency" in img.info:
        # convert("RGBA") handles palettes with tRNS, grayscale/RGB colour keys and premultiplied modes.
        return _composite(np.asarray(img.convert("RGBA")), background)
    if mode != "RGB":
        img = img.convert("RGB")
    return np.array(img, dtype=np.uint8)


def load_image(
    source: str | os.PathLike[str] | bytes,
    *,
    background: tuple[int, int, int] = (255, 255, 255),
    name: str | None = None,
) -> LoadedImage:
    """Decode a file path or encoded bytes to an RGB uint8 :class:`LoadedImage`.

    Transparent pixels are composited on ``background`` (default white); EXIF orientation
    is applied; animated or multi-frame files give their first frame plus a notice.
    Raises :class:`ImageLoadError` with one line naming the file.
    """
    background = tuple(int(c) for c in background)  # type: ignore[assignment]
    if len(background) != 3 or not all(0 <= c <= 255 for c in background):
        raise ValueError(f"background must be three values in 0..255, got {background}")
    data, display_name, path, label = _read_source(source, name)
    ext = Path(label).suffix.lower() or "no file extension"
    notices: list[str] = []
    try:
        try:
            img = Image.open(io.BytesIO(data))  # lazy: reads the header only
        except UnidentifiedImageError:
            raise ImageLoadError(f"{label} is not an image Pillow can read ({ext}).") from None
        width, height = img.size
        if width * height > MAX_PIXELS:
            raise _too_large(label, width, height)
        notice = _frame_notice(img)
        if notice:
            notices.append(notice)
        img.load()  # force the full decode so truncated files fail here, not later
        rgb = _to_rgb(_apply_exif(img, notices), background)
    except ImageLoadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow's own guard (e.g. a header claiming 100000 x 100000); the warning only
        # arrives here when warnings are turned into errors.
        raise ImageLoadError(
            f"{label} is too large to open safely (the limit is {MAX_PIXELS // 1_000_000} megapixels)."
        ) from None
    except MemoryError:
        raise ImageLoadError(f"{label} is too large to decode in the available memory.") from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises OSError/SyntaxError/ValueError/EOFError
        raise _damaged(label, exc) from None
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.size == 0:
        raise ImageLoadError(f"{label} has no pixels that can be shown.")
    return LoadedImage(rgb=rgb, name=display_name, path=path, notices=notices)


def _folder_images(folder: Path) -> list[Path]:
    try:
        entries = list(folder.iterdir())
    except OSError as exc:
        raise ImageLoadError(f"{folder} cannot be read: {(exc.strerror or str(exc)).lower()}.") from None
    # Hidden files are skipped: macOS "._photo.jpg" resource forks are not images.
    found = [
        p for p in entries
        if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()
    ]
    if not found:
        raise ImageLoadError(f"{folder} contains no images ({_EXT_LIST}).")
    return sorted(found, key=lambda p: (p.name.lower(), p.name))


def find_images(inputs: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Expand files and folders (non-recursive) into image paths, in the given order.

    Folder contents are sorted by name (case-insensitive) and filtered by extension
    (case-insensitive); a file named explicitly is kept whatever its extension (loading
    it reports a clear error). Duplicates are dropped. Raises :class:`ImageLoadError`
    for a missing path, a folder without images, or no inputs at all.
    """
    result: list[Path] = []
    seen: set[Path] = set()
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            paths = _folder_images(p)
        elif p.exists():
            paths = [p]
        else:
            raise ImageLoadError(f"{p} not found.")
        for q in paths:
            key = q.resolve()
            if key not in seen:
                seen.add(key)
                result.append(q)
    if not result:
        raise ImageLoadError("No images given.")
    return result


def to_model_input(rgb: np.ndarray, size: tuple[int | None, int | None], channels: int) -> np.ndarray:
    """Resize RGB uint8 to ``size`` = (height, width) and return float32 0..255 (h, w, channels).

    INTER_AREA when shrinking both sides (no aliasing), INTER_LINEAR otherwise. A None
    in ``size`` (variable model input) keeps that side of the image. ``channels=1``
    converts to grayscale (ITU-R 601 luma, as cv2 RGB2GRAY).
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB image, got shape {rgb.shape}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    h, w = rgb.shape[:2]
    th = int(size[0]) if size[0] else h
    tw = int(size[1]) if size[1] else w
    if th <= 0 or tw <= 0:
        raise ValueError(f"size must be positive (height, width), got {size}")
    if (th, tw) != (h, w):
        interp = cv2.INTER_AREA if th <= h and tw <= w else cv2.INTER_LINEAR
        rgb = cv2.resize(rgb, (tw, th), interpolation=interp)  # cv2 takes (width, height)
    if channels == 1:
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)[:, :, None]
    return rgb.astype(np.float32)

"""Image input: bytes → RGB uint8 with EXIF orientation, alpha, 16-bit and frame handling.

Pillow is the only decoder, so the size guards below always run on the header before
any pixel is decoded. Files are read as bytes by Python (non-ASCII paths work on every
platform), and only from regular files (see ``read_picture_file``). ``find_images`` expands
folders non-recursively: sub-folders (e.g. a results folder written inside the input folder)
are not searched.

What a decode may cost is known from the header (``decode_bytes``): the pixels as Pillow stores
them, the decoder's own working memory, the EXIF-rotated copy, the RGB result and the fixed
tiles the conversion works in (``_to_rgb`` converts a tile at a time, so no temporary grows
with the picture). A picture over ``MAX_DECODED_BYTES`` is refused before decoding.
"""

from __future__ import annotations

import io
import math
import os
import stat
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from gradcam_desktop.core.errors import ImageLoadError

__all__ = ["IMAGE_EXTENSIONS", "MAX_PIXELS", "MAX_FILE_BYTES", "MAX_DECODED_BYTES", "LoadedImage",
           "load_image", "read_picture_file", "decode_bytes", "find_images", "to_model_input"]

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
# Decompression-bomb guard, checked on the header before decoding (a 4000x3000 photo is 12 MP).
# It also bounds what grows with the picture after loading (display maps, overlays, exports).
MAX_PIXELS: int = 100_000_000
MAX_FILE_BYTES: int = 200 * 1024 * 1024
#: What one decode may allocate at its peak (``decode_bytes``), checked on the header. Up to three
#: decodes run at once (triage and batch decode in two threads; the window's worker beside the
#: triage thumbnails), next to TensorFlow, a model and the window's 768 MB picture cache: three
#: times 512 MB stays within what an 8 GB machine has left. It admits a 48-megapixel phone JPEG
#: (8000 x 6000, about 500 MB at its peak) and refuses a 100-megapixel RGBA PNG (about 800 MB).
MAX_DECODED_BYTES: int = 512 * 1024 * 1024

# Pillow warns about the files it reads: DecompressionBombWarning for a header past its own
# threshold (our limits above are the ones that count, checked right after), and UserWarnings
# about damaged metadata (the picture still decodes). Neither may reach the user as raw text.
# Installed once, here, for the whole process: warnings.catch_warnings around each decode is
# not thread-safe, and pictures are decoded in several threads.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")

_EXT_LIST = ", ".join(sorted(IMAGE_EXTENSIONS))
_ORIENTATION = 0x0112
_ANIMATED_KIND = {"GIF": "animated GIF", "PNG": "animated PNG", "WEBP": "animated WebP"}
#: Pixels converted at a time (a strip of whole rows; part of a row only past 262,144 pixels wide): the
#: conversion's temporaries are bounded by this, not by the picture.
_TILE_PIXELS = 2**18
#: Bytes per tile pixel that a conversion may hold at once: the worst tile is an alpha composite (a Pillow crop 4,
#: its RGBA copy 4, that as bytes 4, uint16 alpha 2 and 255 - alpha 2, uint16 RGB 6 and three uint16 RGB
#: intermediates 18, the uint8 result 3 = 43) or a float picture (crop 4, bytes 4, float64 8, the finite mask 1,
#: three float64 intermediates 24, uint8 1 and its three channels 3 = 45); 64 bounds both.
_TILE_BPP = 64
#: Bytes per pixel of the RGB uint8 result.
_RGB_BPP = 3
_FILE_KINDS = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
               (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"))


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
            f"{label} is too large ({size / 2**20:.0f} MB; the limit is {MAX_FILE_BYTES // 2**20} MB): "
            "save a smaller or more compressed copy and open that."
        )


def _check_regular(label: str, mode: int) -> None:
    """Refuse anything but a regular file: a device or pipe never ends, or never starts, sending bytes."""
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        raise ImageLoadError(f"{label} is a folder, not an image file: open the pictures inside it.")
    kind = next((name for test, name in _FILE_KINDS if test(mode)), "a special file")
    raise ImageLoadError(f"{label} is {kind}, not an image file: give the path of a picture file.")


def _shown(path: str | os.PathLike[str]) -> str:
    """A path fit for a one-line message: line breaks and other control characters in a name are escaped."""
    text = str(path)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii")
                   for c in text)


def _os_error(label: str, exc: OSError | ValueError) -> ImageLoadError:
    if isinstance(exc, ValueError):  # a NUL in the name: no file system takes it
        return ImageLoadError(f"{label} is not a valid file name ({exc}): check the path.")
    if isinstance(exc, FileNotFoundError):
        return ImageLoadError(f"{label} not found.")
    if isinstance(exc, PermissionError):
        return ImageLoadError(f"{label} cannot be read: permission denied.")
    return ImageLoadError(f"{label} cannot be read: {(exc.strerror or str(exc)).lower()}.")


# O_NONBLOCK: opening a FIFO for reading waits for a writer unless it is set (and a serial line
# for its carrier); O_NOCTTY: a terminal never becomes ours; O_BINARY (Windows): no newline
# translation. Flags a platform lacks are 0.
_OPEN_FLAGS = (os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
               | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))
#: Bytes asked per read once a file turns out longer than its size said (a file growing, /proc).
_READ_CHUNK = 1 << 20


def read_picture_file(path: str | os.PathLike[str], label: str | None = None) -> bytes:
    """The bytes of a picture file: regular files only, at most ``MAX_FILE_BYTES``; ImageLoadError otherwise.

    What is guaranteed, whatever is swapped in at ``path`` while this runs: no call blocks (the
    file is opened with O_NONBLOCK, so a FIFO that replaced the file after the first check opens
    at once), nothing but a regular file is read (the check is repeated with fstat on the open
    descriptor, which is what gets read), and at most ``MAX_FILE_BYTES`` + 1 bytes are read (a
    file that grows, or says it is empty like those in /proc, is read up to that and no further).
    The check with stat before opening keeps devices from being opened at all in the ordinary
    case; only a device node swapped in between that check and the open is opened (never read).
    """
    label = label or _shown(path)
    try:
        _check_regular(label, os.stat(path).st_mode)
        fd = os.open(path, _OPEN_FLAGS)
    except (OSError, ValueError) as exc:
        raise _os_error(label, exc) from None
    try:
        info = os.fstat(fd)
        _check_regular(label, info.st_mode)
        _check_file_size(label, info.st_size)  # before reading it all into memory
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)  # a regular file: a file system that honours O_NONBLOCK must not say EAGAIN
        # One read of the size the file says, plus one byte to see whether it says the truth: the usual
        # case is a single allocation of the file's size and an empty read at its end.
        parts = [os.read(fd, info.st_size + 1)]
        total = len(parts[0])
        while parts[-1] and total <= MAX_FILE_BYTES:
            parts.append(os.read(fd, min(MAX_FILE_BYTES + 1 - total, _READ_CHUNK)))
            total += len(parts[-1])
    except OSError as exc:
        raise _os_error(label, exc) from None
    finally:
        os.close(fd)
    if total > MAX_FILE_BYTES:
        raise ImageLoadError(f"{label} is larger than {MAX_FILE_BYTES // 2**20} MB (it grew while being read, "
                             "or it is not a file of fixed size): give a finished picture file.")
    return parts[0] if len(parts) <= 2 else b"".join(parts)


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
    label = _shown(path)
    data = read_picture_file(path, label)
    if not data:
        raise ImageLoadError(f"{label} is empty.")
    return data, name or path.name, str(path), label


def _too_large(label: str, width: int, height: int) -> ImageLoadError:
    return ImageLoadError(
        f"{label} is too large ({width} x {height} pixels; the limit is {MAX_PIXELS // 1_000_000} megapixels)."
    )


#: Decoders that write row by row into Pillow's storage: nothing beside it grows with the picture.
_STREAMING = frozenset({"PNG", "GIF"})
#: JPEG: libjpeg keeps every DCT coefficient of a progressive or multi-scan file (2 bytes a sample, a band).
_JPEG = frozenset({"JPEG", "MPO"})


def _storage_bpp(mode: str) -> int:
    """Bytes per pixel Pillow allocates for ``mode``: 1 for 1/L/P, 2 for I;16*, else 4 (RGB is padded to 32 bits)."""
    if mode in ("1", "L", "P"):
        return 1
    return 2 if mode.startswith("I;16") else 4


def decode_bytes(width: int, height: int, mode: str, fmt: str | None, file_bytes: int = 0) -> int:
    """The most ``load_image`` allocates to decode a ``width`` x ``height`` picture of Pillow ``mode`` and format.

    The encoded file (held throughout), Pillow's storage ``S`` per pixel, and the largest of what
    exists beside it at one time: the decoder's working memory ``W`` (freed when decoding ends),
    the EXIF-rotated copy (``S``) or the RGB result (3), plus the fixed tiles of the conversion.
    ``W``: 0 for PNG and GIF; 2 bytes a band for JPEG; WebP keeps libwebp's two RGBA canvases and
    the frame's bytes (12) for as long as the picture is open; any other format (TIFF strips that
    hold the whole picture at 16 bits, BMP's RLE buffer, formats not looked at here) 2 S.
    """
    pixels = max(0, int(width)) * max(0, int(height))
    storage = _storage_bpp(mode)
    held = 0
    if fmt in _STREAMING:
        working = 0
    elif fmt in _JPEG:
        working = 2 * Image.getmodebands(mode)
    elif fmt == "WEBP":
        working, held = 0, 12
    else:
        working = 2 * storage
    per_pixel = storage + held + max(working, storage, _RGB_BPP)
    return int(file_bytes) + pixels * per_pixel + min(pixels, _TILE_PIXELS) * _TILE_BPP


def _too_costly(label: str, img: Image.Image, cost: int, file_bytes: int) -> ImageLoadError:
    width, height = img.size
    # The same kind of picture fits when the part of the cost that grows with its pixels shrinks to
    # what the limit leaves beside the fixed part (the file, as large as now at most, and the tiles).
    fixed = file_bytes + _TILE_PIXELS * _TILE_BPP
    scale = math.sqrt(max(0, MAX_DECODED_BYTES - fixed) / max(1, cost - fixed))
    return ImageLoadError(
        f"{label} is too large to decode ({width} x {height} {img.mode} pixels need about {cost / 2**20:,.0f} MB; "
        f"the limit is {MAX_DECODED_BYTES // 2**20} MB): scale it down to at most {int(width * scale)} x "
        f"{int(height * scale)} pixels and open that."
    )


def _damaged(label: str, exc: BaseException) -> ImageLoadError:
    detail = " ".join(str(exc).split()).rstrip(".") or type(exc).__name__  # keep it one line
    return ImageLoadError(f"{label} is damaged or truncated and cannot be decoded ({detail}): "
                          "copy or export it again from where it came from.")


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


def _tiles(width: int, height: int) -> Iterator[tuple[int, int, int, int]]:
    """Boxes (left, top, right, bottom) of at most ``_TILE_PIXELS`` pixels covering the picture, row by row."""
    cols = min(width, _TILE_PIXELS)
    rows = max(1, _TILE_PIXELS // max(1, cols))
    for top in range(0, height, rows):
        for left in range(0, width, cols):
            yield left, top, min(width, left + cols), min(height, top + rows)


def _finite(tile: Image.Image) -> np.ndarray:
    """A float tile as float64 with NaN and infinities set to 0 (they count as 0 in the range, too)."""
    a = np.asarray(tile).astype(np.float64)
    a[~np.isfinite(a)] = 0.0
    return a


def _value_range(img: Image.Image) -> tuple[float, float]:
    """(min, max) of an I or F picture, non-finite values as 0: the first pass of ``_scale_to_uint8``."""
    lo, hi = np.inf, -np.inf
    for box in _tiles(*img.size):
        a = _finite(img.crop(box))
        lo, hi = min(lo, float(a.min())), max(hi, float(a.max()))
    return lo, hi


def _scale_to_uint8(arr: np.ndarray, mode: str, lo: float = 0.0, hi: float = 0.0) -> np.ndarray:
    """Map (a tile of) a 16-bit / 32-bit integer or float single-band picture to uint8 by its range ``lo``..``hi``."""
    if mode.startswith("I;16"):
        return (arr.astype(np.uint16) >> 8).astype(np.uint8)  # full 16-bit range, not clipped
    a = arr.astype(np.float64)
    a[~np.isfinite(a)] = 0.0
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
    """The picture as HxWx3 uint8, converted a tile at a time (see ``_TILE_BPP``) into the one result array."""
    mode = img.mode
    width, height = img.size
    out = np.empty((height, width, 3), np.uint8)
    if mode in ("I", "F") or mode.startswith("I;16"):
        lo, hi = (0.0, 0.0) if mode.startswith("I;16") else _value_range(img)
        for left, top, right, bottom in _tiles(width, height):
            gray = _scale_to_uint8(np.asarray(img.crop((left, top, right, bottom))), mode, lo, hi)
            out[top:bottom, left:right] = gray[:, :, None]
        return out
    # convert("RGBA") handles palettes with tRNS, grayscale/RGB colour keys and premultiplied modes.
    alpha = "A" in img.getbands() or "a" in img.getbands() or "transparency" in img.info
    for left, top, right, bottom in _tiles(width, height):
        tile = img.crop((left, top, right, bottom))
        if alpha:
            out[top:bottom, left:right] = _composite(np.asarray(tile.convert("RGBA")), background)
        else:
            out[top:bottom, left:right] = np.asarray(tile if tile.mode == "RGB" else tile.convert("RGB"))
    return out


def load_image(
    source: str | os.PathLike[str] | bytes,
    *,
    background: tuple[int, int, int] = (255, 255, 255),
    name: str | None = None,
) -> LoadedImage:
    """Decode a file path or encoded bytes to an RGB uint8 :class:`LoadedImage`.

    Transparent pixels are composited on ``background`` (default white); EXIF orientation
    is applied; animated or multi-frame files give their first frame plus a notice.
    Raises :class:`ImageLoadError` with one line naming the file: for anything but a regular
    file (``read_picture_file``), and, from the header before decoding, for more than
    ``MAX_PIXELS`` pixels or a decode that would need more than ``MAX_DECODED_BYTES``.
    """
    background = tuple(int(c) for c in background)  # type: ignore[assignment]
    if len(background) != 3 or not all(0 <= c <= 255 for c in background):
        raise ValueError(f"background must be three values in 0..255, got {background}")
    data, display_name, path, label = _read_source(source, name)
    ext = Path(label).suffix.lower() or "no file extension"
    notices: list[str] = []
    try:
        try:
            img: Image.Image = Image.open(io.BytesIO(data))  # lazy: reads the header only
        except UnidentifiedImageError:
            raise ImageLoadError(f"{label} is not an image Pillow can read ({ext}).") from None
        width, height = img.size
        if width * height > MAX_PIXELS:
            raise _too_large(label, width, height)
        cost = decode_bytes(width, height, img.mode, img.format, len(data))
        if cost > MAX_DECODED_BYTES:
            raise _too_costly(label, img, cost, len(data))
        notice = _frame_notice(img)
        if notice:
            notices.append(notice)
        img.load()  # force the full decode so truncated files fail here, not later
        img = _apply_exif(img, notices)  # the unrotated picture is let go before the RGB result exists
        rgb = _to_rgb(img, background)
    except ImageLoadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow's own guard (e.g. a header claiming 100000 x 100000); the warning only
        # arrives here when warnings are turned into errors.
        raise ImageLoadError(
            f"{label} is too large to open safely (the limit is {MAX_PIXELS // 1_000_000} megapixels): "
            "scale it down and open that."
        ) from None
    except MemoryError:
        raise ImageLoadError(f"{label} is too large to decode in the available memory: scale it down "
                             "or close other programs.") from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises OSError/SyntaxError/ValueError/EOFError
        raise _damaged(label, exc) from None
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.size == 0:
        raise ImageLoadError(f"{label} has no pixels that can be shown.")
    return LoadedImage(rgb=rgb, name=display_name, path=path, notices=notices)


def _folder_images(folder: Path) -> list[tuple[str, bool]]:
    """(name, is a symlink) of the pictures in ``folder``, sorted by name: one directory read, no stat per file."""
    try:
        with os.scandir(folder) as entries:
            # Hidden files are skipped: macOS "._photo.jpg" resource forks are not images. is_file() answers
            # from the directory entry's type; only a symlink costs a stat (it must point at a file).
            found = [(entry.name, entry.is_symlink()) for entry in entries
                     if os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS
                     and not entry.name.startswith(".") and entry.is_file()]
    except OSError as exc:
        raise ImageLoadError(f"{_shown(folder)} cannot be read: {(exc.strerror or str(exc)).lower()}.") from None
    if not found:
        raise ImageLoadError(f"{_shown(folder)} contains no images ({_EXT_LIST}).")
    found.sort(key=lambda item: (item[0].lower(), item[0]))
    return found


def _expand(inputs: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    """``find_images`` one path at a time: linear in the number of files (a set of real paths drops duplicates)."""
    seen: set[str] = set()
    for item in inputs:
        p = Path(item)
        found: Iterable[tuple[Path, str]]
        if p.is_dir():
            real = os.path.realpath(p)
            # The real path of a non-link entry is the folder's real path and its name: no realpath per file.
            found = ((p / name, os.path.realpath(p / name) if link else os.path.join(real, name))
                     for name, link in _folder_images(p))
        elif p.exists():
            found = [(p, os.path.realpath(p))]
        else:
            raise ImageLoadError(f"{_shown(p)} not found.")
        for path, key in found:
            if key not in seen:
                seen.add(key)
                yield path


def find_images(inputs: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Expand files and folders (non-recursive) into image paths, in the given order.

    Folder contents are sorted by name (case-insensitive) and filtered by extension
    (case-insensitive); a file named explicitly is kept whatever its extension (loading
    it reports a clear error). Duplicates (the same real path) are dropped. Raises
    :class:`ImageLoadError` for a missing path, a folder without images, or no inputs at all.
    Linear in the number of files: a folder of 100,000 is one directory read and a sort.
    """
    result = list(_expand(inputs))
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

"""Small pictures for the triage table, made off the UI thread and kept in a cache bounded by bytes.

``ThumbnailCache.get(path)`` answers at once: the pixmap when it is cached, else None — and the
first such miss queues the picture on a small ``QThreadPool`` (Pillow's draft mode lets a JPEG
decode at a fraction of its size). The pool hands back a ``QImage`` (safe off the UI thread); the
cache turns it into a ``QPixmap`` on the UI thread and emits ``ready(path)``. Only the rows the
view paints ask for thumbnails, so a 10,000-row table makes only the ones scrolled past, and the
cache drops the least recently used beyond ``max_bytes``.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

from PySide6.QtCore import QObject, QRunnable, Qt, QThreadPool, Signal
from PySide6.QtGui import QImage, QPixmap

__all__ = ["THUMB_SIDE", "ThumbnailCache", "make_thumbnail"]

log = logging.getLogger(__name__)

#: Longest side of a thumbnail in the table, in pixels.
THUMB_SIDE = 32
#: The cache's bound: about 4,000 thumbnails of 32×32 RGBA.
CACHE_BYTES = 16 * 1024 * 1024


def make_thumbnail(path: str, side: int = THUMB_SIDE) -> QImage:
    """The picture at ``path`` shrunk to fit ``side``×``side`` (EXIF orientation applied); null if unreadable."""
    import io

    from PIL import Image, ImageOps

    from gradcam_desktop.core import images

    try:
        # The same guards as a picture opened for a map: a regular file only (a FIFO would block this
        # thread pool), at most the size limit, and the decode's cost from the header first.
        data = images.read_picture_file(path)
        with Image.open(io.BytesIO(data)) as img:
            img.draft("RGB", (side * 2, side * 2))  # JPEG: decode at 1/2…1/8 scale, far less work
            if images.decode_bytes(*img.size, img.mode, img.format, len(data)) > images.MAX_DECODED_BYTES:
                return QImage()
            small = ImageOps.exif_transpose(img).convert("RGB")
            small.thumbnail((side, side), Image.Resampling.BILINEAR)
            data = small.tobytes()
            return QImage(data, small.width, small.height, 3 * small.width, QImage.Format.Format_RGB888).copy()
    except Exception as exc:  # noqa: BLE001 - a thumbnail is decoration; the row says what is wrong
        log.debug("no thumbnail for %s: %s", path, exc)
        return QImage()


class _Done(QObject):
    made = Signal(str, QImage)


class _Make(QRunnable):
    def __init__(self, path: str, side: int, done: _Done) -> None:
        super().__init__()
        self._path, self._side, self._done = path, side, done

    def run(self) -> None:
        self._done.made.emit(self._path, make_thumbnail(self._path, self._side))


class ThumbnailCache(QObject):
    """Thumbnails by path: ``get`` never decodes on the caller's thread; ``ready(path)`` when one is made."""

    ready = Signal(str)

    def __init__(self, side: int = THUMB_SIDE, max_bytes: int = CACHE_BYTES, threads: int = 1,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.side = side
        self.max_bytes = max_bytes
        self._pixmaps: OrderedDict[str, QPixmap] = OrderedDict()
        self._bytes = 0
        self._pending: set[str] = set()
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(threads)  # the worker thread needs the other core
        self._done = _Done(self)
        self._done.made.connect(self._made)

    @property
    def nbytes(self) -> int:
        """Bytes of the thumbnails held now."""
        return self._bytes

    def pending(self) -> int:
        """How many thumbnails are being made."""
        return len(self._pending)

    def get(self, path: str) -> QPixmap | None:
        """The thumbnail of ``path`` if made; else None, and it is queued (``ready`` follows)."""
        pixmap = self._pixmaps.get(path)
        if pixmap is not None:
            self._pixmaps.move_to_end(path)
            return pixmap
        if path not in self._pending:
            self._pending.add(path)
            self._pool.start(_Make(path, self.side, self._done))
        return None

    def clear(self) -> None:
        """Forget every thumbnail (a new folder); ones still being made are dropped when they arrive."""
        self._pool.clear()
        self._pixmaps.clear()
        self._pending.clear()
        self._bytes = 0

    def wait(self, msecs: int = 10_000) -> bool:
        """Wait for the thumbnails being made (tests, shutdown)."""
        return self._pool.waitForDone(msecs)

    def _made(self, path: str, image: QImage) -> None:
        if path not in self._pending:
            return  # cleared meanwhile
        self._pending.discard(path)
        pixmap = QPixmap.fromImage(image) if not image.isNull() else QPixmap(1, 1)
        if image.isNull():
            pixmap.fill(Qt.GlobalColor.transparent)  # unreadable: an empty cell, not asked again
        self._pixmaps[path] = pixmap
        self._bytes += _size(pixmap)
        while self._bytes > self.max_bytes and len(self._pixmaps) > 1:
            _path, old = self._pixmaps.popitem(last=False)
            self._bytes -= _size(old)
        self.ready.emit(path)


def _size(pixmap: QPixmap) -> int:
    return pixmap.width() * pixmap.height() * 4

"""The decoded pictures the window has opened, in a cache bounded by bytes (issue 9).

The worker used to keep every opened picture decoded (a folder of 1,000 photos of 12 MP is 36 GB).
``PictureCache`` keeps each picture's *source* (its path, or the encoded bytes of a pasted one) for
as long as it is open, and its decoded pixels only while they fit in ``max_bytes``: the least
recently used are dropped, and a later ``get`` decodes them again from the source. The picture
just opened or asked for is always kept, even alone above the bound.

The window keeps a cache of its own (in ``ui.worker``, filled from the sources the engine sends):
its ``records.Picture``s look their ``rgb`` up there when read (not held), with a small thumbnail
for the strip made by the engine, so the window's list of pictures holds no pixels either. Thread-safe (the
worker thread and the UI thread both read it); decoding happens outside the lock.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import cv2
import numpy as np

__all__ = ["PICTURE_BYTES", "PictureCache", "thumbnail_rgb"]

log = logging.getLogger(__name__)

#: Decoded pictures kept at most (bytes of RGB pixels): about 20 photos of 12 megapixels, or
#: 1,300 pictures of 480×360 — plenty for stepping back and forth without decoding again.
PICTURE_BYTES = 768 * 1024 * 1024
#: Side of the strip's thumbnails, made on the worker thread when a picture opens.
THUMB = 64


def thumbnail_rgb(rgb: np.ndarray, side: int = THUMB) -> np.ndarray:
    """``rgb`` shrunk to fit ``side``×``side`` (OpenCV's area filter: sharp and fast); a small copy."""
    height, width = rgb.shape[:2]
    scale = min(side / max(height, 1), side / max(width, 1), 1.0)
    if scale >= 1.0:
        return rgb.copy()
    return cv2.resize(rgb, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA)


class PictureCache:
    """Decoded pictures by key, at most ``max_bytes`` of pixels; a miss decodes the source again.

    Reads like the dict it replaces (``cache[key] = image``, ``get``, ``in``, ``[key]``); ``max_bytes``
    None: ``PICTURE_BYTES`` at construction.
    ``loader(source, name=...)`` is ``core.images.load_image`` unless given.
    """

    def __init__(self, max_bytes: int | None = None, loader: Callable[..., Any] | None = None) -> None:
        self.max_bytes = int(PICTURE_BYTES if max_bytes is None else max_bytes)
        self._loader = loader
        self._lock = threading.Lock()
        self._decoded: OrderedDict[str, Any] = OrderedDict()
        self._sources: dict[str, tuple[Any, str]] = {}  # key -> (path or encoded bytes, name)
        self._bytes = 0
        self.decodes = 0  # pictures decoded again after a miss (tests, diagnostics)

    # -- write ------------------------------------------------------------------------------------
    def put(self, key: str, image: Any, source: Any = None) -> None:
        """Keep ``image`` (a ``LoadedImage``) under ``key``; ``source`` (path or bytes) decodes it again.

        Without a source (and without ``image.path``) the picture cannot be decoded again, so it stays.
        """
        source = source if source is not None else getattr(image, "path", None)
        with self._lock:
            if source is not None:
                self._sources[key] = (source, image.name)
            self._store(key, image)

    def add_source(self, key: str, source: Any, name: str) -> None:
        """Know picture ``key`` by its ``source`` (path or encoded bytes) only: decoded at the first ``get``.

        How the window keeps the pictures the engine opened, and how a new engine gets them back.
        """
        with self._lock:
            self._sources[key] = (source, name)

    def source_of(self, key: str) -> tuple[Any, str] | None:
        """(path or encoded bytes, name) of picture ``key``, None if it has no source."""
        with self._lock:
            return self._sources.get(key)

    def __setitem__(self, key: str, image: Any) -> None:
        self.put(key, image)

    def forget(self, key: str) -> None:
        """Drop ``key`` entirely (source and pixels)."""
        with self._lock:
            self._sources.pop(key, None)
            old = self._decoded.pop(key, None)
            if old is not None:
                self._bytes -= _nbytes(old)

    def clear(self) -> None:
        with self._lock:
            self._decoded.clear()
            self._sources.clear()
            self._bytes = 0

    # -- read -------------------------------------------------------------------------------------
    def get(self, key: str, default: Any = None) -> Any:
        """The decoded picture ``key`` (decoded again from its source after a miss); ``default`` if unknown
        or if the source can no longer be read (the file was deleted)."""
        with self._lock:
            image = self._decoded.get(key)
            if image is not None:
                self._decoded.move_to_end(key)
                return image
            source = self._sources.get(key)
        if source is None:
            return default
        try:
            image = self._load(source)
        except Exception as exc:  # noqa: BLE001 - a moved or deleted file: the picture is gone, said once by the caller
            log.info("picture %s could not be decoded again: %s", key, exc)
            return default
        with self._lock:
            self.decodes += 1
            if key in self._sources:
                self._store(key, image)
        return image

    def path_of(self, key: str) -> str | None:
        """The file ``key`` was opened from (None for a pasted picture): a batch can decode it itself."""
        with self._lock:
            source = self._sources.get(key)
        return source[0] if source is not None and isinstance(source[0], str) else None

    def __getitem__(self, key: str) -> Any:
        image = self.get(key)
        if image is None:
            raise KeyError(key)
        return image

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._sources or key in self._decoded

    def __len__(self) -> int:
        with self._lock:
            return len(set(self._sources) | set(self._decoded))

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            return iter(list(dict.fromkeys([*self._sources, *self._decoded])))

    def keys(self) -> list[str]:
        return list(iter(self))

    @property
    def nbytes(self) -> int:
        """Bytes of decoded pixels held now."""
        with self._lock:
            return self._bytes

    def decoded_keys(self) -> list[str]:
        """Keys whose pixels are held now, least recently used first."""
        with self._lock:
            return list(self._decoded)

    # -- inside -----------------------------------------------------------------------------------
    def _load(self, source: tuple[Any, str]) -> Any:
        loader = self._loader
        if loader is None:
            from gradcam_desktop.core.images import load_image

            loader = load_image
        data, name = source
        return loader(data, name=name)

    def _store(self, key: str, image: Any) -> None:
        # Lock held.
        old = self._decoded.pop(key, None)
        if old is not None:
            self._bytes -= _nbytes(old)
        self._decoded[key] = image
        self._bytes += _nbytes(image)
        for other in list(self._decoded):
            if self._bytes <= self.max_bytes:
                break
            if other == key or other not in self._sources:
                continue  # the newest stays; a picture without a source cannot come back
            self._bytes -= _nbytes(self._decoded.pop(other))


def _nbytes(image: Any) -> int:
    return int(image.rgb.nbytes)

"""The clipboard: what a paste opens, and putting a picture on it.

``read()`` says what the clipboard holds in the window's terms (local files to open, or a
picture encoded as PNG in memory, never through a temporary file); ``put_picture`` copies an
RGB array.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QBuffer, QIODevice
from PySide6.QtGui import QGuiApplication

from gradcam_desktop.ui.dnd import local_paths
from gradcam_desktop.ui.export import rgb_to_qimage

__all__ = ["put_picture", "read"]


def read() -> list[str] | bytes | None:
    """The files copied in a file manager (paths), else the picture as PNG bytes, else None."""
    clipboard = QGuiApplication.clipboard()
    mime = clipboard.mimeData()
    if mime is not None and mime.hasUrls():
        paths = local_paths(mime)
        if paths:
            return paths
    if mime is not None and mime.hasImage():
        buffer = QBuffer()
        buffer.open(QIODevice.OpenModeFlag.WriteOnly)
        # PySide6's stub wants the format as bytes, yet the binding takes only a str (bytes raise ValueError).
        clipboard.image().save(buffer, "PNG")  # type: ignore[call-overload]
        return bytes(buffer.data().data())
    return None


def put_picture(rgb: np.ndarray) -> None:
    """Put an HxWx3 uint8 RGB picture on the clipboard (an owned copy)."""
    QGuiApplication.clipboard().setImage(rgb_to_qimage(rgb))

"""Export of the map on screen: overlay PNG (caption and legend burnt in if asked), raw map,
display map and the JSON sidecar of ``MapResult.sidecar``, each written atomically.

Files go through ``QSaveFile`` (a temporary file renamed over the target on commit), so an
error, a full disk or a crash never leaves a half-written PNG behind. Export All is the worker's
job (``export_all.py``), which writes through ``core.batch`` like ``gradcam batch``.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import cv2
import numpy as np
from PySide6.QtCore import QSaveFile
from PySide6.QtGui import QImage

from gradcam_desktop.core import annotate
from gradcam_desktop.core.batch import OutputStyle
from gradcam_desktop.core.errors import OutputError
from gradcam_desktop.core.overlay import blend
from gradcam_desktop.core.types import MapResult
from gradcam_desktop.session.records import ModelInfo, Picture
from gradcam_desktop.ui import status_text

log = logging.getLogger(__name__)


def rgb_to_qimage(rgb: np.ndarray) -> QImage:
    """An owned QImage copy of an HxWx3 uint8 RGB array (no temporary files)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    height, width = rgb.shape[:2]
    # The QImage borrows the buffer; .copy() detaches it before the array can go away.
    return QImage(rgb.data, width, height, 3 * width, QImage.Format.Format_RGB888).copy()


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of an RGB (HxWx3) or grayscale (HxW) uint8 array."""
    array: np.ndarray = np.ascontiguousarray(image, dtype=np.uint8)
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    ok, buffer = cv2.imencode(".png", array)
    if not ok:
        raise OutputError("Could not encode the PNG image.")
    return buffer.tobytes()


def save_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through QSaveFile; OutputError with a plain reason on failure."""
    path = Path(path)
    target = QSaveFile(str(path))
    if not target.open(QSaveFile.OpenModeFlag.WriteOnly):
        reason = target.errorString() or "cannot create the file"
        raise OutputError(f"Cannot write {path}: {reason}. Choose another folder.")
    if target.write(data) != len(data):
        reason = target.errorString()
        target.cancelWriting()
        target.commit()  # with writing cancelled, commit only removes the temporary file
        raise OutputError(f"Cannot write {path}: {reason or 'the disk may be full'}.")
    if not target.commit():
        raise OutputError(f"Cannot write {path}: {target.errorString() or 'saving failed'}.")


def export_paths(path: str | Path) -> dict[str, Path]:
    """The four files one export writes, named after the overlay file."""
    overlay = Path(path)
    if overlay.suffix.lower() != ".png":
        overlay = overlay.with_name(overlay.name + ".png")
    stem = overlay.with_suffix("")
    return {
        "overlay": overlay,
        "raw": stem.with_name(stem.name + ".npy"),
        "display": stem.with_name(stem.name + "_map.png"),
        "sidecar": stem.with_name(stem.name + ".json"),
    }


def output_style(alpha: float, colormap: str, *, burn_in: bool, model: ModelInfo | None, versions: dict) -> OutputStyle:
    """The window's look of an exported picture, as ``core.batch`` takes it (Export and Export All)."""
    return OutputStyle(alpha=alpha, colormap=colormap, decorate=annotate.decorator(colormap) if burn_in else None,
                       sidecar_extra={"model_name": model.display_name if model else None,
                                      "model_sha256": model.sha256 if model else None, "versions": dict(versions)})


def picture(rgb: np.ndarray, result: MapResult, style: OutputStyle) -> np.ndarray:
    """The overlay at the picture's own size, whatever the view's zoom or mode, decorated if asked."""
    assert result.display is not None, "the worker sends every map with its display map"
    overlay = blend(rgb, result.display, style.alpha, style.colormap)
    return style.decorate(overlay, result) if style.decorate is not None else overlay


def write_export(path: str | Path, rgb: np.ndarray, result: MapResult, style: OutputStyle) -> dict[str, Path]:
    """Write overlay, raw map, display map and sidecar for one shown result; returns the paths.

    The sidecar is ``MapResult.sidecar``, the same as Export All's and ``gradcam batch``'s.
    """
    paths = export_paths(path)
    overlay = picture(rgb, result, style)
    assert result.display is not None  # picture() checked it
    display_png = encode_png(display_bytes(result.display))
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(result.raw, dtype=np.float32))
    sidecar = result.sidecar(image_size=rgb.shape[:2], alpha=style.alpha, colormap=style.colormap,
                             files={kind: p.name for kind, p in paths.items() if kind != "sidecar"},
                             **style.sidecar_extra)
    # The overlay first: if the folder is not writable nothing at all is written.
    save_atomic(paths["overlay"], encode_png(overlay))
    save_atomic(paths["raw"], buffer.getvalue())
    save_atomic(paths["display"], display_png)
    save_atomic(paths["sidecar"], json.dumps(sidecar, indent=2).encode("utf-8"))
    return paths


def display_bytes(display: np.ndarray) -> np.ndarray:
    """The display map as uint8 0..255: the worker's maps already are; a float map is rounded."""
    display = np.asarray(display)
    if display.dtype == np.uint8:
        return display
    return np.round(np.clip(display, 0.0, 1.0) * 255.0).astype(np.uint8)


def copy_shown(window, image: Picture | None, result: MapResult | None, style: OutputStyle) -> None:
    """Put the map on ``window``'s screen on the clipboard at the picture's size (decorated if asked)."""
    from gradcam_desktop.ui import clipboard  # here: clipboard imports this module

    if result is None or image is None:
        window.set_status("There is no map to copy yet.")
        return
    rgb = image.rgb
    if rgb is None:
        window.show_error(status_text.picture_gone(image))
        return
    clipboard.put_picture(picture(rgb, result, style))
    window.set_status("Overlay copied to the clipboard.")


def export_shown(window, path: str | Path, image: Picture | None, result: MapResult | None,
                 style: OutputStyle) -> Path | None:
    """Write the map on ``window``'s screen (``write_export``); errors go to the user, not up. The overlay's path."""
    if result is None or image is None:
        window.show_error("There is no map to export yet: open a model and a picture first.")
        return None
    rgb = image.rgb
    if rgb is None:
        window.show_error(status_text.picture_gone(image))
        return None
    try:
        paths = write_export(path, rgb, result, style)
    except OutputError as exc:
        window.show_error(str(exc))
        return None
    window.set_status(f"Saved {paths['overlay']}")
    return paths["overlay"]

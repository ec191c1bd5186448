"""Writing results: overlay PNG, raw map, display map and a JSON sidecar, each atomically.

Files go through ``QSaveFile`` (a temporary file renamed over the target on commit), so an
error, a full disk or a crash never leaves a half-written PNG behind. Batch export asks the
worker for one map at a time and writes ``<stem>.png`` for each loaded image.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PySide6.QtCore import QObject, QSaveFile, Signal
from PySide6.QtGui import QImage

from gradcam_desktop.core.errors import OutputError
from gradcam_desktop.core.files import unique_stems
from gradcam_desktop.core.overlay import blend
from gradcam_desktop.ui import dialogs

log = logging.getLogger(__name__)


def rgb_to_qimage(rgb: np.ndarray) -> QImage:
    """An owned QImage copy of an HxWx3 uint8 RGB array (no temporary files)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    height, width = rgb.shape[:2]
    # The QImage borrows the buffer; .copy() detaches it before the array can go away.
    return QImage(rgb.data, width, height, 3 * width, QImage.Format.Format_RGB888).copy()


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of an RGB (HxWx3) or grayscale (HxW) uint8 array."""
    array = np.ascontiguousarray(image, dtype=np.uint8)
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


def write_export(path: str | Path, rgb: np.ndarray, result: dict, settings: dict) -> dict[str, Path]:
    """Write overlay, raw map, display map and sidecar for one shown result; returns the paths.

    ``settings`` holds what the window knows (alpha, colormap, model description, versions);
    the overlay is blended here at the image's own resolution, whatever the view's zoom/mode.
    """
    paths = export_paths(path)
    overlay = blend(rgb, result["display"], settings["alpha"], settings["colormap"])
    display_png = encode_png(display_bytes(result["display"]))
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(result["raw"], dtype=np.float32))
    sidecar = sidecar_data(result, settings, rgb.shape[:2])
    sidecar["files"] = {kind: p.name for kind, p in paths.items() if kind != "sidecar"}
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


def sidecar_data(result: dict, settings: dict, size: tuple[int, int]) -> dict[str, Any]:
    """The settings that reproduce a map, as plain JSON types."""
    model = settings.get("model") or {}
    return {
        "method": "Grad-CAM",
        "image": result.get("path") or result.get("image"),
        "image_size": {"height": int(size[0]), "width": int(size[1])},
        "model": model.get("source"),
        "model_name": model.get("display_name"),
        "model_sha256": model.get("sha256"),
        "preprocessing": model.get("preprocess"),
        "layer": result["layer"],
        "class_index": int(result["class_index"]),
        "class_name": result["class_name"],
        "score": float(result["score"]),
        "flat_map": bool(result.get("flat", False)),
        "alpha": float(settings["alpha"]),
        "colormap": settings["colormap"],
        "versions": {k: v for k, v in (settings.get("versions") or {}).items() if isinstance(v, str)},
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


class BatchExporter(QObject):
    """Computes (through the worker) and writes ``<stem>.png`` for every image, one at a time.

    One request in flight at a time keeps the UI's own requests responsive and lets Cancel take
    effect between images. Requests are marked not supersedable so the user's clicks cannot
    drop them.
    """

    progressed = Signal(int, int, str)  # done, total, current name
    finished = Signal(int, list)  # written count, [(name, message)] failures

    def __init__(self, worker, images: list[dict], folder: str | Path, *, layer: str | None,
                 class_index: int | None, alpha: float, colormap: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._worker = worker
        self._images = list(images)
        self._folder = Path(folder)
        self._stems = unique_stems([image["name"] for image in self._images])
        self._layer = layer
        self._class = class_index
        self._alpha = alpha
        self._colormap = colormap
        self._next = 0
        self._pending: int | None = None
        self._written = 0
        self._failures: list[tuple[str, str]] = []
        self._done = False
        worker.mapReady.connect(self._on_map)
        worker.failed.connect(self._on_failed)

    def targets(self) -> list[Path]:
        """Where the overlays will be written."""
        return [self._folder / f"{stem}.png" for stem in self._stems]

    def start(self) -> None:
        self._request_next()

    def cancel(self) -> None:
        """Stop after the map in flight (its result is discarded)."""
        if not self._done:
            self._failures.append(("", "cancelled"))
            self._finish()

    def is_done(self) -> bool:
        return self._done

    def _request_next(self) -> None:
        if self._done:
            return
        if self._next >= len(self._images):
            self._finish()
            return
        image = self._images[self._next]
        self.progressed.emit(self._next, len(self._images), image["name"])
        self._pending = self._worker.explain(image["key"], self._layer, self._class, supersedable=False)

    def _on_map(self, request_id: int, result: dict) -> None:
        if request_id != self._pending or self._done:
            return
        index = self._next
        image = self._images[index]
        try:
            overlay = blend(image["rgb"], result["display"], self._alpha, self._colormap)
            save_atomic(self._folder / f"{self._stems[index]}.png", encode_png(overlay))
            self._written += 1
        except (OutputError, ValueError) as exc:
            self._failures.append((image["name"], str(exc)))
            if isinstance(exc, OutputError) and self._written == 0:
                # The folder itself is unwritable: every other image would fail the same way.
                self._finish()
                return
        self._advance()

    def _on_failed(self, request_id: int, message: str) -> None:
        if request_id != self._pending or self._done:
            return
        self._failures.append((self._images[self._next]["name"], message))
        self._advance()

    def _advance(self) -> None:
        self._next += 1
        self._pending = None
        self._request_next()

    def _finish(self) -> None:
        self._done = True
        self._pending = None
        self.progressed.emit(len(self._images), len(self._images), "")
        try:
            self._worker.mapReady.disconnect(self._on_map)
            self._worker.failed.disconnect(self._on_failed)
        except (RuntimeError, TypeError):
            pass
        self.finished.emit(self._written, list(self._failures))


def export_shown(window, path: str | Path, image: dict | None, shown: dict | None, model: dict | None) -> Path | None:
    """Write ``window``'s map on screen (``write_export``); errors go to the user, not up. The overlay's path."""
    if shown is None or image is None:
        window.show_error("There is no map to export yet: open a model and a picture first.")
        return None
    settings = {"alpha": window.alpha_slider.value() / 100.0, "colormap": window.colormap_box.currentText(),
                "model": model, "versions": window.versions}
    try:
        paths = write_export(path, image["rgb"], dict(shown, path=image.get("path")), settings)
    except OutputError as exc:
        window.show_error(str(exc))
        return None
    window.set_status(f"Saved {paths['overlay']}")
    return paths["overlay"]


def start_batch(window, images: list[dict], folder: str | Path, *, layer: str | None,
                class_index: int | None) -> BatchExporter:
    """Run a BatchExporter for ``window`` with a cancellable progress dialog and a final report."""
    batch = BatchExporter(window.worker, images, folder, layer=layer, class_index=class_index,
                          alpha=window.alpha_slider.value() / 100.0,
                          colormap=window.colormap_box.currentText(), parent=window)
    progress = dialogs.download_progress(window, "Export All", batch.cancel)
    if progress is not None:
        progress.setRange(0, len(images))
        progress.setLabelText("Exporting…")
        batch.progressed.connect(lambda done, _total, name: (progress.setValue(done),
                                                             progress.setLabelText(f"Exporting {name}…")))
        batch.finished.connect(lambda *_: progress.close())
    batch.progressed.connect(lambda done, total, _name: window.set_status(f"Exporting {done} of {total}…"))

    def report(written: int, failures: list) -> None:
        real = [(name, message) for name, message in failures if message != "cancelled"]
        cancelled = len(real) != len(failures)
        if real:
            window.show_error(f"Exported {written} overlays to {folder}; {len(real)} failed: "
                              + "; ".join(f"{n}: {m}" if n else m for n, m in real[:3]))
        else:
            window.set_status(f"Exported {written} overlays to {folder}" + (" (cancelled)." if cancelled else "."))

    batch.finished.connect(report)
    batch.start()
    return batch

"""The main window: wiring only. Every model call goes through the worker thread.

Request flow: a user action updates the window's state (image, layer, class) and asks the
worker for a map; the worker answers with the request id, and only the newest request's answer
is shown. Alpha, colormap, view mode and zoom are handled by the image view from the cached
display map, without asking the worker anything.
"""

from __future__ import annotations

import logging
import platform
from pathlib import Path

import PySide6
from PySide6.QtCore import Qt, QTimer, Signal, qVersion
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDragMoveEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QDockWidget, QMainWindow, QWidget

from gradcam_desktop import __version__
from gradcam_desktop.core.overlay import COLORMAPS
from gradcam_desktop.ui import actions, dialogs, layout, status_text
from gradcam_desktop.ui.actions import MODEL_SUFFIXES, is_model_path  # noqa: F401 - re-exported for __main__
from gradcam_desktop.ui.export import BatchExporter, export_shown, start_batch
from gradcam_desktop.ui.layer_tree import nodes_by_path
from gradcam_desktop.ui.settings import Settings
from gradcam_desktop.ui.worker import GradCamWorker

log = logging.getLogger(__name__)
_Q = Qt.ConnectionType.QueuedConnection  # worker signals always cross threads


class MainWindow(QMainWindow):
    """Grad-CAM Desktop's window. Scripting surface: open_model, open_images, export_overlay."""

    resultShown = Signal(dict)
    errorShown = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Grad-CAM Desktop")
        self.setAcceptDrops(True)  # drops anywhere on the window; child views accept none
        self.settings = Settings()
        self.versions: dict = {"app": __version__, "python": platform.python_version(),
                               "qt": qVersion(), "pyside": PySide6.__version__}
        self._ready = False
        self._model: dict | None = None
        self._nodes: dict = {}
        self._model_request: tuple[int, str, bool] | None = None
        self._refused: dict[int, bool] = {}
        self._image_requests: set[int] = set()
        self._image_failures: list[tuple[str, str]] = []
        self._images: list[dict] = []
        self._index = -1
        self._layer: str | None = None
        self._class: int | None = None  # None: each image's top class
        self._want: int | None = None  # the only map request whose answer is shown
        self._shown: dict | None = None
        self._probabilities_for: tuple | None = None
        self._idle_text = ""
        self._zoo_dialog = None
        self._batch: BatchExporter | None = None
        self._closed = False
        self._build()
        self.acts = actions.build_actions(self)
        layout.build_toolbar(self)
        actions.fill_recent_menu(self)
        self._restore()
        self.worker = GradCamWorker(self)
        self._connect_worker()
        self._set_engine_ready(False)
        # Started from the event loop, not here: building the window never waits for (or races
        # with) the TensorFlow import, and the window is on screen before the import begins.
        QTimer.singleShot(0, self._start_worker)

    # -- construction --------------------------------------------------------------------------
    def _build(self) -> None:
        layout.build_widgets(self)
        self.layer_tree.layerChosen.connect(self._on_layer)
        self.class_list.classChosen.connect(self._on_class)
        self.strip.imageChosen.connect(self.show_image)
        self.alpha_slider.valueChanged.connect(self._on_alpha)
        self.colormap_box.currentTextChanged.connect(self._on_colormap)
        self.view.valueHovered.connect(self._on_hover)

    def _restore(self) -> None:
        geometry, state = self.settings.geometry(), self.settings.state()
        if geometry is None or not self.restoreGeometry(geometry):
            self.resize(1280, 800)
        if state is not None:
            self.restoreState(state)
        self.alpha_slider.setValue(self.settings.alpha())
        self._on_alpha(self.alpha_slider.value())
        colormap = self.settings.colormap()
        self.colormap_box.setCurrentText(colormap if colormap in COLORMAPS else "jet")
        self._on_colormap(self.colormap_box.currentText())

    def _connect_worker(self) -> None:
        w = self.worker
        for signal, slot in ((w.ready, self._on_ready), (w.modelLoaded, self._on_model),
                             (w.modelRefused, self._on_refused), (w.imagesLoaded, self._on_images),
                             (w.imageFailed, self._on_image_failed), (w.mapReady, self._on_map),
                             (w.failed, self._on_failed), (w.progress, self._on_progress),
                             (w.busy, self._on_busy)):
            signal.connect(slot, _Q)

    # -- scripting surface ---------------------------------------------------------------------
    def open_model(self, spec: str | Path, trust: bool = False) -> int:
        """Load "demo", "zoo:Name" or a model file/folder; returns the worker request id."""
        spec = str(spec)
        if spec != "demo" and not spec.startswith("zoo:"):
            spec = str(Path(spec).expanduser())
        request = self.worker.load_model(spec, trust)
        self._model_request = (request, spec, trust)
        self.set_status(f"Opening model {status_text.spec_label(spec)}…")
        if spec.startswith("zoo:"):
            self._zoo_dialog = dialogs.download_progress(self, f"Opening {spec[4:]}", self.worker.cancel_download)
        return request

    def open_images(self, sources) -> int:
        """Open image files, folders, encoded bytes or (name, bytes); returns the worker request id."""
        sources = [sources] if isinstance(sources, (str, Path, bytes, tuple)) else list(sources)
        request = self.worker.load_images([s if isinstance(s, (bytes, tuple)) else str(s) for s in sources])
        self._image_requests.add(request)
        return request

    def open_paths(self, paths: list[str]) -> None:
        """What a drop or the command line does: models to open_model, the rest to open_images."""
        actions.open_paths(self, paths)

    def export_overlay(self, path: str | Path) -> Path | None:
        """Write the shown overlay (image resolution), raw map, display map and JSON sidecar."""
        return export_shown(self, path, self.current_image(), self._shown, self._model)

    def export_all(self, folder: str | Path) -> BatchExporter | None:
        """Compute and write <stem>.png for every loaded picture into ``folder`` (with progress)."""
        if not self._model or not self._images:
            self.show_error("Open a model and some pictures before exporting them.")
            return None
        self._batch = start_batch(self, self._images, folder, layer=self._layer, class_index=self._class)
        return self._batch

    def images(self) -> list[dict]:
        """The loaded pictures (dicts with key, name, path, rgb, notices)."""
        return list(self._images)

    def shown_result(self) -> dict | None:
        """The worker's result for the map on screen (raw, display, layer, class, ...), or None."""
        return self._shown

    def current_image(self) -> dict | None:
        return self._images[self._index] if 0 <= self._index < len(self._images) else None

    # -- commands ------------------------------------------------------------------------------
    def show_image(self, index: int) -> None:
        """Show picture ``index`` and ask for its map with the current layer and class."""
        if not 0 <= index < len(self._images):
            return
        self._index = index
        image = self._images[index]
        self._shown = None
        self.view.set_image(image["rgb"])
        self.strip.set_current(index)
        self.set_status(status_text.image_shown(image, index, len(self._images)))
        self._request_map()

    def step_image(self, step: int) -> None:
        """Previous/next picture; layer, class, alpha, colormap and zoom stay as they are."""
        if self._images:
            self.show_image(min(max(self._index + step, 0), len(self._images) - 1))

    def set_view_mode(self, mode: str) -> None:
        self.view.set_mode(mode)
        self.acts.modes[mode].setChecked(True)

    def toggle_full_screen(self) -> None:
        self.showNormal() if self.isFullScreen() else self.showFullScreen()
        self.acts.fullscreen.setChecked(self.isFullScreen())

    def paste(self) -> None:
        """Open the clipboard's picture (or the files copied in a file manager)."""
        actions.paste(self)

    def copy_overlay(self) -> None:
        """Copy the overlay at the picture's full size to the clipboard."""
        actions.copy_overlay(self)

    def show_error(self, message: str, title: str = "Grad-CAM Desktop") -> None:
        """Tell the user (status bar + non-blocking dialog) and emit ``errorShown``."""
        log.info("shown to user: %s", message)
        self.set_status(message)
        dialogs.show_message(self, title, message)
        self.errorShown.emit(message)

    # -- worker results ------------------------------------------------------------------------
    def _on_ready(self, versions: dict) -> None:
        self.versions.update(versions)
        self._set_engine_ready(True)
        if "error" in versions:
            self.show_error(versions["error"])

    def _on_model(self, request: int, info: dict) -> None:
        if self._model_request is None or request != self._model_request[0]:
            return  # a newer model was asked for meanwhile
        self._close_zoo_dialog()
        self._model_request = None
        self._model = info
        self._nodes = nodes_by_path(info["layers"])
        self._layer, self._class, self._probabilities_for = info["default_layer"], None, None
        self.layer_tree.set_layers(info["layers"], info["default_layer"])
        self.class_list.set_classes(info["class_names"])
        self.settings.add_recent_model(info["source"])
        actions.fill_recent_menu(self)
        self.setWindowTitle(f"{info['display_name']} — Grad-CAM Desktop")
        self.findChild(QDockWidget, "layersDock").setWindowTitle(f"Layers of {info['display_name']}")
        self.set_status(status_text.model_ready(info, bool(self._images)))
        self._request_map()

    def _on_refused(self, request: int, _message: str, trustable: bool) -> None:
        self._refused[request] = trustable

    def _on_images(self, request: int, items: list) -> None:
        self._image_requests.discard(request)
        first_new = len(self._images)
        self._images.extend(items)
        self.strip.add_images(items)
        self._flush_image_failures()
        if items:
            self.show_image(first_new)

    def _on_image_failed(self, name: str, message: str) -> None:
        self._image_failures.append((name, message))

    def _on_map(self, request: int, result: dict) -> None:
        image = self.current_image()
        if request != self._want or image is None or result["image_key"] != image["key"]:
            return  # superseded: only the newest request is shown
        self._shown = result
        self.view.set_map(result["display"])
        names = self._model["class_names"] if self._model else []
        if (result["image_key"], result["generation"]) != self._probabilities_for and len(names) == len(result["probabilities"]):
            self._probabilities_for = (result["image_key"], result["generation"])
            self.class_list.set_classes(names, result["probabilities"])
        self.class_list.blockSignals(True)  # showing the explained class is not a user choice
        self.class_list.select_class(result["class_index"])
        self.class_list.blockSignals(False)
        self.prediction_label.setText(status_text.prediction(result))
        self.time_label.setText(status_text.map_time(result))
        self.set_status(status_text.map_shown(image["name"], result))
        self.resultShown.emit({"model": self._model["source"] if self._model else None, "image": image["name"],
                               "image_key": image["key"], "layer": result["layer"],
                               "class_index": result["class_index"], "class_name": result["class_name"],
                               "score": result["score"], "seconds": result["seconds"],
                               "cached": bool(result.get("cached")), "flat": result["flat"], "id": request})

    def _on_failed(self, request: int, message: str) -> None:
        if self._model_request is not None and request == self._model_request[0]:
            _id, spec, _trust = self._model_request
            self._model_request = None
            self._close_zoo_dialog()
            if self._refused.pop(request, False):
                self.set_status(message)
                dialogs.ask_trust(self, status_text.spec_label(spec), message, lambda: self.open_model(spec, trust=True))
                self.errorShown.emit(message)
            else:
                self.show_error(message, "Model not opened")
            if spec != "demo" and not spec.startswith("zoo:") and not Path(spec).exists():
                self.settings.remove_recent_model(spec)  # a recent file that was moved or deleted
                actions.fill_recent_menu(self)
        elif request in self._image_requests:
            self._image_requests.discard(request)
            self._image_failures.append(("", message))
            self._flush_image_failures()
        elif request == self._want:
            self.show_error(message)
        else:
            log.debug("ignored failure of stale request %s: %s", request, message)

    def _on_progress(self, text: str, done: int, total: int) -> None:
        amount = status_text.progress_amount(text, done, total)
        self.status_label.setText(f"{text}: {amount}")
        if self._zoo_dialog is not None:
            self._zoo_dialog.setLabelText(f"{text}…\n{amount}")
            self._zoo_dialog.setRange(0, 1000 if total else 0)
            self._zoo_dialog.setValue(int(1000 * done / total) if total else 0)

    def _on_busy(self, what: str) -> None:
        self.status_label.setText(what or self._idle_text)

    # -- user changes --------------------------------------------------------------------------
    def _on_layer(self, path: str) -> None:
        node = self._nodes.get(path)
        if node is None or path == self._layer:
            return
        if not node.eligible:
            self.set_status(status_text.layer_refused(node, self._model["default_layer"], self._layer))
            return
        self._layer = path
        self._request_map()

    def _on_class(self, index: int) -> None:
        self._class = index
        self._request_map()

    def _on_alpha(self, value: int) -> None:
        self.view.set_alpha(value / 100.0)
        self.alpha_label.setText(f"{value} %")

    def _on_colormap(self, name: str) -> None:
        if name in COLORMAPS:
            self.view.set_colormap(name)
            self.colorbar.set_colormap(name)

    def _on_hover(self, x: int, y: int, value: float) -> None:
        self.value_label.setText(status_text.hover_value(x, y, value))

    # -- helpers -------------------------------------------------------------------------------
    def _request_map(self) -> None:
        image = self.current_image()
        if self._model is None or image is None:
            return
        self._want = self.worker.explain(image["key"], self._layer, self._class)

    def _flush_image_failures(self) -> None:
        failures, self._image_failures = self._image_failures, []
        message = status_text.open_failures(failures)
        if message is not None:
            self.show_error(*message)

    def _set_engine_ready(self, ready: bool) -> None:
        self._ready = ready
        for action in self.acts.needs_engine:
            action.setEnabled(ready)
        self.layer_tree.setEnabled(ready)
        self.class_list.setEnabled(ready)
        if not ready:
            self.set_status("Starting TensorFlow…")
        elif self._model_request is None and self._model is None:
            self.set_status("Ready. Open a model and pictures, or drop them here.")

    def set_status(self, text: str) -> None:
        """The status bar's message (shown again whenever the worker becomes idle)."""
        self._idle_text = text
        self.status_label.setText(text)

    def _close_zoo_dialog(self) -> None:
        if self._zoo_dialog is not None:
            self._zoo_dialog.close()
            self._zoo_dialog.deleteLater()
            self._zoo_dialog = None

    # -- Qt events -----------------------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        if actions.has_local_files(event.mimeData()):
            event.acceptProposedAction()

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:  # noqa: N802
        self.dragEnterEvent(event)

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        paths = actions.local_paths(event.mimeData())
        if paths:
            event.acceptProposedAction()
            self.open_paths(paths)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        self.settings.save_window(self.saveGeometry(), self.saveState())
        self.settings.set_alpha(self.alpha_slider.value())
        self.settings.set_colormap(self.colormap_box.currentText())
        self.settings.sync()
        self.shutdown()
        super().closeEvent(event)

    def _start_worker(self) -> None:
        if not self._closed:
            # Also stop the worker when the application quits without closing this window
            # (app.quit(), session logout): a running QThread destroyed at exit aborts.
            app = QApplication.instance()
            if app is not None:
                app.aboutToQuit.connect(self.shutdown)
            self.worker.start()

    def shutdown(self, timeout_ms: int = 30_000) -> bool:
        """Stop the worker and wait for it (a map in progress finishes; downloads are cancelled)."""
        self._closed = True
        if self._batch is not None:
            self._batch.cancel()
        self._close_zoo_dialog()
        if not self.worker.isRunning():
            return True
        self.worker.stop()
        stopped = self.worker.wait(timeout_ms)
        if not stopped:
            log.error("the worker did not stop within %d ms", timeout_ms)
        return stopped

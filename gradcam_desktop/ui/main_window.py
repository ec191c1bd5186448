"""The main window: wiring only. Every model call goes through the worker thread.

Request flow: a user action updates the window's state (image, layer, class; method and score in
``map_choice``) and asks the worker for a map; it answers with the request id and a ``MapResult``;
only the newest request's answer is shown. Alpha, colormap, view mode and zoom never ask it.
Widgets come from ``layout`` (``self.ui``), actions and menus from ``actions``; ``dnd``,
``clipboard``, ``dialogs``, ``opening`` and ``export`` hold the rest of the behaviour.
"""

from __future__ import annotations

import logging
import platform
from pathlib import Path

import PySide6
from PySide6.QtCore import Qt, QTimer, Signal, qVersion
from PySide6.QtGui import QCloseEvent, QShowEvent
from PySide6.QtWidgets import QApplication, QMainWindow, QWidget

from gradcam_desktop import __version__
from gradcam_desktop.core.batch import OutputStyle
from gradcam_desktop.core.types import MapResult, ModelSpec
from gradcam_desktop.core import annotate, cams
from gradcam_desktop.session.records import ModelInfo, Picture
from gradcam_desktop.session.state import SessionState
from gradcam_desktop.ui import actions, clipboard, dialogs, dnd, export, layout, status_text
from gradcam_desktop.ui.explore import caption
from gradcam_desktop.ui.compare import wiring as compare_wiring
from gradcam_desktop.ui.explore import object_marks, output_choice, segmentation_view
from gradcam_desktop.ui.patterns import wiring as patterns_wiring
from gradcam_desktop.ui.triage import wiring as triage_wiring
from gradcam_desktop.ui.trust import wiring as trust_wiring
from gradcam_desktop.ui.export_all import ExportAllRun, start_export_all
from gradcam_desktop.ui.explore.layer_tree import nodes_by_path
from gradcam_desktop.ui.explore.map_choice import MapChoice, MapProgress
from gradcam_desktop.ui.opening import ModelOpener, PictureOpener
from gradcam_desktop.ui.settings import Settings
from gradcam_desktop.ui.worker import GradCamWorker

log = logging.getLogger(__name__)
_Q = Qt.ConnectionType.QueuedConnection  # worker signals always cross threads


class MainWindow(dnd.DropTarget, QMainWindow):
    """Grad-CAM Desktop's window. Scripting surface: open_model, open_images, export_overlay, ...

    ``resultShown(MapResult)`` after each map shown (its ``image`` is the picture's path or
    name, ``model`` the model's spec); ``errorShown(str)`` after each message to the user.
    """

    resultShown = Signal(object)
    errorShown = Signal(str)
    #: Another model was asked for (its label): every view of the old model's data clears at once.
    modelRequested = Signal(str)
    #: The engine process died (the line shown); a new one is starting with the last model that worked.
    engineLost = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Grad-CAM Desktop")
        self.settings = Settings()
        self.versions: dict = {"app": __version__, "python": platform.python_version(),
                               "qt": qVersion(), "pyside": PySide6.__version__}
        self._ready = False
        #: What is open and chosen (model, pictures, current picture, layer, kept class): the views follow it.
        self.state = SessionState()
        self._nodes: dict = {}
        self._want: int | None = None  # the only map request whose answer is shown
        self._shown: MapResult | None = None
        self._probabilities_for: tuple | None = None
        self._idle_text = ""
        self._last_error = ""
        self._restarting = False  # a new engine is starting after one died: the status keeps saying so
        self._batch: ExportAllRun | None = None
        self._closed = False
        self.ui = layout.build_widgets(self)
        self.choice = MapChoice(self.ui.method_box, self.ui.score_choice, self.settings, self)
        self._opener = ModelOpener(self, requested=self._model_requested, not_opened=self._model_not_opened)
        self._pictures = PictureOpener(self)
        self.acts = actions.build_actions(self)
        layout.build_toolbar(self, self.acts)
        self.setAcceptDrops(True)  # dnd.DropTarget's overrides handle the drops
        self._wire()
        self._fill_recent_menu()
        self.settings.restore_window(self)
        self.worker = GradCamWorker(self)
        self.map_progress = MapProgress(self.worker, self.ui.map_progress, lambda: self._want, self)
        self._connect_worker()
        compare_wiring.attach(self)
        self.trust = trust_wiring.attach(self)  # the Trust panel (View → Can I Trust This Map?)
        self.triage = triage_wiring.attach(self)  # File → Open Labelled Folder… (issue 9)
        self.patterns = patterns_wiring.attach(self)  # File → Find Patterns…, Export Report… (issue 19)
        self.marks = object_marks.attach(self)  # Edit → Mark Object: the inside share in the caption (issue 19)
        self.outputs = output_choice.attach(self)  # the output explained, for a model with several (issue 20)
        # A segmentation model's predicted mask outlined, and Edit → Draw Region (issue 20); after the marks:
        # the two drag tools exclude each other.
        self.segmentation = segmentation_view.attach(self)
        self.segmentation.regionChanged.connect(lambda _region: self._request_map())
        layout.arrange_panels(self)  # every dock exists: none floats, Trust and Triage share one tabbed area
        actions.add_panel_toggles(self)  # View → Triage beside Trust
        self._set_engine_ready(False)
        # From the event loop: the window is on screen before the TensorFlow import begins.
        QTimer.singleShot(0, self._start_worker)

    # -- construction --------------------------------------------------------------------------
    def _wire(self) -> None:
        ui = self.ui
        ui.layer_tree.layerChosen.connect(self._on_layer)
        ui.layer_tree.expanded.connect(lambda _index: self._fit_docks_later())
        ui.class_list.classChosen.connect(self.keep_class)  # any click on a class, even the one shown
        ui.class_list.followTopChosen.connect(self.follow_top_class)
        ui.strip.imageChosen.connect(self.show_image)
        ui.strip.removeRequested.connect(self.remove_image)
        self.choice.changed.connect(self._request_map)
        self.acts.burn_in.toggled.connect(self.settings.set_burn_in)

    def _connect_worker(self) -> None:
        w = self.worker
        for signal, slot in ((w.ready, self._on_ready), (w.modelLoaded, self._on_model),
                             (w.modelRefused, self._on_refused), (w.imagesLoaded, self._on_images),
                             (w.imageFailed, self._on_image_failed), (w.mapReady, self._on_map),
                             (w.failed, self._on_failed), (w.progress, self._on_progress),
                             (w.busy, self._on_busy), (w.engineLost, self._on_engine_lost),
                             (w.engineRestored, self._on_engine_restored)):
            signal.connect(slot, _Q)

    # -- scripting surface ---------------------------------------------------------------------
    def open_model(self, spec: str | Path | ModelSpec, trust: bool = False, output: str | None = None) -> int:
        """Load "demo", "zoo:Name" or a model file/folder (``output``: the one to explain of a model with
        several); returns the worker request id."""
        return self._opener.open(spec, trust, output)

    def open_images(self, sources) -> int:
        """Open image files, folders, encoded bytes or (name, bytes); returns the worker request id."""
        return self._pictures.open(sources)

    def open_paths(self, paths: list[str]) -> None:
        """What a drop, a paste of files or the command line does: a model file or a SavedModel
        folder (or its saved_model.pb) opens as the model, the rest as pictures."""
        model, pictures = dnd.split_paths(paths)
        if model is not None:
            self.open_model(model)
        if pictures:
            self.open_images(pictures)

    def output_style(self) -> OutputStyle:
        """How exported pictures look now: alpha, colours, burnt-in caption (if chosen), sidecar extras."""
        return export.output_style(self.ui.alpha_slider.value() / 100.0, self.ui.colormap_box.currentText(),
                                   burn_in=self.acts.burn_in.isChecked(), model=self.state.model, versions=self.versions)

    def export_overlay(self, path: str | Path) -> Path | None:
        """Write the shown overlay (image resolution), raw map, display map and JSON sidecar."""
        return export.export_shown(self, path, self.current_image(), self._shown, self.output_style())

    def export_all(self, folder: str | Path) -> ExportAllRun | None:
        """Write <stem>.png + <stem>.json for every loaded picture and results.csv into ``folder`` (worker job)."""
        if not self.state.model or not self.state.pictures:
            self.show_error("Open a model and some pictures before exporting them.")
            return None
        self._batch = start_export_all(self, folder, layer=self.state.layer, class_index=self.state.kept_class,
                                       region=self.state.region, **self.choice.options())
        return self._batch

    def images(self) -> list[Picture]:
        """The open pictures (key, name, path, notices, thumb; rgb read when asked)."""
        return list(self.state.pictures)

    def shown_result(self) -> MapResult | None:
        """The result of the map on screen (raw, display, layer, class, prediction, ...), or None."""
        return self._shown

    def current_image(self) -> Picture | None:
        return self.state.current()

    def model_info(self) -> ModelInfo | None:
        """The open model's description (source, display_name, layers, class_names, ...), or None."""
        return self.state.model

    def engine_ready(self) -> bool:
        """True once TensorFlow has started on the worker thread."""
        return self._ready

    def kept_class(self) -> int | None:
        """The class kept from picture to picture, or None when each picture's top class is shown."""
        return self.state.kept_class

    def map_choice(self) -> dict:
        """The method and score maps are asked with: {"method", "versus", "counterfactual"}."""
        return self.choice.options()

    def model_pending(self) -> bool:
        """True while a model is being opened (the views show no model's data meanwhile)."""
        return self._opener.waiting()

    # -- commands ------------------------------------------------------------------------------
    def show_image(self, index: int) -> None:
        """Show picture ``index`` and ask for its map with the current layer and class."""
        if not 0 <= index < len(self.state.pictures):
            return
        image = self.state.pictures[index]
        rgb = image.rgb
        if rgb is None:  # its file was moved or deleted since it was opened, and the cache had let it go
            self.show_error(status_text.picture_gone(image))
            return
        self.state.select(index)
        self._show_result(None)
        self.ui.view.set_image(rgb)
        self.ui.strip.set_current(index)
        self.set_status(status_text.image_shown(image, index, len(self.state.pictures)))
        self._request_map()
        # The pictures a step away: decoded off the UI thread now, so stepping to them does not decode here.
        self.worker.prefetch([self.state.pictures[i].key for i in (index + 1, index - 1) if 0 <= i < len(self.state.pictures)])

    def remove_image(self, index: int) -> None:
        """Close picture ``index``: the next one (else the previous) is shown; none left, the view empties.
        The worker drops its pixels, source and maps."""
        state = self.state
        was_current = index == state.index
        removed = state.remove(index)
        if removed is None:
            return
        self.ui.strip.remove_row(index)
        self.worker.forget_images([removed.key])
        if not state.pictures:
            self._want = None
            self._show_result(None)
            self.ui.view.clear()
            self.ui.prediction_label.clear()
            self.ui.time_label.clear()
            self.map_progress.clear()
            self.set_status(status_text.no_pictures(state.model))
        elif was_current:
            self.show_image(state.index)
        else:
            self.ui.strip.set_current(state.index)
            self.set_status(status_text.image_shown(state.pictures[state.index], state.index, len(state.pictures)))

    def step_image(self, step: int) -> None:
        """Previous/next picture; layer, class, alpha, colormap and zoom stay as they are."""
        if self.state.pictures:
            self.show_image(min(max(self.state.index + step, 0), len(self.state.pictures) - 1))

    def keep_class(self, index: int) -> None:
        """Explain class ``index`` on this picture and the next ones."""
        self.state.choose(kept_class=index)
        self.ui.class_list.set_kept(True)
        self._request_map()

    def follow_top_class(self) -> None:
        """Explain each picture's own top class again."""
        self.state.choose(kept_class=None)
        self.ui.class_list.set_kept(False)
        self._request_map()

    def open_map(self, layer: str, class_index: int, method: str) -> None:
        """Show this map in the main view, keeping the class (a click on a compare cell)."""
        self.state.choose(layer=layer, kept_class=class_index)
        self.ui.layer_tree.show_path(layer)
        self.ui.class_list.set_kept(True)
        self.acts.compare.setChecked(False)
        self.choice.set_method(method)  # asks for the map

    def set_view_mode(self, mode: str) -> None:
        self.ui.view.set_mode(mode)
        self.acts.modes[mode].setChecked(True)

    def toggle_full_screen(self) -> None:
        self.showNormal() if self.isFullScreen() else self.showFullScreen()
        self.acts.fullscreen.setChecked(self.isFullScreen())

    def paste(self) -> None:
        """Open the clipboard's picture (or the files copied in a file manager)."""
        content = clipboard.read()
        if content is None:
            self.show_error("The clipboard holds no picture. Copy an image first, then paste.")
        else:
            self.open_paths(content) if isinstance(content, list) else self.open_images([content])

    def copy_overlay(self) -> None:
        """Copy the overlay at the picture's full size (with its caption if burning in is on)."""
        export.copy_shown(self, self.current_image(), self._shown, self.output_style())

    def show_error(self, message: str, title: str = "Grad-CAM Desktop") -> None:
        """Tell the user (status bar + non-blocking dialog) and emit ``errorShown``."""
        log.info("shown to user: %s", message)
        self._last_error = message
        self.set_status(message)
        dialogs.show_message(self, title, message)
        self.errorShown.emit(message)

    def set_status(self, text: str) -> None:
        """The status bar's message (shown again whenever the worker becomes idle)."""
        self._idle_text = text
        self.ui.status_label.setText(text)

    # -- worker results ------------------------------------------------------------------------
    def _on_ready(self, versions: dict) -> None:
        self.versions.update(versions)
        self._set_engine_ready(True)
        if "error" in versions:
            self.show_error(versions["error"])

    def _on_model(self, request: int, info: ModelInfo) -> None:
        if not self._opener.loaded(request):
            return  # a newer model was asked for meanwhile
        self._nodes = nodes_by_path(info.layers)
        self._probabilities_for = None
        self.state.set_model(info)
        self._show_model(info)
        self.choice.set_offered(info.methods)
        self.choice.set_classes(info.class_names)
        self.ui.score_choice.set_head(info.head)  # a value head's "against" is what pushes the value down
        self.settings.add_recent_model(info.source)
        self._fill_recent_menu()
        self.set_status(status_text.model_ready(info, bool(self.state.pictures)))
        self._request_map()

    def _show_model(self, info: ModelInfo | None) -> None:
        """The model's layers, classes and name in the views (None: no model); its map comes when asked."""
        ui = self.ui
        self._show_result(None)  # also takes "Opening model …" off the caption
        if info is None:
            ui.layer_tree.set_layers([])
            ui.class_list.clear()
            self.setWindowTitle("Grad-CAM Desktop")
            ui.layers_dock.setWindowTitle("Layers")
            return
        ui.layer_tree.set_layers(info.layers, info.default_layer)
        ui.layer_tree.set_empty_text(status_text.no_layers(info))
        if self.state.layer is not None and self.state.layer != info.default_layer:
            ui.layer_tree.show_path(self.state.layer)
        ui.class_list.set_classes(info.class_names)
        ui.class_list.set_kept(self.state.kept_class is not None)
        self.setWindowTitle(f"{info.display_name} — Grad-CAM Desktop")
        ui.layers_dock.setWindowTitle(f"Layers of {info.display_name}")
        self._fit_docks_later()

    def _model_requested(self, label: str) -> None:
        """Another model is opening (``ModelOpener``): nothing on screen may show the old one's data
        meanwhile — no map, caption, layers, classes, prediction here; the compare grid, trust report
        and triage follow ``state`` and clear themselves."""
        ui = self.ui
        self._want, self._probabilities_for = None, None  # the old model's maps in flight are not shown
        self.state.open_requested(label)
        self._show_result(None)
        ui.caption.show_note(f"Opening model {label}…")
        ui.view.set_map(None)
        ui.layer_tree.set_layers([])
        ui.class_list.clear()
        ui.prediction_label.clear()
        ui.time_label.clear()
        self.map_progress.clear()
        self.setWindowTitle(f"Opening {label}… — Grad-CAM Desktop")
        ui.layers_dock.setWindowTitle("Layers")
        self.modelRequested.emit(label)

    def _model_not_opened(self) -> None:
        """The model asked for did not open: the one still loaded (if any) is shown again, as it was."""
        self.state.open_failed()
        self._show_model(self.state.model)
        self._request_map()

    def _on_refused(self, request: int, _message: str, trustable: bool) -> None:
        self._opener.refused(request, trustable)

    def _on_images(self, request: int, items: list) -> None:
        first_new = self.state.add(items)
        self.ui.strip.add_images(items)
        self._pictures.loaded(request)
        if items:
            self.show_image(first_new)

    def _on_image_failed(self, name: str, message: str) -> None:
        self._pictures.item_failed(name, message)

    def _on_map(self, request: int, result: MapResult) -> None:
        image = self.current_image()
        if request != self._want or image is None or result.image_key != image.key:
            return  # superseded: only the newest request is shown
        if self.choice.learned(result):
            self._request_map()  # it told the picture's top class: now the "rather than" map can be asked for
            return
        model = self.state.model
        result = result.with_(image=image.label,
                              model=result.model or (model.source if model else None),
                              preprocess=result.preprocess or (model.preprocess if model else None))
        ui = self.ui
        ui.view.set_map(result.display)
        self.map_progress.clear()
        note = self.choice.shown(result)  # e.g. the runner-up stands in for the "rather than" class
        names = list(model.class_names) if model else []
        if (result.image_key, result.generation) != self._probabilities_for and len(names) == len(result.probabilities):
            self._probabilities_for = (result.image_key, result.generation)
            ui.class_list.set_classes(names, result.probabilities.tolist(), head=result.prediction.head)
        ui.class_list.show_explained(result.class_index)
        if ui.layer_tree.current_path() != result.layer:
            ui.layer_tree.show_path(result.layer)  # the tree names the layer the map comes from
        # A map of the input's pixels takes no layer: the dock says so rather than seem to name one.
        name = model.display_name if model else ""
        ui.layers_dock.setWindowTitle(f"Layers of {name} (not used by {annotate.method_title(result.method)})"
                                      if result.layer == cams.INPUT_LAYER and model and model.shows_layers
                                      else f"Layers of {name}" if model else "Layers")
        self._show_result(result)
        ui.prediction_label.setText(status_text.prediction(result))
        ui.time_label.setText(status_text.map_time(result))
        self.set_status(" ".join(filter(None, (note, status_text.map_shown(image.name, result)))))
        self.resultShown.emit(result)

    def _on_failed(self, request: int, message: str) -> None:
        if self._opener.failed(request, message):
            self._fill_recent_menu()
        elif self._pictures.failed(request, message):
            return
        elif request == self._want:
            self.map_progress.clear()
            shown = self._shown
            if shown is not None and self.state.layer != shown.layer and shown.layer != cams.INPUT_LAYER:
                self.state.choose(layer=shown.layer)  # no map at the new layer: the tree goes back to the shown one
                self.ui.layer_tree.show_path(shown.layer)
            if self._shown is None and self.state.model is not None:  # no map of this picture: no other's predictions
                self._probabilities_for = None
                self.ui.class_list.set_classes(self.state.model.class_names)
                self.ui.prediction_label.setText("")
            self.show_error(message)
        else:
            log.debug("ignored failure of stale request %s: %s", request, message)

    def _on_engine_lost(self, line: str) -> None:
        """The engine process died: one line (once: a failed map may have shown it); pictures, choices
        and the map shown stay."""
        self.map_progress.clear()
        if self._last_error != line:
            self.show_error(line, "The engine stopped")
        self.set_status(line)
        self._restarting = True
        self.engineLost.emit(line)

    def _on_engine_restored(self, info: ModelInfo | None) -> None:
        """A new engine took over: with the same model (nothing changes on screen) or without one."""
        self._restarting = False
        if info is None and self.state.model is not None:
            name = self.state.model.display_name
            self._nodes = {}
            self.state.set_model(None)
            self._show_model(None)
            self.set_status(f"{name} could not be opened again after the engine stopped; open a model to go on.")
        elif info is not None:
            self.set_status(f"The engine started again with {info.display_name}. {self._idle_text}".strip())

    def _on_progress(self, text: str, done: int, total: int) -> None:
        amount = status_text.progress_amount(text, done, total)
        self.ui.status_label.setText(f"{text}: {amount}")
        self._opener.progress(text, amount, done, total)

    def _on_busy(self, what: str) -> None:
        # While a new engine starts, its "Starting TensorFlow…" must not hide why it is starting.
        self.ui.status_label.setText(self._idle_text if self._restarting else what or self._idle_text)

    # -- user changes --------------------------------------------------------------------------
    def _on_layer(self, path: str) -> None:
        node = self._nodes.get(path)
        if node is None or path == self.state.layer or self.state.model is None:
            return
        if not node.eligible:
            self.set_status(status_text.layer_refused(node, self.state.model.default_layer, self.state.layer))
            # After the click has finished selecting the greyed row: select the shown layer again.
            QTimer.singleShot(0, lambda: self.state.layer is not None and self.ui.layer_tree.show_path(self.state.layer))
            return
        self.state.choose(layer=path)
        self._request_map()

    # -- helpers -------------------------------------------------------------------------------
    def _request_map(self) -> None:
        """Ask for the map the state and the method and score chosen name (``SessionState.query``)."""
        image = self.current_image()
        if image is None or not self.state.ready() or self._opener.waiting():
            return  # while another model opens, the old one would answer
        spec = self.state.query(**self.choice.request(image.key, self.state.kept_class))
        if spec is not None:
            self._want = self.worker.ask(spec)

    def _show_result(self, result: MapResult | None) -> None:
        """The map's words: the caption above the picture and the titles of side-by-side panes."""
        self._shown = result
        self.ui.caption.set_result(result)
        self.ui.view.set_pane_titles(("Picture", caption.pane_title(result)) if result else None)

    def _set_engine_ready(self, ready: bool) -> None:
        self._ready = ready
        for action in self.acts.needs_engine:
            action.setEnabled(ready)
        self.ui.layer_tree.setEnabled(ready)
        self.ui.class_list.setEnabled(ready)
        self.choice.set_enabled(ready)
        if not ready:
            self.set_status(status_text.with_note(self.settings.note, "Starting TensorFlow…"))
        elif not self._opener.waiting() and self.state.model is None:
            self.set_status(status_text.with_note(self.settings.note, "Ready. Open a model and pictures, or drop them here."))

    def _fill_recent_menu(self) -> None:
        actions.fill_recent_menu(self.acts.recent_menu, self.settings.recent_models(), self.open_model)

    def _fit_docks_later(self) -> None:
        # Deferred: the tree's columns and the docks' sizes settle in the next layout pass.
        QTimer.singleShot(0, lambda: None if self._closed else self.ui.fit_docks(self))

    # -- Qt events and shutdown ----------------------------------------------------------------
    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self._fit_docks_later()  # a restored state may come from a smaller window

    def closeEvent(self, event: QCloseEvent) -> None:
        self.settings.remember_window(self)
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
        self._opener.close_dialog()
        if not self.worker.isRunning():
            return True
        self.worker.stop()
        stopped = self.worker.wait(timeout_ms)
        if not stopped:
            log.error("the worker did not stop within %d ms", timeout_ms)
        return stopped

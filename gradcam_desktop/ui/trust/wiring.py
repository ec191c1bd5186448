"""The Trust panel wired into the main window: its dock, its action, its report cache and the worker's job.

View → Can I Trust This Map? (Ctrl+T, "Trust" on the toolbar) shows the dock ``trustPanel`` under
the picture. While it is visible, each map shown gets its trust report: from the cache at once
when that map (picture, model, layer, class, method and score) was checked before, else from a
worker job (``worker.trust``, ``trust_job.TrustJob``) with progress in the panel's header. A newer
map cancels the job of the older one (the worker cancels it as soon as it gets the newer map's
request, the panel again when that map is shown); hiding the panel cancels it too, so nothing is
computed that nobody looks at. The panel's widgets (and pyqtgraph) are built when it first opens.
Kept apart from main_window.py, which only calls ``attach``.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QDockWidget, QLabel, QWidget

from gradcam_desktop.core import cams
from gradcam_desktop.core.types import MapResult
from gradcam_desktop.ui.actions import insert_after
from gradcam_desktop.ui.explore.caption import pane_title
from gradcam_desktop.session.map_cache import map_key
from gradcam_desktop.session.trust_job import TrustOutcome

__all__ = ["CACHE_REPORTS", "SHORTCUT", "TITLE", "TrustController", "attach"]

log = logging.getLogger(__name__)
_Q = Qt.ConnectionType.QueuedConnection  # worker signals cross threads

#: Reports kept (each a few kB plus the sanity maps at layer resolution).
CACHE_REPORTS = 64
#: The action's text, and the dock's title before the name of the map it is about.
TITLE = "Can I trust this map?"
SHORTCUT = "Ctrl+T"
#: Height the panel gets when it first opens under the picture (its cards need about this much).
_FIRST_HEIGHT = 330


def attach(window: Any) -> TrustController:
    """Add the Trust dock (hidden) and its action to ``window`` (a MainWindow); returns its controller."""
    dock = QDockWidget(TITLE, window)
    dock.setObjectName("trustPanel")
    dock.setWidget(QLabel())  # the panel itself is built when the dock first shows
    # Where the user left it last time (the window's state was restored before this dock existed);
    # the first time hidden, under the picture and above the strip: a picture and its figures together.
    restored = window.restoreDockWidget(dock)
    if not restored:
        window.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock, Qt.Orientation.Vertical)
        window.splitDockWidget(dock, window.ui.images_dock, Qt.Orientation.Vertical)
        dock.hide()
    action = dock.toggleViewAction()
    action.setObjectName("trustAction")
    action.setShortcut(QKeySequence(SHORTCUT))
    action.setIconText("Trust")
    tip = "Can this map be trusted? Deletion and insertion curves, Average Drop and a sanity check, in plain words"
    action.setToolTip(tip)
    action.setStatusTip(tip)
    for widget in window.acts.compare.associatedObjects():  # beside Compare, in the View menu and the toolbar
        if isinstance(widget, QWidget):
            insert_after(widget, window.acts.compare, action)
    return TrustController(window, dock, sized=restored)


class TrustController(QObject):
    """What the Trust panel shows: the map on screen's report, from the cache or a worker job.

    ``reportShown(TrustOutcome)`` after each report put in the panel. ``job()`` is the id of the
    running job (None when none runs), ``panel`` the panel (None until first opened).
    """

    reportShown = Signal(object)

    def __init__(self, window: Any, dock: QDockWidget, *, sized: bool = False) -> None:
        """``sized``: the dock has its size from the saved window state (else it gets a first height)."""
        super().__init__(window)
        self.window = window
        self.dock = dock
        self.panel: Any = None
        self._cache: OrderedDict[tuple, TrustOutcome] = OrderedDict()
        self._result: MapResult | None = None  # the map on screen
        self._picture: Any = None  # its picture (RGB)
        self._job: int | None = None
        self._job_key: tuple | None = None
        self._shown_key: tuple | None = None
        self._sized = sized
        worker = window.worker
        worker.jobPartial.connect(self._on_partial, _Q)
        worker.failed.connect(self._on_failed, _Q)
        worker.jobProgress.connect(self._on_progress, _Q)
        worker.jobFinished.connect(self._on_finished, _Q)
        # The panel follows the session: another model (asked for, opened or gone) or no picture left empties it.
        window.state.subscribe(self._follow_state)
        window.resultShown.connect(self._on_result)
        dock.visibilityChanged.connect(self._on_visible)
        ui = window.ui
        ui.alpha_slider.valueChanged.connect(lambda _v: self._follow_look())
        ui.colormap_box.currentTextChanged.connect(lambda _n: self._follow_look())

    # -- read back ---------------------------------------------------------------------------------
    def job(self) -> int | None:
        """The id of the trust job running for the panel, or None."""
        return self._job

    def cached(self, result: MapResult) -> TrustOutcome | None:
        """The cached report of ``result``'s map, or None (does not count as a use)."""
        return self._cache.get(_key(result))

    # -- events ------------------------------------------------------------------------------------
    def _on_result(self, result: MapResult) -> None:
        image = self.window.current_image()
        self._result, self._picture = result, image.rgb if image is not None else None
        self._update()

    def _on_visible(self, visible: bool) -> None:
        if visible:
            self._ensure_panel()
            self._update()
        else:
            self._cancel()  # nobody looks: compute nothing

    def reset(self) -> None:
        """No map any more (a new model, no pictures): cancel the job, forget the reports, empty the panel."""
        self._on_model()

    def _follow_state(self, change: str) -> None:
        if change == "model" or (change == "pictures" and not self.window.state.pictures):
            self.reset()

    def _on_model(self, *_args: Any) -> None:
        self._cancel()
        self._cache.clear()
        self._result = self._picture = self._shown_key = None
        if self.panel is not None:
            self.panel.clear("")
        self._set_title(None)

    def _on_partial(self, job_id: int, part: tuple) -> None:
        if part[0] == "trust":
            self._on_report(job_id, part[1])

    def _on_report(self, job_id: int, outcome: TrustOutcome) -> None:
        self._remember(outcome)  # a finished report is right for its map, wanted or not
        if job_id != self._job:
            return
        self._job = self._job_key = None
        if self._result is not None and outcome.key == _key(self._result):
            self._show(outcome)

    def _on_failed(self, job_id: int, message: str) -> None:
        if job_id == self._job:
            self._job = self._job_key = None
            if self.panel is not None:
                self.panel.show_message(message)

    def _on_progress(self, job_id: int, done: int, total: int, _what: str) -> None:
        if job_id == self._job and self.panel is not None:
            self.panel.set_progress(done, total)

    def _on_finished(self, job_id: int, summary: dict) -> None:
        if job_id == self._job and summary.get("cancelled"):
            self._job = self._job_key = None

    # -- what to do --------------------------------------------------------------------------------
    def _update(self) -> None:
        """Show the report of the map on screen: cached, being computed, or asked for (panel visible)."""
        result = self._result
        if result is None or self.panel is None:
            if self.panel is not None:
                self.panel.clear("Open a model and a picture: the trust figures of the map on screen appear here.")
            return
        key = _key(result)
        if key == self._shown_key:
            return
        hit = self._cache.get(key)
        if hit is not None:
            self._cancel()
            self._cache.move_to_end(key)
            self._show(hit)
            return
        if not self.dock.isVisible():
            self._cancel()
            return
        if self._job is not None and self._job_key == key:
            return  # already being computed
        self._cancel()
        self._job, self._job_key = self.window.worker.trust(result), key
        self._shown_key = None
        self.panel.show_pending()
        self._set_title(result)

    def _show(self, outcome: TrustOutcome) -> None:
        result = self._result
        assert result is not None and self.panel is not None
        self._shown_key = outcome.key
        info = self.window.model_info()
        self.panel.show_outcome(outcome, class_name=result.class_name, original=result.raw, picture=self._picture,
                                versus_name=result.versus_name, head=result.prediction.head,
                                layers=info is None or info.shows_layers)
        self._set_title(result)
        self.reportShown.emit(outcome)

    def _cancel(self) -> None:
        if self._job is not None:
            self.window.worker.cancel_job(self._job)
            self._job = self._job_key = None

    def _remember(self, outcome: TrustOutcome) -> None:
        key = outcome.key
        if key is None:
            return  # a map still to be resolved: no shown map has its key (the worker's reports are resolved)
        self._cache[key] = outcome
        self._cache.move_to_end(key)
        while len(self._cache) > CACHE_REPORTS:
            self._cache.popitem(last=False)

    def _ensure_panel(self) -> None:
        if self.panel is None:
            from gradcam_desktop.ui.trust.panel import TrustPanel  # pyqtgraph: only once the panel is opened

            self.panel = TrustPanel()
            self.dock.setWidget(self.panel)
            if not self._sized:
                self._sized = True
                self.window.resizeDocks([self.dock], [_FIRST_HEIGHT], Qt.Orientation.Vertical)
            self._follow_look()

    def _follow_look(self) -> None:
        if self.panel is not None:
            ui = self.window.ui
            self.panel.set_look(ui.alpha_slider.value() / 100.0, ui.colormap_box.currentText())

    def _set_title(self, result: MapResult | None) -> None:
        """The dock's title: which map the panel is about (the picture may have changed since)."""
        image = self.window.current_image()
        name = image.name if image is not None and result is not None and image.key == result.image_key else ""
        where = "input pixels" if result is not None and result.layer == cams.INPUT_LAYER else \
            f"layer {result.layer}" if result is not None else ""
        about = [pane_title(result), where, name] if result is not None else []
        self.dock.setWindowTitle(" · ".join([TITLE] + [part for part in about if part]))
        self.dock.toggleViewAction().setText(TITLE)  # the dock gave the action its new title: the action keeps its words


def _key(result: MapResult) -> tuple:
    assert result.image_key is not None, "the worker's maps carry their picture's key"
    return map_key(result.image_key, result.generation, result.layer, result.class_index, result.method,
                   result.versus_index, result.counterfactual)

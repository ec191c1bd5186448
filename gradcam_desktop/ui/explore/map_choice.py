"""The window's choice of method and score, and the progress of a map that takes a while.

``MapChoice`` ties the method picker and the score choice (``score_choice.py``) to the user's
settings and to the window: ``changed`` after each of the user's choices, ``request(...)`` the
keyword arguments of ``GradCamWorker.explain`` for a picture.

"Rather than B" needs the picture's top class before the map is asked for: a map of B rather than
B is no question (the engine refuses it), so on a picture whose explained class is B the runner-up
takes B's place. ``MapChoice`` remembers each picture's classes by probability from its maps;
for a picture not yet seen it first asks for the plain Grad-CAM map (one capture, cached) to
learn them — ``learned(result)`` tells the window to ask again. ``MapProgress`` shows a Score-CAM map's
mask batches in the status bar while it is the map the window waits for. Kept apart from
main_window.py, which only wires them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QProgressBar

from gradcam_desktop.core import annotate
from gradcam_desktop.core.types import MapResult
from gradcam_desktop.ui.explore.score_choice import MethodBox, ScoreChoice, method_note

__all__ = ["MapChoice", "MapProgress"]

#: Pictures whose classes by probability are remembered (a few ints each).
_RANKED = 4096


class MapChoice(QObject):
    """Method and score as the user chose them; ``changed`` when they choose again.

    ``settings`` (``ui.settings.Settings``) remembers the method between runs.
    """

    changed = Signal()

    def __init__(self, method_box: MethodBox, score: ScoreChoice, settings: Any, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.method_box = method_box
        self.score = score
        self._settings = settings
        self._ranked: OrderedDict[str, list[int]] = OrderedDict()  # picture key -> classes, most likely first
        self._probe: str | None = None  # the picture whose plain map was asked for to learn its classes
        method_box.set_method(settings.method())
        self._show_note()
        method_box.methodChosen.connect(self._on_method)
        score.scoreChanged.connect(self.changed)

    def options(self) -> dict:
        """``method``, ``versus`` and ``counterfactual`` as shown (for ``GradCamWorker.explain``)."""
        versus, counterfactual = self.score.score()
        return {"method": self.method_box.method(), "versus": versus, "counterfactual": counterfactual}

    def request(self, image_key: str, kept_class: int | None) -> dict:
        """The options of the map of picture ``image_key`` explaining ``kept_class`` (None: its top class).

        With "rather than", the other class is settled here (``score_choice.other_class``); for a
        picture whose classes are not known yet, the plain Grad-CAM map is asked for first.
        """
        self._probe = None
        options = self.options()
        if not self.score.versus_button.isChecked():
            return options
        ranked = self._ranked.get(image_key)
        if ranked is None:
            self._probe = image_key
            probe = "gradcam" if self.method_box.offered("gradcam") else options["method"]
            return {"method": probe, "versus": None, "counterfactual": False}
        explained = ranked[0] if kept_class is None else kept_class
        options["versus"] = self.score.set_explained(explained, ranked)
        return options

    def learned(self, result: MapResult) -> bool:
        """Remember ``result``'s picture's classes; True when it answered the plain map asked for to
        learn them (not to be shown: the window asks for the map chosen again)."""
        self._remember(result)
        probe, self._probe = self._probe, None
        return probe is not None and probe == result.image_key and result.score_kind == "class"

    def set_method(self, name: str) -> bool:
        """Choose method ``name`` as the user would (remembered; ``changed``); False if unknown."""
        if not self.method_box.set_method(name):
            return False
        self._on_method(name)
        return True

    def set_offered(self, names: Sequence[str]) -> None:
        """A new model: only the methods it can run stay enabled (empty: all). When the method chosen is
        not among them, the first that is stands in (not remembered: the next Keras model gets the
        user's own back)."""
        self.method_box.set_offered(names)
        wanted = self._settings.method()
        if self.method_box.offered(wanted):
            self.method_box.set_method(wanted)
        elif names:
            self.method_box.set_method(names[0])
        self._show_note()

    def set_classes(self, names: Sequence[str]) -> None:
        """A new model: its classes to compare with, and the score back to the class's own."""
        self._ranked.clear()
        self._probe = None
        self.score.set_classes(names)

    def shown(self, result: MapResult) -> str:
        """A map is on screen: the "rather than" box leaves out its class and shows the class it is
        compared with (or would be). Returns a note for the status bar when the runner-up stands in
        for the class the user picked ("" otherwise)."""
        self._remember(result)
        ranked = self._ranked.get(result.image_key, []) if result.image_key is not None else []
        picked = self.score.picked()
        if result.versus_index is not None:
            self.score.set_explained(result.class_index, [result.versus_index])
        else:
            self.score.set_explained(result.class_index, ranked)
        if result.score_kind == "versus" and picked is not None and picked == result.class_index:
            return f"'{result.class_name}' is this picture's own class: compared with the runner-up, '{result.versus_name}'."
        return ""

    def _remember(self, result: MapResult) -> None:
        ranked = [index for index, _name, _p in result.prediction.top]
        if ranked and result.image_key:
            self._ranked[result.image_key] = ranked
            self._ranked.move_to_end(result.image_key)
            while len(self._ranked) > _RANKED:
                self._ranked.popitem(last=False)

    def set_enabled(self, enabled: bool) -> None:
        self.method_box.setEnabled(enabled)
        self.score.setEnabled(enabled)

    def _on_method(self, name: str) -> None:
        self._settings.set_method(name)
        self._show_note()
        self.changed.emit()

    def _show_note(self) -> None:
        self.score.set_note(method_note(self.method_box.method()))


class MapProgress(QObject):
    """Score-CAM's progress in the status bar while it is the map ``wanted()`` waits for.

    The worker's ``jobProgress(id, done, total, method)`` and ``jobFinished(id, summary)`` drive
    it; a map shown or a failure (``clear``) hides it. Export All's job has its own dialog.
    """

    def __init__(self, worker: Any, bar: QProgressBar, wanted: Callable[[], int | None],
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.bar = bar
        self._wanted = wanted
        self._job: int | None = None
        bar.setVisible(False)
        worker.jobProgress.connect(self._on_progress)
        worker.jobFinished.connect(self._on_finished)

    def job(self) -> int | None:
        """The id of the job shown, or None."""
        return self._job

    def clear(self) -> None:
        """Hide the bar (the map arrived, failed, or is no longer wanted)."""
        self._job = None
        self.bar.setVisible(False)

    def _on_progress(self, job_id: int, done: int, total: int, method: str) -> None:
        if job_id != self._wanted():
            if job_id == self._job:
                self.clear()
            return
        self._job = job_id
        self.bar.setRange(0, max(1, total))
        self.bar.setValue(min(done, max(1, total)))
        self.bar.setFormat(f"{annotate.method_title(method)}: %p %")
        self.bar.setVisible(True)

    def _on_finished(self, job_id: int, _summary: dict) -> None:
        if job_id == self._job:
            self.clear()

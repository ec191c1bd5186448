"""The window's choice of method and score, and the progress of a map that takes a while.

``MapChoice`` ties the method picker and the score choice (``score_choice.py``) to the user's
settings and to the window: ``changed`` after each of the user's choices, ``options()`` the
keyword arguments of ``GradCamWorker.explain`` for them. ``MapProgress`` shows a Score-CAM map's
mask batches in the status bar while it is the map the window waits for. Kept apart from
main_window.py, which only wires them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QProgressBar

from gradcam_desktop.core import annotate
from gradcam_desktop.core.types import MapResult
from gradcam_desktop.ui.score_choice import MethodBox, ScoreChoice, method_note

__all__ = ["MapChoice", "MapProgress"]


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
        method_box.set_method(settings.method())
        self._show_note()
        method_box.methodChosen.connect(self._on_method)
        score.scoreChanged.connect(self.changed)

    def options(self) -> dict:
        """``method``, ``versus`` and ``counterfactual`` for ``GradCamWorker.explain``."""
        versus, counterfactual = self.score.score()
        return {"method": self.method_box.method(), "versus": versus, "counterfactual": counterfactual}

    def set_method(self, name: str) -> bool:
        """Choose method ``name`` as the user would (remembered; ``changed``); False if unknown."""
        if not self.method_box.set_method(name):
            return False
        self._on_method(name)
        return True

    def set_classes(self, names: Sequence[str]) -> None:
        """A new model: its classes to compare with, and the score back to the class's own."""
        self.score.set_classes(names)

    def shown(self, result: MapResult) -> None:
        """A map is on screen: offer its picture's most likely other class for "rather than"."""
        others = [index for index, _name, _p in result.prediction.top if index != result.class_index]
        if others:
            self.score.suggest_versus(others[0])

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

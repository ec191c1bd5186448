"""File → Load Custom Layers from a Python File…: the user's own registered Keras classes (issue 11).

The file is code, so it runs only after a confirmation that names it, and in the engine process
(it imports Keras): ``session.custom_layers.CustomLayersRequest``. Models opened after that may
use those classes; everything else in a model file is still checked.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Qt
from PySide6.QtWidgets import QFileDialog, QMessageBox

from gradcam_desktop.session.custom_layers import CustomLayersRequest
from gradcam_desktop.ui.dialogs import dialogs_enabled

if TYPE_CHECKING:
    from gradcam_desktop.ui.main_window import MainWindow

_Q = Qt.ConnectionType.QueuedConnection  # worker signals cross threads
PYTHON_FILTER = "Python files (*.py)"


def ask_to_run(window: MainWindow, path: Path) -> bool:
    """The trust step: a confirmation that names the file (No by default; never without dialogs)."""
    if not dialogs_enabled():
        return False
    box = QMessageBox(QMessageBox.Icon.Warning, "Run a Python file?",
                      f"Load custom layers from <b>{path.name}</b>?", parent=window)
    box.setInformativeText(
        f"{path}<br><br>This runs the Python file with your permissions, so that the Keras classes and "
        "functions it defines and registers (<code>@keras.saving.register_keras_serializable</code>) can be "
        "loaded; what its imports register is not. Model files are still checked for everything else. Only "
        "run files you trust.")
    run = box.addButton("Run this file", QMessageBox.ButtonRole.AcceptRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(QMessageBox.StandardButton.Cancel)
    box.exec()
    return box.clickedButton() is run


def load_custom_layers_dialog(window: MainWindow) -> None:
    """Pick a .py file, confirm, run it (the menu action)."""
    path, _ = QFileDialog.getOpenFileName(window, "Load Custom Layers from a Python File", "", PYTHON_FILTER)
    if path and ask_to_run(window, Path(path)):
        load_custom_layers(window, path)


def load_custom_layers(window: MainWindow, path: str | Path) -> int:
    """Run ``path`` (already trusted by the user) on the worker; the status bar says what it registered."""
    watcher = window.findChild(_Watcher) or _Watcher(window)
    request = CustomLayersRequest(str(path))
    watcher.pending[request.id] = Path(path).name
    window.set_status(f"Running {Path(path).name}…")
    window.worker.start_job(request)
    return request.id


class _Watcher(QObject):
    """Answers of custom-layer requests, on the UI thread."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.pending: dict[int, str] = {}
        window.worker.jobFinished.connect(self._on_finished, _Q)
        window.worker.failed.connect(self._on_failed, _Q)

    def _on_finished(self, job_id: int, summary: dict) -> None:
        name = self.pending.pop(job_id, None)
        if name is not None:
            self.window.set_status(f"Custom layers from {name}: {', '.join(summary.get('registered', []))}. "
                                   "Models that use them can be opened now.")

    def _on_failed(self, request: int, message: str) -> None:
        if self.pending.pop(request, None) is not None:
            self.window.show_error(message, "Custom layers not loaded")

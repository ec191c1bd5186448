"""Opening models and pictures from the window, and telling the user how it went.

``ModelOpener``: the model request in flight, the zoo download dialog, a refused file's "Trust
this file" offer, and a recent file that has gone. ``PictureOpener``: picture requests and the
files that could not be opened. The window asks them to ``open()`` and hands them the worker's
answers; they say whether an answer was theirs. Kept apart so main_window.py stays wiring.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from gradcam_desktop.core.types import ModelSpec
from gradcam_desktop.ui import dialogs, status_text
from gradcam_desktop.ui.dnd import model_location

if TYPE_CHECKING:
    from PySide6.QtWidgets import QProgressDialog

    from gradcam_desktop.ui.main_window import MainWindow

__all__ = ["ModelOpener", "PictureOpener"]


class ModelOpener:
    """The model the window is waiting for (the newest asked), and how its opening is shown."""

    def __init__(self, window: MainWindow, *, requested: Callable[[str], None] = lambda _label: None,
                 not_opened: Callable[[], None] = lambda: None) -> None:
        """``requested(label)`` runs at once when a model is asked for (the window forgets the old one's
        views), ``not_opened()`` when it failed (the window shows the model still open again)."""
        self._window = window
        self._requested, self._not_opened = requested, not_opened
        self._pending: tuple[int, ModelSpec] | None = None
        self._refused: dict[int, bool] = {}
        self._dialog: QProgressDialog | None = None

    def open(self, spec: str | Path | ModelSpec, trust: bool = False, output: str | None = None) -> int:
        """Ask the worker for ``spec``; returns the request id. A SavedModel's ``saved_model.pb``
        or ``keras_metadata.pb`` opens its folder (which the title and Recent Models then name)."""
        spec = ModelSpec.parse(spec)
        if spec.is_file:
            spec = ModelSpec.parse(model_location(spec.value))
        window = self._window
        request = window.worker.load_model(str(spec), trust, output)
        self._pending = (request, spec)
        self._requested(spec.label)  # at once: no view keeps the old model's data meanwhile
        window.set_status(f"Opening model {spec.label}…")
        if spec.kind == "zoo":
            self.close_dialog()
            self._dialog = dialogs.download_progress(window, f"Opening {spec.value}", window.worker.cancel_download)
        return request

    def waiting(self) -> bool:
        """True while a model is being opened."""
        return self._pending is not None

    def loaded(self, request: int) -> bool:
        """The worker opened model ``request``: True if it is the one awaited (older ones are dropped)."""
        if self._pending is None or request != self._pending[0]:
            return False
        self._pending = None
        self.close_dialog()
        return True

    def refused(self, request: int, trustable: bool) -> None:
        """The worker refused the file; ``trustable``: trusting it would let it open."""
        self._refused[request] = trustable

    def failed(self, request: int, message: str) -> bool:
        """Tell the user why model ``request`` did not open; False if it is not the awaited model."""
        if self._pending is None or request != self._pending[0]:
            return False
        _id, spec = self._pending
        self._pending = None
        self.close_dialog()
        window = self._window
        self._not_opened()  # the model still loaded (if any) comes back on screen
        if self._refused.pop(request, False):
            window.set_status(message)
            dialogs.ask_trust(window, spec.label, message, lambda: window.open_model(spec, trust=True))
            window.errorShown.emit(message)
        elif status_text.needs_custom_layers(message):
            message = status_text.custom_layers_refusal(message)
            window.set_status(message)
            dialogs.ask_custom_layers(window, spec.label, message, window.acts.custom_layers.trigger)
            window.errorShown.emit(message)
        else:
            window.show_error(message, "Model not opened")
        if spec.path is not None and not spec.path.exists():
            window.settings.remove_recent_model(str(spec))  # a recent file that was moved or deleted
        return True

    def progress(self, text: str, amount: str, done: int, total: int) -> None:
        """A download's progress, in the dialog (if one is open)."""
        if self._dialog is not None:
            self._dialog.setLabelText(f"{text}…\n{amount}")
            self._dialog.setRange(0, 1000 if total else 0)
            self._dialog.setValue(int(1000 * done / total) if total else 0)

    def close_dialog(self) -> None:
        if self._dialog is not None:
            self._dialog.close()
            self._dialog.deleteLater()
            self._dialog = None


class PictureOpener:
    """Pictures being opened: the requests in flight, and the files that could not be opened,
    told to the user once per request (one message for a folder of bad files, not one each)."""

    def __init__(self, window: MainWindow) -> None:
        self._window = window
        self._requests: set[int] = set()
        self._failures: list[tuple[str, str]] = []

    def open(self, sources) -> int:
        """Open image files, folders, encoded bytes or (name, bytes); returns the request id."""
        sources = [sources] if isinstance(sources, (str, Path, bytes, tuple)) else list(sources)
        request = self._window.worker.load_images([s if isinstance(s, (bytes, tuple)) else str(s) for s in sources])
        self._requests.add(request)
        return request

    def item_failed(self, name: str, message: str) -> None:
        """One file of a request could not be opened (told with the request's answer)."""
        self._failures.append((name, message))

    def loaded(self, request: int) -> None:
        """Request ``request`` is answered: tell the user what could not be opened."""
        self._requests.discard(request)
        self._flush()

    def failed(self, request: int, message: str) -> bool:
        """Request ``request`` opened nothing; False if it is not a picture request."""
        if request not in self._requests:
            return False
        self._requests.discard(request)
        self._failures.append(("", message))
        self._flush()
        return True

    def _flush(self) -> None:
        failures, self._failures = self._failures, []
        message = status_text.open_failures(failures)
        if message is not None:
            self._window.show_error(*message)

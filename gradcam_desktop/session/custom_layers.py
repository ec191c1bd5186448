"""Running a trusted file of custom Keras classes in the engine (File → Load Custom Layers…).

The window asks first (``ui.custom_layers``); this request runs ``core.custom_objects`` in the
engine, where Keras lives, and answers with a one-step job whose summary lists what the file
registered. The engine's session remembers the file: an engine started again after a crash runs
it again before it reopens the model that needed it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gradcam_desktop.session.requests import _next_id
from gradcam_desktop.session.scheduler import Job

__all__ = ["CustomLayersRequest"]


@dataclass
class CustomLayersRequest:
    """Run the trusted Python file ``path`` in the engine."""

    path: str
    id: int = field(default_factory=_next_id)

    def start_job(self, _maker: Any, _partial: Callable[[int, Any], None]) -> Job:
        """Runs the file now: the user chose it in a confirmation that names it, before any model
        (``--custom-objects`` instead waits for a model that needs it). ModelLoadError (→ ``failed``)
        in one line if it fails, calls sys.exit() or defines nothing registered."""
        from gradcam_desktop.core.custom_objects import load_custom_objects

        return _Registered(self.id, load_custom_objects(self.path))


class _Registered(Job):
    """Already done when started: reports what the file registered."""

    visible = True

    def __init__(self, job_id: int, names: list[str]) -> None:
        super().__init__(job_id)
        self.names = names

    def step(self) -> bool:
        return False

    def summary(self) -> dict:
        return {"cancelled": False, "registered": list(self.names)}

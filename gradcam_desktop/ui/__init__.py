"""Qt widgets of Grad-CAM Desktop; they talk to the core only through the worker thread.

``MainWindow`` is imported lazily so ``import gradcam_desktop.ui`` stays cheap (no TensorFlow is
ever imported here; the worker imports it on its own thread).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["MainWindow", "GradCamWorker"]

if TYPE_CHECKING:
    from gradcam_desktop.ui.main_window import MainWindow
    from gradcam_desktop.ui.worker import GradCamWorker


def __getattr__(name: str) -> Any:
    if name == "MainWindow":
        from gradcam_desktop.ui.main_window import MainWindow

        return MainWindow
    if name == "GradCamWorker":
        from gradcam_desktop.ui.worker import GradCamWorker

        return GradCamWorker
    raise AttributeError(f"module 'gradcam_desktop.ui' has no attribute {name!r}")

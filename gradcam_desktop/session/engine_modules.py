"""The engine's modules, imported on the worker thread (TensorFlow, Keras and the core's engine side).

Kept out of worker.py (the thread's loop and handlers): ``import_engine`` is the one place the
window's process imports TensorFlow, and tests replace modules through ``overrides``.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["import_engine"]

log = logging.getLogger(__name__)


def import_engine(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """{"tf", "keras", "gradcam", "images", "models", "overlay"[, "zoo"]}, then ``overrides`` on top."""
    from gradcam_desktop.core.runtime import import_tensorflow_quietly

    tf = import_tensorflow_quietly()
    import keras

    from gradcam_desktop.core import gradcam, images, models, overlay

    modules: dict[str, Any] = {"tf": tf, "keras": keras, "gradcam": gradcam, "images": images,
                               "models": models, "overlay": overlay}
    try:
        from gradcam_desktop.core import zoo

        modules["zoo"] = zoo
    except Exception:  # noqa: BLE001 - the zoo is optional for the window to work
        log.exception("zoo registry unavailable")
    modules.update(overrides or {})
    return modules

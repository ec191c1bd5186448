"""What the worker's signals carry back: plain dicts, arrays and core ``MapResult``s.

``ready`` carries ``versions``, ``modelLoaded`` ``model_info``, ``imagesLoaded`` a list of
``image_item``, ``mapReady`` a ``MapResult`` (``map_result``) whose display map comes from
``display_uint8``, ``failed`` a ``failure_message``, and ``modelRefused`` the ``trust_would_help``
flag. The window and the tests read these layouts, so they live here in one place instead of
inside the worker's handlers; that also keeps worker.py to the thread's loop and its handlers.
Nothing here imports Qt or TensorFlow: the engine's objects (loaded model, image, explanation) come in as arguments.
"""

from __future__ import annotations

import logging
import platform
from typing import Any

import cv2
import numpy as np

from gradcam_desktop import __version__
from gradcam_desktop.core.errors import GradCamError, unexpected_message
from gradcam_desktop.session.picture_cache import thumbnail_rgb
from gradcam_desktop.session.records import ModelInfo

__all__ = ["display_uint8", "failure_message", "image_item", "map_result", "model_info", "trust_would_help", "versions"]

log = logging.getLogger(__name__)


def versions(modules: dict[str, Any], error: str | None) -> dict:
    """``ready``'s payload: app, Python, TensorFlow and Keras versions, zoo names, ``error`` if the engine failed.

    ``modules`` are the worker's imports ("tf", "keras", "zoo"); any of them may be missing.
    """
    out: dict[str, Any] = {"app": __version__, "python": platform.python_version()}
    for key, name in (("tf", "tensorflow"), ("keras", "keras")):
        if modules.get(key) is not None:
            out[name] = modules[key].__version__
    try:
        out["zoo_names"] = list(modules["zoo"].zoo_names()) if modules.get("zoo") else []
    except Exception:  # noqa: BLE001 - the window works without the zoo list
        log.exception("zoo_names failed")
        out["zoo_names"] = []
    if error:
        out["error"] = error
    return out


def model_info(request_id: int, generation: int, loaded: Any, engine: Any, layers: list, trusted: bool) -> ModelInfo:
    """``modelLoaded``'s payload: names, layer tree, default layer, classes and input of a loaded model."""
    height, width = (int(side or 0) for side in loaded.input_size)
    runtime = getattr(loaded, "runtime", None)
    return ModelInfo(request_id=request_id, generation=generation, source=str(loaded.source),
                     display_name=str(loaded.display_name), layers=list(layers), default_layer=engine.default_layer,
                     class_names=tuple(str(name) for name in loaded.class_names), input_size=(height, width),
                     channels=int(loaded.channels), preprocess=str(loaded.preprocess), sha256=loaded.sha256,
                     head=getattr(getattr(loaded, "head", None) or getattr(engine, "head", None), "kind", None),
                     trusted=bool(trusted), file_format="keras" if runtime is None else str(runtime.format),
                     methods=tuple(name for name in engine_methods(engine)),
                     outputs=tuple((info.name, info.describe(), info.usable) for info in getattr(loaded, "outputs", [])),
                     output=getattr(loaded, "output", None))


def engine_methods(engine: Any) -> list[str]:
    """The names of the methods this engine's model can run (all of them for a Keras model)."""
    from gradcam_desktop.core import cams

    return [name for name in cams.METHODS if engine.offers(name)]


def image_item(key: str, image: Any, source: Any) -> dict:
    """One entry of ``imagesLoaded``'s list: the engine's key for the picture, a thumbnail, and its source.

    No pixels: the window decodes the picture itself from ``source`` (its path, or the encoded bytes of a
    pasted picture) into its own bounded cache (``records.Picture``), and a new engine after a
    crash gets the same sources back.
    """
    return {"key": key, "name": image.name, "path": image.path, "notices": list(image.notices),
            "thumb": thumbnail_rgb(image.rgb), "source": source}


def display_uint8(overlay: Any, raw: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, bool]:
    """The display map at the image's ``size`` as read-only uint8 0..255, and whether it is flat.

    ``overlay`` is ``core.overlay`` (imported by the worker on its own thread). Sent as uint8: a
    quarter of the float map's memory, and the image view needs no float pass.
    """
    display, flat = overlay.display_map(raw, size)
    # Values are in [0, 1] without NaN: this is round(display * 255), what blend() and the
    # exported PNG compute from the float map. Read-only: the window and the cache share it.
    display = cv2.convertScaleAbs(display, alpha=255.0)
    display.flags.writeable = False
    return display, flat


def map_result(explanation: Any, *, image_key: str, generation: int, display: np.ndarray, flat: bool,
               seconds: float) -> Any:
    """``mapReady``'s payload (before the worker sets ``request_id``): the engine's ``MapResult``
    with the worker's picture key, model generation and display map filled in."""
    return explanation.with_(image_key=image_key, generation=generation, display=display, flat=bool(flat),
                             seconds=seconds, cached=False)


def failure_message(exc: Exception, log_hint: str = "") -> str:
    """``failed``'s message: a typed error's own line, anything else one plain line ending in ``log_hint``."""
    if isinstance(exc, GradCamError):
        return str(exc)
    text = unexpected_message(exc)
    return f"{text[0].upper()}{text[1:]}{log_hint}"


def trust_would_help(exc: Exception) -> bool:
    """``modelRefused``'s flag. Only Lambda layers may be trusted (custom modules and TF graphs stay refused)."""
    flag = getattr(exc, "trustable", None)
    if flag is not None:
        return bool(flag)
    return "lambda" in str(exc).lower()

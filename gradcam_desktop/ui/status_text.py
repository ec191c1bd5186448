"""The sentences the main window shows: status bar, its labels and the "not opened" messages.

Pure functions from the window's state (model info, image dicts, ``MapResult``s) to user-facing
text. Kept apart from main_window.py so that file stays wiring only, and so the wording lives
in one place, where it can be read and reviewed as text. What a map shows is said once, by
``core.annotate`` (the caption above the picture and in exported pictures).
"""

from __future__ import annotations

from typing import Any

from gradcam_desktop.core import annotate
from gradcam_desktop.core.annotate import format_score
from gradcam_desktop.core.types import MapResult
from gradcam_desktop.ui.explore.layer_tree import describe
from gradcam_desktop.session.records import ModelInfo, Picture


def picture_gone(image: Picture) -> str:
    """A picture whose pixels can no longer be read (its file moved or deleted after it was opened)."""
    return f"{image.name} can no longer be read: was its file moved or deleted? Open it again from where it is now."


def image_shown(image: Picture, index: int, count: int) -> str:
    """Which picture is shown, and its notices (rotated, reduced, …)."""
    notices = "; ".join(image.notices or [])
    return f"{image.name} ({index + 1} of {count})" + (f" — {notices}" if notices else "")


def with_note(note: str, text: str) -> str:
    """``text`` after a note the user must see (settings reset at start), which comes first so that a
    narrow status bar clips the routine part."""
    return f"{note} {text}" if note else text


def model_ready(info: ModelInfo, has_images: bool) -> str:
    """A model has opened; without pictures, say how to open some."""
    count = len(info.class_names)
    singular, plural = ("value", "values") if getattr(info, "head", "") == "value" else ("class", "classes")
    what = singular if count == 1 else plural
    return (f"Model {info.display_name} ready: {count} {what}."
            + ("" if has_images else " Open pictures (Ctrl+O) or drop them here."))


def prediction(result: MapResult) -> str:
    """The prediction label: the top class and its probability (a value head: its first value; a
    segmentation head: the class that covers most pixels, and its share)."""
    _top_index, top_name, top_p = result.predicted
    return f"Predicted: {top_name} ({format_score(top_p, result.prediction.head)})"


def map_time(result: MapResult) -> str:
    """The time label: how long the map took, or that it came from the cache."""
    seconds = result.seconds
    return ("Map: from cache" if result.cached else
            f"Map: {seconds * 1000:.0f} ms" if seconds < 1 else f"Map: {seconds:.1f} s")


def map_shown(image_name: str, result: MapResult) -> str:
    """The status line once a map is shown: the picture, the caption, and its warning if any."""
    note = annotate.warning(result)
    return f"{image_name}: {annotate.caption(result)}." + (f" {note[0].upper()}{note[1:]}." if note else "")


def layer_refused(node: Any, default_layer: str | None, current_layer: str | None) -> str:
    """Why a layer without a map cannot be picked, which one to pick, and what stays shown."""
    return (f"No map at layer “{node.name}”: {describe(node)[len('No map here: '):]}. "
            f"Pick a layer marked with a coloured square, such as “{default_layer}”. "
            f"Still showing layer “{current_layer}”.")


def progress_amount(text: str, done: int, total: int) -> str:
    """How far a download (MB) or a batch (count) is; ``total`` 0 = unknown."""
    return (f"{done / 2**20:.1f} of {total / 2**20:.1f} MB" if "Download" in text and total else
            f"{done} of {total}" if total else f"{done / 2**20:.1f} MB")


def hover_value(x: int, y: int, value: float) -> str:
    """The map value under the pointer; empty off the image or without a map."""
    return f"Map value at ({x}, {y}): {value:.2f}" if value >= 0 else ""


def open_failures(failures: list[tuple[str, str]]) -> tuple[str, str] | None:
    """(message, title) for pictures that could not be opened, or None when there were none."""
    lines = [m if not n or n in m else f"{n}: {m}" for n, m in failures]
    if len(lines) == 1:
        return lines[0], "Picture not opened"
    if lines:
        shown = "\n".join(f"• {line}" for line in lines[:6]) + ("\n…" if len(lines) > 6 else "")
        return f"{len(lines)} files could not be opened:\n{shown}", "Pictures not opened"
    return None


def no_pictures(model: ModelInfo | None) -> str:
    """The status line once the last picture is closed."""
    return ("No pictures open. Open some (Ctrl+O) or drop them here." if model is not None else
            "Ready. Open a model and pictures, or drop them here.")


#: The menu entry that makes a model's own layer classes known (custom_layers.py).
CUSTOM_LAYERS_MENU = "File → Load Custom Layers from a Python File…"
# What the core's refusals say when a config names classes only the user's own Python defines
# (core/scan.py: a foreign module's class, or a type this Keras does not know): the CLI's line.
_CUSTOM_MARKS = ("needs custom Python code", "does not know by that name")
_CLI_POINTER = " (File → Load Custom Layers… / --custom-objects)"


def needs_custom_layers(message: str) -> bool:
    """Whether a model refusal is one that loading the model's custom layers could lift."""
    return any(mark in message for mark in _CUSTOM_MARKS)


def custom_layers_refusal(message: str) -> str:
    """The refusal as the window says it: what to do is the menu entry (the CLI's line names --custom-objects)."""
    text = message.replace(_CLI_POINTER, "").rstrip()
    return (f"{text} If you have the Python file that defines these layers, load it with "
            f"{CUSTOM_LAYERS_MENU}, then open the model again.")


def no_layers(info: Any) -> str:
    """What the layer tree says for a model file that shows no layers ("" for one that does)."""
    if info is None or info.shows_layers:
        return ""
    from gradcam_desktop.core import cams

    kind = {"onnx": "An ONNX file", "tflite": "A TensorFlow Lite file", "savedmodel": "An exported SavedModel"}.get(
        info.file_format, "This file")
    titles = [cams.METHODS[name].title for name in info.methods if name in cams.METHODS]
    return (f"{kind} shows no layers: Grad-CAM and the other layer methods cannot look inside it. "
            f"It is explained from its answers: {', '.join(titles)} (the method box offers these).")

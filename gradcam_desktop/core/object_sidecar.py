"""Where the object is on one picture, saved beside it: ``<picture name>.object.json``.

The window writes it when the user draws boxes on a picture (Mark Object); ``object_mask``
(core/inside_share.py) reads it for any picture that ``--masks``/``--boxes`` do not cover, so a
folder marked in the window gives inside shares to ``gradcam patterns``/``triage``/``report`` too.

The file is small JSON: ``{"version": 1, "boxes": [[x0, y0, x1, y1], …]}`` in picture pixels
(x1, y1 exclusive, as in a boxes CSV). It is read at most ``MAX_BYTES`` bytes far, each box must
be four finite numbers with x0 < x1 and y0 < y1, at most ``MAX_BOXES`` of them; anything else is
one ``MaskError`` line naming the file. Written atomically; saving no boxes deletes the file.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

from .errors import LabelError
from .files import atomic_write_bytes
from .labels import shown_path

__all__ = ["MAX_BOXES", "MAX_BYTES", "SUFFIX", "read_boxes", "sidecar_path", "write_boxes"]

SUFFIX = ".object.json"
#: Bytes a sidecar may have: a few hundred boxes take a few KB.
MAX_BYTES = 256 * 1024
#: Boxes a sidecar may hold.
MAX_BOXES = 1000
VERSION = 1

Box = tuple[float, float, float, float]


def sidecar_path(picture: str | os.PathLike[str]) -> Path:
    """``photo.jpg`` → ``photo.jpg.object.json`` (the picture's full name: photo.png's is another file)."""
    path = Path(picture)
    return path.with_name(path.name + SUFFIX)


def read_boxes(picture: str | os.PathLike[str], error: type[LabelError] = LabelError) -> list[Box] | None:
    """The boxes saved beside ``picture``, or None when it has no sidecar. ``error`` (one line) for a
    sidecar that cannot be read or is not what this module writes."""
    path = sidecar_path(picture)
    shown = shown_path(str(path))
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise error(f"{shown} cannot be read: {(exc.strerror or str(exc)).lower()}.") from None
    if len(data) > MAX_BYTES:
        raise error(f"{shown} is larger than {MAX_BYTES // 1024} KB: it is not an object sidecar.")
    try:
        content = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise error(f"{shown} is not JSON: delete it, or mark the object again in the window.") from None
    boxes = content.get("boxes") if isinstance(content, dict) else None
    if not isinstance(boxes, list) or len(boxes) > MAX_BOXES:
        raise error(f"{shown} should hold {{\"boxes\": [[x0, y0, x1, y1], …]}} (at most {MAX_BOXES}).")
    found: list[Box] = []
    for box in boxes:
        if (not isinstance(box, list) or len(box) != 4
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in box)
                or not (box[0] < box[2] and box[1] < box[3])):
            raise error(f"{shown}: a box must be four numbers x0, y0, x1, y1 with x0 < x1 and y0 < y1, "
                        f"got {json.dumps(box)[:60]}.")
        found.append((float(box[0]), float(box[1]), float(box[2]), float(box[3])))
    return found


def write_boxes(picture: str | os.PathLike[str], boxes: Sequence[Box]) -> Path:
    """Save ``boxes`` beside ``picture`` (atomically); no boxes removes the sidecar. Returns its path."""
    path = sidecar_path(picture)
    if not boxes:
        path.unlink(missing_ok=True)
        return path
    if len(boxes) > MAX_BOXES:
        raise LabelError(f"At most {MAX_BOXES} boxes a picture.")
    rows = [[round(float(v), 2) for v in box] for box in boxes]
    atomic_write_bytes(path, (json.dumps({"version": VERSION, "boxes": rows}) + "\n").encode("utf-8"))
    return path

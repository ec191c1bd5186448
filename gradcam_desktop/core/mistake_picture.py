"""A mistake's picture: the map of the predicted class beside the map of the true class, each half
headed, as ``gradcam triage`` writes it for each mistake and the report shows it."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import annotate, overlay
from .triage import TriageRow

__all__ = ["GUTTER", "explained_picture"]

GUTTER = 12  # white pixels between the two halves of a mistake's picture


def explained_picture(engine: Any, image, row: TriageRow, layer: str | None, method: str,
                      colormap: str = "jet") -> np.ndarray:
    """The map of the predicted class beside the map of the true class, each half labelled
    (one half when they are the same class)."""
    predicted = row.predicted_index
    classes = [predicted] if predicted == row.true_index else [predicted, row.true_index]
    results = engine.explain_many([image] * len(classes), layer=layer, class_indices=classes, method=method)
    heads = ([f"Predicted = true class: {row.true_name}"] if len(classes) == 1
             else [f"Predicted: {row.predicted_name}", f"True class: {row.true_name}"])
    burnt = []
    for result in results:
        display, result.flat = overlay.display_map(result.raw, image.rgb.shape[:2])
        burnt.append(annotate.burn(overlay.blend(image.rgb, display, 0.5, colormap), result, colormap))
    # A caption with a warning is a line taller: pad above it so that the two pictures line up.
    height = max(picture.shape[0] for picture in burnt)
    halves = [np.concatenate([_heading(head, picture.shape[1]),
                              np.pad(picture, ((height - picture.shape[0], 0), (0, 0), (0, 0)), constant_values=255)])
              for head, picture in zip(heads, burnt)]
    gutter = np.full((halves[0].shape[0], GUTTER, 3), 255, np.uint8)
    joined = [halves[0]] + [part for half in halves[1:] for part in (gutter, half)]
    return np.ascontiguousarray(np.concatenate(joined, axis=1))


def _heading(text: str, width: int) -> np.ndarray:
    """A white band with ``text``, sized like annotate's captions (which grow with the picture)."""
    from PIL import Image, ImageDraw, ImageFont

    size = int(min(max(round(width / 36), 13), 64))
    try:
        font = ImageFont.load_default(size=size)
    except (TypeError, AttributeError, OSError):  # Pillow without FreeType: the small bitmap font
        font = ImageFont.load_default()
    pad = max(4, size // 2)
    band = Image.new("RGB", (width, size + 2 * pad), (255, 255, 255))
    ImageDraw.Draw(band).text((pad, pad - font.getbbox("Eg")[1]), text, fill=(25, 25, 25), font=font)
    return np.array(band)

"""What a map shows, in words, and those words burnt into an exported picture.

``caption`` and ``warning`` are the sentences the window puts above the picture; ``burn`` adds
them (a band above) and the colour legend "0 … this map's maximum" (a band below) to an RGB
picture, so an exported overlay still says what it shows once it is pasted into a report.
``decorator(colormap)`` is that drawing as ``core.batch.OutputStyle.decorate`` for Export All
and ``gradcam batch``.

Text is drawn with Pillow's scalable default font (class names may carry accents, which
OpenCV's Hershey fonts cannot draw); bands and the colour ramp are NumPy/OpenCV. No Qt.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from . import cams
from .overlay import colorize
from .types import MapResult

__all__ = ["LEGEND_HIGH", "LEGEND_LOW", "SCALE_NOTE", "UNLIKELY", "burn", "caption", "decorator",
           "format_probability", "method_title", "warning"]

#: Below this probability the explained class is called unlikely: its map still has hot spots
#: (each map is scaled to its own maximum), which reads as confidence it does not have.
UNLIKELY = 0.05
LEGEND_LOW = "0"
LEGEND_HIGH = "this map's maximum"
SCALE_NOTE = "Each map is scaled to its own maximum: colours compare places within one map, not between maps."

_PAPER = (255, 255, 255)
_INK = (25, 25, 25)
_WARN = (170, 70, 0)  # dark orange: reads as a caution on white without shouting


def format_probability(p: float) -> str:
    """"93.1 %"; tiny non-zero values read "<0.1 %" rather than a misleading "0.0 %"."""
    if 0.0 < p < 0.0005:
        return "<0.1 %"
    return f"{p * 100:.1f} %"


def format_score(value: float, head: str) -> str:
    """What a class's "probability" is, in words: "93.1 %" for a classifier, "value 31.2" for a value
    (regression) head, "41.0 % of the pixels" for a segmentation head (the class's share of them)."""
    if head == "value":
        return f"value {value:.4g}"
    if head == "segmentation":
        return f"{format_probability(value)} of the pixels"
    return format_probability(value)


def caption(result: MapResult) -> str:
    """"Evidence for 'star' (0.4 %) · layer last_conv"; another method is named first and another
    score said: "Grad-CAM++ · Evidence for 'star' (93.1 %) rather than 'circle' (2.0 %) · layer …",
    "Score-CAM · Evidence against 'star' (93.1 %) · layer …". Eigen-CAM's map is no class's."""
    head = result.prediction.head
    probability = format_score(result.score, head)
    if not _class_specific(result.method):
        text = "The layer's main pattern, the same for every class"
    elif result.score_kind == "counterfactual":
        text = f"Evidence against '{result.class_name}' ({probability})"
    elif result.score_kind == "versus":
        text = f"Evidence for '{result.class_name}' ({probability}) rather than '{result.versus_name}'"
        if result.versus_index is not None and 0 <= result.versus_index < len(result.probabilities):
            text += f" ({format_score(float(result.probabilities[result.versus_index]), head)})"
    else:
        text = f"Evidence for '{result.class_name}' ({probability})"
    if result.region is not None:
        text += " · over the region drawn"
    text += " · input pixels" if result.layer == cams.INPUT_LAYER else f" · layer {result.layer}"
    if result.patch_grid is not None:  # a transformer's tokens: one value per patch
        text += f" · patch resolution {result.patch_grid[0]}×{result.patch_grid[1]}"
    return text if result.method == "gradcam" else f"{method_title(result.method)} · {text}"


def where(result: MapResult) -> str:
    """"at layer last_conv", or "on the input pixels" for a map made there (pixel methods, occlusion, RISE)."""
    return "on the input pixels" if result.layer == cams.INPUT_LAYER else f"at layer {result.layer}"


def method_title(name: str) -> str:
    """"Grad-CAM++" for "gradcam++"; an unknown name stays as it is."""
    known = cams.METHODS.get(name)
    return known.title if known is not None else name


def _class_specific(name: str) -> bool:
    known = cams.METHODS.get(name)
    return known.class_specific if known is not None else True


def warning(result: MapResult) -> str | None:
    """A caution the caption needs, or None: a flat map, or a class the model finds unlikely."""
    if result.flat:
        if not _class_specific(result.method):
            return "flat map: the layer shows no main pattern in this picture"
        if result.score_kind == "counterfactual":
            return "flat map: nothing in the picture speaks against this class at this layer"
        if result.score_kind == "versus":
            return "flat map: nothing in the picture favours this class over the other at this layer"
        return "flat map: nothing in the picture speaks for this class at this layer"
    if (result.score < UNLIKELY and _class_specific(result.method) and result.score_kind != "counterfactual"
            and result.prediction.head != "value"):  # a value is no probability: small is not unlikely
        return "unlikely class: the map still shows where the evidence would be"
    return None


# -- drawing -----------------------------------------------------------------------------------
@lru_cache(maxsize=8)
def _font(size: int) -> Any:
    try:
        return ImageFont.load_default(size=size)  # scalable (Pillow ≥ 10.1 with FreeType)
    except (TypeError, AttributeError, OSError):
        return ImageFont.load_default()  # the fixed bitmap font: small, but still text


def _text_width(text: str, size: int) -> int:
    left, _top, right, _bottom = _font(size).getbbox(text)
    return int(np.ceil(right - left))


def _font_size(width: int) -> int:
    """Text grows with the picture (a caption on a 4000-pixel photo must still be readable)."""
    return int(min(max(round(width / 36), 13), 64))


def _text_band(width: int, height: int, items: list[tuple[int, int, str, tuple[int, int, int]]],
               size: int) -> np.ndarray:
    """A white band with ``items`` = (x, y of the text's top, text, colour)."""
    image = Image.new("RGB", (width, height), _PAPER)
    draw = ImageDraw.Draw(image)
    font = _font(size)
    top = font.getbbox("Eg")[1]  # the font's ascent gap: place the ink, not the em box
    for x, y, text, colour in items:
        draw.text((x, y - top), text, fill=colour, font=font)
    return np.array(image)


def _caption_band(width: int, lines: list[tuple[str, tuple[int, int, int]]], size: int) -> np.ndarray:
    pad, line_h = max(4, size // 2), round(size * 1.35)
    return _text_band(width, 2 * pad + line_h * len(lines) - (line_h - size),
                      [(pad, pad + i * line_h, text, colour) for i, (text, colour) in enumerate(lines)], size)


def _legend(width: int, colormap: str, size: int) -> np.ndarray:
    """"0 [ramp] this map's maximum" as a white band, the ramp from the overlay's own colorize."""
    pad = max(4, size // 2)
    low_w, high_w = _text_width(LEGEND_LOW, size), _text_width(LEGEND_HIGH, size)
    height = 2 * pad + size
    band = _text_band(width, height, [(pad, pad, LEGEND_LOW, _INK), (width - pad - high_w, pad, LEGEND_HIGH, _INK)], size)
    x0, x1 = 2 * pad + low_w, width - 2 * pad - high_w
    if x1 - x0 >= 8:
        thickness = max(6, size // 2 + 2)
        y0 = (height - thickness) // 2
        ramp = colorize(np.linspace(0.0, 1.0, x1 - x0, dtype=np.float32)[None, :], colormap)
        band[y0:y0 + thickness, x0:x1] = ramp
        band[[y0 - 1, y0 + thickness], x0 - 1:x1 + 1] = (120, 120, 120)  # a thin frame
        band[y0 - 1:y0 + thickness + 1, [x0 - 1, x1]] = (120, 120, 120)
    return band


def burn(picture: np.ndarray, result: MapResult, colormap: str = "jet", *, with_caption: bool = True,
         with_legend: bool = True) -> np.ndarray:
    """``picture`` (HxWx3 uint8 RGB) with the caption (and warning) above and the legend below.

    The picture's own pixels are copied unchanged. A picture too narrow for its caption is
    centred on a wider white canvas rather than shrinking the text past reading.
    """
    picture = np.ascontiguousarray(picture, dtype=np.uint8)
    if picture.ndim != 3 or picture.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 RGB picture, got {picture.shape}")
    h, w = picture.shape[:2]
    size = _font_size(w)
    lines: list[tuple[str, tuple[int, int, int]]] = []
    if with_caption:
        lines.append((caption(result), _INK))
        note = warning(result)
        if note:
            lines.append((note[0].upper() + note[1:], _WARN))
    pad = max(4, size // 2)
    needed = max([_text_width(text, size) + 2 * pad for text, _ in lines]
                 + [_text_width(LEGEND_LOW + LEGEND_HIGH, size) + 4 * pad + 60 if with_legend else 0])
    width = max(w, needed)
    parts = []
    if lines:
        parts.append(_caption_band(width, lines, size))
    body = np.full((h, width, 3), 255, np.uint8)
    left = (width - w) // 2
    body[:, left:left + w] = picture
    parts.append(body)
    if with_legend:
        parts.append(_legend(width, colormap, size))
    return np.ascontiguousarray(np.concatenate(parts, axis=0))


def decorator(colormap: str = "jet", *, with_caption: bool = True,
              with_legend: bool = True) -> Callable[[np.ndarray, MapResult], np.ndarray]:
    """``burn`` with these settings, in the shape of ``core.batch.OutputStyle.decorate``."""
    colorize(np.zeros((1, 1), np.float32), colormap)  # an unknown colormap fails here, not per picture

    def decorate(picture: np.ndarray, result: MapResult) -> np.ndarray:
        return burn(picture, result, colormap, with_caption=with_caption, with_legend=with_legend)

    return decorate

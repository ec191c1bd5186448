"""The core's vocabulary, free of Keras, TensorFlow and Qt: what the window may import directly.

* ``ModelSpec`` — the one parser of what a user names as a model ("demo", "zoo:NAME", a path)
  and its display label;
* ``LayerNode`` — one layer of a model's tree;
* ``Prediction`` — class probabilities of one image;
* ``Target`` — which pre-softmax score a map explains: a class, a class versus another, or
  against a class;
* ``MapResult`` — THE result of one map, read by the CLI (text, ``--json``, ``results.csv``),
  the worker (its ``mapReady`` signal), the window (caption, status, class list) and every export
  (sidecar, Export All). ``record()`` is its one flat, JSON-ready form.
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CSV_FIELDS", "DEMO", "ZOO_PREFIX", "LayerNode", "MapResult", "ModelSpec", "Prediction", "Target"]

DEMO = "demo"
ZOO_PREFIX = "zoo:"
#: results.csv's columns, shared by ``gradcam batch`` and the window's Export All.
CSV_FIELDS = ["image", "predicted_index", "predicted_name", "probability", "explained_index",
              "explained_name", "explained_probability", "method", "score_kind", "versus_name",
              "explained_score", "layer", "seconds", "error"]


@dataclass(frozen=True)
class ModelSpec:
    """What the user asked to open: the demo, a zoo model or a file.

    ``ModelSpec.parse`` is the only place that reads the text; ``str(spec)`` gives it back in its
    canonical form (a file path with ``~`` expanded) and ``label`` as the user knows it.
    """

    kind: str  # "demo" | "zoo" | "file"
    value: str  # "demo", the zoo name, or the file's path

    @classmethod
    def parse(cls, text: str | os.PathLike | ModelSpec) -> ModelSpec:
        if isinstance(text, ModelSpec):
            return text
        raw = os.fspath(text)
        if raw == DEMO:
            return cls("demo", DEMO)
        if raw.startswith(ZOO_PREFIX):
            return cls("zoo", raw[len(ZOO_PREFIX):])
        return cls("file", str(Path(raw).expanduser()) if raw.startswith("~") else raw)

    @staticmethod
    def looks_like_spec(text: str) -> bool:
        """True for "demo" and "zoo:…" (a path needs its suffix checked by the caller)."""
        return text == DEMO or text.startswith(ZOO_PREFIX)

    @property
    def is_file(self) -> bool:
        return self.kind == "file"

    @property
    def path(self) -> Path | None:
        return Path(self.value) if self.kind == "file" else None

    @property
    def label(self) -> str:
        """Short name for menus and messages: "Demo model", "zoo:ResNet50" or the file's name."""
        if self.kind == "demo":
            return "Demo model"
        if self.kind == "zoo":
            return ZOO_PREFIX + self.value
        return Path(self.value).name or self.value

    def __str__(self) -> str:
        return {"demo": DEMO, "zoo": ZOO_PREFIX + self.value}.get(self.kind, self.value)


@dataclass
class LayerNode:
    """One layer of the tree; ``children`` holds the layers of a nested model."""

    path: str  # "backbone/last_conv"
    name: str
    type: str  # "Conv2D"
    output_shape: tuple
    eligible: bool  # a map can be taken here (4-D output with H, W > 1)
    children: list[LayerNode] = field(default_factory=list)


@dataclass
class Prediction:
    """Class probabilities for one image (binary heads: [1 − p, p]; a value head: the values, in
    their order; a segmentation head: each class's share of the output pixels)."""

    probabilities: np.ndarray
    top: list[tuple[int, str, float]]  # (index, name, probability), best first
    head: str  # one of heads.HEAD_KINDS
    mask: np.ndarray | None = None  # a segmentation head: the predicted class of each output pixel (H′, W′)


@dataclass(frozen=True)
class Target:
    """Which pre-softmax score y a map explains.

    * the class (default): y = y_c, the evidence for c;
    * ``versus`` B: y = y_c − y_B, "why c rather than B";
    * ``counterfactual``: y = −y_c, "what speaks against c".

    A value head's y_c is the value itself; a segmentation head's is the sum of c's pre-softmax
    scores over c's predicted mask, or over ``region``.

    ``class_index`` None is each picture's top class. For a binary head class 1 is z and class 0
    is −z, as everywhere else.
    """

    class_index: int | None = None
    versus: int | None = None
    counterfactual: bool = False
    #: A segmentation model's region: (top, left, bottom, right) as fractions of the picture; the
    #: scores are summed over it instead of over each class's predicted mask (None).
    region: tuple[float, float, float, float] | None = None

    @property
    def kind(self) -> str:
        """"class", "versus" or "counterfactual"."""
        if self.counterfactual:
            return "counterfactual"
        return "versus" if self.versus is not None else "class"


@dataclass
class MapResult:
    """One map and everything that says what it shows.

    ``raw`` is at the layer's resolution (a pixel method's: the model input's), after the method's final
    ReLU (or display reduction), unscaled. ``display`` is
    optional: the window's uint8 map at the picture's size (0..255 = this map's 0..max).
    """

    raw: np.ndarray
    layer: str
    class_index: int
    class_name: str
    score: float  # probability of the explained class
    prediction: Prediction
    method: str = "gradcam"
    seconds: float = 0.0
    model: str | None = None  # the model's spec ("demo", "zoo:Name", a path)
    preprocess: str | None = None
    image: str | None = None  # the picture's path, or its name when it has no file
    image_key: str | None = None  # the worker's key for the picture
    generation: int = 0  # the worker's model generation
    display: np.ndarray | None = None
    flat: bool = False
    cached: bool = False
    request_id: int = 0
    versus_index: int | None = None  # the score was y_c − y_versus
    versus_name: str | None = None
    counterfactual: bool = False  # the score was −y_c
    target_score: float = float("nan")  # the value of the explained pre-softmax score y
    layers: tuple[str, ...] = ()  # the layers of a fused map (``layer`` joins them with " + ")
    patch_grid: tuple[int, int] | None = None  # a transformer's token layer read as (h, w) patches
    #: A pixel method's signed attribution at the model input, (H, W, C), or (H, W) for occlusion and
    #: RISE (``raw`` is its display reduction, ≥ 0); what ``--heatmap`` writes. None for a layer's map.
    attribution: np.ndarray | None = None
    #: The query this map answers (session.requests.MapSpec: picture, layer, class, method, score),
    #: carried back unchanged by the session's engine; None from the core alone.
    query: Any = None
    region: tuple[float, float, float, float] | None = None  # ``Target.region``

    @property
    def score_kind(self) -> str:
        """"class", "versus" or "counterfactual": which score the map explains."""
        return Target(self.class_index, self.versus_index, self.counterfactual).kind

    @property
    def target(self) -> Target:
        return Target(self.class_index, self.versus_index, self.counterfactual, self.region)

    @property
    def predicted(self) -> tuple[int, str, float]:
        """(index, name, probability) of the top class."""
        return self.prediction.top[0]

    @property
    def probabilities(self) -> np.ndarray:
        return self.prediction.probabilities

    def with_(self, **changes: Any) -> MapResult:
        """A copy with some fields changed (arrays are shared, not copied)."""
        return replace(self, **changes)

    def record(self) -> dict[str, Any]:
        """The flat JSON-ready description shared by ``--json``, sidecars and results.csv."""
        top_index, top_name, top_p = self.predicted
        return {
            "image": self.image,
            "model": self.model,
            "method": self.method,
            "score_kind": self.score_kind,
            "versus_index": None if self.versus_index is None else int(self.versus_index),
            "versus_name": self.versus_name,
            "explained_score": _finite_or_none(self.target_score),
            "head": self.prediction.head,
            "region": None if self.region is None else [round(float(side), 6) for side in self.region],
            "layer": self.layer,
            "layers": list(self.layers) or [self.layer],
            "patch_grid": None if self.patch_grid is None else [int(side) for side in self.patch_grid],
            "class_index": int(self.class_index),
            "class_name": self.class_name,
            "score": float(self.score),
            "predicted_index": int(top_index),
            "predicted_name": top_name,
            "predicted_probability": float(top_p),
            "heatmap_shape": [int(side) for side in (self.raw if self.attribution is None else self.attribution).shape],
            "flat": bool(self.flat),
            "preprocess": self.preprocess,
            "seconds": round(float(self.seconds), 4),
        }

    def csv_row(self) -> dict[str, Any]:
        """One row of results.csv (``CSV_FIELDS``)."""
        top_index, top_name, top_p = self.predicted
        return {"image": self.image, "predicted_index": int(top_index), "predicted_name": top_name,
                "probability": f"{top_p:.6f}", "explained_index": int(self.class_index),
                "explained_name": self.class_name, "explained_probability": f"{self.score:.6f}",
                "method": self.method, "score_kind": self.score_kind, "versus_name": self.versus_name or "",
                "explained_score": "" if not np.isfinite(self.target_score) else f"{self.target_score:.6g}",
                "layer": self.layer, "seconds": f"{self.seconds:.4f}", "error": ""}

    def sidecar(self, *, image_size: tuple[int, int], alpha: float, colormap: str,
                model_name: str | None = None, model_sha256: str | None = None,
                versions: dict | None = None, files: dict | None = None) -> dict[str, Any]:
        """The JSON sidecar written beside an exported picture: the record plus how it was drawn."""
        data = self.record()
        data.update({
            "image_size": {"height": int(image_size[0]), "width": int(image_size[1])},
            "model_name": model_name,
            "model_sha256": model_sha256,
            "alpha": float(alpha),
            "colormap": colormap,
            "scale": "each map is scaled to its own maximum: 0 … this map's maximum",
            "versions": {k: v for k, v in (versions or {}).items() if isinstance(v, str)},
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        })
        if files:
            data["files"] = dict(files)
        return data


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None

"""The engine: pictures in, ``MapResult``s out, for one loaded model.

    capture (capture.py)   one compiled forward + backward per (model, layer): A, ∂y/∂A, logits
    reduce  (cams.py)      a pure function of A and ∂y/∂A: Grad-CAM's ReLU(Σ_k mean_ij(g_k) A_k), …

y is the explained **pre-softmax** score (heads.py): the class logit, ±z for a binary head. The
engine feeds pictures at the model's input size (preprocessed), batches them through a capture,
and turns each row into a ``MapResult``. The class is a tensor argument (a score vector), so
changing the class never retraces; images of the same size never retrace either.
"""

from __future__ import annotations

import difflib
import time
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from . import cams
from . import preprocess as preprocessing
from .capture import Capture
from .errors import ClassSelectionError
from .graph import run_graph
from .heads import Head, detect_head
from .images import LoadedImage, to_model_input
from .layers import default_layer
from .models import LoadedModel
from .types import MapResult, Prediction

__all__ = ["GradCam", "MapResult", "Prediction", "Explanation", "MAX_VARIABLE_SIDE", "MIN_VARIABLE_SIDE"]

#: Largest side used for models whose input size is variable (keeps memory and time bounded).
MAX_VARIABLE_SIDE = 512
#: Smallest side for those models: a tiny image would leave the last layers a 1 × 1 grid.
MIN_VARIABLE_SIDE = 96
#: How many classes a "no such class" message lists in full.
LIST_CLASSES_UP_TO = 20

#: The engine's result is the one result type; the old name stays for scripts that used it.
Explanation = MapResult


class GradCam:
    """Maps for one loaded model. Not thread-safe: use it from one thread.

    ``input_cache`` > 0 keeps the preprocessed input of that many recent images, so explaining
    other classes or layers of the same picture skips the resize (25–70 ms for a 12-megapixel
    photo). Off by default: a one-shot caller gains nothing from it.
    """

    def __init__(self, loaded: LoadedModel, *, input_cache: int = 0):
        self.loaded = loaded
        self._input_cache_size = max(0, int(input_cache))
        # id(rgb) -> (rgb, batch): the array is held so its id cannot be reused by another one.
        self._inputs: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self.model = loaded.model
        self.head: Head = loaded.head if isinstance(loaded.head, Head) else detect_head(self.model)
        self.default_layer = default_layer(self.model)
        self._captures: dict[str, Capture] = {}
        # reduce_retracing: variable-size models see many image sizes; after the second size TF
        # traces one shape-generic function instead of one per size.
        self._predict_function = tf.function(self._logits, reduce_retracing=True)
        #: Number of traces per layer (None: the prediction). Tests check same-size images do not retrace.
        self.trace_counts: dict[str | None, int] = {}

    @property
    def class_names(self) -> list[str]:
        return self.loaded.class_names

    # -- inputs --------------------------------------------------------------------------
    def model_input(self, image: LoadedImage) -> np.ndarray:
        """The preprocessed batch (1, h, w, c) of one image at the model's input size.

        With ``input_cache`` the batch is shared between calls and therefore read-only.
        """
        if self._input_cache_size:
            hit = self._inputs.get(id(image.rgb))
            if hit is not None and hit[0] is image.rgb:
                self._inputs.move_to_end(id(image.rgb))
                return hit[1]
        height, width = self.input_size_for(image)
        array = to_model_input(image.rgb, (height, width), self.loaded.channels)
        batch = preprocessing.apply(array[np.newaxis], self.loaded.preprocess)
        if self._input_cache_size:
            batch.flags.writeable = False
            self._inputs[id(image.rgb)] = (image.rgb, batch)
            while len(self._inputs) > self._input_cache_size:
                self._inputs.popitem(last=False)
        return batch

    def input_size_for(self, image: LoadedImage) -> tuple[int, int]:
        """The model's own size, or the image's (capped) for variable-size models."""
        height, width = self.loaded.input_size
        if height and width:
            return int(height), int(width)
        image_h, image_w = image.rgb.shape[:2]
        scale = min(1.0, MAX_VARIABLE_SIDE / max(image_h, image_w))
        scale = max(scale, MIN_VARIABLE_SIDE / min(image_h, image_w))  # small images are enlarged
        return round(image_h * scale), round(image_w * scale)

    # -- compiled functions ------------------------------------------------------------
    def _count_trace(self, layer: str | None) -> None:
        self.trace_counts[layer] = self.trace_counts.get(layer, 0) + 1

    def _logits(self, batch):
        self._count_trace(None)
        logits, _ = run_graph(self.model, batch, self.head)
        return tf.cast(logits, tf.float32)

    def capture(self, layer: str) -> Capture:
        """The compiled capture at ``layer`` (built once per layer; LayerError if not eligible)."""
        capture = self._captures.get(layer)
        if capture is None:
            height, width = self.loaded.input_size
            capture = Capture(self.model, self.head, layer, (height or None, width or None, self.loaded.channels),
                              on_trace=self._count_trace)
            self._captures[layer] = capture
        return capture

    def prepare(self, layer: str | None = None) -> bool:
        """Trace and instantiate the capture at ``layer`` (default: the default layer) before its
        first map; False if it was ready already. See capture.py for why a UI program wants this."""
        return self.capture(layer or self.default_layer).prepare(MIN_VARIABLE_SIDE)

    # -- public API --------------------------------------------------------------------
    def predict(self, image: LoadedImage) -> Prediction:
        """Class probabilities for ``image``."""
        logits = self._predict_function(tf.constant(self.model_input(image)))
        return self.prediction(logits.numpy()[0])

    def prediction(self, logits: np.ndarray, top: int = 5) -> Prediction:
        """A ``Prediction`` from one row of logits."""
        probabilities = self.head.probabilities(logits)
        order = np.argsort(-probabilities, kind="stable")[:top]
        names = self.class_names
        return Prediction(
            probabilities=probabilities,
            top=[(int(i), names[i], float(probabilities[i])) for i in order],
            head=self.head.kind,
        )

    def resolve_class(self, cls: int | str | None, prediction: Prediction | None = None) -> int:
        """A class index from an index, a name (case-insensitive) or None (the top class)."""
        names = self.class_names
        if cls is None:
            if prediction is None:
                raise ClassSelectionError("No class given and no prediction to pick one from.")
            return prediction.top[0][0]
        if isinstance(cls, str) and not cls.strip().lstrip("-").isdigit():
            return _class_by_name(names, cls)
        index = int(cls)
        if not 0 <= index < len(names):
            raise ClassSelectionError(
                f"Class index {index} is out of range: this model has {len(names)} classes "
                f"(0–{len(names) - 1})."
            )
        return index

    def explain(self, image: LoadedImage, layer: str | None = None, class_index: int | str | None = None,
                method: str = "gradcam") -> MapResult:
        """The map of ``class_index`` (default: the top class) at ``layer`` (default: the last spatial one)."""
        return self.explain_many([image], layer, [class_index], method)[0]

    def explain_many(self, images: Sequence[LoadedImage], layer: str | None = None,
                     class_indices: Sequence[int | str | None] | None = None,
                     method: str = "gradcam") -> list[MapResult]:
        """One map per (image, class) pair, computed in one batched capture where sizes allow.

        ``class_indices[i]`` None explains image i's top class. The same picture may appear
        several times (several classes of one picture cost one batch).
        """
        start = time.perf_counter()
        reduction = cams.method(method)
        layer = layer or self.default_layer
        capture = self.capture(layer)
        if class_indices is None:
            class_indices = [None] * len(images)
        asked = [None if c is None else self.resolve_class(c) for c in class_indices]
        inputs = [self.model_input(image) for image in images]
        weights = np.stack([np.zeros(self.head.units, np.float32) if c is None else self.head.class_weights(c)
                            for c in asked])
        captured = []
        for group in _same_shape_groups(inputs):
            batch = np.concatenate([inputs[i] for i in group]) if len(group) > 1 else inputs[group[0]]
            captured.append((group, capture.run(batch, weights[group])))
        seconds = (time.perf_counter() - start) / max(1, len(images))
        results: list[MapResult | None] = [None] * len(images)
        for group, run in captured:
            for row, i in enumerate(group):
                prediction = self.prediction(run.logits[row])
                chosen = asked[i]
                index = prediction.top[0][0] if chosen is None else chosen
                results[i] = MapResult(
                    raw=reduction.reduce(run.activations[row], run.gradients[row]),
                    layer=layer, class_index=index, class_name=self.class_names[index],
                    score=float(prediction.probabilities[index]), prediction=prediction, method=method,
                    seconds=seconds, model=self.loaded.source, preprocess=self.loaded.preprocess,
                    image=images[i].path or images[i].name,
                )
        return [r for r in results if r is not None]


def _same_shape_groups(inputs: list[np.ndarray]) -> list[list[int]]:
    """Indices grouped by input shape, in first-seen order (a variable-size model cannot batch sizes)."""
    groups: dict[tuple, list[int]] = {}
    for i, batch in enumerate(inputs):
        groups.setdefault(batch.shape, []).append(i)
    return list(groups.values())


def _class_by_name(names: list[str], asked: str) -> int:
    wanted = asked.strip().casefold()
    folded = [name.casefold() for name in names]
    if wanted in folded:
        return folded.index(wanted)
    close = [names[folded.index(m)] for m in difflib.get_close_matches(wanted, folded, n=3, cutoff=0.6)]
    close += [n for n in names if wanted and wanted in n.casefold() and n not in close][: 5 - len(close)]
    message = f"No class named '{asked}'."
    if close:
        message += f" Did you mean: {', '.join(close)}?"
    if len(names) <= LIST_CLASSES_UP_TO:
        message += f" This model's classes: {', '.join(names)}."
    else:
        message += " `gradcam predict` shows the likely ones; class indices work too."
    raise ClassSelectionError(message)

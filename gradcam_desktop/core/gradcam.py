"""The Grad-CAM engine (Selvaraju et al., 2017), compiled once per (model, layer).

    α_k = mean_ij ∂y^c/∂A^k_ij        map = ReLU(Σ_k α_k A^k)

y^c is the pre-softmax score of class c (see heads.py); A is the chosen layer's output. One
``tf.function`` per layer computes the forward pass, the gradient and the map together, so a
map costs about one forward pass plus the (small) backward pass from the head to that layer.
The class is a tensor argument (a weight vector over the logits), so changing the class never
retraces; images of the same size never retrace either.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from . import preprocess as preprocessing
from .errors import ClassSelectionError
from .graph import run_graph
from .heads import Head, detect_head
from .images import LoadedImage, to_model_input
from .layers import check_eligible, default_layer
from .models import LoadedModel

#: Largest side used for models whose input size is variable (keeps memory and time bounded).
MAX_VARIABLE_SIDE = 512
#: Smallest side for those models: a tiny image would leave the last layers a 1 × 1 grid.
MIN_VARIABLE_SIDE = 96


@dataclass
class Prediction:
    """Class probabilities for one image."""

    probabilities: np.ndarray
    top: list[tuple[int, str, float]]
    head: str


@dataclass
class Explanation:
    """One Grad-CAM map and what it explains."""

    raw: np.ndarray
    layer: str
    class_index: int
    class_name: str
    score: float
    prediction: Prediction
    seconds: float


class GradCam:
    """Grad-CAM for one loaded model. Not thread-safe: use it from one thread.

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
        self.head: Head = loaded.head or detect_head(self.model)
        self.default_layer = default_layer(self.model)
        self._map_functions: dict[str, tf.types.experimental.PolymorphicFunction] = {}
        # reduce_retracing: variable-size models see many image sizes; after the second size TF
        # traces one shape-generic function instead of one per size.
        self._predict_function = tf.function(self._logits, reduce_retracing=True)
        #: Number of traces per layer (tests check that same-size images do not retrace).
        self.trace_counts: dict[str | None, int] = {}

    @property
    def class_names(self) -> list[str]:
        return self.loaded.class_names

    # -- inputs --------------------------------------------------------------------------
    def model_input(self, image: LoadedImage) -> np.ndarray:
        """The preprocessed batch of one image at the model's input size.

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
        # Runs only while tracing: a Python side effect inside tf.function.
        self.trace_counts[layer] = self.trace_counts.get(layer, 0) + 1

    def _logits(self, batch):
        self._count_trace(None)
        logits, _ = run_graph(self.model, batch, self.head)
        return tf.cast(logits, tf.float32)

    def _top_weights(self, logits):
        if self.head.kind == "binary":
            # Class 1 when z > 0 (p > 0.5), else class 0, which explains -z.
            return tf.where(logits > 0.0, 1.0, -1.0)
        return tf.one_hot(tf.argmax(logits), self.head.units, dtype=tf.float32)

    def _map_function(self, layer: str):
        function = self._map_functions.get(layer)
        if function is None:
            check_eligible(self.model, layer)

            def gradcam(batch, class_weights):
                self._count_trace(layer)
                with tf.GradientTape() as tape:
                    logits, activations = run_graph(self.model, batch, self.head, layer, tape.watch)
                    logits = tf.cast(logits, tf.float32)
                    # All-zero weights ask for the top class, decided here from the same
                    # forward pass (no second pass to predict first).
                    weights = tf.where(
                        tf.reduce_any(class_weights != 0.0),
                        class_weights,
                        tf.stop_gradient(self._top_weights(logits[0])),
                    )
                    score = tf.reduce_sum(logits[0] * weights)
                gradients = tape.gradient(score, activations)
                activations = tf.cast(activations, tf.float32)
                gradients = tf.cast(gradients, tf.float32)
                alphas = tf.reduce_mean(gradients[0], axis=(0, 1))
                cam = tf.nn.relu(tf.reduce_sum(activations[0] * alphas, axis=-1))
                return cam, logits[0]

            function = tf.function(gradcam, reduce_retracing=True)
            self._map_functions[layer] = function
        return function

    # -- public API --------------------------------------------------------------------
    def predict(self, image: LoadedImage) -> Prediction:
        """Class probabilities for ``image``."""
        logits = self._predict_function(tf.constant(self.model_input(image)))
        return self._prediction(logits.numpy()[0])

    def _prediction(self, logits: np.ndarray, top: int = 5) -> Prediction:
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
            wanted = cls.strip().casefold()
            for index, name in enumerate(names):
                if name.casefold() == wanted:
                    return index
            close = [n for n in names if wanted in n.casefold()][:5]
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise ClassSelectionError(f"No class named '{cls}'.{hint}")
        index = int(cls)
        if not 0 <= index < len(names):
            raise ClassSelectionError(
                f"Class index {index} is out of range: this model has {len(names)} classes "
                f"(0–{len(names) - 1})."
            )
        return index

    def explain(
        self,
        image: LoadedImage,
        layer: str | None = None,
        class_index: int | str | None = None,
    ) -> Explanation:
        """The Grad-CAM map of ``class_index`` (default: the top class) at ``layer``."""
        start = time.perf_counter()
        layer = layer or self.default_layer
        function = self._map_function(layer)
        batch = tf.constant(self.model_input(image))
        if class_index is None:
            weights = np.zeros(self.head.units, dtype=np.float32)
        else:
            weights = self.head.class_weights(self.resolve_class(class_index))
        cam, logits = function(batch, tf.constant(weights))
        prediction = self._prediction(logits.numpy())
        index = prediction.top[0][0] if class_index is None else self.resolve_class(class_index)
        raw = np.nan_to_num(cam.numpy().astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        return Explanation(
            raw=raw,
            layer=layer,
            class_index=index,
            class_name=self.class_names[index],
            score=float(prediction.probabilities[index]),
            prediction=prediction,
            seconds=time.perf_counter() - start,
        )

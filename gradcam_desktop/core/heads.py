"""What score to explain: the pre-softmax logits, whatever shape the classifier's head has.

Grad-CAM differentiates the class score *before* softmax/sigmoid (Selvaraju et al., 2017): the
softmax couples every class and saturates, so its gradient says little about the chosen class.
We find the operation that produces the model's output (looking inside nested models) and
either skip a separate ``Activation``/``Softmax`` layer or run a linear twin of a layer whose
built-in activation is softmax/sigmoid. The user's model is never modified.

Two heads are not classifiers:

* **value** (regression): linear units whose outputs are values (an age, a quality score). The
  explained score is the value y itself, or −y ("what pushes it down"); the class list shows the
  values. A one-unit linear output is read as a binary logit unless the model's file says it was
  trained with a regression loss (``loss_name``) or the sidecar declares ``"head": "value"``.
* **segmentation**: an output of shape (H′, W′, C) of per-pixel class scores. Its score space has
  C + H′·W′·C entries (``Head.units``): first, for each class c, y_c = the sum of c's pre-softmax
  scores over the pixels the model assigns to c (its predicted mask, fixed during the pass:
  pytorch-grad-cam's ``SemanticSegmentationTarget``); then every pixel's scores, so that a score
  vector can pick any region (``region_weights``: a box). Every method that takes a score vector
  works on it unchanged. A one-channel sigmoid output is read as two classes, [−z, z] per pixel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .backend import is_operation, keras_of
from .errors import ModelLoadError
from .layers import child_layers, is_submodel

HEAD_KINDS = ("softmax", "logits", "binary", "multilabel", "probabilities", "value", "segmentation")
#: What a sidecar may declare a head to be ("head" in model.gradcam.json).
DECLARABLE = ("softmax", "logits", "binary", "multilabel", "value")
#: Loss names (Keras 2 and 3, functions and classes) that say a unit was trained as a value.
REGRESSION_LOSSES = ("mse", "mae", "mape", "msle", "mean_squared_error", "mean_absolute_error",
                     "mean_absolute_percentage_error", "mean_squared_logarithmic_error", "huber", "huber_loss",
                     "log_cosh", "logcosh", "meansquarederror", "meanabsoluteerror", "meanabsolutepercentageerror",
                     "meansquaredlogarithmicerror")
_REGRESSION = {name.replace("_", "") for name in REGRESSION_LOSSES}
_SQUASHING = ("softmax", "sigmoid")


@dataclass
class Head:
    """How to get logits and probabilities out of a model.

    ``kind``: softmax (probabilities = softmax(logits)), logits (a linear head: we show
    softmax(logits) as probabilities), binary (one unit: p = sigmoid(z), classes [1-p, p];
    class 1 explains z and class 0 explains -z), multilabel (several sigmoid units: each logit),
    probabilities (a black-box file whose output is already probabilities and whose logits it does
    not show: the explained score is the class's probability), value (regression: the "probabilities"
    are the values themselves), segmentation (module docstring; ``grid`` = (H′, W′), ``classes`` = C).
    ``skip``: an activation layer whose input is the logits (run as identity).
    ``linear``: a layer to replace by ``linear_twin`` (same weights, no activation).
    """

    kind: str
    units: int
    skip: Any = None  # keras layers (untyped)
    linear: Any = None
    linear_twin: Any = None
    grid: tuple[int, int] | None = None  # segmentation: the output's (H′, W′)
    classes: int = 0  # segmentation: C (2 for a one-channel sigmoid output)
    channels: int = 0  # segmentation: the output's own channels (1 for a sigmoid mask)

    @property
    def num_classes(self) -> int:
        if self.kind == "segmentation":
            return self.classes
        return 2 if self.kind == "binary" else self.units

    @property
    def is_classifier(self) -> bool:
        """False for a value head: no class is "predicted", there is nothing to be right or wrong about."""
        return self.kind != "value"

    # -- segmentation ------------------------------------------------------------------------
    def pixel_scores(self, row: np.ndarray) -> np.ndarray:
        """(H′, W′, C) per-pixel class scores from one row of a segmentation head's score space."""
        assert self.grid is not None
        return np.asarray(row[self.classes:], np.float64).reshape(*self.grid, self.classes)

    def mask(self, row: np.ndarray) -> np.ndarray | None:
        """The predicted class of every output pixel, (H′, W′) int32; None for a classifier."""
        if self.kind != "segmentation":
            return None
        return np.argmax(self.pixel_scores(row), axis=-1).astype(np.int32)

    def reduce(self, outputs):
        """The score space of the model's raw output: itself, or a segmentation output's C region sums
        over the predicted masks followed by every pixel's scores (a TensorFlow tensor in and out)."""
        if self.kind != "segmentation":
            return outputs
        import tensorflow as tf

        scores = tf.cast(outputs, tf.float32)
        if self.channels == 1:
            scores = tf.concat([-scores, scores], axis=-1)
        predicted = tf.stop_gradient(tf.one_hot(tf.argmax(scores, axis=-1), self.classes, dtype=tf.float32))
        sums = tf.reduce_sum(scores * predicted, axis=[1, 2])
        return tf.concat([sums, tf.reshape(scores, (tf.shape(scores)[0], -1))], axis=-1)

    def region_weights(self, class_index: int, box: tuple[float, float, float, float]) -> np.ndarray:
        """The score vector of "class c's scores summed over ``box``": (top, left, bottom, right) as
        fractions of the picture, mapped to the output pixels whose centres lie inside (at least the
        one under the box's centre)."""
        if self.kind != "segmentation" or self.grid is None:
            raise ValueError("A region is a segmentation model's: this head has none.")
        cells = region_cells(self.grid, box)
        weights = np.zeros(self.units, np.float32)
        grid = weights[self.classes:].reshape(*self.grid, self.classes)
        grid[..., class_index][cells] = 1.0
        return weights

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Class probabilities from one row of logits."""
        logits = np.asarray(logits, dtype=np.float64)
        if self.kind == "binary":
            p = 1.0 / (1.0 + np.exp(-logits[0]))
            return np.array([1.0 - p, p])
        if self.kind == "multilabel":
            return 1.0 / (1.0 + np.exp(-logits))
        if self.kind == "probabilities":
            return np.nan_to_num(logits, nan=0.0, posinf=1.0, neginf=0.0)
        if self.kind == "value":
            return logits
        if self.kind == "segmentation":  # each class's share of the output pixels
            counts = np.bincount(np.argmax(self.pixel_scores(logits), axis=-1).ravel(), minlength=self.classes)
            return counts / max(1, counts.sum())
        shifted = np.exp(logits - logits.max())
        return shifted / shifted.sum()

    def class_weights(self, class_index: int) -> np.ndarray:
        """The vector w with y^c = Σ w·logits: a one-hot, or ±1 for a binary head (a segmentation
        head: class c's sum over its predicted mask)."""
        weights = np.zeros(self.units, dtype=np.float32)
        if self.kind == "binary":
            weights[0] = 1.0 if class_index == 1 else -1.0
        else:
            weights[class_index] = 1.0
        return weights

    def top_index(self, logits: np.ndarray) -> int:
        """The class a map explains when none is chosen: the top class (a value head: its first value;
        a segmentation head: the class that covers most pixels)."""
        if self.kind == "value":
            return 0
        if self.kind == "binary":
            return int(float(logits[0]) > 0)
        return int(np.argmax(self.probabilities(logits) if self.kind == "segmentation" else logits))


def region_cells(grid: tuple[int, int], box: tuple[float, float, float, float]) -> tuple[slice, slice]:
    """The rows and columns of a (H′, W′) grid whose cell centres lie in ``box`` (fractions top, left,
    bottom, right); the cell under the box's centre when none does."""
    height, width = grid
    top, left, bottom, right = (float(side) for side in box)

    def span(low: float, high: float, size: int) -> slice:
        # Cell i's centre is (i + 0.5) / size: inside when low <= centre <= high.
        first = max(0, int(np.ceil(low * size - 0.5)))
        last = min(size - 1, int(np.floor(high * size - 0.5)))
        if last < first:
            first = last = min(size - 1, max(0, int((low + high) / 2 * size)))
        return slice(first, last + 1)

    return span(top, bottom, height), span(left, right, width)


def final_operation(model):
    """The layer that produces the model's (single) output, looking into nested models."""
    if isinstance(model, keras_of(model).Sequential):
        layer = child_layers(model)[-1]
    else:
        history = getattr(model.outputs[0], "_keras_history", None)
        if history is None:
            raise ModelLoadError("Cannot find the layer that produces this model's output.")
        layer = history[0]
    return final_operation(layer) if is_submodel(layer) else layer


def _activation_name(layer) -> str | None:
    if isinstance(layer, keras_of(layer).layers.Softmax):
        return "softmax"
    if is_operation(layer):
        symbol = getattr(layer, "symbol", None)  # Keras 2: "nn.softmax", "math.sigmoid", …
        name = (symbol.rsplit(".", 1)[-1] if isinstance(symbol, str) else type(layer).__name__).lower()
        return name if name in _SQUASHING else None
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", None)


def _linear_twin(layer):
    """A copy of ``layer`` without its activation, sharing nothing with the user's model."""
    config = layer.get_config()
    config["activation"] = "linear"
    twin = type(layer).from_config(config)
    twin.build_from_config(layer.get_build_config())
    twin.set_weights(layer.get_weights())
    return twin


def loss_name(loss, output_name: str, index: int) -> str | None:
    """The name of the loss an output was trained with, from a compile config's "loss" (plain JSON: a
    name, a serialized loss, a list by output or a dict by output name); None when it does not say."""
    if isinstance(loss, list):
        loss = loss[index] if index < len(loss) else None
    elif isinstance(loss, dict) and "class_name" not in loss:
        loss = loss.get(output_name)
    if isinstance(loss, dict):
        loss = loss.get("class_name") if loss.get("class_name") != "function" else (loss.get("config") or "")
    if isinstance(loss, str):
        return loss.rsplit(">", 1)[-1].rsplit(".", 1)[-1].lower().replace("_", "") if loss else None
    return None


def detect_head(model, declared: str | None = None, loss: str | None = None) -> Head:
    """Inspect the output layer and say how logits are obtained.

    ``declared`` is the kind the sidecar gives (``DECLARABLE``); ``loss`` the name of the loss the
    model's file says it was trained with, which tells a one-unit regression from a binary logit.
    A head that cannot be read raises ModelLoadError (one line: which head and why)."""
    shape = tuple(model.outputs[0].shape)
    units = shape[-1]
    layer = final_operation(model)
    name = _activation_name(layer)
    skip = linear = twin = None
    layers = keras_of(layer).layers
    separate = isinstance(layer, (layers.Activation, layers.Softmax)) or is_operation(layer)
    if separate and name in _SQUASHING:
        skip = layer
    elif name in _SQUASHING:
        linear = layer
        twin = _linear_twin(layer)
    if len(shape) == 4:
        return _segmentation_head(shape, name, declared, skip=skip, linear=linear, linear_twin=twin)
    if declared not in (None, ""):
        kind = _declared_kind(declared, name, int(units))
    elif name == "softmax":
        kind = "softmax"
    elif name == "sigmoid":
        kind = "binary" if units == 1 else "multilabel"
    elif isinstance(loss, str) and loss.lower().replace("_", "") in _REGRESSION:
        kind = "value"
    else:
        # A linear head: one unit is read as a binary logit, several as softmax logits.
        kind = "binary" if units == 1 else "logits"
    return Head(kind=kind, units=int(units), skip=skip, linear=linear, linear_twin=twin)


def _declared_kind(declared: str, activation: str | None, units: int) -> str:
    if declared not in DECLARABLE:
        raise ModelLoadError(f'The sidecar\'s "head" must be one of {", ".join(DECLARABLE)}, not {declared!r}.')
    if declared == "binary" and units != 1:
        raise ModelLoadError(f'The sidecar declares a binary head, but the output has {units} units (binary is one).')
    if declared == "value" and activation in _SQUASHING:
        raise ModelLoadError(f"The sidecar declares a value head, but the output ends in {activation}: "
                             "a value head is a linear unit.")
    if declared == "softmax" and activation == "sigmoid" or declared in ("binary", "multilabel") and activation == "softmax":
        raise ModelLoadError(f"The sidecar declares a {declared} head, but the output ends in {activation}.")
    return declared


def _segmentation_head(shape: tuple, activation: str | None, declared: str | None, **layers) -> Head:
    height, width, channels = shape[1:]
    if not (height and width and channels):
        raise ModelLoadError(f"The output of shape {shape} is a segmentation output of variable size: "
                             "Grad-CAM Desktop explains segmentation outputs of a fixed size.")
    if declared not in (None, "", "segmentation"):
        raise ModelLoadError(f"The sidecar declares a {declared} head, but the output of shape {shape} "
                             "is per-pixel: a segmentation head.")
    if channels == 1 and activation == "softmax":
        raise ModelLoadError(f"The output of shape {shape} is a softmax over one channel: it is always 1.")
    classes = 2 if channels == 1 else int(channels)
    units = classes + int(height) * int(width) * classes
    return Head(kind="segmentation", units=units, grid=(int(height), int(width)), classes=classes,
                channels=int(channels), **layers)

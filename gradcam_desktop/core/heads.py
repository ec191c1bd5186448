"""What score to explain: the pre-softmax logits, whatever shape the classifier's head has.

Grad-CAM differentiates the class score *before* softmax/sigmoid (Selvaraju et al., 2017): the
softmax couples every class and saturates, so its gradient says little about the chosen class.
We find the operation that produces the model's output (looking inside nested models) and
either skip a separate ``Activation``/``Softmax`` layer or run a linear twin of a layer whose
built-in activation is softmax/sigmoid. The user's model is never modified.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .backend import is_operation, keras_of
from .errors import ModelLoadError
from .layers import child_layers, is_submodel

HEAD_KINDS = ("softmax", "logits", "binary", "multilabel", "probabilities")
_SQUASHING = ("softmax", "sigmoid")


@dataclass
class Head:
    """How to get logits and probabilities out of a model.

    ``kind``: softmax (probabilities = softmax(logits)), logits (a linear head: we show
    softmax(logits) as probabilities), binary (one unit: p = sigmoid(z), classes [1-p, p];
    class 1 explains z and class 0 explains -z), multilabel (several sigmoid units: each logit),
    probabilities (a black-box file whose output is already probabilities and whose logits it does
    not show: the explained score is the class's probability).
    ``skip``: an activation layer whose input is the logits (run as identity).
    ``linear``: a layer to replace by ``linear_twin`` (same weights, no activation).
    """

    kind: str
    units: int
    skip: Any = None  # keras layers (untyped)
    linear: Any = None
    linear_twin: Any = None

    @property
    def num_classes(self) -> int:
        return 2 if self.kind == "binary" else self.units

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
        shifted = np.exp(logits - logits.max())
        return shifted / shifted.sum()

    def class_weights(self, class_index: int) -> np.ndarray:
        """The vector w with y^c = Σ w·logits: a one-hot, or ±1 for a binary head."""
        weights = np.zeros(self.units, dtype=np.float32)
        if self.kind == "binary":
            weights[0] = 1.0 if class_index == 1 else -1.0
        else:
            weights[class_index] = 1.0
        return weights


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


def detect_head(model) -> Head:
    """Inspect the output layer and say how logits are obtained."""
    units = model.outputs[0].shape[-1]
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
    if name == "softmax":
        kind = "softmax"
    elif name == "sigmoid":
        kind = "binary" if units == 1 else "multilabel"
    else:
        # A linear head: one unit is read as a binary logit, several as softmax logits.
        kind = "binary" if units == 1 else "logits"
    return Head(kind=kind, units=int(units), skip=skip, linear=linear, linear_twin=twin)

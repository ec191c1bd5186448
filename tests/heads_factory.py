"""Small seeded models whose heads are not classifiers (issue 20), and the float64 tools to check them.

Builders (no downloads, a few thousand weights each):

* ``regression_model``: conv → last_conv → GAP → Dense(units) *linear*, named "age" — a value head
  when the file says it was trained with a regression loss (``save_regression(loss="mse")``) or
  its sidecar declares ``"head": "value"``. Keras 3 (``.keras``) or Keras 2 (``tf_keras``, ``.h5``).
* ``segmentation_model``: conv1 → pool → conv2 → UpSampling2D → Conv2D(C, 1, softmax) "classifier"
  at a fixed 32 × 32 input; ``activation="sigmoid"`` gives the one-channel mask variant.
* The two-head classifier (softmax + sigmoid) is tests/core/test_outputs.py's ``_build``: not repeated.

Reference tools, written from the issue's definitions and never from gradcam_desktop.core:

* ``HandNet``: the model evaluated by hand in float64 TensorFlow ops from the file's own weights
  (the pre-softmax scores z, any layer's output, gradients by an eager tape) with running error
  bounds on how far the engine's float32 evaluation of the same network may be (its docstring).
* ``box_cells``: which output cells a region covers, from the rule "cell i's centre (i + ½)/H lies
  in [top, bottom]" (at least the row/column under the box's centre).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from gradcam_desktop.core.images import LoadedImage
import cam_reference
from cam_reference import Bounded
from reference import OPS_PER_LAYER, U32, U64, gamma

SIDE = 24  # the regression model's input side
SEG_SIDE = 32  # the segmentation model's input side
SEG_CLASSES = 3
AGE_BIAS = 30.0  # a value head predicts a quantity far from 0: an age


def _randomize(model, seed: int, bias: float = 0.0):
    """He-scaled normal weights, small normal biases (+``bias`` on the last layer's): a fixed,
    seeded network whose activations are O(1) and whose ReLUs are neither all on nor all off."""
    rng = np.random.default_rng(seed)
    weights = []
    for w in model.get_weights():
        if w.ndim > 1:
            fan_in = int(np.prod(w.shape[:-1]))
            weights.append(rng.normal(0.0, np.sqrt(2.0 / fan_in), w.shape).astype(np.float32))
        else:
            weights.append(rng.normal(0.0, 0.1, w.shape).astype(np.float32))
    weights[-1] = weights[-1] + np.float32(bias)
    model.set_weights(weights)
    return model


def keras_module(flavour: str):
    """Keras 3 ("keras3") or Keras 2 ("keras2": tf_keras, what tf.keras users have)."""
    if flavour == "keras3":
        return keras
    import tf_keras

    return tf_keras


# -- regression ----------------------------------------------------------------------------------
def regression_model(flavour: str = "keras3", units: int = 1, seed: int = 0, name: str = "age"):
    """conv(6) → last_conv(8) → GAP → Dense(units, linear) named ``name``; Keras 3 or tf_keras."""
    k = keras_module(flavour)
    inputs = k.Input((SIDE, SIDE, 3))
    x = k.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv")(inputs)
    x = k.layers.Conv2D(8, 3, padding="same", activation="relu", name="last_conv")(x)
    x = k.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = k.layers.Dense(units, name=name)(x)
    model = _randomize(k.Model(inputs, outputs, name="regression"), seed, bias=AGE_BIAS)
    # The first convolution's kernels sum to 0 over their window (edge detectors): the value then
    # follows the picture's texture, and a blurred picture moves it far (the trust curves' scale).
    conv = model.get_layer("conv")
    kernel, bias = conv.get_weights()
    conv.set_weights([kernel - kernel.mean(axis=(0, 1), keepdims=True), bias])
    return model


def save_regression(folder, flavour: str = "keras3", loss=None, units: int = 1, seed: int = 0,
                    sidecar: str | None = None, stem: str = "age"):
    """The regression model compiled with ``loss`` (None: not compiled) and saved like a user would:
    ``stem.keras`` (Keras 3) or ``stem.h5`` (tf_keras); ``sidecar`` is written to stem.gradcam.json.
    Returns (path, the in-memory model)."""
    model = regression_model(flavour, units, seed)
    if loss is not None:
        model.compile(optimizer="sgd", loss=loss)
    path = Path(folder) / f"{stem}.{'keras' if flavour == 'keras3' else 'h5'}"
    model.save(str(path))
    if sidecar is not None:
        (Path(folder) / f"{stem}.gradcam.json").write_text(sidecar, encoding="utf-8")
    return path, model


# -- segmentation --------------------------------------------------------------------------------
#: The classifier's weights and bias are scaled by this (the predicted classes do not change): its
#: pre-softmax scores are then ~0.01, so a class's sum over a few hundred pixels is O(1) and
#: Score-CAM's softmax over channels is soft — every channel's score shows in its map.
LOGIT_SCALE = 0.01


def segmentation_model(classes: int = SEG_CLASSES, activation: str = "softmax", seed: int = 5,
                       side: int | None = SEG_SIDE):
    """conv1(8) → pool → conv2(12) → UpSampling2D → Conv2D(classes, 1, activation) "classifier".
    ``side=None``: a variable-size input (and output)."""
    inputs = keras.Input((side, side, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool")(x)
    x = keras.layers.Conv2D(12, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.UpSampling2D(2, name="up")(x)
    outputs = keras.layers.Conv2D(classes, 1, activation=activation, name="classifier")(x)
    model = _randomize(keras.Model(inputs, outputs, name="segmenter"), seed)
    classifier = model.get_layer("classifier")
    classifier.set_weights([w * np.float32(LOGIT_SCALE) for w in classifier.get_weights()])
    return model


def save_segmentation(folder, activation: str = "softmax", classes: int = SEG_CLASSES, seed: int = 5,
                      stem: str = "seg"):
    model = segmentation_model(classes, activation, seed)
    path = Path(folder) / f"{stem}.keras"
    model.save(path)
    return path, model


# -- pictures ------------------------------------------------------------------------------------
def picture(side: int, seed: int) -> LoadedImage:
    """A noise picture of exactly the model's size (no resizing enters the checks)."""
    rgb = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    return LoadedImage(rgb=rgb, name="noise.png", path=None, notices=[])


def model_input(image: LoadedImage) -> np.ndarray:
    """The engine's input under "unit" preprocessing (what "auto" picks for these models): rgb / 255."""
    return image.rgb.astype(np.float32)[np.newaxis] / np.float32(255.0)


# -- the model by hand, in float64, with running error bounds -------------------------------------
KINDS = ("Conv2D", "Dense", "MaxPooling2D", "UpSampling2D", "GlobalAveragePooling2D")


def gamma2(n: int, engine_u: float = U32) -> float:
    """γ_n(engine) + γ_n(float64): the engine's sum (float32, or float64 for a float64 twin) and our
    float64 one of the same terms each err by at most γ_n times the sum of their magnitudes (Higham
    §3.1, any order)."""
    return gamma(n, engine_u) + gamma(n, U64)


@dataclass
class Step:
    """One layer as ``HandNet.forward`` evaluated it (float64 tensors, batch first)."""

    name: str
    kind: str
    inputs: tf.Tensor
    pre: tf.Tensor | None  # Conv2D / Dense: x·W + b, before the activation (None for the others)
    outputs: tf.Tensor


@dataclass
class Bound:
    """Bounds on |float32 engine − this float64 evaluation| of one layer's pre-activation and output."""

    pre: np.ndarray | None
    outputs: np.ndarray


class HandNet:
    """A chain of Conv2D / MaxPooling2D / UpSampling2D / GlobalAveragePooling2D / Dense layers (the
    models above, Keras 3 or tf_keras) evaluated by hand with TensorFlow's float64 ops from the file's
    own weights — never through Keras' layers, the engine's graph walk or heads.py. The last layer's
    activation (softmax, sigmoid) is left out: its output is the pre-activation score z.

    ``forward`` can run under a ``tf.GradientTape`` (the eager reference of every gradient).
    ``errors`` and ``backward`` give running error bounds (Higham §3.3) on how far a float32
    evaluation of the same layers (the engine's) and ours can be apart, from the magnitudes of the
    terms each layer actually sums:

        Conv2D / Dense   E_pre = |W| ⋆ E_in + γ_{n+OPS} (|W| ⋆ (|a_in| + E_in) + |b|),  n = kh·kw·c_in
        ReLU, max-pool   E_out = E_pre (0 where pre < −E_pre: both give exactly 0), max-pool(E_in):
                         both 1-Lipschitz (a max moves by ≤ max |Δ|)
        upsampling       E copied;  global average: mean E_in + γ_{HW+2} mean(|a_in| + E_in)

    (γ for the float32 engine plus γ for our float64 pass, ``gamma2``; OPS as tests/reference.py
    counts a layer's bias add, activation and casts.) The backward pass is the same with the
    transposed maps, n = kh·kw·c_out, given the same gates — ReLU signs and max-pool winners —
    which the caller checks are decided (``gate_slack``).
    """

    def __init__(self, model):
        self.layers: list[tuple[str, str, dict, list]] = []
        for layer in model.layers:
            kind = type(layer).__name__
            if kind == "InputLayer":
                continue
            if kind not in KINDS:
                raise ValueError(f"HandNet does not evaluate {kind} layers")
            config = layer.get_config()
            weights = [tf.constant(np.asarray(w, np.float64)) for w in layer.get_weights()]
            self.layers.append((layer.name, kind, config, weights))
        for name, kind, config, _ in self.layers:
            if kind == "Conv2D":
                assert tuple(config["strides"]) == (1, 1) and tuple(config["dilation_rate"]) == (1, 1), name
            if kind in ("Conv2D", "Dense") and name != self.layers[-1][0]:
                assert config["activation"] in ("relu", "linear"), (name, config["activation"])
            if kind == "UpSampling2D":
                assert config["interpolation"] == "nearest", name

    # -- forward ---------------------------------------------------------------------------------
    def _relu(self, index: int) -> bool:
        name, kind, config, _ = self.layers[index]
        return index < len(self.layers) - 1 and kind in ("Conv2D", "Dense") and config["activation"] == "relu"

    def forward(self, x) -> list[Step]:
        a = tf.cast(tf.convert_to_tensor(x), tf.float64)
        steps = []
        for index, (name, kind, config, weights) in enumerate(self.layers):
            pre = None
            if kind == "Conv2D":
                pre = tf.nn.conv2d(a, weights[0], 1, config["padding"].upper()) + weights[1]
            elif kind == "Dense":
                pre = tf.matmul(a, weights[0]) + weights[1]
            if pre is not None:
                out = tf.nn.relu(pre) if self._relu(index) else pre
            elif kind == "MaxPooling2D":
                out = tf.nn.max_pool2d(a, config["pool_size"], config["strides"], config["padding"].upper())
            elif kind == "UpSampling2D":
                rows, cols = config["size"]
                out = tf.repeat(tf.repeat(a, rows, axis=1), cols, axis=2)
            else:  # GlobalAveragePooling2D
                out = tf.reduce_mean(a, axis=[1, 2])
            steps.append(Step(name, kind, a, pre, out))
            a = out
        return steps

    def logits(self, x) -> np.ndarray:
        """z: the last layer's pre-activation output, float64."""
        return self.forward(x)[-1].pre.numpy()

    def step(self, steps: list[Step], name: str) -> Step:
        return next(step for step in steps if step.name == name)

    # -- error bounds ------------------------------------------------------------------------------
    def errors(self, steps: list[Step], input_error=None, engine_u: float = U32) -> list[Bound]:
        """Per layer, bounds on |engine − ours| of its pre-activation and output, for an engine whose
        input errs by ``input_error`` (default: the same float32 input, 0) and which computes with unit
        roundoff ``engine_u`` (U64: the model's float64 twin)."""
        E = tf.zeros_like(steps[0].inputs) if input_error is None else tf.constant(np.asarray(input_error, np.float64))
        bounds = []
        for index, ((_name, kind, config, weights), step) in enumerate(zip(self.layers, steps, strict=True)):
            a = tf.abs(step.inputs)
            pre_error = None
            if kind in ("Conv2D", "Dense"):
                W, b = tf.abs(weights[0]), tf.abs(weights[1])
                n = int(np.prod(W.shape[:-1]))
                if kind == "Conv2D":
                    padding = config["padding"].upper()
                    terms = tf.nn.conv2d(a + E, W, 1, padding) + b
                    carried = tf.nn.conv2d(E, W, 1, padding)
                else:
                    terms, carried = tf.matmul(a + E, W) + b, tf.matmul(E, W)
                E = pre_error = carried + gamma2(n + OPS_PER_LAYER, engine_u) * terms
                if self._relu(index):  # below −E_pre both ReLUs output exactly 0
                    E = tf.where(step.pre < -E, tf.zeros_like(E), E)
            elif kind == "MaxPooling2D":
                E = tf.nn.max_pool2d(E, config["pool_size"], config["strides"], config["padding"].upper())
            elif kind == "UpSampling2D":
                rows, cols = config["size"]
                E = tf.repeat(tf.repeat(E, rows, axis=1), cols, axis=2)
            else:
                n = int(np.prod(a.shape[1:3]))
                E = tf.reduce_mean(E, axis=[1, 2]) + gamma2(n + 2, engine_u) * tf.reduce_mean(a + E, axis=[1, 2])
            bounds.append(Bound(None if pre_error is None else pre_error.numpy(), E.numpy()))
        return bounds

    def backward(self, steps: list[Step], seed, stop: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(g, E_g): g = ∂(Σ seed · z)/∂(the output of layer ``stop``; None: the input x), by hand, and
        a bound on |engine's g − ours| for the same gates."""
        g = tf.constant(np.asarray(seed, np.float64))
        E = tf.zeros_like(g)
        last = len(self.layers) - 1
        for index in range(last, -1, -1):
            name, kind, config, weights = self.layers[index]
            step = steps[index]
            if name == stop:
                return g.numpy(), E.numpy()
            if kind in ("Conv2D", "Dense"):
                if self._relu(index):
                    gate = tf.cast(step.pre > 0, tf.float64)
                    g, E = g * gate, E * gate
                W = weights[0]
                if kind == "Conv2D":
                    shape = tf.shape(step.inputs)
                    padding = config["padding"].upper()

                    def transposed(v, kernel):
                        return tf.nn.conv2d_transpose(v, kernel, shape, 1, padding)
                    n = int(np.prod(W.shape[:2])) * int(W.shape[-1])
                else:
                    def transposed(v, kernel):
                        return tf.matmul(v, kernel, transpose_b=True)
                    n = int(W.shape[-1])
                g, E = transposed(g, W), (transposed(E, tf.abs(W))
                                          + gamma2(n + OPS_PER_LAYER) * transposed(tf.abs(g) + E, tf.abs(W)))
            elif kind == "MaxPooling2D":
                inputs = step.inputs
                with tf.GradientTape(persistent=True) as tape:
                    tape.watch(inputs)
                    pooled = tf.nn.max_pool2d(inputs, config["pool_size"], config["strides"], config["padding"].upper())
                g, E = tape.gradient(pooled, inputs, output_gradients=g), tape.gradient(pooled, inputs, output_gradients=E)
            elif kind == "UpSampling2D":
                rows, cols = config["size"]
                n_, h, w, c = step.inputs.shape

                def blocks(v):
                    return tf.reduce_sum(tf.reshape(v, (-1, h, rows, w, cols, c)), axis=[2, 4])
                g, E = blocks(g), blocks(E) + gamma2(rows * cols) * blocks(tf.abs(g) + E)
            else:
                h, w = step.inputs.shape[1:3]
                spread = tf.ones_like(step.inputs) / (h * w)
                g, E = g[:, None, None, :] * spread, (E[:, None, None, :] + gamma2(2) * tf.abs(g)[:, None, None, :]) * spread
        return g.numpy(), E.numpy()

    def gate_slack(self, steps: list[Step], bounds: list[Bound]) -> float:
        """min over every ReLU input of |pre| / E_pre and over every max-pool window of
        (first − second) / (E_first + E_second): above 1, no rounding within the bounds can change a
        ReLU's gate or a window's winner, so the engine's gradient runs through the same gates."""
        slack = np.inf
        for index, (step, bound) in enumerate(zip(steps, bounds, strict=True)):
            if self._relu(index):
                slack = min(slack, float((np.abs(step.pre.numpy()) / bound.pre).min()))
            if step.kind == "MaxPooling2D":
                config = self.layers[index][2]
                assert tuple(config["pool_size"]) == tuple(config["strides"]) == (2, 2)
                a = step.inputs.numpy()
                e = bounds[index - 1].outputs if index else np.zeros_like(a)
                n, h, w, c = a.shape

                def windows(v):
                    return v.reshape(n, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 5, 2, 4).reshape(-1, 4)
                values, errors = windows(a), windows(e)
                # A window of ReLU outputs that are all 0 routes its gradient into a closed gate (decided
                # above) whichever it picks: only windows with a positive winner matter.
                live = values.max(axis=-1) > 0
                if not live.any():
                    continue
                values, errors = values[live], errors[live]
                order = np.argsort(-values, axis=-1)
                first = np.take_along_axis(values, order[:, :1], -1)[:, 0]
                second = np.take_along_axis(values, order[:, 1:2], -1)[:, 0]
                error = (np.take_along_axis(errors, order[:, :1], -1) + np.take_along_axis(errors, order[:, 1:2], -1))[:, 0]
                slack = min(slack, float(((first - second) / error).min()))
        return slack


# -- regions ---------------------------------------------------------------------------------------
def box_cells(grid: tuple[int, int], box) -> np.ndarray:
    """Boolean (H′, W′): the cells whose centres ((i + ½)/H′, (j + ½)/W′) lie inside the closed box
    (top, left, bottom, right). Along an axis where no centre does (a box thinner than a cell), the
    row or column under the box's centre."""
    top, left, bottom, right = box

    def along(low: float, high: float, size: int) -> np.ndarray:
        centres = (np.arange(size) + 0.5) / size
        inside = (centres >= low) & (centres <= high)
        if not inside.any():
            inside[min(size - 1, int((low + high) / 2 * size))] = True
        return inside

    return along(top, bottom, grid[0])[:, None] & along(left, right, grid[1])[None, :]


# -- Grad-CAM of a score Σ seed · z ----------------------------------------------------------------
def gradcam_reference(net: HandNet, x, layer: str, seed) -> tuple[Bounded, float, float]:
    """(the Grad-CAM map as a cam_reference ``Bounded``, y, a bound on |engine's y − y|) for the score
    y = Σ seed · z of input ``x`` (1, H, W, C) at ``layer``.

    A and g = ∂y/∂A come from an eager float64 tape through ``HandNet.forward``; their bounds from
    ``HandNet.errors`` / ``HandNet.backward`` (A is continuous in the input, and between ``layer``
    and z these models have no ReLU or max-pool, so g has no gate to flip; a segmentation mask in
    ``seed`` must be decided by the caller). The map's own float32 arithmetic (α = mean g, Σ α A,
    ReLU) is cam_reference's running bound. The engine's y is a float32 sum of the seeded scores
    (a segmentation head's in-graph sum over the mask): γ_n of their magnitudes on top of theirs.
    """
    seed = np.asarray(seed, np.float64)
    x64 = tf.constant(np.asarray(x, np.float64))
    with tf.GradientTape() as tape:
        tape.watch(x64)
        steps = net.forward(x64)
        features = net.step(steps, layer).outputs
        z = steps[-1].pre
        y = tf.reduce_sum(z * seed)
    g = tape.gradient(y, features).numpy()
    bounds = net.errors(steps)
    index = [step.name for step in steps].index(layer)
    g_hand, g_error = net.backward(steps, seed, stop=layer)
    # The hand backward pass (whose error terms bound the engine's) is the tape's gradient.
    np.testing.assert_allclose(g_hand, g, rtol=1e-12, atol=1e-14 * np.abs(g).max())
    expected = cam_reference.gradient_map("gradcam", Bounded(features.numpy()[0], bounds[index].outputs[0]),
                                          Bounded(g[0], g_error[0]))
    z_error = bounds[-1].outputs
    weight = np.abs(seed)
    terms = int(np.count_nonzero(seed))
    y_error = float((weight * z_error).sum() + gamma(terms, U32) * (weight * (np.abs(z.numpy()) + z_error)).sum()
                    + gamma(terms, U64) * (weight * np.abs(z.numpy())).sum())
    return expected, float(y.numpy()), y_error

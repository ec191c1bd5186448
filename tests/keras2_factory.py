"""Small Keras 2 (``tf_keras``) models for tests, the three formats Keras 2 writes, and the Keras 2
side of the shared reference (tests/reference.py).

Every builder returns a tf_keras model with non-trivial BatchNorm statistics (``randomize_batch_norm``),
so that running BatchNorm in training mode instead of inference mode changes what the model computes.
``save_formats`` writes a model as an .h5 file, a .keras file and a SavedModel folder, as
``model.save`` does in tf.keras 2.x.

The reference side: ``pass_error`` is tests/reference.py's ρ for a tf_keras model (that module's
``pass_error`` recognizes Keras 3 layers only: a tf_keras DepthwiseConv2D has a ``depthwise_kernel``,
a SeparableConv2D two kernels, and neither would be counted there), and ``head_reference`` /
``nested_reference`` return ``features_and_logits`` functions for ``reference.reference_gradcam``
built from the original tf_keras model only — never from the app's engine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf
import tf_keras

from reference import OPS_PER_LAYER, gamma, unit_roundoff

L = tf_keras.layers
FORMATS = ("h5", "keras", "savedmodel")


# ------------------------------------------------------------------ builders

def sequential_model(side=32, classes=4, seed=0):
    """Sequential with ``input_shape=``: Conv2D → MaxPool → Conv2D → GAP → Dense(softmax)."""
    tf_keras.utils.set_random_seed(seed)
    return tf_keras.Sequential([
        L.Conv2D(6, 3, padding="same", activation="relu", input_shape=(side, side, 3), name="conv1"),
        L.MaxPooling2D(2, name="pool1"),
        L.Conv2D(8, 3, padding="same", activation="relu", name="conv2"),
        L.GlobalAveragePooling2D(name="gap"),
        L.Dense(classes, activation="softmax", name="predictions"),
    ], name="sequential_k2")


def batchnorm_softmax_model(side=32, classes=5, seed=1):
    """Functional: conv → BN → ReLU → pool → conv → BN → ReLU → GAP → Dense logits → Softmax layer."""
    tf_keras.utils.set_random_seed(seed)
    inputs = L.Input((side, side, 3), name="image")
    x = L.Conv2D(6, 3, padding="same", name="conv1")(inputs)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.ReLU(name="relu1")(x)
    x = L.MaxPooling2D(2, name="pool1")(x)
    x = L.Conv2D(8, 3, padding="same", name="conv2")(x)
    x = L.BatchNormalization(name="bn2")(x)
    x = L.Activation("relu", name="relu2")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Dense(classes, name="logits")(x)
    outputs = L.Softmax(name="probabilities")(x)
    return randomize_batch_norm(tf_keras.Model(inputs, outputs, name="bn_softmax"), seed)


def transfer_base(side=32):
    """The "base" of the transfer model: conv1 → BN → ReLU → pool → last_conv (ReLU)."""
    inputs = L.Input((side, side, 3))
    x = L.Conv2D(6, 3, padding="same", name="conv1")(inputs)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.ReLU(name="relu1")(x)
    x = L.MaxPooling2D(2, name="pool1")(x)
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="last_conv")(x)
    return tf_keras.Model(inputs, x, name="base")


def transfer_model(side=32, classes=3, seed=2):
    """A functional base model used as a layer, called with ``training=False`` (the Keras 2
    transfer-learning recipe), then GAP → Dense(softmax)."""
    tf_keras.utils.set_random_seed(seed)
    base = transfer_base(side)
    inputs = L.Input((side, side, 3))
    x = base(inputs, training=False)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    outputs = L.Dense(classes, activation="softmax", name="predictions")(x)
    return randomize_batch_norm(tf_keras.Model(inputs, outputs, name="transfer"), seed)


def binary_model(side=32, seed=3):
    """One sigmoid unit: conv → BN → ReLU → conv → GAP → Dense(1, sigmoid)."""
    tf_keras.utils.set_random_seed(seed)
    inputs = L.Input((side, side, 3))
    x = L.Conv2D(6, 3, strides=2, padding="same", name="conv1")(inputs)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.ReLU(name="relu1")(x)
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="conv2")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    outputs = L.Dense(1, activation="sigmoid", name="predictions",
                      kernel_initializer=tf_keras.initializers.RandomNormal(stddev=2.0))(x)
    return randomize_batch_norm(tf_keras.Model(inputs, outputs, name="binary"), seed)


def mobilenet_v2(side=64, classes=5, seed=4):
    """tf_keras.applications.MobileNetV2 (DepthwiseConv2D, ReLU6, residual adds), the smallest width.

    64 px: at 32 px its last block is 1 × 1 and the deepest spatial layer would be a padding layer.
    """
    tf_keras.utils.set_random_seed(seed)
    model = tf_keras.applications.MobileNetV2(weights=None, input_shape=(side, side, 3), alpha=0.35,
                                              classes=classes)
    return calibrate_batch_norm(model, seed)


def xception(side=71, classes=5, seed=5):
    """tf_keras.applications.Xception (SeparableConv2D) at its smallest input size, 71 px."""
    tf_keras.utils.set_random_seed(seed)
    model = tf_keras.applications.Xception(weights=None, input_shape=(side, side, 3), classes=classes)
    return calibrate_batch_norm(model, seed)


# ------------------------------------------------------------------ BatchNorm statistics

def batch_norms(model):
    return [layer for layer in leaves(model) if isinstance(layer, L.BatchNormalization)]


def randomize_batch_norm(model, seed):
    """Moving statistics and affine terms drawn at random: mean ~ N(0, 0.3²), variance in
    [0.5, 2], γ in [0.5, 1.5], β ~ N(0, 0.2²). Inference then differs from training mode (which
    normalizes with the batch's own statistics) by O(1)."""
    rng = np.random.default_rng(1000 + seed)
    for layer in batch_norms(model):
        channels = layer.moving_mean.shape[-1]
        values = {
            "gamma": rng.uniform(0.5, 1.5, channels), "beta": rng.normal(0.0, 0.2, channels),
            "moving_mean": rng.normal(0.0, 0.3, channels), "moving_variance": rng.uniform(0.5, 2.0, channels),
        }
        layer.set_weights([values[w.name.split("/")[-1].split(":")[0]].astype(np.float32) for w in layer.weights])
    return model


def calibrate_batch_norm(model, seed):
    """Deep applications: random statistics would blow activations up over dozens of layers. Set
    the moving statistics to those of a batch of noise images (one training-mode pass, momentum 0),
    then perturb them (mean shifted by N(0, 0.3²) standard deviations, variance scaled by [0.6, 1.6],
    γ in [0.8, 1.2], β ~ N(0, 0.1²)): bounded activations, and inference still differs from
    training mode on any one image."""
    rng = np.random.default_rng(2000 + seed)
    norms = batch_norms(model)
    momenta = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = 0.0
    side = model.inputs[0].shape[1]
    model(rng.uniform(0, 1, (8, side, side, 3)).astype(np.float32), training=True)
    for layer, momentum in zip(norms, momenta):
        layer.momentum = momentum
    for layer in norms:
        weights = {w.name.split("/")[-1].split(":")[0]: w.numpy() for w in layer.weights}
        channels = weights["moving_mean"].shape[-1]
        std = np.sqrt(weights["moving_variance"] + layer.epsilon)
        weights["moving_mean"] = weights["moving_mean"] + rng.normal(0.0, 0.3, channels) * std
        weights["moving_variance"] = weights["moving_variance"] * rng.uniform(0.6, 1.6, channels)
        if "gamma" in weights:
            weights["gamma"] = rng.uniform(0.8, 1.2, channels)
        if "beta" in weights:
            weights["beta"] = rng.normal(0.0, 0.1, channels)
        layer.set_weights([weights[w.name.split("/")[-1].split(":")[0]].astype(np.float32) for w in layer.weights])
    return model


# ------------------------------------------------------------------ formats

def save_formats(model, folder: Path, stem: str, save_traces: bool = True) -> dict[str, Path]:
    """``model`` saved by tf_keras as ``stem.h5``, ``stem.keras`` and the SavedModel folder ``stem``.

    ``save_traces=False`` (a ``model.save`` option of tf.keras) leaves the layers' traced call
    functions out of the SavedModel: Keras 2 rebuilds the model from the configs in
    keras_metadata.pb either way, and saving is several times faster for a large model.
    """
    folder = Path(folder)
    paths = {"h5": folder / f"{stem}.h5", "keras": folder / f"{stem}.keras", "savedmodel": folder / stem}
    for kind, path in paths.items():
        options = {"save_format": "tf", "save_traces": save_traces} if kind == "savedmodel" else {}
        model.save(str(path), **options)
    return paths


# ------------------------------------------------------------------ the reference, Keras 2 side

def leaves(model):
    """A tf_keras model's layers, nested models flattened."""
    for layer in model.layers:
        if isinstance(layer, tf_keras.Model):
            yield from leaves(layer)
        else:
            yield layer


def longest_sums(layer) -> list[int]:
    """The longest dot products or sums a tf_keras layer computes, forward or backward, one per
    chained linear map (a SeparableConv2D is a depthwise then a pointwise convolution)."""
    if isinstance(layer, L.SeparableConv2D):
        kh, kw, channels, multiplier = (int(d) for d in layer.depthwise_kernel.shape)
        outputs = int(layer.pointwise_kernel.shape[-1])
        # depthwise: kh·kw terms forward, kh·kw·multiplier backward; pointwise: c·m forward, c_out back.
        return [kh * kw * multiplier, max(channels * multiplier, outputs)]
    if isinstance(layer, L.DepthwiseConv2D):
        kh, kw, _, multiplier = (int(d) for d in layer.depthwise_kernel.shape)
        return [kh * kw * multiplier]
    kernel = getattr(layer, "kernel", None)
    if kernel is not None and len(kernel.shape) >= 2:  # Conv2D, Dense
        shape = [int(d) for d in kernel.shape]
        return [int(np.prod(shape[:-2])) * max(shape[-2], shape[-1])]
    if isinstance(layer, L.GlobalAveragePooling2D):
        return [int(np.prod(layer.input_shape[1:-1]))]
    if isinstance(layer, L.AveragePooling2D):
        return [int(np.prod(layer.pool_size))]
    return [0]


def pass_error(layers) -> float:
    """ρ of one forward or backward pass through a tf_keras model (or a list of its layers):
    tests/reference.py's ``pass_error`` (Σ over layers of γ_{n + OPS}(u) in each layer's compute
    dtype) with the Keras 2 layers' own dot-product lengths."""
    total = 0.0
    for layer in (leaves(layers) if isinstance(layers, tf_keras.Model) else layers):
        if isinstance(layer, tf_keras.Model):
            total += pass_error(layer)
            continue
        if isinstance(layer, L.InputLayer):
            continue
        u = unit_roundoff(layer.compute_dtype)
        total += sum(gamma(n + OPS_PER_LAYER, u) for n in longest_sums(layer))
    return total


def discrepancy(model) -> float:
    """ρ bounding |engine − reference| for the same tf_keras network evaluated twice (engine and
    reference each add one pass error)."""
    return 2 * pass_error(model)


def _pre_activation(head, z):
    """The head's score before its softmax/sigmoid: a separate Softmax layer's input is returned
    as it is; a Dense with a built-in activation is recomputed as x @ W + b."""
    if isinstance(head, L.Dense):
        return tf.matmul(z, head.kernel) + head.bias
    return z


def _head_input(model):
    """(the head layer, its input tensor): the last layer, a Dense(softmax/sigmoid) or a Softmax."""
    head = model.layers[-1]
    assert isinstance(head, (L.Dense, L.Softmax)), head
    return head, head.input


def head_reference(model, layer: str):
    """``features_and_logits`` for a layer at the top of ``model``: one tf_keras model with two
    outputs, the layer's output and the head's input, run eagerly in inference mode."""
    head, head_input = _head_input(model)
    extractor = tf_keras.Model(model.inputs, [model.get_layer(layer).output, head_input])

    def run(x):
        features, z = extractor(x, training=False)
        return features, _pre_activation(head, z)
    return run


def nested_reference(model, outer: str, inner: str):
    """``features_and_logits`` for ``outer/inner`` of a model made of a nested model ``outer``
    followed by layers that take its output: the nested model with two outputs (``inner``'s and
    its own), then the outer model's remaining layers called one by one, all in inference mode."""
    nested = model.get_layer(outer)
    extractor = tf_keras.Model(nested.inputs, [nested.get_layer(inner).output, nested.output])
    head, _ = _head_input(model)
    after = model.layers[model.layers.index(nested) + 1:-1]

    def run(x):
        features, y = extractor(x, training=False)
        for each in after:
            y = each(y, training=False)
        return features, _pre_activation(head, y)
    return run


def float64_clone(model):
    """The same network (nested models too) with every layer computing in float64 and the same
    weights: its Grad-CAM gradient crosses a ReLU kink only for a pre-activation within ~1e-13 of
    it (tests/reference.py, "When the bound does not apply")."""

    def clone(layer):
        if isinstance(layer, tf_keras.Model):
            return tf_keras.models.clone_model(layer, clone_function=clone)
        config = layer.get_config()
        config["dtype"] = "float64"
        return type(layer).from_config(config)

    twin = tf_keras.models.clone_model(model, clone_function=clone)
    twin.set_weights(model.get_weights())
    return twin

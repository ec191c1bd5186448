"""Helpers shared by the real-model tests: noise pictures, hand-applied heads, map checks."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from gradcam_desktop.core.images import LoadedImage

from reference import (
    assert_map_close,
    discrepancy,
    exact_gradient,
    probabilities,
    probability_rtol,
    reference_gradcam,
)

MNV2 = "mobilenetv2_0.35_96"


def noise(height, width, seed=0, gray=False) -> LoadedImage:
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    if gray:
        rgb = np.repeat(rgb[..., :1], 3, axis=2)
    return LoadedImage(rgb=rgb, name="noise.png", path=None, notices=[])


def pixels(image: LoadedImage, divisor=255.0, channels=3) -> np.ndarray:
    """The image as the model's batch (it is already at the model's size: no resizing).

    Divided, not multiplied by 1/255: random deep nets amplify a one-ulp input difference.
    """
    x = image.rgb.astype(np.float32)
    if channels == 1:
        x = x[..., :1]
    return (x / np.float32(divisor))[None]


def dense_logits(dense):
    """Pre-activation output of a Dense layer, from its kernel and bias."""
    kernel, bias = dense.kernel, dense.bias

    def apply(v):
        return tf.matmul(tf.cast(v, kernel.dtype), kernel) + bias

    return apply


def nested_reference(base, inner, head):
    """(A at base/inner, logits) using the nested base's own graph, then ``head`` by hand."""
    extractor = keras.Model(base.input, [base.get_layer(inner).output, base.output])

    def run(x):
        features, out = extractor(x, training=False)
        return features, head(out)

    return run


def gap_dense_head(dense):
    logits = dense_logits(dense)
    return lambda out: logits(tf.reduce_mean(out, axis=(1, 2)))


def one_hot(index, units):
    weights = np.zeros(units, np.float32)
    weights[index] = 1.0
    return weights


def check_map(engine, image, layer, class_index, features_and_logits, x, weights, exact=False):
    """Explain ``image`` and hold the map to the reference's bound; return (explanation, reference).

    ``exact``: the layer feeds GAP → Dense, so its gradient w/HW is exact (no pass error).
    """
    rho = discrepancy(engine.model)
    reference = reference_gradcam(features_and_logits, x, weights, rho, exact_gradient() if exact else rho)
    explanation = engine.explain(image, layer, class_index)
    assert_map_close(explanation.raw, reference)
    return explanation, reference


def check_twin_probabilities(twin, explanation, reference):
    """The float64 twin's probabilities against the softmax of the reference's float64 logits."""
    rtol = probability_rtol(reference.logits, discrepancy(twin.model))
    expected = probabilities(reference.logits, twin.head.kind)
    np.testing.assert_allclose(explanation.prediction.probabilities, expected, rtol=rtol)


def transfer_model(base, classes, seed=0):
    """The Keras transfer-learning guide: base(inputs, training=False) → GAP → Dropout → Dense."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(base.input_shape[1:])
    x = base(inputs, training=False)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dropout(0.2, name="dropout")(x)
    outputs = keras.layers.Dense(classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="transfer")


def calibration_batch(height, width, scale=1 / 255.0, seed=7):
    rng = np.random.default_rng(seed)
    return (rng.uniform(0, 255, (4, height, width, 3)) * scale).astype(np.float32)

"""The shared reference Grad-CAM and its error bound (tests/reference.py), checked on their own:
a hand-computed example, maps a wrong engine would produce, and the pass-error model against
float64."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from gradcam_desktop.core.gradcam import GradCam
from model_factory import float64_twin, gap_dense_model, random_image, save_and_load
from reference import (
    U32,
    U64,
    assert_map_close,
    capture,
    discrepancy,
    exact_gradient,
    gamma,
    pass_error,
    probabilities,
    reference_gradcam,
    reference_map,
    well_conditioned,
)

# 2 × 2 positions, 2 channels, A[i, j, k]:
#   A^0 = [[1, 2], [3, 4]]    A^1 = [[2, -1], [0, 1]]
#   g^0 = 0.5 everywhere      g^1 = [[2, -4], [0, -2]]
A = np.array([[[1, 2], [2, -1]], [[3, 0], [4, 1]]], dtype=np.float64)
G = np.array([[[0.5, 2], [0.5, -4]], [[0.5, 0], [0.5, -2]]], dtype=np.float64)
# α = (0.5, (2 − 4 + 0 − 2)/4) = (0.5, −1)
# pre = 0.5·A^0 − A^1 = [[0.5 − 2, 1 + 1], [1.5 − 0, 2 − 1]] = [[−1.5, 2], [1.5, 1]]
PRE = np.array([[-1.5, 2.0], [1.5, 1.0]])
# ḡ = (mean|g^0|, mean|g^1|) = (0.5, 2); M = 0.5·|A^0| + 2·|A^1| = [[0.5 + 4, 1 + 2], [1.5 + 0, 2 + 2]]
MAGNITUDE = np.array([[4.5, 3.0], [1.5, 4.0]])


def test_hand_computed_example():
    reference = reference_map(A, G, rho_a=0.0, rho_g=0.0)
    np.testing.assert_array_equal(reference.pre_relu, PRE)
    np.testing.assert_array_equal(reference.cam, [[0.0, 2.0], [1.5, 1.0]])
    np.testing.assert_array_equal(reference.magnitude, MAGNITUDE)
    # Exact A and g: only the engine's float32 work remains, the mean over 4 positions and its
    # cast (γ_6), the cast of A (u), the sum over 2 channels (γ_2); second-order terms ~u².
    expected = (gamma(6) + U32 + gamma(2)) * MAGNITUDE
    np.testing.assert_allclose(reference.tolerance, expected, rtol=1e-6)


def test_pass_errors_add_the_floors():
    """ρ_A and ρ_g enter as ρ·(|value| + layer mean |value|): here s_A = 14/8, s_g = 10/8."""
    rho = 1e-3
    tolerance = reference_map(A, G, rho_a=rho, rho_g=0.0).tolerance - reference_map(A, G, 0.0, 0.0).tolerance
    # Σ_k ḡ_k ρ(|A^k| + s_A) = ρ(M + 1.75·(0.5 + 2)) to first order; the neglected terms are ρ (or
    # γ_n ≪ ρ) times these, so rtol = ρ. All float64 arithmetic on fixed numbers: no CPU dependence.
    np.testing.assert_allclose(tolerance, rho * (MAGNITUDE + 1.75 * 2.5), rtol=1e-3)
    tolerance = reference_map(A, G, rho_a=0.0, rho_g=rho).tolerance - reference_map(A, G, 0.0, 0.0).tolerance
    # Σ_k ρ(ḡ_k + s_g)|A^k| = ρ(M + 1.25·(|A^0| + |A^1|)).
    np.testing.assert_allclose(tolerance, rho * (MAGNITUDE + 1.25 * np.abs(A).sum(-1)), rtol=1e-3)


def test_capture_differentiates_the_score_eagerly():
    """A linear score Σ V·A has gradient V: capture must return it, and the map above."""
    import tensorflow as tf

    scores = np.stack([G, -G])  # class 0 has gradient G, class 1 has −G

    def features_and_logits(x):
        return x, tf.einsum("bijk,cijk->bc", x, tf.constant(scores))

    features, gradients, logits = capture(features_and_logits, A[None], [1.0, 0.0])
    np.testing.assert_array_equal(features, A)
    np.testing.assert_array_equal(gradients, G)
    np.testing.assert_allclose(logits, [np.sum(A * G), -np.sum(A * G)])
    reference = reference_gradcam(features_and_logits, A[None], [0.0, 1.0], 0.0, 0.0)
    np.testing.assert_array_equal(reference.pre_relu, -PRE)


def test_pass_error_counts_each_layers_longest_sum():
    dense = keras.layers.Dense(3)
    dense.build((None, 4))
    conv = keras.layers.Conv2D(12, 3)
    conv.build((None, 8, 8, 8))
    depthwise = keras.layers.DepthwiseConv2D(3, depth_multiplier=2)
    depthwise.build((None, 8, 8, 16))
    half = keras.layers.Dense(3, dtype="mixed_float16")
    half.build((None, 4))
    assert pass_error([dense]) == gamma(4 + 6)  # max(4 inputs, 3 outputs) + 6 elementwise roundings
    assert pass_error([conv]) == gamma(9 * 12 + 6)  # backward: 3·3·12 outputs > 3·3·8 inputs
    assert pass_error([depthwise]) == gamma(9 * 2 + 6)  # channels are independent
    assert pass_error([half]) == gamma(4 + 6, 2.0 ** -11)  # float16 unit roundoff
    twin = float64_twin(keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)]))
    assert pass_error(twin) == gamma(4 + 6, U64)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    engine = GradCam(save_and_load(gap_dense_model(seed=60), tmp_path_factory.mktemp("small")))
    image = random_image(seed=61)
    return engine, image, image.rgb.astype(np.float32)[None] / 255.0


def _run(model, layer, softmax=False):
    backbone = model.get_layer("backbone")
    extractor = keras.Model(backbone.input, [backbone.get_layer(layer).output, backbone.output])
    dense = model.get_layer("predictions")

    def features_and_logits(x):
        features, out = extractor(x)
        logits = keras.ops.matmul(keras.ops.mean(out, axis=(1, 2)), dense.kernel) + dense.bias
        return features, keras.ops.softmax(logits) if softmax else logits

    return features_and_logits


def test_wrong_maps_fail_and_rounding_passes(small):
    """What a broken engine would return is refused; the right map with rounding-sized noise is not."""
    engine, image, x = small
    rho = discrepancy(engine.model)
    maps = {cls: reference_gradcam(_run(engine.model, "last_conv"), x, np.eye(4)[cls], rho, exact_gradient())
            for cls in range(4)}
    cls = next(c for c, reference in maps.items() if well_conditioned(reference))
    reference = maps[cls]
    raw = engine.explain(image, "backbone/last_conv", cls).raw
    assert assert_map_close(raw, reference) < 1.0

    # Within the bound: half the tolerance added at every position.
    assert_map_close((reference.cam + 0.5 * reference.tolerance).astype(np.float32), reference)
    channels = 16
    softmax_score = reference_gradcam(_run(engine.model, "last_conv", softmax=True), x, np.eye(4)[cls], 0, 0)
    wrong = {
        "mean over channels instead of the sum": raw / channels,
        "sum of gradients instead of their mean": raw * 64,
        "post-softmax score": softmax_score.cam.astype(np.float32),
        "another class": maps[(cls + 1) % 4].cam.astype(np.float32),
        "off by twice the tolerance": (reference.cam + 2 * reference.tolerance).astype(np.float32),
    }
    for what, bad in wrong.items():
        with pytest.raises(AssertionError):
            assert_map_close(bad, reference)
            pytest.fail(f"{what} was accepted")


def test_a_map_without_relu_fails():
    with pytest.raises(AssertionError, match="differs"):
        assert_map_close(PRE.astype(np.float32), reference_map(A, G, 0.0, 0.0))


def test_a_map_zero_everywhere_is_refused_unless_allowed():
    flat = reference_map(A, np.broadcast_to([-1.0, 0.0], A.shape), 0.0, 0.0)  # pre = −A^0 < 0 everywhere
    assert well_conditioned(reference_map(A, G, 0.0, 0.0)) and not well_conditioned(flat)
    with pytest.raises(AssertionError, match="vacuous"):
        assert_map_close(np.zeros((2, 2), np.float32), flat)
    assert_map_close(np.zeros((2, 2), np.float32), flat, allow_flat=True)
    with pytest.raises(AssertionError, match="differs"):
        assert_map_close(np.full((2, 2), 1e-3, np.float32), flat, allow_flat=True)


def test_float32_passes_stay_within_the_pass_error_model(small):
    """ρ is a model of rounding, not a proof: compare float32 with float64 on a real network.

    A, the exact gradient at last_conv, and the logits of the float32 model must lie within
    (ρ32 + ρ64)·(|value| + mean|value|) of the float64 twin's.
    """
    engine, _, x = small
    twin = float64_twin(engine.model)
    rho = discrepancy(engine.model, twin)
    for layer in ("conv1", "conv2", "last_conv"):
        a32, g32, z32 = capture(_run(engine.model, layer), x, np.eye(4)[1])
        a64, g64, z64 = capture(_run(twin, layer), x, np.eye(4)[1])
        for name, v32, v64 in (("A", a32, a64), ("logits", z32, z64)) + ((("g", g32, g64),) if layer == "last_conv" else ()):
            ratio = np.max(np.abs(v32 - v64) / (np.abs(v64) + np.abs(v64).mean())) / rho
            assert ratio <= 1.0, (layer, name, ratio)


def test_probabilities_of_each_head():
    z = np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(probabilities(z, "softmax"), np.exp(z) / np.exp(z).sum())
    np.testing.assert_allclose(probabilities([0.5], "binary"), [1 - 1 / (1 + np.exp(-0.5)), 1 / (1 + np.exp(-0.5))])
    np.testing.assert_allclose(probabilities(z, "multilabel"), 1 / (1 + np.exp(-z)))

"""Pixel attributions (core/pixels.py) against independent references, never against themselves.

References. ``reference_gradients``: an eager float64 ``tf.GradientTape`` on the model's float64
twin (model_factory.float64_twin), the logits computed from the pooled features and the Dense
kernel by hand (never graph.py or heads.py). Integrated gradients: a plain loop over α_k with it;
SmoothGrad: its mean over noise drawn here with the same generator. Guided backpropagation: a
hand NumPy float64 forward/backward of a small network with every kind of ReLU the engine
handles. Guided Grad-CAM: a hand 1-D bilinear interpolation (OpenCV's INTER_LINEAR convention).

Error model (tests/reference.py). A float32 pass through a network differs from a float64 one by
at most ρ(|v| + mean|v|) elementwise, ρ = ``pass_error`` (Σ over layers of γ_n for its longest dot
product), for activations and gradients alike; two evaluations differ by the sum of their ρ.
The gradient of a ReLU / max-pool network is piecewise constant, discontinuous at the kinks: no
ρ covers a rounding that moves a pre-activation across one. So (a) float32 engines are compared
only where every kink of the float64 reference is farther from it than the rounding can move
it (``kink_margin``; the test refuses its picture otherwise), and (b) methods that evaluate many
points (interpolations, noisy copies), some of which may lie near a kink, run on the float64
twin, where a crossing needs a value within ~1e-15 of the kink; then each side rounds a gradient
to float32 once (``twin_bound``). Both sides evaluate the same float32 model inputs (the model's
inputs are float32 by definition; the points are computed in float64 and rounded).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
import numpy as np
import pytest
import tensorflow as tf

from gradcam_desktop.core import cams, pixels
from gradcam_desktop.core.errors import MethodError
from gradcam_desktop.core.heads import Head, detect_head
from model_factory import float64_twin, gap_dense_model, random_image
from reference import U32, U64, _log_slack, discrepancy, gamma, pass_error

SIDE = 16
CLASSES = 3


# -- helpers --------------------------------------------------------------------------------
def leaves(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from leaves(layer)
        else:
            yield layer


def randomize_biases(model, seed):
    """Non-zero biases: with Keras' zero biases a ReLU net is positively homogeneous, its gradient
    the same at every α > 0, and integrated gradients would not depend on where α_k lie."""
    rng = np.random.default_rng(seed)
    for layer in leaves(model):
        bias = getattr(layer, "bias", None)
        if bias is not None:
            bias.assign(rng.normal(0.0, 0.1, tuple(bias.shape)).astype(np.float32))
    return model


def picture(seed=1, height=SIDE, width=SIDE) -> np.ndarray:
    """A noise picture as a "unit"-preprocessed model input (1, H, W, 3) in [0, 1]."""
    return random_image(height, width, seed=seed).rgb.astype(np.float32)[np.newaxis] / np.float32(255.0)


def onehot(index, units=CLASSES) -> np.ndarray:
    vector = np.zeros(units, np.float32)
    vector[index] = 1.0
    return vector


def assert_within(actual, expected, tolerance, what=""):
    """|actual − expected| ≤ tolerance everywhere; the message names the worst element. The slack
    (max error / bound) goes to $GRADCAM_SLACK_LOG like tests/reference.py's, to review margins."""
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert np.isfinite(actual).all()
    error = np.abs(actual - expected)
    with np.errstate(divide="ignore", invalid="ignore"):  # an exact 0 where the bound is 0 is fine
        slack = np.where(error == 0.0, 0.0, error / np.broadcast_to(tolerance, error.shape))
    worst = np.unravel_index(np.argmax(slack), slack.shape)
    _log_slack(float(slack[worst]))  # $GRADCAM_SLACK_LOG, as tests/reference.py does
    assert slack[worst] <= 1.0, (f"{what}: off by {error[worst]:.3g} at {worst} where the bound is "
                                 f"{np.broadcast_to(tolerance, error.shape)[worst]:.3g} "
                                 f"(got {actual[worst]:.6g}, expected {expected[worst]:.6g})")


def gradient_bound(g, rho) -> np.ndarray:
    """ρ(|g| + mean|g|): the error model's bound on a gradient computed with pass error ρ."""
    g = np.abs(np.asarray(g, np.float64))
    return rho * (g + g.mean())


# -- the float64 reference ------------------------------------------------------------------
def reference_logits(twin):
    """x (N, H, W, C) float64 → pre-softmax logits of gap_dense_model's float64 twin: the Dense layer
    applied by hand (x @ kernel + bias), not through the model's softmax."""
    backbone, gap, dense = (twin.get_layer(name) for name in ("backbone", "gap", "predictions"))

    def logits(x):
        return keras.ops.matmul(gap(backbone(x)), dense.kernel) + dense.bias
    return logits


def reference_gradients(logits_of):
    """A float64 GradientFunction: (scores, ∂score_n/∂x_n, score vectors used), eagerly. The top class
    of each row is that row's float64 argmax, like the engine's definition."""
    def grad(batch, weights, top):
        x = tf.constant(np.asarray(batch, np.float64))
        with tf.GradientTape() as tape:
            tape.watch(x)
            z = logits_of(x)
            top_rows = tf.one_hot(tf.argmax(z, axis=-1), z.shape[-1], dtype=tf.float64)
            w = tf.constant(np.asarray(weights, np.float64)) + tf.constant(np.asarray(top, np.float64))[:, None] * top_rows
            scores = tf.reduce_sum(w * z, axis=-1)
        # Rows are independent: the gradient of Σ_n y_n w.r.t. row n is ∂y_n/∂x_n.
        return scores.numpy(), tape.gradient(scores, x).numpy(), w.numpy()
    return grad


def kink_margin(twin, x) -> float:
    """The smallest relative distance of x's float64 activations from a kink of gap_dense_model:
    min over ReLU inputs of |pre|/(|pre| + mean|pre|) and over max-pool windows whose maximum is
    positive of (first − second)/(first + second + 2 mean). A float32 engine within ρ(|v| + mean|v|)
    of these values takes the same branch at every kink when the margin exceeds ρ."""
    y = np.asarray(x, np.float64)
    margin = math.inf
    for layer in leaves(twin.get_layer("backbone")):
        if isinstance(layer, keras.layers.Conv2D):
            pre = np.asarray(keras.ops.conv(y, layer.kernel, padding="same") + layer.bias)
            size = np.abs(pre)
            margin = min(margin, float((size / (size + size.mean())).min()))
            y = np.maximum(pre, 0.0)
        elif isinstance(layer, keras.layers.MaxPooling2D):
            n, h, w, c = y.shape
            windows = np.sort(y.reshape(n, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 5, 2, 4).reshape(-1, 4), axis=-1)
            first, second = windows[:, -1], windows[:, -2]
            live = first > 0
            scale = np.abs(y).mean()
            if live.any():
                margin = min(margin, float(((first - second) / (first + second + 2 * scale))[live].min()))
            y = np.asarray(layer(y))
    return margin


def decided_top(logits, error) -> int:
    """The float64 top class, refusing logits where the engine's rounding could reorder the top two."""
    z = np.asarray(logits, np.float64)
    first, second = np.argsort(-z)[:2]
    assert z[first] - z[second] > 2 * error, "top class not decided"
    return int(first)


@dataclass
class Net:
    model: keras.Model
    twin: keras.Model
    head: Head
    engine32: pixels.InputGradients
    engine64: pixels.InputGradients  # the compiled function on the float64 twin
    reference: pixels.GradientFunction
    logits: object  # float64 x → logits
    x: np.ndarray


@pytest.fixture(scope="module")
def net() -> Net:
    # Seeds where the picture's top class (2) is not the black picture's (0): see the test of that.
    model = randomize_biases(gap_dense_model((SIDE, SIDE, 3), classes=CLASSES, seed=8), seed=9)
    twin = float64_twin(model)
    shape = (SIDE, SIDE, 3)
    logits = reference_logits(twin)
    return Net(model, twin, detect_head(model), pixels.InputGradients(model, detect_head(model), shape),
               pixels.InputGradients(twin, detect_head(twin), shape), reference_gradients(logits), logits, picture())


def twin_bound(g, twin) -> np.ndarray:
    """Twin engine vs reference: both compute in float64 (ρ₆₄ each) and each rounds g to float32 once
    (u₃₂|g| each): the engine at its output, the reference where its gradient crosses the twin's
    Input layer, which stays float32 (the model's inputs are float32)."""
    return gradient_bound(g, 2 * pass_error(twin)) + 2 * U32 * np.abs(np.asarray(g, np.float64))


def top_class(net: Net, x=None) -> int:
    z = np.asarray(net.logits((net.x if x is None else x).astype(np.float64)))[0]
    # The twin engine decides on its logits cast to float32: u₃₂|z| each.
    return decided_top(z, 2 * U32 * np.abs(z).max() + discrepancy(net.model, net.twin) * (np.abs(z).max() + np.abs(z).mean()))


# -- saliency -------------------------------------------------------------------------------
def test_saliency_of_the_float32_model_is_the_float64_gradient(net):
    rho = discrepancy(net.model, net.twin)  # the float32 engine's pass + the float64 reference's
    assert kink_margin(net.twin, net.x) > rho, "a ReLU or max pool of this picture is within rounding of its kink"
    z = np.asarray(net.logits(net.x.astype(np.float64)))[0]
    top = decided_top(z, (rho + U32) * (np.abs(z).max() + np.abs(z).mean()))

    run = pixels.GradientRun(net.engine32, net.x, np.zeros(CLASSES))  # all-zero v: the top class (t = 1)
    raw = run.result()
    scores, grads, _ = net.reference(net.x, onehot(top)[None], np.zeros(1))
    assert raw.dtype == np.float32 and raw.shape == (SIDE, SIDE, 3)
    assert_within(raw, grads[0], gradient_bound(grads[0], rho), "saliency")
    np.testing.assert_array_equal(run.weights, onehot(top))
    assert abs(run.score - scores[0]) <= (rho + U32) * (np.abs(z).sum() + np.abs(z).mean())
    # The display map: max over channels of |∂y/∂x|.
    np.testing.assert_array_equal(pixels.display("saliency", raw), np.abs(raw).max(axis=-1))
    np.testing.assert_array_equal(pixels.saliency(net.engine32, net.x, np.zeros(CLASSES)), raw)


def test_rather_than_scores_are_differences_of_logit_gradients(net):
    a, b = 0, 2
    grad_a = net.reference(net.x, onehot(a)[None], np.zeros(1))[1][0]
    grad_b = net.reference(net.x, onehot(b)[None], np.zeros(1))[1][0]
    # The reference rounds g_a and g_b (u|g_a| + u|g_b|), the engine g_a − g_b (≤ u|g_a| + u|g_b|).
    bound = twin_bound(grad_a, net.twin) + twin_bound(grad_b, net.twin)
    raw = pixels.saliency(net.engine64, net.x, onehot(a) - onehot(b), top=0.0)
    assert_within(raw, grad_a - grad_b, bound, "∇(z_a − z_b)")
    assert np.abs(grad_a - grad_b).max() > 100 * bound.max()  # neither gradient is negligible

    # "Why the top class rather than B": v = −onehot(B), t = 1; and against the top class: t = −1.
    top = top_class(net)
    other = (top + 1) % CLASSES
    grad_top = net.reference(net.x, onehot(top)[None], np.zeros(1))[1][0]
    grad_other = net.reference(net.x, onehot(other)[None], np.zeros(1))[1][0]
    bound = twin_bound(grad_top, net.twin) + twin_bound(grad_other, net.twin)
    assert_within(pixels.saliency(net.engine64, net.x, -onehot(other), top=1.0), grad_top - grad_other, bound, "versus")
    assert_within(pixels.saliency(net.engine64, net.x, np.zeros(CLASSES), top=-1.0), -grad_top,
                  twin_bound(grad_top, net.twin), "counterfactual")


# -- integrated gradients -------------------------------------------------------------------
def integrated_gradients_loop(reference, x, weights, steps, baseline, rho64):
    """(x − x₀) ⊙ Σ_k s_k ∇y(x₀ + α_k (x − x₀)) written as the textbook loop, float64 — and the
    bound on a float64-twin engine's result: Σ_k s_k · ``twin_bound`` of g_k (``rho64``: the twin's
    pass error), times |x − x₀|, plus the final float32 cast (u₃₂|attribution|) and a float64 sum of m terms."""
    x64, x0 = x.astype(np.float64)[0], np.broadcast_to(np.asarray(baseline, np.float64), x.shape)[0]
    total = np.zeros(x64.shape)
    bound = np.zeros(x64.shape)
    magnitude = np.zeros(x64.shape)
    for k in range(steps):
        alpha = k / (steps - 1)
        point = (x0 + alpha * (x64 - x0)).astype(np.float32)[np.newaxis]  # the float32 model input
        weight = (0.5 if k in (0, steps - 1) else 1.0) / (steps - 1)
        _, g, _ = reference(point, weights[np.newaxis], np.zeros(1))
        total += weight * g[0]
        magnitude += weight * np.abs(g[0])
        bound += weight * (gradient_bound(g[0], 2 * rho64) + 2 * U32 * np.abs(g[0]))  # twin_bound
    attribution = (x64 - x0) * total
    delta = np.abs(x64 - x0)
    tolerance = delta * bound + U32 * np.abs(attribution) + gamma(steps, U64) * delta * magnitude
    return attribution, tolerance


@pytest.mark.parametrize("baseline", ["zero", "picture"])
def test_integrated_gradients_is_the_trapezoid_loop(net, baseline):
    x0 = 0.0 if baseline == "zero" else picture(seed=9) * np.float32(0.5)
    top = top_class(net)
    steps = 12  # x, then 11 points: 3 calls of 4 rows (the last padded with 1)
    expected, tolerance = integrated_gradients_loop(net.reference, net.x, onehot(top), steps, x0, pass_error(net.twin))

    run = pixels.IntegratedGradientsRun(net.engine64, net.x, np.zeros(CLASSES), top=1.0, steps=steps, baseline=x0,
                                        batch=5)
    assert (run.total, run.rows, run.passes) == (4, 4, steps)
    raw = run.result()
    assert raw.dtype == np.float32 and raw.shape == (SIDE, SIDE, 3)
    # The top class is decided at x, not at each point: the same as the explicit score vector.
    np.testing.assert_array_equal(run.weights, onehot(top))
    assert_within(raw, expected, tolerance, "integrated gradients")
    # Driven by the float64 reference itself, the run's arithmetic matches the loop to its float32 cast.
    by_reference = pixels.integrated_gradients(net.reference, net.x, onehot(top), top=0.0, steps=steps, baseline=x0,
                                               batch=5)
    assert_within(by_reference, expected, 2 * U32 * np.abs(expected) + 1e-12 * np.abs(expected).max(), "reference run")

    # Not vacuous: the gradient changes along the path, so the α_k and their weights matter.
    saliency_only = (net.x[0] - x0) * net.reference(net.x, onehot(top)[None], np.zeros(1))[1][0]
    assert np.abs(saliency_only - expected).max() > 100 * tolerance.max()
    # Display: ReLU of the channel sum.
    np.testing.assert_array_equal(pixels.display("integrated-gradients", raw),
                                  np.maximum(raw.astype(np.float64).sum(axis=-1), 0.0).astype(np.float32))


def test_integrated_gradients_top_class_is_decided_at_the_picture(net):
    """With t = 1 every point is explained for x's top class, even where the path's own top class
    differs (here at the black baseline)."""
    top = top_class(net)
    z0 = np.asarray(net.logits(np.zeros((1, SIDE, SIDE, 3))))[0]
    assert int(np.argmax(z0)) != top, "the baseline's top class is x's: this test would be vacuous"
    explicit = pixels.integrated_gradients(net.reference, net.x, onehot(top), top=0.0, steps=6)
    decided = pixels.integrated_gradients(net.reference, net.x, np.zeros(CLASSES), top=1.0, steps=6)
    np.testing.assert_array_equal(decided, explicit)


def linear_model():
    """Conv2D (no activation) → GAP → Dense(softmax): the logits are linear in x."""
    keras.utils.set_random_seed(12)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(CLASSES, activation="softmax", name="predictions")(x)
    return randomize_biases(keras.Model(inputs, outputs), seed=13)


@pytest.mark.parametrize("steps", [2, 5])
def test_integrated_gradients_completeness_on_a_linear_model(steps):
    """Where y is linear along the path the trapezoid rule is exact: Σ attribution = y(x) − y(x₀).

    Bound (float32 engine): its gradient g errs by ρ(|g| + mean|g|), so Σ (x − x₀) g by ρ Σ|x − x₀|(|g| +
    mean|g|); each score y = g·x + y(0) by ρ times the magnitude of its terms Σ_i |g_i x_i| + |y(0)|;
    the float32 attribution and its float64 sum add u₃₂ Σ|attribution|.
    """
    model = linear_model()
    twin = float64_twin(model)
    conv, gap, dense = (twin.get_layer(name) for name in ("conv", "gap", "predictions"))
    reference = reference_gradients(lambda x: keras.ops.matmul(gap(conv(x)), dense.kernel) + dense.bias)
    engine = pixels.InputGradients(model, detect_head(model), (8, 8, 3))
    x, x0 = picture(seed=3, height=8, width=8), picture(seed=4, height=8, width=8) * np.float32(0.3)
    run = pixels.IntegratedGradientsRun(engine, x, onehot(1), top=0.0, steps=steps, baseline=x0)
    raw = run.result()

    y_zero, g, _ = reference(np.zeros((1, 8, 8, 3)), onehot(1)[None], np.zeros(1))
    g = g[0]
    delta = np.abs(x[0] - x0[0]).astype(np.float64)
    rho = discrepancy(model)
    terms = np.abs(g * x[0]).sum() + np.abs(g * x0[0]).sum() + 2 * abs(y_zero[0])
    tolerance = rho * ((delta * (np.abs(g) + np.abs(g).mean())).sum() + terms) + U32 * np.abs(raw).sum()
    rise = run.scores[-1] - run.scores[0]
    assert abs(rise) > 100 * tolerance  # not vacuous
    assert abs(run.gap) <= tolerance, (run.gap, tolerance)


# -- SmoothGrad -----------------------------------------------------------------------------
def test_smoothgrad_is_the_mean_over_the_same_noise(net):
    samples, seed, noise = 7, 11, 0.15
    top = top_class(net)
    x = net.x * np.float32(2.0) - np.float32(1.0)  # "tf" preprocessing, [−1, 1]: min x ≠ 0
    x64 = x.astype(np.float64)
    assert top_class(net, x) == top
    sigma = noise * (x64.max() - x64.min())
    draws = np.random.default_rng(seed).normal(0.0, sigma, (samples, SIDE, SIDE, 3))
    total = np.zeros((SIDE, SIDE, 3))
    bound = np.zeros((SIDE, SIDE, 3))
    for epsilon in draws:
        point = (x64[0] + epsilon).astype(np.float32)[np.newaxis]
        _, g, _ = net.reference(point, onehot(top)[np.newaxis], np.zeros(1))
        total += g[0]
        bound += twin_bound(g[0], net.twin)
    expected = total / samples
    tolerance = bound / samples + U32 * np.abs(expected) + gamma(samples, U64) * np.abs(expected)

    run = pixels.SmoothGradRun(net.engine64, x, np.zeros(CLASSES), top=1.0, samples=samples, noise=noise,
                               seed=seed, batch=4)
    assert (run.total, run.rows, run.passes) == (3, 4, samples + 1)
    raw = run.result()
    assert run.sigma == sigma
    assert_within(raw, expected, tolerance, "SmoothGrad")
    # Not vacuous: the noise changed the gradient.
    plain = net.reference(x, onehot(top)[None], np.zeros(1))[1][0]
    assert np.abs(plain - expected).max() > 100 * tolerance.max()
    np.testing.assert_array_equal(pixels.display("smoothgrad", raw), np.abs(raw).max(axis=-1))
    # The same seed gives the same result; the one-shot function drives the same run.
    again = pixels.smoothgrad(net.engine64, x, np.zeros(CLASSES), top=1.0, samples=samples, noise=noise,
                              seed=seed, batch=4)
    np.testing.assert_array_equal(again, raw)


# -- guided backpropagation -----------------------------------------------------------------
GUIDED_INPUT = (5, 5, 2)


def guided_parameters(seed=22) -> dict:
    """Weights of the guided test network (see ``guided_model``). fc2's scale puts some of its
    pre-activations above 6, so ReLU6's upper clip is exercised; the seed is one where every ReLU
    sees both signs and the guided gradient is not zero (``check_guided`` asserts both)."""
    rng = np.random.default_rng(seed)

    def dense(n_in, n_out, scale):
        return [rng.normal(0.0, scale / math.sqrt(n_in), (n_in, n_out)), rng.normal(0.0, 0.3, n_out)]

    return {
        "conv": [rng.normal(0.0, 0.5, (3, 3, 2, 3)), rng.normal(0.0, 0.3, 3)],
        "fc1": dense(27, 8, 2.0),
        "fc2": dense(8, 6, 8.0),
        "fc3": dense(6, 5, 1.5),
        "fc4": dense(5, 4, 1.5),
        "predictions": dense(4, CLASSES, 1.5),
    }


def guided_model(K, parameters, relu_op):
    """Input (5, 5, 2) → nested Sequential [Conv2D 3×3 valid, activation relu] → Flatten → Dense fc1 →
    Activation("relu") → Dense fc2 (activation relu6) → Dense fc3 → ReLU layer → Dense fc4 → a relu
    operation (keras.ops.relu, or tf.nn.relu in Keras 2) → Dense(softmax). ``K``: keras or tf_keras."""
    L = K.layers
    inputs = L.Input(GUIDED_INPUT)
    inner = K.Sequential([L.Input(GUIDED_INPUT), L.Conv2D(3, 3, padding="valid", activation="relu", name="conv")],
                         name="inner")
    x = L.Flatten(name="flatten")(inner(inputs))
    x = L.Activation("relu", name="act1")(L.Dense(8, name="fc1")(x))
    x = L.Dense(6, activation="relu6", name="fc2")(x)
    x = L.ReLU(name="relu3")(L.Dense(5, name="fc3")(x))
    x = relu_op(L.Dense(4, name="fc4")(x))
    outputs = L.Dense(CLASSES, activation="softmax", name="predictions")(x)
    model = K.Model(inputs, outputs, name="guided_net")
    inner.get_layer("conv").set_weights([w.astype(np.float32) for w in parameters["conv"]])
    for name in ("fc1", "fc2", "fc3", "fc4", "predictions"):
        model.get_layer(name).set_weights([w.astype(np.float32) for w in parameters[name]])
    return model


@dataclass
class HandPass:
    logits: np.ndarray
    gradient: np.ndarray  # (5, 5, 2)
    gates: list  # (pre-activation, incoming gradient, ceiling) at each ReLU


def hand_gradient(parameters, x, weights, guided: bool) -> HandPass:
    """The guided network's logits and ∂(w·logits)/∂x in float64 NumPy, by hand. At a ReLU (clipped at
    ``ceiling``) the gradient passes where 0 < pre (< ceiling); guided, also only where it is > 0."""
    p = {name: [np.asarray(w, np.float64) for w in ws] for name, ws in parameters.items()}
    x = np.asarray(x, np.float64).reshape(GUIDED_INPUT)
    kernel, bias = p["conv"]
    conv = np.zeros((3, 3, 3))
    for i in range(3):
        for j in range(3):
            conv[i, j] = np.tensordot(x[i:i + 3, j:j + 3, :], kernel, axes=3) + bias
    pres = [(conv, None)]
    h = np.maximum(conv, 0.0).reshape(-1)  # Flatten: row-major (i, j, channel)
    for name, ceiling in (("fc1", None), ("fc2", 6.0), ("fc3", None), ("fc4", None)):
        pre = h @ p[name][0] + p[name][1]
        pres.append((pre, ceiling))
        h = np.maximum(pre, 0.0) if ceiling is None else np.clip(pre, 0.0, ceiling)
    logits = h @ p["predictions"][0] + p["predictions"][1]

    def gate(pre, g, ceiling):
        passing = pre > 0 if ceiling is None else (pre > 0) & (pre < ceiling)
        if guided:
            passing = passing & (g > 0)
        return np.where(passing, g, 0.0)

    gates = []
    g = p["predictions"][0] @ np.asarray(weights, np.float64)
    for (pre, ceiling), name in zip(reversed(pres[1:]), ("fc4", "fc3", "fc2", "fc1")):
        gates.append((pre, g, ceiling))
        g = p[name][0] @ gate(pre, g, ceiling)
    g = g.reshape(3, 3, 3)
    gates.append((conv, g, None))
    g = gate(conv, g, None)
    gradient = np.zeros(GUIDED_INPUT)
    for i in range(3):
        for j in range(3):
            gradient[i:i + 3, j:j + 3, :] += kernel @ g[i, j]  # Σ_f K[di, dj, c, f] g[i, j, f]
    return HandPass(logits, gradient, gates)


def assert_gates_decided(hand: HandPass, rho: float, guided: bool) -> None:
    """No ReLU input nor (guided) incoming gradient is within the engine's rounding of a kink."""
    for pre, g, ceiling in hand.gates:
        scale = np.abs(pre).mean()
        assert (np.abs(pre) > rho * (np.abs(pre) + scale)).all(), "a pre-activation is within rounding of 0"
        if ceiling is not None:
            assert (np.abs(pre - ceiling) > rho * (np.abs(pre) + scale)).all(), "a pre-activation is near the clip"
        if guided:
            live = (pre > 0) & (g != 0)  # where the gate's sign test on g decides anything
            assert (np.abs(g[live]) > rho * (np.abs(g[live]) + np.abs(g).mean())).all(), "a gradient is within rounding of 0"


def guided_input(seed=22) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1.0, 1.0, (1, *GUIDED_INPUT)).astype(np.float32)


def check_guided(model, rho, relus_expected=5):
    parameters = guided_parameters()
    x = guided_input()
    head = detect_head(model)
    guided = pixels.InputGradients(model, head, GUIDED_INPUT, guided=True)
    plain = pixels.InputGradients(model, head, GUIDED_INPUT)
    hand_plain = hand_gradient(parameters, x, np.zeros(CLASSES), guided=False)
    top = decided_top(hand_plain.logits, rho * (np.abs(hand_plain.logits).sum() + np.abs(hand_plain.logits).mean()))
    hand_plain = hand_gradient(parameters, x, onehot(top), guided=False)
    hand_guided = hand_gradient(parameters, x, onehot(top), guided=True)
    # The case exercises every branch: both signs at every ReLU, the clip at 6, gradients of both signs.
    for pre, _, ceiling in hand_guided.gates:
        assert (pre > 0).any() and (pre < 0).any()
        assert ceiling is None or (pre > ceiling).any()
    assert_gates_decided(hand_guided, rho, guided=True)
    assert_gates_decided(hand_plain, rho, guided=False)

    raw = pixels.guided_backprop(guided, x, np.zeros(CLASSES))
    assert guided.guided_relus == relus_expected
    assert_within(raw, hand_guided.gradient, gradient_bound(hand_guided.gradient, rho), "guided backpropagation")
    # The reference's plain backward pass is the engine's saliency: the two differ only by the rule.
    saliency = pixels.saliency(plain, x, np.zeros(CLASSES))
    assert_within(saliency, hand_plain.gradient, gradient_bound(hand_plain.gradient, rho), "saliency")
    assert np.abs(hand_guided.gradient).max() > 100 * gradient_bound(hand_guided.gradient, rho).max()
    difference = np.abs(hand_plain.gradient - hand_guided.gradient).max()
    assert difference > 100 * gradient_bound(hand_guided.gradient, rho).max(), "the guided rule changed nothing"
    np.testing.assert_array_equal(pixels.display("guided-backprop", raw), np.abs(raw).max(axis=-1))
    return x, guided, plain, hand_guided


def test_guided_backprop_matches_the_hand_computed_rule():
    model = guided_model(keras, guided_parameters(), keras.ops.relu)
    # The engine's float32 pass and NumPy's float64 one (whose own rounding is ~1e-15: counted as u₆₄ slack).
    rho = pass_error(model) + gamma(64, U64)
    check_guided(model, rho)


def test_guided_backprop_on_a_keras2_model():
    tf_keras = pytest.importorskip("tf_keras")
    from keras2_factory import pass_error as keras2_pass_error

    model = guided_model(tf_keras, guided_parameters(), tf.nn.relu)
    check_guided(model, keras2_pass_error(model) + gamma(64, U64))


def test_guided_runs_leave_the_model_unchanged():
    model = guided_model(keras, guided_parameters(), keras.ops.relu)
    activations = {layer.name: layer.activation for layer in leaves(model) if hasattr(layer, "activation")}
    x = guided_input()
    before = np.asarray(model(x))
    x, guided, plain, hand_guided = check_guided(model, pass_error(model) + gamma(64, U64))
    assert {layer.name: layer.activation for layer in leaves(model) if hasattr(layer, "activation")} == activations
    assert all(layer.activation is activations[layer.name] for layer in leaves(model) if hasattr(layer, "activation"))
    np.testing.assert_array_equal(np.asarray(model(x)), before)
    # A plain function traced after the guided one has the plain gradient, and the guided one (not
    # retraced) still follows the guided rule.
    late = pixels.InputGradients(model, detect_head(model), GUIDED_INPUT)
    np.testing.assert_array_equal(pixels.saliency(late, x, np.zeros(CLASSES)), pixels.saliency(plain, x, np.zeros(CLASSES)))
    np.testing.assert_array_equal(pixels.guided_backprop(guided, x, np.zeros(CLASSES)),
                                  pixels.guided_backprop(guided, x, np.zeros(CLASSES)))
    # The forward pass is the model's: the guided scores are the plain ones.
    guided_scores = guided(x, np.zeros((1, CLASSES)))
    plain_scores = plain(x, np.zeros((1, CLASSES)))
    rho = 2 * pass_error(model)
    assert abs(guided_scores.scores[0] - plain_scores.scores[0]) <= rho * np.abs(hand_guided.logits).sum()


# -- guided Grad-CAM ------------------------------------------------------------------------
def inter_linear_matrix(size_out: int, size_in: int) -> np.ndarray:
    """OpenCV INTER_LINEAR in 1-D: x_in = (x_out + ½)·size_in/size_out − ½, clamped to [0, size_in − 1],
    interpolated between its two neighbours."""
    position = np.clip((np.arange(size_out) + 0.5) * size_in / size_out - 0.5, 0.0, size_in - 1)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, size_in - 1)
    fraction = position - low
    matrix = np.zeros((size_out, size_in))
    matrix[np.arange(size_out), low] += 1.0 - fraction
    matrix[np.arange(size_out), high] += fraction
    return matrix


@pytest.mark.parametrize("cam_shape, size", [((4, 4), (16, 16)), ((3, 5), (16, 20)), ((6, 7), (6, 7))])
def test_guided_gradcam_is_guided_backprop_times_the_upsampled_map(cam_shape, size):
    rng = np.random.default_rng(31)
    guided = rng.normal(0.0, 1.0, (*size, 3)).astype(np.float32)
    cam = np.maximum(rng.normal(0.5, 1.0, cam_shape), 0.0).astype(np.float32)
    rows, cols = inter_linear_matrix(size[0], cam_shape[0]), inter_linear_matrix(size[1], cam_shape[1])
    upsampled = rows @ cam.astype(np.float64) @ cols.T
    expected = guided.astype(np.float64) * upsampled[..., None]
    # Two 2-tap passes in float32 (rounded coefficients, products, a sum: ≤ 3 roundings each) and the
    # product with the guided gradient and its cast: within γ₈ of the magnitudes.
    magnitude = np.abs(guided.astype(np.float64)) * (np.abs(rows) @ np.abs(cam) @ np.abs(cols).T)[..., None]
    result = pixels.guided_gradcam(guided, cam)
    assert result.dtype == np.float32 and result.shape == (*size, 3)
    assert_within(result, expected, gamma(8) * magnitude + 1e-30, "guided Grad-CAM")
    np.testing.assert_array_equal(pixels.display("guided-gradcam", result), np.abs(result).max(axis=-1))


def test_guided_gradcam_drops_non_finite_values():
    guided = np.ones((4, 4, 3), np.float32)
    cam = np.ones((2, 2), np.float32)
    cam[0, 0] = np.nan
    result = pixels.guided_gradcam(guided, cam)
    assert np.isfinite(result).all()


# -- display maps, runs, costs, traces --------------------------------------------------------
def test_display_maps_by_hand():
    attribution = np.array([[[1, -3, 2], [-1, -1, 0]], [[0, 0, 0], [2, 2, -5]]], np.float32)
    np.testing.assert_array_equal(pixels.abs_max_map(attribution), [[3, 1], [0, 5]])
    np.testing.assert_array_equal(pixels.positive_sum_map(attribution), [[0, 0], [0, 0]])
    np.testing.assert_array_equal(pixels.positive_sum_map(-attribution), [[0, 2], [0, 1]])
    broken = attribution.copy()
    broken[0, 0, 0] = np.nan
    broken[1, 1, 2] = np.inf
    np.testing.assert_array_equal(pixels.abs_max_map(broken), [[3, 1], [0, 2]])
    for name in pixels.DISPLAYS:
        shown = pixels.display(name, broken)
        assert shown.dtype == np.float32 and shown.shape == (2, 2) and (shown >= 0).all()


class Counting:
    """A GradientFunction that counts the model inputs it is asked to explain (zero-weight padding rows
    excluded) and the calls."""

    def __init__(self, grad):
        self.grad = grad
        self.rows = 0
        self.calls = 0

    def __call__(self, batch, weights, top):
        self.calls += 1
        self.rows += int((np.asarray(weights).any(axis=-1) | (np.asarray(top) != 0)).sum())
        return self.grad(batch, weights, top)


def test_runs_step_and_count_passes(net):
    counting = Counting(net.reference)
    run = pixels.IntegratedGradientsRun(counting, net.x, np.zeros(CLASSES), steps=7, batch=3)
    assert (run.total, run.done, run.finished) == (3, 0, False)
    assert run.step() is False and run.done == 1 and run.score is not None
    assert run.step() is False
    assert run.step() is True and run.finished
    assert run.step() is True and counting.calls == 3  # nothing more to do
    assert counting.rows == pixels.passes("integrated-gradients", steps=7) == run.passes
    np.testing.assert_array_equal(run.result(), pixels.integrated_gradients(net.reference, net.x, np.zeros(CLASSES),
                                                                            steps=7, batch=3))
    for name, options, expected in (("saliency", {}, 1), ("guided-backprop", {}, 1), ("smoothgrad", {"samples": 5}, 6)):
        counting = Counting(net.reference)
        run = pixels.start(name, counting, net.x, np.zeros(CLASSES), seed=0, batch=2, **options)
        run.result()
        assert counting.rows == pixels.passes(name, **options) == expected == run.passes
    assert pixels.passes("guided-gradcam") == 2
    with pytest.raises(MethodError):
        pixels.IntegratedGradientsRun(net.reference, net.x, np.zeros(CLASSES), steps=1)
    with pytest.raises(MethodError):
        pixels.passes("nope")
    # The pixel methods here are exactly the registry's gradient methods (cams.METHODS holds titles and costs).
    assert set(pixels.DISPLAYS) == {m.name for m in cams.METHODS.values() if m.family in ("gradient", "guided-gradcam")}


def test_non_finite_gradients_become_zero(net):
    def broken(batch, weights, top):
        n = len(batch)
        return np.full(n, np.nan), np.full(batch.shape, np.nan), np.asarray(weights, np.float32)

    for name in ("saliency", "integrated-gradients", "smoothgrad"):
        raw = pixels.start(name, broken, net.x, onehot(0), steps=3, samples=2).result()
        assert raw.dtype == np.float32 and np.array_equal(raw, np.zeros_like(raw))


def test_same_shape_batches_do_not_retrace(net):
    traces: list[str] = []
    engine = pixels.InputGradients(net.model, net.head, (SIDE, SIDE, 3), on_trace=traces.append)
    for seed in (1, 2):
        x = picture(seed)
        pixels.saliency(engine, x, np.zeros(CLASSES))
        pixels.integrated_gradients(engine, x, onehot(seed), top=0.0, steps=9, batch=4)  # 8 points: 2 × 4 rows
        pixels.smoothgrad(engine, x, np.zeros(CLASSES), samples=8, seed=seed, batch=4)  # 2 × 4 rows
    assert traces == [pixels.TRACE_KEY] * 2 and engine.batch_sizes == {1, 4}  # one trace per row count

    guided_traces: list[str] = []
    guided = pixels.InputGradients(net.model, net.head, (SIDE, SIDE, 3), on_trace=guided_traces.append, guided=True)
    for seed in (1, 2):
        pixels.guided_backprop(guided, picture(seed), np.zeros(CLASSES))
    assert guided_traces == [pixels.GUIDED_TRACE_KEY] and guided.guided_relus == 3  # conv1, conv2, last_conv


def test_variable_size_model_traces_once():
    model = gap_dense_model((None, None, 3), classes=CLASSES, seed=7)
    traces: list[str] = []
    engine = pixels.InputGradients(model, detect_head(model), (None, None, 3), on_trace=traces.append)
    for height, width in ((16, 16), (12, 20)):
        x = picture(5, height, width)
        raw = pixels.saliency(engine, x, np.zeros(CLASSES))
        assert raw.shape == (height, width, 3)
        pixels.integrated_gradients(engine, x, np.zeros(CLASSES), steps=5, batch=3)
    assert traces == [pixels.TRACE_KEY]

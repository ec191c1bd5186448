"""The test suite's one reference Grad-CAM, and the error bound engine maps are held to.

Reference. ``capture`` differentiates ``features_and_logits`` eagerly (never through the engine)
and returns the layer's activations A, the gradients g = ∂(w·logits)/∂A and the logits, as float64.
``reference_map`` then computes, in float64 NumPy,

    α_k = mean_ij g^k_ij        pre_ij = Σ_k α_k A^k_ij        map = ReLU(pre)

Bound. The engine computes the same quantities with other kernels and another operation order
(a compiled graph, fused ops, oneDNN, AVX-512), then reduces in float32. Write s_A = mean|A| and
s_g = mean|g| over the layer, ḡ_k = mean_ij |g^k_ij| (≥ |α_k|) and ĝ_k = ḡ_k + s_g. Assume the
engine's A and g, before its float32 cast, differ from ours by

    |ΔA| ≤ ρ_A (|A| + s_A)        |Δg| ≤ ρ_g (|g| + s_g)        (elementwise)

i.e. by a relative error of the magnitudes that produced them: a value near 0 made of large
terms carries the rounding of those terms, hence the layer-wide floors s_A, s_g (see
``pass_error`` for ρ). Then, with u the float32 unit roundoff and γ_n = nu/(1−nu) (Higham,
*Accuracy and Stability*, §3.1: a sum of n terms errs by ≤ γ_n Σ|terms|):

    |Δα_k| ≤ a_k = ρ_g ĝ_k + γ_{HW+2} (ḡ_k + ρ_g ĝ_k)          mean over HW positions + cast
    |ΔA|   ≤ b   = ρ_A (|A| + s_A) + u (|A| + ρ_A (|A| + s_A))    + cast
    |map_engine − pre| ≤ Σ_k a_k (|A_k| + b_k) + ḡ_k b_k + γ_K (ḡ_k + a_k)(|A_k| + b_k)

(first term: error of α times A; second: α times error of A; third: the float32 sum over K
channels). Our own float64 reduction adds γ_{K+HW+2}(float64)·Σ ḡ|A|, negligible but counted.
ReLU is 1-Lipschitz, so the same bound holds between ReLU(engine) and ReLU(pre).

The bound is proportional, at each position, to sums of absolute terms M_ij = Σ_k ḡ_k |A^k_ij|,
never to the map's maximum: where Σ_k α_k A^k cancels (ResNet50 conv4_block6_out, class 1: terms
adding up to ~6 for a result of 0.03) the tolerance stays as wide as the rounding of those
terms, and where the map is well conditioned it stays tight. ḡ_k rather than |α_k|: α_k is
itself a mean of gradients of both signs, so its error scales with their magnitude.

When the bound does not apply. The gradient of a ReLU network is discontinuous in its inputs:
when rounding moves a pre-activation across a kink (ReLU, ReLU6, hard-swish) the gradient
through that unit jumps by O(1). No ρ covers this. In float32 it is frequent in deep nets
(ResNet50: α at conv4_block6_out differs from a float64 computation by up to 19 % of mean|g_k|),
so maps of layers whose gradient crosses such kinks are compared on a float64 twin of the
model (``model_factory.float64_engine``), where a crossing needs a pre-activation within
~1e-13 of a kink. Float32 maps are compared where the gradient is exact: a layer feeding
global pooling → Dense, or Flatten → Dense (g = w/HW or w, one rounding: ``EXACT``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

U32 = float(np.finfo(np.float32).eps) / 2
U64 = float(np.finfo(np.float64).eps) / 2
#: Roundings per layer besides its dot products: bias add, activation, BatchNorm affine, a cast.
OPS_PER_LAYER = 6


def unit_roundoff(dtype) -> float:
    """u = 2^-p for a float dtype of p significant bits: fl(x) = x(1+δ), |δ| ≤ u."""
    return float(np.finfo(np.dtype(str(dtype))).eps) / 2


def gamma(n: int, u: float = U32) -> float:
    """Higham's γ_n = nu/(1 − nu): the relative error bound of a sum or dot product of n terms."""
    if n * u >= 1:
        return float("inf")
    return n * u / (1 - n * u)


def exact_gradient(dtype="float32") -> float:
    """ρ_g for a layer feeding GAP → Dense or Flatten → Dense.

    There g = w_k/(HW) (or w_k): a one-hot times the kernel is exact, the division by HW rounds
    once; engine and reference each round once (and a float16 head also rounds w once).
    """
    return 2 * unit_roundoff(dtype)


def _leaves(model):
    for layer in getattr(model, "operations", None) or model.layers:
        if isinstance(layer, keras.Model):
            yield from _leaves(layer)
        else:
            yield layer


def _longest_sum(layer) -> int:
    """The longest dot product or sum a layer computes, forward or backward."""
    kernel = getattr(layer, "kernel", None)
    if kernel is not None and len(kernel.shape) >= 2:
        shape = [int(d) for d in kernel.shape]
        window = int(np.prod(shape[:-2]))
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            return window * shape[-1]  # each channel alone: kh·kw forward, kh·kw·multiplier back
        return window * max(shape[-2], shape[-1])  # kh·kw·c_in forward, kh·kw·c_out backward
    if isinstance(layer, (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalAveragePooling1D)):
        try:
            shape = layer.input.shape
        except (AttributeError, ValueError):  # never called, or called more than once
            return 1
        # A variable-size input (None) counts as 1: the pooled sum only reaches the logits.
        return int(np.prod([d or 1 for d in shape[1:-1]]))
    if isinstance(layer, keras.layers.AveragePooling2D):
        return int(np.prod(layer.pool_size))
    return 0


def pass_error(layers) -> float:
    """ρ of one forward or backward pass through ``layers`` (a model or an iterable of layers).

    Each layer rounds its longest dot product of n terms with error ≤ γ_n times the magnitude of
    its terms (Higham §3.1) plus ``OPS_PER_LAYER`` elementwise roundings, in its own compute dtype
    (float16 under mixed precision). Errors already present propagate through the next linear map
    relative to the same magnitudes, so the bounds of successive layers add:
    ρ = Σ_layers γ_{n_l + OPS}(u_l). Two evaluations (engine and reference) of the same network
    differ by at most the sum of their ρ's. The floors s_A, s_g stand in for "the magnitude of
    the terms": exact for one layer, an approximation deeper down, checked against float64 in
    tests/core/test_reference.py.
    """
    leaves = _leaves(layers) if isinstance(layers, keras.Model) else layers
    total = 0.0
    for layer in leaves:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        dtype = _compute_dtype(layer)
        if dtype is not None:
            total += gamma(_longest_sum(layer) + OPS_PER_LAYER, unit_roundoff(dtype))
    return total


def _compute_dtype(layer):
    """A layer's compute dtype, or an operation's output dtype (keras.ops calls in a graph)."""
    dtype = getattr(layer, "compute_dtype", None)
    if dtype is None:
        try:
            dtype = layer.output.dtype
        except (AttributeError, ValueError):
            dtype = "float32"
    dtype = np.dtype(str(dtype))
    return dtype if np.issubdtype(dtype, np.floating) else None


def discrepancy(engine_model, reference_model=None) -> float:
    """ρ bounding |engine − reference| for A (and g): each side's pass error, added."""
    return pass_error(engine_model) + pass_error(reference_model if reference_model is not None else engine_model)


# -- the reference ------------------------------------------------------------------------
@dataclass
class Reference:
    """The reference map of one image and the bound the engine's map must meet."""

    pre_relu: np.ndarray  # Σ_k α_k A^k, float64 (h, w)
    tolerance: np.ndarray  # bound on |engine − pre_relu| at each position, float64 (h, w)
    magnitude: np.ndarray  # M = Σ_k ḡ_k |A^k|, the sum the rounding scales with (h, w)
    logits: np.ndarray | None = None  # float64 (units,)

    @property
    def cam(self) -> np.ndarray:
        return np.maximum(self.pre_relu, 0.0)


def capture(features_and_logits, x, class_weights):
    """(A, g, logits) of the first image, float64, by an eager ``tf.GradientTape``.

    ``features_and_logits(x) -> (A, logits)`` in one pass; the score is Σ class_weights · logits
    (pre-softmax), in the logits' own dtype.
    """
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)  # so that A may be x itself (a hand-made example)
        features, logits = features_and_logits(x)
        weights = tf.cast(tf.constant(np.asarray(class_weights)), logits.dtype)
        score = tf.reduce_sum(logits[0] * weights)
    gradients = tape.gradient(score, features)
    as64 = lambda t: np.asarray(t, dtype=np.float64)[0]  # noqa: E731
    return as64(features), as64(gradients), as64(logits)


def reference_map(activations, gradients, rho_a: float, rho_g: float, logits=None) -> Reference:
    """Grad-CAM of (h, w, K) ``activations`` and ``gradients`` in float64, with its bound.

    ``rho_a``/``rho_g`` bound how far the engine's A and g may be from these (module docstring).
    """
    A = np.asarray(activations, dtype=np.float64)
    g = np.asarray(gradients, dtype=np.float64)
    height, width, channels = A.shape
    positions = height * width
    alphas = g.mean(axis=(0, 1))
    pre = A @ alphas

    abs_a = np.abs(A)
    g_bar = np.abs(g).mean(axis=(0, 1))
    g_hat = g_bar + np.abs(g).mean()
    a_hat = abs_a + abs_a.mean()
    a = rho_g * g_hat + gamma(positions + 2) * (g_bar + rho_g * g_hat)
    b = rho_a * a_hat + U32 * (abs_a + rho_a * a_hat)
    magnitude = abs_a @ g_bar
    tolerance = (
        (abs_a + b) @ a
        + b @ g_bar
        + gamma(channels) * ((abs_a + b) @ (g_bar + a))
        + gamma(channels + positions + 2, U64) * magnitude
    )
    return Reference(pre, tolerance, magnitude, None if logits is None else np.asarray(logits, np.float64))


def reference_gradcam(features_and_logits, x, class_weights, rho_a: float, rho_g: float) -> Reference:
    """The reference map of ``x`` for score Σ class_weights · logits (eager tape, float64 map)."""
    A, g, logits = capture(features_and_logits, x, class_weights)
    return reference_map(A, g, rho_a, rho_g, logits)


def well_conditioned(reference: Reference) -> bool:
    """Somewhere the map exceeds 4× its tolerance: a map scaled by a factor off by more than 25 %
    (mean instead of sum, a softmax-squashed score) would fail there."""
    return bool((reference.cam > 4 * reference.tolerance).any())


def assert_map_close(raw, reference: Reference, *, allow_flat: bool = False) -> float:
    """Assert the engine's ``raw`` map is within the bound of ``reference``; return the slack.

    Refuses a vacuous check (``well_conditioned``) unless ``allow_flat``: a class whose map is
    zero everywhere is still checked (the engine's must stay within the bound of 0), but then
    the test must show another map that is well conditioned. The slack max |error| / tolerance
    is appended to the file named by $GRADCAM_SLACK_LOG, if set, so margins can be reviewed.
    """
    raw = np.asarray(raw)
    cam = reference.cam
    assert raw.dtype == np.float32, raw.dtype
    assert raw.shape == cam.shape, (raw.shape, cam.shape)
    assert np.isfinite(raw).all()
    assert allow_flat or well_conditioned(reference), (
        f"reference map is not well conditioned anywhere (max {cam.max():.3g}, tolerance there "
        f"{reference.tolerance.flat[np.argmax(cam)]:.3g}): the check would be vacuous")
    error = np.abs(raw.astype(np.float64) - cam)
    slack = float(np.max(error / reference.tolerance))
    _log_slack(slack)
    worst = np.unravel_index(np.argmax(error / reference.tolerance), error.shape)
    assert slack <= 1.0, (
        f"map differs from the reference by {error[worst]:.3g} at {worst} where the bound is "
        f"{reference.tolerance[worst]:.3g} (engine {raw[worst]:.6g}, reference {cam[worst]:.6g}, "
        f"Σ|terms| {reference.magnitude[worst]:.3g})")
    return slack


def _log_slack(slack: float) -> None:
    path = os.environ.get("GRADCAM_SLACK_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(f"{os.environ.get('PYTEST_CURRENT_TEST', '?')}\t{slack:.4g}\n")


# -- probabilities ------------------------------------------------------------------------
def probabilities(logits, kind: str) -> np.ndarray:
    """Class probabilities from logits in float64: softmax, or sigmoid for binary/multilabel heads."""
    z = np.asarray(logits, dtype=np.float64)
    if kind == "binary":
        p = 1.0 / (1.0 + np.exp(-z[0]))
        return np.array([1.0 - p, p])
    if kind == "multilabel":
        return 1.0 / (1.0 + np.exp(-z))
    shifted = np.exp(z - z.max())
    return shifted / shifted.sum()


def probability_rtol(logits, rho: float) -> float:
    """Relative bound on a probability whose logits carry pass error ``rho``.

    |Δz_c| ≤ Δ = (ρ + u)(max|z| + mean|z|) (the logits' magnitude floored like A's). Softmax:
    ∂log p_i/∂z_j = δ_ij − p_j, so |Δ log p_i| ≤ 2Δ; sigmoid p and 1 − p: ≤ Δ. Hence
    |Δp|/p ≤ e^{2Δ} − 1, plus (units + 4)·u for a probability a Keras layer computed in float32
    (exp, the sum over the units, the division).
    """
    z = np.abs(np.asarray(logits, dtype=np.float64))
    delta = (rho + U32) * (z.max() + z.mean())
    return float(np.expm1(2 * delta) + (z.size + 4) * U32)


def assert_top_class_decided(probabilities_, rtol: float) -> None:
    """The top class beats the second by more than rounding can move them (else no test can say)."""
    second, first = np.sort(np.asarray(probabilities_, dtype=np.float64))[-2:]
    assert first * (1 - rtol) > second * (1 + rtol), f"top two probabilities {first}, {second} within {rtol:.2g}"

"""Pixel attributions: gradients of the explained score with respect to the model's input.

Where a CAM says which regions of a layer's grid raised the score, these methods give one value
per input pixel and channel. The explained score is Capture's (capture.py): for a score vector v
and a top-class coefficient t, y(x) = (v + t · onehot(top class of x)) · logits(x), logits before
softmax/sigmoid (heads.py). x is the PREPROCESSED model input (1, H, W, C), so "pixel" means a
value the model sees (after scaling, mean subtraction, …), and a baseline 0 is that space's zero.

    saliency                ∂y/∂x (Simonyan et al., 2014)
    integrated gradients    (x − x₀) ⊙ Σ_k s_k ∇y(x₀ + α_k (x − x₀))  (Sundararajan et al., 2017)
                            α_k = k/(m − 1), k = 0 … m − 1: the trapezoid rule for
                            (x − x₀) ⊙ ∫₀¹ ∇y(x₀ + α(x − x₀)) dα, s_k = 1/(m − 1) halved at both ends.
                            Completeness: Σ attribution ≈ y(x) − y(x₀), exactly where y is linear
                            along the path (``IntegratedGradientsRun.gap`` says how far it is).
    SmoothGrad              (1/n) Σ_i ∇y(x + ε_i), ε_i ~ N(0, σ²) per value, σ = 0.15 (max x − min x)
                            (Smilkov et al., 2017); ε from ``np.random.default_rng(seed)``, drawn in
                            order: copy i is block i of ``rng.normal(0, σ, (n, H, W, C))``.
    guided backpropagation  ∂y/∂x with every ReLU's gradient replaced by the guided rule: it passes
                            only where the ReLU's forward input AND the incoming gradient are > 0
                            (Springenberg et al., 2015); a ReLU6 / ReLU(max_value) also stops it
                            at the upper clip.
    guided Grad-CAM         guided backpropagation ⊙ the Grad-CAM map upsampled bilinearly to the
                            input size (Selvaraju et al., 2017).

The top class is decided ONCE, at x: every method's first pass is x itself (with v and t), which
gives y(x) and the filled-in score vector w; every other point (interpolations, noisy copies) is
evaluated with w and t = 0. Deciding it per point would explain another class where the path
or the noise crosses a decision boundary.

Display maps. The raw attribution is (H, W, C) float32, signed; the app shows (H, W) maps ≥ 0
scaled to [0, 1]. Gradient methods (saliency, SmoothGrad, guided backpropagation, guided
Grad-CAM) show max_c |a|: a gradient's sign says in which direction a pixel would move the score,
and a pixel matters either way. Integrated gradients shows ReLU(Σ_c a): its attributions share out
y(x) − y(x₀), so their sign is evidence for (+) or against (−) the score, and like Grad-CAM's ReLU
the map keeps the evidence for it; the evidence against is the map of the opposite score
(t = −1, or v = −onehot(c)). NaN/inf (a broken model) become 0.

Cost. ``passes`` gives the model passes (forward + backward) of each method: saliency 1, guided
backpropagation 1, integrated gradients m (x is its α = 1 point), SmoothGrad n + 1 (x, then the
n copies), guided Grad-CAM 2 (the guided pass and Grad-CAM's capture). Points are evaluated in
batches of up to ``batch`` rows (fewer for large inputs, like Score-CAM's masks): one step of a
run is one batch, so a UI job can stop between steps. Every step after the first has the same
number of rows (the last padded with zero-weight rows), so a fixed-size model traces
``InputGradients`` twice at most per row count: defaults give 13 rows for both integrated
gradients (49 points after x) and SmoothGrad (25 copies).

Guided backpropagation reaches the ReLUs that graph.py walks: the ``activation`` of any layer
(Conv2D, Dense, Activation, …) named relu or relu6, ``ReLU`` layers without a negative slope or
threshold, and ``keras.ops.relu``/``relu6`` (Keras 2: ``tf.nn.relu``/``relu6``) calls in a
functional graph, in nested Functional and Sequential models, Keras 3 and Keras 2 alike. ReLUs
inside a custom layer or a subclassed model keep their ordinary gradient; ``guided_relus``
counts the ones that got the rule. A layer's activation is swapped for the guided one only while
the function is traced, and restored in a ``finally``: the user's model is never changed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import cv2
import numpy as np
import tensorflow as tf

from .backend import is_keras2, is_operation, keras_of
from .capture import top_class_weights
from .errors import MethodError
from .graph import run_graph
from .heads import Head
from .scorecam import batch_size_for

__all__ = ["DEFAULT_BATCH", "DEFAULT_NOISE", "DEFAULT_SAMPLES", "DEFAULT_STEPS", "DISPLAYS", "GUIDED", "GUIDED_TRACE_KEY",
           "TRACE_KEY", "GradientRun", "InputGradients", "IntegratedGradientsRun", "PixelGradients",
           "PixelRun", "SmoothGradRun", "abs_max_map", "display", "guided_backprop", "guided_gradcam", "guided_relu",
           "integrated_gradients", "passes", "positive_sum_map", "saliency", "smoothgrad", "start"]

#: Integrated gradients' points m, SmoothGrad's copies n and noise level, rows per model call.
DEFAULT_STEPS = 50
DEFAULT_SAMPLES = 25
DEFAULT_NOISE = 0.15
DEFAULT_BATCH = 16
#: What ``on_trace`` is told when an InputGradients is traced.
TRACE_KEY = "pixels"
GUIDED_TRACE_KEY = "pixels (guided)"

#: ReLU-like activations by name, and their upper clip (None: none).
_RELU_FUNCTIONS: dict[str, float | None] = {"relu": None, "relu6": 6.0}
_RELU_OPERATIONS: dict[str, float | None] = {"Relu": None, "Relu6": 6.0,  # keras.ops in a Keras 3 graph
                                              "nn.relu": None, "nn.relu6": 6.0}  # Keras 2 TFOpLambda symbols


# -- guided backpropagation ---------------------------------------------------------------
def guided_relu(x, max_value: float | None = None):
    """ReLU (clipped at ``max_value`` if given) whose gradient follows the guided rule:
    g_in = g_out where 0 < x (< max_value) and g_out > 0, else 0."""
    x = tf.convert_to_tensor(x)

    @tf.custom_gradient
    def relu(features):
        if max_value is None:
            outputs = tf.nn.relu(features)
            passing = features > 0
        else:
            ceiling = tf.cast(max_value, features.dtype)
            outputs = tf.minimum(tf.nn.relu(features), ceiling)
            passing = (features > 0) & (features < ceiling)

        def backward(upstream):
            return tf.where(passing & (upstream > 0), upstream, tf.zeros_like(upstream))

        return outputs, backward

    return relu(x)


class _GuidedCalls:
    """``run_graph``'s ``call`` for guided backpropagation: every ReLU it meets gets ``guided_relu``.

    Runs only while a function is traced (Python code); ``relus`` counts the ReLUs guided by the
    last trace.
    """

    def __init__(self):
        self.relus = 0

    def __call__(self, layer, callee, args, kwargs):
        if is_operation(callee):
            name = getattr(callee, "symbol", None) if is_keras2(callee) else type(callee).__name__
            features = args[0] if args else kwargs.get("features", kwargs.get("x"))
            if name in _RELU_OPERATIONS and features is not None:
                self.relus += 1
                return guided_relu(features, _RELU_OPERATIONS[name])
            return callee(*args, **kwargs)
        if isinstance(callee, keras_of(callee).layers.ReLU):
            if float(callee.negative_slope or 0.0) == 0.0 and float(callee.threshold or 0.0) == 0.0 and args:
                self.relus += 1
                features = tf.convert_to_tensor(args[0])
                dtype = getattr(callee, "compute_dtype", None)
                if dtype is not None and features.dtype.is_floating and features.dtype != tf.as_dtype(dtype):
                    features = tf.cast(features, dtype)  # what the layer's __call__ would do
                ceiling = callee.max_value
                return guided_relu(features, None if ceiling is None else float(ceiling))
            return callee(*args, **kwargs)
        activation = getattr(callee, "activation", None)
        name = getattr(activation, "__name__", None)
        if not callable(activation) or name not in _RELU_FUNCTIONS:
            return callee(*args, **kwargs)
        ceiling = _RELU_FUNCTIONS[name]
        self.relus += 1
        # The layer computes its own pre-activation (kernel, bias, …) and applies ``activation``
        # last: swapped while this call is traced, restored whatever happens.
        callee.activation = lambda features: guided_relu(features, ceiling)
        try:
            return callee(*args, **kwargs)
        finally:
            callee.activation = activation


# -- the compiled gradient ------------------------------------------------------------------
class PixelGradients(NamedTuple):
    """One gradient evaluation of a batch, as float32 NumPy arrays."""

    scores: np.ndarray  # (N,) y_n = w_n · logits_n
    gradients: np.ndarray  # (N, H, W, C) ∂y_n/∂x_n
    weights: np.ndarray  # (N, units) the score vectors used, w_n = v_n + t_n · onehot(top class of row n)
    logits: np.ndarray | None = None  # (N, units) the pre-softmax outputs (the prediction comes free with them)


#: What the methods below call: ``grad(batch (N,H,W,C), weights (N,units), top (N,))`` → PixelGradients
#: (or any 3-tuple (scores, gradients, weights) of arrays: tests pass a float64 eager reference).
#: It may return a 4th array, the logits (N, units): the first step then keeps x's (``PixelRun.logits``).
GradientFunction = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[Any, ...]]


class InputGradients:
    """The compiled ∂y/∂x of one model (plain or guided). Not thread-safe: use it from one thread.

    Like ``Capture``: a fixed-size model is traced once per batch size, a variable-size model once
    (its signature leaves batch, height and width free). Samples are independent (BatchNorm and
    Dropout run with ``training=False``), so one backward pass of Σ_n y_n gives each row's own
    gradient.
    """

    def __init__(self, model, head: Head, input_shape: tuple[int | None, int | None, int],
                 on_trace: Callable[[str], None] | None = None, guided: bool = False):
        """``input_shape`` is (height, width, channels) of the model input; None for a variable side."""
        self.model = model
        self.head = head
        self.guided = guided
        self._on_trace = on_trace
        self._input_shape = input_shape
        self._calls = _GuidedCalls() if guided else None
        self.traced = False
        #: Batch sizes run so far (each is a trace for a fixed-size model).
        self.batch_sizes: set[int] = set()
        if None in input_shape[:2]:
            signature = [tf.TensorSpec((None, *input_shape), tf.float32),
                         tf.TensorSpec((None, head.units), tf.float32), tf.TensorSpec((None,), tf.float32)]
            self._function = tf.function(self._gradients, input_signature=signature)
        else:
            self._function = tf.function(self._gradients)

    @property
    def guided_relus(self) -> int | None:
        """ReLUs given the guided rule by the last trace (None before one, or when not guided)."""
        return self._calls.relus if self._calls is not None and self.traced else None

    def _gradients(self, batch, weights, top):
        if self._on_trace is not None:
            self._on_trace(GUIDED_TRACE_KEY if self.guided else TRACE_KEY)  # runs only while tracing
        if self._calls is not None:
            self._calls.relus = 0
        with tf.GradientTape() as tape:
            tape.watch(batch)
            logits, _ = run_graph(self.model, batch, self.head, call=self._calls)
            logits = tf.cast(logits, tf.float32)
            weights = weights + top[:, tf.newaxis] * tf.stop_gradient(top_class_weights(self.head, logits))
            scores = tf.reduce_sum(logits * weights, axis=-1)
            total = tf.reduce_sum(scores)
        gradients = tape.gradient(total, batch)
        if gradients is None:  # an output that does not depend on the input
            gradients = tf.zeros_like(batch)
        return scores, tf.cast(gradients, tf.float32), weights, logits

    def __call__(self, batch: np.ndarray, weights: np.ndarray, top: np.ndarray | None = None) -> PixelGradients:
        """Scores, input gradients and the score vectors used for model inputs ``batch`` (N, H, W, C),
        score vectors ``weights`` (N, units) and top-class coefficients ``top`` (N,) (default: 1 for
        an all-zero weight row, the top class; else 0)."""
        weights = np.asarray(weights, dtype=np.float32)
        tops = (~weights.any(axis=-1)).astype(np.float32) if top is None else np.asarray(top, np.float32)
        scores, gradients, used, logits = self._function(tf.constant(batch, tf.float32), tf.constant(weights),
                                                 tf.constant(tops))
        self.traced = True
        self.batch_sizes.add(len(batch))
        return PixelGradients(scores.numpy(), gradients.numpy(), used.numpy(), logits.numpy())

    def prepare(self, side: int) -> bool:
        """Trace the one-row function now (``side``: height/width where the input size is variable);
        False when it has run already."""
        if self.traced:
            return False
        height, width, channels = self._input_shape
        self(np.zeros((1, height or side, width or side, channels), np.float32),
             np.zeros((1, self.head.units), np.float32))
        return True


# -- display maps ---------------------------------------------------------------------------
def _finite64(array) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        return np.nan_to_num(np.asarray(array, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)


def _float32(array: np.ndarray) -> np.ndarray:
    """float32, overflow (a broken model) becoming 0 like NaN."""
    with np.errstate(over="ignore", invalid="ignore"):
        return _finite64(np.asarray(array, dtype=np.float64).astype(np.float32)).astype(np.float32)


def abs_max_map(attribution: np.ndarray) -> np.ndarray:
    """(H, W) max over channels of |a|: the display map of the gradient methods."""
    return _float32(np.abs(_finite64(attribution)).max(axis=-1))


def positive_sum_map(attribution: np.ndarray) -> np.ndarray:
    """(H, W) ReLU(Σ_c a): the display map of integrated gradients (the evidence for the score)."""
    return _float32(np.maximum(_finite64(attribution).sum(axis=-1), 0.0))


# -- stepwise runs --------------------------------------------------------------------------
def _rows_per_step(count: int, batch: int) -> int:
    """Rows per call so that ``count`` points take the fewest calls of ≤ ``batch`` rows, the calls
    equal (ceil(count / calls)): little padding, and one trace for every call."""
    if count <= 0:
        return 0
    calls = math.ceil(count / max(1, batch))
    return math.ceil(count / calls)


class PixelRun:
    """One attribution, computed one batch per ``step()``: first x itself (its score y(x), the score
    vector with the top class filled in, its gradient), then ``count`` more points in batches of
    equal size. Subclasses say which points and how gradients accumulate."""

    def __init__(self, grad: GradientFunction, x: np.ndarray, weights: np.ndarray, top: float | None = None,
                 count: int = 0, batch: int = DEFAULT_BATCH):
        """``x``: the preprocessed model input (1, H, W, C); ``weights``: the score vector (units,);
        ``top``: the top-class coefficient (default: 1 when ``weights`` is all zero, else 0);
        ``count``: points after x; ``batch``: rows per call at most."""
        self._grad = grad
        x = np.asarray(x, dtype=np.float32)
        self.x = x[np.newaxis] if x.ndim == 3 else x
        if self.x.ndim != 4 or len(self.x) != 1:
            raise MethodError(f"Pixel attributions take one model input (1, H, W, C), not {x.shape}.")
        self._weights = np.asarray(weights, dtype=np.float32).reshape(-1)
        self._top = float(not self._weights.any()) if top is None else float(top)
        self.count = int(count)
        height, width = self.x.shape[1:3]
        self.rows = _rows_per_step(self.count, min(max(1, int(batch)), batch_size_for(height, width)))
        self.total = 1 + (math.ceil(self.count / self.rows) if self.count else 0)
        self.done = 0
        #: Model inputs evaluated (x and the points, padding not counted).
        self.passes = 1 + self.count
        self.score: float | None = None  # y(x), after the first step
        self.weights: np.ndarray | None = None  # the score vector used (top class filled in), after the first step
        self.logits: np.ndarray | None = None  # x's logits, after the first step (when the gradient function gives them)

    @property
    def finished(self) -> bool:
        return self.done >= self.total

    def step(self) -> bool:
        """Evaluate the next batch; True when all are done."""
        if self.finished:
            return True
        if self.done == 0:
            answer = self._grad(self.x, self._weights[np.newaxis], np.array([self._top], np.float32))
            scores, gradients, used = answer[:3]
            self.score = float(np.asarray(scores, np.float64)[0])
            self.weights = np.asarray(used, np.float32)[0]
            logits = answer[3] if len(answer) > 3 else None
            self.logits = None if logits is None else np.asarray(logits, np.float32)[0]
            self._at_x(np.asarray(gradients)[0])
        else:
            start = (self.done - 1) * self.rows
            stop = min(start + self.rows, self.count)
            points = self._points(start, stop)
            padded = np.concatenate([points, np.repeat(points[-1:], self.rows - len(points), axis=0)])
            weights = np.zeros((self.rows, len(self._weights)), np.float32)
            weights[:len(points)] = self.weights
            scores, gradients = self._grad(padded, weights, np.zeros(self.rows, np.float32))[:2]
            self._at_points(start, np.asarray(scores)[:len(points)], np.asarray(gradients)[:len(points)])
        self.done += 1
        return self.finished

    def result(self) -> np.ndarray:
        """The raw attribution (H, W, C) float32 after all steps."""
        while not self.finished:
            self.step()
        return _float32(self._attribution())

    # Subclasses: ----------------------------------------------------------------------
    def _at_x(self, gradient: np.ndarray) -> None:
        self._gradient = _finite64(gradient)

    def _points(self, start: int, stop: int) -> np.ndarray:
        raise NotImplementedError

    def _at_points(self, start: int, scores: np.ndarray, gradients: np.ndarray) -> None:
        raise NotImplementedError

    def _attribution(self) -> np.ndarray:
        return self._gradient


class GradientRun(PixelRun):
    """Saliency (a plain ``InputGradients``) or guided backpropagation (a guided one): ∂y/∂x at x."""

    def __init__(self, grad: GradientFunction, x: np.ndarray, weights: np.ndarray, top: float | None = None):
        super().__init__(grad, x, weights, top, count=0)


class IntegratedGradientsRun(PixelRun):
    """Integrated gradients by the trapezoid rule over m points (module docstring)."""

    def __init__(self, grad: GradientFunction, x: np.ndarray, weights: np.ndarray, top: float | None = None,
                 steps: int = DEFAULT_STEPS, baseline: float | np.ndarray = 0.0, batch: int = DEFAULT_BATCH):
        """``steps``: m ≥ 2 points from the ``baseline`` x₀ (a number or an array shaped like x) to x."""
        if int(steps) < 2:
            raise MethodError(f"Integrated gradients needs at least 2 steps (got {steps}).")
        super().__init__(grad, x, weights, top, count=int(steps) - 1, batch=batch)
        self.steps = int(steps)
        self.baseline = np.broadcast_to(np.asarray(baseline, np.float32), self.x.shape).astype(np.float32)
        self.alphas = np.arange(self.steps, dtype=np.float64) / (self.steps - 1)
        self.coefficients = np.full(self.steps, 1.0 / (self.steps - 1))
        self.coefficients[[0, -1]] /= 2
        #: y at each α_k (NaN until evaluated).
        self.scores = np.full(self.steps, np.nan)
        self._sum = np.zeros(self.x.shape[1:], np.float64)

    def _at_x(self, gradient: np.ndarray) -> None:  # x is the point α = 1
        self._sum += self.coefficients[-1] * _finite64(gradient)
        self.scores[-1] = self.score if self.score is not None else np.nan

    def _points(self, start: int, stop: int) -> np.ndarray:
        x0 = self.baseline.astype(np.float64)
        alphas = self.alphas[start:stop, np.newaxis, np.newaxis, np.newaxis]
        return (x0 + alphas * (self.x.astype(np.float64) - x0)).astype(np.float32)

    def _at_points(self, start: int, scores: np.ndarray, gradients: np.ndarray) -> None:
        self.scores[start:start + len(scores)] = scores
        coefficients = self.coefficients[start:start + len(gradients)]
        self._sum += np.tensordot(coefficients, _finite64(gradients), axes=1)

    def _attribution(self) -> np.ndarray:
        return (self.x[0].astype(np.float64) - self.baseline[0].astype(np.float64)) * self._sum

    @property
    def gap(self) -> float:
        """Σ attribution − (y(x) − y(x₀)): completeness, 0 where y is linear along the path (the
        trapezoid rule's error otherwise)."""
        return float(self._attribution().sum() - (self.scores[-1] - self.scores[0]))


class SmoothGradRun(PixelRun):
    """SmoothGrad: the mean gradient over n noisy copies of x (module docstring)."""

    def __init__(self, grad: GradientFunction, x: np.ndarray, weights: np.ndarray, top: float | None = None,
                 samples: int = DEFAULT_SAMPLES, noise: float = DEFAULT_NOISE, seed: int | None = None,
                 batch: int = DEFAULT_BATCH):
        """``samples``: n ≥ 1 copies; ``noise``: σ as a fraction of max(x) − min(x)."""
        if int(samples) < 1:
            raise MethodError(f"SmoothGrad needs at least 1 sample (got {samples}).")
        super().__init__(grad, x, weights, top, count=int(samples), batch=batch)
        self.samples = int(samples)
        self.sigma = float(noise) * (float(self.x.max()) - float(self.x.min()))  # the range in float64
        self._rng = np.random.default_rng(seed)
        self._sum = np.zeros(self.x.shape[1:], np.float64)

    def _points(self, start: int, stop: int) -> np.ndarray:
        noise = self._rng.normal(0.0, self.sigma, size=(stop - start, *self.x.shape[1:]))
        return (self.x.astype(np.float64) + noise).astype(np.float32)

    def _at_points(self, start: int, scores: np.ndarray, gradients: np.ndarray) -> None:
        self._sum += _finite64(gradients).sum(axis=0)

    def _attribution(self) -> np.ndarray:
        return self._sum / self.samples


# -- one-shot functions ---------------------------------------------------------------------
def saliency(grad: GradientFunction, x: np.ndarray, weights: np.ndarray, top: float | None = None) -> np.ndarray:
    """Saliency (Simonyan et al., 2014): ∂y/∂x (H, W, C); display ``abs_max_map``. 1 pass."""
    return GradientRun(grad, x, weights, top).result()


def guided_backprop(guided_grad: GradientFunction, x: np.ndarray, weights: np.ndarray,
                    top: float | None = None) -> np.ndarray:
    """Guided backpropagation (Springenberg et al., 2015): ∂y/∂x under the guided ReLU rule, from a
    guided ``InputGradients`` (H, W, C); display ``abs_max_map``. 1 pass."""
    return GradientRun(guided_grad, x, weights, top).result()


def integrated_gradients(grad: GradientFunction, x: np.ndarray, weights: np.ndarray, top: float | None = None,
                         steps: int = DEFAULT_STEPS, baseline: float | np.ndarray = 0.0,
                         batch: int = DEFAULT_BATCH) -> np.ndarray:
    """Integrated gradients (Sundararajan et al., 2017), trapezoid rule over ``steps`` points
    (H, W, C); display ``positive_sum_map``. ``steps`` passes."""
    return IntegratedGradientsRun(grad, x, weights, top, steps, baseline, batch).result()


def smoothgrad(grad: GradientFunction, x: np.ndarray, weights: np.ndarray, top: float | None = None,
               samples: int = DEFAULT_SAMPLES, noise: float = DEFAULT_NOISE, seed: int | None = None,
               batch: int = DEFAULT_BATCH) -> np.ndarray:
    """SmoothGrad (Smilkov et al., 2017): the mean gradient of ``samples`` noisy copies (H, W, C);
    display ``abs_max_map``. ``samples`` + 1 passes."""
    return SmoothGradRun(grad, x, weights, top, samples, noise, seed, batch).result()


def guided_gradcam(guided_attribution: np.ndarray, gradcam_map: np.ndarray) -> np.ndarray:
    """Guided Grad-CAM (Selvaraju et al., 2017): guided backpropagation (H, W, C) ⊙ the raw Grad-CAM
    map (h, w) upsampled bilinearly to (H, W) — OpenCV's INTER_LINEAR, pixel centres aligned
    (x_in = (x_out + ½)·w/W − ½, clamped at the borders), as ``cams.scale`` resizes maps. The map
    is not min-max scaled first: it only scales the product, which the display scales anyway."""
    attribution = _finite64(guided_attribution)
    height, width = attribution.shape[:2]
    cam = np.asarray(_finite64(gradcam_map), dtype=np.float32)
    if cam.shape != (height, width):
        cam = np.asarray(cv2.resize(cam, (width, height), interpolation=cv2.INTER_LINEAR), np.float32)
    return _float32(attribution * cam.astype(np.float64)[..., np.newaxis])


# -- by method name (the registry, titles and summaries are cams.METHODS') ----------------------
#: The display reduction of each pixel method, by its name in ``cams.METHODS``.
DISPLAYS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "saliency": abs_max_map, "integrated-gradients": positive_sum_map, "smoothgrad": abs_max_map,
    "guided-backprop": abs_max_map, "guided-gradcam": abs_max_map,
}
#: The methods whose gradients pass through guided ReLUs.
GUIDED = frozenset({"guided-backprop", "guided-gradcam"})


def _known(name: str) -> str:
    if name not in DISPLAYS:
        raise MethodError(f"Unknown pixel method '{name}'. Choose one of: {', '.join(DISPLAYS)}.")
    return name


def display(name: str, attribution: np.ndarray) -> np.ndarray:
    """The (H, W) map ≥ 0 that method ``name`` shows for its raw attribution (module docstring)."""
    return DISPLAYS[_known(name)](attribution)


def passes(name: str, steps: int = DEFAULT_STEPS, samples: int = DEFAULT_SAMPLES) -> int:
    """Model passes (forward + backward, one model input each) of method ``name``."""
    _known(name)
    return {"saliency": 1, "guided-backprop": 1, "guided-gradcam": 2,
            "integrated-gradients": int(steps), "smoothgrad": int(samples) + 1}[name]


def start(name: str, grad: GradientFunction, x: np.ndarray, weights: np.ndarray, top: float | None = None, *,
          steps: int = DEFAULT_STEPS, samples: int = DEFAULT_SAMPLES, noise: float = DEFAULT_NOISE,
          seed: int | None = None, baseline: float | np.ndarray = 0.0, batch: int = DEFAULT_BATCH) -> PixelRun:
    """The stepwise run of method ``name`` (``grad`` guided for the guided methods; guided Grad-CAM's
    run is guided backpropagation's, to be multiplied by the map with ``guided_gradcam``)."""
    _known(name)
    if name == "integrated-gradients":
        return IntegratedGradientsRun(grad, x, weights, top, steps, baseline, batch)
    if name == "smoothgrad":
        return SmoothGradRun(grad, x, weights, top, samples, noise, seed, batch)
    return GradientRun(grad, x, weights, top)

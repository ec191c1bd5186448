"""One compiled forward + backward pass per (model, layer): activations, gradients and logits.

For a batch of N model inputs, N score vectors v_n and N top-class coefficients t_n,
``Capture.run`` returns

    w_n = v_n + t_n · onehot(top class of input n)              (N, units)  the score vector used
    A_n = the layer's output for input n                       (N, h, w, K)
          (a token layer's patch tokens as their grid: layers.TokenGrid)
    g_n = ∂(Σ_u w_nu · logits_nu) / ∂A_n                        (N, h, w, K)
    logits_n                                                    (N, units)

Samples are independent at inference (BatchNorm and Dropout run with ``training=False``), so one
backward pass of Σ_n w_n·logits_n gives every sample's own gradient. The top class is decided
inside the same pass (no separate prediction first): t_n = 1 explains it, −1 speaks against it,
and v_n = −onehot(B) with t_n = 1 asks "why the top class rather than B". What a method does
with A and g is a pure function in cams.py.

Each capture is one ``tf.function``. For a fixed-size model it is traced once per batch size with
concrete shapes: a signature that leaves the batch dimension free measured 1.5–1.7× slower per
map on ResNet50 (TensorFlow's graph optimisations and oneDNN kernels need the shapes). A
variable-size model has no shapes to give: its signature leaves batch, height and width free,
so it is traced once. No class and no picture ever retraces.

Tracing is the expensive part of a layer's first map, and it holds the interpreter lock: building
the forward and gradient graphs and the function around them is pure Python (~200k calls,
0.2–0.3 s of CPU for the demo model, seconds for a large one), and the first call then
instantiates the function (another ~0.1 s). A program with a UI thread calls ``prepare`` for the
layers the user is likely to pick while the user is idle, so a click on them does neither.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from .graph import run_graph
from .heads import Head
from .layers import check_eligible, grid_of


@dataclass
class Captured:
    """What one capture returns, as float32 NumPy arrays (batch first)."""

    activations: np.ndarray  # (N, h, w, K)
    gradients: np.ndarray  # (N, h, w, K)
    logits: np.ndarray  # (N, units)
    weights: np.ndarray  # (N, units): the score vectors used (the top class filled in)

    @property
    def scores(self) -> np.ndarray:
        """(N,) the explained pre-softmax scores y_n = w_n · logits_n."""
        return (self.weights.astype(np.float64) * self.logits.astype(np.float64)).sum(axis=-1)

    @property
    def nbytes(self) -> int:
        return self.activations.nbytes + self.gradients.nbytes + self.logits.nbytes + self.weights.nbytes


def top_class_weights(head: Head, logits):
    """Score vectors of each row's top class (``Head.top_index``): one-hot, or ±1 for a binary head
    (z > 0: class 1); a value head's first value; a segmentation head's most covering class."""
    if head.kind == "binary":
        return tf.where(logits > 0.0, 1.0, -1.0)
    if head.kind == "value":
        return tf.one_hot(tf.zeros(tf.shape(logits)[:1], tf.int32), head.units, dtype=tf.float32)
    if head.kind == "segmentation":
        pixels = tf.reshape(logits[:, head.classes:], (tf.shape(logits)[0], -1, head.classes))
        coverage = tf.reduce_sum(tf.one_hot(tf.argmax(pixels, axis=-1), head.classes), axis=1)
        return tf.one_hot(tf.argmax(coverage, axis=-1), head.units, dtype=tf.float32)
    return tf.one_hot(tf.argmax(logits, axis=-1), head.units, dtype=tf.float32)


class Capture:
    """The compiled capture of one layer of one model. Not thread-safe: use it from one thread."""

    def __init__(self, model, head: Head, layer: str, input_shape: tuple[int | None, int | None, int],
                 on_trace: Callable[[str], None] | None = None):
        """``input_shape`` is (height, width, channels) of the model input; None for a variable side."""
        check_eligible(model, layer)
        #: A Vision Transformer's token layer: A and g are read on its patch grid, so every method
        #: (and Score-CAM's masks) sees (h, w, D) like a convolution's output.
        self.grid = grid_of(model, layer)
        self.model = model
        self.head = head
        self.layer = layer
        self._on_trace = on_trace
        self._input_shape = input_shape
        self.traced = False  # True after the first successful run (or prepare)
        #: Batch sizes run so far: each one has its own trace for a fixed-size model (GradCam pads to one).
        self.batch_sizes: set[int] = set()
        if None in input_shape[:2]:
            signature = [tf.TensorSpec((None, *input_shape), tf.float32),
                         tf.TensorSpec((None, head.units), tf.float32), tf.TensorSpec((None,), tf.float32)]
            self._function = tf.function(self._capture, input_signature=signature)
        else:
            self._function = tf.function(self._capture)

    def _capture(self, batch, weights, top):
        if self._on_trace is not None:
            self._on_trace(self.layer)  # a Python side effect: runs only while tracing
        with tf.GradientTape() as tape:
            logits, activations = run_graph(self.model, batch, self.head, self.layer, tape.watch)
            logits = tf.cast(logits, tf.float32)
            weights = weights + top[:, tf.newaxis] * tf.stop_gradient(top_class_weights(self.head, logits))
            score = tf.reduce_sum(logits * weights)
        gradients = tape.gradient(score, activations)
        if self.grid is not None:
            activations, gradients = self.grid.to_grid(activations), self.grid.to_grid(gradients)
        return tf.cast(activations, tf.float32), tf.cast(gradients, tf.float32), logits, weights

    def run(self, batch: np.ndarray, weights: np.ndarray, top: np.ndarray | None = None) -> Captured:
        """Activations, gradients and logits for model inputs ``batch``, score vectors ``weights`` and
        top-class coefficients ``top`` (default: 1 for an all-zero weight row, the top class; else 0)."""
        weights = np.asarray(weights, dtype=np.float32)
        tops = (~weights.any(axis=-1)).astype(np.float32) if top is None else np.asarray(top, np.float32)
        activations, gradients, logits, used = self._function(
            tf.constant(batch, tf.float32), tf.constant(weights), tf.constant(tops))
        self.traced = True
        self.batch_sizes.add(len(batch))
        return Captured(activations.numpy(), gradients.numpy(), logits.numpy(), used.numpy())

    def prepare(self, side: int) -> bool:
        """Trace and instantiate the function now, by running one zero batch through it.

        ``side`` is the height/width of that batch where the model's input size is variable
        (the function is shape-generic: any size that the model accepts traces it). Returns
        False (and does nothing) when the capture has run already. Meant to be called ahead of
        the layer's first map, at a moment when holding the interpreter lock harms no one.
        """
        if self.traced:
            return False
        height, width, channels = self._input_shape
        batch = np.zeros((1, height or side, width or side, channels), np.float32)
        self.run(batch, np.zeros((1, self.head.units), np.float32))
        return True

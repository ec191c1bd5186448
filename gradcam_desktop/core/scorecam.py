"""Score-CAM (Wang et al., 2020): channel weights from forward passes, not gradients.

As pytorch-grad-cam computes it: each channel A_k of the layer's output is upsampled bilinearly
to the model's input size (corners aligned, like its ``torch.nn.UpsamplingBilinear2d``) and
min-max scaled, M_k = (U_k − min U_k) / (max U_k − min U_k + 1e-8); the preprocessed input X is
multiplied by it; s_k = the explained pre-softmax score y(X ⊙ M_k); w = softmax_k(s);
map = ReLU(Σ_k w_k A_k).

K channels cost K forward passes, so they are batched (up to ``MAX_BATCH`` masks per call, fewer
for large inputs) and the work is split into steps, one batch each: a UI job runs one step per
turn and can stop between them. ``max_channels`` N keeps the N channels with the largest
spatial variance (Faster Score-CAM, Wang et al. 2020): near-constant channels make near-uniform
masks that say little.

One ``MaskScorer`` per model: the upsampling, masking, forward pass and score are one compiled
function whose inputs are the picture, a (h, w, B) block of channels and the score vector, so
neither the layer nor the class nor the channel block retraces it. The last block is padded
with zero channels (their scores are dropped) to keep one shape.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from .graph import run_graph
from .heads import Head

__all__ = ["MAX_BATCH", "MaskScorer", "ScoreCamRun", "align_corners_matrix", "batch_for_step", "batch_size_for",
           "pick_channels"]

#: Masks per forward pass at the reference size (224 × 224); fewer for larger inputs.
MAX_BATCH = 32
_REFERENCE_PIXELS = 224 * 224
MINMAX_EPS = 1e-8


def align_corners_matrix(size_out: int, size_in: int) -> np.ndarray:
    """(size_out, size_in) matrix of 1-D bilinear interpolation with corners aligned."""
    matrix = np.zeros((size_out, size_in), np.float64)
    if size_in == 1 or size_out == 1:
        matrix[:, 0] = 1.0
        return matrix
    positions = np.arange(size_out) * (size_in - 1) / (size_out - 1)
    low = np.minimum(np.floor(positions).astype(int), size_in - 2)
    frac = positions - low
    matrix[np.arange(size_out), low] = 1.0 - frac
    matrix[np.arange(size_out), low + 1] += frac
    return matrix


def pick_channels(activations: np.ndarray, max_channels: int | None) -> np.ndarray:
    """Indices of the channels to score: all, or the ``max_channels`` of largest spatial variance."""
    channels = activations.shape[-1]
    if not max_channels or max_channels >= channels:
        return np.arange(channels)
    variance = activations.reshape(-1, channels).astype(np.float64).var(axis=0)
    return np.sort(np.argsort(-variance, kind="stable")[:max_channels])


def batch_for_step(step_seconds: float, forward_seconds: float) -> int:
    """Masks per step so that one step lasts about ``step_seconds`` given one forward pass's time:
    a power of two ≤ ``MAX_BATCH`` (each size is one trace of the scorer, so few sizes)."""
    if forward_seconds <= 0:
        return MAX_BATCH
    fits = max(1, int(step_seconds / forward_seconds))
    return min(MAX_BATCH, 1 << (fits.bit_length() - 1))


def batch_size_for(height: int, width: int) -> int:
    """Masks per forward pass: 32 at 224², proportionally fewer for larger inputs (memory)."""
    return max(1, min(MAX_BATCH, int(MAX_BATCH * _REFERENCE_PIXELS / max(1, height * width))))


class MaskScorer:
    """The compiled masked forward pass of one model. Not thread-safe."""

    def __init__(self, model, head: Head, input_shape: tuple[int | None, int | None, int], on_trace=None):
        """``input_shape`` is (height, width, channels) of the model input; None for a variable side."""
        self.model = model
        self.head = head
        self._on_trace = on_trace
        if None in input_shape[:2]:
            signature = [tf.TensorSpec((1, None, None, input_shape[2]), tf.float32),
                         tf.TensorSpec((None, None, None), tf.float32),
                         tf.TensorSpec((head.units,), tf.float32),
                         tf.TensorSpec((None, None), tf.float32), tf.TensorSpec((None, None), tf.float32)]
            self._function = tf.function(self._scores, input_signature=signature)
        else:
            self._function = tf.function(self._scores)

    def _scores(self, picture, channels, weights, rows, cols):
        if self._on_trace is not None:
            self._on_trace("scorecam")
        # U[b] = R_rows · A_b · R_colsᵀ: the separable bilinear upsampling of every channel at once.
        upsampled = tf.einsum("Hh,hwb,Ww->bHW", rows, channels, cols)
        low = tf.reduce_min(upsampled, axis=(1, 2), keepdims=True)
        high = tf.reduce_max(upsampled, axis=(1, 2), keepdims=True)
        masks = (upsampled - low) / (high - low + MINMAX_EPS)
        logits, _ = run_graph(self.model, picture * masks[..., tf.newaxis], self.head)
        return tf.linalg.matvec(tf.cast(logits, tf.float32), weights)

    def scores(self, picture: np.ndarray, channels: np.ndarray, weights: np.ndarray,
               rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Scores y(X ⊙ M_b) for a (h, w, B) block of channels."""
        return self._function(tf.constant(picture, tf.float32), tf.constant(channels, tf.float32),
                              tf.constant(weights, tf.float32), tf.constant(rows, tf.float32),
                              tf.constant(cols, tf.float32)).numpy()


class ScoreCamRun:
    """One Score-CAM map, computed one batch of masks per ``step()``."""

    def __init__(self, scorer: MaskScorer, picture: np.ndarray, activations: np.ndarray, weights: np.ndarray,
                 max_channels: int | None = None, batch: int | None = None):
        """``picture``: the preprocessed model input (1, H, W, C); ``activations``: (h, w, K) of the
        layer for it; ``weights``: the score vector (units,) of the explained score; ``batch``: masks
        per step (default ``batch_size_for`` the input size)."""
        self._scorer = scorer
        self._picture = picture
        self._activations = np.asarray(activations, np.float32)
        self._weights = np.asarray(weights, np.float32)
        height, width = picture.shape[1:3]
        h, w = self._activations.shape[:2]
        self._rows = align_corners_matrix(height, h).astype(np.float32)
        self._cols = align_corners_matrix(width, w).astype(np.float32)
        self.channels = pick_channels(self._activations, max_channels)
        self.batch = min(batch or MAX_BATCH, batch_size_for(height, width))
        self.total = math.ceil(len(self.channels) / self.batch)
        self.done = 0
        self._scores: list[np.ndarray] = []

    @property
    def finished(self) -> bool:
        return self.done >= self.total

    def step(self) -> bool:
        """Score the next batch of masks; True when all are scored."""
        if self.finished:
            return True
        chosen = self.channels[self.done * self.batch:(self.done + 1) * self.batch]
        block = np.zeros((*self._activations.shape[:2], self.batch), np.float32)
        block[..., :len(chosen)] = self._activations[..., chosen]
        scores = self._scorer.scores(self._picture, block, self._weights, self._rows, self._cols)
        self._scores.append(scores[:len(chosen)])
        self.done += 1
        return self.finished

    def result(self) -> np.ndarray:
        """The raw map (h, w) after all steps."""
        while not self.finished:
            self.step()
        scores = np.concatenate(self._scores).astype(np.float64) if self._scores else np.zeros(0)
        scores = np.nan_to_num(scores, nan=-np.inf)
        if scores.size == 0 or not np.isfinite(scores).any():
            return np.zeros(self._activations.shape[:2], np.float32)
        weights = np.exp(scores - scores.max())
        weights /= weights.sum()
        cam = self._activations[..., self.channels].astype(np.float64) @ weights
        return np.maximum(np.nan_to_num(cam, nan=0.0, posinf=0.0, neginf=0.0), 0.0).astype(np.float32)

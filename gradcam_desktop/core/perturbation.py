"""Black-box attribution: maps from the model's answers alone (no gradients, no layer).

Everything here works with any ``scores(batch) -> (N,)`` callable: ``batch`` is (N, H, W, C)
float32 in the model's input space (already preprocessed) and the callable returns the explained
score y of each row (a Keras model, ONNX Runtime, TFLite ... behind a small wrapper). This module
imports no TensorFlow.

**Occlusion** (Zeiler & Fergus, 2014; as Captum's ``Occlusion`` with ``sliding_window_shapes=(C, w, w)``
and ``strides=(C, s, s)``): a w × w window slides from the top-left corner with stride s while it
fits (rows 0, s, 2s, … ≤ H − w, the same for columns); at each position the window's pixels, all
channels, are set to the baseline (default 0 in the model's input space; a scalar, a per-channel
(C,) array or anything that broadcasts to (H, W, C)). The attribution of a pixel is the mean, over
the windows that cover it, of y(x) − y(x with that window occluded); pixels no window covers (the
right and bottom strips when (H − w) % s ≠ 0) get 0. The raw map is (H, W) float32: the window
spans all channels, so every channel of a pixel would get the same value and one plane is kept.
It is signed: negative where hiding a region *raised* the score.

  Defaults: ``default_window(H, W)`` = round(16 · min(H, W) / 224), at least 1 (16 px at 224², the
  size commonly used for ImageNet models, scaled with the input so the window covers the same share
  of the picture); ``default_stride(w)`` = w // 2, at least 1: every pixel away from the border is
  covered by ~4 windows, which smooths the blockiness of s = w. Captum's default stride is 1 (every
  position), which costs ~60× more passes at 224² (43 681 against 730) for a map that is barely finer.

**RISE** (Petsiuk, Das & Saenko, "RISE: Randomized Input Sampling for Explanation of Black-box
Models", BMVC 2018): N binary g × g grids (each cell kept with probability p), each upsampled
bilinearly (cv2.resize, INTER_LINEAR: half-pixel centres, edge pixels replicated) to
((g + 1)·ceil(H/g), (g + 1)·ceil(W/g)) and cropped to H × W at a random shift (0 … cell − 1 in each
direction), as the paper's reference implementation does (it resizes with skimage, whose 'reflect'
border differs from cv2's only in the outermost half cell). map = Σ_i y(x ⊙ M_i) · M_i / (N · p).
The mask multiplies the model *input* (baseline 0 in the input space), where the paper masks the raw
image: for inputs normalised around 0 a masked pixel is then the dataset's mean colour, not black.
The map is an expectation of y: its level is ~E[y], so a negative score (a logit) makes it negative.

Display: the app's display maps are ≥ 0, then scaled to [0, 1]; ``display(raw)`` = ReLU(raw) (NaN
and inf → 0) drops occlusion's negative evidence. (The scaling subtracts the minimum, so a RISE map
with a positive level keeps its contrast; explain a probability rather than a negative logit.)

Cost in model evaluations (``occlusion_passes``, ``RiseRun.passes``): occlusion 1 + positions (the
un-occluded reference plus one per window position: 730 at 224² with the defaults); RISE N. Both
run as cancellable jobs like Score-CAM: ``OcclusionRun`` / ``RiseRun`` have ``.total`` steps of
``batch`` rows each, ``.done``, ``.finished``, ``.step() -> bool`` and ``.result()``. The last batch is
padded with copies of its last row (their scores dropped), so a compiled model sees one batch size.
A NaN or inf score contributes 0 (a NaN reference score makes the occlusion map 0); the result is
always finite. Accumulation is float64. RISE masks are made one batch at a time from grids and
shifts drawn up front (N·g² booleans), so memory does not grow with N and the map does not depend
on the batch size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import cv2
import numpy as np

from .errors import MethodError

__all__ = ["DEFAULT_BATCH", "Masks", "OcclusionRun", "RiseMasks", "RiseRun", "ScoresFn", "default_stride", "default_window",
           "display", "occlusion", "occlusion_passes", "occlusion_positions", "rise"]

#: scores(batch (N, H, W, C) float32) -> (N,) explained scores.
ScoresFn = Callable[[np.ndarray], np.ndarray]

DEFAULT_BATCH = 16
#: Occlusion's window at the reference input side (224 px), scaled with the input.
REFERENCE_WINDOW = 16
REFERENCE_SIDE = 224
RISE_MASKS = 4000
RISE_GRID = 7
RISE_KEEP = 0.5


def _finite32(array: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):  # float64 → float32 overflow becomes 0 below
        out = np.asarray(array, dtype=np.float32)
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


def display(raw: np.ndarray) -> np.ndarray:
    """The display map of a raw occlusion or RISE map: ReLU(raw) as float32, NaN/inf → 0."""
    return np.maximum(_finite32(raw), 0.0)


def default_window(height: int, width: int) -> int:
    """Occlusion window side: round(16 · min(H, W) / 224) (half up), at least 1: 16 px at 224²."""
    return max(1, math.floor(REFERENCE_WINDOW * min(height, width) / REFERENCE_SIDE + 0.5))


def default_stride(window: int) -> int:
    """Occlusion stride: half the window (w // 2), at least 1."""
    return max(1, window // 2)


def occlusion_positions(size: int, window: int, stride: int) -> np.ndarray:
    """Window starts along one side: 0, s, 2s, … ≤ size − window (empty if the window does not fit)."""
    return np.arange(0, size - window + 1, stride) if window <= size else np.zeros(0, int)


def occlusion_passes(height: int, width: int, window: int, stride: int) -> int:
    """Model evaluations of one occlusion map: 1 (the reference) + the number of window positions."""
    return 1 + len(occlusion_positions(height, window, stride)) * len(occlusion_positions(width, window, stride))


def _as_picture(x: np.ndarray) -> np.ndarray:
    """(H, W, C) float32 from (H, W, C) or (1, H, W, C)."""
    picture = np.asarray(x, dtype=np.float32)
    if picture.ndim == 4 and picture.shape[0] == 1:
        picture = picture[0]
    if picture.ndim != 3 or min(picture.shape) < 1:
        raise MethodError(f"The input must be one picture of shape (H, W, C) or (1, H, W, C), not {tuple(np.shape(x))}.")
    return picture


def _check_batch(batch: int) -> int:
    if int(batch) < 1:
        raise MethodError(f"The batch size must be at least 1, not {batch}.")
    return int(batch)


class _Batched:
    """Rows scored ``batch`` at a time; the last batch padded with copies of its last row."""

    def __init__(self, scores: ScoresFn, rows: int, batch: int):
        self._scores_fn = scores
        self.batch = _check_batch(batch)
        self.passes = rows
        self.total = math.ceil(rows / self.batch)
        self.done = 0

    @property
    def finished(self) -> bool:
        return self.done >= self.total

    def _score(self, rows: np.ndarray) -> np.ndarray:
        """Scores (k,) float64 of ``rows`` (k ≤ batch, H, W, C), padded to ``batch`` for the call."""
        count = len(rows)
        if count < self.batch:
            rows = np.concatenate([rows, np.repeat(rows[-1:], self.batch - count, axis=0)])
        with np.errstate(over="ignore", invalid="ignore"):
            answer = np.asarray(self._scores_fn(rows), dtype=np.float64).reshape(-1)
        if answer.size != self.batch:
            raise MethodError(f"The model returned {answer.size} scores for a batch of {self.batch} inputs; "
                              "it must return one score per input.")
        return answer[:count]


class OcclusionRun(_Batched):
    """One occlusion map, computed ``batch`` model evaluations per ``step()``.

    Rows in order: the un-occluded input, then the window positions row by row; the reference
    shares the first step with the first windows, so ``total`` = ceil(passes / batch).
    """

    def __init__(self, scores: ScoresFn, x: np.ndarray, window: int | None = None, stride: int | None = None,
                 baseline: float | np.ndarray = 0.0, batch: int = DEFAULT_BATCH):
        """``x``: the preprocessed input (H, W, C) or (1, H, W, C); ``window``/``stride`` in pixels
        (default ``default_window``/``default_stride``); ``baseline``: what occluded pixels become."""
        self._picture = _as_picture(x)
        height, width, channels = self._picture.shape
        self.window = default_window(height, width) if window is None else int(window)
        self.stride = default_stride(self.window) if stride is None else int(stride)
        if self.window < 1:
            raise MethodError(f"The occlusion window must be at least 1 pixel, not {window}.")
        if self.stride < 1:
            raise MethodError(f"The occlusion stride must be at least 1 pixel, not {stride}.")
        if self.window > min(height, width):
            raise MethodError(f"The occlusion window ({self.window} px) is larger than the {height}×{width} input; "
                              f"choose at most {min(height, width)}.")
        try:
            self._baseline = np.broadcast_to(np.asarray(baseline, np.float32), self._picture.shape)
        except ValueError:
            raise MethodError(f"The occlusion baseline must be a number or one value per channel ({channels}), "
                              f"not shape {np.shape(baseline)}.") from None
        rows = occlusion_positions(height, self.window, self.stride)
        cols = occlusion_positions(width, self.window, self.stride)
        self.positions = [(int(r), int(c)) for r in rows for c in cols]
        super().__init__(scores, 1 + len(self.positions), batch)
        self._answers: list[np.ndarray] = []

    def _row(self, index: int) -> np.ndarray:
        picture = self._picture.copy()
        if index > 0:
            r, c = self.positions[index - 1]
            w = self.window
            picture[r:r + w, c:c + w] = self._baseline[r:r + w, c:c + w]
        return picture

    def step(self) -> bool:
        """Evaluate the next batch of rows; True when all are done."""
        if self.finished:
            return True
        indices = range(self.done * self.batch, min(self.passes, (self.done + 1) * self.batch))
        self._answers.append(self._score(np.stack([self._row(i) for i in indices])))
        self.done += 1
        return self.finished

    def result(self) -> np.ndarray:
        """The raw map (H, W) float32 after all steps (signed; ``display`` for the display map)."""
        while not self.finished:
            self.step()
        answers = np.concatenate(self._answers)
        with np.errstate(over="ignore", invalid="ignore"):
            drops = answers[0] - answers[1:]  # y(x) − y(occluded), one per position
        drops = np.nan_to_num(drops, nan=0.0, posinf=0.0, neginf=0.0)  # NaN/inf: 0 contribution
        height, width = self._picture.shape[:2]
        total = np.zeros((height, width), np.float64)
        covered = np.zeros((height, width), np.int64)
        w = self.window
        for (r, c), drop in zip(self.positions, drops):
            total[r:r + w, c:c + w] += drop
            covered[r:r + w, c:c + w] += 1
        with np.errstate(over="ignore", invalid="ignore"):
            mean = np.where(covered > 0, total / np.maximum(covered, 1), 0.0)
        return _finite32(mean)


def occlusion(scores: ScoresFn, x: np.ndarray, window: int | None = None, stride: int | None = None,
              baseline: float | np.ndarray = 0.0, batch: int = DEFAULT_BATCH) -> np.ndarray:
    """The raw occlusion map (H, W) float32 in one call (see ``OcclusionRun``)."""
    return OcclusionRun(scores, x, window, stride, baseline, batch).result()


class RiseMasks:
    """RISE's N masks for an H × W input, made on demand: ``masks[start:stop]`` → (k, H, W) float32.

    The grids (N, g, g) bool and the shifts (N, 2) are drawn up front from
    ``np.random.default_rng(seed)`` (grids first, then row shifts, then column shifts), so mask i is
    the same whatever slices are asked for.
    """

    def __init__(self, height: int, width: int, n: int = RISE_MASKS, grid: int = RISE_GRID, p: float = RISE_KEEP,
                 seed: int | None = None):
        if int(n) < 1:
            raise MethodError(f"RISE needs at least 1 mask, not {n}.")
        if int(grid) < 1:
            raise MethodError(f"The RISE grid must be at least 1×1, not {grid}.")
        if not 0.0 < float(p) <= 1.0:
            raise MethodError(f"The RISE keep probability must be in (0, 1], not {p}.")
        self.height, self.width, self.n, self.grid, self.p = int(height), int(width), int(n), int(grid), float(p)
        self.cell = (math.ceil(self.height / self.grid), math.ceil(self.width / self.grid))
        self.upsampled = ((self.grid + 1) * self.cell[0], (self.grid + 1) * self.cell[1])
        rng = np.random.default_rng(seed)
        self.grids = rng.random((self.n, self.grid, self.grid)) < self.p
        self.shifts = np.stack([rng.integers(0, self.cell[0], self.n), rng.integers(0, self.cell[1], self.n)], axis=1)

    def __len__(self) -> int:
        return self.n

    def mask(self, index: int) -> np.ndarray:
        """Mask ``index`` (H, W) float32 in [0, 1]."""
        up = cv2.resize(self.grids[index].astype(np.float32), (self.upsampled[1], self.upsampled[0]),
                        interpolation=cv2.INTER_LINEAR)
        dy, dx = (int(v) for v in self.shifts[index])
        return np.ascontiguousarray(up[dy:dy + self.height, dx:dx + self.width])

    def __getitem__(self, index: int | slice) -> np.ndarray:
        """``masks[i]``: (H, W); ``masks[start:stop]``: (k, H, W)."""
        if not isinstance(index, slice):
            if not -self.n <= index < self.n:
                raise IndexError(f"mask {index} of {self.n}")
            return self.mask(index % self.n)
        indices = range(*index.indices(self.n))
        out = np.empty((len(indices), self.height, self.width), np.float32)
        for k, i in enumerate(indices):
            out[k] = self.mask(i)
        return out


#: What ``RiseRun`` accepts as its masks.
Masks = RiseMasks | np.ndarray | Iterable[np.ndarray]


class RiseRun(_Batched):
    """One RISE map, ``batch`` masked inputs per ``step()``.

    ``masks``: None to generate ``n`` masks on a ``grid`` × ``grid`` grid with keep probability ``p``
    from ``seed``; a ``RiseMasks`` (made batch by batch as well); or the masks themselves, an
    (N, H, W) array or an iterable of (H, W) arrays. With given masks ``n``, ``grid`` and ``seed``
    are ignored and ``p`` is still the normaliser: map = Σ y M / (N p).
    """

    def __init__(self, scores: ScoresFn, x: np.ndarray, masks: Masks | None = None,
                 n: int = RISE_MASKS, grid: int = RISE_GRID, p: float = RISE_KEEP, seed: int | None = None,
                 batch: int = DEFAULT_BATCH):
        self._picture = _as_picture(x)
        height, width = self._picture.shape[:2]
        if not 0.0 < float(p) <= 1.0:
            raise MethodError(f"The RISE keep probability must be in (0, 1], not {p}.")
        self.p = float(p)
        self._masks: RiseMasks | np.ndarray
        if masks is None:
            self._masks = RiseMasks(height, width, n, grid, p, seed)
        elif isinstance(masks, RiseMasks):
            if (masks.height, masks.width) != (height, width):
                raise MethodError(f"RISE masks must be of the input's size {height}×{width}, "
                                  f"not {masks.height}×{masks.width}.")
            self._masks = masks
        else:
            given = masks if isinstance(masks, np.ndarray) else np.stack([np.asarray(m) for m in masks])
            if given.ndim != 3 or given.shape[1:] != (height, width) or len(given) < 1:
                raise MethodError(f"RISE masks must be N ≥ 1 arrays of the input's size {height}×{width}, "
                                  f"not shape {given.shape}.")
            self._masks = given
        super().__init__(scores, len(self._masks), batch)
        self._sum = np.zeros((height, width), np.float64)

    def step(self) -> bool:
        """Score the next batch of masked inputs; True when all are done."""
        if self.finished:
            return True
        start = self.done * self.batch
        masks = np.asarray(self._masks[start:min(self.passes, start + self.batch)], dtype=np.float32)
        answers = self._score(self._picture[np.newaxis] * masks[..., np.newaxis])
        answers = np.nan_to_num(answers, nan=0.0, posinf=0.0, neginf=0.0)
        with np.errstate(over="ignore", invalid="ignore"):
            self._sum += np.tensordot(answers, masks.astype(np.float64), axes=1)
        self.done += 1
        return self.finished

    def result(self) -> np.ndarray:
        """The raw map (H, W) float32 after all steps: Σ y(x ⊙ M_i) M_i / (N p)."""
        while not self.finished:
            self.step()
        with np.errstate(over="ignore", invalid="ignore"):
            return _finite32(self._sum / (self.passes * self.p))


def rise(scores: ScoresFn, x: np.ndarray, masks: Masks | None = None,
         n: int = RISE_MASKS, grid: int = RISE_GRID, p: float = RISE_KEEP, seed: int | None = None,
         batch: int = DEFAULT_BATCH) -> np.ndarray:
    """The raw RISE map (H, W) float32 in one call (see ``RiseRun``)."""
    return RiseRun(scores, x, masks, n, grid, p, seed, batch).result()

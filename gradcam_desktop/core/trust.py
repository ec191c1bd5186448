"""Can this map be trusted? Deletion/insertion curves, Average Drop and a randomisation sanity check.

Definitions (issue 8, so results are comparable with the literature):

* X: the picture as the model sees it (model input size, preprocessed), H × W × C. S: the raw map
  upsampled to H × W with OpenCV ``INTER_LINEAR``. Order: pixels by S descending, ties by
  row-major index (a stable sort of −S).
* n = 50 steps, k = ceil(H·W / n) pixels per step; p(·) = the explained class's probability
  (softmax; binary: p or 1 − p; multi-label: that unit's sigmoid). A "rather than B" map explains
  y_c − y_B, so its p is the class's share of the two, p_c / (p_c + p_B) (for softmax exactly
  σ(z_c − z_B)); an "against" map's p stays p_c, and ``core.verdicts`` reads its curves the other
  way round (``TrustReport.kind``). A value head (regression) and a segmentation head have no
  probability: p is the explained score y (the value; the class's sum over its predicted mask or
  the region) rescaled to (y − y_B) / (y_X − y_B), B the blurred picture below: 1 at the picture, 0
  at its blur (``relative_to_blurred``).
* Deletion: X_i = X with the first i·k pixels of the order set to 0 in every channel (RISE);
  insertion: X_i = B with the first i·k pixels taken from X, B = X blurred (Gaussian 11 × 11,
  σ = 5, OpenCV's default border). AUC = (Σ_i p_i − (p_0 + p_n)/2) / n.
* Average Drop = 100 · max(0, Y − O) / Y with Y = p(X), O = p(X ⊙ M), M = S / max S;
  Increase in Confidence = O > Y.
* Sanity check (Adebayo et al. 2018, cascading randomisation): on a COPY of the model, the
  weighted layers are re-drawn from the top toward the input (each tensor from a normal with its
  own mean and standard deviation, seeded; a tensor with no negative value stays non-negative,
  e.g. a BatchNorm variance), the map is computed again after each step, and its Spearman rank
  correlation with the original says whether the map depends on what the model learned.

The forward passes are batched (all curves' inputs in a few equal batches, one trace). A
``TrustTask`` does the work one batch / one sanity step at a time, so a window job can show
progress and stop; ``trust_report`` runs it to the end.
"""

from __future__ import annotations

import dataclasses
import math
import weakref
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from .task import Task
from .types import MapResult

__all__ = ["STEPS", "RandomizedCopy", "SanityStep", "TrustReport", "TrustTask", "auc", "average_drop", "cascade",
           "deletion_inputs", "explained_probability", "insertion_inputs", "pixel_order", "redraw", "spearman",
           "trust_report", "trust_task", "upsample"]

STEPS = 50
#: Heads whose curves follow the explained score, not a probability (``relative_to_blurred``).
SCORE_HEADS = ("value", "segmentation")
MAX_BATCH = 32
MAX_SANITY_STEPS = 8
BLUR_KERNEL = (11, 11)
BLUR_SIGMA = 5.0


# -- the definitions, as pure functions ----------------------------------------------------------
def upsample(raw: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """S: the raw map at the model input's (H, W), bilinear (OpenCV ``INTER_LINEAR``)."""
    raw = np.asarray(raw, np.float32)
    if raw.shape == tuple(size):
        return raw
    return cv2.resize(raw, (int(size[1]), int(size[0])), interpolation=cv2.INTER_LINEAR)


def pixel_order(saliency: np.ndarray) -> np.ndarray:
    """Flat pixel indices by saliency descending; ties by row-major index (stable sort of −S)."""
    return np.argsort(-np.asarray(saliency, np.float64).ravel(), kind="stable")


def pixels_per_step(height: int, width: int, steps: int = STEPS) -> int:
    return math.ceil(height * width / steps)


def deletion_inputs(picture: np.ndarray, order: np.ndarray, steps: int = STEPS) -> Generator[np.ndarray]:
    """X_0 … X_n of the deletion curve, one (H, W, C) array at a time."""
    height, width = picture.shape[:2]
    k = pixels_per_step(height, width, steps)
    current = picture.reshape(height * width, -1).copy()
    for i in range(steps + 1):
        if i:
            current[order[(i - 1) * k:i * k]] = 0.0
        yield current.reshape(picture.shape).copy()


def insertion_inputs(picture: np.ndarray, order: np.ndarray, steps: int = STEPS) -> Generator[np.ndarray]:
    """X_0 … X_n of the insertion curve: the blurred picture, then X's pixels in order."""
    height, width = picture.shape[:2]
    k = pixels_per_step(height, width, steps)
    flat = picture.reshape(height * width, -1)
    blurred = cv2.GaussianBlur(np.ascontiguousarray(picture, np.float32), BLUR_KERNEL, BLUR_SIGMA)
    current = blurred.reshape(height * width, -1).copy()
    for i in range(steps + 1):
        if i:
            chosen = order[(i - 1) * k:i * k]
            current[chosen] = flat[chosen]
        yield current.reshape(picture.shape).copy()


def auc(curve: Sequence[float] | np.ndarray) -> float:
    """Trapezoidal area under p_0 … p_n on [0, 1]: (Σ p_i − (p_0 + p_n)/2) / n."""
    values = np.asarray(curve, np.float64)
    n = len(values) - 1
    return float((values.sum() - (values[0] + values[-1]) / 2.0) / n)


def average_drop(original: float, masked: float) -> float:
    """100 · max(0, Y − O) / Y (Grad-CAM++ paper); 0 when Y is 0."""
    return 100.0 * max(0.0, original - masked) / original if original > 0 else 0.0


def explained_probability(probabilities: np.ndarray, class_index: int, versus: int | None = None) -> float:
    """p of the definitions: p_c, or with a "rather than" class B the share p_c / (p_c + p_B) (½ when both are 0)."""
    p = float(probabilities[class_index])
    if versus is None:
        return p
    total = p + float(probabilities[versus])
    return p / total if total > 0 else 0.5


def relative_to_blurred(scores: Sequence[float], blurred: float) -> list[float]:
    """A value head's scores as (y − y_B) / (y_X − y_B): 1 at the picture X, 0 at its blurred copy B
    (the insertion curve's start), so the curves read like probabilities: deletion falls from 1 toward
    0 as the value moves to the blurred picture's. A picture whose value its blur does not change
    (|y_X − y_B| ≤ 1e-9 · (1 + |y_X|)) gives y − y_B unscaled."""
    original = float(scores[0])
    scale = original - float(blurred)
    if abs(scale) <= 1e-9 * (1.0 + abs(original)):
        scale = 1.0
    return [(float(y) - float(blurred)) / scale for y in scores]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (ties get their average rank); NaN when either is constant."""
    ra, rb = _ranks(np.ravel(a)), _ranks(np.ravel(b))
    ra -= ra.mean()
    rb -= rb.mean()
    denominator = math.sqrt(float((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / denominator) if denominator > 0 else float("nan")


def _ranks(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, np.float64)
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), np.float64)
    ranks[order] = np.arange(len(values), dtype=np.float64)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return sums[inverse] / counts[inverse]


# -- the report ------------------------------------------------------------------------------------
@dataclass
class SanityStep:
    randomized: list[str]  # layer paths re-drawn so far (top first)
    spearman: float
    raw: np.ndarray  # the map after this step (layer resolution)


@dataclass
class TrustReport:
    """The faithfulness figures of one map."""

    steps: int
    deletion_curve: np.ndarray
    insertion_curve: np.ndarray
    original: float  # Y = p(X)
    masked: float  # O = p(X ⊙ M)
    random_deletion_curve: np.ndarray | None = None  # the same curves with a random pixel order
    random_insertion_curve: np.ndarray | None = None
    sanity: list[SanityStep] = field(default_factory=list)
    #: The map's score (``MapResult.score_kind``): "class", "versus" (p is the class's share of the
    #: two, see the module's definitions) or "counterfactual" (the map shows what lowers p).
    kind: str = "class"

    @property
    def random_deletion_auc(self) -> float | None:
        return None if self.random_deletion_curve is None else auc(self.random_deletion_curve)

    @property
    def random_insertion_auc(self) -> float | None:
        return None if self.random_insertion_curve is None else auc(self.random_insertion_curve)

    @property
    def deletion_auc(self) -> float:
        return auc(self.deletion_curve)

    @property
    def insertion_auc(self) -> float:
        return auc(self.insertion_curve)

    @property
    def average_drop(self) -> float:
        return average_drop(self.original, self.masked)

    @property
    def increase_in_confidence(self) -> bool:
        return self.masked > self.original

    def record(self) -> dict:
        """``gradcam trust --json``'s keys."""
        return {
            "steps": self.steps,
            "score_kind": self.kind,
            "deletion_auc": self.deletion_auc,
            "insertion_auc": self.insertion_auc,
            "deletion_curve": [float(p) for p in self.deletion_curve],
            "insertion_curve": [float(p) for p in self.insertion_curve],
            "average_drop": self.average_drop,
            "increase_in_confidence": bool(self.increase_in_confidence),
            "random_deletion_auc": self.random_deletion_auc,
            "random_insertion_auc": self.random_insertion_auc,
            "random_deletion_curve": _listed(self.random_deletion_curve),
            "random_insertion_curve": _listed(self.random_insertion_curve),
            "sanity": [{"randomized": list(s.randomized), "spearman": _finite_or_none(s.spearman)}
                       for s in self.sanity],
        }


def _listed(curve: np.ndarray | None) -> list[float] | None:
    return None if curve is None else [float(p) for p in curve]


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


class TrustTask(Task[TrustReport]):
    """The report of one map, step by step: a batch of forward passes or one sanity step each."""


def trust_task(engine, image, result: MapResult, *, steps: int = STEPS, baseline: bool = False,
               sanity: bool = True, sanity_steps: int = MAX_SANITY_STEPS, seed: int = 0,
               step_seconds: float | None = None) -> TrustTask:
    """The trust report of ``result`` (a map of ``image`` by ``engine``) as a stepwise task.

    By default a step is one batch of up to 32 forward passes (equal batches: one trace) or one
    sanity step. ``step_seconds`` (a UI job) makes the batches small enough to last about that
    long — a power of two, estimated from the engine's last capture of the layer — and runs a
    slow sanity map (Score-CAM) in its own steps, so a newer click never waits long.
    """
    return TrustTask(_report_steps(engine, image, result, steps, baseline, sanity, sanity_steps, seed,
                                   step_seconds))


def trust_report(engine, image, result: MapResult, **options) -> TrustReport:
    """``trust_task(...)`` run to the end."""
    return trust_task(engine, image, result, **options).finish()


def _batch_size(engine, layer: str, count: int, step_seconds: float | None) -> int:
    batches = math.ceil(count / MAX_BATCH)
    size = math.ceil(count / batches)  # equal batches: one trace, little padding
    if step_seconds is None:
        return size
    forward = engine.forward_seconds(layer)
    if forward is None:
        return min(size, 4)  # not measured yet: small and safe
    fits = max(1, int(step_seconds / forward))
    return min(size, 1 << (fits.bit_length() - 1))


def _report_steps(engine, image, result, steps, baseline, sanity, sanity_steps, seed, step_seconds=None):
    picture = engine.model_input(image)[0].astype(np.float32)
    height, width = picture.shape[:2]
    saliency = upsample(result.raw, (height, width))
    order = pixel_order(saliency)
    top = float(saliency.max())
    mask = saliency / top if top > 0 else np.zeros_like(saliency)
    sources: list = [deletion_inputs(picture, order, steps), insertion_inputs(picture, order, steps),
                     iter([picture * mask[..., np.newaxis]])]
    if baseline:
        shuffled = np.random.default_rng(seed).permutation(height * width)
        sources += [deletion_inputs(picture, shuffled, steps), insertion_inputs(picture, shuffled, steps)]
    count = (steps + 1) * (4 if baseline else 2) + 1
    size = _batch_size(engine, (result.layers or (result.layer,))[0], count, step_seconds)
    batches = math.ceil(count / size)
    # The sanity check re-draws the model's weights: a black box (no Keras model) has none to re-draw.
    cascade_plan = cascade(engine.model, sanity_steps) if sanity and engine.model is not None else []
    total = batches + len(cascade_plan)
    probabilities: list[float] = []
    inputs = (x for source in sources for x in source)
    # A value or segmentation head has no probability: its curves follow the explained score itself
    # (the class's value or region sum; "against" reads the value, like p_c), rescaled below.
    scored = engine.head.kind in SCORE_HEADS
    weights = engine.score_vector(dataclasses.replace(result.target, counterfactual=False))[0] if scored else None
    for b in range(batches):
        chunk = [x for _, x in zip(range(size), inputs, strict=False)]
        padded = np.zeros((size, *picture.shape), np.float32)
        padded[:len(chunk)] = chunk
        logits = engine.logits(padded)[:len(chunk)]
        if weights is not None:
            probabilities += [float(value) for value in logits.astype(np.float64) @ weights.astype(np.float64)]
        else:
            probabilities += [explained_probability(engine.head.probabilities(row), result.class_index,
                                                    result.versus_index) for row in logits]
        yield b + 1, total
    n = steps + 1
    if scored:
        probabilities = relative_to_blurred(probabilities, blurred=probabilities[n])
    report = TrustReport(steps=steps, deletion_curve=np.array(probabilities[:n]),
                         insertion_curve=np.array(probabilities[n:2 * n]),
                         original=probabilities[0], masked=probabilities[2 * n], kind=result.score_kind)
    if baseline:
        report.random_deletion_curve = np.array(probabilities[2 * n + 1:3 * n + 1])
        report.random_insertion_curve = np.array(probabilities[3 * n + 1:4 * n + 1])
    if cascade_plan:
        copy = randomized_copy(engine)
        copy.reset()
        rng = np.random.default_rng(seed)
        done: list[str] = []
        for i, group in enumerate(cascade_plan):
            for path in group:
                copy.randomize(path, rng)
            done += group
            task = copy.engine.task(image, list(result.layers) or result.layer, result.class_index, result.method,
                                    versus=result.versus_index, counterfactual=result.counterfactual,
                                    step_seconds=step_seconds, region=result.region)
            while not task.step():
                if step_seconds is not None:  # a slow map (Score-CAM) in steps too
                    yield batches + i, total
            again = task.finish()
            report.sanity.append(SanityStep(list(done), spearman(result.raw, again.raw), again.raw))
            yield batches + i + 1, total
    return report


def cascade(model, max_steps: int = MAX_SANITY_STEPS) -> list[list[str]]:
    """The cascading randomisation plan: groups of weighted layer paths, top (output) first.

    With L weighted layers and L ≤ ``max_steps``, step i re-draws one more layer; with more, the
    L layers are cut into ``max_steps`` consecutive groups of near-equal size, so the last step
    has re-drawn every weighted layer down to the input.
    """
    from .layers import iter_layers, layer_tree, resolve

    weighted = [node.path for node in iter_layers(layer_tree(model))
                if not node.children and resolve(model, node.path).weights]
    weighted.reverse()
    if not weighted:
        return []
    groups = min(max_steps, len(weighted))
    bounds = [round(i * len(weighted) / groups) for i in range(groups + 1)]
    return [weighted[bounds[i]:bounds[i + 1]] for i in range(groups)]


def redraw(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A tensor re-drawn with its own mean μ and standard deviation σ: from a normal, or — for a
    tensor with no negative value, such as a BatchNorm variance, which a normal could make
    negative — from a gamma distribution of shape (μ/σ)² and scale σ²/μ (same μ and σ, never < 0)."""
    dtype = np.asarray(values).dtype
    values = np.asarray(values, np.float64)
    mean, std = float(values.mean()) if values.size else 0.0, float(values.std()) if values.size else 0.0
    if values.size and values.min() >= 0 and mean > 0 and std > 0:
        drawn = rng.gamma((mean / std) ** 2, std * std / mean, size=values.shape)
    else:
        drawn = rng.normal(mean, std, size=values.shape)
    return drawn.astype(dtype)


_COPIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def randomized_copy(engine) -> RandomizedCopy:
    """The engine's one ``RandomizedCopy`` (made on first use, dropped with the engine)."""
    copy = _COPIES.get(engine)
    if copy is None:
        copy = _COPIES[engine] = RandomizedCopy(engine)
    return copy


class RandomizedCopy:
    """A copy of the engine's model whose layers can be re-drawn, with its own engine.

    The user's model, its compiled functions and cached maps are untouched: the copy is a clone
    with copied weights; re-drawing assigns its variables in place, so its compiled capture is
    traced once for all the steps. Its capture cache is off (the same picture's capture changes
    with every step).
    """

    def __init__(self, engine):
        from .backend import clone_model
        from .gradcam import GradCam
        from .heads import DECLARABLE, detect_head

        self.model = clone_model(engine.model)
        self._original = engine.model.get_weights()
        self.model.set_weights(self._original)
        # The copy's head is found on its own layers, of the kind the original's was resolved to (a
        # value read from the file's loss or the sidecar is not in the copy's graph to be found again).
        kind = engine.head.kind
        head = detect_head(self.model, kind if kind in DECLARABLE else None)
        self.engine = GradCam(dataclasses.replace(engine.loaded, model=self.model, head=head), input_cache=1,
                             capture_cache_mb=0)

    def reset(self) -> None:
        """Back to the user's weights (one copy serves every report of an engine: no new trace)."""
        self.model.set_weights(self._original)
        head = self.engine.head
        if head.linear is not None and head.linear_twin is not None:
            head.linear_twin.set_weights(head.linear.get_weights())

    def randomize(self, path: str, rng: np.random.Generator) -> None:
        from .layers import resolve

        layer = resolve(self.model, path)
        for variable in layer.weights:
            variable.assign(redraw(variable.numpy(), rng))
        head = self.engine.head
        if head.linear is layer and head.linear_twin is not None:  # the head's linear twin is a copy
            for twin, variable in zip(head.linear_twin.weights, layer.weights, strict=True):
                twin.assign(variable.numpy())

    def explain(self, *args, **kwargs) -> MapResult:
        return self.engine.explain(*args, **kwargs)

"""The engine: pictures in, ``MapResult``s out, for one loaded model.

    capture (capture.py)   one compiled forward + backward per (model, layer): A, ∂y/∂A, logits
    reduce  (cams.py)      a pure function of A and ∂y/∂A: Grad-CAM's ReLU(Σ_k mean_ij(g_k) A_k), …

y is the explained **pre-softmax** score (heads.py): the class logit, ±z for a binary head. The
engine feeds pictures at the model's input size (preprocessed), batches them through a capture,
and turns each row into a ``MapResult``. The class is a tensor argument (a score vector), so
changing the class never retraces; images of the same size never retrace either.
"""

from __future__ import annotations

import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Generator, Sequence

import numpy as np
import tensorflow as tf

from . import cams
from . import preprocess as preprocessing
from .capture import Capture, Captured
from .class_names import class_by_name
from .errors import ClassSelectionError, MethodError
from .graph import run_graph
from .heads import Head, detect_head
from .images import LoadedImage, to_model_input
from .layers import default_layer
from .models import LoadedModel
from .scorecam import MaskScorer, ScoreCamRun, batch_for_step
from .task import MapTask
from .types import MapResult, Prediction, Target

__all__ = ["GradCam", "MapResult", "MapTask", "Prediction", "Explanation", "Target", "MAX_VARIABLE_SIDE", "MIN_VARIABLE_SIDE"]

#: Largest side used for models whose input size is variable (keeps memory and time bounded).
MAX_VARIABLE_SIDE = 512
#: Smallest side for those models: a tiny image would leave the last layers a 1 × 1 grid.
MIN_VARIABLE_SIDE = 96

#: The engine's result is the one result type; the old name stays for scripts that used it.
Explanation = MapResult


class GradCam:
    """Maps for one loaded model. Not thread-safe: use it from one thread.

    ``input_cache`` > 0 keeps the preprocessed input of that many recent images, so explaining
    other classes or layers of the same picture skips the resize (25–70 ms for a 12-megapixel
    photo). Off by default: a one-shot caller gains nothing from it. ``capture_cache_mb`` bounds
    the captures (A, ∂y/∂A, logits) kept per (picture, layer, score): another method of the same
    map reuses them instead of running the model again.
    """

    def __init__(self, loaded: LoadedModel, *, input_cache: int = 0, capture_cache_mb: float = 64):
        self.loaded = loaded
        self._input_cache_size = max(0, int(input_cache))
        # id(rgb) -> (rgb, batch): the array is held so its id cannot be reused by another one.
        self._inputs: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self.model = loaded.model
        self.head: Head = loaded.head if isinstance(loaded.head, Head) else detect_head(self.model)
        self.default_layer = default_layer(self.model)
        self._captures: dict[str, Capture] = {}
        # (id(rgb), layer, score vector, top) -> (weakref to rgb, Captured): switching the method of a
        # picture reuses its capture. The weak reference makes a reused id a miss.
        self._capture_cache: OrderedDict[tuple, tuple[weakref.ref, Captured]] = OrderedDict()
        self._capture_cache_bytes = int(capture_cache_mb * 2**20)
        self._capture_cache_used = 0
        #: Captures served from that cache (tests and benchmarks read it).
        self.capture_hits = 0
        self._mask_scorer: MaskScorer | None = None
        self._capture_seconds: dict[str, float] = {}  # the last single-picture capture time per layer
        # reduce_retracing: variable-size models see many image sizes; after the second size TF
        # traces one shape-generic function instead of one per size.
        self._predict_function = tf.function(self._logits, reduce_retracing=True)
        self._batch_function: Callable | None = None
        #: Number of traces per layer (None: the prediction). Tests check same-size images do not retrace.
        self.trace_counts: dict[str | None, int] = {}

    @property
    def class_names(self) -> list[str]:
        return self.loaded.class_names

    # -- inputs --------------------------------------------------------------------------
    def model_input(self, image: LoadedImage) -> np.ndarray:
        """The preprocessed batch (1, h, w, c) of one image at the model's input size.

        With ``input_cache`` the batch is shared between calls and therefore read-only.
        """
        if self._input_cache_size:
            hit = self._inputs.get(id(image.rgb))
            if hit is not None and hit[0] is image.rgb:
                self._inputs.move_to_end(id(image.rgb))
                return hit[1]
        height, width = self.input_size_for(image)
        array = to_model_input(image.rgb, (height, width), self.loaded.channels)
        batch = preprocessing.apply(array[np.newaxis], self.loaded.preprocess)
        if self._input_cache_size:
            batch.flags.writeable = False
            self._inputs[id(image.rgb)] = (image.rgb, batch)
            while len(self._inputs) > self._input_cache_size:
                self._inputs.popitem(last=False)
        return batch

    def input_size_for(self, image: LoadedImage) -> tuple[int, int]:
        """The model's own size, or the image's (capped) for variable-size models."""
        height, width = self.loaded.input_size
        if height and width:
            return int(height), int(width)
        image_h, image_w = image.rgb.shape[:2]
        scale = min(1.0, MAX_VARIABLE_SIDE / max(image_h, image_w))
        scale = max(scale, MIN_VARIABLE_SIDE / min(image_h, image_w))  # small images are enlarged
        return round(image_h * scale), round(image_w * scale)

    # -- compiled functions ------------------------------------------------------------
    def _count_trace(self, layer: str | None) -> None:
        self.trace_counts[layer] = self.trace_counts.get(layer, 0) + 1

    def _logits(self, batch):
        self._count_trace(None)
        logits, _ = run_graph(self.model, batch, self.head)
        return tf.cast(logits, tf.float32)

    def capture(self, layer: str) -> Capture:
        """The compiled capture at ``layer`` (built once per layer; LayerError if not eligible)."""
        capture = self._captures.get(layer)
        if capture is None:
            height, width = self.loaded.input_size
            capture = Capture(self.model, self.head, layer, (height or None, width or None, self.loaded.channels),
                              on_trace=self._count_trace)
            self._captures[layer] = capture
        return capture

    def prepare(self, layer: str | None = None) -> bool:
        """Trace and instantiate the capture at ``layer`` (default: the default layer) before its
        first map; False if it was ready already. See capture.py for why a UI program wants this."""
        return self.capture(layer or self.default_layer).prepare(MIN_VARIABLE_SIDE)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Logits (N, units) of a batch of model inputs (compiled once per batch size for a fixed-size
        model: callers keep the batch size constant, padding the last batch)."""
        function = self._batch_function
        if function is None:
            height, width = self.loaded.input_size
            function = self._batch_function = tf.function(self._logits, reduce_retracing=not (height and width))
        return function(tf.constant(batch, tf.float32)).numpy()

    def forward_seconds(self, layer: str) -> float | None:
        """About one forward pass of one picture: half the layer's last measured capture (forward and
        backward); None before a measured capture. For sizing steps of UI jobs."""
        seconds = self._capture_seconds.get(layer)
        return None if seconds is None else seconds / 2

    # -- public API --------------------------------------------------------------------
    def predict(self, image: LoadedImage) -> Prediction:
        """Class probabilities for ``image``."""
        logits = self._predict_function(tf.constant(self.model_input(image)))
        return self.prediction(logits.numpy()[0])

    def prediction(self, logits: np.ndarray, top: int = 5) -> Prediction:
        """A ``Prediction`` from one row of logits."""
        probabilities = self.head.probabilities(logits)
        order = np.argsort(-probabilities, kind="stable")[:top]
        names = self.class_names
        return Prediction(
            probabilities=probabilities,
            top=[(int(i), names[i], float(probabilities[i])) for i in order],
            head=self.head.kind,
        )

    def resolve_class(self, cls: int | str | None, prediction: Prediction | None = None) -> int:
        """A class index from an index, a name (case-insensitive) or None (the top class)."""
        names = self.class_names
        if cls is None:
            if prediction is None:
                raise ClassSelectionError("No class given and no prediction to pick one from.")
            return prediction.top[0][0]
        if isinstance(cls, str) and not cls.strip().lstrip("-").isdigit():
            return class_by_name(names, cls)
        index = int(cls)
        if not 0 <= index < len(names):
            raise ClassSelectionError(
                f"Class index {index} is out of range: this model has {len(names)} classes "
                f"(0–{len(names) - 1})."
            )
        return index

    def target(self, class_index: int | str | None = None, versus: int | str | None = None,
               counterfactual: bool = False) -> Target:
        """A checked ``Target``: classes resolved, wrong combinations refused (MethodError)."""
        chosen = None if class_index is None else self.resolve_class(class_index)
        other = None if versus is None else self.resolve_class(versus)
        if other is not None and counterfactual:
            raise MethodError("A map explains one class versus another, or what speaks against a class — "
                              "not both at once.")
        if other is not None and other == chosen:
            raise MethodError(f"'{self.class_names[other]}' cannot be compared with itself: "
                              "choose a different class to compare with.")
        return Target(chosen, other, bool(counterfactual))

    def score_vector(self, target: Target) -> tuple[np.ndarray, float]:
        """(v, t) of ``Capture.run``: the explained score is (v + t · onehot(top class)) · logits."""
        sign = -1.0 if target.counterfactual else 1.0
        vector = np.zeros(self.head.units, np.float32)
        if target.versus is not None:
            vector -= self.head.class_weights(target.versus)
        if target.class_index is None:
            return vector, sign
        return vector + sign * self.head.class_weights(target.class_index), 0.0

    def explain(self, image: LoadedImage, layer: str | Sequence[str] | None = None,
                class_index: int | str | None = None, method: str = "gradcam", *,
                versus: int | str | None = None, counterfactual: bool = False, max_channels: int | None = None,
                progress: Callable[[int, int], None] | None = None) -> MapResult:
        """The map of ``class_index`` (default: the top class) at ``layer`` (default: the last spatial
        one; several layers: a fused map). ``progress(done, total)`` is called between Score-CAM's
        mask batches; an exception raised from it stops the computation."""
        task = self.task(image, layer, class_index, method, versus=versus, counterfactual=counterfactual,
                         max_channels=max_channels)
        while not task.step():
            if progress is not None:
                progress(*task.progress)
        assert task.result is not None
        return task.result

    def task(self, image: LoadedImage, layer: str | Sequence[str] | None = None,
             class_index: int | str | None = None, method: str = "gradcam", *,
             versus: int | str | None = None, counterfactual: bool = False,
             max_channels: int | None = None, step_seconds: float | None = None) -> MapTask:
        """One map as a stepwise computation (see ``MapTask``): for a UI job that must stay cancellable.

        ``step_seconds``: Score-CAM scores as many masks per step as fit in about that time (estimated
        from the capture's time; a capture is one forward and one backward pass, about two forwards).
        """
        reduction = cams.method(method)
        _check_max_channels(reduction, max_channels)
        layers = _layer_list(layer, self.default_layer)
        target = self.target(class_index, versus, counterfactual)
        return MapTask(self._steps(image, layers, target, reduction, max_channels, step_seconds))

    def explain_many(self, images: Sequence[LoadedImage], layer: str | Sequence[str] | None = None,
                     class_indices: Sequence[int | str | None] | None = None,
                     method: str = "gradcam", *, versus: int | str | None = None, counterfactual: bool = False,
                     max_channels: int | None = None, batch_size: int | None = None) -> list[MapResult]:
        """One map per (image, class) pair, computed in one batched capture per layer where sizes allow.

        ``class_indices[i]`` None explains image i's top class. The same picture may appear
        several times (several classes of one picture cost one batch). Score-CAM runs per picture.
        ``batch_size``: the batch size the caller runs most (a batch loop's group size). Fewer
        images than that run padded to it (the extra rows are computed and dropped) unless the
        capture has already run at their own number: a fixed-size model's capture traces once
        per batch size, and a trace (seconds for a large model) costs more than a few rows.
        """
        start = time.perf_counter()
        reduction = cams.method(method)
        _check_max_channels(reduction, max_channels)
        layers = _layer_list(layer, self.default_layer)
        if class_indices is None:
            class_indices = [None] * len(images)
        targets = [self.target(c, versus, counterfactual) for c in class_indices]
        fixed = all(self.loaded.input_size)
        pad_to = int(batch_size) if batch_size and fixed else 0
        if reduction.forward_passes or (len(images) == 1 and not self._pads(layers, 1, pad_to)):
            return [MapTask(self._steps(image, layers, target, reduction, max_channels)).finish()
                    for image, target in zip(images, targets, strict=True)]
        inputs = [self.model_input(image) for image in images]
        vectors = [self.score_vector(t) for t in targets]
        weights = np.stack([v for v, _ in vectors])
        tops = np.array([t for _, t in vectors], np.float32)
        maps: list[list[np.ndarray]] = [[] for _ in images]
        rows: list[tuple[np.ndarray, np.ndarray]] = [(np.zeros(0), np.zeros(0))] * len(images)
        for name in layers:
            capture = self.capture(name)
            for group in _same_shape_groups(inputs):
                rows_run = group
                if self._pads(layers, len(group), pad_to):
                    rows_run = group + [group[-1]] * (pad_to - len(group))  # dropped below: row < len(group)
                batch = np.concatenate([inputs[i] for i in rows_run]) if len(rows_run) > 1 else inputs[group[0]]
                run = capture.run(batch, weights[rows_run], tops[rows_run])
                for row, i in enumerate(group):
                    assert reduction.reduce is not None
                    maps[i].append(reduction.reduce(run.activations[row], run.gradients[row]))
                    rows[i] = (run.logits[row], run.weights[row])
        seconds = (time.perf_counter() - start) / max(1, len(images))
        return [self._result(image, layers, self._fused(maps[i], inputs[i]), *rows[i], targets[i], reduction, seconds)
                for i, image in enumerate(images)]

    def _pads(self, layers: list[str], count: int, pad_to: int) -> bool:
        """Whether ``count`` inputs run padded to ``pad_to`` rows: fewer than that, and some layer's
        capture has not yet run (been traced) at ``count``."""
        return count < pad_to and any(count not in self.capture(name).batch_sizes for name in layers)

    # -- one map, step by step -----------------------------------------------------------
    def _steps(self, image: LoadedImage, layers: list[str], target: Target, reduction: cams.Method,
               max_channels: int | None, step_seconds: float | None = None
               ) -> Generator[tuple[int, int], None, MapResult]:
        """Yields (done, total) progress; returns the MapResult (``MapTask`` runs it)."""
        start = time.perf_counter()
        picture = self.model_input(image)
        vector, top = self.score_vector(target)
        maps = []
        done, total = 0, len(layers)
        for name in layers:
            captured = self._captured(image, picture, name, vector, top)
            done += 1
            if reduction.forward_passes:
                batch = None
                if step_seconds is not None:
                    # Unmeasured (the layer's first capture was its trace): one mask per step is safe.
                    forward = self.forward_seconds(name)
                    batch = 1 if forward is None else batch_for_step(step_seconds, forward)
                run = ScoreCamRun(self._scorer(), picture, captured.activations[0], captured.weights[0],
                                  max_channels, batch)
                total += run.total
                yield done, total
                while not run.step():
                    done += 1
                    yield done, total
                done += 1
                maps.append(run.result())
            else:
                assert reduction.reduce is not None
                maps.append(reduction.reduce(captured.activations[0], captured.gradients[0]))
            yield done, total
        seconds = time.perf_counter() - start
        return self._result(image, layers, self._fused(maps, picture), captured.logits[0], captured.weights[0],
                            target, reduction, seconds)

    def _captured(self, image: LoadedImage, picture: np.ndarray, layer: str, vector: np.ndarray,
                  top: float) -> Captured:
        """The capture of one picture, from the cache when this (picture, layer, score) ran already."""
        key = (id(image.rgb), layer, vector.tobytes(), float(top))
        hit = self._capture_cache.get(key)
        if hit is not None and hit[0]() is image.rgb:
            self._capture_cache.move_to_end(key)
            self.capture_hits += 1
            return hit[1]
        capture = self.capture(layer)
        start, traced = time.perf_counter(), capture.traced
        captured = capture.run(picture, vector[np.newaxis], np.array([top], np.float32))
        if traced:  # a first run's time is mostly tracing
            self._capture_seconds[layer] = time.perf_counter() - start
        if self._capture_cache_bytes > 0 and captured.nbytes <= self._capture_cache_bytes:
            self._capture_cache[key] = (weakref.ref(image.rgb), captured)
            self._capture_cache_used += captured.nbytes
            while self._capture_cache_used > self._capture_cache_bytes:
                _, (_, dropped) = self._capture_cache.popitem(last=False)
                self._capture_cache_used -= dropped.nbytes
        return captured

    def _scorer(self) -> MaskScorer:
        if self._mask_scorer is None:
            height, width = self.loaded.input_size
            self._mask_scorer = MaskScorer(self.model, self.head,
                                           (height or None, width or None, self.loaded.channels),
                                           on_trace=self._count_trace)
        return self._mask_scorer

    def _fused(self, maps: list[np.ndarray], picture: np.ndarray) -> np.ndarray:
        return maps[0] if len(maps) == 1 else cams.fuse(maps, picture.shape[1:3])

    def _result(self, image: LoadedImage, layers: list[str], raw: np.ndarray, logits: np.ndarray,
                weights: np.ndarray, target: Target, reduction: cams.Method, seconds: float) -> MapResult:
        prediction = self.prediction(logits)
        index = prediction.top[0][0] if target.class_index is None else target.class_index
        if target.versus is not None and index == target.versus:
            raise MethodError(f"The top class of {image.name} is '{self.class_names[index]}', the class to compare "
                              "with: choose a class to explain or another class to compare with.")
        versus = target.versus
        return MapResult(
            raw=raw, layer=" + ".join(layers), class_index=index, class_name=self.class_names[index],
            score=float(prediction.probabilities[index]), prediction=prediction, method=reduction.name,
            seconds=seconds, model=self.loaded.source, preprocess=self.loaded.preprocess,
            image=image.path or image.name, versus_index=versus,
            versus_name=None if versus is None else self.class_names[versus],
            counterfactual=target.counterfactual,
            target_score=float(np.dot(weights.astype(np.float64), logits.astype(np.float64))),
            layers=tuple(layers) if len(layers) > 1 else (),
            patch_grid=_patch_grid(self.capture(layers[0])) if len(layers) == 1 else None,
        )


def _patch_grid(capture: Capture) -> tuple[int, int] | None:
    grid = getattr(capture, "grid", None)
    return None if grid is None else (int(grid.height), int(grid.width))


def _layer_list(layer: str | Sequence[str] | None, default: str) -> list[str]:
    if layer is None or (not isinstance(layer, str) and not layer):
        return [default]
    layers = [layer] if isinstance(layer, str) else list(dict.fromkeys(layer))
    return layers


def _check_max_channels(reduction: cams.Method, max_channels: int | None) -> None:
    if max_channels is None:
        return
    if not reduction.forward_passes:
        raise MethodError(f"--max-channels only applies to Score-CAM, not to {reduction.title}.")
    if int(max_channels) < 1:
        raise MethodError(f"--max-channels must be at least 1 (got {max_channels}).")


def _same_shape_groups(inputs: list[np.ndarray]) -> list[list[int]]:
    """Indices grouped by input shape, in first-seen order (a variable-size model cannot batch sizes)."""
    groups: dict[tuple, list[int]] = {}
    for i, batch in enumerate(inputs):
        groups.setdefault(batch.shape, []).append(i)
    return list(groups.values())

"""The engine: pictures in, ``MapResult``s out, for one loaded model.

    capture (capture.py)   one compiled forward + backward per (model, layer): A, ∂y/∂A, logits
    reduce  (cams.py)      a pure function of A and ∂y/∂A: Grad-CAM's ReLU(Σ_k mean_ij(g_k) A_k), …

The other families of ``cams.METHODS`` (``Method.family``): Score-CAM's masked passes
(scorecam.py), gradients with respect to the input pixels (pixels.py: saliency, integrated
gradients, SmoothGrad, guided backprop, and Guided Grad-CAM with a layer's Grad-CAM), and the
model's answers to altered pictures (perturbation.py: occlusion, RISE).

A black-box model (``LoadedModel.runtime``: ONNX, TFLite, a serving SavedModel; blackbox.py) has
no layers: the engine gives it the methods it can run (``Method.works_with``), its scores from the
runtime's ``predict`` and, where the file has them, input gradients from the runtime.

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
from typing import Protocol

import numpy as np
import tensorflow as tf

from . import cams, perturbation, pixels
from . import preprocess as preprocessing
from .capture import Capture, Captured
from .class_names import class_by_name
from .errors import ClassSelectionError, LayerError, MethodError
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
#: ``MapResult.layer`` of a map made at the input's pixels (no layer).
INPUT_LAYER = cams.INPUT_LAYER


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
        #: The black-box runtime (blackbox.BlackBoxModel) of a file that shows no layers; None for Keras.
        self.runtime = getattr(loaded, "runtime", None)
        if isinstance(loaded.head, Head):
            self.head: Head = loaded.head
        elif self.runtime is not None:
            self.head = _black_box_head(self.runtime)
        else:
            self.head = detect_head(self.model)
        self.default_layer = (default_layer(self.model, self.head.kind == "segmentation")
                              if self.model is not None else None)
        self._captures: dict[str, Capture] = {}
        self._input_gradients: dict[bool, pixels.InputGradients] = {}  # guided or not
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

    @property
    def shows_layers(self) -> bool:
        """Whether the model's layers can be read (a Keras model), or only its answers (a black box)."""
        return self.model is not None

    @property
    def has_gradients(self) -> bool:
        """Whether the score can be differentiated: Keras models, and black boxes whose file keeps them."""
        return self.model is not None or getattr(self.runtime, "gradients", None) is not None

    def offers(self, method: str | cams.Method) -> bool:
        """Whether this model can run ``method`` (layers and gradients where the method needs them)."""
        return cams.method(method).works_with(layers=self.shows_layers, gradients=self.has_gradients)

    def check_method(self, method: str | cams.Method) -> cams.Method:
        """The method, or a one-line MethodError saying what this model lacks for it and what works."""
        chosen = cams.method(method)
        if self.offers(chosen):
            return chosen
        working = [m.name for m in cams.METHODS.values() if self.offers(m)]
        lacks = "shows no layers" if chosen.uses_layer and not self.shows_layers else "gives no gradients"
        raise MethodError(f"{chosen.title} needs {chosen.needs}, and {self.loaded.display_name} {lacks} "
                          f"({_format_name(self.runtime)} file). Methods that work with it: {', '.join(working)}.")

    def capture(self, layer: str) -> Capture:
        """The compiled capture at ``layer`` (built once per layer; LayerError if not eligible)."""
        if self.model is None:
            raise LayerError(f"{self.loaded.display_name} shows no layers ({_format_name(self.runtime)} file): "
                             "layer methods cannot look inside it.")
        capture = self._captures.get(layer)
        if capture is None:
            height, width = self.loaded.input_size
            capture = Capture(self.model, self.head, layer, (height or None, width or None, self.loaded.channels),
                              on_trace=self._count_trace)
            self._captures[layer] = capture
        return capture

    def input_gradients(self, guided: bool = False) -> pixels.GradientFunction:
        """``grad(batch, weights, top) -> (scores, ∂y/∂x, weights used)``: compiled once per model (and
        guided flag) for a Keras model; the runtime's for a black box that keeps gradients."""
        if self.model is None:
            gradients = getattr(self.runtime, "gradients", None)
            if gradients is None or guided:
                raise MethodError(f"{self.loaded.display_name} gives no {'guided ' if guided else ''}gradients.")
            return _RuntimeGradients(gradients, self.head)
        function = self._input_gradients.get(guided)
        if function is None:
            height, width = self.loaded.input_size
            function = pixels.InputGradients(self.model, self.head,
                                             (height or None, width or None, self.loaded.channels),
                                             on_trace=self._count_trace, guided=guided)
            self._input_gradients[guided] = function
        return function

    def prepare(self, layer: str | None = None) -> bool:
        """Trace and instantiate the capture at ``layer`` (default: the default layer) before its
        first map; False if it was ready already. See capture.py for why a UI program wants this.
        A black box has nothing to trace."""
        chosen = layer or self.default_layer
        if chosen is None:  # a black box: nothing to trace
            return False
        return self.capture(chosen).prepare(MIN_VARIABLE_SIDE)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Logits (N, units) of a batch of model inputs (compiled once per batch size for a fixed-size
        model: callers keep the batch size constant, padding the last batch)."""
        if self.model is None:
            assert self.runtime is not None
            return _finite32(self.runtime.predict(np.asarray(batch, np.float32)))
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
        if self.model is None:
            return self.prediction(self.logits(self.model_input(image))[0])
        logits = self._predict_function(tf.constant(self.model_input(image)))
        return self.prediction(logits.numpy()[0])

    def prediction(self, logits: np.ndarray, top: int = 5) -> Prediction:
        """A ``Prediction`` from one row of logits."""
        probabilities = self.head.probabilities(logits)
        # A value head's values keep their order: no value is "more predicted" than another.
        order = (np.arange(len(probabilities)) if self.head.kind == "value"
                 else np.argsort(-probabilities, kind="stable"))[:top]
        names = self.class_names
        return Prediction(
            probabilities=probabilities,
            top=[(int(i), names[i], float(probabilities[i])) for i in order],
            head=self.head.kind,
            mask=self.head.mask(logits),
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
               counterfactual: bool = False, region: Sequence[float] | None = None) -> Target:
        """A checked ``Target``: classes resolved, wrong combinations refused (MethodError)."""
        chosen = None if class_index is None else self.resolve_class(class_index)
        box = None if region is None else check_region(region, self.head.kind)
        other = None if versus is None else self.resolve_class(versus)
        if other is not None and counterfactual:
            raise MethodError("A map explains one class versus another, or what speaks against a class — "
                              "not both at once.")
        if other is not None and other == chosen:
            raise MethodError(f"'{self.class_names[other]}' cannot be compared with itself: "
                              "choose a different class to compare with.")
        return Target(chosen, other, bool(counterfactual), box)

    def score_vector(self, target: Target) -> tuple[np.ndarray, float]:
        """(v, t) of ``Capture.run``: the explained score is (v + t · onehot(top class)) · logits. A
        region (segmentation) needs its class resolved: the top class's weights are a predicted mask's."""
        sign = -1.0 if target.counterfactual else 1.0
        region = target.region

        def weights(index: int) -> np.ndarray:
            return self.head.class_weights(index) if region is None else self.head.region_weights(index, region)

        vector = np.zeros(self.head.units, np.float32)
        if target.versus is not None:
            vector -= weights(target.versus)
        if target.class_index is None:
            if region is not None:
                raise MethodError("A region's score needs a class: choose the class to sum over the region.")
            return vector, sign
        return vector + sign * weights(target.class_index), 0.0

    def explain(self, image: LoadedImage, layer: str | Sequence[str] | None = None,
                class_index: int | str | None = None, method: str | cams.Method = "gradcam", *,
                versus: int | str | None = None, counterfactual: bool = False, max_channels: int | None = None,
                method_options: dict | None = None, region: Sequence[float] | None = None,
                progress: Callable[[int, int], None] | None = None) -> MapResult:
        """The map of ``class_index`` (default: the top class) at ``layer`` (default: the last spatial
        one; several layers: a fused map). ``method_options``: the method's options (``cams.OPTION_NAMES``:
        occlusion's window, RISE's samples and seed, …). ``progress(done, total)`` is called between the
        steps of a stepwise method (Score-CAM's mask batches, …); an exception raised from it stops it."""
        task = self.task(image, layer, class_index, method, versus=versus, counterfactual=counterfactual,
                         max_channels=max_channels, method_options=method_options, region=region)
        while not task.step():
            if progress is not None:
                progress(*task.progress)
        assert task.result is not None
        return task.result

    def task(self, image: LoadedImage, layer: str | Sequence[str] | None = None,
             class_index: int | str | None = None, method: str | cams.Method = "gradcam", *,
             versus: int | str | None = None, counterfactual: bool = False,
             max_channels: int | None = None, step_seconds: float | None = None,
             method_options: dict | None = None, region: Sequence[float] | None = None) -> MapTask:
        """One map as a stepwise computation (see ``MapTask``): for a UI job that must stay cancellable.

        ``step_seconds``: Score-CAM scores as many masks per step as fit in about that time (estimated
        from the capture's time; a capture is one forward and one backward pass, about two forwards).
        """
        reduction = self.check_method(method)
        options = _method_options(reduction, max_channels, method_options)
        layers = _layer_list(layer, self.default_layer) if reduction.uses_layer else []
        if region is not None and class_index is None:  # the region's class: the top one
            class_index = self.predict(image).top[0][0]
        target = self.target(class_index, versus, counterfactual, region)
        if reduction.family in ("gradient", "guided-gradcam", "perturbation"):
            return MapTask(self._pixel_steps(image, layers, target, reduction, options))
        return MapTask(self._steps(image, layers, target, reduction, options.get("max_channels"), step_seconds))

    def explain_many(self, images: Sequence[LoadedImage], layer: str | Sequence[str] | None = None,
                     class_indices: Sequence[int | str | None] | None = None,
                     method: str | cams.Method = "gradcam", *, versus: int | str | None = None,
                     counterfactual: bool = False, max_channels: int | None = None, batch_size: int | None = None,
                     method_options: dict | None = None, region: Sequence[float] | None = None) -> list[MapResult]:
        """One map per (image, class) pair, computed in one batched capture per layer where sizes allow.

        ``class_indices[i]`` None explains image i's top class. The same picture may appear
        several times (several classes of one picture cost one batch). Score-CAM runs per picture.
        ``batch_size``: the batch size the caller runs most (a batch loop's group size). Fewer
        images than that run padded to it (the extra rows are computed and dropped) unless the
        capture has already run at their own number: a fixed-size model's capture traces once
        per batch size, and a trace (seconds for a large model) costs more than a few rows.
        """
        start = time.perf_counter()
        reduction = self.check_method(method)
        options = _method_options(reduction, max_channels, method_options)
        layers = _layer_list(layer, self.default_layer) if reduction.uses_layer else []
        if class_indices is None:
            class_indices = [None] * len(images)
        if region is not None:  # a region's class must be known before the pass: the top one
            class_indices = [self.predict(image).top[0][0] if c is None else c
                             for image, c in zip(images, class_indices, strict=True)]
        targets = [self.target(c, versus, counterfactual, region) for c in class_indices]
        fixed = all(self.loaded.input_size)
        pad_to = int(batch_size) if batch_size and fixed else 0
        if reduction.family != "cam" or (len(images) == 1 and not self._pads(layers, 1, pad_to)):
            return [self.task(image, layers or None, target.class_index, reduction, versus=target.versus,
                              counterfactual=target.counterfactual, method_options=options,
                              region=target.region).finish()
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

    def _pixel_steps(self, image: LoadedImage, layers: list[str], target: Target, reduction: cams.Method,
                     options: dict) -> Generator[tuple[int, int], None, MapResult]:
        """A map at the input's resolution: pixel gradients (pixels.py), Guided Grad-CAM, or the
        model's answers to altered copies (perturbation.py). Yields (done, total) after each batch."""
        start = time.perf_counter()
        picture = self.model_input(image)
        vector, top = self.score_vector(target)
        logits: np.ndarray | None = None
        weights = vector
        if reduction.family == "perturbation" or self.model is None:
            # The top class first (a black box's gradients take the score resolved); a Keras model's
            # gradient run finds it in its first pass, with the logits (no extra forward pass).
            logits = self.logits(picture)[0]
            weights, top = vector + top * self._top_weights(logits), 0.0
        run: _Run
        if reduction.family == "perturbation":
            def scores(batch: np.ndarray) -> np.ndarray:
                return self.logits(batch).astype(np.float64) @ weights.astype(np.float64)

            if reduction.name == "occlusion":
                run = perturbation.OcclusionRun(scores, picture, options.get("window"), options.get("stride"),
                                                options.get("baseline", 0.0))
            else:
                run = perturbation.RiseRun(scores, picture, n=int(options.get("samples", perturbation.RISE_MASKS)),
                                           seed=options.get("seed"))
        else:
            grad = self.input_gradients(guided=reduction.name in pixels.GUIDED)
            run = pixels.start(reduction.name, grad, picture, weights, top,
                               steps=int(options.get("steps", pixels.DEFAULT_STEPS)),
                               samples=int(options.get("samples", pixels.DEFAULT_SAMPLES)),
                               seed=options.get("seed"), baseline=float(options.get("baseline", 0.0)))
        total = run.total + (len(layers) if reduction.family == "guided-gradcam" else 0)
        done = 0
        while not run.step():
            done += 1
            yield done, total
        done += 1
        attribution = run.result()
        if logits is None:  # a Keras model's gradient run: x's logits and the score came with its first pass
            assert isinstance(run, pixels.PixelRun) and run.logits is not None and run.weights is not None
            logits, weights = run.logits, run.weights
        if reduction.family == "perturbation":
            raw = perturbation.display(attribution)
        elif reduction.family == "guided-gradcam":
            cams_of_layers = []
            for name in layers:
                captured = self._captured(image, picture, name, vector, top)
                cams_of_layers.append(cams.gradcam(captured.activations[0], captured.gradients[0]))
                done += 1
                yield done, total
            attribution = pixels.guided_gradcam(attribution, self._fused(cams_of_layers, picture))
            raw = pixels.display(reduction.name, attribution)
        else:
            raw = pixels.display(reduction.name, attribution)
        seconds = time.perf_counter() - start
        result = self._result(image, layers, raw, logits, weights, target, reduction, seconds)
        # The signed attribution (H, W, C; occlusion's and RISE's (H, W)): what --heatmap writes.
        return result.with_(attribution=attribution, layer=result.layer if layers else INPUT_LAYER)

    def _top_weights(self, logits: np.ndarray) -> np.ndarray:
        """The score vector of the top class of one row of logits (±1 for a binary head)."""
        return self.head.class_weights(self.head.top_index(logits))

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
            counterfactual=target.counterfactual, region=target.region,
            target_score=float(np.dot(weights.astype(np.float64), logits.astype(np.float64))),
            layers=tuple(layers) if len(layers) > 1 else (),
            patch_grid=_patch_grid(self.capture(layers[0])) if len(layers) == 1 and reduction.family == "cam" else None,
        )


def check_region(region: Sequence[float], head_kind: str) -> tuple[float, float, float, float]:
    """A region as (top, left, bottom, right) fractions of the picture, checked (MethodError: one line)."""
    if head_kind != "segmentation":
        raise MethodError("A region can be chosen for a segmentation model's output only: this model's is "
                          f"a {head_kind} head.")
    try:
        box = tuple(float(side) for side in region)
    except (TypeError, ValueError):
        raise MethodError(f"A region is four numbers (top, left, bottom, right), not {region!r}.") from None
    if len(box) != 4 or not all(np.isfinite(box)):
        raise MethodError(f"A region is four finite numbers (top, left, bottom, right), not {region!r}.")
    top, left, bottom, right = (min(1.0, max(0.0, side)) for side in box)
    if not (top < bottom and left < right):
        raise MethodError("A region needs top < bottom and left < right (fractions of the picture, 0–1).")
    return top, left, bottom, right


def _patch_grid(capture: Capture) -> tuple[int, int] | None:
    grid = getattr(capture, "grid", None)
    return None if grid is None else (int(grid.height), int(grid.width))


def _layer_list(layer: str | Sequence[str] | None, default: str | None) -> list[str]:
    if layer is None or (not isinstance(layer, str) and not layer):
        if default is None:
            raise LayerError("This model shows no layers: choose a method that needs none (see `gradcam methods`).")
        return [default]
    layers = [layer] if isinstance(layer, str) else list(dict.fromkeys(layer))
    return layers


def _method_options(reduction: cams.Method, max_channels: int | None, options: dict | None) -> dict:
    """The method's options (``max_channels`` is one), refused in one line when the method takes none
    of them or a count is below 1."""
    given = reduction.check_options({**(options or {}), **({} if max_channels is None else {"max_channels": max_channels})})
    for name in ("max_channels", "window", "stride", "steps", "samples"):
        if name in given and int(given[name]) < 1:
            raise MethodError(f"--{name.replace('_', '-')} must be at least 1 (got {given[name]}).")
    return given


def _black_box_head(runtime) -> Head:
    """A black box's answers: probabilities as they are, or scores read as logits (binary for one unit)."""
    units = int(runtime.units)
    if getattr(runtime, "outputs", "scores") == "probabilities" and units > 1:
        return Head(kind="probabilities", units=units)
    return Head(kind="binary" if units == 1 else "logits", units=units)


def _format_name(runtime) -> str:
    """"an ONNX", "a TensorFlow Lite", … (followed by "file")."""
    return {"onnx": "an ONNX", "tflite": "a TensorFlow Lite", "savedmodel": "an exported SavedModel"}.get(
        str(getattr(runtime, "format", "")), "a black-box")


def _finite32(array) -> np.ndarray:
    return np.nan_to_num(np.asarray(array, np.float32), nan=0.0, posinf=0.0, neginf=0.0)


class _Run(Protocol):
    total: int

    def step(self) -> bool: ...

    def result(self) -> np.ndarray: ...


class _RuntimeGradients:
    """A black box's ``gradients(batch, weights) -> (scores, ∂/∂x)`` as pixels.py's gradient function
    (the top class filled in where ``top`` asks for it)."""

    def __init__(self, gradients: Callable, head: Head):
        self._gradients = gradients
        self._head = head

    def __call__(self, batch: np.ndarray, weights: np.ndarray, top: np.ndarray | None = None):
        weights = np.asarray(weights, np.float32)
        tops = (~weights.any(axis=-1)).astype(np.float32) if top is None else np.asarray(top, np.float32)
        if tops.any():
            raise MethodError("A black box's gradients need the class resolved first.")
        scores, gradients = self._gradients(np.asarray(batch, np.float32), weights)
        return np.asarray(scores, np.float32), np.asarray(gradients, np.float32), weights


def _same_shape_groups(inputs: list[np.ndarray]) -> list[list[int]]:
    """Indices grouped by input shape, in first-seen order (a variable-size model cannot batch sizes)."""
    groups: dict[tuple, list[int]] = {}
    for i, batch in enumerate(inputs):
        groups.setdefault(batch.shape, []).append(i)
    return list(groups.values())

"""What turns a ``MapSpec`` into a ``MapResult`` on the worker thread: the cache first, then the engine.

``MapMaker`` holds what the maps depend on — the engine (one per opened model, counted by a
generation number), the decoded pictures, the bounded map cache and each picture's prediction —
and knows the two ways a map is made:

* **at once** (``compute``): a gradient method, or Eigen-CAM, is one compiled capture plus a
  cheap NumPy reduction; the engine keeps captures per (picture, layer, score), so switching the
  method on the same picture, layer and score does not run the model again;
* **in steps** (``task``): Score-CAM needs one forward pass per channel mask; the engine's
  ``task(...).step()`` runs one batch of masks, so the worker runs it as a job (``jobs.MapJob``)
  and a newer click waits for at most one batch.

Qt-free and worker-thread only (not thread-safe); kept apart from worker.py so that file stays
the thread's loop and its handlers, and so a job can be stepped by hand in a test.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from gradcam_desktop.session import gc_policy
from gradcam_desktop.core.errors import ImageLoadError
from gradcam_desktop.core.types import MapResult
from gradcam_desktop.session.map_cache import MapCache, result_key
from gradcam_desktop.session.picture_cache import PictureCache
from gradcam_desktop.session.requests import MapSpec, Precompute
from gradcam_desktop.session.results import display_uint8, map_result

__all__ = ["MapMaker"]

#: GIL hand-over before each computed map. The UI thread has usually just sent the request and
#: repaints next, while a map (above all the first of a layer, which traces a tf.function) starts
#: with tens of ms in which TensorFlow seldom lets go of the GIL. Measured on the benchmark's
#: 480×360 run: worst UI gap 29–36 ms without this pause, 16–20 ms with it.
_GIL_YIELD = 0.001
#: How long one Score-CAM step may take: a click waits for the step running, then for its own map,
#: and issue 7 asks for the switch within 0.3 s. Smaller steps cost throughput (fewer masks per
#: forward pass); the engine picks a power-of-two batch that fits.
STEP_SECONDS = 0.1


class MapMaker:
    """The engine, pictures, cache and predictions behind the worker's maps (worker thread only).

    ``overlay`` is ``core.overlay`` (the display map); ``engine`` is None until a model opens.
    """

    def __init__(self, cache: MapCache, overlay: Any = None) -> None:
        self.cache = cache
        self.overlay = overlay
        self.engine: Any = None
        self.generation = 0
        self.images = PictureCache()  # decoded pictures, bounded by bytes (decoded again after a miss)
        self._predictions: dict[tuple[str, int], Any] = {}

    def set_engine(self, engine: Any) -> int:
        """A new model: every cached map and prediction is stale. Returns the new generation."""
        self.engine = engine
        self.generation += 1
        self.cache.clear()
        self._predictions.clear()
        gc_policy.after_model_load()  # the old model freed, the new one out of full collections' way
        return self.generation

    def forget_predictions(self, image_keys: set[str]) -> None:
        """Drop the predictions of closed pictures."""
        for key in [key for key in self._predictions if key[0] in image_keys]:
            del self._predictions[key]

    def close(self) -> None:
        """Forget the engine and the maps (the worker is leaving)."""
        self.engine = None
        self.cache.clear()

    def image(self, key: str) -> Any:
        """The decoded picture ``key``; ImageLoadError when it is gone."""
        image = self.images.get(key)
        if image is None:
            raise ImageLoadError("That image is no longer loaded; open it again.")
        return image

    def resolve(self, spec: MapSpec) -> MapSpec:
        """``spec`` with the default layer filled in, and the top class once the picture's prediction is known."""
        class_index = spec.class_index
        if class_index is None:
            prediction = self._predictions.get((spec.image_key, self.generation))
            class_index = prediction.top[0][0] if prediction is not None else None
        return replace(spec, layer=spec.layer or self.engine.default_layer, class_index=class_index)

    def cached(self, spec: MapSpec) -> MapResult | None:
        """The cached map of a resolved ``spec`` (marked ``cached``, 0 s), or None."""
        key = spec.key(self.generation)
        hit = self.cache.get(key) if key is not None else None
        return hit.with_(cached=True, seconds=0.0) if hit is not None else None

    def stepwise(self, spec: MapSpec) -> bool:
        """Whether the method needs extra forward passes (Score-CAM): computed in steps by a job.

        An unknown method raises the core's MethodError (one line, listing the known ones).
        """
        return bool(spec.method.stepwise)

    def compute(self, spec: MapSpec) -> MapResult:
        """The map of a resolved ``spec``, from the cache or computed now in one call."""
        hit = self.cached(spec)
        if hit is not None:
            return hit
        image = self.image(spec.image_key)
        time.sleep(_GIL_YIELD)
        start = time.perf_counter()
        # Score options only when asked: the class logit is the engine's default.
        explanation = self.engine.explain(image, spec.layer, spec.class_index, spec.method, **spec.score_options())
        return self.finish(spec.image_key, explanation, time.perf_counter() - start, self.generation)

    def task(self, spec: MapSpec) -> Any:
        """The engine's stepwise computation of a resolved ``spec`` (``step()``, ``progress``, ``result``)."""
        image = self.image(spec.image_key)
        return self.engine.task(image, spec.layer, spec.class_index, spec.method, step_seconds=STEP_SECONDS,
                                **spec.score_options())

    def finish(self, image_key: str, explanation: MapResult, seconds: float, generation: int) -> MapResult:
        """The engine's result with the picture's display map; cached unless the model changed since."""
        image = self.images.get(image_key)
        size = image.rgb.shape[:2] if image is not None else explanation.raw.shape[:2]
        display, flat = display_uint8(self.overlay, explanation.raw, size)
        result = map_result(explanation, image_key=image_key, generation=generation, display=display, flat=flat,
                            seconds=seconds)
        if generation == self.generation:
            self.remember(result)
        return result

    def remember(self, result: MapResult) -> None:
        """Keep a finished map of this model (and its picture's prediction): made here, or by an engine
        that died (``Restore.maps``)."""
        if result.generation == self.generation and result.image_key is not None:
            self._predictions[(result.image_key, result.generation)] = result.prediction
            self.cache.put(result_key(result), result)

    def precompute(self, plan: Precompute, class_index: int) -> None:
        """PrecomputeJob's step: one map into the cache, unless the model or the picture is gone."""
        if plan.generation == self.generation and self.engine is not None and plan.image_key in self.images:
            self.compute(plan.spec(class_index))

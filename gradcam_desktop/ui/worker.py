"""The one thread that owns TensorFlow and the model.

Shape (measured, not a style choice): a ``QThread`` *subclass* whose ``run()`` loops over a
thread-safe ``queue.Queue`` of plain request objects. The other common shape — a ``QObject``
moved to a thread whose slots call TensorFlow — deadlocked in 3 of 3 runs on TensorFlow 2.21 +
PySide6 6.12: PySide6 makes a fresh Python thread state per slot call and TensorFlow's pybind11
layer caches another, so both threads end up waiting for the GIL. ``run()`` keeps one thread
state for the worker's whole life.

TensorFlow, Keras and the core engine are imported inside ``run()`` so the window is shown
before TensorFlow has loaded; ``ready`` is emitted once the import is done.

Rules the window relies on:

* every request gets an int id (``load_model``/``load_images``/``explain`` return it) and the
  results carry it back, so the window can drop stale ones;
* **newest request wins**: of several queued ``Explain`` requests only the newest runs;
  ``LoadModel``, ``LoadImages`` and ``Shutdown`` are never dropped;
* results are cached per (image, model generation, layer, class) in a bounded LRU, and once the
  queue has been idle for ``PRECOMPUTE_DELAY`` after a map was shown, the maps of the current
  image's top classes are precomputed, one at a time (a real request goes first);
* the display map is sent as uint8 (0–255, exactly ``round(display_map * 255)``) at the
  image's size (see ``results.display_uint8``);
* the engine keeps the preprocessed input of recent images, so other classes and layers of
  the same picture do not resize it again;
* signals only carry plain Python/NumPy objects; no widget is ever touched from here.

This module is the thread: its loop and request handlers. The requests (re-exported here) are
in ``requests.py``, the map cache in ``map_cache.py``, the signals' payloads in ``results.py``.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QThread, Signal

from gradcam_desktop.ui.applog import log_path
from gradcam_desktop.ui.map_cache import MapCache
from gradcam_desktop.ui.requests import Explain, LoadImages, LoadModel, Precompute, Shutdown, expand_sources
from gradcam_desktop.ui.results import display_uint8, image_item, map_result, model_info, trust_would_help, versions

__all__ = ["Explain", "GradCamWorker", "LoadImages", "LoadModel", "Precompute", "Shutdown"]

log = logging.getLogger(__name__)

#: Classes whose maps are precomputed when idle (the top of the prediction).
PRECOMPUTE_TOP = 3
#: Idle time before precomputing starts: lets the window composite and paint the map just sent
#: without the worker competing for the CPU, and keeps quick layer/class scrubbing (key repeat)
#: free of precompute work that would delay the next real request.
PRECOMPUTE_DELAY = 0.1
#: Recent images whose preprocessed model input the engine keeps.
INPUT_CACHE = 4
#: GIL hand-over before each computed map. The UI thread has usually just sent the request and
#: repaints next, while a map (above all the first of a layer, which traces a tf.function) starts
#: with tens of ms in which TensorFlow seldom lets go of the GIL. Measured on the benchmark's
#: 480×360 run: worst UI gap 29–36 ms without this pause, 16–20 ms with it.
_GIL_YIELD = 0.001
#: Bounds of the result cache: maps at image resolution can be tens of MB each.
CACHE_ENTRIES = 96
CACHE_BYTES = 384 * 1024 * 1024
#: A zoo download reports progress at most this often (signals are cheap, repaints are not).
_PROGRESS_INTERVAL = 0.1


class _Stopping(Exception):
    """Raised inside run() to unwind when stop() was called."""


class GradCamWorker(QThread):
    """Owns TensorFlow, the loaded model, the decoded images and the map cache.

    Public methods are thread-safe and return at once; results arrive as signals, which Qt
    queues to the receivers' (UI) thread.
    """

    ready = Signal(dict)  # versions (and zoo names) once TensorFlow is imported
    modelLoaded = Signal(int, dict)
    modelRefused = Signal(int, str, bool)  # id, message, whether trusting the file would help
    imagesLoaded = Signal(int, list)
    imageFailed = Signal(str, str)
    mapReady = Signal(int, dict)
    failed = Signal(int, str)
    progress = Signal(str, int, int)  # text, done, total (0 = unknown)
    busy = Signal(str)  # what is being computed; "" when idle

    def __init__(self, parent=None, *, cache_entries: int = CACHE_ENTRIES, precompute: bool = True) -> None:
        super().__init__(parent)
        self.setObjectName("GradCamWorker")
        self._queue: queue.Queue = queue.Queue()
        self._stopping = threading.Event()
        self._cancel = threading.Event()
        self._precompute_enabled = precompute
        # Everything below is touched by run() only (the worker thread).
        self._pending: list[Any] = []
        self._precompute: Precompute | None = None
        self._precompute_at = 0.0  # time.monotonic() before which precompute waits
        self._gradcam = None
        self._generation = 0
        self._images: dict[str, Any] = {}
        self._image_counter = itertools.count(1)
        self._cache = MapCache(cache_entries, CACHE_BYTES)
        self._predictions: dict[tuple[str, int], Any] = {}
        self._import_error: str | None = None
        self._modules: dict[str, Any] = {}

    # -- thread-safe API (UI thread) ------------------------------------------------------
    def load_model(self, spec: str, trust: bool = False) -> int:
        """Queue loading a model; returns the request id."""
        self._cancel.clear()
        return self._put(LoadModel(str(spec), bool(trust)))

    def load_images(self, sources: list) -> int:
        """Queue decoding images (paths, folders or encoded bytes); returns the request id."""
        return self._put(LoadImages(list(sources)))

    def explain(self, image_key: str, layer: str | None, class_index: int | None,
                *, supersedable: bool = True) -> int:
        """Queue a map request; returns the request id. Newer requests supersede it."""
        return self._put(Explain(image_key, layer, class_index, supersedable))

    def cancel_download(self) -> None:
        """Ask a running zoo download to stop (it then fails with a 'cancelled' message)."""
        self._cancel.set()

    def stop(self) -> None:
        """Ask run() to return soon: a map in progress finishes, nothing new starts."""
        self._stopping.set()
        self._cancel.set()
        self._queue.put(Shutdown())

    def stopping(self) -> bool:
        """True once stop() was called."""
        return self._stopping.is_set()

    def _put(self, request) -> int:
        self._queue.put(request)
        return request.id

    # -- the thread ----------------------------------------------------------------------
    def run(self) -> None:  # noqa: C901 - the loop is the point of this class
        """Import TensorFlow, then serve requests until Shutdown/stop()."""
        self.busy.emit("Starting TensorFlow…")
        try:
            self._import_engine()
        except Exception as exc:  # noqa: BLE001 - anything here means no engine at all
            log.exception("TensorFlow/engine import failed")
            self._import_error = (
                f"TensorFlow could not be started ({type(exc).__name__}: {exc}); see the log at {log_path()}"
            )
        if self._stopping.is_set():
            return
        self.ready.emit(self._versions())
        self.busy.emit("")
        while not self._stopping.is_set():
            try:
                request = self._next_request()
            except _Stopping:
                break
            if request is None:  # idle: do one low-priority item, then look at the queue again
                self._precompute_one()
                continue
            if isinstance(request, Shutdown):
                break
            self._handle(request)
        self._gradcam = None
        self._cache.clear()
        log.debug("worker leaves run()")

    def _import_engine(self) -> None:
        # Heavy imports on purpose here: this is the thread that owns TensorFlow.
        from gradcam_desktop.core.runtime import import_tensorflow_quietly

        tf = import_tensorflow_quietly()
        import keras

        from gradcam_desktop.core import gradcam, images, models, overlay

        self._modules = {"tf": tf, "keras": keras, "gradcam": gradcam, "images": images,
                         "models": models, "overlay": overlay}
        try:
            from gradcam_desktop.core import zoo

            self._modules["zoo"] = zoo
        except Exception:  # noqa: BLE001 - the zoo is optional for the window to work
            log.exception("zoo registry unavailable")

    def _versions(self) -> dict:
        zoo = self._modules.get("zoo")
        try:
            zoo_names = list(zoo.zoo_names()) if zoo else []
        except Exception:  # noqa: BLE001
            log.exception("zoo_names failed")
            zoo_names = []
        return versions(self._modules.get("tf"), self._modules.get("keras"), zoo_names, self._import_error)

    def _next_request(self):
        """The next request to run, or None when idle and there is precompute work.

        Drains the queue into ``_pending`` and skips every supersedable Explain that has a newer
        supersedable Explain behind it (newest request wins). Blocks when there is nothing to do,
        and until ``_precompute_at`` when precompute work waits.
        """
        while True:
            if self._pending:
                self._drain(block=False)
            elif self._precompute is None:
                self._drain(block=True)
            else:
                self._drain(block=True, timeout=self._precompute_at - time.monotonic())
            if self._stopping.is_set():
                raise _Stopping
            if not self._pending:
                return None
            request = self._pending.pop(0)
            if isinstance(request, Explain) and request.supersedable and any(
                isinstance(r, Explain) and r.supersedable for r in self._pending
            ):
                log.debug("request %s superseded", request.id)
                continue
            return request

    def _drain(self, *, block: bool, timeout: float | None = None) -> None:
        try:
            if block and (timeout is None or timeout > 0):
                self._pending.append(self._queue.get(timeout=timeout))
            while True:
                self._pending.append(self._queue.get_nowait())
        except queue.Empty:
            pass

    def _handle(self, request) -> None:
        try:
            if self._import_error:
                raise RuntimeError(self._import_error)
            if isinstance(request, LoadModel):
                self._load_model(request)
            elif isinstance(request, LoadImages):
                self._load_images(request)
            elif isinstance(request, Explain):
                self._explain(request)
        except _Stopping:
            self._stopping.set()
        except Exception as exc:  # noqa: BLE001 - every error must reach the user, none kills the thread
            self._report(request, exc)
        finally:
            self.busy.emit("")
            self._precompute_at = time.monotonic() + PRECOMPUTE_DELAY

    def _report(self, request, exc: Exception) -> None:
        from gradcam_desktop.core.errors import GradCamError, UnsafeModelError

        if self._import_error:
            self.failed.emit(request.id, self._import_error)
            return
        if isinstance(exc, GradCamError):
            log.info("request %s failed: %s", request.id, exc)
            message = str(exc)
            if isinstance(exc, UnsafeModelError):
                self.modelRefused.emit(request.id, message, trust_would_help(exc))
        else:
            log.error("request %s (%s) failed unexpectedly", request.id, type(request).__name__, exc_info=exc)
            message = f"Unexpected error: {type(exc).__name__}: {exc}; see the log at {log_path()}"
        self.failed.emit(request.id, message)

    # -- requests ------------------------------------------------------------------------
    def _load_model(self, request: LoadModel) -> None:
        models = self._modules["models"]
        gradcam = self._modules["gradcam"]
        from gradcam_desktop.core.layers import layer_tree

        name = request.spec
        self.busy.emit(f"Loading model {Path(name).name if not name.startswith('zoo:') else name}…")
        last = [0.0]

        def progress(done: int, total: int | None) -> None:
            now = time.monotonic()
            if now - last[0] >= _PROGRESS_INTERVAL or (total and done >= total):
                last[0] = now
                self.progress.emit(f"Downloading {name[4:] if name.startswith('zoo:') else name} weights",
                                   int(done), int(total or 0))

        def cancel() -> bool:
            return self._cancel.is_set() or self._stopping.is_set()

        loaded = models.load_model(request.spec, trust=request.trust, progress=progress, cancel=cancel)
        if self._stopping.is_set():
            raise _Stopping
        engine = gradcam.GradCam(loaded, input_cache=INPUT_CACHE)
        # A new model invalidates every cached map and prediction.
        self._gradcam = engine
        self._generation += 1
        self._cache.clear()
        self._predictions.clear()
        self._precompute = None
        info = model_info(request.id, self._generation, loaded, engine, layer_tree(loaded.model), request.trust)
        self.modelLoaded.emit(request.id, info)

    def _load_images(self, request: LoadImages) -> None:
        images = self._modules["images"]
        from gradcam_desktop.core.errors import GradCamError

        sources, problems = expand_sources(request.sources, images.find_images)
        if not sources:
            raise _error("ImageLoadError", problems[0][1] if len(problems) == 1 else
                         "No pictures could be opened: " + " ".join(m for _n, m in problems[:3]))
        for name, message in problems:
            self.imageFailed.emit(name, message)
        loaded: list[dict] = []
        total = len(sources)
        for done, source in enumerate(sources):
            if self._stopping.is_set():
                raise _Stopping
            if total > 1:
                self.progress.emit("Opening images", done, total)
            label, data = source if isinstance(source, tuple) else (Path(source).name, source)
            self.busy.emit(f"Opening {label}…")
            try:
                image = images.load_image(data, name=label)
            except GradCamError as exc:
                self.imageFailed.emit(label, str(exc))
                continue
            except Exception as exc:  # noqa: BLE001 - one bad file must not stop the others
                log.error("unexpected error decoding %s", label, exc_info=exc)
                self.imageFailed.emit(label, f"Unexpected error: {exc}; see the log at {log_path()}")
                continue
            key = f"img{next(self._image_counter)}"
            self._images[key] = image
            loaded.append(image_item(key, image))
        if total > 1:
            self.progress.emit("Opening images", total, total)
        self.imagesLoaded.emit(request.id, loaded)

    def _explain(self, request: Explain) -> None:
        if self._gradcam is None:
            raise _error("ModelLoadError", "Open a model first (File → Open Demo Model, or drop a .keras file).")
        image = self._images.get(request.image_key)
        if image is None:
            raise _error("ImageLoadError", "That image is no longer loaded; open it again.")
        layer = request.layer or self._gradcam.default_layer
        self.busy.emit(f"Computing the map for {image.name} at layer {layer}…")
        result = self._map(request.image_key, image, layer, request.class_index)
        result = dict(result, id=request.id)
        self.mapReady.emit(request.id, result)
        if request.supersedable and self._precompute_enabled:
            top = [index for index, _name, _p in result["top"][:PRECOMPUTE_TOP]]
            self._precompute = Precompute(request.image_key, self._generation, layer, top)

    def _map(self, image_key: str, image, layer: str, class_index: int | None) -> dict:
        """A map from the cache, or computed and cached."""
        prediction = self._predictions.get((image_key, self._generation))
        if class_index is None and prediction is not None:
            class_index = prediction.top[0][0]
        key = (image_key, self._generation, layer, class_index)
        cached = self._cache.get(key) if class_index is not None else None
        if cached is not None:
            return dict(cached, cached=True, seconds=0.0)
        time.sleep(_GIL_YIELD)
        start = time.perf_counter()
        explanation = self._gradcam.explain(image, layer, class_index)
        display, flat = display_uint8(self._modules["overlay"], explanation.raw, image.rgb.shape[:2])
        self._predictions[(image_key, self._generation)] = explanation.prediction
        result = map_result(image_key, image, self._generation, explanation, display, flat,
                            time.perf_counter() - start)
        self._cache.put((image_key, self._generation, explanation.layer, explanation.class_index), result)
        return result

    def cached_keys(self) -> list[tuple]:
        """Keys of the cached maps (for tests and diagnostics; a snapshot, read-only)."""
        return self._cache.keys()

    def _precompute_one(self) -> None:
        """Compute one not-yet-cached map of the pending precompute job, if any."""
        job = self._precompute
        if job is None:
            return
        if job.generation != self._generation or self._gradcam is None or job.image_key not in self._images:
            self._precompute = None
            return
        class_index = job.next_class(self._cache)
        if class_index is None:
            self._precompute = None
            return
        try:
            self._map(job.image_key, self._images[job.image_key], job.layer, class_index)
        except Exception:  # noqa: BLE001 - background work never bothers the user
            log.exception("precompute failed")
            self._precompute = None


def _error(kind: str, message: str) -> Exception:
    from gradcam_desktop.core import errors

    return getattr(errors, kind)(message)

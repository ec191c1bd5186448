"""The one thread that owns TensorFlow and the model.

Shape (measured, not a style choice): a ``QThread`` *subclass* whose ``run()`` loops over a
thread-safe ``queue.Queue`` of plain request objects (handed to a ``Scheduler``). A ``QObject``
moved to a thread whose slots call TensorFlow deadlocked in 3 of 3 runs on TensorFlow 2.21 +
PySide6 6.12: PySide6 makes a fresh Python thread state per slot call and TensorFlow's pybind11
layer caches another, so both threads end up waiting for the GIL. ``run()`` keeps one thread
state for the worker's whole life. TensorFlow, Keras and the engine are imported inside
``run()``, so the window is shown before TensorFlow has loaded (``ready`` follows the import).

Rules the window relies on (the ordering ones are ``scheduler.py``'s, tested without a thread):

* every request gets an int id (returned by the call) and its results carry it back, so the
  window can drop stale ones; of several queued ``Explain``s only the newest runs, and it
  cancels a Score-CAM map still being made for an older one (``jobs.MapJob``, one batch of
  masks per step: the click waits for at most one batch);
* **user requests go first**: background jobs (``jobs.py``: precompute of the top classes,
  tracing the neighbouring layers, Export All; ``trust_job.py``: the trust report) advance one
  small step at a time while no request waits, report ``jobProgress``/``jobFinished`` and stop
  at ``cancel_job``;
* maps are made by ``maps.MapMaker`` and cached in a bounded LRU (``map_cache.map_key``: method
  and score included); the display map is sent as uint8 (``round(display_map * 255)``) at the
  image's size;
* signals carry plain Python/NumPy objects and core ``MapResult``s; no widget is touched from
  here, and every file Export All writes is written off the UI thread.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QThread, Signal

from gradcam_desktop.core.errors import GradCamError, ImageLoadError, ModelLoadError, UnsafeModelError
from gradcam_desktop.core.types import ModelSpec
from gradcam_desktop.ui.applog import log_path
from gradcam_desktop.ui.engine_modules import import_engine
from gradcam_desktop.ui.jobs import MapJob, PrecomputeJob, PrepareLayersJob, export_job, supersede_view
from gradcam_desktop.ui.map_cache import MapCache
from gradcam_desktop.ui.maps import MapMaker
from gradcam_desktop.ui.requests import (CancelJob, Explain, ExplainGrid, ExportAll, LoadImages, LoadModel, MapSpec,
                                         Precompute, Shutdown, _next_id, decode_source, expand_sources)
from gradcam_desktop.ui.results import failure_message, image_item, model_info, trust_would_help, versions
from gradcam_desktop.ui.scheduler import Job, Run, Scheduler, Wait
from gradcam_desktop.ui.trust_job import TrustJob, TrustRequest, supersede_trust

__all__ = ["CancelJob", "Explain", "ExplainGrid", "ExportAll", "ForgetImages", "GradCamWorker", "LoadImages", "LoadModel",
           "MapSpec", "Precompute", "Shutdown"]

log = logging.getLogger(__name__)

#: Classes whose maps are precomputed when idle (the top of the prediction).
PRECOMPUTE_TOP = 3
#: Idle time before precomputing: the window paints the map just sent without competition, and
#: quick layer/class scrubbing (key repeat) is not delayed by precompute work.
PRECOMPUTE_DELAY = 0.1
#: Recent images whose preprocessed model input the engine keeps.
INPUT_CACHE = 4
#: Layers next to the shown one whose compiled captures are traced while the user looks.
PREPARE_NEAREST = 4
#: Bounds of the result cache: maps at image resolution can be tens of MB each.
CACHE_ENTRIES = 96
CACHE_BYTES = 384 * 1024 * 1024
#: A zoo download reports progress at most this often (signals are cheap, repaints are not).
_PROGRESS_INTERVAL = 0.1


def _log_hint() -> str:
    return f"; see the log at {log_path()}"


class _Stopping(Exception):
    """Raised inside run() to unwind when stop() was called."""


@dataclass
class ForgetImages:
    """The window closed these pictures: drop their pixels, sources and maps (never superseded)."""

    keys: list[str]
    id: int = field(default_factory=_next_id)


class GradCamWorker(QThread):
    """Owns TensorFlow, the loaded model, the decoded images, the map cache and the scheduler.

    Public methods are thread-safe and return at once; results arrive as signals, which Qt
    queues to the receivers' (UI) thread.
    """

    ready = Signal(dict)  # versions (and zoo names) once TensorFlow is imported
    modelLoaded = Signal(int, dict)
    modelRefused = Signal(int, str, bool)  # id, message, whether trusting the file would help
    imagesLoaded = Signal(int, list)
    imageFailed = Signal(str, str)
    mapReady = Signal(int, object)  # request id, core.types.MapResult (display, image_key, generation set)
    cellReady = Signal(int, int, object)  # grid id, cell index, MapResult (or a str: why that map failed)
    failed = Signal(int, str)
    progress = Signal(str, int, int)  # text, done, total (0 = unknown)
    busy = Signal(str)  # what is being computed; "" when idle
    jobProgress = Signal(int, int, int, str)  # job id, done, total, picture being worked on
    jobFinished = Signal(int, dict)  # job id, {"written", "failures", "cancelled", "folder", "csv"}
    trustReady = Signal(int, object)  # request id, trust_job.TrustOutcome

    def __init__(self, parent=None, *, cache_entries: int = CACHE_ENTRIES, precompute: bool = True,
                 modules: dict[str, Any] | None = None) -> None:
        """``modules`` replaces core modules the thread imports ("models", "gradcam", …) with
        stand-ins: how tests fake a slow download or a failing engine without reaching inside."""
        super().__init__(parent)
        self.setObjectName("GradCamWorker")
        self._queue: queue.Queue = queue.Queue()
        self._stopping = threading.Event()
        self._cancel = threading.Event()
        self._precompute_enabled = precompute
        # Everything below is touched by run() only (the worker thread).
        self._scheduler = Scheduler()
        self._image_counter = itertools.count(1)
        self._cache = MapCache(cache_entries, CACHE_BYTES)
        self._maps = MapMaker(self._cache)
        self._eligible: list[str] = []  # the model's layers a map can be taken at, in order
        self._import_error: str | None = None
        self._modules: dict[str, Any] = {}
        self._module_overrides = dict(modules or {})

    # -- thread-safe API (UI thread) ------------------------------------------------------
    def load_model(self, spec: str, trust: bool = False) -> int:
        """Queue loading a model; returns the request id."""
        self._cancel.clear()
        return self._put(LoadModel(str(spec), bool(trust)))

    def load_images(self, sources: list) -> int:
        """Queue decoding images (paths, folders or encoded bytes); returns the request id."""
        return self._put(LoadImages(list(sources)))

    def forget_images(self, keys: list[str]) -> int:
        """Queue dropping pictures the window closed (decoded pixels, source, cached maps); the request id."""
        return self._put(ForgetImages([str(k) for k in keys]))

    def explain(self, image_key: str, layer: str | None, class_index: int | None, *, method: str = "gradcam",
                versus: int | None = None, counterfactual: bool = False, supersedable: bool = True) -> int:
        """Queue a map request; returns the request id. Newer requests supersede it.

        ``versus`` B explains y_c − y_B, ``counterfactual`` −y_c (see ``requests.MapSpec``).
        Score-CAM answers after a job (``jobProgress`` with this id while it runs).
        """
        return self._put(Explain(image_key, layer, class_index, supersedable, method, versus, counterfactual))

    def explain_grid(self, cells: list[MapSpec], *, supersedable: bool = True) -> int:
        """Queue maps for several ``MapSpec``s (the compare grid); returns the id.

        Each map arrives as ``cellReady(id, index, result)``, in order, from the cache when it can;
        progress as ``jobProgress``, the end as ``jobFinished``. A newer grid cancels this one.
        """
        return self._put(ExplainGrid(list(cells), supersedable))

    def export_all(self, image_keys: list[str], folder: str | Path, *, layer: str | None, class_index: int | None,
                   style: Any, method: str = "gradcam", versus: int | None = None,
                   counterfactual: bool = False) -> int:
        """Start the Export All job (``core.batch`` rows, then results.csv); returns its job id.

        ``style`` is a ``core.batch.OutputStyle``; its ``sidecar_extra`` gets the model's name and
        hash unless it has them. Progress arrives as ``jobProgress``, the end as ``jobFinished``
        (or ``failed`` with this id when the export cannot start, e.g. no model).
        """
        return self._put(ExportAll(list(image_keys), str(folder), layer, class_index, style, method, versus,
                                   counterfactual))

    def trust(self, result: Any) -> int:
        """Queue the trust report of ``result`` (a map sent here): a job, ends in ``trustReady`` or ``failed``."""
        return self._put(TrustRequest(result))

    def start_job(self, request: Any) -> int:
        """Queue a request that makes its own job (``request.start_job(MapMaker) -> Job``, e.g. triage); its id."""
        return self._put(request)

    def cancel_job(self, job_id: int) -> None:
        """Cancel a background job; it ends after the step running now (``jobFinished`` says so)."""
        self._put(CancelJob(int(job_id)))

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
    def run(self) -> None:
        """Import TensorFlow, then do what the scheduler says until Shutdown/stop()."""
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
        self.ready.emit(versions(self._modules, self._import_error))
        self.busy.emit("")
        while not self._stopping.is_set():
            self._drain(0)  # the scheduler must see every queued request to pick the newest
            action = self._scheduler.next_action(time.monotonic())
            if isinstance(action, Wait):
                self._drain(action.timeout)
            elif isinstance(action, Run):
                if isinstance(action.request, Shutdown):
                    break
                self._handle(action.request)
            else:
                self._step(action.job)
        self._wind_up_jobs()
        self._maps.close()
        log.debug("worker leaves run()")

    def _import_engine(self) -> None:
        # Heavy imports on purpose here: this is the thread that owns TensorFlow.
        self._modules = import_engine(self._module_overrides)
        self._maps.overlay = self._modules["overlay"]

    def _drain(self, timeout: float | None) -> None:
        """Move queued requests to the scheduler, first waiting up to ``timeout`` s (None: forever) for one."""
        try:
            if timeout is None or timeout > 0:
                self._scheduler.submit(self._queue.get(timeout=timeout))
            while True:
                self._scheduler.submit(self._queue.get_nowait())
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
            elif isinstance(request, ForgetImages):
                self._forget_images(request.keys)
            elif isinstance(request, Explain):
                self._explain(request)
            elif isinstance(request, ExplainGrid):
                self._explain_grid(request)
            elif isinstance(request, ExportAll):
                self._start_export(request)
            elif isinstance(request, TrustRequest):
                self._start_job(TrustJob(request, self._maps, self.trustReady.emit, self.failed.emit, log_hint=_log_hint()))
            elif isinstance(request, CancelJob):
                self._scheduler.cancel_job(request.job_id)
            elif hasattr(request, "start_job"):  # triage_job.TriageRequest
                self._start_job(request.start_job(self._maps))
        except _Stopping:
            self._stopping.set()
        except Exception as exc:  # noqa: BLE001 - every error must reach the user, none kills the thread
            self._report(request, exc)
        finally:
            self.busy.emit("")

    def _step(self, job: Job) -> None:
        """One step of a background job; a visible job's progress and end go to the window."""
        try:
            more = job.step()
        except Exception:  # noqa: BLE001 - background work never takes the thread down
            log.exception("background job %s failed", type(job).__name__)
            more = False
        self._scheduler.stepped(job, more)
        if job.visible:
            self.jobProgress.emit(job.id, *job.progress())
            if not more:
                self.jobFinished.emit(job.id, job.summary())

    def _wind_up_jobs(self) -> None:
        """On stop: cancelled jobs get their last step (Export All writes the rows done so far)."""
        self._scheduler.cancel_all()
        for job in self._scheduler.jobs():
            self._step(job)

    def _report(self, request, exc: Exception) -> None:
        if not self._import_error:
            if isinstance(exc, GradCamError):
                log.info("request %s failed: %s", request.id, exc)
            else:
                log.error("request %s (%s) failed unexpectedly", request.id, type(request).__name__, exc_info=exc)
            if isinstance(exc, UnsafeModelError):
                self.modelRefused.emit(request.id, str(exc), trust_would_help(exc))
        self.failed.emit(request.id, self._import_error or failure_message(exc, _log_hint()))

    # -- requests ------------------------------------------------------------------------
    def _load_model(self, request: LoadModel) -> None:
        models = self._modules["models"]
        gradcam = self._modules["gradcam"]
        from gradcam_desktop.core.layers import eligible_paths, layer_tree

        spec = ModelSpec.parse(request.spec)
        self.busy.emit(f"Opening {spec.label}…")
        last = [0.0]

        def progress(done: int, total: int | None) -> None:
            now = time.monotonic()
            if now - last[0] >= _PROGRESS_INTERVAL or (total and done >= total):
                last[0] = now
                self.progress.emit(f"Downloading {spec.value} weights", int(done), int(total or 0))

        def cancel() -> bool:
            return self._cancel.is_set() or self._stopping.is_set()

        loaded = models.load_model(request.spec, trust=request.trust, progress=progress, cancel=cancel)
        if self._stopping.is_set():
            raise _Stopping
        engine = gradcam.GradCam(loaded, input_cache=INPUT_CACHE)
        # A new model invalidates every cached map and prediction, and every map being made.
        generation = self._maps.set_engine(engine)
        for group in (PrecomputeJob.group, PrepareLayersJob.group, "view", "grid"):
            self._scheduler.cancel_group(group)
        self._eligible = eligible_paths(loaded.model)
        info = model_info(request.id, generation, loaded, engine, layer_tree(loaded.model), request.trust)
        self.modelLoaded.emit(request.id, info)

    def _load_images(self, request: LoadImages) -> None:
        images = self._modules["images"]
        sources, problems = expand_sources(request.sources, images.find_images)
        if not sources:
            raise ImageLoadError(problems[0][1] if len(problems) == 1 else
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
            image, problem = decode_source(images.load_image, label, data, _log_hint())
            if problem:
                self.imageFailed.emit(label, problem)
                continue
            key = f"img{next(self._image_counter)}"
            self._maps.images.put(key, image, data)  # data: the path or bytes it is decoded again from
            loaded.append(image_item(key, image, self._maps.images))
        if total > 1:
            self.progress.emit("Opening images", total, total)
        if loaded:  # the window shows the first new picture: decoded again here if the bound dropped it
            self._maps.images.get(loaded[0]["key"])
        self.imagesLoaded.emit(request.id, loaded)

    def _forget_images(self, keys: list[str]) -> None:
        """Closed pictures: their maps being made stop, and nothing of them stays but what an Export All holds."""
        gone = set(keys)
        for job in self._scheduler.jobs():  # maps of these pictures only (Export All keeps what it was given)
            if (isinstance(job, PrecomputeJob) and job.plan.image_key in gone) or \
                    (isinstance(job, MapJob) and job.cells and all(cell.image_key in gone for cell in job.cells)):
                job.cancel()
        for key in gone:
            self._maps.images.forget(key)
        kept = [(key, self._cache.get(key)) for key in self._cache.keys() if key[0] not in gone]
        self._cache.clear()
        for key, result in kept:  # in the old order: least recently used first, as before
            self._cache.put(key, result)
        predictions = getattr(self._maps, "_predictions", {})  # MapMaker's per-picture predictions
        for key in [k for k in predictions if k[0] in gone]:
            del predictions[key]

    def _explain(self, request: Explain) -> None:
        engine = self._engine()
        maps = self._maps
        spec = maps.resolve(request.spec)
        image = maps.image(spec.image_key)
        if request.supersedable:
            supersede_trust(self._scheduler.jobs(), spec)  # the report of a map no longer wanted
            if supersede_view(self._scheduler.jobs(), spec, request.id):
                return  # the Score-CAM job making this very map now answers this request
        if maps.cached(spec) is None and maps.stepwise(spec):
            # Score-CAM: one batch of masks per step, so the next click is not kept waiting.
            self._start_job(MapJob(request.id, [spec], maps, lambda job_id, _i, result: self.mapReady.emit(job_id, result),
                                   lambda job_id, _i, message: self.failed.emit(job_id, message),
                                   group="view" if request.supersedable else None, log_hint=_log_hint()))
            return
        self.busy.emit(f"Computing the map for {image.name} at layer {spec.layer}…")
        result = maps.compute(spec)
        self.mapReady.emit(request.id, result.with_(request_id=request.id))
        if request.supersedable and self._precompute_enabled:
            plan = Precompute.after(spec, result, maps.generation, PRECOMPUTE_TOP)
            self._scheduler.add_job(PrecomputeJob(plan, self._cache, maps.precompute, delay=PRECOMPUTE_DELAY))
            self._scheduler.add_job(PrepareLayersJob(engine.prepare, self._eligible, result.layer, PREPARE_NEAREST))

    def _explain_grid(self, request: ExplainGrid) -> None:
        self._engine()
        # A newer grid cancels the older one (same group); a failed cell is its message.
        self._start_job(MapJob(request.id, request.cells, self._maps, self.cellReady.emit, self.cellReady.emit,
                               group="grid" if request.supersedable else None, log_hint=_log_hint()))

    def _start_job(self, job: Job) -> None:
        self._scheduler.add_job(job)
        self.jobProgress.emit(job.id, *job.progress())

    def _start_export(self, request: ExportAll) -> None:
        # The job keeps this engine: a model opened meanwhile does not change what it exports.
        self._start_job(export_job(request, self._engine(), self._maps.images, log_hint=_log_hint()))

    def _engine(self):
        if self._maps.engine is None:
            raise ModelLoadError("Open a model first (File → Open Demo Model, or drop a .keras/.h5 file or a SavedModel folder).")
        return self._maps.engine

    def cached_keys(self) -> list[tuple]:
        """Keys of the cached maps, ``map_key`` layout (for tests and diagnostics; a snapshot)."""
        return self._cache.keys()


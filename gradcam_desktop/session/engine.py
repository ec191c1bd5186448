"""The engine: the model, the pictures, the map cache and the scheduler, answering the window's requests.

It runs in its own process (``engine_main``; or on a thread, ``host.ThreadHost``), reads plain
request objects (``requests``, ``trust_job``, ``triage_job``, ``custom_layers``) from an inbox and
answers with events ``(name, *args)`` through ``emit``; ``ui.worker`` turns the events into Qt
signals. Nothing here imports Qt. TensorFlow, Keras and the engine's core modules are imported in
``run()``, so the process says hello before TensorFlow has loaded.

Rules the window relies on (the ordering ones are ``scheduler.py``'s, tested without a thread):

* every request carries an int id and its answers carry it back, so the window can drop stale
  ones; of several queued ``Explain``s only the newest runs, and it cancels a Score-CAM map still
  being made for an older one (``jobs.MapJob``, one batch of masks per step);
* **user requests go first**: background jobs (precompute of the top classes, tracing the
  neighbouring layers, Export All, the trust report, triage) advance one small step at a time
  while no request waits. Every job answers the same way: ``jobProgress(id, done, total, what)``,
  ``jobPartial(id, part)``, then ``jobFinished(id, summary)`` (or ``failed(id, message)``);
* maps are cached in a bounded LRU (``map_cache.map_key``: method and score included); the display
  map is sent as uint8 at the picture's size;
* ``Restore`` is how a new engine takes over after the old one died: the same model (same
  generation, so the window's maps stay valid), the same picture keys, the custom-layer files
  the user had run.

Events (``EVENTS``): ready(versions), modelLoaded(id, records.ModelInfo), modelRefused(id, message,
trustable), imagesLoaded(id, [item]), imageFailed(name, message), mapReady(id, MapResult) (the answer
to a map query, made at once or by a Score-CAM job), failed(id, message), progress(text, done,
total), busy(text), restored(ModelInfo | None), answer(id, value) (a diagnostic query's reply),
working(text) (what runs now, in words: kept by the window's side for the line it shows if the
engine dies), and every job's three: jobProgress(id, done, total, what), jobPartial(id, (kind,
*data)) — ("cell", index, MapResult | message) of a compare grid, ("trust", TrustOutcome),
("started" | "rows" | "failed", data) of triage — and jobFinished(id, summary).
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gradcam_desktop.core.errors import GradCamError, ImageLoadError, ModelLoadError, UnsafeModelError
from gradcam_desktop.core.types import ModelSpec
from gradcam_desktop.session.engine_modules import import_engine
from gradcam_desktop.session.jobs import MapJob, PrecomputeJob, PrepareLayersJob, export_job, supersede_view
from gradcam_desktop.session.map_cache import MapCache
from gradcam_desktop.session.maps import MapMaker
from gradcam_desktop.session.requests import (CancelJob, Explain, ExplainGrid, ExportAll, LoadImages, LoadModel,
                                              Precompute, Shutdown, _next_id, decode_source, expand_sources)
from gradcam_desktop.session.records import ModelInfo
from gradcam_desktop.session.results import failure_message, image_item, model_info, trust_would_help, versions
from gradcam_desktop.session.scheduler import Job, Run, Scheduler, Wait
from gradcam_desktop.session.trust_job import TrustJob, TrustRequest, supersede_trust

__all__ = ["EVENTS", "CachedKeys", "Engine", "ForgetImages", "Reset", "Restore"]

log = logging.getLogger(__name__)

#: The names an engine may emit; the window's worker has one signal of each name.
EVENTS = frozenset({"ready", "modelLoaded", "modelRefused", "imagesLoaded", "imageFailed", "mapReady",
                    "failed", "progress", "busy", "jobProgress", "jobPartial", "jobFinished",
                    "restored", "answer", "working"})

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
#: A zoo download reports progress at most this often (messages are cheap, repaints are not).
_PROGRESS_INTERVAL = 0.1


class _Stopping(Exception):
    """Raised inside run() to unwind when stop() was called."""


@dataclass
class ForgetImages:
    """The window closed these pictures: drop their pixels, sources and maps (never superseded)."""

    keys: list[str]
    id: int = field(default_factory=_next_id)


@dataclass
class Restore:
    """Take over from an engine that died: the custom-layer files, then the model, then the pictures.

    ``model`` None: no model was open. ``generation`` is the dead engine's, so the window's maps and
    keys stay valid; ``pictures`` are (key, path or encoded bytes, name), decoded when first asked;
    ``maps`` the maps the window had received (its bounded copy): the new engine's cache starts with them.
    Answered by ``restored(model info or None)``, or ``failed(id, message)`` if the model no longer opens.
    """

    model: str | None
    trust: bool
    generation: int
    pictures: list[tuple[str, Any, str]]
    custom_layers: list[str] = field(default_factory=list)
    maps: list[Any] = field(default_factory=list)
    output: str | None = None  # the output explained of a model with several
    id: int = field(default_factory=_next_id)


@dataclass
class Reset:
    """Forget the model, pictures, maps and jobs (jobs wind up first); answered by ``ready``.

    How a parked engine process is handed to the next window (``host.park``; the test suite's
    windows share one engine process this way instead of importing TensorFlow ~130 times).
    ``options`` are the next owner's ``Engine`` options (cache_entries, precompute); ``environment``
    its process environment (KERAS_HOME, the zoo's mirror, …), as a new engine process would inherit it.
    """

    options: dict = field(default_factory=dict)
    environment: dict[str, str] | None = None
    id: int = field(default_factory=_next_id)


@dataclass
class CachedKeys:
    """Diagnostics: the cache keys of the maps kept (``map_key`` layout), answered by ``answer(id, keys)``."""

    id: int = field(default_factory=_next_id)


class Engine:
    """Owns TensorFlow, the loaded model, the decoded pictures, the map cache and the scheduler.

    ``emit(name, *args)`` sends one event to the window (from the engine's thread only);
    ``log_hint`` ends messages of unexpected errors ("; see the log at …"). ``modules`` replaces core
    modules ("models", "gradcam", …) with stand-ins: how tests fake a slow download or a failing engine.
    """

    def __init__(self, emit: Callable[..., None], *, cache_entries: int = CACHE_ENTRIES, precompute: bool = True,
                 modules: dict[str, Any] | None = None, log_hint: str = "") -> None:
        self._emit = emit
        self.inbox: queue.Queue = queue.Queue()
        self.stopping = threading.Event()
        self.cancel_download = threading.Event()
        self.flush = threading.Event()  # a Reset is coming: drop every request queued before it
        self.flush_before = 0  # the newest Reset's id: requests with smaller ids are the old owner's
        self._precompute_enabled = precompute
        self._log_hint = log_hint
        self._scheduler = Scheduler()
        self._image_counter = itertools.count(1)
        self._cache = MapCache(cache_entries, CACHE_BYTES)
        self._maps = MapMaker(self._cache)
        self._eligible: list[str] = []  # the model's layers a map can be taken at, in order
        self._import_error: str | None = None
        self._doing = ""
        self._modules: dict[str, Any] = {}
        self._module_overrides = dict(modules or {})

    def answer_cached_keys(self, request: CachedKeys) -> None:
        """Answer a diagnostic query from any thread (a snapshot of the keys: one C-level copy under the GIL)."""
        self._emit("answer", request.id, self._cache.keys())

    def stop(self) -> None:
        """Ask run() to return soon (thread-safe): a step in progress finishes, nothing new starts."""
        self.stopping.set()
        self.cancel_download.set()
        self.inbox.put(Shutdown())

    # -- the loop ------------------------------------------------------------------------------
    def run(self) -> None:
        """Import TensorFlow, then do what the scheduler says until Shutdown/stop()."""
        self._emit("busy", "Starting TensorFlow…")
        try:
            self._modules = import_engine(self._module_overrides)
            self._maps.overlay = self._modules["overlay"]
        except Exception as exc:  # noqa: BLE001 - anything here means no engine at all
            log.exception("TensorFlow/engine import failed")
            self._import_error = f"TensorFlow could not be started ({type(exc).__name__}: {exc}){self._log_hint}"
        if self.stopping.is_set():
            return
        self._emit("ready", versions(self._modules, self._import_error))
        self._emit("busy", "")
        while not self.stopping.is_set():
            if self.flush.is_set():
                self._flush()
                continue
            self._drain(0)  # the scheduler must see every queued request to pick the newest
            action = self._scheduler.next_action(time.monotonic())
            if isinstance(action, Wait):
                if self._doing:
                    self._doing = ""
                    self._emit("working", "")  # idle: a death now interrupts nothing
                self._drain(action.timeout)
            elif isinstance(action, Run):
                if isinstance(action.request, Shutdown):
                    break
                self._handle(action.request)
            else:
                self._step(action.job)
        self._wind_up_jobs()
        self._maps.close()
        log.debug("engine leaves run()")

    def _flush(self) -> None:
        """Drop what the old owner queued (ids below the Reset's: the window's ids only grow)."""
        self.flush.clear()
        cutoff = self.flush_before

        def keep(request: Any) -> bool:
            return isinstance(request, Reset) or getattr(request, "id", cutoff) >= cutoff

        self._drain(0)
        self._scheduler.drop_requests(keep)

    def _drain(self, timeout: float | None) -> None:
        """Move queued requests to the scheduler, first waiting up to ``timeout`` s (None: forever) for one."""
        try:
            if timeout is None or timeout > 0:
                self._scheduler.submit(self.inbox.get(timeout=timeout))
            while True:
                self._scheduler.submit(self.inbox.get_nowait())
        except queue.Empty:
            pass

    def _working(self, item: Any) -> None:
        """Tell the window's side what is about to run (``working``: not shown, kept in case the engine dies)."""
        text = self._describe(item)
        if text != self._doing:
            self._doing = text
            self._emit("working", text)

    def _describe(self, item: Any) -> str:
        maps = self._maps

        def picture(key: Any) -> str:
            source = maps.images.source_of(key) if isinstance(key, str) else None
            return source[1] if source else "a picture"

        if isinstance(item, (LoadModel, Restore)):
            spec = item.spec if isinstance(item, LoadModel) else item.model
            return f"opening {ModelSpec.parse(spec).label}" if spec else "starting"
        if isinstance(item, LoadImages):
            return "opening pictures"
        if isinstance(item, Explain):
            return f"making the map of {picture(item.image_key)} at layer {item.layer or 'the default one'}"
        if isinstance(item, MapJob) and item.cells:
            cell = item.current() or item.cells[0]
            method = cell.method.title
            return f"making the {method} map of {picture(cell.image_key)} at layer {cell.layer}"
        if isinstance(item, PrecomputeJob):
            return f"making maps of other classes for {picture(item.plan.image_key)} in the background"
        if isinstance(item, PrepareLayersJob):
            return "preparing the layers next to the one shown"
        if isinstance(item, TrustJob):
            return f"computing the trust figures of {picture(item.result.image_key)}"
        return {"TriageJob": "triaging a folder", "ExportJob": "exporting maps (Export All)",
                "TriageRequest": "reading a labelled folder", "PatternsJob": "finding the patterns of a folder",
                "CustomLayersRequest": "running a custom-layers file"}.get(type(item).__name__, "working")

    def _handle(self, request: Any) -> None:
        self._working(request)
        try:
            if self._import_error:
                raise RuntimeError(self._import_error)
            if isinstance(request, LoadModel):
                self._emit("modelLoaded", request.id, self._load_model(request))
            elif isinstance(request, LoadImages):
                self._load_images(request)
            elif isinstance(request, ForgetImages):
                self._forget_images(request.keys)
            elif isinstance(request, Explain):
                self._explain(request)
            elif isinstance(request, ExplainGrid):
                self._explain_grid(request)
            elif isinstance(request, ExportAll):
                # The job keeps this engine: a model opened meanwhile does not change what it exports.
                self._start_job(export_job(request, self._engine(), self._maps.images, log_hint=self._log_hint))
            elif isinstance(request, TrustRequest):
                self._start_job(TrustJob(request, self._maps, self._partial("trust"), self._sender("failed"),
                                         log_hint=self._log_hint))
            elif isinstance(request, CancelJob):
                self._scheduler.cancel_job(request.job_id)
            elif isinstance(request, Restore):
                self._restore(request)
            elif isinstance(request, Reset):
                if request.environment is not None:
                    os.environ.clear()
                    os.environ.update(request.environment)
                self._reset(**request.options)
            elif hasattr(request, "start_job"):  # triage_job.TriageRequest, custom_layers.CustomLayersRequest
                self._start_job(request.start_job(self._maps, self._sender("jobPartial")))
        except _Stopping:
            self.stopping.set()
        except Exception as exc:  # noqa: BLE001 - every error must reach the user, none kills the loop
            self._report(request, exc)
        finally:
            self._emit("busy", "")

    def _reset(self, cache_entries: int = CACHE_ENTRIES, precompute: bool = True) -> None:
        self._wind_up_jobs()
        self._scheduler = Scheduler()
        self._cache = MapCache(cache_entries, CACHE_BYTES)
        self._maps.close()
        overlay = self._maps.overlay
        self._maps = MapMaker(self._cache)
        self._maps.overlay = overlay
        self._precompute_enabled = precompute
        self._eligible, self._doing = [], ""
        self._image_counter = itertools.count(1)
        self.cancel_download.clear()
        self._emit("ready", versions(self._modules, self._import_error))

    def _sender(self, name: str) -> Callable[..., None]:
        return lambda *args: self._emit(name, *args)

    def _partial(self, kind: str) -> Callable[..., None]:
        """A job's partial result, the one way every job answers: ``jobPartial(job id, (kind, *data))``."""
        return lambda job_id, *data: self._emit("jobPartial", job_id, (kind, *data))

    def _step(self, job: Job) -> None:
        """One step of a background job; a visible job's progress and end go to the window."""
        self._working(job)
        try:
            more = job.step()
        except Exception:  # noqa: BLE001 - background work never takes the loop down
            log.exception("background job %s failed", type(job).__name__)
            more = False
        self._scheduler.stepped(job, more)
        if job.visible:
            self._emit("jobProgress", job.id, *job.progress())
            if not more:
                self._emit("jobFinished", job.id, job.summary())

    def _wind_up_jobs(self) -> None:
        """On stop: cancelled jobs get their last step (Export All writes the rows done so far)."""
        self._scheduler.cancel_all()
        for job in self._scheduler.jobs():
            self._step(job)

    def _report(self, request: Any, exc: Exception) -> None:
        if not self._import_error:
            if isinstance(exc, GradCamError):
                log.info("request %s failed: %s", request.id, exc)
            else:
                log.error("request %s (%s) failed unexpectedly", request.id, type(request).__name__, exc_info=exc)
            if isinstance(exc, UnsafeModelError):
                self._emit("modelRefused", request.id, str(exc), trust_would_help(exc))
        self._emit("failed", request.id, self._import_error or failure_message(exc, self._log_hint))

    # -- requests ------------------------------------------------------------------------------
    def _load_model(self, request: LoadModel, generation: int | None = None) -> ModelInfo:
        models = self._modules["models"]
        gradcam = self._modules["gradcam"]
        from gradcam_desktop.core.layers import eligible_paths, layer_tree

        spec = ModelSpec.parse(request.spec)
        self._emit("busy", f"Opening {spec.label}…")
        last = [0.0]

        def progress(done: int, total: int | None) -> None:
            now = time.monotonic()
            if now - last[0] >= _PROGRESS_INTERVAL or (total and done >= total):
                last[0] = now
                self._emit("progress", f"Downloading {spec.value} weights", int(done), int(total or 0))

        def cancel() -> bool:
            return self.cancel_download.is_set() or self.stopping.is_set()

        self.cancel_download.clear()
        loaded = models.load_model(request.spec, trust=request.trust, progress=progress, cancel=cancel,
                                   output=request.output)
        if self.stopping.is_set():
            raise _Stopping
        engine = gradcam.GradCam(loaded, input_cache=INPUT_CACHE)
        # A new model invalidates every cached map and prediction, and every map being made.
        if generation is not None:
            self._maps.generation = generation - 1
        generation = self._maps.set_engine(engine)
        for group in (PrecomputeJob.group, PrepareLayersJob.group, "view", "grid"):
            self._scheduler.cancel_group(group)
        shows_layers = loaded.model is not None  # a black box (ONNX, TFLite, serving SavedModel) shows none
        self._eligible = eligible_paths(loaded.model) if shows_layers else []
        return model_info(request.id, generation, loaded, engine, layer_tree(loaded.model) if shows_layers else [],
                          request.trust)

    def _restore(self, request: Restore) -> None:
        from gradcam_desktop.core.custom_objects import load_custom_objects

        for path in request.custom_layers:
            load_custom_objects(path)
        for key, source, name in request.pictures:
            self._maps.images.add_source(key, source, name)
        numbers = [int(key[3:]) for key, _s, _n in request.pictures if key.startswith("img") and key[3:].isdigit()]
        self._image_counter = itertools.count(max(numbers, default=0) + 1)
        info = None
        if request.model is not None:
            info = self._load_model(LoadModel(request.model, request.trust, request.output, request.id),
                                    request.generation)
            for result in request.maps:
                self._maps.remember(result)
        self._emit("restored", info)

    def _load_images(self, request: LoadImages) -> None:
        images = self._modules["images"]
        sources, problems = expand_sources(request.sources, images.find_images)
        if not sources:
            raise ImageLoadError(problems[0][1] if len(problems) == 1 else
                                 "No pictures could be opened: " + " ".join(m for _n, m in problems[:3]))
        for name, message in problems:
            self._emit("imageFailed", name, message)
        loaded: list[dict] = []
        total = len(sources)
        for done, source in enumerate(sources):
            if self.stopping.is_set():
                raise _Stopping
            if total > 1:
                self._emit("progress", "Opening images", done, total)
            label, data = source if isinstance(source, tuple) else (Path(source).name, source)
            self._emit("busy", f"Opening {label}…")
            image, problem = decode_source(images.load_image, label, data, self._log_hint)
            if problem:
                self._emit("imageFailed", label, problem)
                continue
            key = f"img{next(self._image_counter)}"
            self._maps.images.put(key, image, data)  # data: the path or bytes it is decoded again from
            loaded.append(image_item(key, image, data))
        if total > 1:
            self._emit("progress", "Opening images", total, total)
        self._emit("imagesLoaded", request.id, loaded)

    def _forget_images(self, keys: list[str]) -> None:
        """Closed pictures: their maps being made stop, and nothing of them stays but what an Export All holds."""
        gone = set(keys)
        for job in self._scheduler.jobs():  # maps of these pictures only (Export All keeps what it was given)
            if (isinstance(job, PrecomputeJob) and job.plan.image_key in gone) or \
                    (isinstance(job, MapJob) and job.cells and all(cell.image_key in gone for cell in job.cells)):
                job.cancel()
        for key in gone:
            self._maps.images.forget(key)
        self._cache.retain(lambda key: key[0] not in gone)
        self._maps.forget_predictions(gone)

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
            self._start_job(MapJob(request.id, [spec], maps,
                                   lambda job_id, _i, result: self._emit("mapReady", job_id, result),
                                   lambda job_id, _i, message: self._emit("failed", job_id, message),
                                   group="view" if request.supersedable else None, log_hint=self._log_hint))
            return
        where = f"at layer {spec.layer}" if spec.method.uses_layer else "on its pixels"
        self._emit("busy", f"Computing the map for {image.name} {where}…")
        result = maps.compute(spec)
        self._emit("mapReady", request.id, result.with_(request_id=request.id, query=spec))
        if request.supersedable and self._precompute_enabled:
            plan = Precompute.after(spec, result, maps.generation, PRECOMPUTE_TOP)
            self._scheduler.add_job(PrecomputeJob(plan, self._cache, maps.precompute, delay=PRECOMPUTE_DELAY))
            if self._eligible and result.layer in self._eligible:
                self._scheduler.add_job(PrepareLayersJob(engine.prepare, self._eligible, result.layer, PREPARE_NEAREST))

    def _explain_grid(self, request: ExplainGrid) -> None:
        self._engine()
        # A newer grid cancels the older one (same group); a failed cell is its message.
        self._start_job(MapJob(request.id, request.cells, self._maps, self._partial("cell"), self._partial("cell"),
                               group="grid" if request.supersedable else None,
                               log_hint=self._log_hint))

    def _start_job(self, job: Job) -> None:
        self._scheduler.add_job(job)
        self._emit("jobProgress", job.id, *job.progress())

    def _engine(self) -> Any:
        if self._maps.engine is None:
            raise ModelLoadError("Open a model first (File → Open Demo Model, or drop a .keras/.h5 file or a SavedModel folder).")
        return self._maps.engine

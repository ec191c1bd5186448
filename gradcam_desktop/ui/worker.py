"""The window's one link to the engine: a QThread that sends requests and turns answers into signals.

The engine (``session.engine``) runs in its own process (``session.host.ProcessHost``): the window's
process never imports TensorFlow. This thread starts it, writes the window's requests to it and
blocks on its pipe; each event that comes back is emitted as the Qt signal of the same name,
queued to the receivers' (UI) thread. No widget is touched here.

If the engine dies (an abort, a segfault, the out-of-memory killer), the thread fails the requests
it took with it with one line that says what it was doing, emits ``engineLost(line)``, starts a new
engine and hands it the last model that worked, the pictures and the custom-layer files
(``session.supervisor``); ``engineRestored(info)`` follows. The window keeps every picture, choice
and map on screen.

Shape (measured, not a style choice): a ``QThread`` *subclass* whose ``run()`` loops, not a
``QObject`` moved to a thread whose slots do the work — PySide6 makes a fresh Python thread state
per slot call, which deadlocked TensorFlow's pybind11 layer when the engine still ran here.

The window's pictures: the engine sends each picture's key, thumbnail and source; this side keeps
the sources in its own byte-bounded ``PictureCache`` and decodes the pixels it shows itself (the
first picture of a batch here, before the window asks), so no pixels cross the pipe.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import wait as wait_for
from pathlib import Path
from typing import Any

from PySide6.QtCore import QThread, Signal

from gradcam_desktop.core.types import MapResult
from gradcam_desktop.session import transport
from gradcam_desktop.session.engine import CACHE_ENTRIES, EVENTS, CachedKeys, ForgetImages, Reset
from gradcam_desktop.session.engine_main import CancelDownload, StopEngine
from gradcam_desktop.session.map_cache import MapCache, result_key
from gradcam_desktop.session.host import (EngineHost, ProcessHost, ThreadHost, adopt, park, process_supported,
                                          reuse_enabled)
from gradcam_desktop.session.picture_cache import PictureCache
from gradcam_desktop.session.records import Picture
from gradcam_desktop.session.requests import (CancelJob, Explain, ExplainGrid, ExportAll, LoadImages, LoadModel,
                                              MapSpec, Precompute, Shutdown)
from gradcam_desktop.session.supervisor import Supervisor
from gradcam_desktop.session.trust_job import TrustRequest
from gradcam_desktop.ui.applog import log_path

__all__ = ["CancelJob", "Explain", "ExplainGrid", "ExportAll", "ForgetImages", "GradCamWorker", "LoadImages",
           "LoadModel", "MapSpec", "Precompute", "Shutdown"]

log = logging.getLogger(__name__)

#: How long the engine may stay silent while it owes an answer before it is taken for hung (a black-box
#: runtime, or a model's own code, that never returns) and replaced: every job reports each step
#: (~0.15 s), so only one call that never ends is this quiet. GRADCAM_DESKTOP_HANG_SECONDS overrides it.
HANG_SECONDS = 300.0
#: How long a stopping engine may take to finish its step before it is killed.
STOP_SECONDS = 20.0
#: The maps the window keeps a copy of, for a new engine if this one dies (the engine's own cache
#: is larger; these are the most recent ones, so what the user just saw comes back at once).
KEPT_MAPS = 48
KEPT_MAP_BYTES = 96 * 1024 * 1024


def engine_log_path() -> Path:
    """The engine process's log, beside the window's."""
    return log_path().with_name("gradcam-desktop-engine.log")


def _close_fds(*fds: int) -> None:
    for fd in fds:
        os.close(fd)


class GradCamWorker(QThread):
    """Starts and talks to the engine; public methods are thread-safe and return at once.

    ``modules`` (stand-ins for core modules, tests only) run the engine on a thread of this process,
    since such objects cannot cross to another one; ``in_process`` (or the environment variable
    ``GRADCAM_DESKTOP_ENGINE=thread``: benchmarks' before/after, a platform where the process fails)
    asks for that without stand-ins.
    """

    ready = Signal(dict)  # versions (and zoo names) once TensorFlow is imported
    modelLoaded = Signal(int, object)  # request id, session.records.ModelInfo
    modelRefused = Signal(int, str, bool)  # id, message, whether trusting the file would help
    imagesLoaded = Signal(int, list)
    imageFailed = Signal(str, str)
    mapReady = Signal(int, object)  # request id, core.types.MapResult (display, image_key, generation set)
    failed = Signal(int, str)
    progress = Signal(str, int, int)  # text, done, total (0 = unknown)
    busy = Signal(str)  # what is being computed; "" when idle
    jobProgress = Signal(int, int, int, str)  # job id, done, total, what is being worked on
    jobPartial = Signal(int, object)  # job id, (kind, *data): ("cell", index, MapResult | message), ("trust", outcome), …
    jobFinished = Signal(int, dict)  # job id, summary ({"written", "failures", "cancelled", …})
    engineLost = Signal(str)  # one line: what the engine was doing when it died, what happens now
    engineRestored = Signal(object)  # the ModelInfo the new engine opened (None: no model)

    def __init__(self, parent=None, *, cache_entries: int = CACHE_ENTRIES, precompute: bool = True,
                 modules: dict[str, Any] | None = None, in_process: bool = False) -> None:
        super().__init__(parent)
        self.setObjectName("GradCamWorker")
        self.pictures = PictureCache()  # the window's decoded pictures (sources kept while open)
        self._decoder = ThreadPoolExecutor(1, thread_name_prefix="picture-prefetch")
        self._options: dict[str, Any] = {"cache_entries": int(cache_entries), "precompute": bool(precompute)}
        self._modules = dict(modules or {})
        self._in_process = (bool(modules) or in_process or not process_supported()
                            or os.environ.get("GRADCAM_DESKTOP_ENGINE") == "thread")
        self._outbox: queue.Queue = queue.Queue()
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_write, False)
        # Closed with this object, never before: a request put after run() ended must not write
        # into whatever file would reuse the numbers.
        weakref.finalize(self, _close_fds, self._wake_read, self._wake_write)
        self._stopping = threading.Event()
        self._answers: dict[int, Any] = {}
        self._answered = threading.Condition()
        self.supervisor = Supervisor()
        self._kept = MapCache(KEPT_MAPS, KEPT_MAP_BYTES)  # maps received, for a new engine (worker thread only)
        self.host: EngineHost | None = None
        self.restarts = 0
        self._heard = 0.0  # time.monotonic() of the engine's last event (or of the first request it owes)
        self._hung = ""  # why the engine was ended by the watchdog, until _recover says it
        self._parking: int | None = None  # the Reset that readies the engine for the next window
        # If this worker adopts a parked engine: made now, so its id is below every request of ours
        # (the engine drops requests with smaller ids: the previous window's).
        self._adopting = Reset(dict(self._options))

    # -- thread-safe API (UI thread) ------------------------------------------------------
    def load_model(self, spec: str, trust: bool = False, output: str | None = None) -> int:
        """Queue loading a model (``output``: the one to explain of a model with several); returns the request id."""
        return self._put(LoadModel(str(spec), bool(trust), output))

    def load_images(self, sources: list) -> int:
        """Queue decoding images (paths, folders or encoded bytes); returns the request id."""
        return self._put(LoadImages(list(sources)))

    def forget_images(self, keys: list[str]) -> int:
        """Drop pictures the window closed (here and in the engine: pixels, source, cached maps); the id."""
        for key in keys:
            self.pictures.forget(str(key))
        return self._put(ForgetImages([str(k) for k in keys]))

    def prefetch(self, keys: list[str]) -> None:
        """Decode these pictures into the window's cache on a helper thread (the neighbours of the one shown):
        a step to them then reads pixels instead of decoding on the UI thread. Never delays an answer."""
        try:
            for key in keys:
                self._decoder.submit(self.pictures.get, str(key))
        except RuntimeError:  # the worker has stopped (the window is closing): nothing to prepare for
            pass

    def explain(self, image_key: str, layer: str | None, class_index: int | None, *, method: str = "gradcam",
                versus: int | None = None, counterfactual: bool = False, supersedable: bool = True) -> int:
        """Queue a map request; returns the request id. Newer requests supersede it.

        ``versus`` B explains y_c − y_B, ``counterfactual`` −y_c (see ``requests.MapSpec``).
        Score-CAM answers after a job (``jobProgress`` with this id while it runs).
        """
        return self._put(Explain(image_key, layer, class_index, supersedable, method, versus, counterfactual))

    def ask(self, spec: MapSpec, *, supersedable: bool = True) -> int:
        """Queue the map ``spec`` names (the window's one query type); returns the request id. The
        answer's ``query`` is that spec with its layer and class resolved."""
        return self._put(Explain.of(spec, supersedable))

    def explain_grid(self, cells: list[MapSpec], *, supersedable: bool = True) -> int:
        """Queue maps for several ``MapSpec``s (the compare grid); returns the id.

        Each map arrives as ``jobPartial(id, ("cell", index, result))``, in order, from the cache when it can;
        progress as ``jobProgress``, the end as ``jobFinished``. A newer grid cancels this one.
        """
        return self._put(ExplainGrid(list(cells), supersedable))

    def export_all(self, image_keys: list[str], folder: str | Path, *, layer: str | None, class_index: int | None,
                   style: Any, method: str = "gradcam", versus: int | None = None,
                   counterfactual: bool = False, region: tuple[float, float, float, float] | None = None) -> int:
        """Start the Export All job (``core.batch`` rows, then results.csv); returns its job id.

        ``style`` is a ``core.batch.OutputStyle``. Progress arrives as ``jobProgress``, the end as
        ``jobFinished`` (or ``failed`` with this id when the export cannot start, e.g. no model).
        """
        return self._put(ExportAll(list(image_keys), str(folder), layer, class_index, style, method, versus,
                                   counterfactual, region))

    def trust(self, result: Any) -> int:
        """Queue the trust report of ``result`` (a map sent here): a job whose ``jobPartial(id, ("trust", outcome))``
        is the report (or ``failed``)."""
        return self._put(TrustRequest(result))

    def start_job(self, request: Any) -> int:
        """Queue a request that makes its own job (``request.start_job(maker, partial)``: triage, custom layers)."""
        return self._put(request)

    def cancel_job(self, job_id: int) -> None:
        """Cancel a background job; it ends after the step running now (``jobFinished`` says so)."""
        self._put(CancelJob(int(job_id)))

    def cancel_download(self) -> None:
        """Ask a running zoo download to stop (it then fails with a 'cancelled' message)."""
        self._put(CancelDownload())

    def stop(self) -> None:
        """Ask the engine to stop and run() to return: a map in progress finishes, nothing new starts."""
        self._stopping.set()
        self._put(StopEngine())

    def stopping(self) -> bool:
        """True once stop() was called."""
        return self._stopping.is_set()

    def cached_keys(self, timeout: float = 30.0) -> list[tuple]:
        """Keys of the engine's cached maps, ``map_key`` layout (tests and diagnostics; waits for the answer)."""
        request = CachedKeys()
        self._put(request)
        with self._answered:
            self._answered.wait_for(lambda: request.id in self._answers, timeout)
            return list(self._answers.pop(request.id, []))

    def engine_pid(self) -> int | None:
        """The engine process's id (None while none runs, or when the engine runs on a thread)."""
        host = self.host
        return None if host is None else host.pid

    def _put(self, request: Any) -> int:
        self._outbox.put(request)
        try:
            os.write(self._wake_write, b"x")
        except BlockingIOError:
            pass  # the pipe is full of wake-ups already: the thread will look
        return getattr(request, "id", 0)

    # -- the thread ----------------------------------------------------------------------
    def run(self) -> None:
        """Start the engine, then pass requests to it and its events to the window until stopped."""
        self.busy.emit("Starting TensorFlow…")
        try:
            self.host = self._start_host()
        except OSError as exc:  # no process could be started (no memory, no file descriptors, …)
            log.exception("the engine could not be started")
            self.ready.emit({"error": f"The engine could not be started ({exc}); see the log at {log_path()}."})
            return
        deadline: float | None = None
        hang = _hang_seconds()
        self._heard = time.monotonic()
        try:
            while True:
                if self._stopping.is_set() and deadline is None:
                    deadline = time.monotonic() + STOP_SECONDS
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                if deadline is None and self.supervisor.waiting() and isinstance(self.host, ProcessHost):
                    timeout = max(0.0, self._heard + hang - time.monotonic())  # a thread cannot be ended
                ready = wait_for([self.host.connection, self._wake_read], timeout)
                if not ready and deadline is None:  # silent for `hang` seconds while it owes an answer
                    log.error("the engine did not answer for %.0f s; ending it", hang)
                    self._hung = f"stopped answering for {hang:.0f} s"
                    self.host.kill()
                    if not self._recover():
                        break
                    continue
                if not ready:  # stopping, and the engine did not finish in time
                    log.error("the engine did not stop within %.0f s; killing it", STOP_SECONDS)
                    self.host.kill()
                    break
                if self._wake_read in ready:
                    os.read(self._wake_read, 4096)
                    self._send_outbox()
                if self.host.connection in ready:
                    alive = self._receive()
                    if self.host is None:  # parked for the next window
                        break
                    if not alive and (self._stopping.is_set() or not self._recover()):
                        break
        finally:
            self._decoder.shutdown(wait=False, cancel_futures=True)
            self._close_host()
            log.debug("worker leaves run()")

    def _start_host(self) -> EngineHost:
        if self._in_process:
            return ThreadHost({**self._options, "modules": self._modules,
                               "log_hint": f"; see the log at {log_path()}"})
        host = adopt() if reuse_enabled() else None
        if host is not None:
            self._adopting.environment = dict(os.environ)  # what a new process would inherit now
            try:
                transport.send(host.connection, self._adopting)  # answered by ready
                return host
            except (OSError, EOFError):  # it died while parked: a new one
                host.kill()
                host.close()
        return ProcessHost({**self._options, "log_file": str(engine_log_path())})

    def _send_outbox(self) -> None:
        waiting = []
        while True:
            try:
                waiting.append(self._outbox.get_nowait())
            except queue.Empty:
                break
        # Of several map requests waiting here, only the newest would run (the engine's scheduler
        # drops the others): send that one only, so a running map is followed by the newest click.
        newest = max((i for i, r in enumerate(waiting) if isinstance(r, Explain) and r.supersedable), default=-1)
        for index, request in enumerate(waiting):
            if isinstance(request, Explain) and request.supersedable and index != newest:
                continue
            if isinstance(request, StopEngine) and reuse_enabled() and isinstance(self.host, ProcessHost):
                request = Reset()  # the engine is parked, not stopped, once this is answered
                self._parking = request.id
            try:
                transport.send(self._live().connection, request)
            except (OSError, EOFError):
                for unsent in waiting[index:]:  # the engine is gone: sent to the next one
                    self._outbox.put(unsent)
                return
            if not self.supervisor.waiting():
                self._heard = time.monotonic()  # the silence that counts starts with the first request owed
            self.supervisor.sent(request)

    def _live(self) -> EngineHost:
        """The engine being talked to (run() sets it before anything else and leaves once it is parked)."""
        if self.host is None:
            raise RuntimeError("no engine: the worker has not started or has handed its engine on")
        return self.host

    def _receive(self) -> bool:
        """Handle one event; False when the engine has gone."""
        try:
            name, args = transport.receive(self._live().connection)
        except (EOFError, OSError):
            return False
        self._heard = time.monotonic()
        self.supervisor.received(name, args)
        if name == "ready" and self._parking is not None and isinstance(self.host, ProcessHost):
            park(self.host)
            self.host = None
        elif name == "answer":
            with self._answered:
                self._answers[args[0]] = args[1]
                self._answered.notify_all()
        elif name == "imagesLoaded":
            self.imagesLoaded.emit(args[0], self._items(args[1]))
        elif name in ("mapReady", "jobPartial"):
            result = args[1] if name == "mapReady" else args[1][-1]
            if isinstance(result, MapResult) and result.image_key in self.pictures:
                self._kept.put(result_key(result), result.with_(cached=False))
            getattr(self, name).emit(*args)
        elif name == "restored":
            self.engineRestored.emit(args[0])
        elif name == "failed" and args[0] == self.supervisor.restore_id:
            # The new engine could not reopen the model (or rerun a custom-layer file): it runs without one.
            log.error("the new engine could not take over: %s", args[1])
            self.engineRestored.emit(None)
        elif name in EVENTS and name != "working":
            getattr(self, name).emit(*args)
        return True

    def _items(self, items: list[dict]) -> list[Picture]:
        """The engine's picture entries as the window's records: pixels from this side's cache, decoded from the source."""
        out = []
        for item in items:
            self.pictures.add_source(item["key"], item["source"], item["name"])
            out.append(Picture(item["key"], item["name"], item["path"], tuple(item["notices"]), item["thumb"], self.pictures))
        if out:
            self.pictures.get(out[0].key)  # the picture the window shows first: decoded here, not on the UI thread
        return out

    def _recover(self) -> bool:
        """The engine died: tell the window in one line, start a new one with what the old one had.

        False when engines keep dying before they answer anything (no new one is started)."""
        dead = self._live()
        how = dead.ended() or "stopped answering"
        if dead.ended() is None:
            dead.wait(5.0)
            how = dead.ended() or how
        if self._hung:  # ended here because it hung: say that, not how it was ended
            how, self._hung = self._hung, ""
        line, lost, reopen = self.supervisor.lost(how)
        log.error("%s", line)
        self._close_host()
        for request_id in lost:
            self.failed.emit(request_id, line)
        if self.supervisor.give_up():
            line = f"The engine could not be started ({how}); see the log at {engine_log_path()}."
            self.engineLost.emit(line)
            self.ready.emit({"error": line})
            return False
        self.engineLost.emit(line)
        self.restarts += 1
        pictures = [(key, *source) for key in self.pictures.keys()
                    if (source := self.pictures.source_of(key)) is not None]
        try:
            self.host = self._start_host()
        except OSError as exc:
            log.exception("no new engine could be started")
            self.engineLost.emit(f"The engine could not be started again ({exc}); see the log at {log_path()}.")
            return False
        self._heard = time.monotonic()
        request = self.supervisor.restore(pictures, reopen)
        request.maps = [result for key in self._kept.keys() if key[0] in self.pictures
                        and (result := self._kept.get(key)) is not None]
        try:
            transport.send(self.host.connection, request)
        except (OSError, EOFError):
            return True  # it died at once: the loop sees its end and counts another death
        self._send_outbox()
        return True

    def _close_host(self) -> None:
        host = self.host
        if host is None:
            return
        if host.ended() is None and not host.wait(STOP_SECONDS if self._stopping.is_set() else 0.5):
            host.kill()
        host.close()


def _hang_seconds() -> float:
    """HANG_SECONDS, or GRADCAM_DESKTOP_HANG_SECONDS (tests use a few seconds)."""
    try:
        return max(1.0, float(os.environ.get("GRADCAM_DESKTOP_HANG_SECONDS", HANG_SECONDS)))
    except ValueError:
        return HANG_SECONDS

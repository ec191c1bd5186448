"""The worker's background jobs: each a ``scheduler.Job`` that does one small piece per step.

A new background task (Score-CAM, trust metrics, folder triage) is one more class here. Jobs are
Qt-free and get the engine and the worker's helpers as arguments, so a test can step them by
hand with a stand-in engine; the worker runs their steps on its thread when no user request
waits, and turns ``progress()`` and ``summary()`` into its ``jobProgress``/``jobFinished`` signals.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Container, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from gradcam_desktop.core import cams
from gradcam_desktop.core.batch import BatchRow, OutputStyle, explain_batch, make_out_dir, write_csv
from gradcam_desktop.core.errors import GradCamError, ImageLoadError, unexpected_message
from gradcam_desktop.session import gc_policy
from gradcam_desktop.session.maps import STEP_SECONDS
from gradcam_desktop.session.requests import ExportAll, MapSpec, Precompute
from gradcam_desktop.session.scheduler import Job

__all__ = ["CSV_NAME", "ExportJob", "MapJob", "PrecomputeJob", "PrepareLayersJob", "export_job", "supersede_view"]

log = logging.getLogger(__name__)

#: The table Export All writes beside the pictures (the name ``gradcam batch`` uses).
CSV_NAME = "results.csv"


class PrecomputeJob(Job):
    """The maps of the shown picture's other top classes, one per step, once the user pauses.

    ``compute(plan, class_index)`` computes and caches one map; ``cached`` is the cache (only
    asked whether a key is in it). A newer picture's precompute cancels this one (same group).
    """

    group = "precompute"

    def __init__(self, plan: Precompute, cached: Container[tuple], compute: Callable[[Precompute, int], Any],
                 *, delay: float) -> None:
        super().__init__()
        self.plan = plan
        self.delay = delay
        self._cached = cached
        self._compute = compute
        self._done = 0

    def step(self) -> bool:
        if self.cancelled:
            return False
        class_index = self.plan.next_class(self._cached)
        if class_index is None:
            return False
        self._compute(self.plan, class_index)
        self._done += 1
        return bool(self.plan.class_indices)

    def progress(self) -> tuple[int, int, str]:
        return self._done, self._done + len(self.plan.class_indices), self.plan.image_key


class MapJob(Job):
    """Maps made in steps: Score-CAM one batch of masks per step, any other map in one step.

    ``cells`` are the ``MapSpec``s to make, in order (one for the main view, several for the
    compare grid); ``maker`` is the worker's ``maps.MapMaker``; ``deliver(job id, index, result)``
    gets each map and ``fail(job id, index, message)`` each error (one plain line), both on the
    worker thread.
    ``group`` "view": a newer click cancels it (the scheduler steps a cancelled job at once, so a
    click waits for at most the one batch running). ``answer(request_id)`` hands the job to a
    newer request for the same map instead of starting it again.
    """

    visible = True

    def __init__(self, job_id: int, cells: Sequence[MapSpec], maker: Any,
                 deliver: Callable[[int, int, Any], None], fail: Callable[[int, int, str], None], *,
                 group: str | None = "view", log_hint: str = "") -> None:
        super().__init__(job_id)
        self.group = group
        self.cells = list(cells)
        self._maker = maker
        self._deliver = deliver
        self._fail = fail
        self._log_hint = log_hint
        self._generation = maker.generation
        self._next = 0
        self._task: Any = None
        self._spec: MapSpec | None = None
        self._seconds = 0.0

    def answer(self, request_id: int) -> None:
        """From now on the job reports (progress, map, end) under ``request_id``."""
        self.id = request_id

    def current(self) -> MapSpec | None:
        """The map being made now (resolved), or None between maps."""
        return self._spec

    def step(self) -> bool:
        if self._generation != self._maker.generation:
            self.cancel()  # another model opened: these maps would explain the old one
        if self.cancelled or self._next >= len(self.cells):
            self._close_task()
            return False
        index = self._next
        start = time.perf_counter()
        try:
            result = self._advance(index)
        except GradCamError as exc:
            self._end_cell()
            self._fail(self.id, index, str(exc))
            return self._next < len(self.cells)
        except Exception as exc:  # noqa: BLE001 - a bug ends this map with a message, not the thread
            log.error("map %s failed unexpectedly", self.cells[index], exc_info=exc)
            self._end_cell()
            text = unexpected_message(exc)
            self._fail(self.id, index, f"{text[0].upper()}{text[1:]}{self._log_hint}")
            return self._next < len(self.cells)
        self._seconds += time.perf_counter() - start
        if result is not None:
            seconds, query = self._seconds, self._spec or self.cells[index]  # the query resolved (layer, class)
            self._end_cell()
            self._deliver(self.id, index, result.with_(request_id=self.id, seconds=0.0 if result.cached else seconds,
                                                       query=query))
        return self._next < len(self.cells)

    def _advance(self, index: int) -> Any:
        """One piece of cell ``index``: its map when it is done, else None."""
        if self._task is None:
            self._spec = spec = self._maker.resolve(self.cells[index])
            hit = self._maker.cached(spec)
            if hit is not None:
                return hit
            if not self._maker.stepwise(spec):
                return self._maker.compute(spec)
            self._task = self._maker.task(spec)
        if not self._task.step():
            return None
        assert self._spec is not None
        return self._maker.finish(self._spec.image_key, self._task.result, self._seconds, self._generation)

    def _end_cell(self) -> None:
        self._next += 1
        self._task, self._spec, self._seconds = None, None, 0.0

    def _close_task(self) -> None:
        if self._task is not None:
            self._task.close()
            self._task = None

    def progress(self) -> tuple[int, int, str]:
        """One map: its mask batches (done, total); several: maps done of all."""
        if len(self.cells) == 1:
            done, total = self._task.progress if self._task is not None else (int(self._next > 0), 1)
            return int(done), int(total), self.cells[0].method
        return self._next, len(self.cells), self.cells[min(self._next, len(self.cells) - 1)].method

    def summary(self) -> dict:
        return {"cancelled": self.cancelled, "maps": self._next}


def supersede_view(jobs: Sequence[Job], spec: MapSpec, request_id: int) -> bool:
    """A newer click: cancel the main view's running ``MapJob``s, except one already making ``spec``,
    which then answers ``request_id`` (True: nothing else to do for that click)."""
    answered = False
    for job in jobs:
        if isinstance(job, MapJob) and job.group == "view" and not job.cancelled:
            if not answered and job.current() == spec:
                job.answer(request_id)
                answered = True
            else:
                job.cancel()
    return answered


class PrepareLayersJob(Job):
    """Trace the compiled captures of the layers next to the one shown, one layer per step.

    Tracing a layer's first map is 0.2–0.3 s of pure Python that holds the interpreter lock in
    5 ms slices, and the UI thread needs the lock for every callback of a repaint: a click on a
    never-used layer stalled the window 50–150 ms (benchmarks/bench_session.py). Done here, while
    the user looks at a map, the next layer they step to is ready. ``prepare(layer)`` is
    ``GradCam.prepare`` (False when the layer was ready already: no time spent on it).
    """

    group = "prepare"
    priority = 2  # after precompute and exports: this only saves future waiting
    delay = 0.3  # the user has stopped scrubbing: no trace between quick clicks

    def __init__(self, prepare: Callable[[str], bool], layers: Sequence[str], current: str, nearest: int) -> None:
        super().__init__()
        here = layers.index(current) if current in layers else len(layers) - 1
        order = sorted(range(len(layers)), key=lambda j: (abs(j - here), j))
        self.todo = [layers[j] for j in order if j != here][:nearest]
        self._prepare = prepare

    def step(self) -> bool:
        while self.todo and not self.cancelled:
            if self._prepare(self.todo.pop(0)):
                gc_policy.keep_long_lived()  # the trace's graph: never walked by a full collection
                break  # at most one trace per step, so a click waits for at most one
        return bool(self.todo) and not self.cancelled

    def progress(self) -> tuple[int, int, str]:
        return 0, len(self.todo), ""


class _Prepared:
    """An engine for ``explain_batch`` that hands out maps made beforehand, in order, or raises the
    error met making one: ExportJob makes Score-CAM maps one batch of masks per step itself."""

    def __init__(self, engine: Any) -> None:
        self.loaded = engine.loaded
        self.ready: deque[Any] = deque()

    def explain(self, _image: Any, *_args: Any, **_options: Any) -> Any:
        answer = self.ready.popleft()
        if isinstance(answer, Exception):
            raise answer
        return answer


class ExportJob(Job):
    """Export All: ``core.batch.explain_batch`` over decoded pictures, one row per step, then results.csv.

    Writes ``<stem>.png`` + ``<stem>.json`` per picture and ``results.csv`` at the end — also when
    cancelled or stopped early (then with the rows done so far). A picture that fails is a row
    with its error, never a stop; only a folder that cannot be written stops the job at once.
    ``missing`` lists (name, message) of pictures that could not even be handed to the batch.
    A Score-CAM map takes many steps (``engine.task``, one batch of masks each, about
    ``step_seconds``), so a click or Cancel never waits for a whole picture's forward passes.
    """

    priority = 1  # after precompute: those maps are for what the user looks at right now
    visible = True

    def __init__(self, job_id: int, engine: Any, images: Sequence[Any], folder: str | Path, *,
                 layer: str | None, class_index: int | None, method: str = "gradcam",
                 versus: int | None = None, counterfactual: bool = False, region: Any = None,
                 style: OutputStyle | None = None, missing: Sequence[tuple[str, str]] = (),
                 log_hint: str = "", step_seconds: float | None = None) -> None:
        super().__init__(job_id)
        self._engine = engine
        self._images = list(images)
        self._folder = Path(folder)
        score = MapSpec("", layer, class_index, method, versus, counterfactual, region).score_options()
        # Groups of one and write_ahead=0: a step is one map and its files, so a click waits at
        # most one map and a cancel leaves no picture without its row in results.csv.
        self._options = {"layer": layer, "class_index": class_index, "method": method,
                         "style": style or OutputStyle(), "write_ahead": 0, "group_size": 1, **score}
        self._prepared = _Prepared(engine) if cams.method(method).forward_passes else None
        self._task_options = {"layer": layer, "class_index": class_index, "method": method,
                              "step_seconds": step_seconds, **score}
        self._task: Any = None
        self._log_hint = log_hint
        self._rows: list[BatchRow] = []
        self._failures: list[tuple[str, str]] = list(missing)
        self._batch: Iterator[BatchRow] | None = None
        self._finished = False
        self._cut_short = False
        self._csv: Path | None = None

    def step(self) -> bool:
        if self._finished:
            return False
        if self.cancelled:
            self._cut_short = True
            return self._finish()
        try:
            if self._batch is None:
                make_out_dir(self._folder)
                self._batch = explain_batch(self._prepared or self._engine, self._images, self._folder,
                                            **self._options)
            if not self._map_made():
                return True
            row = next(self._batch, None)
        except GradCamError as exc:  # the folder cannot be created
            self._failures.append(("", str(exc)))
            return self._finish(table=False)
        except Exception as exc:  # noqa: BLE001 - a bug must end the job with a report, not kill the thread
            log.error("Export All failed unexpectedly", exc_info=exc)
            text = unexpected_message(exc)
            self._failures.append(("", f"{text[0].upper()}{text[1:]}{self._log_hint}"))
            self._cut_short = True
            return self._finish()
        if row is None:
            return self._finish()
        self._rows.append(row)
        if row.error:
            self._failures.append((_name(row.source), row.error))
            if row.result is not None and self.written() == 0:
                # Explained but not written, and nothing was: the folder is not writable, and
                # every other picture (and the table) would fail the same way.
                self._cut_short = True
                return self._finish(table=False)
        return True

    def _map_made(self) -> bool:
        """Score-CAM: one batch of masks of the next picture; True once its map (or error) is ready."""
        if self._prepared is None or self._prepared.ready or len(self._rows) >= len(self._images):
            return True
        try:
            if self._task is None:
                self._task = self._engine.task(self._images[len(self._rows)], **self._task_options)
            if not self._task.step():
                return False
            self._prepared.ready.append(self._task.result)
        except GradCamError as exc:
            self._prepared.ready.append(exc)
        self._task = None
        return True

    def progress(self) -> tuple[int, int, str]:
        done = len(self._rows)
        upcoming = self._images[done].name if done < len(self._images) and not self._finished else ""
        return done, len(self._images), upcoming

    def written(self) -> int:
        """Pictures written so far (overlay and sidecar)."""
        return sum(1 for row in self._rows if row.result is not None and not row.error)

    def rows(self) -> list[BatchRow]:
        """The rows done so far (a snapshot)."""
        return list(self._rows)

    def summary(self) -> dict:
        return {"written": self.written(), "failures": list(self._failures), "cancelled": self._cut_short,
                "folder": str(self._folder), "csv": str(self._csv) if self._csv else ""}

    def _finish(self, *, table: bool = True) -> bool:
        self._finished = True
        if self._task is not None:
            self._task.close()
            self._task = None
        if self._batch is not None:
            # Stops the batch's decode/write threads (a write already started completes).
            self._batch.close()  # type: ignore[attr-defined]
            self._batch = None
        if table and self._rows:
            path = self._folder / CSV_NAME
            try:
                write_csv(path, self._rows)
                self._csv = path
            except GradCamError as exc:
                self._failures.append((CSV_NAME, str(exc)))
        return False


def export_job(request: ExportAll, engine: Any, images: Any, *, log_hint: str = "") -> ExportJob:
    """The ExportJob for ``request`` over the worker's decoded ``images`` (by key) with ``engine``.

    The sidecars name the engine's model unless the request's style already does.
    """
    # Pictures opened from files go to the batch as paths: it decodes them a few at a time, so
    # exporting a large folder never holds every picture decoded (the cache is bounded by bytes).
    path_of = getattr(images, "path_of", lambda _key: None)
    pictures = [path_of(key) or images[key] for key in request.image_keys if key in images]
    missing = [(key, "That image is no longer loaded; open it again.")
               for key in request.image_keys if key not in images]
    if not pictures:
        raise ImageLoadError("There are no pictures to export: open some first.")
    style = request.style or OutputStyle()
    extra = {"model_name": engine.loaded.display_name, "model_sha256": engine.loaded.sha256,
             **(style.sidecar_extra or {})}
    return ExportJob(request.id, engine, pictures, request.folder, layer=request.layer,
                     class_index=request.class_index, method=request.method, versus=request.versus,
                     counterfactual=request.counterfactual, region=getattr(request, "region", None),
                     style=replace(style, sidecar_extra=extra),
                     missing=missing, log_hint=log_hint, step_seconds=STEP_SECONDS)


def _name(source: str) -> str:
    return Path(source).name or source

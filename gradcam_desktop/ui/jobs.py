"""The worker's background jobs: each a ``scheduler.Job`` that does one small piece per step.

A new background task (Score-CAM, trust metrics, folder triage) is one more class here. Jobs are
Qt-free and get the engine and the worker's helpers as arguments, so a test can step them by
hand with a stand-in engine; the worker runs their steps on its thread when no user request
waits, and turns ``progress()`` and ``summary()`` into its ``jobProgress``/``jobFinished`` signals.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Container, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from gradcam_desktop.core.batch import BatchRow, OutputStyle, explain_batch, make_out_dir, write_csv
from gradcam_desktop.core.errors import GradCamError, ImageLoadError, unexpected_message
from gradcam_desktop.ui.requests import ExportAll, Precompute
from gradcam_desktop.ui.scheduler import Job

__all__ = ["CSV_NAME", "ExportJob", "PrecomputeJob", "PrepareLayersJob", "export_job"]

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
                break  # at most one trace per step, so a click waits for at most one
        return bool(self.todo) and not self.cancelled

    def progress(self) -> tuple[int, int, str]:
        return 0, len(self.todo), ""


class ExportJob(Job):
    """Export All: ``core.batch.explain_batch`` over decoded pictures, one row per step, then results.csv.

    Writes ``<stem>.png`` + ``<stem>.json`` per picture and ``results.csv`` at the end — also when
    cancelled or stopped early (then with the rows done so far). A picture that fails is a row
    with its error, never a stop; only a folder that cannot be written stops the job at once.
    ``missing`` lists (name, message) of pictures that could not even be handed to the batch.
    """

    priority = 1  # after precompute: those maps are for what the user looks at right now
    visible = True

    def __init__(self, job_id: int, engine: Any, images: Sequence[Any], folder: str | Path, *,
                 layer: str | None, class_index: int | None, method: str = "gradcam",
                 style: OutputStyle | None = None, missing: Sequence[tuple[str, str]] = (),
                 log_hint: str = "") -> None:
        super().__init__(job_id)
        self._engine = engine
        self._images = list(images)
        self._folder = Path(folder)
        # write_ahead=0: a step is one map and its files, so a click waits at most one map and a
        # cancel leaves no picture without its row in results.csv.
        self._options = {"layer": layer, "class_index": class_index, "method": method,
                         "style": style or OutputStyle(), "write_ahead": 0}
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
                self._batch = explain_batch(self._engine, self._images, self._folder, **self._options)
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


def export_job(request: ExportAll, engine: Any, images: Mapping[str, Any], *, log_hint: str = "") -> ExportJob:
    """The ExportJob for ``request`` over the worker's decoded ``images`` (by key) with ``engine``.

    The sidecars name the engine's model unless the request's style already does.
    """
    pictures = [images[key] for key in request.image_keys if key in images]
    missing = [(key, "That image is no longer loaded; open it again.")
               for key in request.image_keys if key not in images]
    if not pictures:
        raise ImageLoadError("There are no pictures to export: open some first.")
    style = request.style or OutputStyle()
    extra = {"model_name": engine.loaded.display_name, "model_sha256": engine.loaded.sha256,
             **(style.sidecar_extra or {})}
    return ExportJob(request.id, engine, pictures, request.folder, layer=request.layer,
                     class_index=request.class_index, method=request.method,
                     style=replace(style, sidecar_extra=extra), missing=missing, log_hint=log_hint)


def _name(source: str) -> str:
    return Path(source).name or source

"""The batch loop: many pictures in, one overlay + sidecar (+ raw map) each and a results table out.

``explain_batch`` is a generator of ``BatchRow``s that prints nothing: ``gradcam batch`` draws a
progress bar from it, the window's Export All job advances it one row per idle step and stops
it on Cancel (``close()``). A picture that fails is a row with ``error`` set, never a stop.

Decoding the next pictures and writing the previous results (Pillow and OpenCV release the
GIL) run in two threads beside TensorFlow; at most ``PREFETCH`` pictures wait on either side,
so memory stays flat however many pictures there are. ``write_ahead=0`` yields each row as soon
as its own files are written: one map per step, and a stop never leaves files without a row
(the window's Export All); the CLI keeps the overlap.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import files, overlay
from .errors import GradCamError, OutputError
from .images import LoadedImage, load_image
from .types import CSV_FIELDS, MapResult

__all__ = ["PREFETCH", "BatchRow", "OutputStyle", "explain_batch", "make_out_dir", "write_csv", "write_result"]

#: Pictures decoded ahead of the model, and results waiting to be written.
PREFETCH = 2


@dataclass
class OutputStyle:
    """How the written pictures look, and what else is written beside them."""

    alpha: float = 0.5
    colormap: str = "jet"
    heatmaps: bool = False  # <stem>.npy: the raw map
    sidecars: bool = True  # <stem>.json: what the map shows and how it was drawn
    decorate: Callable[[np.ndarray, MapResult], np.ndarray] | None = None  # e.g. burn in a caption
    sidecar_extra: dict = field(default_factory=dict)  # model_name, model_sha256, versions


@dataclass
class BatchRow:
    """One picture of a batch: its result or its error, and the files written for it."""

    source: str
    result: MapResult | None = None
    error: str | None = None
    written: dict[str, Path] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)

    def csv_row(self) -> dict:
        if self.result is None:
            return {**dict.fromkeys(CSV_FIELDS, ""), "image": self.source, "error": self.error or ""}
        return {**self.result.csv_row(), "image": self.source, "error": self.error or ""}


def make_out_dir(folder: str | os.PathLike[str]) -> Path:
    """Create ``folder`` (and parents); OutputError with a plain reason when it cannot be."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"Cannot create the output folder {folder}: {error.strerror or error}.") from error
    return folder


def write_result(image: LoadedImage, result: MapResult, overlay_path: Path, style: OutputStyle) -> dict[str, Path]:
    """Write the overlay (the picture's own size), then the raw map and the sidecar; returns the paths.

    The overlay goes first: when the folder is not writable nothing else is attempted.
    """
    display, flat = overlay.display_map(result.raw, image.rgb.shape[:2])
    result.flat = flat
    picture = overlay.blend(image.rgb, display, style.alpha, style.colormap)
    if style.decorate is not None:
        picture = style.decorate(picture, result)
    written = {"overlay": overlay_path}
    files.atomic_write_png(overlay_path, picture)
    if style.heatmaps:
        written["raw"] = overlay_path.with_suffix(".npy")
        files.atomic_write_npy(written["raw"], result.raw)
    if style.sidecars:
        written["sidecar"] = overlay_path.with_suffix(".json")
        sidecar = result.sidecar(image_size=image.rgb.shape[:2], alpha=style.alpha, colormap=style.colormap,
                                 files={k: p.name for k, p in written.items() if k != "sidecar"},
                                 **style.sidecar_extra)
        files.atomic_write_bytes(written["sidecar"], json.dumps(sidecar, indent=2).encode("utf-8"))
    return written


def _decode(source: str | os.PathLike[str] | LoadedImage) -> LoadedImage:
    return source if isinstance(source, LoadedImage) else load_image(source)


def _name(source: str | os.PathLike[str] | LoadedImage) -> str:
    if isinstance(source, LoadedImage):
        return source.path or source.name
    return str(source)


def explain_batch(engine, sources: Sequence[str | os.PathLike[str] | LoadedImage], out_dir: str | os.PathLike[str], *,
                  layer: str | None = None, class_index: int | None = None, method: str = "gradcam",
                  style: OutputStyle | None = None, write_ahead: int = PREFETCH) -> Iterator[BatchRow]:
    """Explain and write every picture, yielding one ``BatchRow`` per picture in order.

    ``sources`` are paths (decoded here, ahead of the model) or already decoded pictures.
    ``engine`` is a ``GradCam``. Stop early with the generator's ``close()``.
    """
    style = style or OutputStyle()
    out_dir = Path(out_dir)
    stems = files.unique_stems([s.name if isinstance(s, LoadedImage) else s for s in sources])
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="gradcam-batch")
    decoded: deque[Future] = deque(pool.submit(_decode, s) for s in sources[:PREFETCH])
    writes: deque[tuple[BatchRow, Future]] = deque()
    try:
        for i, stem in enumerate(stems):
            if i + PREFETCH < len(sources):
                decoded.append(pool.submit(_decode, sources[i + PREFETCH]))
            row = BatchRow(source=_name(sources[i]))
            try:
                image = decoded.popleft().result()
                row.source = image.path or row.source
                row.notices = list(image.notices)
                row.result = engine.explain(image, layer, class_index, method)
                writes.append((row, pool.submit(write_result, image, row.result, out_dir / f"{stem}.png", style)))
            except GradCamError as error:
                row.error = str(error)
                writes.append((row, _done(None)))
            while len(writes) > write_ahead or (writes and i == len(sources) - 1):
                done, future = writes.popleft()
                try:
                    done.written = future.result() or {}
                except GradCamError as error:
                    done.error = str(error)
                yield done
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _done(value) -> Future:
    future: Future = Future()
    future.set_result(value)
    return future


def write_csv(path: str | os.PathLike[str], rows: Sequence[BatchRow | dict]) -> None:
    """results.csv (``CSV_FIELDS``), written atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow(row.csv_row() if isinstance(row, BatchRow) else {**dict.fromkeys(CSV_FIELDS, ""), **row})
    files.atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))

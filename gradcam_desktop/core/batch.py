"""The batch loop: many pictures in, one overlay + sidecar (+ raw map) each and a results table out.

``explain_batch`` is a generator of ``BatchRow``s that prints nothing: ``gradcam batch`` draws a
progress bar from it, the window's Export All job advances it and stops it on Cancel
(``close()``). A picture that fails is a row with ``error`` set, never a stop; its files are
written as a unit (overlay, raw map, sidecar: all or none), so an error row has no files and, in
results.csv, no numbers.

Maps are computed for GROUPS of up to ``GROUP`` pictures in one compiled call
(``GradCam.explain_many``): on a CPU the per-picture cost of a forward + backward pass falls by
~1.5× from batch 1 to batch 16. Groups are as equal as they come (81 pictures: 14, 14, 14, 13, 13,
13, see ``balanced_size``) and a short one runs padded to the size traced first: a fixed-size
model's capture traces once per batch size, and a trace costs seconds where a padded row costs a
picture's capture. If a group's call fails, its pictures are explained one by one,
so the one bad picture gets the error row. Score-CAM (its own batches of masked inputs) runs one
picture at a time.

Decoding the next group and writing the previous results (Pillow and OpenCV release the GIL)
run in two threads beside TensorFlow. Memory stays flat however many pictures there are: one
group is decoded ahead, one is computed, at most ``write_ahead`` results wait to be written, and
each of those stages also stops at ``STAGE_BYTES`` of decoded pixels (large photos make smaller
groups). ``write_ahead=0`` writes each row's files just before yielding it: a step is one group,
and a stop never leaves files without a row (the window's Export All). The CLI overlaps writing
a group with computing the next.
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import cams, files, overlay
from .errors import GradCamError, OutputError
from .images import LoadedImage, load_image
from .types import CSV_FIELDS, MapResult

__all__ = ["GROUP", "PREFETCH", "STAGE_BYTES", "BatchRow", "OutputStyle", "balanced_size", "explain_batch", "make_out_dir",
           "shown_path", "write_csv", "write_result"]

#: Pictures per compiled call: the CPU's per-picture floor has flattened out by 16 (benchmarks/bench_methods.py).
GROUP = 16
#: Decoded pixels (RGB bytes) a stage may hold: 16 pictures of 2.8 megapixels, 3 of 12.
STAGE_BYTES = 128 * 2**20
#: Results that wait to be written by default (one group: a group is written while the next is computed).
PREFETCH = GROUP

ProgressCallback = Callable[[int, int], None]


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
    """One picture of a batch: its result or its error, and the files written for it.

    A row with an ``error`` has no files (``written`` is empty) and its ``csv_row`` carries no
    numbers, only the picture and the error. ``result`` may still be set on it: the map was made,
    then could not be measured (``extra``) or written — the window's Export All tells an
    unwritable folder by that.
    """

    source: str
    result: MapResult | None = None
    error: str | None = None
    written: dict[str, Path] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)  # more columns (e.g. ``gradcam batch --trust``'s figures)

    def csv_row(self) -> dict:
        if self.result is None or self.error:  # numbers beside an error would read as a result
            return {**dict.fromkeys(CSV_FIELDS, ""), "image": self.source, "error": self.error or ""}
        return {**self.result.csv_row(), **self.extra, "image": self.source, "error": ""}


def shown_path(path: str | os.PathLike[str]) -> str:
    """A path as a message shows it: as it is, or quoted with escapes (``'a\\nb'``) if it holds a line
    break, a control character or another character a terminal would not print as itself."""
    text = os.fspath(path)
    text = text if isinstance(text, str) else os.fsdecode(text)
    return text if text.isprintable() else repr(text)


def make_out_dir(folder: str | os.PathLike[str]) -> Path:
    """Create ``folder`` (and parents); OutputError with a plain reason when it cannot be.

    Create it only once there is something to write into it (the model has opened): a refused
    model must not leave an empty folder behind.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError as error:
        raise OutputError(f"Cannot create the output folder {shown_path(folder)}: a file with that name exists. "
                          "Choose another folder.") from error
    except OSError as error:
        raise OutputError(f"Cannot create the output folder {shown_path(folder)}: {error.strerror or error}. "
                          "Choose another folder.") from error
    return folder


def write_result(image: LoadedImage, result: MapResult, overlay_path: Path, style: OutputStyle) -> dict[str, Path]:
    """Write the overlay (the picture's own size), the raw map and the sidecar as one unit; returns the paths.

    All of them or none (``files.atomic_write_all``): a full disk at the sidecar leaves no overlay
    behind that a sidecar, a table or a script would take for a result, and files of an earlier
    run stay as they were. OutputError (one line) when they cannot be written.
    """
    display, flat = overlay.display_map(result.raw, image.rgb.shape[:2])
    result.flat = flat
    picture = overlay.blend(image.rgb, display, style.alpha, style.colormap)
    if style.decorate is not None:
        picture = style.decorate(picture, result)
    written = {"overlay": overlay_path}
    contents = [(overlay_path, files.png_bytes(overlay_path, picture))]
    if style.heatmaps:
        written["raw"] = overlay_path.with_suffix(".npy")
        contents.append((written["raw"], files.npy_bytes(result.raw if result.attribution is None else result.attribution)))
    if style.sidecars:
        written["sidecar"] = overlay_path.with_suffix(".json")
        sidecar = result.sidecar(image_size=image.rgb.shape[:2], alpha=style.alpha, colormap=style.colormap,
                                 files={k: p.name for k, p in written.items() if k != "sidecar"},
                                 **style.sidecar_extra)
        contents.append((written["sidecar"], json.dumps(sidecar, indent=2).encode("utf-8")))
    files.atomic_write_all(contents)
    return written


def _decode(source: str | os.PathLike[str] | LoadedImage) -> LoadedImage:
    return source if isinstance(source, LoadedImage) else load_image(source)


def _name(source: str | os.PathLike[str] | LoadedImage) -> str:
    if isinstance(source, LoadedImage):
        return source.path or source.name
    return str(source)


@dataclass
class _Item:
    """A picture on its way through the loop."""

    index: int
    row: BatchRow
    image: LoadedImage | None = None
    write: Future | Callable[[], dict] | None = None  # a write in flight, or one deferred to the yield
    held: int = 0  # bytes of the picture a write in flight holds


class _Groups:
    """Decodes ahead in ``pool`` and hands out groups of decoded pictures in order."""

    def __init__(self, pool: ThreadPoolExecutor, sources: Sequence, size: int):
        self._pool, self._sources, self._size = pool, sources, max(1, size)
        self._ahead: deque[tuple[int, Future]] = deque()
        self._next = 0
        self._seen_bytes, self._seen = 0, 0

    def _top_up(self) -> None:
        # As many pictures ahead as one group holds: the group size, fewer for large pictures.
        average = self._seen_bytes / self._seen if self._seen else 0
        wanted = self._size if not average else int(min(self._size, max(1, STAGE_BYTES // average)))
        while len(self._ahead) < wanted and self._next < len(self._sources):
            self._ahead.append((self._next, self._pool.submit(_decode, self._sources[self._next])))
            self._next += 1

    def __iter__(self) -> Iterator[list[_Item]]:
        self._top_up()
        while self._ahead:
            group: list[_Item] = []
            held = 0
            size = balanced_size(len(self._sources) - self._ahead[0][0], self._size)
            while self._ahead and len(group) < size and held < STAGE_BYTES:
                index, future = self._ahead.popleft()
                item = _Item(index, BatchRow(source=_name(self._sources[index])))
                try:
                    item.image = future.result()
                    item.row.source = item.image.path or item.row.source
                    item.row.notices = list(item.image.notices)
                    held += item.image.rgb.nbytes
                    self._seen_bytes += item.image.rgb.nbytes
                    self._seen += 1
                except GradCamError as error:
                    item.row.error = str(error)
                group.append(item)
                self._top_up()  # the next group decodes while this one is computed
            yield group


def balanced_size(count: int, most: int) -> int:
    """Pictures per group for ``count`` pictures in groups of at most ``most``, as equal as they come.

    81 pictures in groups of up to 16 are 6 groups of 14 or 13 (run at 14: 3 padded rows), not
    five of 16 and one of 1 — which would trace the capture again (seconds) or run 15 padded rows.
    On a CPU the per-picture cost is flat from about 8 to 16 (benchmarks/bench_batch.py).
    """
    if count <= 0:
        return max(1, most)
    groups = -(-count // max(1, most))
    return -(-count // groups)


def _explain_group(engine, images: list[LoadedImage], class_index: int | str | None, options: dict,
                   one_by_one: bool, progress: ProgressCallback | None,
                   batch_size: int = 0) -> list[tuple[MapResult | None, str | None]]:
    """(result, error) per picture: one compiled call for the group, or one call per picture.

    A group short of ``batch_size`` by less than half (the last one, or one with a picture that
    did not decode) runs padded to it; a much shorter one (large photos fill the byte budget
    first) runs at its own size.
    """
    padded = batch_size > len(images) and 2 * len(images) >= batch_size
    if (len(images) > 1 or padded) and not one_by_one:
        try:
            more = {"batch_size": batch_size} if padded else {}
            results = engine.explain_many(images, class_indices=[class_index] * len(images), **options, **more)
            return [(result, None) for result in results]
        except Exception:  # noqa: BLE001 - one bad picture fails the whole call; one by one finds it (and re-raises a bug)
            pass
    answers: list[tuple[MapResult | None, str | None]] = []
    for image in images:
        try:
            answers.append((engine.explain(image, class_index=class_index, progress=progress, **options), None))
        except GradCamError as error:
            answers.append((None, str(error)))
    return answers


def explain_batch(engine, sources: Sequence[str | os.PathLike[str] | LoadedImage], out_dir: str | os.PathLike[str], *,
                  layer: str | Sequence[str] | None = None, class_index: int | str | None = None,
                  method: str | cams.Method = "gradcam", versus: int | str | None = None, counterfactual: bool = False,
                  max_channels: int | None = None, method_options: dict | None = None,
                  region: Sequence[float] | None = None, style: OutputStyle | None = None, write_ahead: int | None = None,
                  group_size: int = GROUP, progress: ProgressCallback | None = None,
                  measure: Callable[[LoadedImage, MapResult], dict] | None = None) -> Iterator[BatchRow]:
    """Explain and write every picture, yielding one ``BatchRow`` per picture in order.

    ``sources`` are paths (decoded here, ahead of the model) or already decoded pictures.
    ``engine`` is a ``GradCam``; ``layer`` … ``method_options`` are its ``explain`` options, the
    same for every picture (``class_index`` None: each picture's top class). ``progress(done,
    total)`` reports Score-CAM's mask batches within the current picture. ``write_ahead``: results
    that may wait to be written (default: one group). ``measure(image, result)`` adds columns to a
    row (``row.extra``; a GradCamError from it becomes the row's error). Stop early with the
    generator's ``close()``.
    """
    style = style or OutputStyle()
    out_dir = Path(out_dir)
    stems = files.unique_stems([s.name if isinstance(s, LoadedImage) else s for s in sources])
    # Score-CAM batches the masks of one picture: a group of pictures would only multiply its
    # memory. Its seconds per picture dwarf a write, so each row comes as soon as it is written.
    one_by_one = cams.method(method).stepwise
    group_size = 1 if one_by_one else max(1, group_size)
    if write_ahead is None:
        write_ahead = 0 if one_by_one else group_size
    options = {"layer": layer, "method": method, "versus": versus, "counterfactual": counterfactual,
               "max_channels": max_channels, **({"method_options": method_options} if method_options else {}),
               **({"region": region} if region is not None else {})}
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="gradcam-batch")
    pending: deque[_Item] = deque()
    batch_size = balanced_size(len(sources), group_size)  # every later group is this size or one less
    try:
        for group in _Groups(pool, sources, group_size):
            ready = [(item, item.image) for item in group if item.image is not None]
            answers = _explain_group(engine, [image for _, image in ready], class_index, options, one_by_one,
                                     progress, batch_size)
            for (item, image), (result, error) in zip(ready, answers):
                item.row.result, item.row.error = result, error
                if result is None:
                    continue
                if measure is not None:
                    try:
                        item.row.extra = measure(image, result)
                    except GradCamError as failure:
                        item.row.error = str(failure)
                        continue  # an error row has no files
                args = (image, result, out_dir / f"{stems[item.index]}.png", style)
                if write_ahead <= 0:
                    item.write = lambda args=args: write_result(*args)
                else:
                    item.write, item.held = pool.submit(write_result, *args), image.rgb.nbytes
            for item in group:
                item.image = None  # the write holds what it needs; the picture can go
                pending.append(item)
            while len(pending) > max(0, write_ahead) or _over_budget(pending):
                yield _finish(pending.popleft())
        while pending:
            yield _finish(pending.popleft())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _over_budget(pending: deque[_Item]) -> bool:
    """Writes in flight hold their pictures: past ``STAGE_BYTES`` the oldest is waited for first."""
    held = sum(item.held for item in pending if isinstance(item.write, Future) and not item.write.done())
    return held > STAGE_BYTES


def _finish(item: _Item) -> BatchRow:
    """The row once its files are written (a deferred write runs now)."""
    row = item.row
    if item.write is None:
        return row
    try:
        row.written = (item.write.result() if isinstance(item.write, Future) else item.write()) or {}
    except GradCamError as error:  # none of the picture's files was written (write_result: all or none)
        row.error, row.extra = str(error), {}
    item.write = None
    return row


def write_csv(path: str | os.PathLike[str], rows: Sequence[BatchRow | dict], extra_fields: Sequence[str] = ()) -> None:
    """results.csv (``CSV_FIELDS``, then ``extra_fields``), written atomically by ``files.atomic_write_csv``
    (names and paths a spreadsheet would run as formulas are neutralised there)."""
    fields = [*CSV_FIELDS[:-1], *extra_fields, CSV_FIELDS[-1]]  # "error" stays the last column
    cells = (row.csv_row() if isinstance(row, BatchRow) else row for row in rows)
    files.atomic_write_csv(path, fields, ([cell.get(name, "") for name in fields] for cell in cells))

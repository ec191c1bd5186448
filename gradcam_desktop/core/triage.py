"""Folder triage: predict every labelled picture, find the mistakes, count the confusions.

``triage`` is a generator of ``TriageRow``s (paths and numbers, never pixels) that prints
nothing: ``gradcam triage`` draws a bar from it, the window's triage job advances it and stops it
with ``cancel``. The loop, per batch of ``batch`` pictures:

    decode + resize + preprocess   in a thread pool, one batch ahead (Pillow and OpenCV release the GIL)
    GradCam.logits                 ONE compiled forward pass; the last batch is padded with zeros to
                                   the same size, so a fixed-size model is traced once
    head.probabilities             per row → predicted class, p(predicted), p(true), margin

A decoded picture lives only inside its worker call (it is resized there), so at most
``workers`` decoded pictures and two batches of model inputs are alive at any time, however many
pictures there are. A file that cannot be read is a row with ``error`` set, never a stop; so is a
class folder that could not be listed (a ``LabelledPicture`` with ``error`` set, from read_labels).

``triage_batch`` is the same step as a plain function of a batch of paths, for engines that
distribute batches themselves (docs/SCALING.md).
"""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from . import files
from . import preprocess as preprocessing
from .errors import GradCamError, LabelError
from .images import load_image, to_model_input
from .labels import LabelledPicture, LabelSet, read_labels, shown_path

__all__ = ["BATCH", "TRIAGE_FIELDS", "LabelledPicture", "LabelSet", "TriageRow", "read_labels", "triage",
           "triage_batch", "confusion_matrix", "most_confused", "accuracy", "write_triage_csv",
           "write_confusion_csv", "prepare"]

#: Pictures per forward pass: a CPU's per-picture cost has flattened out by 32 (benchmarks/bench_triage.py).
BATCH = 32
#: Decoding threads: two keep a CPU-bound forward pass fed with 1-megapixel JPEGs.
WORKERS = 2
TRIAGE_FIELDS = ["image", "true_index", "true_name", "predicted_index", "predicted_name", "probability",
                 "true_probability", "correct", "margin", "error"]


@dataclass
class TriageRow:
    """One picture's verdict. An error row has ``error`` set, ``predicted_index`` None and NaN numbers."""

    image: str
    true_index: int
    true_name: str
    predicted_index: int | None
    predicted_name: str
    probability: float  # of the predicted class
    true_probability: float
    correct: bool
    margin: float  # p(true) − max over other classes: > 0 right, < 0 wrong
    error: str = ""

    def csv_row(self) -> dict:
        """The row of triage.csv (``TRIAGE_FIELDS``); an error row leaves the numbers and ``correct`` empty."""
        failed = self.predicted_index is None
        return {"image": self.image, "true_index": self.true_index, "true_name": self.true_name,
                "predicted_index": "" if failed else self.predicted_index, "predicted_name": self.predicted_name,
                "probability": _number(self.probability), "true_probability": _number(self.true_probability),
                "correct": "" if failed else ("true" if self.correct else "false"),
                "margin": _number(self.margin), "error": self.error}


def _number(value: float) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.6g}"


def check_classifier(engine) -> None:
    """Triage and patterns compare a predicted class with a folder's labels: a value (regression) head
    predicts no class. LabelError (one line) for it, naming the output and what to do."""
    head = getattr(engine, "head", None)
    if head is not None and not head.is_classifier:
        output = getattr(engine.loaded, "output", None)
        which = f"output '{output}' of " if output else ""
        raise LabelError(f"{which}{engine.loaded.display_name} gives values (a regression head), not classes: "
                         "a labelled folder needs a classifier output to compare with"
                         + (" (choose one with --output or the Output row)." if output else "."))


def prepare(engine, path: str) -> np.ndarray:
    """The preprocessed model input (h, w, c) float32 of one picture file (ImageLoadError if unreadable).

    Not ``engine.model_input``: its input cache is not thread-safe, and this runs in worker threads.
    """
    image = load_image(path)
    array = to_model_input(image.rgb, engine.input_size_for(image), engine.loaded.channels)
    return preprocessing.apply(array[np.newaxis], engine.loaded.preprocess)[0]


def _error_row(engine, picture: LabelledPicture, error: str) -> TriageRow:
    nan = float("nan")
    return TriageRow(picture.path, picture.true_index, engine.class_names[picture.true_index], None, "",
                     nan, nan, False, nan, error)


def _verdict(engine, picture: LabelledPicture, logits: np.ndarray) -> TriageRow:
    probabilities = engine.head.probabilities(logits)
    predicted = int(np.argmax(probabilities))
    true = picture.true_index
    others = np.delete(probabilities, true)
    margin = float(probabilities[true] - others.max()) if others.size else float("nan")
    names = engine.class_names
    return TriageRow(picture.path, true, names[true], predicted, names[predicted], float(probabilities[predicted]),
                     float(probabilities[true]), predicted == true, margin)


def _forward(engine, inputs: list[np.ndarray], batch: int) -> list[np.ndarray]:
    """Logits of each input: fixed-size models in zero-padded batches of exactly ``batch`` (one trace);
    variable-size models per group of one shape (GradCam.logits traces those shape-generically)."""
    height, width = engine.loaded.input_size
    out: list[np.ndarray | None] = [None] * len(inputs)
    groups: dict[tuple, list[int]] = {}
    for i, array in enumerate(inputs):
        groups.setdefault(array.shape, []).append(i)
    for shape, members in groups.items():
        for start in range(0, len(members), batch):
            chunk = members[start:start + batch]
            rows = batch if height and width else len(chunk)
            stacked = np.zeros((rows, *shape), np.float32)
            for row, i in enumerate(chunk):
                stacked[row] = inputs[i]
            logits = engine.logits(stacked)
            for row, i in enumerate(chunk):
                out[i] = logits[row]
    return out  # type: ignore[return-value]


def _rows(engine, pictures: Sequence[LabelledPicture], prepared: Sequence[np.ndarray | str], batch: int
          ) -> list[TriageRow]:
    """The step both loops share: prepared inputs (or error lines) → rows, in order."""
    inputs = {i: item for i, item in enumerate(prepared) if not isinstance(item, str)}
    logits = dict(zip(inputs, _forward(engine, list(inputs.values()), batch))) if inputs else {}
    return [_verdict(engine, picture, logits[i]) if i in logits else _error_row(engine, picture, str(prepared[i]))
            for i, picture in enumerate(pictures)]


def _prepare_or_error(engine, path: str) -> np.ndarray | str:
    try:
        return prepare(engine, path)
    except GradCamError as error:
        return str(error)
    except (OSError, ValueError) as error:  # a path no file system takes (too long, a NUL from a CSV)
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        return f"{shown_path(path)} cannot be read: {reason.lower()}. Check the path in the labels."


def _prepare_picture(engine, picture: LabelledPicture) -> np.ndarray | str:
    """The model input of ``picture``, or the one line why not (an unreadable class folder: its own)."""
    return picture.error if picture.error else _prepare_or_error(engine, picture.path)


def triage_batch(engine, paths: Sequence[str], true_indices: Sequence[int], *, batch: int = BATCH
                 ) -> list[TriageRow]:
    """The rows of one batch of picture paths: the same step as ``triage``, decoded in this thread.

    For engines that hand out batches themselves (Ray Data's ``map_batches``): no threads, no
    state besides ``engine``. The same ``batch`` as ``triage`` gives the same forward passes.
    """
    pictures = [LabelledPicture(str(p), int(t)) for p, t in zip(paths, true_indices, strict=True)]
    rows: list[TriageRow] = []
    for start in range(0, len(pictures), batch):
        chunk = pictures[start:start + batch]
        rows += _rows(engine, chunk, [_prepare_picture(engine, p) for p in chunk], batch)
    return rows


def triage(engine, pictures: Sequence[LabelledPicture], *, batch: int = BATCH,
           cancel: Callable[[], bool] | None = None, workers: int = WORKERS) -> Iterator[TriageRow]:
    """Predict every picture, yielding one ``TriageRow`` per picture in order as each batch finishes.

    ``engine`` is a ``GradCam``. ``cancel()`` is asked before each batch: True stops the loop (the
    rows already yielded stand). Stop early also with the generator's ``close()``.
    """
    batch = max(1, int(batch))
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="gradcam-triage")
    ahead: deque[Future] = deque()
    submitted = 0

    def top_up() -> None:
        # The current batch and the next one: the next decodes while this one runs the model.
        nonlocal submitted
        while len(ahead) < 2 * batch and submitted < len(pictures):
            ahead.append(pool.submit(_prepare_picture, engine, pictures[submitted]))
            submitted += 1

    try:
        done = 0
        top_up()
        while done < len(pictures):
            if cancel is not None and cancel():
                return
            chunk = pictures[done:done + batch]
            prepared = [ahead.popleft().result() for _ in chunk]
            top_up()
            rows = _rows(engine, chunk, prepared, batch)
            del prepared
            done += len(chunk)
            yield from rows
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def accuracy(rows: Sequence[TriageRow], *, read_only: bool = False) -> float:
    """Correct predictions over every row: a picture or class folder that could not be read is not
    a correct prediction, so nothing unread can make the figure look better than it is.
    ``read_only``: over the pictures that were read. NaN when no picture was read."""
    judged = [row for row in rows if row.predicted_index is not None]
    if not judged:
        return float("nan")
    return sum(row.correct for row in judged) / (len(judged) if read_only else len(rows))


def confusion_matrix(rows: Sequence[TriageRow], num_classes: int) -> np.ndarray:
    """Counts (num_classes, num_classes), int64: rows the true class, columns the predicted one; error rows skipped."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    for row in rows:
        if row.predicted_index is not None:
            matrix[row.true_index, row.predicted_index] += 1
    return matrix


def most_confused(matrix: np.ndarray, class_names: Sequence[str], k: int = 5) -> list[tuple[str, str, int]]:
    """The ``k`` largest off-diagonal cells as (true name, predicted name, count), largest first;
    ties in the order of the matrix (row, then column). Empty cells are never listed."""
    matrix = np.asarray(matrix)
    cells = [(int(matrix[t, p]), t, p) for t in range(matrix.shape[0]) for p in range(matrix.shape[1])
             if t != p and matrix[t, p] > 0]
    cells.sort(key=lambda cell: (-cell[0], cell[1], cell[2]))
    return [(class_names[t], class_names[p], count) for count, t, p in cells[:max(0, k)]]


def write_triage_csv(path: str | os.PathLike[str], rows: Iterable[TriageRow]) -> None:
    """triage.csv (``TRIAGE_FIELDS``), streamed and written atomically by ``files.atomic_write_csv``
    (names and paths a spreadsheet would run as formulas are neutralised there)."""
    files.atomic_write_csv(path, TRIAGE_FIELDS, ([row.csv_row()[name] for name in TRIAGE_FIELDS] for row in rows))


def write_confusion_csv(path: str | os.PathLike[str], matrix: np.ndarray, class_names: Sequence[str]) -> None:
    """confusion.csv: a header of class names (the predicted class), one row per true class; atomic,
    by ``files.atomic_write_csv`` (class names neutralised there)."""
    counts = np.asarray(matrix)
    if len(counts) != len(class_names):
        raise ValueError(f"a {counts.shape} matrix for {len(class_names)} class names")
    files.atomic_write_csv(path, ["true \\ predicted", *class_names],
                           ([name, *(int(c) for c in line)] for name, line in zip(class_names, counts)))

"""A labelled folder predicted, mapped and clustered, in steps: what ``gradcam patterns``, ``gradcam
report``, the window's Patterns view and File → Export Report… all run.

``PatternsRun.step()`` advances by one group of pictures (``GROUP``): their predictions
(``core.triage.triage``, decoding ahead on its threads) and the maps of the class each one is
explained for — its predicted class, or with ``by="true"`` its labelled class — in one batched
call (``map_group``). Of each map only SpRAy's 32 × 32 normalised grid is kept (8 KB a picture:
core/patterns.py) and, when the object is known (``--masks``, ``--boxes`` or the picture's own
``.object.json`` sidecar: core/inside_share.py), its inside share. ``finish()`` clusters each
class's grids and returns the ``Analysis``. The CLI drives the steps with a progress bar; the
window's worker drives them as a job, so a click waits for one group at most and Cancel works.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import cams, patterns
from .errors import GradCamError
from .images import load_image
from .inside_share import Box, inside_share, object_mask
from .triage import LabelledPicture, TriageRow, triage

__all__ = ["GROUP", "Analysis", "Mapped", "PatternsRun", "cluster_analysis", "map_group"]

#: Pictures per step and per batched map call.
GROUP = 16


@dataclass
class Mapped:
    """What is kept of one mapped picture: its path, the class its map explains, SpRAy's grid
    (GRID² float32), its inside share (NaN = the object is not known)."""

    image: str
    class_index: int
    features: np.ndarray
    share: float


@dataclass
class Analysis:
    """A labelled folder mapped and clustered (no model, no pixels: it can cross a process boundary)."""

    method: cams.Method
    names: list[str]
    triage_rows: list[TriageRow]  # every picture's prediction (accuracy, confusion matrix, mistakes)
    done: list[Mapped]  # the pictures mapped (their ``features`` may be dropped: ``features`` has them)
    features: np.ndarray  # their SpRAy grids, (len(done), GRID²)
    clusterings: dict[int, patterns.Clustering]
    pattern_rows: list[patterns.PatternRow]
    cluster_rows: list[patterns.ClusterRow]
    skipped: int
    interrupted: bool
    total: int  # pictures listed
    by: str = "predicted"

    def class_rows(self, class_index: int) -> np.ndarray:
        """Indices into ``done`` (and ``features``) of the pictures of ``class_index``, in the clustering's order."""
        return np.flatnonzero(np.asarray([item.class_index for item in self.done], np.int64) == class_index)

    def without_copies(self) -> Analysis:
        """The same analysis with each ``Mapped``'s grid dropped (``features`` holds them all): half
        the bytes to send to another process."""
        empty = np.zeros(0, np.float32)
        return replace(self, done=[replace(item, features=empty) for item in self.done])


def map_group(engine: Any, group: Sequence[tuple[str, int]], *, method: cams.Method, layer: str | None = None,
              masks_dir: str | None = None, boxes: Mapping[str, Sequence[Box]] | None = None,
              say: Callable[[str], None] | None = None) -> tuple[list[Mapped], int]:
    """The maps of ``group`` ((path, class index) pairs) in one batched call — one by one when that
    fails, so one bad picture is one skipped picture. Returns (the mapped, in order; how many were
    skipped). ``say`` gets one line per skipped picture or unknown inside share."""
    tell = say or (lambda _line: None)
    if not group:
        return [], 0
    images, kept = [], []
    for path, class_index in group:
        try:
            images.append(load_image(path))
            kept.append((path, class_index))
        except GradCamError as error:
            tell(f"Skipped {Path(path).name}: {error}")
    skipped = len(group) - len(kept)
    options = {"layer": layer, "method": method}
    results: list[Any]
    try:
        results = engine.explain_many(images, class_indices=[c for _p, c in kept], batch_size=GROUP, **options)
    except GradCamError:
        results = []
        for image, (_path, class_index) in zip(images, kept):
            try:
                results.append(engine.explain(image, class_index=class_index, **options))
            except GradCamError as error:
                tell(f"No map for {image.name}: {error}")
                results.append(None)
    mapped: list[Mapped] = []
    for image, (path, class_index), result in zip(images, kept, results):
        if result is None:
            skipped += 1
            continue
        share = math.nan
        try:
            mask = object_mask(path, image.rgb.shape[:2], masks_dir=masks_dir, boxes=boxes)
        except GradCamError as error:
            tell(f"No inside share for {image.name}: {error}")
            mask = None
        if mask is not None:
            share = inside_share(result.raw, mask, image.rgb.shape[:2])
        # float32: 4 KB a picture (the clustering works in float64 on one class at a time).
        mapped.append(Mapped(path, class_index, patterns.prepare_one(result.raw).reshape(-1).astype(np.float32),
                             share))
    return mapped, skipped


def cluster_analysis(done: list[Mapped], *, method: cams.Method, names: Sequence[str], triage_rows: list[TriageRow],
                     skipped: int, interrupted: bool, total: int, by: str = "predicted",
                     clusters: int | None = None, seed: int = 0, view: bool = True) -> Analysis:
    """Cluster each class's grids of ``done`` (``patterns.by_class``; ``view``: with the 2-D t-SNE view)
    and make the tables. The grids move into ``Analysis.features``: each ``Mapped`` lets go of its own
    copy (one copy in memory, not two)."""
    classes = [item.class_index for item in done]
    features = (np.stack([item.features for item in done]).astype(np.float32, copy=False) if done
                else np.zeros((0, patterns.GRID ** 2), np.float32))
    empty = np.zeros(0, np.float32)
    for item in done:
        item.features = empty
    clusterings = patterns.by_class(classes, features, clusters=clusters, seed=seed, view=view)
    names = list(names)
    rows = patterns.pattern_rows([item.image for item in done], classes, clusterings, class_names=names,
                                 inside_shares=[item.share for item in done])
    table = patterns.cluster_rows(clusterings, rows, class_names=names)
    return Analysis(method, names, triage_rows, done, features, clusterings, rows, table, skipped, interrupted,
                    total, by)


class PatternsRun:
    """Predict and map ``pictures`` one group a ``step()``; ``finish()`` clusters what was mapped.

    ``engine`` is a ``GradCam``; ``by`` "predicted" or "true" (whose class each map explains);
    ``masks_dir``/``boxes`` where the objects are (each picture's ``.object.json`` sidecar otherwise);
    ``clusters`` fixes the number of clusters per class; ``seed`` the clustering's.
    """

    def __init__(self, engine: Any, pictures: Sequence[LabelledPicture], *, method: cams.Method,
                 layer: str | None = None, by: str = "predicted", masks_dir: str | None = None,
                 boxes: Mapping[str, Sequence[Box]] | None = None, clusters: int | None = None, seed: int = 0,
                 say: Callable[[str], None] | None = None, group: int = GROUP, view: bool = True) -> None:
        if by not in ("predicted", "true"):
            raise ValueError(f"by must be 'predicted' or 'true', not {by!r}")
        self.engine = engine
        self.method = method
        self.total = len(pictures)
        self._options: dict[str, Any] = {"method": method, "layer": layer, "masks_dir": masks_dir, "boxes": boxes,
                                         "say": say}
        self._by, self._clusters, self._seed, self._view = by, clusters, seed, view
        self._say = say or (lambda _line: None)
        self._group = max(1, int(group))
        self._rows: Iterator[TriageRow] | None = triage(engine, pictures, batch=self._group)
        self.triage_rows: list[TriageRow] = []
        self.done: list[Mapped] = []
        self.skipped = 0

    @property
    def predicted(self) -> int:
        """Pictures predicted so far (read or not)."""
        return len(self.triage_rows)

    def step(self) -> list[TriageRow]:
        """Predict and map the next group; its triage rows (empty: every picture is done)."""
        if self._rows is None:
            return []
        rows: list[TriageRow] = []
        for row in self._rows:
            rows.append(row)
            if len(rows) >= self._group:
                break
        if not rows:
            self.close()
            return []
        self.triage_rows += rows
        waiting = []
        for row in rows:
            if row.error:
                self.skipped += 1
                self._say(f"Skipped: {row.error}")
            else:
                chosen = row.true_index if self._by == "true" else row.predicted_index
                if chosen is not None:
                    waiting.append((row.image, int(chosen)))
        mapped, skipped = map_group(self.engine, waiting, **self._options)
        self.done += mapped
        self.skipped += skipped
        if self.predicted >= self.total:
            self.close()
        return rows

    def finish(self, *, interrupted: bool = False) -> Analysis:
        """Cluster every class's maps made so far (all of them unless ``interrupted``)."""
        self.close()
        return cluster_analysis(self.done, method=self.method, names=list(self.engine.class_names),
                                triage_rows=self.triage_rows, skipped=self.skipped, interrupted=interrupted,
                                total=self.total, by=self._by, clusters=self._clusters, seed=self._seed,
                                view=self._view)

    def close(self) -> None:
        """Stop the predictions' decoding threads (also when the run ends early)."""
        rows, self._rows = self._rows, None
        if rows is not None and hasattr(rows, "close"):
            rows.close()

"""The requests the window puts on the worker's queue: plain data, one dataclass per kind.

They are created on the UI thread and consumed by ``GradCamWorker.run()`` through the
scheduler; each carries an int id from one process-wide counter, which the results carry back so
the window can drop stale answers (an ``ExportAll``'s id is also its job's id). Two small rules
that only read a request live with it: which inputs a ``LoadImages`` names (``expand_sources``)
and which map a ``Precompute`` plan wants next. Kept apart from worker.py because they are the
thread boundary's vocabulary, not the thread: no Qt or TensorFlow object, so tests can build and
compare them without a thread. ``gradcam_desktop.ui.worker`` re-exports the dataclasses.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gradcam_desktop.ui.map_cache import map_key

__all__ = ["CancelJob", "Explain", "ExportAll", "LoadImages", "LoadModel", "Precompute", "Shutdown",
           "expand_sources"]

_ids = itertools.count(1)


def _next_id() -> int:
    # itertools.count.__next__ is atomic under the GIL: ids are unique across threads.
    return next(_ids)


@dataclass
class LoadModel:
    """Load a model file, "demo" or "zoo:Name"."""

    spec: str
    trust: bool = False
    id: int = field(default_factory=_next_id)


@dataclass
class LoadImages:
    """Decode image files, folders (their images), encoded bytes (the clipboard) or (name, bytes)."""

    sources: list[Any]
    id: int = field(default_factory=_next_id)


@dataclass
class Explain:
    """Compute (or fetch from the cache) one map. ``class_index`` None = the top class.

    ``supersedable=False`` exempts a request from newest-request-wins (a script that needs every
    one of its maps even if the user clicks around meanwhile).
    """

    image_key: str
    layer: str | None
    class_index: int | None
    supersedable: bool = True
    method: str = "gradcam"
    id: int = field(default_factory=_next_id)


@dataclass
class ExportAll:
    """Start the Export All job over these pictures (never superseded; the id is the job's)."""

    image_keys: list[str]
    folder: str
    layer: str | None
    class_index: int | None
    style: Any  # core.batch.OutputStyle
    method: str = "gradcam"
    id: int = field(default_factory=_next_id)


@dataclass
class CancelJob:
    """Cancel a background job (Export All's Cancel button)."""

    job_id: int
    id: int = field(default_factory=_next_id)


@dataclass
class Precompute:
    """Low-priority maps worth having ready: other top classes of the image just shown."""

    image_key: str
    generation: int
    layer: str
    class_indices: list[int]
    method: str = "gradcam"

    def next_class(self, cached: Container[tuple]) -> int | None:
        """Pop class indices until one whose map key (``map_key``) is not in ``cached``; None when none is left."""
        while self.class_indices:
            class_index = self.class_indices.pop(0)
            if map_key(self.image_key, self.generation, self.layer, class_index, self.method) not in cached:
                return class_index
        return None


@dataclass
class Shutdown:
    """Leave run()."""

    id: int = field(default_factory=_next_id)


def expand_sources(sources: Iterable[Any], find_images: Callable[[list], list]) -> tuple[list[Any], list[tuple[str, str]]]:
    """``LoadImages.sources`` as inputs to decode (paths and (name, bytes)), and (name, message) of the failures.

    Folders are expanded first, one input at a time: a missing path or an empty folder must not
    hide the other inputs. Bytes (a pasted image) pass through as ("clipboard", bytes).
    ``find_images`` is ``core.images.find_images``.
    """
    from gradcam_desktop.core.errors import GradCamError

    inputs: list[Any] = []
    problems: list[tuple[str, str]] = []
    for source in sources:
        if isinstance(source, (bytes, bytearray)):
            source = ("clipboard", bytes(source))
        if isinstance(source, tuple):  # (name, encoded bytes): pasted or generated pictures
            inputs.append((str(source[0]), bytes(source[1])))
            continue
        try:
            inputs.extend(find_images([source]))
        except GradCamError as exc:
            problems.append((Path(source).name or str(source), str(exc)))
    return inputs, problems

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
import logging
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gradcam_desktop.session.map_cache import map_key

__all__ = ["CancelJob", "Explain", "ExplainGrid", "ExportAll", "LoadImages", "LoadModel", "MapSpec", "Precompute",
           "Shutdown", "decode_source", "expand_sources"]

_ids = itertools.count(1)


def _next_id() -> int:
    # itertools.count.__next__ is atomic under the GIL: ids are unique across threads.
    return next(_ids)


@dataclass
class LoadModel:
    """Load a model file, "demo" or "zoo:Name" (``output``: the output to explain of a model with several)."""

    spec: str
    trust: bool = False
    output: str | None = None
    id: int = field(default_factory=_next_id)


@dataclass
class LoadImages:
    """Decode image files, folders (their images), encoded bytes (the clipboard) or (name, bytes)."""

    sources: list[Any]
    id: int = field(default_factory=_next_id)


@dataclass(frozen=True)
class MapSpec:
    """Which map: picture, layer (None: the default), class (None: the top one), method and score.

    The method is the registry's object (``cams.Method``): what it needs and costs travel with the
    query; the cache key and files use its name.

    The score is the class logit (default), ``versus`` B (y_c − y_B: "why c rather than B") or
    ``counterfactual`` (−y_c: "what speaks against c"); see ``core.types.Target``.
    """

    image_key: str
    layer: str | None
    class_index: int | None
    method: Any = "gradcam"  # a cams.Method; a name given here is looked up once (unknown: MethodError)
    versus: int | None = None
    counterfactual: bool = False
    #: A segmentation model's region, (top, left, bottom, right) fractions of the picture; None: each
    #: class's predicted mask (``core.types.Target.region``).
    region: tuple[float, float, float, float] | None = None

    def __post_init__(self) -> None:
        from gradcam_desktop.core import cams

        object.__setattr__(self, "method", cams.method(self.method))
        if self.region is not None:
            object.__setattr__(self, "region", tuple(float(side) for side in self.region))

    def key(self, generation: int) -> tuple | None:
        """The cache key (``map_key``); None while the layer or class is still to be resolved. A method
        that takes no layer (pixels, occlusion, RISE) has one map whatever layer is chosen."""
        from gradcam_desktop.core import cams

        layer = self.layer if self.method.uses_layer else cams.INPUT_LAYER
        if layer is None or self.class_index is None:
            return None
        return map_key(self.image_key, generation, layer, self.class_index, self.method, self.versus,
                       self.counterfactual, self.region)

    def score_options(self) -> dict:
        """The engine's keyword arguments for the score; empty for the class logit (the engine's default)."""
        options: dict = {} if self.region is None else {"region": self.region}
        if self.counterfactual:
            return {**options, "counterfactual": True}
        return options if self.versus is None else {**options, "versus": int(self.versus)}


@dataclass
class Explain:
    """Compute (or fetch from the cache) one map. ``class_index`` None = the top class.

    ``supersedable=False`` exempts a request from newest-request-wins (a script that needs every
    one of its maps even if the user clicks around meanwhile). A newer supersedable request also
    cancels a Score-CAM map still being computed for an older one.
    """

    image_key: str
    layer: str | None
    class_index: int | None
    supersedable: bool = True
    method: str = "gradcam"
    versus: int | None = None
    counterfactual: bool = False
    region: tuple[float, float, float, float] | None = None  # MapSpec.region
    id: int = field(default_factory=_next_id)

    @property
    def spec(self) -> MapSpec:
        return MapSpec(self.image_key, self.layer, self.class_index, self.method, self.versus, self.counterfactual,
                       self.region)

    @classmethod
    def of(cls, spec: MapSpec, supersedable: bool = True) -> Explain:
        """The request for the map ``spec`` names."""
        return cls(spec.image_key, spec.layer, spec.class_index, supersedable, spec.method, spec.versus,
                   spec.counterfactual, spec.region)


@dataclass
class ExplainGrid:
    """Maps for several ``MapSpec``s at once (the compare grid); a newer grid supersedes it.

    Each map arrives as ``jobPartial(id, ("cell", cell index, MapResult))``, in order; the grid's progress as
    ``jobProgress`` and its end as ``jobFinished`` with this id.
    """

    cells: list[MapSpec]
    supersedable: bool = True
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
    versus: int | None = None
    counterfactual: bool = False
    region: tuple[float, float, float, float] | None = None  # MapSpec.region
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
    versus: int | None = None
    counterfactual: bool = False
    region: tuple[float, float, float, float] | None = None  # MapSpec.region

    def next_class(self, cached: Container[tuple]) -> int | None:
        """Pop class indices until one whose map key (``map_key``) is not in ``cached``; None when none is left.

        With a ``versus`` class, that class itself is skipped (c versus c is no question).
        """
        while self.class_indices:
            class_index = self.class_indices.pop(0)
            if class_index == self.versus:
                continue
            if self.spec(class_index).key(self.generation) not in cached:
                return class_index
        return None

    @classmethod
    def after(cls, spec: MapSpec, result: Any, generation: int, top: int) -> Precompute:
        """The plan once ``result`` (the map of ``spec``) is shown: the same map for the ``top`` classes."""
        return cls(spec.image_key, generation, result.layer, [index for index, _n, _p in result.prediction.top[:top]],
                   spec.method, spec.versus, spec.counterfactual, spec.region)

    def spec(self, class_index: int) -> MapSpec:
        """The map this plan wants for ``class_index``."""
        return MapSpec(self.image_key, self.layer, class_index, self.method, self.versus, self.counterfactual,
                       self.region)


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


def decode_source(load_image: Callable[..., Any], label: str, data: Any, log_hint: str = "") -> tuple[Any, str]:
    """(picture, "") or (None, why it could not be opened): one bad file must not stop the others.

    ``load_image`` is ``core.images.load_image``; ``log_hint`` ends the message of an unexpected error.
    """
    from gradcam_desktop.core.errors import GradCamError

    try:
        return load_image(data, name=label), ""
    except GradCamError as exc:
        return None, str(exc)
    except Exception as exc:  # noqa: BLE001 - a decoder bug is this file's problem, logged
        logging.getLogger(__name__).error("unexpected error decoding %s", label, exc_info=exc)
        return None, f"Unexpected error: {exc}{log_hint}"

"""Typed records that cross from the engine to the window (instead of dicts read by string key)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from gradcam_desktop.core.types import LayerNode

if TYPE_CHECKING:
    from gradcam_desktop.session.picture_cache import PictureCache

__all__ = ["ModelInfo", "Picture"]


@dataclass(frozen=True)
class ModelInfo:
    """What the window knows of an open model (``modelLoaded``, ``engineRestored``).

    ``generation`` counts the models the engine opened: maps carry it, so an answer about another
    model is never shown for this one. ``source`` is the spec as given ("demo", "zoo:Name", a path).
    """

    request_id: int
    generation: int
    source: str
    display_name: str
    default_layer: str | None  # None: the file shows no layers (a black box)
    class_names: tuple[str, ...]
    input_size: tuple[int, int]
    channels: int
    preprocess: str
    sha256: str | None
    head: str | None
    trusted: bool
    layers: list[LayerNode] = field(default_factory=list, compare=False)
    file_format: str = "keras"  # "keras", or a black box's "onnx", "tflite", "savedmodel"
    methods: tuple[str, ...] = ()  # the methods this model can run (cams.METHODS names); () = all
    #: A model with several outputs: each as (name, description, can be explained), and the one explained.
    outputs: tuple[tuple[str, str, bool], ...] = ()
    output: str | None = None

    @property
    def shows_layers(self) -> bool:
        return self.default_layer is not None


@dataclass(frozen=True)
class Picture:
    """A picture the window has open (``imagesLoaded``): the engine's ``key`` for it, its name, its file
    (None for a pasted one), what was done to it on opening (``notices``), a small ``thumb``.

    ``rgb`` is read from the window's ``PictureCache`` when asked (decoded again from the source after
    the cache dropped it; None once the file is gone), so a list of pictures holds no pixels.
    """

    key: str
    name: str
    path: str | None = None
    notices: tuple[str, ...] = ()
    thumb: np.ndarray | None = field(default=None, compare=False, repr=False)
    pictures: PictureCache | None = field(default=None, compare=False, repr=False)

    @property
    def rgb(self) -> np.ndarray | None:
        """The decoded pixels (H, W, 3) uint8, or None when they cannot be had any more."""
        image = None if self.pictures is None else self.pictures.get(self.key)
        return None if image is None else image.rgb

    @property
    def label(self) -> str:
        """How captions and sidecars name it: its path, else its name."""
        return self.path or self.name

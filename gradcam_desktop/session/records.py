"""Typed records that cross from the engine to the window (instead of dicts read by string key)."""

from __future__ import annotations

from dataclasses import dataclass, field

from gradcam_desktop.core.types import LayerNode

__all__ = ["ModelInfo"]


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
    default_layer: str
    class_names: tuple[str, ...]
    input_size: tuple[int, int]
    channels: int
    preprocess: str
    sha256: str | None
    head: str | None
    trusted: bool
    layers: list[LayerNode] = field(default_factory=list, compare=False)

"""What is open and chosen in a session, in one observable object the window and its views follow.

Qt-free. The window changes it — a model asked for, opened or lost, pictures added or removed, a
picture stepped to, a layer or a class chosen — and each change is announced to every subscriber
with what changed:

    "model"     another model is being opened, has opened, or is gone: every view of the old
                model's data clears (nothing may show another model's maps, classes or rows)
    "pictures"  pictures were added or removed (``pictures`` is the new list)
    "picture"   another picture is current, or none (``current()``)
    "choice"    the layer, the kept class or the region (a segmentation model's) changed

The views (compare grid, trust panel, triage table) subscribe once and keep nothing of a model or a
picture that the state has let go. ``query()`` turns the state and the method and score chosen
into the one ``MapSpec`` a map request carries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gradcam_desktop.session.records import ModelInfo, Picture
from gradcam_desktop.session.requests import MapSpec

__all__ = ["CHANGES", "SessionState"]

CHANGES = frozenset({"model", "pictures", "picture", "choice"})

Listener = Callable[[str], Any]
#: ``choose``'s "leave it as it is".
_KEEP: Any = object()


@dataclass
class SessionState:
    """The open model (``model``; ``opening`` while another is asked for), the open ``pictures`` and the
    current one (``index``), the ``layer`` maps are taken at and the class kept from picture to picture
    (``kept_class``; None: each picture's top class) and, for a segmentation model, the ``region`` whose
    scores the maps sum (top, left, bottom, right fractions of any picture; None: each class's predicted
    mask). Another model clears the region."""

    model: ModelInfo | None = None
    opening: str | None = None  # the label of a model asked for and not yet opened
    pictures: list[Picture] = field(default_factory=list)
    index: int = -1
    layer: str | None = None
    kept_class: int | None = None
    region: tuple[float, float, float, float] | None = None
    _listeners: list[Listener] = field(default_factory=list, repr=False)

    # -- following it ---------------------------------------------------------------------------
    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(change)`` after every change; returns the call that unsubscribes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _changed(self, change: str) -> None:
        assert change in CHANGES, change
        for listener in list(self._listeners):
            listener(change)

    # -- reading --------------------------------------------------------------------------------
    def current(self) -> Picture | None:
        """The picture shown, or None."""
        return self.pictures[self.index] if 0 <= self.index < len(self.pictures) else None

    def ready(self) -> bool:
        """A model is open and none other is being opened: maps can be asked for."""
        return self.model is not None and self.opening is None

    def query(self, method: Any = "gradcam", versus: int | None = None, counterfactual: bool = False) -> MapSpec | None:
        """The map the views should show now: the current picture at the chosen layer and class, by
        ``method`` for the chosen score (over the ``region``, if one is drawn); None without a model ready
        or a picture."""
        picture = self.current()
        if picture is None or not self.ready():
            return None
        return MapSpec(picture.key, self.layer, self.kept_class, method, versus, counterfactual, self.region)

    # -- the model ------------------------------------------------------------------------------
    def open_requested(self, label: str) -> None:
        """Another model is being opened: from now on nothing shows the old one's data."""
        self.opening = label
        self._changed("model")

    def open_failed(self) -> None:
        """The model asked for did not open: the one still open (if any) stands again."""
        self.opening = None
        self._changed("model")

    def set_model(self, info: ModelInfo | None) -> None:
        """A model opened (its default layer, each picture's top class), or none is left."""
        self.model, self.opening = info, None
        self.layer = info.default_layer if info is not None else None
        self.kept_class = None
        self.region = None
        self._changed("model")

    # -- the pictures ---------------------------------------------------------------------------
    def add(self, pictures: list[Picture]) -> int:
        """Append pictures; returns the index of the first new one."""
        first = len(self.pictures)
        self.pictures.extend(pictures)
        if pictures:
            self._changed("pictures")
        return first

    def select(self, index: int) -> bool:
        """Make picture ``index`` current; False (nothing changes) when there is none there."""
        if not 0 <= index < len(self.pictures):
            return False
        self.index = index
        self._changed("picture")
        return True

    def remove(self, index: int) -> Picture | None:
        """Close picture ``index``. The current one stays current (its index moves); when it is the one
        closed, the next (else the previous) becomes current; none left, none is."""
        if not 0 <= index < len(self.pictures):
            return None
        removed = self.pictures.pop(index)
        was_current = index == self.index
        if not self.pictures:
            self.index = -1
        elif index < self.index or (was_current and index == len(self.pictures)):
            self.index -= 1
        self._changed("pictures")
        if was_current:
            self._changed("picture")
        return removed

    # -- the choice -----------------------------------------------------------------------------
    def choose(self, *, layer: str | None = _KEEP, kept_class: int | None = _KEEP,
               region: tuple[float, float, float, float] | None = _KEEP) -> None:
        """Take maps at ``layer`` and/or keep ``kept_class`` (None: each picture's top class) and/or sum a
        segmentation model's scores over ``region`` (None: each class's predicted mask); what is not given stays."""
        if layer is not _KEEP:
            self.layer = layer
        if kept_class is not _KEEP:
            self.kept_class = kept_class
        if region is not _KEEP:
            self.region = None if region is None else (float(region[0]), float(region[1]), float(region[2]),
                                                       float(region[3]))
        self._changed("choice")

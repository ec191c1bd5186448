"""What the window's side remembers about its engine, so that a new engine can take over when it dies.

The ``Supervisor`` watches the requests going to the engine and the events coming back (on the
worker thread, Qt-free): the last model that opened (spec, trust, generation), the custom-layer
files the user ran, the requests still unanswered, and what the engine said it was doing. When the
engine dies it gives the one line for the user, the requests to fail with it, and the ``Restore``
request for a new engine: the last model that worked (not one that was being opened: it may be
what killed the engine), the pictures the window holds, the same keys and generation.

A model that kills every new engine while it opens must not loop: after ``MAX_RESTORES``
deaths without a working engine in between, the new engine starts without a model.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from gradcam_desktop.core.types import ModelSpec
from gradcam_desktop.session.custom_layers import CustomLayersRequest
from gradcam_desktop.session.engine import Restore
from gradcam_desktop.session.requests import Explain, LoadModel

__all__ = ["MAX_RESTORES", "MAX_STARTS", "Supervisor"]

#: Deaths in a row (no request answered in between) after which a new engine opens no model.
MAX_RESTORES = 2
#: Deaths in a row after which no new engine is started (it cannot even start: see its log).
MAX_STARTS = 4

#: Events that answer the request whose id is their first argument, for good.
_UNANSWERED = frozenset({"CancelJob", "ForgetImages", "CachedKeys", "Shutdown", "Restore"})
_ANSWERS = frozenset({"modelLoaded", "imagesLoaded", "mapReady", "failed", "jobFinished"})


@dataclass
class _Model:
    spec: str
    trust: bool
    generation: int
    name: str
    output: str | None = None


class Supervisor:
    """Remembers, per engine, what a successor needs and what to tell the user when it dies."""

    def __init__(self) -> None:
        self.model: _Model | None = None
        self.custom_layers: list[str] = []
        self._pending: dict[int, Any] = {}  # request id → request, not yet answered
        self._doing = ""  # the engine's last "working" text
        self._deaths = 0
        self.restore_id: int | None = None

    # -- what passes ----------------------------------------------------------------------------
    def sent(self, request: Any) -> None:
        """A request went to the engine."""
        if isinstance(request, Explain):  # only the newest map matters: older ones are superseded
            for key in [k for k, r in self._pending.items() if isinstance(r, Explain)]:
                del self._pending[key]
        if hasattr(request, "id") and type(request).__name__ not in _UNANSWERED:
            self._pending[request.id] = request

    def received(self, name: str, args: tuple) -> None:
        """An event came back from the engine."""
        if name == "working":
            self._doing = str(args[0])
            return
        if name in _ANSWERS and args:
            if name == "failed" and args[0] == self.restore_id:
                self.model = None  # the model no longer opens: the new engine runs without one
            request = self._pending.pop(args[0], None)
            self._deaths = 0  # the engine answered: it works
            if name == "modelLoaded" and isinstance(request, LoadModel):
                info = args[1]
                self.model = _Model(request.spec, request.trust, info.generation, info.display_name, request.output)
            elif name == "jobFinished" and isinstance(request, CustomLayersRequest):
                self.custom_layers.append(request.path)
        elif name == "restored":
            info = args[0]
            if info is None:
                self.model = None

    # -- when it dies ---------------------------------------------------------------------------
    def lost(self, how: str) -> tuple[str, list[int], bool]:
        """The engine ended (``how``: ``host.describe_exit``): (one line for the user, the ids of the
        requests it took with it, whether the next engine reopens the model)."""
        self._deaths += 1
        pending = list(self._pending)
        loading = next((r for r in self._pending.values() if isinstance(r, LoadModel)), None)
        self._pending.clear()
        model = self.model
        reopen = model is not None and self._deaths <= MAX_RESTORES
        doing = self._doing
        if loading is not None:
            doing = f"opening {ModelSpec.parse(loading.spec).label}"
        elif model is not None and doing and not doing.startswith("opening"):
            doing = f"{doing} with {model.name}"
        elif model is not None:
            doing = f"idle with {model.name}"
        if model is not None and reopen:
            after = f"it is starting again with {model.name}; pictures and choices are kept."
        elif model is not None:
            after = f"it is starting again without a model ({model.name} stopped it {self._deaths} times in a row)."
        else:
            after = "it is starting again; pictures and choices are kept."
        self._doing = ""
        return f"The engine {how}{f' while {doing}' if doing else ''}; {after}", pending, reopen

    def waiting(self) -> bool:
        """Whether the engine owes an answer (a request it took and has not answered)."""
        return bool(self._pending)

    def give_up(self) -> bool:
        """True when engines die before answering anything, again and again: start no more."""
        return self._deaths >= MAX_STARTS

    def restore(self, pictures: Iterable[tuple[str, Any, str]], reopen: bool) -> Restore:
        """The first request for the new engine."""
        model = self.model if reopen else None
        if not reopen:
            self.model = None
        request = Restore(model.spec if model else None, bool(model and model.trust),
                          model.generation if model else 0, list(pictures), list(self.custom_layers),
                          output=model.output if model else None)
        self.restore_id = request.id
        return request

"""``Task``: a computation done step by step, so a UI job can show progress and stop between steps.

The engine builds them from generators that yield ``(done, total)`` after each piece of work and
return the result: ``MapTask`` (``GradCam.task``: a capture, or one batch of Score-CAM's masks,
per step) and the trust report's ``TrustTask`` (a batch of forward passes or one sanity step).
``GradCam.explain`` is a ``MapTask`` run to the end.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Generic, TypeVar

from .errors import GradCamError
from .types import MapResult

__all__ = ["MapTask", "Task"]

T = TypeVar("T")


class Task(Generic[T]):
    """``step()`` until it returns True, then ``result``; ``close()`` stops it early."""

    def __init__(self, steps: Generator[tuple[int, int], None, T]):
        self._steps = steps
        self.progress: tuple[int, int] = (0, 1)
        self.result: T | None = None
        self.closed = False

    def step(self) -> bool:
        """Do the next piece of work; True when finished (or closed)."""
        if self.result is not None or self.closed:
            return True
        try:
            self.progress = next(self._steps)
        except StopIteration as stop:
            self.result = stop.value
            return True
        return False

    def finish(self) -> T:
        """Run the remaining steps; the result."""
        while not self.step():
            pass
        if self.result is None:
            raise GradCamError("The computation was stopped before it finished.")
        return self.result

    def close(self) -> None:
        """Stop early: nothing more runs, ``result`` stays None."""
        self.closed = True
        self._steps.close()


class MapTask(Task[MapResult]):
    """One map, step by step."""

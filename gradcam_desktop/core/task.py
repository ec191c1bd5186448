"""``MapTask``: one map computed step by step, so a UI job can show progress and stop between steps.

The engine builds it (``GradCam.task``) from a generator that yields ``(done, total)`` after
each piece of work — a capture, or one batch of Score-CAM's masks — and returns the
``MapResult``. ``GradCam.explain`` is the same task run to the end.
"""

from __future__ import annotations

from collections.abc import Generator

from .types import MapResult

__all__ = ["MapTask"]


class MapTask:
    """One map computed step by step: ``step()`` until it returns True, then ``result``."""

    def __init__(self, steps: Generator[tuple[int, int], None, MapResult]):
        self._steps = steps
        self.progress: tuple[int, int] = (0, 1)
        self.result: MapResult | None = None

    def step(self) -> bool:
        """Do the next piece of work (a capture, or a batch of Score-CAM masks); True when finished."""
        if self.result is not None:
            return True
        try:
            self.progress = next(self._steps)
        except StopIteration as stop:
            self.result = stop.value
            return True
        return False

    def finish(self) -> MapResult:
        while not self.step():
            pass
        assert self.result is not None
        return self.result

    def close(self) -> None:
        """Stop early (nothing more runs)."""
        self._steps.close()

"""What the worker thread does next: a user request, one step of a background job, or wait.

Qt-free and thread-free on purpose: the rules of who goes first are the part of the worker that
is easy to get subtly wrong, so they live here where a test can drive them with a fake clock,
without a thread, a model or a sleep. ``GradCamWorker.run()`` only feeds requests in
(``submit``), asks ``next_action(now)`` and carries the answer out.

Rules:

* **user requests first**: a pending request always runs before any job step, so a click waits
  for at most the one step already running;
* **newest request wins**: a request whose ``supersedable`` attribute is true is dropped when a
  newer request of the same type is pending (of several queued ``Explain``s only the newest
  runs); every other request (``LoadModel``, ``LoadImages``, ``Shutdown``, ``ExportAll``, …) is
  never dropped and keeps its order;
* **jobs step when idle**: a job may step once no request has run for ``job.delay`` seconds
  (precompute waits a little so quick scrubbing is not slowed by it; Export All does not wait);
  among jobs allowed to step, the lowest ``priority`` goes first, then the oldest;
* **cancel**: a cancelled job is stepped at once (no delay, before other jobs) so it can finish
  up (Export All writes the rows done so far) and then say it has no more to do; adding a job of a ``group`` cancels the
  group's older job (a new picture's precompute replaces the previous picture's).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Job", "Run", "Scheduler", "Step", "Wait"]

log = logging.getLogger(__name__)


class Job:
    """A background task that advances in small steps and can be cancelled.

    Subclasses implement ``step`` (do one small piece of work; return whether more is left) and
    ``progress``. Class attributes tune the scheduling: ``priority`` (lower steps first),
    ``delay`` (seconds without a user request before the job may step), ``group`` (a newer job of
    the same group cancels this one) and ``visible`` (the worker reports its progress and end to
    the window). ``cancel`` only sets a flag: ``step`` reads it and winds up.
    """

    priority: int = 0
    delay: float = 0.0
    group: str | None = None
    visible: bool = False

    def __init__(self, job_id: int = 0) -> None:
        self.id = job_id
        self._cancelled = False

    def step(self) -> bool:
        """Do one small piece of work; False once the job is finished (or wound up after cancel)."""
        raise NotImplementedError

    def progress(self) -> tuple[int, int, str]:
        """(done, total, what is being worked on); total 0 = unknown."""
        return 0, 0, ""

    def summary(self) -> dict:
        """What the job did, for the window's final report (visible jobs)."""
        return {"cancelled": self.cancelled}

    def cancel(self) -> None:
        """Ask the job to stop; its next step winds it up."""
        self._cancelled = True

    @property
    def cancelled(self) -> bool:
        return self._cancelled


@dataclass(frozen=True)
class Run:
    """Run this user request now."""

    request: Any


@dataclass(frozen=True)
class Step:
    """Call ``job.step()`` once, then tell the scheduler with ``stepped``."""

    job: Job


@dataclass(frozen=True)
class Wait:
    """Nothing to do before a new request arrives or ``timeout`` seconds pass (None: no timeout)."""

    timeout: float | None


def _supersedes(newer: Any, older: Any) -> bool:
    return (type(newer) is type(older) and bool(getattr(older, "supersedable", False))
            and bool(getattr(newer, "supersedable", False)))


class Scheduler:
    """Pending user requests and background jobs; ``next_action(now)`` says what comes next.

    ``now`` is any monotonic clock in seconds (the worker passes ``time.monotonic()``, tests a
    number). Not thread-safe: one thread owns it (the worker's ``run()``).
    """

    def __init__(self) -> None:
        self._requests: list[Any] = []
        self._jobs: list[Job] = []
        self._idle_since = -math.inf  # when the last user request finished
        self._request_running = False
        self._superseded: list[Any] = []

    # -- input -----------------------------------------------------------------------------
    def submit(self, request: Any) -> None:
        """Queue a user request (it runs before any job step)."""
        self._requests.append(request)

    def add_job(self, job: Job) -> None:
        """Start a background job; an older job of the same group is cancelled."""
        if job.group is not None:
            for other in self._jobs:
                if other.group == job.group and not other.cancelled:
                    other.cancel()
        self._jobs.append(job)

    def cancel_job(self, job_id: int) -> bool:
        """Cancel the job with this id; False if there is no such job (already finished)."""
        found = False
        for job in self._jobs:
            if job.id == job_id:
                job.cancel()
                found = True
        return found

    def cancel_group(self, group: str) -> None:
        """Cancel every job of ``group`` (a new model makes precomputed maps pointless)."""
        for job in self._jobs:
            if job.group == group:
                job.cancel()

    def drop_requests(self, keep: Callable[[Any], bool]) -> None:
        """Forget the requests not yet handed out that ``keep`` refuses (a closed window's)."""
        self._requests = [request for request in self._requests if keep(request)]

    def cancel_all(self) -> None:
        """Cancel every job (the worker is stopping)."""
        for job in self._jobs:
            job.cancel()

    # -- output ----------------------------------------------------------------------------
    def next_action(self, now: float) -> Run | Step | Wait:
        """The next thing to do at time ``now``: ``Run`` a request, ``Step`` a job, or ``Wait``.

        The first call after a ``Run`` marks the end of that request: job delays count from it.
        """
        if self._request_running:
            self._idle_since = now
            self._request_running = False
        while self._requests:
            request = self._requests.pop(0)
            if any(_supersedes(newer, request) for newer in self._requests):
                log.debug("request %s superseded", getattr(request, "id", request))
                self._superseded.append(request)
                continue
            self._request_running = True
            return Run(request)
        if not self._jobs:
            return Wait(None)
        ready = [job for job in self._jobs if job.cancelled or now >= self._idle_since + job.delay]
        if ready:
            # Cancelled jobs first (they only wind up), then by priority; min() keeps the first
            # of equals, so the oldest job of the best priority.
            return Step(min(ready, key=lambda job: (not job.cancelled, job.priority)))
        return Wait(max(0.0, min(self._idle_since + job.delay for job in self._jobs) - now))

    def stepped(self, job: Job, more: bool) -> None:
        """Report the outcome of ``job.step()``: a job with nothing ``more`` to do is dropped."""
        if not more:
            self._jobs = [other for other in self._jobs if other is not job]

    # -- read-only views (snapshots) -------------------------------------------------------
    def pending(self) -> list[Any]:
        """The requests not yet handed out, oldest first."""
        return list(self._requests)

    def jobs(self) -> list[Job]:
        """The jobs not yet finished, oldest first."""
        return list(self._jobs)

    def take_superseded(self) -> list[Any]:
        """The requests dropped as superseded since the last call (for logs and tests)."""
        dropped, self._superseded = self._superseded, []
        return dropped

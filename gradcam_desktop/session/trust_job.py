"""The trust report of the map on screen as a worker job: one ``TrustTask`` step per job step.

``TrustRequest`` carries the ``MapResult`` the window shows (its raw map, layer, class, method and
score, and the model generation it came from); the worker answers with ``TrustJob``, which runs
``core.trust.trust_task`` on the worker's engine and picture one piece at a time (a batch of
forward passes, or one sanity step), so a click waits for at most one piece. The job reports
``jobProgress`` per step and hands a ``TrustOutcome`` to ``deliver`` at the end.

A newer map supersedes it: the worker cancels it when it gets an ``Explain`` for another map
(``supersede_trust``), and a newer ``TrustRequest`` cancels it through the job group. Opening
another model cancels it too (the generation check of each step).

Qt-free: a test can step the job by hand with a stand-in engine.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gradcam_desktop.core.errors import GradCamError
from gradcam_desktop.core.trust import TrustReport, trust_task
from gradcam_desktop.core.types import MapResult
from gradcam_desktop.session.requests import MapSpec, _next_id
from gradcam_desktop.session.results import failure_message
from gradcam_desktop.session.scheduler import Job

__all__ = ["TRUST_OPTIONS", "TrustJob", "TrustOutcome", "TrustRequest", "spec_of", "supersede_trust"]

log = logging.getLogger(__name__)

#: The report the window shows: the issue's 50 steps, the random-order baseline beside the map's
#: order, and the sanity check (at most 8 cascade steps, seeded so a report can be reproduced).
TRUST_OPTIONS = {"steps": 50, "baseline": True, "sanity": True, "sanity_steps": 8, "seed": 0}
#: About how long one step lasts (the core sizes its batches of forward passes to it): a click
#: waits for at most one step.
STEP_SECONDS = 0.15

def spec_of(result: MapResult) -> MapSpec:
    """The ``MapSpec`` of a map the worker sent (picture, layer, class, method and score): the query it
    answered, with the layer and class it resolved to."""
    if isinstance(result.query, MapSpec) and result.query.layer is not None and result.query.class_index is not None:
        return result.query
    return MapSpec(str(result.image_key), result.layer, result.class_index, result.method, result.versus_index,
                   bool(result.counterfactual), getattr(result, "region", None))


@dataclass
class TrustRequest:
    """Compute the trust report of ``result`` (a map the worker sent) with ``options`` (``trust_task``'s).

    Supersedable: of several queued, only the newest runs.
    """

    result: MapResult
    options: dict = field(default_factory=lambda: dict(TRUST_OPTIONS))
    supersedable: bool = True
    id: int = field(default_factory=_next_id)  # the requests' one counter: ids never collide


@dataclass(frozen=True)
class TrustOutcome:
    """What a trust job's ``jobPartial(id, ("trust", outcome))`` carries: the report of the map ``spec`` (model ``generation``).

    ``random_deletion``/``random_insertion`` are the random-order curves (p_0 … p_n) when the
    report has them, for drawing; ``seconds`` is the time the job's steps took.
    """

    spec: MapSpec
    generation: int
    report: TrustReport
    random_deletion: np.ndarray | None
    random_insertion: np.ndarray | None
    seconds: float

    @property
    def key(self) -> tuple | None:
        """The map's cache key (``map_key``): the window's report cache uses the same."""
        return self.spec.key(self.generation)


class TrustJob(Job):
    """The trust report of one map, one ``TrustTask`` step per job step.

    ``maker`` is the worker's ``maps.MapMaker`` (engine, pictures, generation); ``deliver(job id,
    TrustOutcome)`` and ``fail(job id, message)`` run on the worker thread.
    """

    group = "trust"  # a newer report cancels the older one
    visible = True

    def __init__(self, request: TrustRequest, maker: Any, deliver: Callable[[int, TrustOutcome], None],
                 fail: Callable[[int, str], None], *, log_hint: str = "") -> None:
        super().__init__(request.id)
        self.result = request.result
        self.spec = spec_of(request.result)
        self._options = dict(request.options)
        self._maker = maker
        self._deliver = deliver
        self._fail = fail
        self._log_hint = log_hint
        self._task: Any = None
        self._seconds = 0.0

    def step(self) -> bool:
        if self.result.generation != self._maker.generation:
            self.cancel()  # another model opened: this map explains the old one
        if self.cancelled:
            self._close()
            return False
        start = time.perf_counter()
        try:
            engine = self._maker.engine
            if self._task is None:
                image = self._maker.image(self.result.image_key)
                self._task = trust_task(engine, image, self.result, step_seconds=STEP_SECONDS, **self._options)
            done = self._task.step()
            self._seconds += time.perf_counter() - start
            if not done:
                return True
            report = self._task.result
            deletion, insertion = report.random_deletion_curve, report.random_insertion_curve
        except Exception as exc:  # noqa: BLE001 - a failed report is a message in the panel, never a dead thread
            if not isinstance(exc, GradCamError):
                log.error("trust report of %s failed unexpectedly", self.spec, exc_info=exc)
            self._close()
            self._fail(self.id, failure_message(exc, self._log_hint))
            return False
        self._task = None
        self._deliver(self.id, TrustOutcome(self.spec, self.result.generation, report, deletion, insertion,
                                            self._seconds))
        return False

    def _close(self) -> None:
        if self._task is not None:
            self._task.close()
        self._task = None

    def progress(self) -> tuple[int, int, str]:
        done, total = self._task.progress if self._task is not None else (0, 1)
        return int(done), int(total), "trust"


def supersede_trust(jobs: Sequence[Job], spec: MapSpec) -> None:
    """A newer map asked for (``spec``, resolved): cancel the trust reports of any other map."""
    for job in jobs:
        if isinstance(job, TrustJob) and not job.cancelled and job.spec != spec:
            job.cancel()

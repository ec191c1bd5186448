"""Maps made as jobs (``jobs.MapJob``): Score-CAM stepped and cancelled by hand with a stand-in
engine, and the real worker answering every method of one picture from one capture."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from gradcam_desktop.core import cams
from gradcam_desktop.core.errors import MethodError
from gradcam_desktop.core.types import MapResult, Prediction
from gradcam_desktop.session.jobs import MapJob, supersede_view
from gradcam_desktop.session.map_cache import MapCache
from gradcam_desktop.session.requests import MapSpec
from gradcam_desktop.session.scheduler import Job
from gradcam_desktop.ui.worker import GradCamWorker

TIMEOUT = 60_000


# -- the job without a thread (a stand-in engine) ---------------------------------------------------
class _Task:
    def __init__(self, steps):
        self.steps, self.progress, self.result, self.closed = steps, (0, steps), None, False

    def step(self):
        done = self.progress[0] + 1
        self.progress = (done, self.steps)
        if done == self.steps:
            self.result = _result("scorecam")
        return self.result is not None

    def close(self):
        self.closed = True


def _result(method, class_index=0):
    prediction = Prediction(np.array([0.7, 0.3]), [(0, "a", 0.7), (1, "b", 0.3)], "softmax")
    return MapResult(raw=np.ones((2, 2), np.float32), layer="conv", class_index=class_index, class_name="a",
                     score=0.7, prediction=prediction, method=method)


class _Maker:
    """The MapMaker's interface: Score-CAM in 3 steps, anything else at once; a cache."""

    def __init__(self):
        self.generation, self.cache, self.tasks = 1, MapCache(8, 10**9), []

    def resolve(self, spec):
        return spec

    def cached(self, spec):
        hit = self.cache.get(spec.key(self.generation))
        return hit.with_(cached=True) if hit is not None else None

    def stepwise(self, spec):
        return cams.method(spec.method).forward_passes

    def compute(self, spec):
        return _result(spec.method, spec.class_index)

    def task(self, spec):
        self.tasks.append(_Task(3))
        return self.tasks[-1]

    def finish(self, image_key, explanation, seconds, generation):
        self.cache.put(MapSpec(image_key, "conv", 0, explanation.method).key(generation), explanation)
        return explanation


def _steps(job: Job) -> int:
    count = 0
    while job.step():
        count += 1
    return count + 1


def test_map_job_steps_score_cam_and_cancel_closes_its_task():
    maker, delivered = _Maker(), []
    spec = MapSpec("img", "conv", 0, "scorecam")
    job = MapJob(7, [spec], maker, lambda *a: delivered.append(a), lambda *a: delivered.append(a))
    assert job.step() and job.progress()[:2] == (1, 3)
    assert supersede_view([job], spec, 8) and job.id == 8 and not job.cancelled  # same map: taken over
    assert not supersede_view([job], MapSpec("img", "conv", 1, "scorecam"), 9) and job.cancelled
    assert not job.step() and maker.tasks[0].closed and delivered == []
    assert job.summary() == {"cancelled": True, "maps": 0}
    # Run to the end: the map is delivered under the job's id, then comes from the cache.
    again = MapJob(10, [spec], maker, lambda *a: delivered.append(a), lambda *a: delivered.append(a))
    assert _steps(again) == 3 and delivered[-1][:2] == (10, 0) and delivered[-1][2].request_id == 10
    # A method the registry does not have cannot even be asked for: one line, before any request exists.
    with pytest.raises(MethodError, match="Unknown method 'nope'"):
        MapSpec("img", "conv", 0, "nope")
    grid = MapJob(11, [spec, MapSpec("img", "conv", 0, "gradcam")], maker,
                  lambda *a: delivered.append(a), lambda *a: delivered.append(a), group="grid")
    assert _steps(grid) == 2  # cached, computed: one step each
    assert [d[1] for d in delivered[-2:]] == [0, 1] and delivered[-2][2].cached


# -- switching method reuses the engine's capture ---------------------------------------------------
def test_switching_method_on_the_same_picture_does_not_run_the_model_again(qtbot, model_file, image_files):
    made = []

    def make(loaded, input_cache=0):
        from gradcam_desktop.core.gradcam import GradCam

        made.append(GradCam(loaded, input_cache=input_cache))
        return made[-1]

    # No map cache: every map is asked of the engine, which must answer from its capture cache.
    worker = GradCamWorker(cache_entries=0, precompute=False, modules={"gradcam": SimpleNamespace(GradCam=make)})
    with qtbot.waitSignal(worker.ready, timeout=TIMEOUT):
        worker.start()
    try:
        with qtbot.waitSignal(worker.modelLoaded, timeout=TIMEOUT):
            worker.load_model(str(model_file))
        with qtbot.waitSignal(worker.imagesLoaded, timeout=TIMEOUT) as loaded:
            worker.load_images([str(image_files[0])])
        key = loaded.args[1][0].key
        results = []
        # The methods that reduce a layer's capture (the others look at pixels or answers: no capture).
        methods = [m.name for m in cams.METHODS.values() if m.family in ("cam", "scorecam")]
        for method in methods:
            with qtbot.waitSignal(worker.mapReady, timeout=TIMEOUT) as answer:
                worker.explain(key, "backbone/last_conv", 1, method=method)
            results.append(answer.args[1])
        engine = made[0]
        # One capture ran (the first map); the seven other methods, Score-CAM included, reused it.
        assert [r.method for r in results] == methods and engine.capture_hits == len(methods) - 1 == 7
        assert engine.trace_counts["backbone/last_conv"] == 1
    finally:
        worker.stop()
        assert worker.wait(20_000)

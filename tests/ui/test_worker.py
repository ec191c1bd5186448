"""The worker thread: long request runs without a hang, newest request wins, errors, jobs, clean stop.

The ordering rules themselves are tested without a thread in test_scheduler.py; here the real
thread runs them with TensorFlow. Stand-ins (a slow download, a failing or slow engine) go in
through the worker's ``modules`` argument, never by reaching into it.
"""

from __future__ import annotations

import csv
import logging
import time
from types import SimpleNamespace

import numpy as np
import pytest

from gradcam_desktop.core.batch import OutputStyle
from gradcam_desktop.core.types import MapResult
from gradcam_desktop.session.map_cache import map_key
from gradcam_desktop.ui.worker import GradCamWorker

LAYERS = ["backbone/last_conv", "backbone/conv2", "backbone/conv1", "backbone/pool2", "backbone/pool1"]
TIMEOUT = 60_000  # first map of a layer traces a tf.function; generous for 2 loaded cores


def _started(qtbot, **kwargs):
    w = GradCamWorker(**kwargs)
    with qtbot.waitSignal(w.ready, timeout=TIMEOUT):
        w.start()
    return w


@pytest.fixture
def worker(qtbot):
    """A started worker; stopped and joined at the end whatever the test did."""
    w = _started(qtbot, cache_entries=0, precompute=False)
    yield w
    w.stop()
    assert w.wait(20_000)


def _engine_module(explain_hook):
    """A stand-in for core.gradcam whose GradCam runs ``explain_hook(args)`` before each real explain.

    The real engine is imported inside, on the worker thread, as the worker itself does.
    """

    def make(loaded, input_cache=0):
        from gradcam_desktop.core.gradcam import GradCam

        class Hooked(GradCam):
            def explain(self, image, layer=None, class_index=None, method="gradcam", **options):
                explain_hook(image, layer, class_index)
                return super().explain(image, layer, class_index, method, **options)

        return Hooked(loaded, input_cache=input_cache)

    return SimpleNamespace(GradCam=make)


def _load(qtbot, worker, model_file, image_files):
    with qtbot.waitSignal(worker.modelLoaded, timeout=TIMEOUT) as model:
        worker.load_model(str(model_file))
    with qtbot.waitSignal(worker.imagesLoaded, timeout=TIMEOUT) as images:
        worker.load_images([str(p) for p in image_files])
    return model.args[1], images.args[1]


def _wait_for(qtbot, signal, submit):
    """Connect first, then submit: a queued signal emitted before the connection would be missed."""
    ids = []
    with qtbot.waitSignal(signal, timeout=TIMEOUT, check_params_cb=lambda rid, *_a: rid in ids) as blocker:
        ids.append(submit())
    return blocker.args[1]


def _explain(qtbot, worker, key, layer, class_index):
    return _wait_for(qtbot, worker.mapReady, lambda: worker.explain(key, layer, class_index))


def test_model_info_and_images(qtbot, worker, model_file, image_files):
    info, images = _load(qtbot, worker, model_file, image_files)
    assert info.class_names == ("cat", "dog", "bird", "fish")
    assert info.default_layer == "backbone/last_conv"
    assert info.input_size == (32, 32) and info.sha256 and info.head == "softmax"
    assert [node.path for node in info.layers][0] == "backbone"
    assert [i.name for i in images] == ["a.png", "b.png", "c.png"]
    assert images[1].rgb.shape == (36, 30, 3)


def test_hundred_back_to_back_requests_with_mixed_layers(qtbot, worker, model_file, image_files):
    """The deadlock seen with QObject-in-thread slots showed up within 40 requests; run 120."""
    _info, images = _load(qtbot, worker, model_file, image_files)
    for i in range(120):
        image = images[i % len(images)]
        layer = LAYERS[i % len(LAYERS)]
        result = _explain(qtbot, worker, image.key, layer, i % 4)
        assert isinstance(result, MapResult)
        assert result.layer == layer and result.class_index == i % 4 and result.image_key == image.key
        assert result.display.shape == image.rgb.shape[:2] and result.method == "gradcam"
        assert not result.cached  # cache off: every request really ran TensorFlow


def test_newest_request_wins(qtbot, worker, model_file, image_files):
    _info, images = _load(qtbot, worker, model_file, image_files)
    _explain(qtbot, worker, images[0].key, LAYERS[0], 0)  # warm up (tracing)
    emitted = []
    worker.mapReady.connect(lambda rid, _r: emitted.append(rid))
    ids = [worker.explain(images[i % 3].key, LAYERS[i % len(LAYERS)], i % 4) for i in range(20)]
    qtbot.waitUntil(lambda: ids[-1] in emitted, timeout=TIMEOUT)
    qtbot.wait(300)
    # The newest is answered last, and of the 20 at most three ran: the one already running when the
    # others came, one that reached the engine alone while it ran (requests cross a pipe, in the
    # batches the worker thread found waiting: of each batch only the newest is sent), and the newest.
    assert emitted[-1] == ids[-1]
    assert len(emitted) <= 3


def test_errors_arrive_as_failed(qtbot, model_file, image_files, caplog):
    def boom(_image, layer, _class_index):
        if layer == "backbone/conv1":
            raise ValueError("kaboom")

    worker = _started(qtbot, cache_entries=0, precompute=False, modules={"gradcam": _engine_module(boom)})
    try:
        _info, images = _load(qtbot, worker, model_file, image_files)
        key = images[0].key
        for layer, class_index, words in (("nope", None, "No layer"), ("gap", None, "no spatial grid"),
                                          (None, 99, "out of range")):
            message = _wait_for(qtbot, worker.failed, lambda: worker.explain(key, layer, class_index))
            assert words in message
        message = _wait_for(qtbot, worker.failed, lambda: worker.explain("img-unknown", None, None))
        assert "no longer loaded" in message
        message = _wait_for(qtbot, worker.failed, lambda: worker.explain(key, None, None, method="nope"))
        assert "Unknown method 'nope'" in message
        with caplog.at_level(logging.ERROR, logger="gradcam_desktop.session.engine"):
            message = _wait_for(qtbot, worker.failed, lambda: worker.explain(key, "backbone/conv1", 2))
        assert message.startswith("Unexpected ValueError: kaboom; see the log at ")
        assert any(r.exc_info and "kaboom" in str(r.exc_info[1]) for r in caplog.records)
        assert _explain(qtbot, worker, key, "backbone/conv2", 2).class_index == 2  # the thread lives on
    finally:
        worker.stop()
        assert worker.wait(20_000)


def test_bad_images_and_empty_folder(qtbot, worker, tmp_path, image_files):
    (tmp_path / "notes.png").write_bytes(b"not an image at all")
    failures = []
    worker.imageFailed.connect(lambda name, message: failures.append((name, message)))
    with qtbot.waitSignal(worker.imagesLoaded, timeout=TIMEOUT) as loaded:
        worker.load_images([str(image_files[0]), str(tmp_path / "notes.png")])
    assert [i.name for i in loaded.args[1]] == ["a.png"]
    qtbot.waitUntil(lambda: bool(failures), timeout=5000)
    assert failures[0][0] == "notes.png"
    empty = tmp_path / "empty"
    empty.mkdir()
    message = _wait_for(qtbot, worker.failed, lambda: worker.load_images([str(empty)]))
    assert "no images" in message


def test_cache_and_precompute(qtbot, model_file, image_files):
    w = GradCamWorker()
    with qtbot.waitSignal(w.ready, timeout=TIMEOUT):
        w.start()
    try:
        _info, images = _load(qtbot, w, model_file, image_files)
        key = images[0].key
        first = _explain(qtbot, w, key, None, None)
        assert not first.cached
        again = _explain(qtbot, w, key, None, first.class_index)
        # From the engine's cache: the same map, not computed again (a new request id, across the process pipe).
        assert again.cached and np.array_equal(again.raw, first.raw) and again.request_id != first.request_id
        top3 = [index for index, _n, _p in first.prediction.top[:3]]
        wanted = {map_key(key, first.generation, "backbone/last_conv", c, "gradcam") for c in top3}
        qtbot.waitUntil(lambda: wanted <= set(w.cached_keys()), timeout=TIMEOUT)
    finally:
        w.stop()
        assert w.wait(20_000)


def test_stop_during_work_returns_promptly(qtbot, worker, model_file, image_files):
    _info, images = _load(qtbot, worker, model_file, image_files)
    done = []
    worker.mapReady.connect(lambda rid, _r: done.append(rid))
    for i in range(60):  # not supersedable: all of them would run
        worker.explain(images[i % 3].key, LAYERS[i % len(LAYERS)], i % 4, supersedable=False)
    qtbot.waitUntil(lambda: bool(done), timeout=TIMEOUT)
    start = time.monotonic()
    worker.stop()
    assert worker.wait(10_000)
    assert time.monotonic() - start < 5.0
    qtbot.wait(50)
    assert len(done) < 60


class _SlowDownload:
    """Stands in for core.models: a 'download' that only ends when cancelled."""

    def __init__(self):
        self.calls = 0

    def load_model(self, spec, *, trust, progress, cancel, output=None):
        from gradcam_desktop.core.errors import ZooDownloadError

        for chunk in range(100_000):
            if cancel():
                raise ZooDownloadError("Download cancelled")
            progress(chunk * 1024, 50 * 2**20)
            time.sleep(0.01)
        raise AssertionError("never cancelled")


def test_cancel_and_stop_during_download(qtbot):
    worker = _started(qtbot, modules={"models": _SlowDownload()})
    progress = []
    worker.progress.connect(lambda text, done, total: progress.append((text, done, total)))
    request = worker.load_model("zoo:Fake")
    qtbot.waitUntil(lambda: bool(progress), timeout=TIMEOUT)
    assert progress[0][2] == 50 * 2**20
    with qtbot.waitSignal(worker.failed, timeout=10_000, check_params_cb=lambda rid, _m: rid == request) as b:
        worker.cancel_download()
    assert "cancelled" in b.args[1]
    progress.clear()
    worker.load_model("zoo:Fake")
    qtbot.waitUntil(lambda: bool(progress), timeout=TIMEOUT)
    start = time.monotonic()
    worker.stop()
    assert worker.wait(10_000)
    assert time.monotonic() - start < 3.0


# -- Export All as a background job ------------------------------------------------------------
STEP_SECONDS = 0.15  # each map of the slow engine: rows take long enough to see clicks between them


@pytest.fixture
def slow_worker(qtbot, model_file, image_files):
    """A worker whose engine takes STEP_SECONDS per map, with 9 pictures loaded (3 files × 3)."""
    w = _started(qtbot, cache_entries=0, precompute=False,
                 modules={"gradcam": _engine_module(lambda *_a: time.sleep(STEP_SECONDS))})
    _info, images = _load(qtbot, w, model_file, image_files * 3)
    yield w, [image.key for image in images]
    w.stop()
    assert w.wait(20_000)


def _record(worker):
    events = []
    worker.jobProgress.connect(lambda job, done, total, _name: events.append(("progress", job, done, total)))
    worker.jobFinished.connect(lambda job, summary: events.append(("finished", job, summary)))
    worker.mapReady.connect(lambda rid, _r: events.append(("map", rid)))
    return events


def _done_so_far(events, job):
    return max((e[2] for e in events if e[0] == "progress" and e[1] == job), default=-1)


def _csv_rows(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_export_all_lets_a_click_go_first_between_rows(qtbot, slow_worker, tmp_path):
    worker, keys = slow_worker
    events = _record(worker)
    job = worker.export_all(keys, tmp_path / "out", layer=None, class_index=None, style=OutputStyle())
    qtbot.waitUntil(lambda: _done_so_far(events, job) >= 1, timeout=TIMEOUT)
    seen = _done_so_far(events, job)
    click = worker.explain(keys[0], "backbone/conv2", 3)
    qtbot.waitUntil(lambda: any(e[0] == "finished" for e in events), timeout=TIMEOUT)
    at_map = events.index(("map", click))
    done_at_map = _done_so_far(events[:at_map], job)
    # The click waited for the row being computed when it came (and at most one more row whose
    # signal had not reached this thread yet), not for the export: 9 rows of 0.15 s each.
    assert done_at_map <= seen + 2 and done_at_map < len(keys)
    summary = events[-1][2]
    assert events[-1][:2] == ("finished", job)
    assert summary["written"] == len(keys) and summary["failures"] == [] and not summary["cancelled"]
    rows = _csv_rows(summary["csv"])
    assert len(rows) == len(keys) and all(row["layer"] == "backbone/last_conv" for row in rows)
    assert len(list((tmp_path / "out").glob("*.json"))) == len(keys)


def test_cancel_job_writes_the_rows_done_so_far(qtbot, slow_worker, tmp_path):
    worker, keys = slow_worker
    events = _record(worker)
    job = worker.export_all(keys, tmp_path / "out", layer="backbone/conv2", class_index=1, style=OutputStyle())
    qtbot.waitUntil(lambda: _done_so_far(events, job) >= 1, timeout=TIMEOUT)
    worker.cancel_job(job)
    qtbot.waitUntil(lambda: any(e[0] == "finished" for e in events), timeout=TIMEOUT)
    summary = events[-1][2]
    assert summary["cancelled"] and 1 <= summary["written"] < len(keys)
    rows = _csv_rows(summary["csv"])
    assert len(rows) == summary["written"] == _done_so_far(events, job)
    assert {(row["layer"], row["explained_index"]) for row in rows} == {("backbone/conv2", "1")}


def test_export_all_without_a_model_fails_with_its_id(qtbot, worker, tmp_path):
    message = _wait_for(qtbot, worker.failed, lambda: worker.export_all(["img1"], tmp_path, layer=None,
                                                                       class_index=None, style=OutputStyle()))
    assert "Open a model first" in message


def test_stop_during_export_still_writes_the_table(qtbot, slow_worker, tmp_path):
    worker, keys = slow_worker
    events = _record(worker)
    job = worker.export_all(keys, tmp_path / "out", layer=None, class_index=None, style=OutputStyle())
    qtbot.waitUntil(lambda: _done_so_far(events, job) >= 1, timeout=TIMEOUT)
    worker.stop()
    assert worker.wait(20_000)
    rows = _csv_rows(tmp_path / "out" / "results.csv")
    assert 1 <= len(rows) < len(keys)

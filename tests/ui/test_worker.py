"""The worker thread: long request runs without a hang, newest request wins, errors, clean stop."""

from __future__ import annotations

import logging
import time

import pytest

from gradcam_desktop.ui.worker import Explain, GradCamWorker, LoadImages, LoadModel

LAYERS = ["backbone/last_conv", "backbone/conv2", "backbone/conv1", "backbone/pool2", "backbone/pool1"]
TIMEOUT = 60_000  # first map of a layer traces a tf.function; generous for 2 loaded cores


@pytest.fixture
def worker(qtbot):
    """A started worker; stopped and joined at the end whatever the test did."""
    w = GradCamWorker(cache_entries=0, precompute=False)
    with qtbot.waitSignal(w.ready, timeout=TIMEOUT):
        w.start()
    yield w
    w.stop()
    assert w.wait(20_000)


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
    assert info["class_names"] == ["cat", "dog", "bird", "fish"]
    assert info["default_layer"] == "backbone/last_conv"
    assert info["input_size"] == (32, 32) and info["sha256"] and info["head"] == "softmax"
    assert [node.path for node in info["layers"]][0] == "backbone"
    assert [i["name"] for i in images] == ["a.png", "b.png", "c.png"]
    assert images[1]["rgb"].shape == (36, 30, 3)


def test_hundred_back_to_back_requests_with_mixed_layers(qtbot, worker, model_file, image_files):
    """The deadlock seen with QObject-in-thread slots showed up within 40 requests; run 120."""
    _info, images = _load(qtbot, worker, model_file, image_files)
    for i in range(120):
        image = images[i % len(images)]
        layer = LAYERS[i % len(LAYERS)]
        result = _explain(qtbot, worker, image["key"], layer, i % 4)
        assert result["layer"] == layer and result["class_index"] == i % 4
        assert result["display"].shape == image["rgb"].shape[:2]
        assert not result["cached"]  # cache off: every request really ran TensorFlow


def test_newest_request_wins(qtbot, worker, model_file, image_files):
    _info, images = _load(qtbot, worker, model_file, image_files)
    _explain(qtbot, worker, images[0]["key"], LAYERS[0], 0)  # warm up (tracing)
    emitted = []
    worker.mapReady.connect(lambda rid, _r: emitted.append(rid))
    ids = [worker.explain(images[i % 3]["key"], LAYERS[i % len(LAYERS)], i % 4) for i in range(20)]
    qtbot.waitUntil(lambda: ids[-1] in emitted, timeout=TIMEOUT)
    qtbot.wait(300)
    # At most the one already running when the others arrived, then only the newest.
    assert emitted[-1] == ids[-1]
    assert len(emitted) <= 2


def test_superseded_explains_are_skipped_but_loads_are_kept():
    """The queue rule itself, without threads: only the newest Explain survives a drain."""
    worker = GradCamWorker()
    requests = [Explain("img1", None, i) for i in range(5)]
    load = LoadImages(["x.png"])
    model = LoadModel("demo")
    for r in requests[:2] + [load] + requests[2:] + [model]:
        worker._queue.put(r)
    batch = Explain("img1", None, 0, supersedable=False)
    worker._queue.put(batch)
    served = []
    while True:
        request = worker._next_request()
        if request is None:
            break
        served.append(request)
        if worker._queue.empty() and not worker._pending:
            break
    assert served == [load, requests[-1], model, batch]


def test_errors_arrive_as_failed(qtbot, worker, model_file, image_files, caplog):
    _info, images = _load(qtbot, worker, model_file, image_files)
    key = images[0]["key"]
    for layer, class_index, words in (("nope", None, "No layer"), ("gap", None, "no spatial grid"),
                                      (None, 99, "out of range")):
        message = _wait_for(qtbot, worker.failed, lambda: worker.explain(key, layer, class_index))
        assert words in message
    message = _wait_for(qtbot, worker.failed, lambda: worker.explain("img-unknown", None, None))
    assert "no longer loaded" in message

    def boom(*_args, **_kwargs):
        raise ValueError("kaboom")

    worker._gradcam.explain = boom  # runs on the worker thread at the next request
    with caplog.at_level(logging.ERROR, logger="gradcam_desktop.ui.worker"):
        message = _wait_for(qtbot, worker.failed, lambda: worker.explain(key, "backbone/conv1", 2))
    assert message.startswith("Unexpected error: ValueError: kaboom; see the log at ")
    assert any(r.exc_info and "kaboom" in str(r.exc_info[1]) for r in caplog.records)


def test_bad_images_and_empty_folder(qtbot, worker, tmp_path, image_files):
    (tmp_path / "notes.png").write_bytes(b"not an image at all")
    failures = []
    worker.imageFailed.connect(lambda name, message: failures.append((name, message)))
    with qtbot.waitSignal(worker.imagesLoaded, timeout=TIMEOUT) as loaded:
        worker.load_images([str(image_files[0]), str(tmp_path / "notes.png")])
    assert [i["name"] for i in loaded.args[1]] == ["a.png"]
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
        key = images[0]["key"]
        first = _explain(qtbot, w, key, None, None)
        assert not first["cached"]
        again = _explain(qtbot, w, key, None, first["class_index"])
        assert again["cached"] and again["raw"] is first["raw"]
        top3 = {index for index, _n, _p in first["top"][:3]}
        generation = first["generation"]
        qtbot.waitUntil(lambda: top3 <= {k[3] for k in w.cached_keys()
                                         if k[:3] == (key, generation, "backbone/last_conv")}, timeout=TIMEOUT)
    finally:
        w.stop()
        assert w.wait(20_000)


def test_stop_during_work_returns_promptly(qtbot, worker, model_file, image_files):
    _info, images = _load(qtbot, worker, model_file, image_files)
    done = []
    worker.mapReady.connect(lambda rid, _r: done.append(rid))
    for i in range(60):  # not supersedable: all of them would run
        worker.explain(images[i % 3]["key"], LAYERS[i % len(LAYERS)], i % 4, supersedable=False)
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

    def load_model(self, spec, *, trust, progress, cancel):
        from gradcam_desktop.core.errors import ZooDownloadError

        for chunk in range(100_000):
            if cancel():
                raise ZooDownloadError("Download cancelled")
            progress(chunk * 1024, 50 * 2**20)
            time.sleep(0.01)
        raise AssertionError("never cancelled")


def test_cancel_and_stop_during_download(qtbot, worker):
    worker._modules["models"] = _SlowDownload()  # read by the worker thread at the next request
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

"""The worker's background jobs stepped by hand through the scheduler: no worker thread, no model."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from gradcam_desktop.core.batch import OutputStyle
from gradcam_desktop.core.errors import ClassSelectionError
from gradcam_desktop.core.images import LoadedImage
from gradcam_desktop.core.types import CSV_FIELDS, MapResult, Prediction
from gradcam_desktop.session.jobs import CSV_NAME, ExportJob, PrecomputeJob, PrepareLayersJob, export_job
from gradcam_desktop.session.map_cache import map_key
from gradcam_desktop.session.requests import ExportAll, Precompute
from gradcam_desktop.session.scheduler import Scheduler, Step, Wait

NAMES = ["cat", "dog", "bird"]


class FakeEngine:
    """Stands in for GradCam: a map made of the picture's red channel, the top class always 'dog'."""

    def __init__(self, fail_on=()):
        self.fail_on = set(fail_on)
        self.calls = []
        self.loaded = type("Loaded", (), {"display_name": "Fake", "sha256": "0" * 64, "source": "fake.keras"})()

    def explain(self, image, layer=None, class_index=None, method="gradcam", *, versus=None, counterfactual=False,
                max_channels=None, progress=None):
        self.calls.append(image.name)
        if image.name in self.fail_on:
            raise ClassSelectionError(f"no class for {image.name}")
        probabilities = np.array([0.25, 0.5, 0.25], np.float32)
        index = 1 if class_index is None else int(class_index)
        return MapResult(raw=image.rgb[:4, :4, 0].astype(np.float32), layer=layer or "conv", class_index=index,
                         class_name=NAMES[index], score=float(probabilities[index]),
                         prediction=Prediction(probabilities, [(1, "dog", 0.5), (0, "cat", 0.25), (2, "bird", 0.25)],
                                               "softmax"),
                         method=method, model="fake.keras", image=image.path or image.name, versus_index=versus,
                         versus_name=None if versus is None else NAMES[versus], counterfactual=counterfactual)

    def task(self, image, layer=None, class_index=None, method="gradcam", **options):
        """Score-CAM's stepwise map: three mask batches, then the map (or the error at once)."""
        options.pop("step_seconds", None)
        return _Task(lambda: self.explain(image, layer, class_index, method, **options), steps=3)


class _Task:
    def __init__(self, make, steps):
        self.make, self.steps, self.progress, self.result = make, steps, (0, steps), None
        self.closed = False

    def step(self):
        done = self.progress[0] + 1
        self.progress = (done, self.steps)
        if done == self.steps:
            self.result = self.make()
        return self.result is not None

    def close(self):
        self.closed = True


def _pictures(count, names=None):
    rng = np.random.default_rng(0)
    names = names or [f"p{i}.png" for i in range(count)]
    return [LoadedImage(rgb=rng.integers(0, 256, (12, 10, 3), dtype=np.uint8), name=name, path=None)
            for name in names]


def _run(scheduler, limit=1000):
    """Step jobs until the scheduler waits; returns how many steps ran."""
    for count in range(limit):
        action = scheduler.next_action(0.0)
        if isinstance(action, Wait):
            return count
        assert isinstance(action, Step)
        scheduler.stepped(action.job, action.job.step())
    raise AssertionError("the jobs never finished")


def _table(folder):
    with open(folder / CSV_NAME, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return reader.fieldnames, list(reader)


# -- precompute -------------------------------------------------------------------------------
def test_precompute_computes_what_is_not_cached_one_map_per_step():
    cached = {map_key("img1", 1, "conv", 0, "gradcam")}
    computed = []
    job = PrecomputeJob(Precompute("img1", 1, "conv", [0, 2, 1]), cached,
                        lambda plan, c: computed.append((plan.image_key, c)), delay=0.1)
    assert job.delay == 0.1 and job.group == "precompute" and not job.visible
    assert job.step() and computed == [("img1", 2)] and job.progress() == (1, 2, "img1")
    assert not job.step() and computed == [("img1", 2), ("img1", 1)] and job.progress() == (2, 2, "img1")
    assert not job.step() and len(computed) == 2


def test_a_cancelled_precompute_computes_nothing():
    computed = []
    job = PrecomputeJob(Precompute("img1", 1, "conv", [0, 1]), set(), lambda p, c: computed.append(c), delay=0.0)
    job.cancel()
    assert not job.step() and computed == []


# -- Export All -------------------------------------------------------------------------------
def test_export_writes_a_picture_and_sidecar_per_row_then_the_table(tmp_path):
    engine, pictures = FakeEngine(fail_on={"p2.png"}), _pictures(4)
    out = tmp_path / "out"  # created by the job
    job = ExportJob(5, engine, pictures, out, layer="conv", class_index=None,
                    style=OutputStyle(alpha=0.3, colormap="viridis", sidecar_extra={"model_name": "Fake"}))
    assert job.visible and job.progress() == (0, 4, "p0.png")
    scheduler = Scheduler()
    scheduler.add_job(job)
    steps = _run(scheduler)
    assert steps == 5  # one row per step, and the last step finds the batch empty
    assert job.progress() == (4, 4, "")
    assert job.summary() == {"written": 3, "failures": [("p2.png", "no class for p2.png")], "cancelled": False,
                             "folder": str(out), "csv": str(out / CSV_NAME)}
    fields, rows = _table(out)
    assert fields == CSV_FIELDS
    assert [r["image"] for r in rows] == ["p0.png", "p1.png", "p2.png", "p3.png"]
    assert [r["error"] for r in rows] == ["", "", "no class for p2.png", ""]
    for row in rows[:2] + rows[3:]:
        sidecar = json.loads((out / row["image"].replace(".png", ".json")).read_text())
        assert (sidecar["class_index"], sidecar["layer"], sidecar["method"]) == (1, "conv", "gradcam")
        assert row["explained_name"] == sidecar["class_name"] == "dog" and row["layer"] == "conv"
        assert sidecar["alpha"] == pytest.approx(0.3) and sidecar["colormap"] == "viridis"
        assert sidecar["model_name"] == "Fake"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [CSV_NAME] + [f"p{i}{ext}" for i in (0, 1, 3) for ext in (".png", ".json")])


def test_cancel_writes_the_rows_done_so_far(tmp_path):
    engine, pictures = FakeEngine(), _pictures(8)
    job = ExportJob(6, engine, pictures, tmp_path, layer="conv", class_index=2)
    scheduler = Scheduler()
    scheduler.add_job(job)
    for _ in range(2):
        action = scheduler.next_action(0.0)
        scheduler.stepped(action.job, action.job.step())
    assert job.progress()[0] == 2
    scheduler.cancel_job(6)
    assert _run(scheduler) == 1  # one wind-up step
    assert len(engine.calls) < 8  # the batch stopped: not every picture was explained
    summary = job.summary()
    assert summary["cancelled"] and summary["written"] == 2 and summary["failures"] == []
    _fields, rows = _table(tmp_path)
    assert [r["image"] for r in rows] == ["p0.png", "p1.png"]
    assert {r["explained_index"] for r in rows} == {"2"}


def test_same_names_get_unique_stems(tmp_path):
    job = ExportJob(7, FakeEngine(), _pictures(3, ["x.png", "x.png", "clipboard"]), tmp_path, layer=None,
                    class_index=None)
    while job.step():
        pass
    written = sorted(p.name for p in tmp_path.glob("*.png"))
    assert len(written) == 3 and job.summary()["written"] == 3


def test_an_output_folder_that_cannot_be_created(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the folder should be")
    job = ExportJob(8, FakeEngine(), _pictures(2), blocker / "out", layer=None, class_index=None)
    assert not job.step()
    summary = job.summary()
    assert summary["written"] == 0 and summary["csv"] == ""
    assert len(summary["failures"]) == 1 and "Cannot create the output folder" in summary["failures"][0][1]


def test_a_folder_that_takes_no_files_stops_at_the_first_picture(tmp_path):
    (tmp_path / "p0.png").mkdir()  # a folder where the first overlay should go: its write fails
    engine = FakeEngine()
    job = ExportJob(9, engine, _pictures(6), tmp_path, layer=None, class_index=None)
    while job.step():
        pass
    summary = job.summary()
    assert summary["written"] == 0 and summary["cancelled"] and summary["csv"] == ""
    assert [name for name, _m in summary["failures"]] == ["p0.png"]
    assert len(engine.calls) < 6 and not (tmp_path / CSV_NAME).exists()


def test_a_bug_in_decorate_ends_the_job_with_a_report(tmp_path):
    def broken(_picture, _result):
        raise RuntimeError("decorator bug")

    job = ExportJob(10, FakeEngine(), _pictures(2), tmp_path, layer=None, class_index=None,
                    style=OutputStyle(decorate=broken), log_hint="; see the log")
    while job.step():
        pass
    message = job.summary()["failures"][-1][1]
    assert message == "Unexpected RuntimeError: decorator bug; see the log"


def test_export_job_from_a_request_names_the_model_and_skips_unknown_pictures(tmp_path):
    pictures = dict(zip(["img1", "img2"], _pictures(2), strict=True))
    request = ExportAll(["img2", "gone", "img1"], str(tmp_path), "conv", None,
                        OutputStyle(sidecar_extra={"versions": {"app": "9.9"}}))
    job = export_job(request, FakeEngine(), pictures)
    assert job.id == request.id and job.progress() == (0, 2, "p1.png")
    while job.step():
        pass
    assert job.summary()["failures"] == [("gone", "That image is no longer loaded; open it again.")]
    sidecar = json.loads((tmp_path / "p1.json").read_text())
    assert sidecar["model_name"] == "Fake" and sidecar["model_sha256"] == "0" * 64
    assert sidecar["versions"] == {"app": "9.9"}
    with pytest.raises(Exception, match="no pictures"):
        export_job(ExportAll(["gone"], str(tmp_path), None, None, None), FakeEngine(), pictures)


# -- PrepareLayersJob ----------------------------------------------------------------------------
def test_prepare_traces_the_nearest_layers_one_per_step_after_a_pause():
    layers = [f"l{i}" for i in range(8)]
    already = {"l4"}  # traced before: costs nothing, so the same step goes on to the next
    traced = []

    def prepare(layer):
        traced.append(layer)
        return layer not in already

    job = PrepareLayersJob(prepare, layers, "l3", nearest=4)
    scheduler = Scheduler()
    scheduler.add_job(job)
    assert isinstance(scheduler.next_action(0.0), Step)  # idle since forever: the delay has passed
    scheduler.submit("click")
    assert scheduler.next_action(1.0).request == "click"  # a user request goes first
    assert isinstance(scheduler.next_action(1.1), Wait)  # ... and the job waits for a pause again
    steps = 0
    action = scheduler.next_action(1.1 + job.delay)
    while isinstance(action, Step):
        steps += 1
        scheduler.stepped(action.job, action.job.step())
        action = scheduler.next_action(2.0 + steps)
    # Nearest first, the lower one on a tie; l4 (ready) shared a step with l2.
    assert traced == ["l2", "l4", "l1", "l5"] and steps == 3


def test_a_newer_prepare_job_replaces_the_older_one():
    traced = []
    first = PrepareLayersJob(lambda layer: traced.append(layer) or True, ["a", "b", "c"], "a", nearest=2)
    second = PrepareLayersJob(lambda layer: traced.append(layer) or True, ["a", "b", "c"], "c", nearest=2)
    scheduler = Scheduler()
    scheduler.add_job(first)
    scheduler.add_job(second)  # the user moved on: the first job's layers no longer matter
    assert first.cancelled and not first.step()
    assert traced == []


def test_score_cam_export_takes_one_mask_batch_per_step_and_records_the_score(tmp_path):
    engine = FakeEngine(fail_on={"p1.png"})
    job = ExportJob(11, engine, _pictures(2), tmp_path, layer="conv", class_index=1, method="scorecam", versus=0)
    steps = 0
    while job.step():
        steps += 1
        assert len(engine.calls) == (steps >= 3) + (steps >= 6)  # a map only after its third mask batch
    # Three steps per picture (the last one also writes its row), then the step that ends the job.
    assert steps + 1 == 7 and job.summary()["failures"] == [("p1.png", "no class for p1.png")]
    _fields, rows = _table(tmp_path)
    assert (rows[0]["method"], rows[0]["score_kind"], rows[0]["versus_name"]) == ("scorecam", "versus", "cat")
    assert [r["error"] for r in rows] == ["", "no class for p1.png"]
    sidecar = json.loads((tmp_path / "p0.json").read_text())
    assert (sidecar["method"], sidecar["score_kind"], sidecar["versus_name"]) == ("scorecam", "versus", "cat")


def test_a_cancelled_score_cam_export_stops_between_mask_batches(tmp_path):
    engine = FakeEngine()
    job = ExportJob(12, engine, _pictures(3), tmp_path, layer="conv", class_index=None, method="scorecam")
    for _ in range(4):
        assert job.step()
    job.cancel()
    assert not job.step() and engine.calls == ["p0.png"]
    assert job.summary()["written"] == 1 and job.summary()["cancelled"]


def test_export_all_of_many_files_decodes_them_in_the_batch_not_all_at_once(tmp_path):
    """Issue 9: pictures opened from files go to the batch as paths, so Export All never holds
    every picture decoded; the byte-bounded cache is not asked to decode the dropped ones again."""
    from PIL import Image

    from gradcam_desktop.core.images import load_image
    from gradcam_desktop.session.picture_cache import PictureCache

    pictures = _pictures(6)
    one = pictures[0].rgb.nbytes
    cache = PictureCache(max_bytes=2 * one)
    for picture in pictures:
        path = tmp_path / picture.name
        Image.fromarray(picture.rgb).save(path)
        cache.put(picture.name, load_image(path))
    assert cache.nbytes <= 2 * one  # only the last two stay decoded
    request = ExportAll([p.name for p in pictures], str(tmp_path / "out"), layer="conv", class_index=None,
                        style=OutputStyle())
    scheduler = Scheduler()
    scheduler.add_job(export_job(request, FakeEngine(), cache))
    _run(scheduler)
    _, rows = _table(tmp_path / "out")
    assert [r["image"] for r in rows] == [str(tmp_path / p.name) for p in pictures]
    assert all(r["error"] == "" for r in rows)
    assert cache.decodes == 0 and cache.nbytes <= 2 * one

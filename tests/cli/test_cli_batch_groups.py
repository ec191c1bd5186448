"""`gradcam batch` with issue 7: groups of pictures in one compiled call equal single maps, a failing
group falls back to one by one, Score-CAM runs per picture, results.csv and sidecars record the
method and the score, Ctrl-C keeps the table, a stop without write-ahead leaves a row per file.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from gradcam_desktop.commands import maps
from gradcam_desktop.core.batch import explain_batch
from gradcam_desktop.core.errors import MethodError
from gradcam_desktop.core.gradcam import GradCam
from gradcam_desktop.core.images import load_image

from method_bounds import LAYER, assert_within, captured, closed_form, make_setup, record_calls, run


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return make_setup(tmp_path_factory.mktemp("batch_methods"))


@pytest.fixture()
def recorded(monkeypatch):
    return record_calls(monkeypatch)


def test_batch_maps_are_one_compiled_call_and_equal_single_maps(setup, capsys, tmp_path, recorded):
    out_dir = tmp_path / "out"
    code, _, err = run(capsys, "batch", "-m", setup["model"], "--class", "dog", "--heatmaps", "--method", "layercam",
                       "--out-dir", out_dir, *setup["pictures"])
    assert code == 0, err
    # Five pictures of one model-input size: one batched call, no single ones.
    assert [(name, kwargs["images"]) for name, kwargs, _ in recorded] == [("explain_many", 5)]
    engine = setup["engine"]
    for picture in setup["pictures"]:
        single = engine.explain(load_image(picture), LAYER, 1, "layercam")
        A, g, _ = captured(engine, picture, 1)
        expected, tolerance = closed_form("layercam", A, g, setup["rho_a"], setup["rho_g"])
        batched = np.load(out_dir / f"{picture.stem}.npy")
        # Batch of 5 vs batch of 1: the same compiled function at another batch size may sum in
        # another order; both are evaluations of the model, within the bound of the closed form.
        assert_within(batched, expected, tolerance, f"{picture.name} batched")
        assert_within(single.raw, expected, tolerance, f"{picture.name} single")


def test_batch_gradcam_default_equals_single_explains(setup, capsys, tmp_path):
    out_dir = tmp_path / "out"
    code, _, err = run(capsys, "batch", "-m", setup["model"], "--class", "cat", "--heatmaps", "--out-dir", out_dir,
                       *setup["pictures"])
    assert code == 0, err
    engine = setup["engine"]
    for picture in setup["pictures"]:
        A, g, _ = captured(engine, picture, 0)
        expected, tolerance = closed_form("gradcam", A, g, setup["rho_a"], setup["rho_g"])
        single = engine.explain(load_image(picture), LAYER, 0)
        assert_within(np.load(out_dir / f"{picture.stem}.npy"), expected, tolerance, f"{picture.name} batched")
        assert_within(single.raw, expected, tolerance, f"{picture.name} single")


def test_results_csv_and_sidecars_record_method_and_score(setup, capsys, tmp_path):
    out_dir = tmp_path / "out"
    code, _, err = run(capsys, "batch", "-m", setup["model"], "--method", "gradcam++", "--class", "cat", "--versus",
                       "dog", "--out-dir", out_dir, *setup["pictures"][:3])
    assert code == 0, err
    assert "3 of 3 images explained with Grad-CAM++" in err
    with open(out_dir / "results.csv", newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert {"method", "score_kind", "versus_name", "explained_score"} <= set(reader.fieldnames)
    assert len(rows) == 3
    for row in rows:
        assert (row["method"], row["score_kind"], row["explained_name"], row["versus_name"]) == (
            "gradcam++", "versus", "cat", "dog")
        sidecar = json.loads((out_dir / f"{Path(row['image']).stem}.json").read_text())
        assert (sidecar["method"], sidecar["score_kind"], sidecar["versus_name"]) == ("gradcam++", "versus", "dog")
        # The table and the sidecar give the same explained score y_cat − y_dog.
        assert float(row["explained_score"]) == pytest.approx(sidecar["explained_score"], rel=1e-5)


def test_batch_scorecam_runs_per_picture_and_ctrl_c_keeps_the_table(setup, capsys, tmp_path, recorded, monkeypatch):
    seen: list[int] = []

    def masks(done, total):
        seen.append(done)
        if len([name for name, _, _ in recorded]) == 2:  # during the third picture
            raise KeyboardInterrupt

    monkeypatch.setattr(maps, "batch_progress", lambda total, with_masks: (None, masks if with_masks else None))
    out_dir = tmp_path / "out"
    code, _, err = run(capsys, "batch", "-m", setup["model"], "--method", "scorecam", "--max-channels", "4",
                       "--out-dir", out_dir, *setup["pictures"])
    assert code == 130 and seen
    assert [name for name, _, _ in recorded] == ["explain", "explain"]  # one picture at a time
    assert err.strip().splitlines()[-1] == "Interrupted after 2 of 5 images; results.csv lists them."
    with open(out_dir / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [Path(row["image"]).name for row in rows] == ["p0.png", "p1.png"]
    assert all(row["method"] == "scorecam" and not row["error"] for row in rows)


class FailingEngine:
    """A real engine whose batched call fails when a group holds ``bad``, and single calls on it too."""

    def __init__(self, engine: GradCam, bad: str):
        self.engine, self.bad, self.calls = engine, bad, []

    def explain_many(self, images, **kwargs):
        self.calls.append(len(images))
        if any(image.name == self.bad for image in images):
            raise RuntimeError("a kernel failed on one picture")
        return self.engine.explain_many(images, **kwargs)

    def explain(self, image, **kwargs):
        self.calls.append(1)
        if image.name == self.bad:
            raise MethodError("this picture cannot be explained")
        return self.engine.explain(image, **kwargs)


def test_a_failing_group_is_explained_one_by_one_and_only_the_bad_picture_fails(setup, tmp_path):
    pictures = setup["pictures"]
    engine = FailingEngine(setup["engine"], pictures[3].name)
    rows = list(explain_batch(engine, pictures, tmp_path, class_index=1, group_size=2))
    assert [Path(row.source).name for row in rows] == [p.name for p in pictures]
    assert [row.error for row in rows] == [None, None, None, "this picture cannot be explained", None]
    # Groups (p0 p1) (p2 p3) (p4): the second fails as a group, then runs one by one; p4 alone is a single call.
    assert engine.calls == [2, 2, 1, 1, 1]
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["p0.png", "p1.png", "p2.png", "p4.png"]


def test_a_bug_is_not_swallowed_by_the_fallback(setup, tmp_path):
    class Broken(FailingEngine):
        def explain(self, image, **kwargs):
            raise ZeroDivisionError("a bug")

    with pytest.raises(ZeroDivisionError):
        list(explain_batch(Broken(setup["engine"], setup["pictures"][0].name), setup["pictures"], tmp_path))


def test_without_write_ahead_a_step_is_one_group_and_a_stop_leaves_rows_for_every_file(setup, tmp_path, recorded):
    rows = explain_batch(setup["engine"], setup["pictures"], tmp_path, class_index=0, write_ahead=0, group_size=3)
    first = next(rows)
    # One compiled call for the first group of three, but only the first row's files exist yet.
    assert [(name, kwargs["images"]) for name, kwargs, _ in recorded] == [("explain_many", 3)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p0.json", "p0.png"] and first.written
    second = next(rows)
    rows.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p0.json", "p0.png", "p1.json", "p1.png"]
    assert second.written and len(recorded) == 1


def test_decode_errors_keep_their_place_in_a_group(setup, tmp_path):
    broken = tmp_path / "in" / "broken.png"
    broken.parent.mkdir()
    broken.write_bytes(setup["pictures"][0].read_bytes()[:80])
    sources = [setup["pictures"][0], broken, setup["pictures"][1]]
    rows = list(explain_batch(setup["engine"], sources, tmp_path, class_index=2))
    assert [Path(row.source).name for row in rows] == ["p0.png", "broken.png", "p1.png"]
    assert [row.error is None for row in rows] == [True, False, True] and rows[1].result is None
    assert rows[0].written and rows[2].written and not (tmp_path / "broken.png").exists()

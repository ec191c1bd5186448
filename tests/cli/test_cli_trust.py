"""Issue 8 on the command line: `gradcam trust` and `gradcam batch --trust`.

What is checked is the plumbing: the printed figures are core/trust.py's report of the same map
(its numbers are tests/core/test_trust*.py's) and the words are core/verdicts.py's. Both sides
run the same float32 graphs on the same inputs in this process; oneDNN's CPU kernels are
deterministic for a given shape and thread count, so the only slack allowed is a few ulps of a
probability (parallel reductions may be ordered differently between two traced functions):
rel = 1e-6 is ~8 float32 ulps, far below any plumbing mistake (a wrong class, curve or step).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from gradcam_desktop.cli import main
from gradcam_desktop.core import trust
from gradcam_desktop.core.gradcam import GradCam
from gradcam_desktop.core.images import load_image
from gradcam_desktop.core.models import load_model
from gradcam_desktop.core.verdicts import verdicts

IMAGES = Path(__file__).resolve().parents[2] / "images"
SLACK = 1e-6


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def engine():
    return GradCam(load_model("demo"))


def test_trust_json_is_the_report_of_the_same_map(capsys, engine):
    picture = IMAGES / "star.png"
    code, out, err = run(capsys, "trust", "--model", "demo", "--image", picture, "--method", "layercam",
                         "--class", "circle", "--baseline", "--json")
    assert code == 0, err
    data = json.loads(out)
    image = load_image(picture)
    result = engine.explain(image, class_index="circle", method="layercam")
    expected = trust.trust_report(engine, image, result, baseline=True)
    assert (data["method"], data["class_name"], data["steps"]) == ("layercam", "circle", 50)
    assert len(data["deletion_curve"]) == len(data["insertion_curve"]) == 51
    assert data["deletion_curve"] == pytest.approx(list(expected.deletion_curve), rel=SLACK)
    assert data["insertion_curve"] == pytest.approx(list(expected.insertion_curve), rel=SLACK)
    for key in ("deletion_auc", "insertion_auc", "average_drop", "random_deletion_auc", "random_insertion_auc"):
        assert data[key] == pytest.approx(getattr(expected, key), rel=SLACK), key
    assert data["increase_in_confidence"] == expected.increase_in_confidence
    assert [s["randomized"] for s in data["sanity"]] == [s.randomized for s in expected.sanity]
    assert len(data["sanity"]) == 8 and data["sanity"][-1]["randomized"][-1] == "block1_conv"
    for got, want in zip(data["sanity"], expected.sanity, strict=True):
        assert got["spearman"] == pytest.approx(want.spearman, abs=SLACK)
    words = verdicts(expected, "circle")
    assert {k: v["light"] for k, v in data["verdicts"].items()} == {k: v.light for k, v in words.items()}


def test_trust_text_has_one_verdict_per_figure(capsys):
    code, out, err = run(capsys, "trust", "--model", "demo", "--image", IMAGES / "square.png", "--no-sanity")
    assert code == 0, err
    assert out.splitlines()[0].startswith("Trust figures for Grad-CAM · 'square'")
    assert "Deletion AUC" in out and "Insertion AUC" in out and "Average Drop" in out
    assert "Sanity" not in out and "random order" not in out  # --no-sanity, no --baseline
    assert sum(line.strip().split(" ", 1)[0] in ("✔", "•", "✘") for line in out.splitlines()) == 3


def test_trust_wrong_combinations_are_one_line(capsys):
    code, out, err = run(capsys, "trust", "--model", "demo", "--image", IMAGES / "star.png",
                         "--versus", "circle", "--counterfactual")
    assert code == 1 and out == "" and len(err.strip().splitlines()) == 1 and err.startswith("Error:")
    code, out, err = run(capsys, "trust", "--model", "demo", "--image", IMAGES / "nothing-here.png")
    assert code == 1 and len(err.strip().splitlines()) == 1


def test_batch_trust_adds_the_figures_as_columns(capsys, tmp_path, engine):
    pictures = [IMAGES / "star.png", IMAGES / "triangle.png"]
    code, _, err = run(capsys, "batch", "--model", "demo", "--trust", "--out-dir", tmp_path, *pictures)
    assert code == 0, err
    with open(tmp_path / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0])[-6:] == ["deletion_auc", "insertion_auc", "average_drop", "increase_in_confidence",
                                  "sanity_spearman", "error"]
    means = []
    for row, picture in zip(rows, pictures, strict=True):
        image = load_image(picture)
        report = trust.trust_report(engine, image, engine.explain(image))
        assert float(row["deletion_auc"]) == pytest.approx(report.deletion_auc, rel=SLACK, abs=1e-6)
        assert float(row["insertion_auc"]) == pytest.approx(report.insertion_auc, rel=SLACK, abs=1e-6)
        assert float(row["average_drop"]) == pytest.approx(report.average_drop, rel=SLACK, abs=1e-4)
        assert row["increase_in_confidence"] == str(report.increase_in_confidence).lower()
        assert float(row["sanity_spearman"]) == pytest.approx(report.sanity[-1].spearman, abs=1e-6)
        means.append(report.deletion_auc)
    # The summary line: the mean over the pictures (printed with 3 decimals).
    assert f"deletion AUC {sum(means) / len(means):.3f}" in err

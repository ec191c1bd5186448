"""Issue 9 on the command line: `gradcam triage`.

The rows are core/triage.py's (checked against the engine's own predictions in
tests/core/test_triage.py); here the plumbing: the tables say what the rows say, the summary is
counted from the table by hand, one map per mistake. The CLI's model and this test's are two
loads of the same weights running the same compiled batch-32 passes: their probabilities may
differ by the rounding of two passes, reference.probability_rtol of discrepancy(model), plus the
table's 6 printed significant digits.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from reference import discrepancy, probability_rtol

from gradcam_desktop.cli import main
from gradcam_desktop.core import demo_data
from gradcam_desktop.core.gradcam import GradCam
from gradcam_desktop.core.images import load_image
from gradcam_desktop.core.models import load_model
from gradcam_desktop.core.triage import TRIAGE_FIELDS, read_labels, triage

PRINTED = 5e-6  # half a unit of the 6th significant digit, relative


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def draw(path: Path, cls: int, seed: int, size=(140, 180)) -> Path:
    rgb, _, _ = demo_data.make_sample(np.random.default_rng(seed), size, cls)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1]))
    return path


@pytest.fixture(scope="module")
def engine():
    return GradCam(load_model("demo"))


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> Path:
    """Two pictures per class by name, one class by index; two shapes in another class's folder."""
    root = tmp_path_factory.mktemp("labelled")
    for cls, folder in enumerate(["circle", "Square", "2", "STAR"]):
        for i in range(2):
            draw(root / folder / f"img{i}.png", cls, 10 * cls + i)
    draw(root / "circle" / "img9.png", 3, 90)  # a star labelled circle
    draw(root / "Square" / "img9.png", 0, 91)  # a circle labelled square
    return root


def read_table(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_tables_json_and_one_map_per_mistake(capsys, tmp_path, engine, labelled):
    out = tmp_path / "out"
    code, stdout, err = run(capsys, "triage", "--model", "demo", "--out-dir", out, labelled, "--json")
    assert code == 0, err
    table = read_table(out / "triage.csv")
    assert list(table[0]) == TRIAGE_FIELDS and len(table) == 10

    # The table says what the core's rows of the same pictures say.
    labels = read_labels(labelled, engine.class_names)
    rho = discrepancy(engine.model)
    for written, row in zip(table, triage(engine, labels.pictures), strict=True):
        assert (written["image"], int(written["true_index"]), written["true_name"]) == (
            row.image, row.true_index, row.true_name)
        assert (int(written["predicted_index"]), written["predicted_name"]) == (row.predicted_index, row.predicted_name)
        assert written["correct"] == ("true" if row.correct else "false") and written["error"] == ""
        rtol = probability_rtol(engine.logits(engine.model_input(load_image(row.image)))[0], rho) + PRINTED
        assert float(written["probability"]) == pytest.approx(row.probability, rel=rtol)
        assert float(written["true_probability"]) == pytest.approx(row.true_probability, rel=rtol)

    # The summary, counted from the table by hand.
    data = json.loads(stdout)
    names = engine.class_names
    assert data["classes"] == names and data["count"] == 10 and data["errors"] == 0
    right = sum(row["correct"] == "true" for row in table)
    assert data["accuracy"] == pytest.approx(right / 10, abs=1e-12)
    cells = Counter((int(row["true_index"]), int(row["predicted_index"])) for row in table)
    assert data["confusion"] == [[cells[(t, p)] for p in range(4)] for t in range(4)]
    confusion = list(csv.reader((out / "confusion.csv").read_text(encoding="utf-8").splitlines()))
    assert confusion[0][1:] == names and [[int(c) for c in line[1:]] for line in confusion[1:]] == data["confusion"]

    # --explain wrong (the default): one picture per mistake, two halves wide.
    mistakes = [row for row in table if row["correct"] == "false"]
    assert {(Path(r["image"]).parent.name, Path(r["image"]).name) for r in mistakes} >= {
        ("circle", "img9.png"), ("Square", "img9.png")}
    maps = sorted(p.name for p in (out / "maps").iterdir())
    assert maps == sorted(f"{Path(r['image']).parent.name}-{Path(r['image']).stem}.png" for r in mistakes)
    picture = cv2.imread(str(out / "maps" / "circle-img9.png"))
    assert picture.shape[1] >= 2 * 180


def test_text_summary_explain_none_and_all(capsys, tmp_path, labelled):
    code, stdout, err = run(capsys, "triage", "--model", "demo", "--out-dir", tmp_path / "none", "--explain", "none",
                            labelled)
    assert code == 0, err
    table = read_table(tmp_path / "none" / "triage.csv")
    right = sum(row["correct"] == "true" for row in table)
    assert f"Accuracy {right / len(table) * 100:.1f} % ({right} of {len(table)} pictures right)" in stdout
    pairs = Counter((r["true_name"], r["predicted_name"]) for r in table if r["correct"] == "false")
    assert pairs and "Most confused (true → predicted):" in stdout
    lines = [line.split() for line in stdout.splitlines() if "→" in line and ":" in line and "(" not in line]
    assert {(true, predicted.rstrip(":"), int(n)) for true, _, predicted, n in lines} == {
        (t, p, n) for (t, p), n in pairs.items()}  # at most 5 pairs here: all of them listed
    assert not (tmp_path / "none" / "maps").exists()
    code, _, err = run(capsys, "triage", "--model", "demo", "--out-dir", tmp_path / "all", "--explain", "all",
                       "--method", "layercam", labelled)
    assert code == 0, err
    assert len(list((tmp_path / "all" / "maps").glob("*.png"))) == len(table)


def test_unknown_folders_warn_once_and_unreadable_files_are_rows(capsys, tmp_path):
    root = tmp_path / "pictures"
    draw(root / "circle" / "a.png", 0, 1)
    draw(root / "dogs" / "b.png", 0, 2)
    draw(root / "cats" / "c.png", 0, 3)
    (root / "circle" / "broken.jpg").write_bytes(b"\xff\xd8\xff truncated")
    code, stdout, err = run(capsys, "triage", "--model", "demo", "--out-dir", tmp_path / "out", root, "--explain",
                            "none")
    assert code == 1  # like `gradcam batch`: a picture that could not be read fails the run, after the tables
    warnings = [line for line in err.splitlines() if line.startswith("Warning:")]
    assert len(warnings) == 1 and "'cats' (1)" in warnings[0] and "'dogs' (1)" in warnings[0]
    assert "circle, square, triangle, star" in warnings[0]
    table = read_table(tmp_path / "out" / "triage.csv")
    assert [Path(r["image"]).name for r in table] == ["a.png", "broken.jpg"]
    assert table[1]["error"] and table[1]["predicted_index"] == "" and "broken.jpg" in table[1]["error"]
    assert "1 could not be read" in stdout


def test_csv_input_and_one_line_errors(capsys, tmp_path, labelled):
    listing = tmp_path / "labels.csv"
    listing.write_text(f"path,label\n{labelled / 'STAR' / 'img0.png'},star\n{labelled / 'circle' / 'img0.png'},0\n",
                       encoding="utf-8")
    code, stdout, err = run(capsys, "triage", "--model", "demo", "--out-dir", tmp_path / "o", listing, "--json",
                            "--explain", "none")
    assert code == 0, err
    assert json.loads(stdout)["count"] == 2
    for argv, words in [((tmp_path / "missing",), "not found"), ((listing, "--method", "nope"), "nope"),
                        ((listing, "--layer", "nope"), "nope")]:
        code, _, err = run(capsys, "triage", "--model", "demo", "--out-dir", tmp_path / "x", *argv)
        assert code == 1 and err.startswith("Error: ") and words in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("command", ["triage", "patterns"])
def test_a_value_head_is_refused_in_one_line_and_writes_nothing(capsys, tmp_path, command):
    """A regression output predicts no class: there is nothing to compare with the folder's labels."""
    import keras

    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1, name="age")(keras.layers.GlobalAveragePooling2D()(x)))
    model.compile(loss="mse")  # the file records it: the unit is a value, not a binary logit
    path = tmp_path / "age.keras"
    model.save(path)
    (tmp_path / "folder" / "age").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "folder" / "age" / "a.png"), np.zeros((16, 16, 3), np.uint8))
    out_dir = tmp_path / "out"
    code, _out, err = run(capsys, command, "-m", path, tmp_path / "folder", "--out-dir", out_dir)
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert "gives values (a regression head), not classes" in err
    assert not out_dir.exists()

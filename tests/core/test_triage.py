"""Issue 9's core: labelled pictures in, one row per picture out (core/labels.py, core/triage.py).

Predictions are checked against the engine's own single-picture ``predict``. The two runs use
the same float32 model at different batch sizes (32, padded, against 1), so oneDNN may pick other
kernels and summation orders: each pass is within ρ = pass_error(model) of exact for every logit
relative to the logits' magnitude, hence the two within ρ_engine + ρ_engine = discrepancy(model),
and a probability within reference.probability_rtol of that (softmax's log-Lipschitz bound).
"""

from __future__ import annotations

import gc
import math
import threading
import weakref
from pathlib import Path

import cv2
import numpy as np
import pytest
from reference import discrepancy, probability_rtol

from gradcam_desktop.core import demo_data
from gradcam_desktop.core import triage as triage_module
from gradcam_desktop.core.errors import LabelError
from gradcam_desktop.core.gradcam import GradCam
from gradcam_desktop.core.images import load_image
from gradcam_desktop.core.models import load_model
from gradcam_desktop.core.triage import (
    TRIAGE_FIELDS,
    LabelledPicture,
    TriageRow,
    confusion_matrix,
    most_confused,
    read_labels,
    triage,
    triage_batch,
    write_confusion_csv,
    write_triage_csv,
)

NAMES = ["circle", "square", "golden retriever", "star"]


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")  # read_labels never decodes: any file with an image extension is a picture
    return path


def draw(path: Path, cls: int, seed: int, size=(150, 190)) -> Path:
    """A demo-model picture of class ``cls`` (not necessarily the class of its folder)."""
    rgb, _, _ = demo_data.make_sample(np.random.default_rng(seed), size, cls)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1]))
    return path


@pytest.fixture(scope="module")
def engine():
    return GradCam(load_model("demo"))


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> Path:
    """Demo pictures in class folders; two drawn shapes sit in the wrong folder, one file is not a picture."""
    root = tmp_path_factory.mktemp("labelled")
    seed = 0
    for cls, name in enumerate(demo_data.CLASS_NAMES):
        for i in range(3):
            seed += 1
            size = (128, 128) if i == 0 else (150 + 7 * i, 190 - 11 * i)  # resized, or not
            draw(root / name.upper() / f"{name}_{i}.png", cls, seed, size)
    draw(root / "SQUARE" / "really_a_star.png", 3, 100)
    draw(root / "CIRCLE" / "really_a_triangle.jpg", 2, 101)
    (root / "STAR" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return root


# -- labels ----------------------------------------------------------------------------
def test_folder_labels_by_name_index_underscore_and_case(tmp_path):
    for folder, files in {"CIRCLE": 2, "1": 1, "Golden_Retriever": 2, "sTaR": 1, "dogs": 2, "misc": 1,
                          "empty": 0}.items():
        (tmp_path / folder).mkdir()
        for i in range(files):
            touch(tmp_path / folder / f"p{i}.jpg")
    touch(tmp_path / "loose.png")  # no subfolder, no label
    labels = read_labels(tmp_path, NAMES)
    got = sorted((Path(p.path).parent.name, Path(p.path).name, p.true_index) for p in labels.pictures)
    assert got == [("1", "p0.jpg", 1), ("CIRCLE", "p0.jpg", 0), ("CIRCLE", "p1.jpg", 0),
                   ("Golden_Retriever", "p0.jpg", 2), ("Golden_Retriever", "p1.jpg", 2), ("sTaR", "p0.jpg", 3)]
    assert labels.skipped == {"dogs": 2, "misc": 1}
    warning = labels.warning
    assert warning is not None and "\n" not in warning
    assert "'dogs' (2)" in warning and "'misc' (1)" in warning and "3 pictures" in warning
    assert all(name in warning for name in NAMES)


def test_all_known_names_give_no_warning_and_a_large_model_is_not_listed_in_full(tmp_path):
    touch(tmp_path / "square" / "a.png")
    assert read_labels(tmp_path, NAMES).warning is None
    touch(tmp_path / "zebra" / "b.png")
    many = [f"class{i}" for i in range(1000)]
    many[7] = "square"
    labels = read_labels(tmp_path, many)
    assert [p.true_index for p in labels.pictures] == [7]
    assert "1000 classes" in labels.warning and "class999" not in labels.warning and "'zebra' (1)" in labels.warning


def test_an_index_out_of_range_is_an_unknown_name(tmp_path):
    touch(tmp_path / "4" / "a.png")
    touch(tmp_path / "0" / "b.png")
    labels = read_labels(tmp_path, NAMES)
    assert [p.true_index for p in labels.pictures] == [0] and labels.skipped == {"4": 1}


@pytest.mark.parametrize("header", [True, False])
def test_csv_labels_relative_paths_header_or_not(tmp_path, header):
    table = tmp_path / "sub" / "labels.csv"
    elsewhere = touch(tmp_path / "elsewhere" / "x.png")
    lines = ["path,label"] if header else []
    lines += ["pics/a.png,Circle", "pics/b.png , 3", f"{elsewhere},golden_retriever", "", "pics/c.png,unicorn",
              "pics/d.png,unicorn", "pics/e.png,dragon"]
    table.parent.mkdir()
    table.write_text("\ufeff" + "\n".join(lines) + "\n", encoding="utf-8")  # with Excel's byte-order mark
    labels = read_labels(table, NAMES)
    assert [(p.path, p.true_index) for p in labels.pictures] == [
        (str(tmp_path / "sub" / "pics" / "a.png"), 0), (str(tmp_path / "sub" / "pics" / "b.png"), 3),
        (str(elsewhere), 2)]
    assert labels.skipped == {"unicorn": 2, "dragon": 1}
    assert "\n" not in labels.warning and "'unicorn' (2)" in labels.warning


def test_csv_and_source_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a.png,circle\nb.png\n", encoding="utf-8")
    with pytest.raises(LabelError, match="line 2"):
        read_labels(bad, NAMES)
    unknown_only = tmp_path / "unknown.csv"
    unknown_only.write_text("a.png,unicorn\n", encoding="utf-8")
    with pytest.raises(LabelError, match="unicorn") as caught:
        read_labels(unknown_only, NAMES)
    assert "\n" not in str(caught.value)
    with pytest.raises(LabelError, match="not found"):
        read_labels(tmp_path / "missing", NAMES)
    (tmp_path / "nothing").mkdir()
    with pytest.raises(LabelError, match="No labelled pictures"):
        read_labels(tmp_path / "nothing", NAMES)


# -- triage ----------------------------------------------------------------------------
def test_predictions_equal_the_engines_single_picture_predict(engine, labelled):
    labels = read_labels(labelled, engine.class_names)
    assert labels.warning is None
    rows = list(triage(engine, labels.pictures, batch=32))
    assert [row.image for row in rows] == [p.path for p in labels.pictures]  # in order
    rho = discrepancy(engine.model)
    checked = 0
    for row in rows:
        if row.error:
            continue
        image = load_image(row.image)
        expected = engine.predict(image).probabilities
        logits = engine.logits(engine.model_input(image))[0]
        rtol = probability_rtol(logits, rho)
        order = np.argsort(-expected)
        assert expected[order[0]] * (1 - rtol) > expected[order[1]] * (1 + rtol), "top class undecided"
        assert row.predicted_index == int(order[0]) and row.predicted_name == engine.class_names[row.predicted_index]
        assert row.probability == pytest.approx(expected[row.predicted_index], rel=rtol, abs=0)
        assert row.true_probability == pytest.approx(expected[row.true_index], rel=rtol, abs=0)
        others = np.delete(expected, row.true_index)
        bound = rtol * (expected[row.true_index] + others.max())
        assert abs(row.margin - (expected[row.true_index] - others.max())) <= bound
        assert row.correct == (row.predicted_index == row.true_index) == (row.margin > 0)
        checked += 1
    assert checked == len(rows) - 1
    wrong = {Path(row.image).name for row in rows if not row.correct and not row.error}
    assert {"really_a_star.png", "really_a_triangle.jpg"} <= wrong  # drawn shapes in another class's folder


def test_a_corrupt_file_is_an_error_row_not_a_stop(engine, labelled):
    labels = read_labels(labelled, engine.class_names)
    rows = list(triage(engine, labels.pictures, batch=4))
    assert len(rows) == len(labels.pictures) == 15
    (bad,) = [row for row in rows if row.error]
    assert Path(bad.image).name == "corrupt.png" and "corrupt.png" in bad.error and "\n" not in bad.error
    assert bad.predicted_index is None and math.isnan(bad.probability) and math.isnan(bad.margin)
    assert (bad.true_index, bad.true_name) == (3, "star")
    assert bad.csv_row()["correct"] == "" and bad.csv_row()["probability"] == ""


def test_a_fixed_size_model_is_traced_once_whatever_the_last_batch(labelled):
    fresh = GradCam(load_model("demo"))
    labels = read_labels(labelled, fresh.class_names)
    rows = list(triage(fresh, labels.pictures, batch=4))  # 15 pictures: batches of 4, 4, 4, 3
    assert len(rows) == 15
    assert fresh.trace_counts == {None: 1}


def test_triage_batch_equals_triage(engine, labelled):
    labels = read_labels(labelled, engine.class_names)
    streamed = list(triage(engine, labels.pictures, batch=8))
    direct = triage_batch(engine, [p.path for p in labels.pictures], [p.true_index for p in labels.pictures],
                          batch=8)
    assert len(direct) == len(streamed)
    rho = discrepancy(engine.model)  # the same compiled passes; at most two passes' rounding apart
    for a, b in zip(direct, streamed):
        assert (a.image, a.true_index, a.predicted_index, a.correct, a.error) == (
            b.image, b.true_index, b.predicted_index, b.correct, b.error)
        if not a.error:
            rtol = probability_rtol(engine.logits(engine.model_input(load_image(a.image)))[0], rho)
            assert a.probability == pytest.approx(b.probability, rel=rtol, abs=0)
            assert a.true_probability == pytest.approx(b.true_probability, rel=rtol, abs=0)


def test_cancel_stops_between_batches(engine, labelled, monkeypatch):
    pictures = read_labels(labelled, engine.class_names).pictures * 2  # 30
    decoded = []
    real = triage_module.prepare
    monkeypatch.setattr(triage_module, "prepare", lambda e, p: decoded.append(p) or real(e, p))
    rows: list[TriageRow] = []
    asked = []

    def cancel() -> bool:
        asked.append(len(rows))
        return len(rows) >= 4

    for row in triage(engine, pictures, batch=4, cancel=cancel):
        rows.append(row)
    assert len(rows) == 4 and asked == [0, 4]  # asked before each batch, never inside one
    assert len(decoded) <= 3 * 4  # the batch done and two ahead; the rest never decoded


def test_memory_holds_a_bounded_number_of_decoded_pictures(engine, tmp_path, monkeypatch):
    """Decoded pictures live only inside a worker call; model inputs at most three batches (one computed,
    two decoding ahead) — whatever the number of pictures."""
    source = draw(tmp_path / "one.png", 1, 5, (200, 260))
    pictures = [LabelledPicture(str(source), 1)] * 120
    lock = threading.Lock()
    alive = {"decoded": 0, "inputs": 0}
    peak = dict(alive)

    def track(kind: str, thing) -> None:
        with lock:
            alive[kind] += 1
            peak[kind] = max(peak[kind], alive[kind])

        def gone() -> None:
            with lock:
                alive[kind] -= 1

        weakref.finalize(thing, gone)

    real_load, real_prepare = triage_module.load_image, triage_module.prepare

    def counted_load(path):
        image = real_load(path)
        track("decoded", image)
        return image

    def counted_prepare(e, path):
        array = real_prepare(e, path)
        track("inputs", array)
        return array

    monkeypatch.setattr(triage_module, "load_image", counted_load)
    monkeypatch.setattr(triage_module, "prepare", counted_prepare)
    count = 0
    for _row in triage(engine, pictures, batch=8, workers=2):
        count += 1
    gc.collect()
    assert count == 120
    assert 1 <= peak["decoded"] <= 2  # the two workers
    assert 8 <= peak["inputs"] <= 3 * 8
    assert alive == {"decoded": 0, "inputs": 0}


# -- confusion and tables --------------------------------------------------------------
def _row(true: int, predicted: int | None) -> TriageRow:
    nan = float("nan")
    if predicted is None:
        return TriageRow("x.png", true, NAMES[true], None, "", nan, nan, False, nan, "broken")
    return TriageRow("x.png", true, NAMES[true], predicted, NAMES[predicted], 0.5, 0.5, true == predicted, 0.0)


def test_confusion_matrix_and_most_confused_against_a_hand_count():
    pairs = [(0, 0), (0, 0), (0, 1), (1, 1), (1, 0), (1, 0), (2, 3), (3, 2), (3, 2), (3, 3), (2, None)]
    matrix = confusion_matrix([_row(t, p) for t, p in pairs], 4)
    assert matrix.tolist() == [[2, 1, 0, 0],
                               [2, 1, 0, 0],
                               [0, 0, 0, 1],
                               [0, 0, 2, 1]]  # counted by hand; the error row is left out
    assert most_confused(matrix, NAMES, k=3) == [("square", "circle", 2), ("star", "golden retriever", 2),
                                                 ("circle", "square", 1)]
    assert most_confused(np.eye(4, dtype=int), NAMES) == []


def test_the_tables_are_written_with_their_columns(tmp_path, engine, labelled):
    import csv

    labels = read_labels(labelled, engine.class_names)
    rows = list(triage(engine, labels.pictures))
    write_triage_csv(tmp_path / "triage.csv", rows)
    with open(tmp_path / "triage.csv", newline="", encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    assert list(table[0]) == TRIAGE_FIELDS and len(table) == len(rows)
    for written, row in zip(table, rows):
        assert written["image"] == row.image and written["true_name"] == row.true_name
        if row.error:
            assert written["correct"] == "" and written["error"] == row.error
        else:
            assert written["correct"] == ("true" if row.correct else "false")
            assert float(written["probability"]) == pytest.approx(row.probability, rel=5e-6)  # 6 digits
            assert int(written["predicted_index"]) == row.predicted_index
    matrix = confusion_matrix(rows, 4)
    write_confusion_csv(tmp_path / "confusion.csv", matrix, engine.class_names)
    lines = list(csv.reader((tmp_path / "confusion.csv").read_text(encoding="utf-8").splitlines()))
    assert lines[0][1:] == engine.class_names
    assert [line[0] for line in lines[1:]] == engine.class_names
    assert [[int(c) for c in line[1:]] for line in lines[1:]] == matrix.tolist()

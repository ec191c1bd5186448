"""A picture's files are one unit: overlay, raw map and sidecar all written, or none of them.

A full disk is made real for one file: its temporary file is opened on /dev/full, where the kernel
answers the write with ENOSPC (elsewhere the open itself fails with ENOSPC). Tests run as root,
so a read-only folder would not stop a write.
"""

from __future__ import annotations

import csv
import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gradcam_desktop.core import files
from gradcam_desktop.core.batch import OutputStyle, explain_batch, write_csv
from gradcam_desktop.core.errors import GradCamError, OutputError
from gradcam_desktop.core.gradcam import GradCam
from gradcam_desktop.core.types import CSV_FIELDS

from model_factory import gap_dense_model, save_and_load

NUMBERS = [name for name in CSV_FIELDS if name not in ("image", "error")]
SUFFIXES = (".png", ".npy", ".json")


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return GradCam(save_and_load(gap_dense_model((32, 32, 3), classes=3, seed=5), tmp_path_factory.mktemp("units")))


@pytest.fixture()
def pictures(tmp_path):
    rng = np.random.default_rng(7)
    folder = tmp_path / "in"
    folder.mkdir()
    paths = []
    for i, size in enumerate(((40, 50), (32, 32), (64, 20))):
        paths.append(folder / f"p{i}.png")
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(paths[-1])
    return paths


def full_disk_for(monkeypatch, name: str) -> list[str]:
    """Every write of a file called ``name`` fails as on a full disk; returns the temp files it began."""
    real = files._open_temp  # noqa: SLF001 - the one place a write begins: where a full disk is made
    begun: list[str] = []

    def open_temp(path):
        tmp, fd = real(path)
        if Path(path).name != name:
            return tmp, fd
        begun.append(tmp)
        os.close(fd)
        if os.path.exists("/dev/full"):
            return tmp, os.open("/dev/full", os.O_WRONLY)  # the write itself fails: ENOSPC
        os.unlink(tmp)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files, "_open_temp", open_temp)
    return begun


def _table(path: Path) -> dict[str, dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return {Path(row["image"]).stem: row for row in csv.DictReader(handle)}


@pytest.mark.parametrize("write_ahead", [None, 0], ids=["cli-write-ahead", "export-all-step-by-step"])
@pytest.mark.parametrize("failing", SUFFIXES)
def test_a_full_disk_at_one_file_leaves_none_of_that_pictures_files(engine, pictures, tmp_path, monkeypatch,
                                                                     failing, write_ahead):
    out = tmp_path / "out"
    out.mkdir()
    begun = full_disk_for(monkeypatch, f"p1{failing}")
    rows = list(explain_batch(engine, pictures, out, style=OutputStyle(heatmaps=True), write_ahead=write_ahead))

    assert begun  # the failure really happened, at that file
    assert [row.error is not None for row in rows] == [False, True, False]
    assert "the disk is full" in rows[1].error and f"p1{failing}" in rows[1].error
    assert rows[1].written == {} and not list(out.glob("p1.*"))
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left
    for i in (0, 2):  # the other pictures are whole
        assert {p.suffix for p in out.glob(f"p{i}.*")} == set(SUFFIXES)
        assert set(rows[i].written) == {"overlay", "raw", "sidecar"}
        np.testing.assert_array_equal(np.load(out / f"p{i}.npy"), rows[i].result.raw)
        assert json.loads((out / f"p{i}.json").read_text())["files"] == {"overlay": f"p{i}.png", "raw": f"p{i}.npy"}

    monkeypatch.undo()  # results.csv goes to a disk with room
    write_csv(out / "results.csv", rows)
    table = _table(out / "results.csv")
    assert table["p1"]["error"] == rows[1].error
    assert all(table["p1"][name] == "" for name in NUMBERS), table["p1"]  # an error row carries no numbers
    for stem in ("p0", "p2"):
        assert not table[stem]["error"] and table[stem]["probability"] and table[stem]["layer"]


def test_a_full_disk_on_a_second_run_keeps_the_first_runs_files(engine, pictures, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    list(explain_batch(engine, pictures, out, style=OutputStyle(heatmaps=True, alpha=0.2)))
    before = {p.name: p.read_bytes() for p in out.glob("p1.*")}
    assert len(before) == 3

    full_disk_for(monkeypatch, "p1.json")
    rows = list(explain_batch(engine, pictures, out, style=OutputStyle(heatmaps=True, alpha=0.9)))

    assert rows[1].error and rows[1].written == {}
    assert {p.name: p.read_bytes() for p in out.glob("p1.*")} == before  # nothing lost, nothing half-new
    assert (out / "p0.png").read_bytes() != b"" and json.loads((out / "p0.json").read_text())["alpha"] == 0.9


def test_a_rename_that_fails_midway_takes_back_the_files_already_renamed(tmp_path, monkeypatch):
    old = {tmp_path / "a.png": b"old png", tmp_path / "a.json": b"old json"}
    for path, data in old.items():
        path.write_bytes(data)
    real_replace = os.replace

    def replace(src, dst):
        if Path(dst).name == "a.json" and ".tmp" in str(src):  # the sidecar's rename into place
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", replace)
    contents = [(tmp_path / "a.png", b"new png"), (tmp_path / "a.npy", b"new npy"), (tmp_path / "a.json", b"new json")]
    with pytest.raises(OutputError, match=r"Cannot write .*a\.json: the disk is full\. Choose another folder\."):
        files.atomic_write_all(contents)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == {"a.png": b"old png", "a.json": b"old json"}


def test_a_failed_measure_is_an_error_row_without_files_or_numbers(engine, pictures, tmp_path):
    out = tmp_path / "out"
    out.mkdir()

    def measure(image, result):
        if image.name == "p1.png":
            raise GradCamError("The sanity check could not run on this picture.")
        return {"deletion_auc": "0.25"}

    rows = list(explain_batch(engine, pictures, out, measure=measure))
    assert rows[1].error.startswith("The sanity check") and rows[1].written == {} and not list(out.glob("p1.*"))
    write_csv(out / "results.csv", rows, ["deletion_auc"])
    table = _table(out / "results.csv")
    assert all(table["p1"][name] == "" for name in [*NUMBERS, "deletion_auc"])
    assert table["p0"]["deletion_auc"] == "0.25" and (out / "p0.png").is_file()

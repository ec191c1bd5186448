"""Output paths on the command line: one line for a mistaken path, no folder before the model opens,
and explain's overlay and raw map written as a unit."""

from __future__ import annotations

import csv
import errno
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gradcam_desktop.cli import main
from gradcam_desktop.core import files

from model_factory import gap_dense_model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("out_paths")
    model = folder / "shapes.keras"
    gap_dense_model((32, 32, 3), classes=3, seed=11).save(model)
    (folder / "shapes.labels.txt").write_text("cat\ndog\nbird\n")
    (folder / "notes.keras").write_text("not a model")
    pictures = folder / "pictures"
    pictures.mkdir()
    rng = np.random.default_rng(1)
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)).save(pictures / name)
    return {"model": model, "refused": folder / "notes.keras", "pictures": pictures, "a": pictures / "a.png"}


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(code: int, err: str) -> str:
    lines = err.splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("Error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize("option", ["--out", "--heatmap"])
@pytest.mark.parametrize("name", ["over\nlay.png", "over\rlay.png", "over\x1b[31mlay.png", "over\u2028lay.png",
                                  "no\nfolder/overlay.png"])
def test_explain_output_path_with_a_control_character_is_one_line(setup, capsys, tmp_path, monkeypatch, option,
                                                                    name):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "explain", "-m", setup["model"], "-i", setup["a"], option, name)
    line = one_error_line(code, err)
    assert repr(name) in line and option in line and "without them" in line  # the path as typed, escaped
    assert out == "" and not list(tmp_path.iterdir())


@pytest.mark.parametrize("command", ["batch", "triage"])
def test_out_dir_with_a_line_break_is_one_line_and_creates_nothing(setup, capsys, tmp_path, command):
    out_dir = tmp_path / "results\nfor monday"
    code, _, err = run(capsys, command, "-m", setup["model"], "--out-dir", out_dir, setup["pictures"])
    line = one_error_line(code, err)
    assert repr(str(out_dir)) in line and "--out-dir" in line
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("extra", [["--model", "refused"], ["--layer", "nope"], ["--class", "zebra"],
                                   ["--method", "nope"]])
def test_batch_creates_no_out_dir_before_the_model_and_options_are_accepted(setup, capsys, tmp_path, extra):
    model = setup["refused"] if extra[1] == "refused" else setup["model"]
    options = [] if extra[0] == "--model" else extra
    out_dir = tmp_path / "new" / "results"
    code, _, err = run(capsys, "batch", "-m", model, *options, "--out-dir", out_dir, setup["pictures"])
    one_error_line(code, err)
    assert not (tmp_path / "new").exists()


def test_triage_creates_no_out_dir_for_a_refused_model(setup, capsys, tmp_path):
    code, _, err = run(capsys, "triage", "-m", setup["refused"], "--out-dir", tmp_path / "t", setup["pictures"])
    one_error_line(code, err)
    assert not (tmp_path / "t").exists()


def test_out_dir_under_a_file_is_refused_before_the_model_opens(setup, capsys, tmp_path):
    (tmp_path / "a_file").write_text("x")
    # The refused model would be the error if the folder were not checked first.
    code, _, err = run(capsys, "batch", "-m", setup["refused"], "--out-dir", tmp_path / "a_file" / "out",
                       setup["pictures"])
    line = one_error_line(code, err)
    assert "Cannot create the output folder" in line and "is a file" in line and "Choose another folder" in line


def test_a_picture_named_with_a_line_break_gets_one_skipped_line(setup, capsys, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "bro\nken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    Image.open(setup["a"]).save(folder / "good.png")
    code, _, err = run(capsys, "batch", "-m", setup["model"], "--out-dir", tmp_path / "out", folder)
    assert code == 1
    lines = err.splitlines()
    assert len(lines) == 2, err
    assert lines[0].startswith("Skipped bro\\nken.png: ") and lines[1].startswith("1 of 2 images explained")
    with open(tmp_path / "out" / "results.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2


def test_explain_writes_the_overlay_and_the_raw_map_as_a_unit(setup, capsys, tmp_path, monkeypatch):
    real = files._open_temp  # noqa: SLF001 - the one place a write begins: where a full disk is made

    def open_temp(path):
        if Path(path).suffix == ".npy":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(path)

    monkeypatch.setattr(files, "_open_temp", open_temp)
    code, out, err = run(capsys, "explain", "-m", setup["model"], "-i", setup["a"],
                         "--out", tmp_path / "o.png", "--heatmap", tmp_path / "raw.npy")
    line = one_error_line(code, err)
    assert "raw.npy: the disk is full" in line
    assert out == "" and not list(tmp_path.iterdir())  # no overlay without its raw map

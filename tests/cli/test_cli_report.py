"""``gradcam report`` (issue 19): one self-contained HTML page — nothing loaded from elsewhere, every
name escaped, the numbers those of triage and patterns on the same folder."""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

import pytest

from gradcam_desktop import cli

SAMPLES = Path(__file__).resolve().parents[2] / "images"


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> Path:
    """The demo's sample pictures in class folders, one of them mislabelled and one with a hostile name."""
    root = tmp_path_factory.mktemp("report") / "labelled"
    for name in ("circle", "square", "triangle", "star"):
        (root / name).mkdir(parents=True)
        shutil.copy(SAMPLES / f"{name}.png", root / name / f"{name}.png")
    shutil.copy(SAMPLES / "star.png", root / "circle" / "<img src=x onerror=alert(1)>.png")  # a star labelled circle
    shutil.copy(SAMPLES / "two_objects_circle_star.png", root / "circle" / "two.png")
    return root


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_page_is_self_contained_escaped_and_agrees_with_triage(capsys, labelled, tmp_path):
    page = tmp_path / "report.html"
    code, out, err = run(capsys, "report", "-m", "demo", "-o", page, labelled)
    assert code == 0, err
    text = page.read_text(encoding="utf-8")
    # Self-contained: every src and href is a data: URI; no script; a policy that forbids loading anything.
    assert re.findall(r'(?:src|href)\s*=\s*"(?!data:image/png;base64,)', text) == []
    assert "<script" not in text.lower() and "default-src 'none'" in text
    # The hostile file name is shown as text, never as markup.
    assert "onerror=alert(1)" in text and "<img src=x" not in text and "&lt;img src=x onerror=alert(1)&gt;" in text
    # The accuracy is triage's on the same folder; every mistake triage counts is shown (fewer than 12).
    code, triage_out, err = run(capsys, "triage", "-m", "demo", "--explain", "none", "--json",
                                "--out-dir", tmp_path / "triage", labelled)
    assert code == 0, err
    summary = json.loads(triage_out)
    assert f"{summary['accuracy'] * 100:.1f} %" in text
    wrong = summary["count"] - round(summary["accuracy"] * summary["count"])
    assert wrong >= 1 and text.count('class="mistake"') == wrong
    # One picture per cluster (as patterns.csv counts them) and one per mistake, all decodable PNGs.
    code, patterns_out, err = run(capsys, "patterns", "-m", "demo", "--json", "--out-dir", tmp_path / "p", labelled)
    assert code == 0, err
    clusters = json.loads(patterns_out)["clusters"]
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    assert len(images) == len(clusters) + wrong
    assert all(base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n" for data in images)
    assert "Report → " in out


def test_a_page_that_is_not_html_or_has_no_folder_is_one_line(capsys, labelled, tmp_path):
    for target, words in ((tmp_path / "report.txt", "should end in .html"),
                          (tmp_path / "missing" / "report.html", "its folder does not exist")):
        code, _out, err = run(capsys, "report", "-m", "demo", "-o", target, labelled)
        assert code == 1 and words in err and len(err.strip().splitlines()) == 1
        assert not target.exists()

"""``gradcam patterns`` (issue 19): a labelled folder's maps clustered per class.

The Clever Hans case is planted: a model that calls a picture "bright" from its mean brightness,
shown 20 pictures whose bright blob is near the centre and 4 whose only bright thing is a patch in
the top-left corner (a "watermark"). Both kinds are "bright" for the model; its maps put the
evidence on the blob or on the corner, so the corner pictures must come out as their own small,
far cluster, flagged. Inside shares are checked against the core's own computation on the engine's
maps (an object mask per picture).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from gradcam_desktop import cli
from gradcam_desktop.core.gradcam import GradCam
from gradcam_desktop.core.images import load_image
from gradcam_desktop.core.inside_share import inside_share
from gradcam_desktop.core.models import load_model
from patterns_factory import CENTRED, WATERMARKED
import patterns_factory



@pytest.fixture(scope="module")
def brightness_model(tmp_path_factory) -> Path:
    """patterns_factory's hand-set brightness model."""
    return patterns_factory.brightness_model(tmp_path_factory.mktemp("patterns_model"))


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> tuple[Path, Path]:
    """(labelled folder, masks folder): centred blobs and corner watermarks, all labelled 'bright'."""
    return patterns_factory.watermark_folder(tmp_path_factory.mktemp("patterns_data"))


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _rows(path: Path) -> list[dict]:
    return list(csv.DictReader(path.open(encoding="utf-8")))


def test_the_watermark_pictures_are_their_own_flagged_cluster(capsys, brightness_model, folder, tmp_path):
    labelled, masks = folder
    out = tmp_path / "out"
    code, stdout, err = run(capsys, "patterns", "-m", brightness_model, "--layer", "feat", "--masks", masks,
                            "--out-dir", out, "--json", labelled)
    assert code == 0, err
    report = json.loads(stdout)
    assert report["pictures"] == CENTRED + WATERMARKED and report["skipped"] == 0
    rows = _rows(out / "patterns.csv")
    assert len(rows) == CENTRED + WATERMARKED and {r["class"] for r in rows} == {"bright"}
    watermarked = {r["cluster"] for r in rows if int(Path(r["image"]).stem[3:]) >= CENTRED}
    centred = {r["cluster"] for r in rows if int(Path(r["image"]).stem[3:]) < CENTRED}
    assert len(watermarked) == 1 and watermarked.isdisjoint(centred)  # the corner pictures: one cluster of their own
    flagged = {(c["cluster"], c["outlier"]) for c in _rows(out / "clusters.csv")}
    (corner,) = watermarked
    assert (corner, "true") in flagged and all(o == "false" for c, o in flagged if c != corner)
    assert all(r["outlier"] == ("true" if r["cluster"] == corner else "false") for r in rows)
    # One PNG a cluster, named in the JSON.
    pictures = [c["picture"] for c in report["clusters"]]
    assert len(pictures) == len(flagged) and all(Path(p).is_file() for p in pictures)
    assert any(c["outlier"] and c["size"] == WATERMARKED for c in report["clusters"])


def test_inside_shares_are_the_cores_on_the_engines_maps(capsys, brightness_model, folder, tmp_path):
    labelled, masks = folder
    out = tmp_path / "out"
    code, _out, err = run(capsys, "patterns", "-m", brightness_model, "--layer", "feat", "--masks", masks,
                          "--clusters", "2", "--out-dir", out, labelled)
    assert code == 0, err
    engine = GradCam(load_model(str(brightness_model)))
    rows = _rows(out / "patterns.csv")
    for row in rows[:: max(1, len(rows) // 6)]:
        image = load_image(row["image"])
        mask = cv2.imread(str(masks / f"{Path(row['image']).stem}.png"), cv2.IMREAD_GRAYSCALE) > 0
        result = engine.explain(image, "feat", 0)
        assert float(row["inside_share"]) == pytest.approx(inside_share(result.raw, mask, image.rgb.shape[:2]),
                                                           rel=1e-5)
    # A centred picture's evidence lies on its blob; a watermarked one's in the corner, outside its mask.
    centred = [float(r["inside_share"]) for r in rows if int(Path(r["image"]).stem[3:]) < CENTRED]
    corner = [float(r["inside_share"]) for r in rows if int(Path(r["image"]).stem[3:]) >= CENTRED]
    assert min(centred) > max(corner)
    clusters = _rows(out / "clusters.csv")
    assert len(clusters) == 2  # --clusters 2 fixes the count
    for cluster in clusters:
        members = [float(r["inside_share"]) for r in rows if r["cluster"] == cluster["cluster"]]
        assert float(cluster["mean_inside_share"]) == pytest.approx(float(np.mean(members)), rel=1e-5)
    assert not math.isnan(float(clusters[0]["mean_inside_share"]))


def test_bad_options_are_one_line_before_the_model_opens(capsys, folder, tmp_path):
    labelled, _masks = folder
    for extra, words in ((["--clusters", "0"], "--clusters must be between 1 and 50"),
                         (["--masks", tmp_path / "nowhere"], "is not a folder")):
        code, _out, err = run(capsys, "patterns", "-m", "demo", *extra, "--out-dir", tmp_path / "o", labelled)
        assert code == 1 and words in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "o").exists()

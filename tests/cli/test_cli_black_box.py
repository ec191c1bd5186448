"""The CLI on black-box files (issue 16): files that show no layers get the methods they can run,
in the same commands, files and rows as a Keras model; what they cannot run is one line."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest

from blackbox_factory import LABELS, build_exports
from gradcam_desktop import cli
from gradcam_desktop.core.gradcam import INPUT_LAYER, GradCam
from gradcam_desktop.core.images import load_image
from gradcam_desktop.core.models import load_model


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    return build_exports(tmp_path_factory)


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pictures")
    rng = np.random.default_rng(11)
    for label in LABELS[:2]:
        (folder / label).mkdir()
        for i in range(2):
            cv2.imwrite(str(folder / label / f"{i}.png"), rng.integers(0, 256, (30, 34, 3), dtype=np.uint8))
    return folder


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_explain_without_method_takes_occlusion_and_says_so(capsys, exports, pictures, tmp_path):
    npy = tmp_path / "map.npy"
    code, out, err = run(capsys, "explain", "-m", exports.tflite, "-i", pictures / "cat" / "0.png",
                         "--window", "8", "--stride", "4", "--heatmap", npy, "--json")
    assert code == 0, err
    record = json.loads(out)
    assert record["method"] == "occlusion" and record["layer"] == INPUT_LAYER and record["class_name"] in LABELS
    assert "shows no layers: explained with Occlusion" in err
    # --heatmap holds the signed attribution (the overlay shows its ReLU): the engine's own, to the bit.
    engine = GradCam(load_model(str(exports.tflite)))
    expected = engine.explain(load_image(pictures / "cat" / "0.png"), method="occlusion",
                              method_options={"window": 8, "stride": 4}).attribution
    np.testing.assert_array_equal(np.load(npy), expected)
    assert record["heatmap_shape"] == [32, 32]


def test_a_method_the_file_cannot_run_is_one_line_naming_those_it_can(capsys, exports, pictures):
    code, _, err = run(capsys, "explain", "-m", exports.tflite, "-i", pictures / "cat" / "0.png", "--method", "layercam")
    assert code == 1
    (line,) = err.strip().splitlines()[-1:]
    assert "LayerCAM needs a layer and gradients" in line and "occlusion, rise" in line
    assert not any("Traceback" in text for text in err.splitlines())


def test_batch_of_a_savedmodel_with_a_pixel_method_writes_attributions(capsys, exports, pictures, tmp_path):
    out_dir = tmp_path / "out"
    code, _, err = run(capsys, "batch", "-m", exports.savedmodel, "--method", "integrated-gradients", "--steps", "4",
                       "--heatmaps", "--out-dir", out_dir, *(pictures / label for label in LABELS[:2]))
    assert code == 0, err
    rows = list(csv.DictReader((out_dir / "results.csv").open(encoding="utf-8")))
    assert len(rows) == 4 and {row["method"] for row in rows} == {"integrated-gradients"}
    assert {row["layer"] for row in rows} == {INPUT_LAYER} and not any(row["error"] for row in rows)
    attributions = sorted(out_dir.glob("*.npy"))
    assert len(attributions) == 4 and all(np.load(p).shape == (32, 32, 3) for p in attributions)


def test_trust_and_triage_of_an_onnx_file(capsys, exports, pictures, tmp_path):
    path = exports.onnx
    code, out, err = run(capsys, "trust", "-m", path, "-i", pictures / "dog" / "1.png", "--method", "rise",
                         "--samples", "64", "--seed", "2", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["method"] == "rise" and report["sanity"] == [] and "sanity" not in report["verdicts"]
    assert 0.0 <= report["deletion_auc"] <= 1.0 and 0.0 <= report["insertion_auc"] <= 1.0
    code, out, err = run(capsys, "triage", "-m", path, "--explain", "all", "--out-dir", tmp_path / "triage", "--json",
                         pictures)
    assert code == 0, err
    assert json.loads(out)["count"] == 4 and "explained with Occlusion" in err
    assert len(list((tmp_path / "triage" / "maps").glob("*.png"))) == 4

"""Value (regression) and segmentation models on the command line (issue 20): predict, explain --json,
--region, and the raw map --heatmap writes.

Numbers are checked against tests/heads_factory.py's float64 evaluation of the saved model (HandNet,
with its running error bounds) — tests/core/test_heads_beyond.py checks the engine's maps the same
way — and printed numbers within the rounding of their format.
"""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

import heads_factory as hf
from cam_reference import assert_close
from gradcam_desktop import cli
from gradcam_desktop.core.gradcam import GradCam
from gradcam_desktop.core.images import load_image
from gradcam_desktop.core.models import load_model

BOX = (0.25, 0.1, 0.75, 0.6)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A value model (Keras 3, compiled with "mse"), a segmentation model, and a picture for each."""
    folder = tmp_path_factory.mktemp("heads_cli")
    value_path, value_model = hf.save_regression(folder, "keras3", "mse")
    seg_path, seg_model = hf.save_segmentation(folder, seed=3)
    pictures = {}
    for name, side, seed in (("value", hf.SIDE, 21), ("seg", hf.SEG_SIDE, 1)):
        pictures[name] = folder / f"{name}.png"
        cv2.imwrite(str(pictures[name]), np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8))
    return {"value": (value_path, value_model), "seg": (seg_path, seg_model), "pictures": pictures}


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def value_of(files):
    """(y, bound on |engine's y − y|) of the value model on its picture, as the app reads the picture."""
    _path, model = files["value"]
    net = hf.HandNet(model)
    steps = net.forward(hf.model_input(load_image(files["pictures"]["value"])))
    return float(steps[-1].pre.numpy()[0, 0]), float(net.errors(steps)[-1].outputs[0, 0])


def test_predict_prints_the_value(capsys, files):
    path, _model = files["value"]
    y, error = value_of(files)
    code, out, err = run(capsys, "predict", "-m", path, "-i", files["pictures"]["value"])
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == 1 and lines[0].split()[1:] == ["age", "(0)"] and "%" not in out
    printed = float(lines[0].split()[0])
    # "%.4g": four significant digits, so within half a unit of the fourth.
    assert abs(printed - y) <= error + 0.5 * 10 ** (math.floor(math.log10(abs(printed))) - 3)

    code, out, err = run(capsys, "predict", "-m", path, "-i", files["pictures"]["value"], "--json")
    assert code == 0, err
    answer = json.loads(out)
    assert answer["head"] == "value" and len(answer["predictions"]) == 1
    row = answer["predictions"][0]
    assert (row["class_index"], row["class_name"]) == (0, "age") and abs(row["probability"] - y) <= error


def test_predict_prints_each_classes_share_of_the_pixels(capsys, files):
    path, model = files["seg"]
    z = hf.HandNet(model).logits(hf.model_input(load_image(files["pictures"]["seg"])))[0]
    shares = np.bincount(np.argmax(z, -1).ravel(), minlength=hf.SEG_CLASSES) / (hf.SEG_SIDE ** 2)
    code, out, err = run(capsys, "predict", "-m", path, "-i", files["pictures"]["seg"])
    assert code == 0, err
    lines = out.strip().splitlines()
    assert len(lines) == hf.SEG_CLASSES and all(line.endswith("of the pixels") for line in lines)
    printed = {int(line.split("(")[1].split(")")[0]): float(line.split()[0]) for line in lines}
    for c, share in enumerate(shares):
        assert abs(printed[c] - 100 * share) <= 0.005 + 1e-9  # "%6.2f"
    assert [int(line.split("(")[1].split(")")[0]) for line in lines] == list(np.argsort(-shares, kind="stable"))


def test_explain_json_of_a_value_model(capsys, files, tmp_path):
    path, _model = files["value"]
    y, error = value_of(files)
    code, out, err = run(capsys, "explain", "-m", path, "-i", files["pictures"]["value"], "--json")
    assert code == 0, err
    record = json.loads(out)
    assert record["head"] == "value" and record["region"] is None
    assert (record["class_index"], record["class_name"]) == (0, "age")
    assert abs(record["explained_score"] - y) <= error


def test_explain_json_and_heatmap_of_a_segmentation_region(capsys, files, tmp_path):
    path, model = files["seg"]
    picture = files["pictures"]["seg"]
    raw = tmp_path / "raw.npy"
    code, out, err = run(capsys, "explain", "-m", path, "-i", picture, "--class", "1",
                         "--region", ",".join(str(v) for v in BOX), "--heatmap", raw, "--json")
    assert code == 0, err
    record = json.loads(out)
    assert record["head"] == "segmentation" and record["region"] == list(BOX) and record["class_index"] == 1
    assert record["layer"] == "conv2"

    seed = np.zeros((1, hf.SEG_SIDE, hf.SEG_SIDE, hf.SEG_CLASSES))
    seed[0, ..., 1] = hf.box_cells((hf.SEG_SIDE, hf.SEG_SIDE), BOX)
    expected, y, y_error = hf.gradcam_reference(hf.HandNet(model), hf.model_input(load_image(picture)), "conv2", seed)
    assert abs(record["explained_score"] - y) <= y_error
    written = np.load(raw)
    core = GradCam(load_model(str(path))).explain(load_image(picture), class_index=1, region=BOX).raw
    # Both within the reference's bound e: the command's map is the core's, within 2e.
    assert_close(written, expected, what="--heatmap")
    assert_close(core, expected, what="the core's map")
    assert np.all(np.abs(written.astype(np.float64) - core) <= 2 * expected.e)


def test_explain_heatmap_of_a_class_over_its_predicted_mask(capsys, files, tmp_path):
    path, model = files["seg"]
    picture = files["pictures"]["seg"]
    net = hf.HandNet(model)
    x = hf.model_input(load_image(picture))
    steps = net.forward(x)
    z, z_error = steps[-1].pre.numpy(), net.errors(steps)[-1].outputs
    top = np.argsort(z, -1)
    margin = np.take_along_axis(z, top[..., -1:], -1) - np.take_along_axis(z, top[..., -2:-1], -1)
    assert (margin[..., 0] > 2 * z_error.max(axis=-1)).all(), "a pixel's class is within rounding of another's"
    raw = tmp_path / "mask.npy"
    code, out, err = run(capsys, "explain", "-m", path, "-i", picture, "--class", "2", "--heatmap", raw, "--json")
    assert code == 0, err
    assert json.loads(out)["region"] is None
    seed = np.zeros_like(z)
    seed[..., 2] = np.argmax(z, -1) == 2
    expected, _y, _ = hf.gradcam_reference(net, x, "conv2", seed)
    assert_close(np.load(raw), expected, what="--heatmap, predicted mask")


def test_a_region_on_a_value_model_is_one_line(capsys, files):
    path, _model = files["value"]
    code, out, err = run(capsys, "explain", "-m", path, "-i", files["pictures"]["value"], "--region", "0.1,0.1,0.9,0.9")
    assert code != 0 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err and "segmentation" in err and "value head" in err


@pytest.mark.parametrize("box", ["0.5,0.2,0.1,0.9", "0.1,0.2,0.3", "a,b,c,d", "0,0,1,1.5", "0.2,0.6,0.8,0.6"])
def test_a_malformed_region_is_a_usage_error(capsys, files, box):
    path, _model = files["seg"]
    with pytest.raises(SystemExit) as caught:
        cli.main(["explain", "-m", str(path), "-i", str(files["pictures"]["seg"]), f"--region={box}"])
    _out, err = capsys.readouterr()
    assert caught.value.code == 2
    assert "a region is TOP,LEFT,BOTTOM,RIGHT" in err and repr(box) in err


def test_layers_marks_the_layer_before_the_per_pixel_classifier(capsys, files):
    path, _model = files["seg"]
    code, out, err = run(capsys, "layers", "-m", path, "--json")
    assert code == 0, err
    listed = json.loads(out)
    assert listed["default_layer"] == "conv2"
    assert [row["path"] for row in listed["layers"] if row["default"]] == ["conv2"]
    code, out, err = run(capsys, "layers", "-m", path)
    assert code == 0 and any(line.startswith("* conv2") for line in out.splitlines())


def test_trust_of_a_segmentation_region(capsys, files):
    path, _model = files["seg"]
    code, out, err = run(capsys, "trust", "-m", path, "-i", files["pictures"]["seg"], "--class", "0",
                         "--region", ",".join(str(v) for v in BOX), "--no-sanity", "--json")
    assert code == 0, err
    report = json.loads(out)
    # The region's sum relative to the blurred picture's: 1 at the picture, 0 at its blur.
    assert report["deletion_curve"][0] == 1.0 and report["insertion_curve"][0] == 0.0


def test_trust_of_a_value_model_runs_its_sanity_check(capsys, files):
    path, _model = files["value"]
    code, out, err = run(capsys, "trust", "-m", path, "-i", files["pictures"]["value"], "--json")
    assert code == 0, err
    assert len(json.loads(out)["sanity"]) == 3  # conv, last_conv and age: one layer a step

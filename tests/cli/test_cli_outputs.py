"""``--output`` on the command line (issue 20): a model with two heads, a per-pixel output and a token output."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from gradcam_desktop import cli
from gradcam_desktop.core.gradcam import GradCam
from gradcam_desktop.core.images import load_image
from gradcam_desktop.core.models import load_model


@pytest.fixture(scope="module")
def three_outputs(tmp_path_factory):
    import keras

    folder = tmp_path_factory.mktemp("three_outputs")
    inputs = keras.Input((24, 24, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="last_conv")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inputs, [keras.layers.Dense(3, activation="softmax", name="kind")(pooled),
                                 keras.layers.Dense(1, activation="sigmoid", name="adult")(pooled),
                                 keras.layers.Conv2D(2, 1, name="mask")(x),
                                 keras.layers.Reshape((24 * 24, 8), name="tokens")(x)])
    rng = np.random.default_rng(2)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32) for w in model.get_weights()])
    path = folder / "three.keras"
    model.save(path)
    picture = folder / "p.png"
    cv2.imwrite(str(picture), rng.integers(0, 256, (24, 24, 3), dtype=np.uint8))
    return path, picture


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_layers_lists_the_outputs(capsys, three_outputs):
    path, _picture = three_outputs
    code, out, err = run(capsys, "layers", "-m", path, "--json")
    assert code == 0, err
    listed = json.loads(out)
    assert listed["output"] == "kind"
    assert [(o["name"], o["kind"], o["explainable"]) for o in listed["outputs"]] == [
        ("kind", "softmax", True), ("adult", "binary", True), ("mask", "segmentation", True),
        ("tokens", "other", False)]
    assert "has 4 outputs: explaining 'kind'" in err  # the default is said, with how to choose another


@pytest.mark.parametrize("chosen", ["adult", "1"])
def test_explain_the_other_output(capsys, three_outputs, tmp_path, chosen):
    path, picture = three_outputs
    raw = tmp_path / "raw.npy"
    code, out, err = run(capsys, "explain", "-m", path, "-i", picture, "--output", chosen, "--class", "1",
                         "--heatmap", raw, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["output"] == "adult" and result["class_index"] == 1
    engine = GradCam(load_model(str(path), output="adult"))  # tests/core/test_outputs.py checks it against the full model
    expected = engine.explain(load_image(picture), class_index=1).raw
    assert np.allclose(np.load(raw), expected, rtol=0, atol=1e-6 * float(np.abs(expected).max()))


@pytest.mark.parametrize("chosen, words", [("tokens", "cannot be explained: an output of shape (None, 576, 8)"),
                                           ("age", "no output 'age'"),
                                           ("7", "no output '7'")])
def test_an_output_that_cannot_be_explained_is_one_line(capsys, three_outputs, chosen, words):
    path, picture = three_outputs
    code, _out, err = run(capsys, "predict", "-m", path, "-i", picture, "--output", chosen)
    assert code == 1 and words in err and err.count("\n") == 1 and "Traceback" not in err


def test_the_segmentation_output_is_explained_over_its_predicted_mask(capsys, three_outputs, tmp_path):
    """The per-pixel output opens as a segmentation head; its map is the core's for the same output
    (tests/core/test_heads_beyond.py checks the core against an eager reference)."""
    path, picture = three_outputs
    raw = tmp_path / "mask.npy"
    code, out, err = run(capsys, "explain", "-m", path, "-i", picture, "--output", "mask", "--class", "1",
                         "--heatmap", raw, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["output"] == "mask" and result["head"] == "segmentation" and result["region"] is None
    engine = GradCam(load_model(str(path), output="mask"))
    expected = engine.explain(load_image(picture), class_index=1).raw
    assert np.allclose(np.load(raw), expected, rtol=0, atol=1e-6 * float(np.abs(expected).max()))

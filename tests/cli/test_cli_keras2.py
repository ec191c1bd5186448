"""The issue's own case end to end: the plain Conv → BN → Conv → GAP → Dense model that tf.keras
writes as .h5 (and .keras, and a SavedModel folder), explained by `gradcam explain` — before, every
tf.keras .h5 crashed here with "only 0-dimensional arrays can be converted to Python scalars"."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from gradcam_desktop.cli import main

import keras2_factory as k2
from reference import probability_rtol


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    import tf_keras

    folder = tmp_path_factory.mktemp("plain")
    tf_keras.utils.set_random_seed(11)
    inputs = tf_keras.Input((32, 32, 3))
    x = tf_keras.layers.Conv2D(8, 3, activation="relu", name="conv1")(inputs)
    x = tf_keras.layers.BatchNormalization(name="bn")(x)
    x = tf_keras.layers.Conv2D(8, 3, activation="relu", name="conv2")(x)
    x = tf_keras.layers.GlobalAveragePooling2D(name="gap")(x)
    model = tf_keras.Model(inputs, tf_keras.layers.Dense(3, activation="softmax", name="predictions")(x))
    bn = model.get_layer("bn")  # statistics far from the defaults: training mode would differ
    rng = np.random.default_rng(3)
    bn.set_weights([rng.uniform(0.5, 1.5, 8), rng.normal(0, 0.2, 8), rng.normal(0, 0.3, 8), rng.uniform(0.5, 2, 8)])
    paths = {"h5": folder / "plain.h5", "keras": folder / "plain.keras", "savedmodel": folder / "plain_savedmodel"}
    for path in paths.values():
        model.save(path)
    picture = folder / "picture.png"
    pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(picture)
    x = pixels[None].astype(np.float32) / 255.0  # "unit" preprocessing
    features = np.asarray(tf_keras.Model(inputs, model.get_layer("gap").output)(x, training=False), np.float64)
    kernel, bias = model.get_layer("predictions").get_weights()
    logits = (features @ kernel + bias)[0]
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    return paths, picture, expected, probability_rtol(logits, k2.discrepancy(model))


@pytest.mark.parametrize("kind", ["h5", "keras", "savedmodel"])
def test_explain_a_plain_tf_keras_model(plain, kind, capsys, tmp_path):
    paths, picture, expected, rtol = plain
    out = tmp_path / "overlay.png"
    code = main(["explain", "--model", str(paths[kind]), "--image", str(picture), "--out", str(out), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    record = json.loads(captured.out)
    top = int(np.argmax(expected))
    assert record["layer"] == "conv2" and record["class_index"] == top and out.is_file()
    # The same float32 network: the probability is off by the network's rounding only
    # (tests/reference.py's bound from the logits and the pass error of these tf_keras layers).
    assert record["predicted_probability"] == pytest.approx(expected[top], rel=rtol)
    assert record["heatmap_shape"] == [28, 28]

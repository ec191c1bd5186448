"""`gradcam` on the models users have: a transfer-learning .h5, a binary model with labels, a
variable-size model in `batch`, and zoo models (MobileNetV3Small, ResNet50) with ImageNet-shaped
weights made here and put where the Keras cache keeps them (no network: the download URL points
at a closed local port, and the official checksum is switched off for these locally made files).

Maps written with --heatmap are compared with the shared eager reference Grad-CAM on the
pre-softmax logits (tests/reference.py, which derives the tolerance), computed without the engine.
Where a float32 map has no useful bound (deep nets, gradients crossing ReLU kinks) the CLI runs
the model's float64 twin.
"""

from __future__ import annotations

import csv
import dataclasses
import json

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from gradcam_desktop.cli import main
from gradcam_desktop.core import zoo
from gradcam_desktop.core.layers import default_layer

from model_factory import calibrate, float64_twin
from reference import (
    assert_map_close,
    assert_top_class_decided,
    discrepancy,
    exact_gradient,
    probabilities,
    probability_rtol,
    reference_gradcam,
)

MNV2 = "mobilenetv2_0.35_96"
OFFLINE_URL = "http://127.0.0.1:9/"  # discard port: never the internet


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def save_png(path, height, width, seed):
    rgb = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)
    return rgb


# -- a transfer-learning model saved as legacy .h5 -----------------------------------------
@pytest.fixture(scope="module")
def transfer(tmp_path_factory):
    folder = tmp_path_factory.mktemp("transfer")
    keras.utils.set_random_seed(20)
    base = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(96, 96, 3), alpha=0.35)
    inputs = keras.Input((96, 96, 3))
    x = keras.layers.GlobalAveragePooling2D(name="gap")(base(inputs, training=False))
    x = keras.layers.Dropout(0.2, name="dropout")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="predictions")(x)
    model = calibrate(keras.Model(inputs, outputs),
                      np.random.default_rng(1).uniform(0, 1, (4, 96, 96, 3)).astype(np.float32))
    model.save(folder / "pets.h5")
    float64_twin(model).save(folder / "pets64.h5")
    for stem in ("pets", "pets64"):
        (folder / f"{stem}.labels.txt").write_text("cat\ndog\nhamster\n")
    rgb = save_png(folder / "pet.png", 96, 96, seed=2)
    return {"model": folder / "pets.h5", "image": folder / "pet.png", "rgb": rgb, "folder": folder}


def test_layers_shows_the_nested_tree_and_default(transfer, capsys):
    code, out, err = run(capsys, "layers", "-m", transfer["model"], "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["default_layer"] == f"{MNV2}/out_relu"
    rows = {row["path"]: row for row in result["layers"]}
    assert rows[MNV2]["type"] == "Functional"
    assert rows[f"{MNV2}/block_13_expand_relu"]["eligible"]
    assert rows[f"{MNV2}/block_13_expand_relu"]["output_shape"] == [None, 6, 6, 192]
    assert [path for path, row in rows.items() if row["default"]] == [f"{MNV2}/out_relu"]
    assert not any(rows[name]["eligible"] for name in ("gap", "dropout", "predictions"))
    code, out, _ = run(capsys, "layers", "-m", transfer["model"])
    assert code == 0 and f"* {MNV2}/out_relu" in out


# out_relu feeds GAP → Dense (exact gradient): the float32 file has a bound there. The gradient
# at block_13 crosses ReLU6 kinks of four blocks: only the float64 twin has one.
@pytest.mark.parametrize("inner,shape,file", [("out_relu", [3, 3], "pets.h5"), ("out_relu", [3, 3], "pets64.h5"),
                                              ("block_13_expand_relu", [6, 6], "pets64.h5")])
def test_explain_inner_layer_of_nested_base_matches_reference(transfer, capsys, tmp_path, inner, shape, file):
    code, out, err = run(capsys, "explain", "-m", transfer["folder"] / file, "-i", transfer["image"],
                         "--layer", f"{MNV2}/{inner}", "--class", "dog", "--heatmap", tmp_path / "raw.npy",
                         "--out", tmp_path / "overlay.png", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert (result["layer"], result["class_name"], result["heatmap_shape"]) == (f"{MNV2}/{inner}", "dog", shape)
    assert result["preprocess"] == "unit"
    model = keras.saving.load_model(transfer["folder"] / file, compile=False)
    base = model.get_layer(MNV2)
    assert base.get_layer(inner).compute_dtype == ("float64" if "64" in file else "float32")
    extractor = keras.Model(base.input, [base.get_layer(inner).output, base.output])
    dense = model.get_layer("predictions")

    def features_and_logits(x):
        features, out = extractor(x, training=False)
        return features, tf.matmul(tf.reduce_mean(out, axis=(1, 2)), dense.kernel) + dense.bias

    x = (transfer["rgb"].astype(np.float32) / np.float32(255.0))[None]
    rho = discrepancy(model)
    expected = reference_gradcam(features_and_logits, x, [0.0, 1.0, 0.0], rho,
                                 exact_gradient() if inner == "out_relu" else rho)
    assert_map_close(np.load(tmp_path / "raw.npy"), expected)
    assert result["score"] == pytest.approx(float(probabilities(expected.logits, "softmax")[1]),
                                            rel=probability_rtol(expected.logits, rho))
    assert Image.open(tmp_path / "overlay.png").size == (96, 96)


def test_unknown_and_non_spatial_layers_are_one_line_errors(transfer, capsys):
    code, _, err = run(capsys, "explain", "-m", transfer["model"], "-i", transfer["image"], "--layer", "predictions")
    assert code == 1 and err.count("\n") == 1 and "no spatial grid" in err and "Traceback" not in err
    code, _, err = run(capsys, "explain", "-m", transfer["model"], "-i", transfer["image"],
                       "--layer", f"{MNV2}/no_such_layer")
    assert code == 1 and err.count("\n") == 1 and f"{MNV2}/out_relu" in err


# -- binary sigmoid head with a labels sidecar ---------------------------------------------
def test_predict_and_explain_binary_model_with_two_labels(tmp_path, capsys):
    keras.utils.set_random_seed(21)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="last")(inputs)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="predictions",
                                 kernel_initializer=keras.initializers.RandomNormal(stddev=3.0))(
        keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    model.save(tmp_path / "spam.keras")
    (tmp_path / "spam.labels.txt").write_text("ham\nspam\n")
    rgb = save_png(tmp_path / "x.png", 32, 32, seed=3)
    x = rgb[None].astype(np.float32) / np.float32(255.0)
    p = float(np.asarray(model(x))[0, 0])
    kernel, bias = model.get_layer("predictions").get_weights()
    logit = np.asarray(model.get_layer("last")(x), np.float64)[0].mean(axis=(0, 1)) @ kernel + bias
    rtol = probability_rtol(logit, discrepancy(model))
    code, out, err = run(capsys, "predict", "-m", tmp_path / "spam.keras", "-i", tmp_path / "x.png", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["head"] == "binary"
    got = {row["class_name"]: row["probability"] for row in result["predictions"]}
    # |Δp| ≤ rtol·p ≤ rtol also bounds 1 − p, absolutely.
    assert got == pytest.approx({"ham": 1 - p, "spam": p}, rel=rtol, abs=rtol)
    code, out, err = run(capsys, "explain", "-m", tmp_path / "spam.keras", "-i", tmp_path / "x.png",
                         "--class", "ham", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert (result["class_index"], result["class_name"]) == (0, "ham")
    assert result["score"] == pytest.approx(1 - p, rel=rtol, abs=rtol)


# -- a variable-size model in batch: each map follows its image -------------------------------
def test_batch_with_variable_size_model(tmp_path, capsys):
    keras.utils.set_random_seed(22)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="last")(inputs)
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    keras.Model(inputs, outputs).save(tmp_path / "fcn.keras")
    images = tmp_path / "images"
    images.mkdir()
    sizes = {"a": (100, 150), "b": (100, 150), "c": (150, 100), "d": (600, 300)}
    for stem, (h, w) in sizes.items():
        save_png(images / f"{stem}.png", h, w, seed=len(stem) + h)
    code, _, err = run(capsys, "batch", "-m", tmp_path / "fcn.keras", "--heatmaps", "--out-dir", tmp_path / "out", images)
    assert code == 0, err
    expected = {"a": (50, 75), "b": (50, 75), "c": (75, 50), "d": (256, 128)}  # d: capped at 512
    for stem, shape in expected.items():
        assert np.load(tmp_path / "out" / f"{stem}.npy").shape == shape
        assert Image.open(tmp_path / "out" / f"{stem}.png").size == sizes[stem][::-1]
    with open(tmp_path / "out" / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4 and all(row["layer"] == "last" and not row["error"] for row in rows)


# -- zoo models with local weights ------------------------------------------------------
@pytest.fixture(scope="module")
def keras_home(tmp_path_factory):
    """A Keras cache holding locally made (calibrated random) MobileNetV3Small/ResNet50 weights."""
    from keras.src.legacy.saving import legacy_h5_format

    home = tmp_path_factory.mktemp("keras_home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KERAS_HOME", str(home))
        x = np.random.default_rng(4).uniform(-1, 1, (2, 224, 224, 3)).astype(np.float32)
        for name in ("MobileNetV3Small", "ResNet50"):
            keras.utils.set_random_seed(23)
            model = calibrate(zoo.zoo_entry(name).build(weights=None), x * 127.0)
            path = zoo.weights_path(name)
            path.parent.mkdir(parents=True, exist_ok=True)
            with h5py.File(path, "w") as handle:  # the official files' layout (legacy, by topology)
                legacy_h5_format.save_weights_to_hdf5_group(handle, model)
    return home


@pytest.fixture
def offline_zoo(keras_home, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    monkeypatch.setenv(zoo.ENV_URL, OFFLINE_URL)
    for name in ("MobileNetV3Small", "ResNet50"):
        # Our files are not the official ones: skip their checksum (else the cache is "stale").
        monkeypatch.setitem(zoo.REGISTRY, name, dataclasses.replace(zoo.REGISTRY[name], file_hash=None))
    return keras_home


def _build_in_float64(build):
    """A zoo builder whose model computes in float64 (the ImageNet weights load into it cast)."""

    def build64(weights=None):
        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy("float64")
        try:
            return build(weights=weights)
        finally:
            keras.config.set_dtype_policy(previous)

    return build64


def _zoo_reference(name, rgb, class_index):
    """Eager Grad-CAM at the zoo model's last spatial layer, from our own build of it."""
    model = zoo.build_zoo_model(name)
    module = getattr(keras.applications, zoo.zoo_entry(name).keras_module)
    x = module.preprocess_input(rgb.astype(np.float32)[None].copy())
    layer = default_layer(model)
    if name == "ResNet50":
        extractor = keras.Model(model.input, [model.get_layer(layer).output, model.get_layer("avg_pool").output])
        dense = model.get_layer("predictions")
        to_logits = lambda pooled: tf.matmul(pooled, dense.kernel) + dense.bias  # noqa: E731
    else:  # MobileNetV3: ... → logits (1×1 conv) → Flatten → Activation(softmax)
        extractor = keras.Model(model.input, [model.get_layer(layer).output, model.get_layer("logits").output])
        to_logits = lambda conv: tf.reshape(conv, (1, -1))  # noqa: E731

    def features_and_logits(batch):
        features, out = extractor(batch, training=False)
        return features, to_logits(out)

    rho = discrepancy(model)
    weights = np.eye(1000)[class_index]
    # ResNet50: avg_pool → Dense, an exact gradient. MobileNetV3: two 1×1 convs and a hard-swish.
    return layer, model, reference_gradcam(features_and_logits, x, weights, rho,
                                           exact_gradient() if name == "ResNet50" else rho)


@pytest.mark.parametrize("name", ["MobileNetV3Small", "ResNet50"])
def test_zoo_model_with_local_weights(offline_zoo, name, capsys, tmp_path, monkeypatch):
    rgb = save_png(tmp_path / "photo.png", 224, 224, seed=5)
    code, out, err = run(capsys, "layers", "-m", f"zoo:{name}", "--json")
    assert code == 0, err
    result = json.loads(out)
    rows = {row["path"]: row for row in result["layers"]}
    default = rows[result["default_layer"]]
    assert default["output_shape"] == [None, 7, 7, default["output_shape"][3]]
    # The last spatial layer: the one right before global pooling (its auto-generated name, e.g.
    # MobileNetV3's "activation_17", depends on what was built before in the process).
    paths = [row["path"] for row in result["layers"]]
    after = result["layers"][paths.index(result["default_layer"]) + 1]
    assert after["type"] == "GlobalAveragePooling2D", after
    if name == "MobileNetV3Small":
        assert rows["logits"]["type"] == "Conv2D" and not rows["logits"]["eligible"]  # the 1×1 trap

    # The map is checked in float64: 50–100 float32 layers admit no useful bound (tests/reference.py).
    monkeypatch.setitem(zoo.REGISTRY, name, dataclasses.replace(
        zoo.REGISTRY[name], build=_build_in_float64(zoo.REGISTRY[name].build)))
    code, out, err = run(capsys, "explain", "-m", f"zoo:{name}", "-i", tmp_path / "photo.png",
                         "--class", "7", "--heatmap", tmp_path / "raw.npy", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["preprocess"] == f"zoo:{name}"
    assert result["heatmap_shape"] == [7, 7]
    names = zoo.imagenet_class_names()
    assert (result["class_index"], result["class_name"]) == (7, names[7])  # "cock"
    assert result["predicted_name"] == names[result["predicted_index"]]

    _, model, expected = _zoo_reference(name, rgb, 7)
    assert model.get_layer("predictions" if name == "ResNet50" else "logits").compute_dtype == "float64"
    assert_map_close(np.load(tmp_path / "raw.npy"), expected)
    assert_top_class_decided(probabilities(expected.logits, "softmax"),
                             probability_rtol(expected.logits, discrepancy(model)))
    assert result["predicted_index"] == int(np.argmax(expected.logits))


def test_zoo_predict_top5_imagenet_names(offline_zoo, capsys, tmp_path):
    save_png(tmp_path / "photo.png", 160, 240, seed=6)
    code, out, err = run(capsys, "predict", "-m", "zoo:MobileNetV3Small", "-i", tmp_path / "photo.png", "--json")
    assert code == 0, err
    rows = json.loads(out)["predictions"]
    names = zoo.imagenet_class_names()
    assert len(rows) == 5
    assert [row["class_name"] for row in rows] == [names[row["class_index"]] for row in rows]
    probabilities = [row["probability"] for row in rows]
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1 + 1e-6

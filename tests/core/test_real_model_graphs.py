"""Heads, graphs and inputs of real models, checked against an independent eager Grad-CAM.

Flatten → Dense → Activation heads, augmentation layers in front, ``keras.ops`` calls in the
graph, mixed precision, a shared layer, a conv two nested models deep, grayscale, non-square and
variable-size inputs, a binary sigmoid head with a labels sidecar and a Sequential model built
without an Input. References and tolerances: tests/reference.py (see test_real_models.py's
docstring for when maps are compared on float64 twins).
"""

from __future__ import annotations


import keras
import numpy as np
import pytest

from gradcam_desktop.core.gradcam import GradCam
from gradcam_desktop.core.layers import iter_layers, layer_tree
from gradcam_desktop.core.models import load_model

from model_factory import calibrate, float64_engine, float64_twin
from reference import (
    assert_map_close,
    assert_top_class_decided,
    capture,
    discrepancy,
    exact_gradient,
    pass_error,
    probabilities,
    probability_rtol,
    reference_gradcam,
)
from real_models import (
    MNV2,
    calibration_batch,
    check_map,
    gap_dense_head,
    nested_reference,
    noise,
    one_hot,
    pixels,
    transfer_model,
)


# -- Flatten → Dense → Activation("softmax") ----------------------------------------------
def test_flatten_dense_activation_head_explains_pre_softmax_logits(tmp_path):
    keras.utils.set_random_seed(3)
    inputs = keras.Input((24, 24, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="c1")(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="last")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(4, name="logits")(x)
    outputs = keras.layers.Activation("softmax", name="probs")(x)
    keras.Model(inputs, outputs).save(tmp_path / "flat.keras")
    engine = GradCam(load_model(tmp_path / "flat.keras"))
    assert engine.head.kind == "softmax" and engine.default_layer == "last"
    model = engine.model
    # A flat model: the keras.io recipe works and gives the Dense output before softmax.
    recipe = keras.Model(model.inputs, [model.get_layer("last").output, model.get_layer("logits").output])
    image = noise(24, 24, seed=6)
    for cls in range(4):
        # Flatten → Dense: ∂logit/∂A is the kernel column itself, exact.
        check_map(engine, image, "last", cls, lambda x: recipe(x), pixels(image), one_hot(cls, 4), exact=True)


# -- augmentation layers at the start are inactive at inference ----------------------------
@pytest.mark.parametrize("nested", [False, True])
def test_augmentation_layers_are_inactive(tmp_path, nested):
    keras.utils.set_random_seed(4)
    augmentation = [keras.layers.RandomFlip("horizontal", name="flip"),
                    keras.layers.RandomRotation(0.25, name="rotate")]
    inputs = keras.Input((32, 32, 3))
    if nested:
        x = keras.Sequential(augmentation, name="augment")(inputs)
    else:
        x = augmentation[1](augmentation[0](inputs))
    x = keras.layers.Rescaling(1 / 255.0, name="rescale")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c1")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="last")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="predictions")(x)
    keras.Model(inputs, outputs).save(tmp_path / "aug.keras")
    # 'raw' given explicitly: the model rescales itself after the augmentation layers.
    engine = GradCam(load_model(tmp_path / "aug.keras", preprocess="raw"))
    model = engine.model
    image = noise(32, 32, seed=7)

    def without_augmentation(x):
        features = model.get_layer("last")(model.get_layer("c1")(model.get_layer("rescale")(x)))
        return features, gap_dense_head(model.get_layer("predictions"))(features)

    # An active flip or rotation would move the map far outside the bound, on any of the calls.
    for _ in range(3):
        check_map(engine, image, "last", 1, without_augmentation, pixels(image, divisor=1.0), one_hot(1, 3),
                  exact=True)


# -- keras.ops calls inside the functional graph ------------------------------------------
def test_keras_ops_in_the_functional_graph(tmp_path):
    keras.utils.set_random_seed(5)
    inputs = keras.Input((24, 24, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c1")(inputs)
    x = keras.ops.multiply(x, 2.0)
    x = keras.layers.Conv2D(8, 3, padding="same", name="last")(x)
    x = keras.ops.relu(x) + 1.0
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="predictions")(x)
    keras.Model(inputs, outputs).save(tmp_path / "ops.keras")
    engine = GradCam(load_model(tmp_path / "ops.keras"))
    assert engine.default_layer == "last"
    # Both gradients cross a ReLU (keras.ops.relu after "last"): compared on the float64 twin.
    twin = float64_engine(engine)
    model = twin.model
    image = noise(24, 24, seed=8)

    def chain(target):
        def run(x):
            c1 = model.get_layer("c1")(x)
            last = model.get_layer("last")(keras.ops.multiply(c1, 2.0))
            logits = gap_dense_head(model.get_layer("predictions"))(keras.ops.relu(last) + 1.0)
            return {"c1": c1, "last": last}[target], logits
        return run

    for target in ("c1", "last"):
        check_map(twin, image, target, 0, chain(target), pixels(image), one_hot(0, 3))


# -- mixed precision --------------------------------------------------------------------
@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mixed")
    keras.utils.set_random_seed(6)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        base = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(96, 96, 3),
                                              alpha=0.35)
        inputs = keras.Input((96, 96, 3))
        x = keras.layers.GlobalAveragePooling2D(name="gap")(base(inputs, training=False))
        x = keras.layers.Dense(3, name="logits")(x)
        outputs = keras.layers.Activation("softmax", dtype="float32", name="probs")(x)
        model = calibrate(keras.Model(inputs, outputs), calibration_batch(96, 96))
        model.save(folder / "mixed.keras")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return GradCam(load_model(folder / "mixed.keras"))


@pytest.mark.parametrize("inner", ["out_relu", "block_13_expand_relu"])
def test_mixed_precision_maps_are_finite_float32(mixed, inner):
    assert keras.mixed_precision.global_policy().name == "float32"
    assert mixed.model.get_layer(MNV2).get_layer(inner).compute_dtype == "float16"
    image = noise(96, 96, seed=9)
    explanation = mixed.explain(image, f"{MNV2}/{inner}", 1)
    assert explanation.raw.dtype == np.float32 and np.isfinite(explanation.raw).all()
    assert explanation.raw.max() > 0
    assert np.isfinite(explanation.prediction.probabilities).all()
    # 50 float16 layers (u = 2^-11) admit no useful bound; the value is checked on a shallow
    # float16 model below, and this network's formula on its float32 and float64 twins above.


def test_mixed_precision_map_matches_float64_within_float16_rounding(tmp_path):
    keras.utils.set_random_seed(15)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        inputs = keras.Input((16, 16, 3))
        x = keras.layers.Conv2D(4, 1, activation="relu", name="c1")(inputs)
        x = keras.layers.Conv2D(4, 1, activation="relu", name="last")(x)
        x = keras.layers.Dense(3, name="logits")(keras.layers.GlobalAveragePooling2D(name="gap")(x))
        outputs = keras.layers.Activation("softmax", dtype="float32", name="probs")(x)
        keras.Model(inputs, outputs).save(tmp_path / "small.keras")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    engine = GradCam(load_model(tmp_path / "small.keras"))
    assert engine.model.get_layer("last").compute_dtype == "float16"
    twin = float64_twin(engine.model)
    image = noise(16, 16, seed=16)

    def run(x):
        features = twin.get_layer("last")(twin.get_layer("c1")(x))
        return features, gap_dense_head(twin.get_layer("logits"))(features)

    # A: the engine's two float16 convolutions (ours: float64). g = w/HW: w and the division
    # each round once in float16.
    rho_a = pass_error([engine.model.get_layer("c1"), engine.model.get_layer("last")]) + pass_error(twin)
    reference = reference_gradcam(run, pixels(image), one_hot(1, 3), rho_a, exact_gradient("float16"))
    explanation = engine.explain(image, "last", 1)
    assert_map_close(explanation.raw, reference)
    rtol = probability_rtol(reference.logits, pass_error(engine.model) + pass_error(twin))
    np.testing.assert_allclose(explanation.prediction.probabilities, probabilities(reference.logits, "softmax"),
                               rtol=rtol)


# -- a shared layer, a conv two nested models deep -----------------------------------------
def test_shared_layer_used_twice_before_the_last_conv(tmp_path):
    keras.utils.set_random_seed(7)
    inputs = keras.Input((24, 24, 3))
    shared = keras.layers.Conv2D(3, 3, padding="same", activation="relu", name="shared")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="last")(shared(shared(inputs)))
    outputs = keras.layers.Dense(3, activation="softmax", name="predictions")(
        keras.layers.GlobalAveragePooling2D(name="gap")(x))
    keras.Model(inputs, outputs).save(tmp_path / "shared.keras")
    engine = GradCam(load_model(tmp_path / "shared.keras"))
    assert engine.default_layer == "last"
    assert [node.path for node in layer_tree(engine.model)].count("shared") == 1
    model = engine.model

    def run(x):
        features = model.get_layer("last")(model.get_layer("shared")(model.get_layer("shared")(x)))
        return features, gap_dense_head(model.get_layer("predictions"))(features)

    image = noise(24, 24, seed=10)
    check_map(engine, image, None, 2, run, pixels(image), one_hot(2, 3), exact=True)


def test_last_conv_two_nested_models_deep(tmp_path):
    keras.utils.set_random_seed(8)
    a = keras.Input((24, 24, 3))
    inner = keras.Model(a, keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv")(
        keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c0")(a)), name="inner")
    b = keras.Input((24, 24, 3))
    outer = keras.Model(b, inner(b), name="outer")
    c = keras.Input((24, 24, 3))
    outputs = keras.layers.Dense(3, activation="softmax", name="predictions")(
        keras.layers.GlobalAveragePooling2D(name="gap")(outer(c)))
    keras.Model(c, outputs).save(tmp_path / "deep.keras")
    engine = GradCam(load_model(tmp_path / "deep.keras"))
    paths = [node.path for node in iter_layers(layer_tree(engine.model))]
    assert paths[:4] == ["outer", "outer/inner", "outer/inner/c0", "outer/inner/conv"]
    assert engine.default_layer == "outer/inner/conv"
    image = noise(24, 24, seed=11)
    # conv feeds GAP → Dense (exact gradient); c0's gradient crosses conv's ReLU: float64 twin.
    for target, checked in (("c0", float64_engine(engine)), ("conv", engine)):
        nested_inner = checked.model.get_layer("outer").get_layer("inner")
        head = gap_dense_head(checked.model.get_layer("predictions"))
        check_map(checked, image, f"outer/inner/{target}", 0, nested_reference(nested_inner, target, head),
                  pixels(image), one_hot(0, 3), exact=target == "conv")


# -- grayscale, non-square and variable-size inputs ----------------------------------------
def test_grayscale_model(tmp_path):
    keras.utils.set_random_seed(9)
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="last")(inputs)
    outputs = keras.layers.Dense(3, activation="softmax", name="predictions")(
        keras.layers.GlobalAveragePooling2D()(x))
    keras.Model(inputs, outputs).save(tmp_path / "gray.keras")
    engine = GradCam(load_model(tmp_path / "gray.keras"))
    assert engine.loaded.channels == 1
    image = noise(28, 28, seed=12, gray=True)
    model = engine.model

    def run(x):
        features = model.get_layer("last")(x)
        return features, gap_dense_head(model.get_layer("predictions"))(features)

    check_map(engine, image, None, 1, run, pixels(image, channels=1), one_hot(1, 3), exact=True)


def test_non_square_transfer_model_keeps_height_and_width(tmp_path):
    keras.utils.set_random_seed(10)
    base = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(96, 160, 3), alpha=0.35)
    calibrate(transfer_model(base, 3), calibration_batch(96, 160)).save(tmp_path / "wide.keras")
    engine = GradCam(load_model(tmp_path / "wide.keras"))
    assert engine.loaded.input_size == (96, 160)
    name = engine.model.layers[1].name
    twin = float64_engine(engine)
    base = twin.model.get_layer(name)
    head = gap_dense_head(twin.model.get_layer("predictions"))
    image = noise(96, 160, seed=13)
    for inner, shape in (("out_relu", (3, 5)), ("block_13_expand_relu", (6, 10))):
        explanation, _ = check_map(twin, image, f"{name}/{inner}", 0, nested_reference(base, inner, head),
                                   pixels(image), one_hot(0, 3))
        assert explanation.raw.shape == shape
    # A portrait image is resized to the model's landscape input, never transposed.
    assert engine.explain(noise(200, 90, seed=14)).raw.shape == (3, 5)


def test_variable_size_model_follows_the_image(tmp_path):
    keras.utils.set_random_seed(11)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c1")(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="last")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="predictions")(
        keras.layers.GlobalAveragePooling2D()(x))
    keras.Model(inputs, outputs).save(tmp_path / "var.keras")
    engine = GradCam(load_model(tmp_path / "var.keras"))
    assert engine.loaded.input_size == (None, None)
    model = engine.model

    def run(x):
        features = model.get_layer("last")(model.get_layer("c1")(x))
        return features, gap_dense_head(model.get_layer("predictions"))(features)

    image = noise(100, 140, seed=15)
    explanation, _ = check_map(engine, image, None, 2, run, pixels(image), one_hot(2, 3), exact=True)
    assert explanation.raw.shape == (50, 70)
    engine.explain(noise(100, 140, seed=16))  # same size: no retrace
    assert engine.trace_counts["last"] == 1
    assert engine.explain(noise(600, 300, seed=17)).raw.shape == (256, 128)  # capped at 512
    assert engine.explain(noise(40, 70, seed=18)).raw.shape == (48, 84)  # short side raised to 96


# -- binary sigmoid head with a two-name labels sidecar --------------------------------------
def test_binary_sigmoid_with_labels_sidecar(tmp_path):
    keras.utils.set_random_seed(12)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="c1")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="last")(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="predictions",
                                 kernel_initializer=keras.initializers.RandomNormal(stddev=3.0))(
        keras.layers.GlobalAveragePooling2D()(x))
    keras.Model(inputs, outputs).save(tmp_path / "catdog.keras")
    (tmp_path / "catdog.labels.txt").write_text("cat\ndog\n")
    engine = GradCam(load_model(tmp_path / "catdog.keras"))
    assert engine.head.kind == "binary" and engine.class_names == ["cat", "dog"]
    model = engine.model
    image = noise(32, 32, seed=18)
    p = float(np.asarray(model(pixels(image)))[0, 0])

    def run(x):
        features = model.get_layer("last")(model.get_layer("c1")(x))
        return features, gap_dense_head(model.get_layer("predictions"))(features)

    rtol = probability_rtol(capture(run, pixels(image), [1.0])[2], discrepancy(model))
    assert_top_class_decided(np.array([1 - p, p]), rtol)  # so the default class is meaningful
    prediction = engine.predict(image)
    # |Δp| ≤ rtol·p ≤ rtol bounds 1 − p absolutely (relative to 1 − p it may be larger).
    np.testing.assert_allclose(prediction.probabilities, [1 - p, p], rtol=rtol, atol=rtol)
    for cls, sign in (("dog", 1.0), ("cat", -1.0)):
        explanation, _ = check_map(engine, image, None, cls, run, pixels(image), [sign], exact=True)
        assert explanation.class_name == cls
        assert explanation.score == pytest.approx(p if cls == "dog" else 1 - p, rel=rtol, abs=rtol)
    assert engine.explain(image).class_name == ("dog" if p > 0.5 else "cat")


# -- a Sequential model built by calling it on data (no Input) --------------------------------
@pytest.mark.parametrize("suffix", ["keras", "h5"])
def test_sequential_built_without_input(tmp_path, suffix):
    keras.utils.set_random_seed(13)
    model = keras.Sequential([
        keras.layers.Conv2D(8, 3, activation="relu", name="c1"),
        keras.layers.Conv2D(8, 3, activation="relu", name="last"),
        keras.layers.GlobalAveragePooling2D(name="gap"),
        keras.layers.Dense(3, activation="softmax", name="predictions"),
    ])
    model(np.zeros((1, 32, 32, 3), np.float32))  # built by calling it, as in many notebooks
    model.save(tmp_path / f"seq.{suffix}")
    engine = GradCam(load_model(tmp_path / f"seq.{suffix}"))
    assert engine.loaded.input_size == (32, 32) and engine.default_layer == "last"
    loaded = engine.model

    def run(x):
        features = loaded.get_layer("last")(loaded.get_layer("c1")(x))
        return features, gap_dense_head(loaded.get_layer("predictions"))(features)

    image = noise(32, 32, seed=19)
    check_map(engine, image, None, 1, run, pixels(image), one_hot(1, 3), exact=True)

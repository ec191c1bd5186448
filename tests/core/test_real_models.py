"""The models real users have, checked against an independent eager Grad-CAM.

Transfer learning the common ways (a Keras Application nested as ``base(inputs, training=False)``,
saved as .keras and legacy .h5; EfficientNetB0 with its own Rescaling/Normalization inside; a
Sequential ResNet50), Flatten → Dense → Activation heads, augmentation layers in front,
``keras.ops`` calls in the graph, mixed precision, a shared layer, a conv two nested models deep,
grayscale, non-square and variable-size inputs, a binary sigmoid head with a labels sidecar and a
Sequential model built without an Input.

The reference never goes through the engine's graph walker: it asks Keras for the inner layer
and the base's output from the *nested model itself* (``keras.Model(base.input, [inner.output,
base.output])``), applies the head by hand with the Dense kernel/bias (pre-softmax logits) and
differentiates eagerly (tests/reference.py, which also derives the tolerance).

Maps of deep networks and of layers whose gradient crosses a ReLU kink are compared on the
model's float64 twin: in float32 their rounding error has no bound that is not vacuous (rounding
can flip a ReLU mask and change a gradient by O(1)); see tests/reference.py. Float32 maps are
compared where the gradient is exact (a layer feeding GAP → Dense).

Random-init Keras Applications have vanishing activations (BatchNorm moving statistics of 0/1
after dozens of blocks give ~1e-11 at the last conv and uniform probabilities), which would make
every comparison trivially pass; ``calibrate`` sets the BatchNorm statistics from a batch so the
maps and probabilities are far from zero and from uniform.
"""

from __future__ import annotations

import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from gradcam_desktop.core.gradcam import GradCam
from gradcam_desktop.core.images import LoadedImage
from gradcam_desktop.core.layers import eligible_paths, iter_layers, layer_tree
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

MNV2 = "mobilenetv2_0.35_96"


# -- helpers ----------------------------------------------------------------------------
def noise(height, width, seed=0, gray=False) -> LoadedImage:
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    if gray:
        rgb = np.repeat(rgb[..., :1], 3, axis=2)
    return LoadedImage(rgb=rgb, name="noise.png", path=None, notices=[])


def pixels(image: LoadedImage, divisor=255.0, channels=3) -> np.ndarray:
    """The image as the model's batch (it is already at the model's size: no resizing).

    Divided, not multiplied by 1/255: random deep nets amplify a one-ulp input difference.
    """
    x = image.rgb.astype(np.float32)
    if channels == 1:
        x = x[..., :1]
    return (x / np.float32(divisor))[None]


def dense_logits(dense):
    """Pre-activation output of a Dense layer, from its kernel and bias."""
    kernel, bias = dense.kernel, dense.bias

    def apply(v):
        return tf.matmul(tf.cast(v, kernel.dtype), kernel) + bias

    return apply


def nested_reference(base, inner, head):
    """(A at base/inner, logits) using the nested base's own graph, then ``head`` by hand."""
    extractor = keras.Model(base.input, [base.get_layer(inner).output, base.output])

    def run(x):
        features, out = extractor(x, training=False)
        return features, head(out)

    return run


def gap_dense_head(dense):
    logits = dense_logits(dense)
    return lambda out: logits(tf.reduce_mean(out, axis=(1, 2)))


def one_hot(index, units):
    weights = np.zeros(units, np.float32)
    weights[index] = 1.0
    return weights


def check_map(engine, image, layer, class_index, features_and_logits, x, weights, exact=False):
    """Explain ``image`` and hold the map to the reference's bound; return (explanation, reference).

    ``exact``: the layer feeds GAP → Dense, so its gradient w/HW is exact (no pass error).
    """
    rho = discrepancy(engine.model)
    reference = reference_gradcam(features_and_logits, x, weights, rho, exact_gradient() if exact else rho)
    explanation = engine.explain(image, layer, class_index)
    assert_map_close(explanation.raw, reference)
    return explanation, reference


def check_twin_probabilities(twin, explanation, reference):
    """The float64 twin's probabilities against the softmax of the reference's float64 logits."""
    rtol = probability_rtol(reference.logits, discrepancy(twin.model))
    expected = probabilities(reference.logits, twin.head.kind)
    np.testing.assert_allclose(explanation.prediction.probabilities, expected, rtol=rtol)


def transfer_model(base, classes, seed=0):
    """The Keras transfer-learning guide: base(inputs, training=False) → GAP → Dropout → Dense."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(base.input_shape[1:])
    x = base(inputs, training=False)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dropout(0.2, name="dropout")(x)
    outputs = keras.layers.Dense(classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="transfer")


def calibration_batch(height, width, scale=1 / 255.0, seed=7):
    rng = np.random.default_rng(seed)
    return (rng.uniform(0, 255, (4, height, width, 3)) * scale).astype(np.float32)


# -- MobileNetV2 transfer learning, .keras and .h5 -----------------------------------------
@pytest.fixture(scope="module")
def mnv2_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mnv2")
    keras.utils.set_random_seed(0)
    base = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(96, 96, 3), alpha=0.35)
    model = calibrate(transfer_model(base, 5), calibration_batch(96, 96))
    model.save(folder / "flowers.keras")
    model.save(folder / "flowers.h5")
    (folder / "flowers.labels.txt").write_text("daisy\ndandelion\nrose\nsunflower\ntulip\n")
    return folder


@pytest.fixture(scope="module", params=["keras", "h5"])
def mnv2(request, mnv2_files):
    return GradCam(load_model(mnv2_files / f"flowers.{request.param}"))


def test_transfer_learning_tree_default_and_labels(mnv2):
    nodes = layer_tree(mnv2.model)
    base = next(node for node in nodes if node.path == MNV2)
    assert base.type == "Functional" and base.children
    paths = {node.path: node for node in iter_layers(nodes)}
    assert paths[f"{MNV2}/block_13_expand_relu"].eligible
    assert paths[f"{MNV2}/block_13_expand_relu"].output_shape == (None, 6, 6, 192)
    for head_layer in ("gap", "dropout", "predictions"):
        assert not paths[head_layer].eligible
    assert mnv2.default_layer == f"{MNV2}/out_relu"
    assert mnv2.loaded.preprocess == "unit"  # no Rescaling in a Keras Application without top
    assert mnv2.class_names == ["daisy", "dandelion", "rose", "sunflower", "tulip"]
    assert mnv2.head.kind == "softmax"


@pytest.fixture(scope="module")
def mnv2_64(mnv2):
    return float64_engine(mnv2)


def mnv2_reference(model, inner):
    return nested_reference(model.get_layer(MNV2), inner, gap_dense_head(model.get_layer("predictions")))


@pytest.mark.parametrize("inner", ["out_relu", "block_13_expand_relu"])
def test_transfer_learning_maps_match_eager_reference(mnv2, mnv2_64, inner):
    image = noise(96, 96, seed=3)
    x = pixels(image)
    layer = f"{MNV2}/{inner}"
    expected = np.asarray(mnv2.model(x, training=False))[0]
    logits = capture(mnv2_reference(mnv2.model, inner), x, one_hot(0, 5))[2]
    rtol = probability_rtol(logits, discrepancy(mnv2.model))
    assert expected.max() > 0.3  # calibrated: far from uniform (0.2)
    assert_top_class_decided(expected, rtol)
    top = int(np.argmax(expected))
    for cls in (None, (top + 1) % 5):
        index = top if cls is None else cls
        # The float32 model as saved; its map only where the gradient is exact (see the docstring).
        if inner == "out_relu":
            explanation, _ = check_map(mnv2, image, layer, cls, mnv2_reference(mnv2.model, inner), x,
                                       one_hot(index, 5), exact=True)
        else:
            explanation = mnv2.explain(image, layer, cls)
        assert explanation.class_index == index
        np.testing.assert_allclose(explanation.prediction.probabilities, expected, rtol=rtol)
        assert explanation.score == pytest.approx(float(expected[index]), rel=rtol)
        twin, reference = check_map(mnv2_64, image, layer, cls, mnv2_reference(mnv2_64.model, inner), x,
                                    one_hot(index, 5))
        assert twin.class_index == index
        check_twin_probabilities(mnv2_64, twin, reference)


def test_same_size_images_do_not_retrace_and_second_call_is_fast(mnv2_files):
    engine = GradCam(load_model(mnv2_files / "flowers.keras"))
    layer = engine.default_layer
    start = time.perf_counter()
    engine.explain(noise(96, 96, seed=1))
    first = time.perf_counter() - start
    steady = []
    # Images of other sizes are resized to the model's 96 × 96: still no retrace.
    for seed, size in enumerate([(96, 96), (120, 80), (300, 200), (96, 96)]):
        start = time.perf_counter()
        engine.explain(noise(*size, seed=seed + 2), None, seed % 5)
        steady.append(time.perf_counter() - start)
    assert engine.trace_counts[layer] == 1
    assert min(steady) < first / 3, (first, steady)


# -- EfficientNetB0: Rescaling/Normalization inside the nested base --------------------------
@pytest.fixture(scope="module")
def effnet(tmp_path_factory):
    folder = tmp_path_factory.mktemp("effnet")
    keras.utils.set_random_seed(1)
    base = keras.applications.EfficientNetB0(include_top=False, weights=None, input_shape=(96, 96, 3))
    model = calibrate(transfer_model(base, 3), calibration_batch(96, 96, scale=1.0))
    model.save(folder / "eff.keras")
    return GradCam(load_model(folder / "eff.keras"))


def test_efficientnet_auto_preprocessing_is_raw_through_the_nested_model(effnet):
    assert effnet.loaded.preprocess == "raw"
    assert effnet.default_layer == "efficientnetb0/top_activation"


@pytest.fixture(scope="module")
def effnet_64(effnet):
    return float64_engine(effnet)


@pytest.mark.parametrize("inner", ["top_activation", "block6a_expand_activation"])
def test_efficientnet_maps_match_eager_reference(effnet, effnet_64, inner):
    image = noise(96, 96, seed=4)
    x = pixels(image, divisor=1.0)  # raw 0–255: the model rescales itself

    def reference(model):
        base = model.get_layer("efficientnetb0")
        return nested_reference(base, inner, gap_dense_head(model.get_layer("predictions")))

    # 80 float32 layers: no map bound that is not vacuous; the probabilities have one.
    logits = capture(reference(effnet.model), x, one_hot(2, 3))[2]
    np.testing.assert_allclose(effnet.predict(image).probabilities, probabilities(logits, "softmax"),
                               rtol=probability_rtol(logits, discrepancy(effnet.model)))
    twin, expected = check_map(effnet_64, image, f"efficientnetb0/{inner}", 2, reference(effnet_64.model), x,
                               one_hot(2, 3))
    check_twin_probabilities(effnet_64, twin, expected)


# -- MobileNetV3Small with include_preprocessing (a Rescaling inside the nested base) ----------
def test_mobilenet_v3_include_preprocessing_transfer_model(tmp_path):
    keras.utils.set_random_seed(14)
    base = keras.applications.MobileNetV3Small(include_top=False, weights=None, input_shape=(96, 96, 3),
                                               include_preprocessing=True)
    model = calibrate(transfer_model(base, 4), calibration_batch(96, 96, scale=1.0))
    model.save(tmp_path / "mnv3.keras")
    engine = GradCam(load_model(tmp_path / "mnv3.keras"))
    name = engine.model.layers[1].name
    base = engine.model.get_layer(name)
    assert isinstance(base.layers[1], keras.layers.Rescaling)
    assert engine.loaded.preprocess == "raw"
    assert engine.default_layer == f"{name}/{base.layers[-1].name}"  # the activation after conv_1
    shapes = {node.path: node for node in iter_layers(layer_tree(engine.model))}
    # Squeeze-excite convolutions are 1 × 1: listed, never eligible, never the default.
    squeeze = [node for path, node in shapes.items() if path.endswith("squeeze_excite_conv")]
    assert squeeze and not any(node.eligible for node in squeeze)
    image = noise(96, 96, seed=20)
    twin = float64_engine(engine)
    head = gap_dense_head(twin.model.get_layer("predictions"))
    for inner in (base.layers[-1].name, "expanded_conv_6_expand"):
        reference = nested_reference(twin.model.get_layer(name), inner, head)
        check_map(twin, image, f"{name}/{inner}", 3, reference, pixels(image, divisor=1.0), one_hot(3, 4))


# -- ResNet50 (include_top=False) as Sequential([base, GAP, Dense]) --------------------------
def test_sequential_resnet50_tree_default_and_maps(tmp_path):
    keras.utils.set_random_seed(2)
    base = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(64, 64, 3))
    model = keras.Sequential([base, keras.layers.GlobalAveragePooling2D(name="gap"),
                              keras.layers.Dense(4, activation="softmax", name="predictions")])
    model.build((None, 64, 64, 3))
    calibrate(model, calibration_batch(64, 64))
    model.save(tmp_path / "resnet.keras")
    engine = GradCam(load_model(tmp_path / "resnet.keras"))
    assert engine.default_layer == "resnet50/conv5_block3_out"
    assert "resnet50/conv4_block6_out" in eligible_paths(engine.model)
    image = noise(64, 64, seed=5)
    x = pixels(image)
    # In float32, rounding flips ReLU masks in the conv5 blocks: α at conv4_block6_out moves by up
    # to 19 % of mean|g|, and class 1 cancels 200:1 there. The float64 twin has a real bound.
    twin = float64_engine(engine)
    base = twin.model.get_layer("resnet50")
    head = gap_dense_head(twin.model.get_layer("predictions"))
    for inner, shape in (("conv5_block3_out", (2, 2)), ("conv4_block6_out", (4, 4))):
        explanation, _ = check_map(twin, image, f"resnet50/{inner}", 1, nested_reference(base, inner, head), x,
                                   one_hot(1, 4))
        assert explanation.raw.shape == shape
    assert engine.explain(image).raw.shape == (2, 2)


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

"""Keras Applications as users nest them, checked against an independent eager Grad-CAM.

Transfer learning the common ways (a Keras Application nested as ``base(inputs, training=False)``,
saved as .keras and legacy .h5; EfficientNetB0 with its own Rescaling/Normalization inside;
MobileNetV3 with include_preprocessing; a Sequential ResNet50). The heads, graphs and inputs of
other real models are in test_real_model_graphs.py; the shared helpers in tests/real_models.py.

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

from gradcam_desktop.core.gradcam import GradCam
from gradcam_desktop.core.layers import eligible_paths, iter_layers, layer_tree
from gradcam_desktop.core.models import load_model

from model_factory import calibrate, float64_engine
from reference import (
    assert_top_class_decided,
    capture,
    discrepancy,
    probabilities,
    probability_rtol,
)
from real_models import (
    MNV2,
    calibration_batch,
    check_map,
    check_twin_probabilities,
    gap_dense_head,
    nested_reference,
    noise,
    one_hot,
    pixels,
    transfer_model,
)


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

"""The Grad-CAM formula, checked numerically against hand-computed maps for every head kind."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from gradcam_desktop.core.errors import ClassSelectionError, LayerError, ModelLoadError
from gradcam_desktop.core.gradcam import GradCam
from gradcam_desktop.core.images import LoadedImage

from model_factory import (
    conv_backbone,
    flat_gap_dense_model,
    float64_engine,
    gap_dense_model,
    random_image,
    save_and_load,
)
from reference import (
    assert_map_close,
    assert_top_class_decided,
    discrepancy,
    exact_gradient,
    probabilities,
    probability_rtol,
    reference_gradcam,
    reference_map,
    well_conditioned,
)


def by_hand(engine, feature_map: np.ndarray, weights: np.ndarray):
    """For GAP → Dense: ∂y_c/∂A_k,ij = w_k/(H·W) exactly, so Grad-CAM = ReLU(Σ_k w_k A^k)/(H·W).

    No autodiff: the gradient is written down, then the shared reference reduces it in float64
    and bounds the engine's float32 rounding (tests/reference.py).
    """
    height, width = feature_map.shape[:2]
    gradients = np.broadcast_to(np.asarray(weights, np.float64) / (height * width), feature_map.shape)
    return reference_map(feature_map, gradients, discrepancy(engine.model), exact_gradient())


def gap_dense_logits(feature_map: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """The pre-activation output of GAP → Dense, in float64."""
    return feature_map.astype(np.float64).mean(axis=(0, 1)) @ kernel + bias


def last_conv_features(model, image: LoadedImage, path=("backbone", "last_conv")) -> np.ndarray:
    backbone = model.get_layer(path[0])
    extractor = keras.Model(backbone.input, backbone.get_layer(path[1]).output)
    x = image.rgb.astype(np.float32)[None] / 255.0  # "unit" preprocessing
    return np.asarray(extractor(x))[0]


@pytest.fixture(scope="module")
def softmax_engine(tmp_path_factory):
    loaded = save_and_load(gap_dense_model(), tmp_path_factory.mktemp("softmax"))
    return GradCam(loaded)


def test_formula_matches_hand_computation_for_every_class(softmax_engine):
    image = random_image()
    features = last_conv_features(softmax_engine.model, image)
    kernel = softmax_engine.model.get_layer("predictions").get_weights()[0]
    references = [by_hand(softmax_engine, features, kernel[:, cls]) for cls in range(4)]
    assert any(map(well_conditioned, references))  # some class's map is not zero everywhere
    for cls, reference in enumerate(references):
        explanation = softmax_engine.explain(image, "backbone/last_conv", cls)
        assert explanation.raw.shape == (8, 8)
        assert explanation.raw.dtype == np.float32
        assert_map_close(explanation.raw, reference, allow_flat=True)
        assert explanation.class_index == cls


def test_score_is_softmax_probability_and_default_class_is_top(softmax_engine):
    image = random_image(seed=5)
    x = image.rgb.astype(np.float32)[None] / 255.0
    probabilities = np.asarray(softmax_engine.model(x))[0]
    kernel, bias = softmax_engine.model.get_layer("predictions").get_weights()
    logits = gap_dense_logits(last_conv_features(softmax_engine.model, image), kernel, bias)
    rtol = probability_rtol(logits, discrepancy(softmax_engine.model))
    assert_top_class_decided(probabilities, rtol)
    explanation = softmax_engine.explain(image)
    assert explanation.class_index == int(np.argmax(probabilities))
    assert explanation.score == pytest.approx(float(probabilities.max()), rel=rtol)
    np.testing.assert_allclose(explanation.prediction.probabilities, probabilities, rtol=rtol)
    assert explanation.layer == "backbone/last_conv"  # the default: last eligible layer


def test_same_size_images_and_class_changes_do_not_retrace(softmax_engine):
    layer = "backbone/conv2"
    for seed in range(3):
        for cls in (None, 0, 3):
            softmax_engine.explain(random_image(seed=seed), layer, cls)
    assert softmax_engine.trace_counts[layer] == 1


@pytest.mark.parametrize("head", ["activation_layer", "softmax_layer", "linear"])
def test_separate_softmax_layers_and_linear_heads_explain_the_logits(tmp_path, head):
    keras.utils.set_random_seed(3)
    inputs = keras.Input((32, 32, 3))
    x = conv_backbone()(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(5, name="logits")(x)
    if head == "activation_layer":
        x = keras.layers.Activation("softmax")(x)
    elif head == "softmax_layer":
        x = keras.layers.Softmax()(x)
    engine = GradCam(save_and_load(keras.Model(inputs, x), tmp_path))
    assert engine.head.kind == ("logits" if head == "linear" else "softmax")
    image = random_image(seed=2)
    kernel = engine.model.get_layer("logits").get_weights()[0]
    features = last_conv_features(engine.model, image)
    references = [by_hand(engine, features, kernel[:, cls]) for cls in range(5)]
    assert any(map(well_conditioned, references))
    for cls, reference in enumerate(references):
        assert_map_close(engine.explain(image, "backbone/last_conv", cls).raw, reference, allow_flat=True)


def test_binary_sigmoid_head_explains_z_and_minus_z(tmp_path):
    engine = GradCam(save_and_load(gap_dense_model(classes=1, activation="sigmoid", seed=4), tmp_path))
    assert engine.head.kind == "binary"
    assert len(engine.class_names) == 2
    image = random_image(seed=7)
    x = image.rgb.astype(np.float32)[None] / 255.0
    p = float(np.asarray(engine.model(x))[0, 0])
    features = last_conv_features(engine.model, image)
    kernel, bias = engine.model.get_layer("predictions").get_weights()
    w = kernel[:, 0]
    rtol = probability_rtol(gap_dense_logits(features, kernel, bias), discrepancy(engine.model))
    assert_top_class_decided([1 - p, p], rtol)
    one = engine.explain(image, None, 1)
    zero = engine.explain(image, None, 0)
    assert_map_close(one.raw, by_hand(engine, features, w))
    assert_map_close(zero.raw, by_hand(engine, features, -w))
    # |Δp| ≤ rtol·p ≤ rtol also bounds 1 − p, absolutely.
    assert one.score == pytest.approx(p, rel=rtol)
    assert zero.score == pytest.approx(1 - p, rel=rtol, abs=rtol)
    np.testing.assert_allclose(one.prediction.probabilities, [1 - p, p], rtol=rtol, atol=rtol)
    top = engine.explain(image)
    assert top.class_index == (1 if p > 0.5 else 0)
    assert_map_close(top.raw, by_hand(engine, features, w if p > 0.5 else -w))


def test_multilabel_sigmoid_head_explains_each_logit(tmp_path):
    engine = GradCam(save_and_load(gap_dense_model(classes=3, activation="sigmoid", seed=8), tmp_path))
    assert engine.head.kind == "multilabel"
    image = random_image(seed=9)
    x = image.rgb.astype(np.float32)[None] / 255.0
    probabilities = np.asarray(engine.model(x))[0]
    kernel, bias = engine.model.get_layer("predictions").get_weights()
    features = last_conv_features(engine.model, image)
    rtol = probability_rtol(gap_dense_logits(features, kernel, bias), discrepancy(engine.model))
    references = [by_hand(engine, features, kernel[:, cls]) for cls in range(3)]
    assert any(map(well_conditioned, references))
    for cls, reference in enumerate(references):
        explanation = engine.explain(image, None, cls)
        assert_map_close(explanation.raw, reference, allow_flat=True)
        assert explanation.score == pytest.approx(float(probabilities[cls]), rel=rtol)


def test_head_inside_a_nested_model_and_sequential_outer(tmp_path):
    keras.utils.set_random_seed(11)
    head = keras.Sequential(
        [keras.Input((8, 8, 16)), keras.layers.GlobalAveragePooling2D(),
         keras.layers.Dense(3, activation="softmax", name="predictions")],
        name="head",
    )
    model = keras.Sequential([keras.Input((32, 32, 3)), conv_backbone(), head], name="outer")
    engine = GradCam(save_and_load(model, tmp_path))
    assert engine.head.kind == "softmax"
    assert engine.default_layer == "backbone/last_conv"
    image = random_image(seed=12)
    kernel = engine.model.get_layer("head").get_layer("predictions").get_weights()[0]
    features = last_conv_features(engine.model, image)
    references = [by_hand(engine, features, kernel[:, cls]) for cls in range(3)]
    assert any(map(well_conditioned, references))
    for cls, reference in enumerate(references):
        assert_map_close(engine.explain(image, "backbone/last_conv", cls).raw, reference, allow_flat=True)


def test_nested_sequential_backbone_in_functional_model_matches_flat_model(tmp_path):
    """An inner layer of a nested Sequential gives the same map as the same layer in a flat model."""
    keras.utils.set_random_seed(13)
    inputs = keras.Input((32, 32, 3))
    backbone = conv_backbone(functional=False)
    x = backbone(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(4, activation="softmax", name="predictions")(x)
    nested = keras.Model(inputs, outputs)
    flat = flat_gap_dense_model()
    flat.set_weights(nested.get_weights())
    nested_engine = GradCam(save_and_load(nested, tmp_path, "nested.keras"))
    flat_engine = GradCam(save_and_load(flat, tmp_path, "flat.keras"))
    image = random_image(seed=14)
    x = image.rgb.astype(np.float32)[None] / 255.0
    two = [0.0, 0.0, 1.0, 0.0]

    def flat_reference(model, inner):
        dense = model.get_layer("predictions")

        def run(batch):  # layer by layer, eagerly; the Dense by hand for its pre-softmax output
            y = features = batch
            for layer in model.layers[:-1]:
                y = layer(y)
                features = y if layer.name == inner else features
            return features, keras.ops.matmul(y, dense.kernel) + dense.bias
        return run

    # last_conv feeds GAP → Dense: float32, exact gradient. conv1/conv2: their gradients cross
    # ReLUs, compared on float64 twins (tests/reference.py). Both engines meet the same reference.
    rho = discrepancy(flat_engine.model)
    reference = reference_gradcam(flat_reference(flat_engine.model, "last_conv"), x, two, rho, exact_gradient())
    assert_map_close(nested_engine.explain(image, "backbone/last_conv", 2).raw, reference)
    assert_map_close(flat_engine.explain(image, "last_conv", 2).raw, reference)
    nested_64, flat_64 = float64_engine(nested_engine), float64_engine(flat_engine)
    rho = discrepancy(flat_64.model)
    for inner in ("conv1", "conv2"):
        reference = reference_gradcam(flat_reference(flat_64.model, inner), x, two, rho, rho)
        assert_map_close(nested_64.explain(image, f"backbone/{inner}", 2).raw, reference)
        assert_map_close(flat_64.explain(image, inner, 2).raw, reference)
    assert nested_engine.explain(image, "backbone/conv1", 2).raw.shape == (32, 32)


def test_legacy_h5_file_gives_the_same_map(tmp_path):
    model = gap_dense_model(seed=21)
    keras_engine = GradCam(save_and_load(model, tmp_path, "m.keras"))
    h5_engine = GradCam(save_and_load(model, tmp_path, "m.h5"))
    image = random_image(seed=22)
    kernel = keras_engine.model.get_layer("predictions").get_weights()[0]
    expected = by_hand(keras_engine, last_conv_features(keras_engine.model, image), kernel[:, 1])
    assert_map_close(h5_engine.explain(image, "backbone/last_conv", 1).raw, expected)
    assert_map_close(keras_engine.explain(image, "backbone/last_conv", 1).raw, expected)


@pytest.mark.parametrize("name", ["listed.keras", "listed.h5"])
def test_outputs_declared_as_a_one_element_list_explain_like_a_tensor(tmp_path, name):
    """``keras.Model(inputs, [outputs])`` — what every tf.keras config declares — used to give logits
    of shape (1, 1, units) from the graph walk and crash the prediction ("only 0-dimensional
    arrays can be converted")."""
    keras.utils.set_random_seed(5)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling2D(name="gap")(conv_backbone()(inputs))
    outputs = keras.layers.Dense(3, activation="softmax", name="predictions")(x)
    engine = GradCam(save_and_load(keras.Model(inputs, [outputs]), tmp_path, name))
    image = random_image(seed=6)
    kernel, bias = engine.model.get_layer("predictions").get_weights()
    features = last_conv_features(engine.model, image)
    prediction = engine.predict(image)
    expected = probabilities(gap_dense_logits(features, kernel, bias), "softmax")
    np.testing.assert_allclose(prediction.probabilities, expected, rtol=probability_rtol(
        gap_dense_logits(features, kernel, bias), discrepancy(engine.model)))
    for cls in range(3):
        assert_map_close(engine.explain(image, "backbone/last_conv", cls).raw, by_hand(engine, features, kernel[:, cls]),
                         allow_flat=True)


def test_grayscale_model_gets_grayscale_input(tmp_path):
    engine = GradCam(save_and_load(gap_dense_model((32, 32, 1), seed=23), tmp_path))
    assert engine.loaded.channels == 1
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[..., 0] = 200  # pure red → luminance 0.299·200 ≈ 60
    batch = engine.model_input(LoadedImage(rgb=rgb, name="red.png", path=None, notices=[]))
    assert batch.shape == (1, 32, 32, 1)
    # Not a rounding bound: luminance conversions may round 0.299·200 = 59.8 to 59 or 60.
    np.testing.assert_allclose(batch, np.full_like(batch, round(0.299 * 200) / 255.0), atol=1.5 / 255)
    assert engine.explain(LoadedImage(rgb=rgb, name="r", path=None, notices=[])).raw.shape == (8, 8)


def test_non_square_input_keeps_height_and_width(tmp_path):
    engine = GradCam(save_and_load(gap_dense_model((24, 40, 3), seed=24), tmp_path))
    image = random_image(24, 40, seed=25)
    features = last_conv_features(engine.model, image)
    kernel = engine.model.get_layer("predictions").get_weights()[0]
    references = [by_hand(engine, features, kernel[:, cls]) for cls in range(4)]
    assert any(map(well_conditioned, references))
    for cls, reference in enumerate(references):
        explanation = engine.explain(image, "backbone/last_conv", cls)
        assert explanation.raw.shape == (6, 10)
        assert_map_close(explanation.raw, reference, allow_flat=True)
    # A bigger, differently shaped image is resized to the model, not transposed.
    assert engine.model_input(random_image(120, 200, seed=26)).shape == (1, 24, 40, 3)


def test_variable_size_model_uses_the_image_size(tmp_path):
    engine = GradCam(save_and_load(gap_dense_model((None, None, 3), seed=27), tmp_path))
    # The image's own size, enlarged when its short side is under 96, shrunk when its long side is over 512.
    for (height, width), grid in (((120, 160), (30, 40)), ((24, 40), (24, 40)), ((1024, 2048), (64, 128)),
                                  ((100, 100), (25, 25)), ((200, 120), (50, 30)), ((300, 100), (75, 25))):
        explanation = engine.explain(random_image(height, width, seed=28), "backbone/last_conv", 0)
        assert explanation.raw.shape == grid, (height, width)
    # reduce_retracing: after a few sizes one shape-generic trace serves all (not one per size).
    assert engine.trace_counts["backbone/last_conv"] <= 3


def test_auto_preprocessing_follows_a_leading_rescaling_layer_and_sidecar(tmp_path):
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = conv_backbone()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    assert save_and_load(model, tmp_path, "rescaled.keras").preprocess == "raw"
    assert save_and_load(gap_dense_model(), tmp_path, "plain.keras").preprocess == "unit"
    (tmp_path / "side.gradcam.json").write_text('{"preprocess": "symmetric"}')
    assert save_and_load(gap_dense_model(), tmp_path, "side.keras").preprocess == "symmetric"
    assert save_and_load(gap_dense_model(), tmp_path, "cli.keras", preprocess="caffe").preprocess == "caffe"


def test_labels_sidecar_names_classes(tmp_path):
    (tmp_path / "named.labels.txt").write_text("cat\ndog\nfish\nbird\n", encoding="utf-8")
    engine = GradCam(save_and_load(gap_dense_model(), tmp_path, "named.keras"))
    assert engine.class_names == ["cat", "dog", "fish", "bird"]
    explanation = engine.explain(random_image(), None, "Dog")
    assert (explanation.class_index, explanation.class_name) == (1, "dog")
    (tmp_path / "json.labels.json").write_text('{"1": "b", "0": "a", "2": "c", "3": "d"}')
    assert save_and_load(gap_dense_model(), tmp_path, "json.keras").class_names == ["a", "b", "c", "d"]


def test_class_and_layer_errors_are_clear(softmax_engine):
    image = random_image()
    with pytest.raises(ClassSelectionError, match="out of range.*4 classes"):
        softmax_engine.explain(image, None, 4)
    with pytest.raises(ClassSelectionError, match="No class named 'zebra'"):
        softmax_engine.explain(image, None, "zebra")
    with pytest.raises(LayerError, match="No layer 'nope'.*backbone/last_conv"):
        softmax_engine.explain(image, "nope")
    with pytest.raises(LayerError, match="'gap' has output shape .*no spatial grid"):
        softmax_engine.explain(image, "gap")


def test_models_that_cannot_be_explained_are_refused(tmp_path):
    mlp = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])
    with pytest.raises(LayerError, match="no layer with a spatial map"):
        save_and_load(mlp, tmp_path, "mlp.keras")
    a, b = keras.Input((16, 16, 3)), keras.Input((16, 16, 3))
    merged = keras.layers.Add()([keras.layers.Conv2D(4, 3)(a), keras.layers.Conv2D(4, 3)(b)])
    two = keras.Model([a, b], keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(merged)))
    with pytest.raises(ModelLoadError, match="has 2 inputs"):
        save_and_load(two, tmp_path, "two.keras")


def test_mobilenet_v3_default_is_a_spatial_layer_not_the_logit_conv(tmp_path):
    model = keras.applications.MobileNetV3Small(weights=None, input_shape=(96, 96, 3), include_preprocessing=True)
    engine = GradCam(save_and_load(model, tmp_path, "mnv3.keras"))
    layer = engine.default_layer
    shape = engine.model.get_layer(layer).output.shape
    assert shape[1] > 1 and shape[2] > 1, (layer, shape)
    assert "logits" not in layer and "Logits" not in layer
    assert engine.head.kind == "softmax"
    assert engine.explain(random_image(96, 96), layer, 5).raw.shape == (3, 3)


def test_user_model_is_not_modified(tmp_path):
    loaded = save_and_load(gap_dense_model(), tmp_path)
    dense = loaded.model.get_layer("predictions")
    before = [w.copy() for w in dense.get_weights()]
    GradCam(loaded).explain(random_image(), None, 0)
    assert dense.activation.__name__ == "softmax"
    for old, new in zip(before, dense.get_weights()):
        np.testing.assert_array_equal(old, new)


def _conv_head(x, units=2, activation="softmax"):
    x = keras.layers.Conv2D(8, 3, activation="relu", name="last")(x)
    return keras.layers.Dense(units, activation=activation)(keras.layers.GlobalAveragePooling2D()(x))


def test_auto_preprocessing_looks_through_augmentation_resizing_and_ops(tmp_path):
    inputs = keras.Input((48, 48, 3))
    augment = keras.Sequential([keras.layers.RandomFlip("horizontal"), keras.layers.RandomRotation(0.1)],
                               name="data_augmentation")
    models = {
        "aug_then_rescaling": keras.Model(inputs, _conv_head(keras.layers.Rescaling(1 / 255)(augment(inputs)))),
        "resizing_then_rescaling": keras.Model(
            inputs, _conv_head(keras.layers.Rescaling(1 / 255)(keras.layers.Resizing(32, 32)(inputs)))),
        "ops_preprocessing": keras.Model(inputs, _conv_head(keras.ops.subtract(keras.ops.divide(inputs, 127.5), 1.0))),
        "sequential_tutorial": keras.Sequential([keras.Input((48, 48, 3)), keras.layers.RandomFlip(),
                                                 keras.layers.Rescaling(1 / 255), keras.layers.Conv2D(4, 3),
                                                 keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)]),
    }
    for name, model in models.items():
        assert save_and_load(model, tmp_path, f"{name}.keras").preprocess == "raw", name
    plain = keras.Model(inputs, _conv_head(augment(inputs)))
    assert save_and_load(plain, tmp_path, "augment_only.keras").preprocess == "unit"


@pytest.mark.parametrize("activation,units,kind", [(keras.ops.softmax, 3, "softmax"),
                                                   (keras.activations.sigmoid, 1, "binary")])
def test_activation_written_as_an_op_is_explained_before_it(tmp_path, activation, units, kind):
    keras.utils.set_random_seed(40)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="last")(inputs)
    x = keras.layers.Dense(units, kernel_initializer=keras.initializers.RandomNormal(stddev=5), name="logits")(
        keras.layers.GlobalAveragePooling2D()(x))
    engine = GradCam(save_and_load(keras.Model(inputs, activation(x)), tmp_path))
    assert engine.head.kind == kind
    image = random_image(16, 16, seed=41)
    p = np.asarray(engine.model(image.rgb[None].astype(np.float32) / 255.0))[0]
    expected = np.array([1 - p[0], p[0]]) if units == 1 else p
    features = np.asarray(keras.Model(engine.model.input, engine.model.get_layer("last").output)(
        image.rgb[None].astype(np.float32) / 255.0))[0]
    kernel, bias = engine.model.get_layer("logits").get_weights()
    rtol = probability_rtol(gap_dense_logits(features, kernel, bias), discrepancy(engine.model))
    # atol: for a sigmoid, |Δp| ≤ rtol·p bounds 1 − p absolutely.
    np.testing.assert_allclose(engine.predict(image).probabilities, expected, rtol=rtol, atol=rtol)
    assert_map_close(engine.explain(image, "last", units - 1 if units > 1 else 1).raw,
                     by_hand(engine, features, kernel[:, -1]))


def test_a_shared_layer_is_mapped_at_its_last_call(tmp_path):
    keras.utils.set_random_seed(3)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="c0")(inputs)
    shared = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="shared")
    second = shared(shared(x))
    outputs = keras.layers.Dense(3, activation="softmax", name="head")(keras.layers.GlobalAveragePooling2D()(second))
    engine = GradCam(save_and_load(keras.Model(inputs, outputs), tmp_path))
    assert engine.default_layer == "shared"
    image = random_image(16, 16, seed=4)
    x = image.rgb[None].astype(np.float32) / 255.0
    m = engine.model
    last_call = np.asarray(m.get_layer("shared")(m.get_layer("shared")(m.get_layer("c0")(x))))[0]
    w = m.get_layer("head").get_weights()[0][:, 0]
    assert_map_close(engine.explain(image, "shared", 0).raw, by_hand(engine, last_call, w))


def test_an_inner_layer_named_without_its_model_gets_a_suggestion(softmax_engine):
    with pytest.raises(LayerError, match="did you mean 'backbone/conv2'"):
        softmax_engine.explain(random_image(), "conv2")


def test_a_layer_before_any_weights_gets_its_gradient(tmp_path):
    """Rescaling depends on no variable: the tape must watch it or its gradient is None."""
    keras.utils.set_random_seed(50)
    layers = [keras.layers.Rescaling(1 / 255.0, name="rescale"),
              keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv"),
              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3, name="logits")]
    engine = GradCam(save_and_load(keras.Sequential([keras.Input((16, 16, 3)), *layers]), tmp_path))
    assert engine.loaded.preprocess == "raw"
    image = random_image(16, 16, seed=51)
    # The gradient at "rescale" crosses the conv's ReLU: compared on the float64 twin.
    twin = float64_engine(engine)
    m = twin.model

    def run(x):
        a = m.get_layer("rescale")(x)
        y = a
        for name in ("conv", m.layers[2].name, "logits"):
            y = m.get_layer(name)(y)
        return a, y

    rho = discrepancy(m)
    expected = reference_gradcam(run, image.rgb[None].astype(np.float32), [0.0, 1.0, 0.0], rho, rho)
    raw = twin.explain(image, "rescale", 1).raw
    assert raw.shape == (16, 16) and raw.max() > 0
    assert_map_close(raw, expected)
    assert engine.explain(image, "rescale", 1).raw.shape == (16, 16)

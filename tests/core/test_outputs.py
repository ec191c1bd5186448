"""Models with several outputs (issue 20): each output is described, one is chosen, and its maps are
the maps of that output's pre-activation score computed on the full model by an eager tape.

The model: a shared trunk (two convolutions) and two heads — ``kind`` (Dense 3, softmax) and
``adult`` (Dense 1, sigmoid) — saved as Keras 3 and as Keras 2 (tf_keras) files. The reference
runs the *full* model (not the one-output view the engine builds) and forms each head's logits from
its Dense kernel and bias, in float64 (tests/reference.py: the float32 bound).
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from gradcam_desktop.core.backend import keras_of
from gradcam_desktop.core.errors import ModelLoadError
from gradcam_desktop.core.gradcam import GradCam
from gradcam_desktop.core.images import LoadedImage
from gradcam_desktop.core.models import load_model
import keras2_factory
from reference import assert_map_close, discrepancy, reference_gradcam, well_conditioned

SIDE = 24


def _build(keras):
    inputs = keras.Input((SIDE, SIDE, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="last_conv")(x)
    pooled = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    kind = keras.layers.Dense(3, activation="softmax", name="kind")(pooled)
    adult = keras.layers.Dense(1, activation="sigmoid", name="adult")(pooled)
    model = keras.Model(inputs, [kind, adult])
    rng = np.random.default_rng(3)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype(np.float32) for w in model.get_weights()])
    return model


@pytest.fixture(scope="module", params=["keras3", "keras2"])
def two_heads(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"two_heads_{request.param}")
    if request.param == "keras3":
        import keras

        path = folder / "two.keras"
    else:
        import tf_keras as keras

        path = folder / "two.h5"
    model = _build(keras)
    model.save(path)
    (folder / "two.gradcam.json").write_text('{"preprocess": "unit", "labels": {"kind": ["cat", "dog", "fox"]}}',
                                             encoding="utf-8")
    return path, model


def _picture() -> LoadedImage:
    rgb = np.random.default_rng(5).integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
    return LoadedImage(rgb=rgb, name="p.png", path=None)


def _reference(model, head: str, weights):
    """The full model's Grad-CAM at last_conv for Σ weights · (that head's pre-activation logits)."""
    keras = keras_of(model)  # Keras 3 or tf_keras, whichever built it
    extractor = keras.Model(model.inputs, [model.get_layer("last_conv").output, model.get_layer("gap").output])
    dense = model.get_layer(head)

    def features_and_logits(x):
        features, pooled = extractor(x, training=False)
        return features, tf.matmul(pooled, dense.kernel) + dense.bias

    x = (_picture().rgb.astype(np.float32) / np.float32(255.0))[None]
    rho = keras2_factory.discrepancy(model) if keras.__name__ == "tf_keras" else discrepancy(model)
    return reference_gradcam(features_and_logits, x, weights, rho, rho)


def test_each_output_is_described_and_the_first_classifier_is_the_default(two_heads):
    path, _model = two_heads
    loaded = load_model(str(path))
    assert [(o.name, o.shape, o.kind, o.usable) for o in loaded.outputs] == [
        ("kind", (None, 3), "softmax", True), ("adult", (None, 1), "binary", True)]
    assert loaded.output == "kind" and loaded.class_names == ["cat", "dog", "fox"]
    assert len(loaded.model.outputs) == 1 and loaded.head.kind == "softmax"


@pytest.mark.parametrize("chosen, head, kind", [("kind", "kind", "softmax"), (0, "kind", "softmax"),
                                                 ("adult", "adult", "binary"), ("1", "adult", "binary")])
def test_the_chosen_outputs_maps_are_the_full_models(two_heads, chosen, head, kind):
    path, model = two_heads
    loaded = load_model(str(path), output=chosen)
    assert loaded.output == head and loaded.head.kind == kind
    engine = GradCam(loaded)
    classes = range(3) if kind == "softmax" else range(2)
    conditioned = []
    for class_index in classes:
        result = engine.explain(_picture(), layer="last_conv", class_index=class_index)
        if kind == "softmax":
            weights = np.eye(3)[class_index]
        else:  # a binary head: class 1 explains z, class 0 explains −z (heads.Head.class_weights)
            weights = np.array([1.0 if class_index == 1 else -1.0])
        expected = _reference(model, head, weights)
        assert_map_close(result.raw, expected, allow_flat=True)
        conditioned.append(well_conditioned(expected))
    assert any(conditioned)  # not a vacuous check: some class's map stands well above its bound


def test_an_unknown_output_is_one_line_naming_the_outputs(two_heads):
    path, _model = two_heads
    with pytest.raises(ModelLoadError) as caught:
        load_model(str(path), output="age")
    message = str(caught.value)
    assert "no output 'age'" in message and "kind: (batch, 3), softmax" in message and "\n" not in message


def test_a_one_output_model_takes_no_output():
    with pytest.raises(ModelLoadError, match="has one output"):
        load_model("demo", output="x")

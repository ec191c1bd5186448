"""GradCam.prepare: a layer's capture traced and instantiated ahead of its first map."""

from __future__ import annotations

import keras
import numpy as np

from gradcam_desktop.core.gradcam import GradCam

from model_factory import gap_dense_model, random_image, save_and_load
from reference import assert_map_close, discrepancy, reference_gradcam, well_conditioned


def batchnorm_model(seed=41):
    """conv → BatchNorm (non-trivial moving statistics) → ReLU → conv → GAP → Dense."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv1")(inputs)
    bn = keras.layers.BatchNormalization(name="bn")
    x = keras.layers.ReLU(name="relu")(bn(x))
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="last_conv")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inputs, keras.layers.Dense(4, activation="softmax", name="predictions")(x))
    rng = np.random.default_rng(seed)
    gamma, beta, _mean, _var = bn.get_weights()
    bn.set_weights([gamma, beta, rng.normal(0.0, 0.3, 8).astype(np.float32),
                    rng.uniform(0.5, 2.0, 8).astype(np.float32)])
    return model


def test_prepare_traces_once_and_the_first_map_does_not_trace_again(tmp_path):
    engine = GradCam(save_and_load(gap_dense_model(seed=31), tmp_path))
    layer = "backbone/conv2"
    assert engine.prepare(layer) is True
    assert engine.trace_counts[layer] == 1
    assert engine.prepare(layer) is False  # ready: nothing to do
    for cls in (None, 1, 3):
        engine.explain(random_image(seed=32), layer, cls)
    assert engine.trace_counts[layer] == 1
    assert engine.default_layer not in engine.trace_counts
    assert engine.prepare() is True  # no layer: the default one
    assert engine.trace_counts[engine.default_layer] == 1


def test_prepare_changes_no_weight_and_later_maps_match_the_reference(tmp_path):
    """The zero batch runs in inference mode: BatchNorm's moving statistics stay as they were."""
    engine = GradCam(save_and_load(batchnorm_model(), tmp_path))
    before = [w.copy() for w in engine.model.get_weights()]
    assert engine.prepare("relu") is True
    for old, new in zip(before, engine.model.get_weights()):
        np.testing.assert_array_equal(old, new)

    image = random_image(seed=42)
    x = engine.model_input(image)
    extractor = keras.Model(engine.model.input, [engine.model.get_layer("relu").output,
                                                 engine.model.get_layer("gap").output])
    kernel, bias = engine.model.get_layer("predictions").get_weights()

    def features_and_logits(v):
        features, pooled = extractor(v, training=False)
        return features, pooled @ kernel + bias

    rho = discrepancy(engine.model)
    references = [reference_gradcam(features_and_logits, x, np.eye(4, dtype=np.float32)[cls], rho, rho)
                  for cls in range(4)]
    assert any(map(well_conditioned, references))
    for cls, reference in enumerate(references):
        assert_map_close(engine.explain(image, "relu", cls).raw, reference, allow_flat=True)
    assert engine.trace_counts["relu"] == 1


def test_prepare_of_a_variable_size_model_serves_every_picture_size(tmp_path):
    engine = GradCam(save_and_load(gap_dense_model((None, None, 3), seed=43), tmp_path))
    assert engine.prepare("backbone/last_conv") is True
    for height, width in ((120, 160), (200, 120)):
        explanation = engine.explain(random_image(height, width, seed=44), "backbone/last_conv", 0)
        assert explanation.raw.shape == (height // 4, width // 4)
    assert engine.trace_counts["backbone/last_conv"] == 1
